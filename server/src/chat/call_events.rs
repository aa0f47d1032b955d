//! What calls need from conversations: who a call in a conversation reaches, and the
//! `call_started` / `call_ended` events it leaves in a group's history.

use crate::db::conversations as store;
use crate::db::{self, events::NewEvent};
use crate::error::AppError;

use super::directory::ConversationKind;
use super::service::not_yours;
use super::writer::PendingMessage;
use super::{CallSummary, Chat, Identity, MessageKind};

/// Who a call placed in a conversation rings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallAudience {
    /// A direct conversation: a call to the other user.
    Direct { peer_id: i64, peer_name: String },
    /// A group: every current member (the caller included).
    Group { members: Vec<i64> },
}

impl Chat {
    /// Who a call by `user` in conversation `id` reaches; `conversation_not_found` unless
    /// `user` is a member of it now.
    pub async fn call_audience(&self, user: &Identity, id: i64) -> Result<CallAudience, AppError> {
        match self.directory.kind_of(id).await? {
            Some(ConversationKind::Direct(low, high))
                if user.user_id == low || user.user_id == high =>
            {
                let peer_id = if user.user_id == low { high } else { low };
                let peer_name = self.directory.name_of(peer_id).await?;
                Ok(CallAudience::Direct { peer_id, peer_name })
            }
            Some(ConversationKind::Group) => {
                let user_id = user.user_id;
                self.db
                    .run(move |conn| {
                        let members: Vec<i64> = store::current_members(conn, &[id])?
                            .into_iter()
                            .map(|m| m.user_id)
                            .collect();
                        if members.contains(&user_id) {
                            Ok(CallAudience::Group { members })
                        } else {
                            Err(not_yours())
                        }
                    })
                    .await
            }
            _ => Err(not_yours()),
        }
    }

    /// Stores a group call's start or end in the group's history (once per call and kind:
    /// the key makes a retry a no-op) and fans it out like a message.
    pub async fn store_call_event(
        &self,
        conversation_id: i64,
        starter: &Identity,
        kind: MessageKind,
        call: &CallSummary,
    ) -> Result<(), AppError> {
        let key = format!("~call-{}-{}", call.call_id, kind.as_str());
        self.store(PendingMessage {
            row: NewEvent::new(
                conversation_id,
                starter.user_id,
                kind.as_str(),
                call.to_body(),
                key,
                db::now(),
            ),
            peer: None,
            change: None,
            origin: None,
            reply: None,
        })
        .await
        .map(drop)
    }
}
