//! Direct messages: the rules (who may send what to whom), group-committed storage, history,
//! conversations, read positions, typing and presence. No actix types here.

mod call_events;
mod conversations;
mod directory;
mod groups;
mod history;
pub mod membership;
mod notice;
mod reads;
mod release_order;
mod service;
mod typing;
mod writer;

pub use call_events::CallAudience;
pub use conversations::{ActiveCall, ConversationPage, ConversationType, ConversationView};
pub use directory::{ConversationKind, Directory};
pub use groups::{ConversationMember, GroupChange, MAX_TITLE_CHARS, MemberList};
pub use history::HistoryPage;
pub use membership::Role;
pub use notice::Notice;
pub use reads::ReadState;
pub use service::{Chat, ChatLimits, Identity, Replay, Target};
pub use writer::{MAX_BATCH, MAX_WRITERS, MessageWriter, default_writers};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use ts_rs::TS;
use utoipa::ToSchema;

use crate::calls::CallMedia;
use crate::db::events::EventRow;

/// Longest message body, in characters after trimming.
pub const MAX_BODY_CHARS: usize = 4000;
/// Longest `client_msg_id`.
pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;

/// What an event of a conversation is: a message, or a change to the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Written by a user.
    Text,
    /// Left by the server when a direct call went unanswered.
    MissedCall,
    /// `from` made the group (titled `title`) with `subjects` as its first members.
    GroupCreated,
    /// `from` added `subjects`.
    MembersAdded,
    /// `from` removed `subjects`.
    MemberRemoved,
    /// `from` left; `subjects` (if any) owns the group from now on.
    MemberLeft,
    /// `from` gave `subjects` the role `role` (handing over ownership makes `from` an admin).
    RoleChanged,
    /// `from` renamed the group to `title`.
    TitleChanged,
    /// `from` started a call in the group (`call` says which); members may join while it lasts.
    CallStarted,
    /// The group's call (`call`, with its duration) ended: its last member left.
    CallEnded,
    /// `from` read a direct conversation up to a point: never a `message`, it reaches clients as
    /// `read_receipt` (the other member) and `read_state` (the reader's own connections).
    #[serde(skip)]
    #[ts(skip)]
    Read,
    /// `from` read a group up to a point: a `read_state` for the reader's own connections only.
    #[serde(skip)]
    #[ts(skip)]
    ReadOwn,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::MissedCall => "missed_call",
            Self::GroupCreated => "group_created",
            Self::MembersAdded => "members_added",
            Self::MemberRemoved => "member_removed",
            Self::MemberLeft => "member_left",
            Self::RoleChanged => "role_changed",
            Self::TitleChanged => "title_changed",
            Self::CallStarted => "call_started",
            Self::CallEnded => "call_ended",
            Self::Read => "read",
            Self::ReadOwn => "read_own",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "missed_call" => Self::MissedCall,
            "group_created" => Self::GroupCreated,
            "members_added" => Self::MembersAdded,
            "member_removed" => Self::MemberRemoved,
            "member_left" => Self::MemberLeft,
            "role_changed" => Self::RoleChanged,
            "title_changed" => Self::TitleChanged,
            "call_started" => Self::CallStarted,
            "call_ended" => Self::CallEnded,
            "read" => Self::Read,
            "read_own" => Self::ReadOwn,
            _ => Self::Text,
        }
    }

    /// A change to the conversation itself (members, roles, title).
    pub fn is_change(self) -> bool {
        !matches!(
            self,
            Self::Text
                | Self::MissedCall
                | Self::CallStarted
                | Self::CallEnded
                | Self::Read
                | Self::ReadOwn
        )
    }

    /// A member's read position moved.
    pub fn is_read(self) -> bool {
        matches!(self, Self::Read | Self::ReadOwn)
    }

    fn is_call(self) -> bool {
        matches!(self, Self::CallStarted | Self::CallEnded)
    }
}

/// Which call a `call_started` / `call_ended` event is about (stored as its body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS, ToSchema)]
pub struct CallSummary {
    pub call_id: String,
    pub media: CallMedia,
    /// How long it lasted, in whole seconds (on `call_ended`).
    #[ts(optional)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
}

/// Where a read moved the reader's position, and what was left unread after it (stored as a read
/// event's body).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMark {
    pub up_to: i64,
    pub unread: i64,
}

impl CallSummary {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What a change event stores in its body: who it is about, and the role or title it set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeDetails {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl ChangeDetails {
    pub fn parse(body: &str) -> Self {
        serde_json::from_str(body).unwrap_or_default()
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// An event of a conversation as clients see it: a stored message, or a change to the
/// conversation (`kind` says which).
#[derive(Debug, Clone, Serialize, TS, ToSchema, PartialEq, Eq)]
pub struct MessageView {
    /// Server id: its seq in the event log, which increases monotonically across all
    /// conversations; order a conversation by it, resume after the highest seen.
    pub id: i64,
    /// The conversation it belongs to.
    pub conversation_id: i64,
    pub from: String,
    /// In a direct conversation: the other user. Absent in a group.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub kind: MessageKind,
    /// The text of a message; empty for a change.
    pub body: String,
    /// The sender's idempotency key (the server's own, starting with `~`, for changes).
    pub client_msg_id: String,
    /// Server time, UTC, RFC 3339.
    #[ts(type = "string")]
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// A change's users: added, removed, given a role, or the new owner.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<String>>,
    /// The role a `role_changed` gave.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// A group's title, as created or renamed.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The call a `call_started` or `call_ended` is about.
    #[ts(optional)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<CallSummary>,
    /// A read event's mark (never serialised: such an event becomes a read frame).
    #[ts(skip)]
    #[serde(skip)]
    #[schema(ignore)]
    pub read: Option<ReadMark>,
}

impl MessageView {
    /// `to`: the other user of a direct conversation. `name` gives a user's name by id.
    pub fn from_row(row: &EventRow, to: Option<i64>, name: impl Fn(i64) -> String) -> Self {
        let kind = MessageKind::parse(&row.kind);
        let read = kind
            .is_read()
            .then(|| serde_json::from_str::<ReadMark>(&row.body).unwrap_or_default());
        let (body, details, call) = if kind.is_change() {
            (String::new(), ChangeDetails::parse(&row.body), None)
        } else if kind.is_read() {
            (String::new(), ChangeDetails::default(), None)
        } else if kind.is_call() {
            let call = serde_json::from_str::<CallSummary>(&row.body).ok();
            (String::new(), ChangeDetails::default(), call)
        } else {
            (row.body.clone(), ChangeDetails::default(), None)
        };
        Self {
            id: row.seq,
            conversation_id: row.conversation_id,
            from: name(row.sender_id),
            to: to.map(&name),
            kind,
            body,
            client_msg_id: row.client_msg_id.clone(),
            created_at: row.created_at.assume_utc(),
            subjects: (!details.users.is_empty())
                .then(|| details.users.iter().map(|&u| name(u)).collect()),
            role: details.role,
            title: details.title,
            call,
            read,
        }
    }

    /// The users a change names (added, removed, promoted): their names must be known to show it.
    pub fn subject_ids(row: &EventRow) -> Vec<i64> {
        if MessageKind::parse(&row.kind).is_change() {
            ChangeDetails::parse(&row.body).users
        } else {
            Vec::new()
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
