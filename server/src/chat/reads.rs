//! Read positions: a member's moves forward, with a receipt for a direct peer and the new
//! unread count for the member's own connections.

use serde::Serialize;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::db::conversations as store;
use crate::db::events;
use crate::error::AppError;

use super::service::{field, not_yours};
use super::{Chat, Identity, Notice};

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
            let receipt = Notice::ReadReceipt {
                conversation_id: id,
                by: user.username.clone(),
                up_to: position,
            };
            self.bus.notify([peer], &receipt);
        }
        let state = ReadState {
            conversation_id: id,
            peer: peer_name,
            up_to: position,
            unread,
        };
        self.bus
            .notify([user_id], &Notice::ReadState(state.clone()));
        Ok(state)
    }
}
