//! The fan-out seam: everything that reaches a user goes through [`Bus`]. Today it delivers
//! in-process through the local [`Hub`]; the Redis implementation (several instances) plugs in
//! here without changing any caller.

use crate::ws::hub::{ConnId, Hub, Outbound};

#[derive(Clone)]
pub struct Bus {
    hub: Hub,
}

impl Bus {
    pub fn in_process(hub: Hub) -> Self {
        Self { hub }
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Delivers to every connection of `user_id`, except `except` if given.
    pub fn to_user(&self, user_id: i64, out: &Outbound, except: Option<ConnId>) {
        self.hub.send_to_user(user_id, out, except);
    }

    /// Delivers to one connection of `user_id`.
    pub fn to_conn(&self, user_id: i64, conn: ConnId, out: &Outbound) {
        self.hub.send_to_conn(user_id, conn, out);
    }

    /// Whether `user_id` has a connection anywhere.
    pub fn is_online(&self, user_id: i64) -> bool {
        self.hub.is_online(user_id)
    }
}
