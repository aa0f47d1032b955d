//! Conversations as their members see them: the list, one conversation, and the direct
//! conversation of two users. (Their history, read positions, typing and the changes to a group
//! have files of their own.)

use std::collections::HashMap;

use serde::Serialize;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::accounts::UserView;
use crate::calls::CallMedia;
use crate::db::conversations::{self as store, ConversationRow, MemberRow};
use crate::db::events::{self};
use crate::db::{DbConnection, users};
use crate::error::AppError;

use super::membership::Role;
use super::service::{field, not_yours};
use super::{Chat, Identity, MessageView, Presence};

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

impl Chat {
    /// The user's current membership of a conversation, or `conversation_not_found`.
    pub(super) fn membership(
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
}
