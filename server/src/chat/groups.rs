//! Groups: made, and changed (members, roles, title) through the writer, each change an event
//! of the group's log; and who is in a conversation.

use std::collections::HashMap;

use serde::Serialize;
use time::OffsetDateTime;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::accounts::UserView;
use crate::auth::tokens::random_token;
use crate::db::conversations as store;
use crate::db::events::NewEvent;
use crate::db::{self, users};
use crate::error::{AppError, ErrorCode};

use super::directory::ConversationKind;
use super::membership::{Change, Role};
use super::service::{field, not_yours};
use super::writer::PendingMessage;
use super::{ChangeDetails, Chat, ConversationView, Identity, MessageKind, MessageView};

/// Longest group title, in characters.
pub const MAX_TITLE_CHARS: usize = 128;
/// Most users one request adds to a group (or makes one with).
pub const MAX_ADDED_AT_ONCE: usize = 100;

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
