//! Conversations as their members see them: the list, one conversation, its members and
//! history, read positions, typing, and the changes to a group (made through the writer, as
//! events of the conversation's log).

use std::collections::HashMap;

use serde::Serialize;
use time::OffsetDateTime;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::accounts::UserView;
use crate::auth::tokens::random_token;
use crate::calls::CallMedia;
use crate::db::conversations::{self as store, ConversationRow, MemberRow};
use crate::db::events::{self, NewEvent, PageCursor};
use crate::db::{self, DbConnection, users};
use crate::error::{AppError, ErrorCode};
use crate::ws::hub::Outbound;
use crate::ws::protocol::ServerFrame;

use super::directory::ConversationKind;
use super::membership::{Change, Role};
use super::service::{field, not_yours};
use super::writer::PendingMessage;
use super::{ChangeDetails, Chat, Identity, MessageKind, MessageView, Presence};

/// Longest group title, in characters.
pub const MAX_TITLE_CHARS: usize = 128;
/// Most users one request adds to a group (or makes one with).
pub const MAX_ADDED_AT_ONCE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationType {
    Direct,
    Group,
}

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct ConversationView {
    pub id: i64,
    pub kind: ConversationType,
    /// A group's title (absent for a direct conversation: show the peer).
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The other user of a direct conversation.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<UserView>,
    /// The direct peer's presence.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<Presence>,
    /// Current members, you included.
    pub members_count: i64,
    /// Your role in it.
    pub role: Role,
    /// The newest event (a message, or a change to a group); absent when there is none yet.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<MessageView>,
    /// Messages from others after your read position.
    pub unread_count: i64,
    /// The newest message id you have read in this conversation (0: none).
    pub last_read_id: i64,
    /// In a direct conversation: how far the peer has read (0: none), for "read" ticks.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_last_read_id: Option<i64>,
    /// A group's call in progress: `call {conversation_id}` joins it.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_call: Option<ActiveCall>,
}

