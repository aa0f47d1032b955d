//! Single-use WebSocket tickets. A browser cannot set headers on a WebSocket, and an access token
//! must never sit in a URL (URLs reach logs), so it trades its token for a ticket that works once,
//! for 30 seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::auth::tokens::{hash_refresh_token, random_token};
use crate::chat::Identity;

pub const TICKET_TTL: Duration = Duration::from_secs(30);

#[derive(Clone, Default)]
pub struct Tickets {
    /// Keyed by the ticket's hash: a memory dump does not reveal usable tickets.
    issued: Arc<Mutex<HashMap<String, (Identity, Instant)>>>,
}

impl Tickets {
    pub fn issue(&self, identity: Identity) -> String {
        let ticket = random_token(32);
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        issued.retain(|_, (_, expires)| *expires > now);
        issued.insert(hash_refresh_token(&ticket), (identity, now + TICKET_TTL));
        ticket
    }

    /// The identity the ticket was issued to, if it is valid; it can never be used again.
    pub fn redeem(&self, ticket: &str) -> Option<Identity> {
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let (identity, expires) = issued.remove(&hash_refresh_token(ticket))?;
        (expires > Instant::now()).then_some(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_works_once() {
        let tickets = Tickets::default();
        let ticket = tickets.issue(Identity {
            user_id: 1,
            username: "ann".into(),
        });
        assert_eq!(tickets.redeem(&ticket).map(|i| i.user_id), Some(1));
        assert!(tickets.redeem(&ticket).is_none());
        assert!(tickets.redeem("made-up").is_none());
    }
}
