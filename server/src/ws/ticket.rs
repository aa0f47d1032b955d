//! Single-use WebSocket tickets. A browser cannot set headers on a WebSocket, and an access token
//! must never sit in a URL (URLs reach logs), so it trades its token for a ticket that works once,
//! for 30 seconds. With Redis, tickets are shared by every instance (the client may reach another
//! instance than the one that issued it); while Redis is away they are kept locally. A ticket
//! names the session it was issued for, and `/ws` checks that session is still live: signing out
//! voids the tickets issued before.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::auth::tokens::{hash_refresh_token, random_token};
use crate::chat::Identity;

pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// Who a ticket was issued to: the user, and the session whose access token asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub identity: Identity,
    pub session_id: i64,
}

impl Holder {
    /// `user_id:session_id:username`, as Redis keeps it (a user name has no `:`).
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{}",
            self.identity.user_id, self.session_id, self.identity.username
        )
    }

    /// Reads what [`Holder::encode`] wrote; `None` for anything else.
    pub fn decode(value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, ':');
        let user_id = parts.next()?.parse().ok()?;
        let session_id = parts.next()?.parse().ok()?;
        let username = parts.next()?.to_string();
        Some(Self {
            identity: Identity { user_id, username },
            session_id,
        })
    }
}

#[derive(Clone, Default)]
pub struct Tickets {
    /// Keyed by the ticket's hash: neither memory nor Redis holds usable tickets.
    local: Arc<Mutex<HashMap<String, (Holder, Instant)>>>,
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

    pub async fn issue(&self, holder: Holder) -> String {
        let ticket = random_token(32);
        let hash = hash_refresh_token(&ticket);
        if let Some(redis) = &self.redis {
            let stored: redis::RedisResult<()> = redis
                .clone()
                .set_ex(redis_key(&hash), holder.encode(), TICKET_TTL.as_secs())
                .await;
            match stored {
                Ok(()) => return ticket,
                Err(err) => tracing::warn!(error = %err, "redis unavailable; ticket kept locally"),
            }
        }
        let now = Instant::now();
        let mut local = self.local.lock().unwrap_or_else(|e| e.into_inner());
        local.retain(|_, (_, expires)| *expires > now);
        local.insert(hash, (holder, now + TICKET_TTL));
        ticket
    }

    /// Whom the ticket was issued to, if it is valid; it can never be used again.
    pub async fn redeem(&self, ticket: &str) -> Option<Holder> {
        let hash = hash_refresh_token(ticket);
        let local = self
            .local
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hash);
        if let Some((holder, expires)) = local {
            return (expires > Instant::now()).then_some(holder);
        }
        let redis = self.redis.as_ref()?;
        let value: Option<String> = redis.clone().get_del(redis_key(&hash)).await.ok()?;
        Holder::decode(&value?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Holder {
        Holder {
            identity: Identity {
                user_id: 1,
                username: "ann".into(),
            },
            session_id: 9,
        }
    }

    #[actix_web::test]
    async fn a_ticket_works_once() {
        let tickets = Tickets::default();
        let ticket = tickets.issue(ann()).await;
        assert_eq!(tickets.redeem(&ticket).await, Some(ann()));
        assert!(tickets.redeem(&ticket).await.is_none());
        assert!(tickets.redeem("made-up").await.is_none());
    }

    #[test]
    fn holders_round_trip_as_redis_keeps_them() {
        assert_eq!(Holder::decode(&ann().encode()), Some(ann()));
        assert_eq!(Holder::decode("1:ann"), None);
    }
}
