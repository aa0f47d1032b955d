//! Single-use WebSocket tickets. A browser cannot set headers on a WebSocket, and an access token
//! must never sit in a URL (URLs reach logs), so it trades its token for a ticket that works once,
//! for 30 seconds. With Redis, tickets are shared by every instance (the client may reach another
//! instance than the one that issued it); while Redis is away they are kept locally.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::auth::tokens::{hash_refresh_token, random_token};
use crate::chat::Identity;

pub const TICKET_TTL: Duration = Duration::from_secs(30);

#[derive(Clone, Default)]
pub struct Tickets {
    /// Keyed by the ticket's hash: neither memory nor Redis holds usable tickets.
    local: Arc<Mutex<HashMap<String, (Identity, Instant)>>>,
    redis: Option<ConnectionManager>,
}

fn redis_key(hash: &str) -> String {
    format!("pychat:ticket:{hash}")
}

impl Tickets {
    pub fn shared(redis: ConnectionManager) -> Self {
        Self {
            local: Arc::default(),
            redis: Some(redis),
        }
    }

    pub async fn issue(&self, identity: Identity) -> String {
        let ticket = random_token(32);
        let hash = hash_refresh_token(&ticket);
        if let Some(redis) = &self.redis {
            let value = format!("{}:{}", identity.user_id, identity.username);
            let stored: redis::RedisResult<()> = redis
                .clone()
                .set_ex(redis_key(&hash), value, TICKET_TTL.as_secs())
                .await;
            match stored {
                Ok(()) => return ticket,
                Err(err) => tracing::warn!(error = %err, "redis unavailable; ticket kept locally"),
            }
        }
        let now = Instant::now();
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local.retain(|_, (_, expires)| *expires > now);
        local.insert(hash, (identity, now + TICKET_TTL));
        ticket
    }

    /// The identity the ticket was issued to, if it is valid; it can never be used again.
    pub async fn redeem(&self, ticket: &str) -> Option<Identity> {
        let hash = hash_refresh_token(ticket);
        let local = self
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hash);
        if let Some((identity, expires)) = local {
            return (expires > Instant::now()).then_some(identity);
        }
        let redis = self.redis.as_ref()?;
        let value: Option<String> = redis.clone().get_del(redis_key(&hash)).await.ok()?;
        let (user_id, username) = value?
            .split_once(':')
            .map(|(id, name)| (id.parse().ok(), name.to_string()))?;
        Some(Identity {
            user_id: user_id?,
            username,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn a_ticket_works_once() {
        let tickets = Tickets::default();
        let ticket = tickets
            .issue(Identity {
                user_id: 1,
                username: "ann".into(),
            })
            .await;
        assert_eq!(tickets.redeem(&ticket).await.map(|i| i.user_id), Some(1));
        assert!(tickets.redeem(&ticket).await.is_none());
        assert!(tickets.redeem("made-up").await.is_none());
    }
}
