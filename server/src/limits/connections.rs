//! Open WebSockets per user and per client address, on this instance.
//!
//! Counted per instance on purpose: what too many sockets exhaust is an instance's memory and
//! file descriptors, and a cluster-wide count would need a Redis round trip on every connect
//! and disconnect plus a way to forget a crashed instance's share. Behind a load balancer a user
//! can therefore hold up to the limit on each instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Open {
    users: HashMap<i64, u32>,
    addresses: HashMap<String, u32>,
}

#[derive(Clone)]
pub struct Connections {
    open: Arc<Mutex<Open>>,
    per_user: u32,
    per_address: u32,
}

/// Which limit a refused connection met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    User,
    Address,
}

/// One open connection, counted until dropped.
pub struct ConnectionPermit {
    open: Arc<Mutex<Open>>,
    user_id: i64,
    address: String,
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Connections {
    pub fn new(per_user: u32, per_address: u32) -> Self {
        Self {
            open: Arc::default(),
            per_user,
            per_address,
        }
    }

    /// Counts a connection of `user_id` from `address`, unless either is at its limit.
    pub fn open(&self, user_id: i64, address: String) -> Result<ConnectionPermit, Full> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let users = open.users.get(&user_id).copied().unwrap_or(0);
        if users >= self.per_user {
            return Err(Full::User);
        }
        let addresses = open.addresses.get(&address).copied().unwrap_or(0);
        if addresses >= self.per_address {
            return Err(Full::Address);
        }
        open.users.insert(user_id, users + 1);
        open.addresses.insert(address.clone(), addresses + 1);
        Ok(ConnectionPermit {
            open: self.open.clone(),
            user_id,
            address,
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        decrement(&mut open.users, &self.user_id);
        decrement(&mut open.addresses, &self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_until_dropped() {
        let connections = Connections::new(2, 3);
        let a = connections.open(1, "x".into()).expect("first");
        let _b = connections.open(1, "x".into()).expect("second");
        assert_eq!(connections.open(1, "y".into()).err(), Some(Full::User));
        let _c = connections.open(2, "x".into()).expect("another user");
        assert_eq!(connections.open(3, "x".into()).err(), Some(Full::Address));
        drop(a);
        assert!(
            connections.open(1, "y".into()).is_ok(),
            "a closed one frees its place"
        );
    }
}
