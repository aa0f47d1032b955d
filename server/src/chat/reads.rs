//! Read positions: a member's moves forward, with a receipt for a direct peer and the new
//! unread count for the member's own connections.

use serde::Serialize;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::db;
use crate::db::conversations as store;
use crate::db::events::{self, NewEvent};
use crate::error::AppError;

use super::service::{field, not_yours};
use super::writer::PendingMessage;
use super::{Chat, Identity, MessageKind, Notice, ReadMark};

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

impl Chat {
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
        let (before, mark) = self
            .db
            .run(move |conn| {
                Self::membership(conn, user_id, id)?;
                // Never past the newest message: nobody reads the future.
                let newest = events::newest_in(conn, id)?.unwrap_or(0);
                let before = store::read_position(conn, id, user_id)?;
                let up_to = before.max(up_to.min(newest));
                let unread = events::unread_count(conn, id, user_id, up_to)?;
                Ok((before, ReadMark { up_to, unread }))
            })
            .await?;
        let peer = kind.peer_of(user_id);
        let state = ReadState {
            conversation_id: id,
            peer: match peer {
                Some(peer) => Some(self.directory.name_of(peer).await?),
                None => None,
            },
            up_to: mark.up_to,
            unread: mark.unread,
        };
        if mark.up_to <= before {
            // Nothing moved: nothing to log; the reader's connections hear where they stand.
            self.bus
                .notify([user_id], &Notice::ReadState(state.clone()));
            return Ok(state);
        }
        // The move is an event of the log (stored, with the position, in one transaction):
        // the reader's devices and a direct peer learn it live or when they resume.
        let read_kind = if peer.is_some() {
            MessageKind::Read
        } else {
            MessageKind::ReadOwn
        };
        self.store(PendingMessage {
            row: NewEvent::new(
                id,
                user_id,
                read_kind.as_str(),
                serde_json::to_string(&mark).unwrap_or_default(),
                format!("~read-{id}-{}", mark.up_to),
                db::now(),
            ),
            peer,
            change: None,
            origin: None,
            reply: None,
        })
        .await?;
        Ok(state)
    }
}
