//! What the room and call rules decide to tell someone: domain events, made into frames at the
//! edge (`ws::protocol::ServerFrame::from_call`). A reply to the caller is one of them too
//! (`RoomCreated`, `RoomJoined`, `CallRinging`); the request's id is added at the edge.

use super::{CallEndReason, CallMedia, LeaveReason, MemberView, RoomView, SignalKind};

#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    RoomCreated {
        room: RoomView,
        peer_id: String,
    },
    RoomJoined {
        room: RoomView,
        peer_id: String,
    },
    MemberJoined {
        room: String,
        member: MemberView,
    },
    MemberLeft {
        room: String,
        peer_id: String,
        username: String,
        reason: LeaveReason,
        creator: String,
    },
    MemberDisconnected {
        room: String,
        peer_id: String,
    },
    MemberReconnected {
        room: String,
        peer_id: String,
    },
    RoomEnded {
        room: String,
        by: String,
    },
    SessionStarted {
        room: String,
        peers: Vec<MemberView>,
    },
    Signal {
        from: String,
        from_user: String,
        kind: SignalKind,
        payload: serde_json::Value,
    },
    PeerState {
        room: String,
        peer_id: String,
        username: String,
        muted: bool,
        camera: bool,
        screen: bool,
    },
    IncomingCall {
        call_id: String,
        from: String,
        media: CallMedia,
        conversation_id: Option<i64>,
    },
    CallRinging {
        call_id: String,
        to: String,
        media: CallMedia,
    },
    CallAccepted {
        call_id: String,
        room: RoomView,
        peer_id: String,
    },
    CallEnded {
        call_id: String,
        reason: CallEndReason,
    },
}
