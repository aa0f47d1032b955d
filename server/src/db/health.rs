//! When the database counts as unavailable, and how the server notices and recovers.
//!
//! Two things live here. [`app_error`] is the one place a diesel error becomes an API error:
//! failures of the connection or of the server (a crash, a restart, a failover, a lost
//! connection, a lock that could not be had) are `database_unavailable`, which clients retry;
//! anything else is a bug and stays `internal_error`.
//!
//! [`Health`] is what lets requests fail at once while the database is known to be down instead
//! of each waiting out the pool's checkout timeout. A probe thread of its own (PostgreSQL and
//! MySQL/MariaDB only: SQLite is a file in this process) runs `SELECT 1` on a connection of its
//! own, outside the pool, every [`PROBE_EVERY_UP`], and every [`PROBE_EVERY_DOWN`] while the
//! database is down. A failed probe marks the database down; the next good one marks it up again.
//! A probe that hangs (a stalled server, a network that drops packets) counts as failed once it
//! has run longer than the database timeout. Requests that meet a connection failure or wait in
//! vain for a pooled connection wake the probe, so a crash is noticed in milliseconds rather
//! than at the next tick.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::result::{DatabaseErrorKind, Error};

use super::{DatabaseUrl, DbConnection};
use crate::error::AppError;

/// How often the probe runs while the database answers.
pub const PROBE_EVERY_UP: Duration = Duration::from_millis(500);
/// How often the probe runs while it does not, which bounds how soon a recovery is noticed.
pub const PROBE_EVERY_DOWN: Duration = Duration::from_millis(200);
/// Least time between two probes, however often requests wake it.
const PROBE_GAP: Duration = Duration::from_millis(20);

/// Maps a diesel error to the API's error: see the module documentation.
pub fn app_error(err: Error) -> AppError {
    if is_unavailable(&err) {
        AppError::database_unavailable(err)
    } else {
        AppError::internal(err)
    }
}

/// True for failures that are the database's state rather than the query's: retrying the same
/// request later can succeed.
pub fn is_unavailable(err: &Error) -> bool {
    match err {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            | DatabaseErrorKind::SerializationFailure
            // A standby answering during a failover.
            | DatabaseErrorKind::ReadOnlyTransaction,
            _,
        ) => true,
        // diesel gives most server errors no kind of their own (MySQL's never carry their
        // number): they are told apart by the server's message.
        Error::DatabaseError(_, info) => unavailable_message(info.message()),
        // A transaction that could be neither committed nor rolled back: the connection is gone.
        Error::BrokenTransactionManager => true,
        Error::RollbackErrorOnCommit { commit_error, .. } => is_unavailable(commit_error),
        _ => false,
    }
}

/// Messages of PostgreSQL (and libpq), MySQL/MariaDB (and their client library) and SQLite that
/// mean the server, the connection or a lock failed, never the statement.
const UNAVAILABLE_MESSAGES: &[&str] = &[
    // libpq
    "server closed the connection unexpectedly",
    "no connection to the server",
    "could not receive data from server",
    "could not send data to server",
    "connection to server",
    "ssl syscall error",
    // PostgreSQL: 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 53300
    "terminating connection",
    "the database system is",
    "too many clients already",
    // PostgreSQL: 40P01 deadlock_detected, 55P03 lock_not_available
    "deadlock detected",
    "could not obtain lock",
    "canceling statement due to lock timeout",
    // MySQL/MariaDB: 2006, 2013, 2002/2003, 1040, 1053, 1205, 1213, 1927
    "server has gone away",
    "lost connection to",
    "can't connect to",
    "too many connections",
    "server shutdown in progress",
    "lock wait timeout exceeded",
    "deadlock found",
    "connection was killed",
    // SQLite: SQLITE_BUSY past the busy timeout, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
    "database is locked",
    "database table is locked",
    "disk i/o error",
    "database or disk is full",
    "unable to open database file",
];

fn unavailable_message(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    UNAVAILABLE_MESSAGES
        .iter()
        .any(|known| message.contains(known))
}

/// Whether the database answers, as the probe last saw it. Shared by every handle to the pool.
pub struct Health {
    up: AtomicBool,
    /// When the probe in flight started, in milliseconds since `epoch` plus one; 0 when none is.
    probing_since: AtomicU64,
    epoch: Instant,
    /// A probe running longer than this counts as failed.
    stall: Duration,
    woken: Mutex<bool>,
    wake: Condvar,
}

impl Health {
    /// Always up: nothing probes it (SQLite).
    pub fn unprobed() -> Arc<Self> {
        Arc::new(Self::new(Duration::MAX))
    }

