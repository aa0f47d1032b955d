//! What chat tells users besides the events of the log: domain notices, made into frames at the
//! edge (`ws::protocol`) and serialised once per notice by the bus.

use super::{PresenceStatus, ReadState};

#[derive(Debug, Clone)]
pub enum Notice {
    /// The user's read position, unchanged by a read (to each of their connections; a read that
    /// moves it is an event of the log instead).
    ReadState(ReadState),
    /// `from` is typing in the conversation.
    Typing { conversation_id: i64, from: String },
    /// `user` came online or went offline; `last_seen` (RFC 3339) when they went.
    Presence {
        user: String,
        status: PresenceStatus,
        last_seen: Option<String>,
    },
}
