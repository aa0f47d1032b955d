//! Calls: rooms by name (the original PyChat flow), direct ringing calls, addressed WebRTC
//! signaling, and ICE server configuration. The rules live in [`rooms`] as a state machine with
//! no I/O; [`service::Calls`] applies its decisions (deliveries, timers, missed-call messages).

mod events;
pub mod ice;
pub mod rooms;
mod service;

pub use events::CallEvent;
pub use service::{CallLimits, Calls};

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    Offer,
    Answer,
    Candidate,
    EndOfCandidates,
}

impl SignalKind {
    /// Largest accepted payload, serialised: an SDP may be large, a candidate is not.
    pub fn max_payload_bytes(self) -> usize {
        match self {
            Self::Offer | Self::Answer => 64 * 1024,
            Self::Candidate | Self::EndOfCandidates => 4 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallMedia {
    Audio,
    Video,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// The member left.
    Left,
    /// The member's connection dropped and the grace period ran out.
    Timeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallEndReason {
    /// The callee declined.
    Declined,
    /// The caller hung up before an answer.
    Cancelled,
    /// Nobody answered in time (the caller sees this).
    Timeout,
    /// Nobody answered in time (the callee's devices see this; a missed-call entry is stored).
    Missed,
    /// Another of the callee's devices answered.
    AnsweredElsewhere,
    /// A group call stopped ringing here: declined, or nobody here answered in time (the call
    /// may go on: join it from the group while it lasts).
    StoppedRinging,
}

/// A member of a room as everyone in it sees them.
#[derive(Debug, Clone, Serialize, TS, ToSchema, PartialEq, Eq)]
pub struct MemberView {
    /// Issued by the server per connection; one user with two tabs is two peers.
    pub peer_id: String,
    pub username: String,
    pub muted: bool,
    pub camera: bool,
    pub screen: bool,
    /// False while the member's connection is gone and its seat is held for the grace period.
    pub connected: bool,
}

/// A room's public state.
#[derive(Debug, Clone, Serialize, TS, ToSchema, PartialEq, Eq)]
pub struct RoomView {
    pub name: String,
    /// The creator's peer id.
    pub creator: String,
    pub creator_username: String,
    pub session_started: bool,
    /// A direct call's private room: nobody can join it by name.
    pub direct: bool,
    /// The group whose call this is (nobody joins it by name; its members join with
    /// `call {conversation_id}`).
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<i64>,
    /// A group call's id (as in `incoming_call`).
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    pub max_peers: u32,
    /// In the order they joined.
    pub members: Vec<MemberView>,
}