    /// Starts the probe of `url`, which stops once the last handle to the returned health is
    /// dropped. The database is up to begin with (the pool has just connected).
    pub fn probed(url: &DatabaseUrl, stall: Duration) -> Arc<Self> {
        let health = Arc::new(Self::new(stall));
        let (url, weak) = (url.clone(), Arc::downgrade(&health));
        let spawned = thread::Builder::new()
            .name("pychat-db-probe".into())
            .spawn(move || probe(&url, &weak));
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot start the database probe");
        }
        health
    }

    fn new(stall: Duration) -> Self {
        Self {
            up: AtomicBool::new(true),
            probing_since: AtomicU64::new(0),
            epoch: Instant::now(),
            stall,
            woken: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// False while the database is known to be down or the probe has hung past the timeout.
    pub fn is_up(&self) -> bool {
        if !self.up.load(Ordering::Acquire) {
            return false;
        }
        let since = self.probing_since.load(Ordering::Acquire);
        since == 0 || Duration::from_millis(self.now_ms().saturating_sub(since)) < self.stall
    }

    /// Asks the probe to look now: a request met a failure that may be the database's.
    pub fn wake(&self) {
        let mut woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        *woken = true;
        self.wake.notify_one();
    }

    /// Sleeps until the next probe is due or a request wakes the probe.
    fn sleep(&self) {
        let every = if self.up.load(Ordering::Acquire) {
            PROBE_EVERY_UP
        } else {
            PROBE_EVERY_DOWN
        };
        let woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        let (mut woken, _) = self
            .wake
            .wait_timeout_while(woken, every, |woken| !*woken)
            .unwrap_or_else(|e| e.into_inner());
        *woken = false;
    }

    fn record(&self, outcome: Result<(), String>) {
        self.probing_since.store(0, Ordering::Release);
        let up = outcome.is_ok();
        let was_up = self.up.swap(up, Ordering::AcqRel);
        match outcome {
            Err(err) if was_up => tracing::error!(error = %err, "database unavailable"),
            Ok(()) if !was_up => tracing::info!("database available again"),
            _ => {}
        }
    }
}

/// The probe's loop: one `SELECT 1` per tick on its own connection, made anew when it fails.
fn probe(url: &DatabaseUrl, health: &Weak<Health>) {
    let mut conn: Option<DbConnection> = None;
    loop {
        let Some(health) = health.upgrade() else {
            return;
        };
        health.sleep();
        let started = Instant::now();
        health
            .probing_since
            .store(health.now_ms(), Ordering::Release);
        let answered = conn
            .as_mut()
            .is_some_and(|c| c.batch_execute("SELECT 1").is_ok());
        let outcome = if answered {
            Ok(())
        } else {
            // The old connection may have died with a server that is back: try a new one.
            conn = None;
            url.establish(health.stall)
                .map(|c| conn = Some(c))
                .map_err(|e| e.to_string())
        };
        health.record(outcome);
        drop(health);
        if let Some(rest) = PROBE_GAP.checked_sub(started.elapsed()) {
            thread::sleep(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_string()))
    }

    #[test]
    fn connection_failures_are_unavailable() {
        for err in [
            database_error(DatabaseErrorKind::ClosedConnection, "x"),
            database_error(DatabaseErrorKind::UnableToSendCommand, "x"),
            database_error(DatabaseErrorKind::SerializationFailure, "x"),
            database_error(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            database_error(
                DatabaseErrorKind::Unknown,
                "server closed the connection unexpectedly\n\tThis probably means the server \
                 terminated abnormally",
            ),
            database_error(DatabaseErrorKind::Unknown, "MySQL server has gone away"),
            database_error(
                DatabaseErrorKind::Unknown,
                "Lost connection to MySQL server during query",
            ),
            database_error(
                DatabaseErrorKind::Unknown,
                "Lock wait timeout exceeded; try restarting transaction",
            ),
            database_error(DatabaseErrorKind::Unknown, "database is locked"),
            Error::BrokenTransactionManager,
        ] {
            assert!(is_unavailable(&err), "{err:?}");
            assert_eq!(
                app_error(err).code(),
                crate::error::ErrorCode::DatabaseUnavailable
            );
        }
    }

    #[test]
    fn bugs_stay_internal() {
        for err in [
            database_error(DatabaseErrorKind::Unknown, "column \"nme\" does not exist"),
            database_error(DatabaseErrorKind::UniqueViolation, "duplicate key"),
            database_error(
                DatabaseErrorKind::Unknown,
                "You have an error in your SQL syntax",
            ),
            Error::NotFound,
            Error::AlreadyInTransaction,
        ] {
            assert!(!is_unavailable(&err), "{err:?}");
            assert_eq!(
                app_error(err).code(),
                crate::error::ErrorCode::InternalError
            );
        }
    }

    #[test]
    fn a_hung_probe_counts_as_down() {
        let health = Health::new(Duration::from_millis(50));
        assert!(health.is_up());
        health
            .probing_since
            .store(health.now_ms(), Ordering::Release);
        assert!(health.is_up(), "a probe just started");
        thread::sleep(Duration::from_millis(80));
        assert!(!health.is_up(), "a probe running past the timeout");
        health.record(Ok(()));
        assert!(health.is_up());
        health.record(Err("refused".into()));
        assert!(!health.is_up());
    }
}
