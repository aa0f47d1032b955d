//! The fan-out seam: everything that reaches a user goes through here. Stored messages go as
//! the message log ([`log`]), delivered in order by one thread per instance ([`delivery`],
//! [`sequencer`]); every other frame goes through [`Bus`]. Delivery to this instance's own
//! connections is always direct (through the [`Hub`]); with Redis configured the same frame or
//! batch is also published for the other instances (see [`redis`]).

pub mod delivery;
pub mod log;
pub mod redis;
pub mod sequencer;

use crate::calls::CallEvent;
use crate::chat::Notice;
use crate::ws::hub::{Hub, Outbound};
use crate::ws::protocol::ServerFrame;

/// A connection's id (its instance in the high half; see `ws::hub`).
pub use crate::ws::hub::ConnId;

pub use self::redis::RedisBus;

/// Who a frame goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// One connection of the user, wherever it is.
    Conn { user_id: i64, conn: ConnId },
    /// Every connection of the user.
    User(i64),
    /// Every connection of the user but one.
    UserExcept { user_id: i64, conn: ConnId },
}

#[derive(Clone)]
pub struct Bus {
    hub: Hub,
    redis: Option<RedisBus>,
}

impl Bus {
    pub fn in_process(hub: Hub) -> Self {
        Self { hub, redis: None }
    }

    pub fn with_redis(hub: Hub, redis: RedisBus) -> Self {
        Self {
            hub,
            redis: Some(redis),
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn redis(&self) -> Option<&RedisBus> {
        self.redis.as_ref()
    }

    /// Delivers to every connection of `user_id`, except `except` if given.
    pub fn to_user(&self, user_id: i64, out: &Outbound, except: Option<ConnId>) {
        self.hub.send_to_user(user_id, out, except);
        if let Some(redis) = &self.redis {
            redis.publish(user_id, 0, except.unwrap_or(0), out);
        }
    }

    /// Serialises `notice` once and delivers it to every connection of each of `users`.
    pub fn notify(&self, users: impl IntoIterator<Item = i64>, notice: &Notice) {
        let out = Outbound::Frame(ServerFrame::from_notice(notice).to_text());
        for user_id in users {
            self.to_user(user_id, &out, None);
        }
    }

    /// Serialises a call event once, as its frame, and delivers it to each address.
    pub fn send_call(&self, event: CallEvent, to: &[Address]) {
        let out = Outbound::Frame(ServerFrame::from_call(event, None).to_text());
        for address in to {
            match *address {
                Address::Conn { user_id, conn } => self.to_conn(user_id, conn, &out),
                Address::User(user_id) => self.to_user(user_id, &out, None),
                Address::UserExcept { user_id, conn } => self.to_user(user_id, &out, Some(conn)),
            }
        }
    }

    /// Delivers to one connection of `user_id`, wherever it is.
    pub fn to_conn(&self, user_id: i64, conn: ConnId, out: &Outbound) {
        if self.hub.is_local(conn) {
            self.hub.send_to_conn(user_id, conn, out);
        } else if let Some(redis) = &self.redis {
            redis.publish(user_id, conn, 0, out);
        }
    }

    /// Whether `user_id` has a connection on this instance.
    pub fn is_online(&self, user_id: i64) -> bool {
        self.hub.is_online(user_id)
    }

    /// `ok`, `degraded` (Redis unreachable: local delivery only) or `disabled`.
    pub fn status(&self) -> &'static str {
        match &self.redis {
            None => "disabled",
            Some(redis) if redis.is_healthy() => "ok",
            Some(_) => "degraded",
        }
    }
}
