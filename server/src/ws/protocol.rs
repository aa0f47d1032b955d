//! The WebSocket protocol, defined once. JSON text frames, each an object tagged by `type`.
//! `web/src/generated/protocol.ts` is generated from these types (see [`typescript`]); a test
//! fails when that file is stale. `docs/protocol.md` describes every frame.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::calls::{
    CallEndReason, CallEvent, CallMedia, LeaveReason, MemberView, RoomView, SignalKind,
};
use crate::chat::{MessageView, Notice, PresenceStatus};
use crate::error::ErrorCode;

/// Bumped when a change would break existing clients.
pub const PROTOCOL_VERSION: u32 = 2;

/// Longest accepted client-chosen frame `id`.
pub const MAX_FRAME_ID_LEN: usize = 64;

/// A frame from the client. `id`, if given, is echoed in the reply (`ack`, `ok`, `pong` or
/// `error`).
#[derive(Debug, Deserialize, TS)]
pub struct ClientEnvelope {
    #[ts(optional)]
    pub id: Option<String>,
    #[serde(flatten)]
    pub frame: ClientFrame,
}

#[derive(Debug, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Send a message to a conversation (`conversation_id`), or to a user (`to`: their direct
    /// conversation, opened by the first message). Retrying with the same `client_msg_id`
    /// never stores it twice.
    Send {
        #[ts(optional)]
        #[serde(default)]
        conversation_id: Option<i64>,
        #[ts(optional)]
        #[serde(default)]
        to: Option<String>,
        body: String,
        client_msg_id: String,
    },
    /// Mark a conversation (`conversation_id`, or the direct one with `peer`) read up to
    /// message `up_to`.
    Read {
        #[ts(optional)]
        #[serde(default)]
        conversation_id: Option<i64>,
        #[ts(optional)]
        #[serde(default)]
        peer: Option<String>,
        up_to: i64,
    },
    /// The user is typing in a conversation (`conversation_id`, or the direct one with `to`).
    /// Relayed (throttled), never stored.
    Typing {
        #[ts(optional)]
        #[serde(default)]
        conversation_id: Option<i64>,
        #[ts(optional)]
        #[serde(default)]
        to: Option<String>,
    },
    /// Application-level keep-alive; answered with `pong`.
    Ping {},
    /// Create a call room by name and join it as its creator.
    RoomCreate {
        name: String,
    },
    /// Join an open room by name.
    RoomJoin {
        name: String,
    },
    /// After a reconnect: take back the seat `peer_id` held in room `name` (within the grace
    /// period).
    RoomRejoin {
        name: String,
        peer_id: String,
    },
    /// Leave the current room.
    RoomLeave {},
    /// End the current room for everyone (its creator only).
    RoomEnd {},
    /// Start the session: members may now exchange offers (the creator only, once someone joined).
    SessionStart {},
    /// Relay WebRTC signaling to one peer of the same room. `payload` is opaque to the server.
    Signal {
        to: String,
        kind: SignalKind,
        #[ts(type = "unknown")]
        payload: serde_json::Value,
    },
    /// This peer's media state, broadcast to the room.
    PeerState {
        muted: bool,
        camera: bool,
        screen: bool,
    },
    /// Ring every connection of `to`, or call a conversation: in a direct one, its other user;
    /// in a group, every member (or join the group's call if one is going on).
    Call {
        #[ts(optional)]
        #[serde(default)]
        to: Option<String>,
        #[ts(optional)]
        #[serde(default)]
        conversation_id: Option<i64>,
        media: CallMedia,
    },
    /// Answer a ringing call (from any one of the callee's connections).
    CallAccept {
        call_id: String,
    },
    CallDecline {
        call_id: String,
    },
    /// The caller gives up before an answer.
    CallCancel {
        call_id: String,
    },
}