/// A call going on in a group.
#[derive(Debug, Clone, Serialize, ToSchema, TS, PartialEq, Eq)]
pub struct ActiveCall {
    pub call_id: String,
    pub media: CallMedia,
    /// Who started it.
    pub started_by: String,
    /// The user names in it now, in the order they joined (one per device).
    pub participants: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct ConversationPage {
    /// Most recent first.
    pub conversations: Vec<ConversationView>,
    /// Pass as `before` for the next page; absent on the last one.
    pub next_before: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct HistoryPage {
    /// Oldest first.
    pub messages: Vec<MessageView>,
    /// Whether more messages lie beyond this page in the direction asked.
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema, TS, Clone)]
pub struct ReadState {
    pub conversation_id: i64,
    /// In a direct conversation: the other user.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    pub up_to: i64,
    pub unread: i64,
}

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct ConversationMember {
    pub user: UserView,
    pub role: Role,
    #[ts(type = "string")]
    #[serde(with = "time::serde::rfc3339")]
    pub joined_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct MemberList {
    /// Owner first, then admins, then members, each by when they joined.
    pub members: Vec<ConversationMember>,
}

/// What a REST call asks of a group.
#[derive(Debug, Clone)]
pub enum GroupChange {
    Add(Vec<String>),
    Remove(String),
    Leave,
    SetRole(String, Role),
    Rename(String),
}

fn valid_invitees(
    field_name: &'static str,
    names: &[String],
    at_least: usize,
) -> Result<(), AppError> {
    if names.len() < at_least || names.len() > MAX_ADDED_AT_ONCE {
        return Err(field(
            field_name,
            "invalid",
            format!("give {at_least}–{MAX_ADDED_AT_ONCE} user names"),
        ));
    }
    Ok(())
}

fn valid_title(raw: &str) -> Result<String, AppError> {
    let title = crate::input::shown_name(raw).map_err(|_| {
        field(
            "title",
            "invalid",
            "must show something, with no control characters",
        )
    })?;
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(field(
            "title",
            "too_long",
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    Ok(title)
}

impl Chat {
    /// The user's current membership of a conversation, or `conversation_not_found`.
    fn membership(
        conn: &mut DbConnection,
        user_id: i64,
        conversation_id: i64,
    ) -> Result<MemberRow, AppError> {
        store::current_members(conn, &[conversation_id])?
            .into_iter()
            .find(|m| m.user_id == user_id)
            .ok_or_else(not_yours)
    }

    /// Builds the views of these conversations for `user_id` (in the order given).
    fn conversation_views(
        &self,
        conn: &mut DbConnection,
        user_id: i64,
        rows: Vec<ConversationRow>,
        newest: &HashMap<i64, i64>,
    ) -> Result<Vec<ConversationView>, AppError> {
        let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
        let mut members: HashMap<i64, Vec<MemberRow>> = HashMap::new();
        for member in store::current_members(conn, &ids)? {
            members
                .entry(member.conversation_id)
                .or_default()
                .push(member);
        }
        let reads: HashMap<(i64, i64), i64> = members
            .values()
            .flatten()
            .map(|m| ((m.conversation_id, m.user_id), m.last_read_seq))
            .collect();
        let peer_ids: Vec<i64> = rows.iter().filter_map(|c| c.peer_of(user_id)).collect();
        let mut profiles: HashMap<i64, users::User> = users::find_many(conn, &peer_ids)?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        let last_ids: Vec<i64> = ids
            .iter()
            .filter_map(|id| newest.get(id))
            .copied()
            .collect();
        let last_rows = events::find_many(conn, &last_ids)?;
        let mut last: HashMap<i64, MessageView> = self
            .views(conn, &last_rows)?
            .into_iter()
            .map(|v| (v.conversation_id, v))
            .collect();
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            let of_this = members.remove(&row.id).unwrap_or_default();
            let role = of_this
                .iter()
                .find(|m| m.user_id == user_id)
                .map_or(Role::Member, |m| Role::parse(&m.role));
            let last_read_id = reads.get(&(row.id, user_id)).copied().unwrap_or(0);
            let peer = row.peer_of(user_id);
            let profile = peer.and_then(|p| profiles.remove(&p));
            views.push(ConversationView {
                id: row.id,
                kind: if row.is_group() {
                    ConversationType::Group
                } else {
                    ConversationType::Direct
                },
                title: row.title.clone(),
                presence: profile
                    .as_ref()
                    .map(|p| Self::presence_of(false, p.last_seen_at)),
                peer: profile.as_ref().map(UserView::from),
                members_count: i64::try_from(of_this.len()).unwrap_or(i64::MAX),
                role,
                last_message: last.remove(&row.id),
                unread_count: events::unread_count(conn, row.id, user_id, last_read_id)?,
                last_read_id,
                peer_last_read_id: peer.map(|p| reads.get(&(row.id, p)).copied().unwrap_or(0)),
                active_call: None,
            });
        }
        Ok(views)
    }

    /// Marks the direct peers who are online as such.
    async fn with_presence(&self, views: &mut [ConversationView]) {
        let peers: Vec<i64> = views
            .iter()
            .filter_map(|c| c.peer.as_ref().map(|p| p.id))
            .collect();
        if peers.is_empty() {
            return;
        }
        let online = self.online(&peers).await;
        for view in views {
            if view.peer.as_ref().is_some_and(|p| online.contains(&p.id)) {
                view.presence = Some(Self::presence_of(true, None));
            }
        }
    }

    /// The user's conversations, most recent first: groups, and direct conversations that have a
    /// message.
    pub async fn conversations(
        &self,
        user: &Identity,
        before: Option<i64>,
        limit: usize,
    ) -> Result<ConversationPage, AppError> {
        let this = self.clone();
        let user_id = user.user_id;
        let mut page = self
            .db
            .run(move |conn| {
                let upto = this.writer.visible_up_to()?;
                let ids: Vec<i64> = store::memberships(conn, user_id)?
                    .into_iter()
                    .map(|m| m.conversation_id)
                    .collect();
                let mut newest = events::newest_per_conversation(conn, &ids, upto)?;
                newest.sort_by_key(|&(_, last)| std::cmp::Reverse(last));
                if let Some(before) = before {
                    newest.retain(|(_, last)| *last < before);
                }
                let more = newest.len() > limit;
                newest.truncate(limit);
                let order: Vec<i64> = newest.iter().map(|(c, _)| *c).collect();
                let mut rows: HashMap<i64, ConversationRow> = store::find_many(conn, &order)?
                    .into_iter()
                    .map(|r| (r.id, r))
                    .collect();
                let rows: Vec<ConversationRow> =
                    order.iter().filter_map(|id| rows.remove(id)).collect();
                let next_before = if more {
                    newest.last().map(|(_, last)| *last)
                } else {
                    None
                };
                let newest: HashMap<i64, i64> = newest.into_iter().collect();
                Ok(ConversationPage {
                    conversations: this.conversation_views(conn, user_id, rows, &newest)?,
                    next_before,
                })
            })
            .await?;
        self.with_presence(&mut page.conversations).await;
        Ok(page)
    }

    /// One conversation of the user's.
    pub async fn conversation(
        &self,
        user: &Identity,
        id: i64,
    ) -> Result<ConversationView, AppError> {
        let this = self.clone();
        let user_id = user.user_id;
        let mut views = self
            .db
            .run(move |conn| {
                Self::membership(conn, user_id, id)?;
                let upto = this.writer.visible_up_to()?;
                let newest: HashMap<i64, i64> = events::newest_per_conversation(conn, &[id], upto)?
                    .into_iter()
                    .collect();
                let rows = store::find_many(conn, &[id])?;
                this.conversation_views(conn, user_id, rows, &newest)
            })
            .await?;
        self.with_presence(&mut views).await;
        views.pop().ok_or_else(not_yours)
    }

    /// The direct conversation with `username`, opened if there is none yet.
    pub async fn direct_with(
        &self,
        user: &Identity,
        username: &str,
    ) -> Result<ConversationView, AppError> {
        let (peer_id, _) = self.directory.resolve(username).await?;
        if peer_id == user.user_id {
            return Err(field(
                "user",
                "self",
                "cannot open a conversation with yourself",
            ));
        }
        let id = self.open_direct(user.user_id, peer_id).await?;
        self.conversation(user, id).await
    }

    /// The id of the direct conversation with `username` (for frames that name a peer); `None`
    /// when the two have none yet.
    pub async fn direct_id(
        &self,
        user: &Identity,
        username: &str,
    ) -> Result<Option<i64>, AppError> {
        let (peer_id, _) = self.directory.resolve(username).await?;
        self.directory
            .direct_conversation(user.user_id, peer_id, false)
            .await
    }

    /// The current members of a conversation of the user's.
    pub async fn members(&self, user: &Identity, id: i64) -> Result<MemberList, AppError> {
        let user_id = user.user_id;
        self.db
            .run(move |conn| {
                Self::membership(conn, user_id, id)?;
                let mut rows = store::current_members(conn, &[id])?;
                rows.sort_by_key(|m| {
                    (
                        std::cmp::Reverse(Role::parse(&m.role)),
                        m.joined_seq,
                        m.user_id,
                    )
                });
                let ids: Vec<i64> = rows.iter().map(|m| m.user_id).collect();
                let profiles: HashMap<i64, users::User> = users::find_many(conn, &ids)?
                    .into_iter()
                    .map(|u| (u.id, u))
                    .collect();
                Ok(MemberList {
                    members: rows
                        .iter()
                        .filter_map(|m| {
                            Some(ConversationMember {
                                user: UserView::from(profiles.get(&m.user_id)?),
                                role: Role::parse(&m.role),
                                joined_at: m.joined_at.assume_utc(),
                            })
                        })
                        .collect(),
                })
            })
            .await
    }

    /// A page of a conversation the user belongs to, oldest first.
    pub async fn history(
        &self,
        user: &Identity,
        id: i64,
        cursor: PageCursor,
        limit: i64,
    ) -> Result<HistoryPage, AppError> {
        let this = self.clone();
        let user_id = user.user_id;
        self.db
            .run(move |conn| {
                let me = Self::membership(conn, user_id, id)?;
                let upto = this.writer.visible_up_to()?;
                let mut rows = events::page(conn, id, cursor, upto, limit + 1)?;
                // Nothing from before the member joined.
                rows.retain(|row| me.sees(row.seq));
                let has_more = rows.len() as i64 > limit;
                if has_more {
                    // The extra row lies beyond the page: the oldest when paging back, the
                    // newest when paging forward.
                    match cursor {
                        PageCursor::After(_) => {
                            rows.pop();
                        }
                        _ => {
                            rows.remove(0);
                        }
                    }
                }
                Ok(HistoryPage {
                    messages: this.views(conn, &rows)?,
                    has_more,
                })
            })
            .await
    }

    /// Moves the user's read position forward, tells a direct peer (a read receipt) and the
    /// user's own connections (the new unread count).
    pub async fn mark_read(
        &self,
        user: &Identity,
        id: i64,
        up_to: i64,
    ) -> Result<ReadState, AppError> {
        if up_to < 0 {
            return Err(field("up_to", "invalid", "must be a message id"));
        }
        let user_id = user.user_id;
        let kind = self.directory.kind_of(id).await?.ok_or_else(not_yours)?;
        let (position, unread, advanced) = self
            .db
            .run(move |conn| {
                Self::membership(conn, user_id, id)?;
                // Never past the newest message: nobody reads the future.
                let newest = events::newest_in(conn, id)?.unwrap_or(0);
                let before = store::read_position(conn, id, user_id)?;
                let position = store::advance_read(conn, id, user_id, up_to.min(newest))?;
                let unread = events::unread_count(conn, id, user_id, position)?;
                Ok((position, unread, position > before))
            })
            .await?;
        let peer = kind.peer_of(user_id);
        let peer_name = match peer {
            Some(peer) => Some(self.directory.name_of(peer).await?),
            None => None,
        };
        if advanced && let Some(peer) = peer {
            let receipt = ServerFrame::ReadReceipt {
                conversation_id: id,
                by: user.username.clone(),
                up_to: position,
            };
            self.bus
                .to_user(peer, &Outbound::Frame(receipt.to_text()), None);
        }
        let state = ReadState {
            conversation_id: id,
            peer: peer_name,
            up_to: position,
            unread,
        };
        let own = ServerFrame::ReadState {
            conversation_id: id,
            peer: state.peer.clone(),
            up_to: state.up_to,
            unread: state.unread,
        };
        self.bus
            .to_user(user_id, &Outbound::Frame(own.to_text()), None);
        Ok(state)
    }

    /// Makes a group titled `title` with the creator as owner and `members` in it.
    pub async fn create_group(
        &self,
        user: &Identity,
        title: &str,
        members: &[String],
    ) -> Result<ConversationView, AppError> {
        let title = valid_title(title)?;
        valid_invitees("members", members, 0)?;
        let mut ids = Vec::with_capacity(members.len());
        for name in members {
            ids.push(self.directory.resolve(name).await?.0);
        }
        let creator = user.user_id;
        let stored_title = title.clone();
        let id = self
            .db
            .run(move |conn| {
                Ok(store::insert_group(
                    conn,
                    creator,
                    &stored_title,
                    db::now(),
                )?)
            })
            .await?;
        self.change(
            user,
            id,
            MessageKind::GroupCreated,
            Change::Create {
                members: ids.clone(),
            },
            ChangeDetails {
                users: ids,
                role: None,
                title: Some(title),
            },
        )
        .await?;
        self.conversation(user, id).await
    }

    /// Changes a group's members, roles or title.
    pub async fn change_group(
        &self,
        user: &Identity,
        id: i64,
        change: GroupChange,
    ) -> Result<(), AppError> {
        let kind = self.directory.kind_of(id).await?.ok_or_else(not_yours)?;
        if let ConversationKind::Direct(low, high) = kind {
            // Only its members learn that it exists.
            return Err(if user.user_id == low || user.user_id == high {
                AppError::new(
                    ErrorCode::NotAGroup,
                    "a direct conversation keeps its two members and has no title",
                )
            } else {
                not_yours()
            });
        }
        let (kind, change, details) = match change {
            GroupChange::Add(names) => {
                valid_invitees("users", &names, 1)?;
                let mut users = Vec::with_capacity(names.len());
                for name in &names {
                    users.push(self.directory.resolve(name).await?.0);
                }
                (
                    MessageKind::MembersAdded,
                    Change::Add {
                        users: users.clone(),
                    },
                    ChangeDetails {
                        users,
                        ..ChangeDetails::default()
                    },
                )
            }
            GroupChange::Remove(name) => {
                let (target, _) = self.directory.resolve(&name).await?;
                if target == user.user_id {
                    (
                        MessageKind::MemberLeft,
                        Change::Leave,
                        ChangeDetails::default(),
                    )
                } else {
                    (
                        MessageKind::MemberRemoved,
                        Change::Remove { user: target },
                        ChangeDetails {
                            users: vec![target],
                            ..ChangeDetails::default()
                        },
                    )
                }
            }
            GroupChange::Leave => (
                MessageKind::MemberLeft,
                Change::Leave,
                ChangeDetails::default(),
            ),
            GroupChange::SetRole(name, role) => {
                let (target, _) = self.directory.resolve(&name).await?;
                (
                    MessageKind::RoleChanged,
                    Change::SetRole { user: target, role },
                    ChangeDetails {
                        users: vec![target],
                        role: Some(role),
                        title: None,
                    },
                )
            }
            GroupChange::Rename(title) => {
                let title = valid_title(&title)?;
                (
                    MessageKind::TitleChanged,
                    Change::Rename {
                        title: title.clone(),
                    },
                    ChangeDetails {
                        title: Some(title),
                        ..ChangeDetails::default()
                    },
                )
            }
        };
        self.change(user, id, kind, change, details)
            .await
            .map(|_| ())
    }

    /// Stores a change as an event of the conversation's log: checked against the members and
    /// applied in the event's own transaction, then delivered like a message.
    async fn change(
        &self,
        user: &Identity,
        id: i64,
        kind: MessageKind,
        change: Change,
        details: ChangeDetails,
    ) -> Result<MessageView, AppError> {
        let stored = self
            .store(PendingMessage {
                row: NewEvent::new(
                    id,
                    user.user_id,
                    kind.as_str(),
                    details.to_body(),
                    // The server's own key: every batch reads its rows back by key.
                    format!("~{}", random_token(16)),
                    db::now(),
                ),
                peer: None,
                change: Some(change),
                origin: None,
                reply: None,
            })
            .await?;
        Ok(stored.message)
    }
}
