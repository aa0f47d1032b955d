//! How a revoked session ends everywhere. REST checks the session on every request; a WebSocket
//! is checked once, when it opens, so its end has to reach it. The instance that revokes a
//! session ends its sockets there at once ([`SessionEnds::end`]); every instance also looks up
//! the sessions revoked in the last seconds each [`SWEEP_EVERY`], which reaches the sockets on
//! other instances, with or without Redis, and sessions revoked by another process (the CLI).
//! Every [`FULL_CHECK_EVERY`] sweeps, each session with a socket here is checked whole: that also
//! catches what leaves no revocation behind (an expired session, a deleted user).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::db::{self, Db, sessions};

/// How often an instance looks for sessions revoked elsewhere.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// How far back each sweep looks. Revocation times come from the revoking instance's clock, and
/// a sweep may be late (a busy database): looking back this far covers both, and ending a session
/// twice does nothing.
const LOOK_BACK: Duration = Duration::from_secs(30);
/// Sweeps between two whole checks of the sessions with sockets here.
const FULL_CHECK_EVERY: u32 = 60;
/// Session ids per query of a whole check.
const CHECK_CHUNK: usize = 500;

/// One sign-in of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    pub user_id: i64,
    pub session_id: i64,
}

/// Whatever serves sessions on this instance (the WebSocket hub).
pub trait SessionEnds: Send + Sync + 'static {
    /// Whether no session has a connection here.
    fn is_empty(&self) -> bool;
    /// The sessions with a connection here.
    fn sessions(&self) -> Vec<SessionRef>;
    /// Ends every connection of `session` here.
    fn end(&self, session: SessionRef);
}

/// Runs the sweeps until `stop` completes (the server shutting down).
pub async fn sweep(db: Db, ends: Arc<dyn SessionEnds>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut count = 0u32;
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => {}
        }
        count = count.wrapping_add(1);
        let full = count.is_multiple_of(FULL_CHECK_EVERY);
        if let Err(err) = sweep_once(&db, ends.as_ref(), full).await {
            // The database is away: nothing can be revoked meanwhile either.
            tracing::debug!(error = %err, "revocation sweep failed");
        }
    }
}

async fn sweep_once(
    db: &Db,
    ends: &dyn SessionEnds,
    full: bool,
) -> Result<(), crate::error::AppError> {
    // An instance without connections has nothing to close: it asks the database nothing.
    if ends.is_empty() {
        return Ok(());
    }
    let since = db::now() - LOOK_BACK;
    let revoked = db
        .run(move |conn| Ok(sessions::revoked_since(conn, since)?))
        .await?;
    for (session_id, user_id) in revoked {
        ends.end(SessionRef {
            user_id,
            session_id,
        });
    }
    if full {
        for dead in dead_among(db, ends.sessions()).await? {
            ends.end(dead);
        }
    }
    Ok(())
}

/// Of `here`, the sessions no longer live.
async fn dead_among(
    db: &Db,
    here: Vec<SessionRef>,
) -> Result<Vec<SessionRef>, crate::error::AppError> {
    let mut dead = Vec::new();
    for chunk in here.chunks(CHECK_CHUNK) {
        let ids: Vec<i64> = chunk.iter().map(|s| s.session_id).collect();
        let live: HashSet<i64> = db
            .run(move |conn| Ok(sessions::live_among(conn, &ids, db::now())?))
            .await?
            .into_iter()
            .collect();
        dead.extend(chunk.iter().filter(|s| !live.contains(&s.session_id)));
    }
    Ok(dead)
}