impl ClientFrame {
    /// Every `type` the client may send, for telling an unknown type from a malformed frame.
    pub const TYPES: &'static [&'static str] = &[
        "send",
        "read",
        "typing",
        "ping",
        "room_create",
        "room_join",
        "room_rejoin",
        "room_leave",
        "room_end",
        "session_start",
        "signal",
        "peer_state",
        "call",
        "call_accept",
        "call_decline",
        "call_cancel",
    ];
}

/// The signed-in user, as `hello` states it.
#[derive(Debug, Clone, Serialize, TS)]
pub struct HelloUser {
    pub id: i64,
    pub username: String,
    pub display_name: String,
}

/// A frame from the server.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Always the first frame on a connection.
    Hello {
        user: HelloUser,
        connection_id: String,
        heartbeat_interval_ms: u64,
        protocol_version: u32,
    },
    /// The message of a `send` is stored: this is its stored form.
    Ack {
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        message: MessageView,
    },
    /// A message to or from this user (live, or replayed after a resume).
    Message {
        message: MessageView,
    },
    /// Everything after the resume cursor has been sent; live traffic follows.
    ReplayEnd {
        /// The newest message id replayed, or the cursor itself when there was nothing.
        last_id: i64,
        replayed: u32,
    },
    /// Too much was missed to replay: fetch history over REST, then continue from `newest_id`.
    ResyncRequired {
        newest_id: i64,
    },
    /// `by` (the peer of a direct conversation) has read this user's messages up to `up_to`.
    ReadReceipt {
        conversation_id: i64,
        by: String,
        up_to: i64,
        /// The read's event in the log: resume after the highest `seq` or message id seen.
        seq: i64,
    },
    /// This user's read position in a conversation changed (on any of their connections).
    ReadState {
        conversation_id: i64,
        /// In a direct conversation: the other user.
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        up_to: i64,
        unread: i64,
        /// The read's event in the log; absent when the read moved nothing (it is not logged).
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<i64>,
    },
    /// `from` is typing in the conversation.
    Typing {
        conversation_id: i64,
        from: String,
    },
    /// A user this one has a conversation with came online or went offline.
    Presence {
        user: String,
        status: PresenceStatus,
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        last_seen: Option<String>,
    },
    /// Reply to a frame that needs no other answer (`read`).
    Ok {
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Pong {
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// You created `room`; `peer_id` is this connection's id in it.
    RoomCreated {
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: RoomView,
        peer_id: String,
    },
    /// You joined (or rejoined) `room`: its creator and current members are listed.
    RoomJoined {
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        room: RoomView,
        peer_id: String,
    },
    MemberJoined {
        room: String,
        member: MemberView,
    },
    /// A member left; `creator` is the creator's peer id from now on (it passes on when the
    /// creator leaves).
    MemberLeft {
        room: String,
        peer_id: String,
        username: String,
        reason: LeaveReason,
        creator: String,
    },
    /// A member's connection dropped; its seat is kept for the grace period.
    MemberDisconnected {
        room: String,
        peer_id: String,
    },
    /// A member took its seat back on a new connection: renegotiate with it (ICE restart).
    MemberReconnected {
        room: String,
        peer_id: String,
    },
    /// The creator ended the room, or it was a direct call and one side left.
    RoomEnded {
        room: String,
        by: String,
    },
    /// The creator started the session: negotiate with every peer listed.
    SessionStarted {
        room: String,
        peers: Vec<MemberView>,
    },
    /// WebRTC signaling from `from` (a peer id), stamped by the server.
    Signal {
        from: String,
        from_user: String,
        kind: SignalKind,
        #[ts(type = "unknown")]
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
    /// Someone is calling you (sent to each of your connections).
    IncomingCall {
        call_id: String,
        from: String,
        media: CallMedia,
        /// The group being called (absent for a direct call).
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<i64>,
    },
    /// Your call is ringing on the callee's devices.
    CallRinging {
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        call_id: String,
        to: String,
        media: CallMedia,
    },
    /// The call was answered: both sides are peers of `room`, the session already started.
    CallAccepted {
        call_id: String,
        room: RoomView,
        peer_id: String,
    },
    /// The call stopped ringing without (or after) an answer on this connection.
    CallEnded {
        call_id: String,
        reason: CallEndReason,
    },
    /// A frame could not be handled. The connection stays open unless a close follows.
    Error {
        #[ts(optional)]
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        code: ErrorCode,
        message: String,
    },
}

impl ServerFrame {
    pub fn error(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            id,
            code,
            message: message.into(),
        }
    }

    /// Serialised once; the text is shared by every connection it goes to.
    /// The frame of a call event; `id` answers the request it replies to (if it is a reply).
    pub fn from_call(event: CallEvent, id: Option<String>) -> Self {
        match event {
            CallEvent::RoomCreated { room, peer_id } => Self::RoomCreated { id, room, peer_id },
            CallEvent::RoomJoined { room, peer_id } => Self::RoomJoined { id, room, peer_id },
            CallEvent::MemberJoined { room, member } => Self::MemberJoined { room, member },
            CallEvent::MemberLeft {
                room,
                peer_id,
                username,
                reason,
                creator,
            } => Self::MemberLeft {
                room,
                peer_id,
                username,
                reason,
                creator,
            },
            CallEvent::MemberDisconnected { room, peer_id } => {
                Self::MemberDisconnected { room, peer_id }
            }
            CallEvent::MemberReconnected { room, peer_id } => {
                Self::MemberReconnected { room, peer_id }
            }
            CallEvent::RoomEnded { room, by } => Self::RoomEnded { room, by },
            CallEvent::SessionStarted { room, peers } => Self::SessionStarted { room, peers },
            CallEvent::Signal {
                from,
                from_user,
                kind,
                payload,
            } => Self::Signal {
                from,
                from_user,
                kind,
                payload,
            },
            CallEvent::PeerState {
                room,
                peer_id,
                username,
                muted,
                camera,
                screen,
            } => Self::PeerState {
                room,
                peer_id,
                username,
                muted,
                camera,
                screen,
            },
            CallEvent::IncomingCall {
                call_id,
                from,
                media,
                conversation_id,
            } => Self::IncomingCall {
                call_id,
                from,
                media,
                conversation_id,
            },
            CallEvent::CallRinging { call_id, to, media } => Self::CallRinging {
                id,
                call_id,
                to,
                media,
            },
            CallEvent::CallAccepted {
                call_id,
                room,
                peer_id,
            } => Self::CallAccepted {
                call_id,
                room,
                peer_id,
            },
            CallEvent::CallEnded { call_id, reason } => Self::CallEnded { call_id, reason },
        }
    }

    /// The frame a user gets for a stored event: its `message`, or for a read, the reader's own
    /// `read_state` (`for_reader`) or the other member's `read_receipt`.
    pub fn of_event(message: MessageView, for_reader: bool) -> Self {
        let Some(mark) = message.read.filter(|_| message.kind.is_read()) else {
            return Self::Message { message };
        };
        if for_reader {
            Self::ReadState {
                conversation_id: message.conversation_id,
                peer: message.to,
                up_to: mark.up_to,
                unread: mark.unread,
                seq: Some(message.id),
            }
        } else {
            Self::ReadReceipt {
                conversation_id: message.conversation_id,
                by: message.from,
                up_to: mark.up_to,
                seq: message.id,
            }
        }
    }

    /// The frame of one of chat's notices.
    pub fn from_notice(notice: &Notice) -> Self {
        match notice.clone() {
            Notice::ReadState(state) => Self::ReadState {
                conversation_id: state.conversation_id,
                peer: state.peer,
                up_to: state.up_to,
                unread: state.unread,
                seq: None,
            },
            Notice::Typing {
                conversation_id,
                from,
            } => Self::Typing {
                conversation_id,
                from,
            },
            Notice::Presence {
                user,
                status,
                last_seen,
            } => Self::Presence {
                user,
                status,
                last_seen,
            },
        }
    }

    pub fn to_text(&self) -> super::FrameText {
        // Serialising these types cannot fail: no maps with non-string keys, no custom impls.
        serde_json::to_string(self)
            .unwrap_or_else(|_| {
                String::from(
                    r#"{"type":"error","code":"internal_error","message":"serialisation failed"}"#,
                )
            })
            .into()
    }
}

/// Why a text frame could not be read, with the id to echo when one could be read.
#[derive(Debug)]
pub struct FrameError {
    pub id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

/// Parses a client frame. Only on failure is the text read a second time, to tell malformed JSON
/// from an unknown type from a missing or mistyped field, and to recover the `id`.
pub fn parse_client_frame(text: &str) -> Result<ClientEnvelope, FrameError> {
    let err = match serde_json::from_str::<ClientEnvelope>(text) {
        Ok(envelope) => {
            if envelope
                .id
                .as_ref()
                .is_some_and(|id| id.len() > MAX_FRAME_ID_LEN)
            {
                return Err(FrameError {
                    id: None,
                    code: ErrorCode::InvalidFrame,
                    message: format!("id must be at most {MAX_FRAME_ID_LEN} bytes"),
                });
            }
            if crate::input::json_has_nul(text) {
                return Err(FrameError {
                    id: envelope.id,
                    code: ErrorCode::ValidationFailed,
                    message: crate::input::NUL_MESSAGE.into(),
                });
            }
            return Ok(envelope);
        }
        Err(err) => err,
    };

    #[derive(Deserialize)]
    struct Head {
        id: Option<serde_json::Value>,
        #[serde(rename = "type")]
        kind: Option<serde_json::Value>,
    }
    let head = match serde_json::from_str::<Head>(text) {
        // serde reads a struct from an array too (`["id","type"]`): only an object is a frame.
        Ok(head) if is_object(text) => head,
        _ => {
            return Err(FrameError {
                id: None,
                code: if err.is_data() {
                    ErrorCode::InvalidFrame
                } else {
                    ErrorCode::InvalidJson
                },
                message: if err.is_data() {
                    "a frame must be a JSON object with a string \"type\"".into()
                } else {
                    format!(
                        "malformed JSON: {}",
                        crate::input::describe_json_error(&err)
                    )
                },
            });
        }
    };
    let id = head
        .id
        .and_then(|v| v.as_str().map(str::to_owned))
        .filter(|id| id.len() <= MAX_FRAME_ID_LEN);
    let (code, message) = match head.kind.as_ref().and_then(|v| v.as_str()) {
        None => (
            ErrorCode::InvalidFrame,
            "missing string field \"type\"".to_string(),
        ),
        Some(kind) if !ClientFrame::TYPES.contains(&kind) => (
            ErrorCode::UnknownFrameType,
            format!(
                "unknown frame type {kind:?}; expected one of {}",
                ClientFrame::TYPES.join(", ")
            ),
        ),
        Some(_) => (
            ErrorCode::InvalidFrame,
            crate::input::describe_json_error(&err),
        ),
    };
    Err(FrameError { id, code, message })
}

/// The `id` of a frame that will not be handled (rate limited), read without parsing the rest.
pub fn frame_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    if !is_object(text) {
        return None;
    }
    serde_json::from_str::<IdOnly>(text)
        .ok()
        .and_then(|f| f.id)
        .filter(|id| id.len() <= MAX_FRAME_ID_LEN)
}

/// Whether a JSON text (known to be valid) is an object.
fn is_object(text: &str) -> bool {
    text.trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
}

/// The TypeScript declarations of the protocol, as committed in `web/src/generated/protocol.ts`.
pub fn typescript() -> String {
    let cfg = ts_rs::Config::new().with_large_int("number");
    let declarations = [
        ClientEnvelope::decl(&cfg),
        ClientFrame::decl(&cfg),
        HelloUser::decl(&cfg),
        ServerFrame::decl(&cfg),
        MessageView::decl(&cfg),
        crate::chat::CallSummary::decl(&cfg),
        crate::chat::MessageKind::decl(&cfg),
        crate::chat::Role::decl(&cfg),
        PresenceStatus::decl(&cfg),
        RoomView::decl(&cfg),
        MemberView::decl(&cfg),
        SignalKind::decl(&cfg),
        CallMedia::decl(&cfg),
        LeaveReason::decl(&cfg),
        CallEndReason::decl(&cfg),
        ErrorCode::decl(&cfg),
    ];
    let mut out = String::from(
        "// Generated from server/src/ws/protocol.rs by `cargo test -p pychat protocol`.\n\
         // Do not edit: change the Rust types and run `PYCHAT_BLESS=1 cargo test -p pychat protocol`.\n\n",
    );
    for declaration in declarations {
        out.push_str("export ");
        out.push_str(&declaration);
        out.push_str("\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_send_with_its_id() {
        let envelope = parse_client_frame(
            r#"{"type":"send","id":"7","to":"bob","body":"hi","client_msg_id":"c1"}"#,
        )
        .expect("valid");
        assert_eq!(envelope.id.as_deref(), Some("7"));
        assert!(
            matches!(envelope.frame, ClientFrame::Send { ref to, .. } if to.as_deref() == Some("bob"))
        );
    }

    #[test]
    fn every_listed_type_parses() {
        let samples = [
            r#"{"type":"send","to":"b","body":"x","client_msg_id":"c"}"#,
            r#"{"type":"read","peer":"b","up_to":1}"#,
            r#"{"type":"typing","to":"b"}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"room_create","name":"r"}"#,
            r#"{"type":"room_join","name":"r"}"#,
            r#"{"type":"room_rejoin","name":"r","peer_id":"p1"}"#,
            r#"{"type":"room_leave"}"#,
            r#"{"type":"room_end"}"#,
            r#"{"type":"session_start"}"#,
            r#"{"type":"signal","to":"p1","kind":"offer","payload":{"sdp":"v=0"}}"#,
            r#"{"type":"peer_state","muted":true,"camera":false,"screen":false}"#,
            r#"{"type":"call","to":"b","media":"video"}"#,
            r#"{"type":"call_accept","call_id":"c"}"#,
            r#"{"type":"call_decline","call_id":"c"}"#,
            r#"{"type":"call_cancel","call_id":"c"}"#,
        ];
        assert_eq!(samples.len(), ClientFrame::TYPES.len());
        for sample in samples {
            assert!(parse_client_frame(sample).is_ok(), "{sample}");
        }
    }

    #[test]
    fn classifies_bad_frames_and_keeps_the_id() {
        let cases = [
            ("{nope", ErrorCode::InvalidJson, None),
            ("[1,2]", ErrorCode::InvalidFrame, None),
            (r#"["a","fly"]"#, ErrorCode::InvalidFrame, None),
            (r#" ["a","send"]"#, ErrorCode::InvalidFrame, None),
            (r#"{"id":"a"}"#, ErrorCode::InvalidFrame, Some("a")),
            (
                r#"{"id":"b","type":"fly"}"#,
                ErrorCode::UnknownFrameType,
                Some("b"),
            ),
            (
                r#"{"id":"c","type":"send","to":"x"}"#,
                ErrorCode::InvalidFrame,
                Some("c"),
            ),
            (
                r#"{"id":"d","type":"read","peer":"x","up_to":"many"}"#,
                ErrorCode::InvalidFrame,
                Some("d"),
            ),
        ];
        for (text, code, id) in cases {
            let err = parse_client_frame(text).expect_err(text);
            assert_eq!(err.code, code, "{text}");
            assert_eq!(err.id.as_deref(), id, "{text}");
        }
    }

    #[test]
    fn server_frames_are_tagged() {
        let text = ServerFrame::Pong {
            id: Some("9".into()),
        }
        .to_text();
        assert_eq!(&*text, r#"{"type":"pong","id":"9"}"#);
        let text = ServerFrame::Pong { id: None }.to_text();
        assert_eq!(&*text, r#"{"type":"pong"}"#);
    }
}
