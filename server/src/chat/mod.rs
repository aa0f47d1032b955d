//! Direct messages: the rules (who may send what to whom), group-committed storage, history,
//! conversations, read positions, typing and presence. No actix types here.

mod directory;
mod release_order;
mod service;
mod writer;

pub use directory::Directory;
pub use service::{
    Chat, ChatLimits, ConversationPage, ConversationView, HistoryPage, Identity, ReadState, Replay,
};
pub use writer::{MAX_BATCH, MAX_WRITERS, MessageWriter, default_writers};

use serde::Serialize;
use time::OffsetDateTime;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::db::events::EventRow;

/// Longest message body, in characters after trimming.
pub const MAX_BODY_CHARS: usize = 4000;
/// Longest `client_msg_id`.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Written by a user.
    Text,
    /// Left by the server when a direct call went unanswered.
    MissedCall,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::MissedCall => "missed_call",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "missed_call" => Self::MissedCall,
            _ => Self::Text,
        }
    }
}

/// A stored message as clients see it.
#[derive(Debug, Clone, Serialize, TS, ToSchema, PartialEq, Eq)]
pub struct MessageView {
    /// Server id: its seq in the event log, which increases monotonically across all
    /// conversations; order a conversation by it.
    pub id: i64,
    /// The conversation it belongs to.
    pub conversation_id: i64,
    pub from: String,
    pub to: String,
    pub kind: MessageKind,
    pub body: String,
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// Server time, UTC, RFC 3339.
    #[ts(type = "string")]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl MessageView {
    pub fn from_row(row: &EventRow, from: String, to: String) -> Self {
        Self {
            id: row.seq,
            conversation_id: row.conversation_id,
            from,
            to,
            kind: MessageKind::parse(&row.kind),
            body: row.body.clone(),
            client_msg_id: row.client_msg_id.clone(),
            created_at: row.created_at.assume_utc(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Offline,
}

/// Whether a user is connected anywhere, and when they last were.
#[derive(Debug, Clone, Serialize, ToSchema, TS, PartialEq, Eq)]
pub struct Presence {
    pub status: PresenceStatus,
    /// When the user's last connection closed (absent while online, or if never seen).
    #[ts(optional, type = "string")]
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub last_seen: Option<OffsetDateTime>,
}
