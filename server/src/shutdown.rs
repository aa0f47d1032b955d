//! Graceful shutdown (SIGTERM, SIGINT). WebSocket sessions run in tasks of their own, outside
//! actix-server's connection count (`ws/upgrade.rs`), and stopping a worker drops its tasks: the
//! sessions are drained first, then actix-server stops the way it always does.
//!
//! 1. The listeners stop accepting; `/readyz` answers 503 `shutting_down`.
//! 2. Every session stops reading frames, sends the replies of the work it already started (acks
//!    of messages handed to the writer) as they come, and closes with 1001 "server shutting
//!    down". The replies get until one [`CLOSE_MARGIN`] before the deadline.
//! 3. Once every session has ended, actix-server stops gracefully: requests in flight finish.
//! 4. At the deadline (`PYCHAT_SHUTDOWN_TIMEOUT_SECS`) whatever is left is dropped. A reply not
//!    sent by then is not lost: a message is acked only once stored, and the client's retry with
//!    the same `client_msg_id` gets the stored row.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::ws::session::Realtime;

/// Kept from the deadline for the closing handshakes and the workers to stop.
pub const CLOSE_MARGIN: Duration = Duration::from_secs(1);

/// What sessions watch: `None` while serving, then the instant by which they must close.
pub type Watch = watch::Receiver<Option<Instant>>;

/// The shutdown signal shared by sessions and `/readyz`; one per server, in [`Realtime`].
pub struct Shutdown {
    tx: watch::Sender<Option<Instant>>,
    /// Wakes the sessions (a `Notified` is smaller than a watch's `wait_for`).
    notify: Notify,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            tx: watch::Sender::new(None),
            notify: Notify::new(),
        }
    }
}

impl Shutdown {
    /// True once a shutdown has begun.
    pub fn is_started(&self) -> bool {
        self.tx.borrow().is_some()
    }

    /// What a session holds for its whole life, closing handshake included: the server knows
    /// every session has ended when no watch is left.
    pub fn watch(&self) -> Watch {
        self.tx.subscribe()
    }

    /// Completes once a shutdown has begun, with the instant by which sessions must close.
    pub async fn started(&self) -> Instant {
        // Made before the check: a `Notified` receives every `notify_waiters` after it was made,
        // polled or not, and one before it has already set the value. Pinned where it is made so
        // that it is stored once: it sits in every idle connection's future.
        let notified = self.notify.notified();
        tokio::pin!(notified);
        if let Some(close_by) = *self.tx.borrow() {
            return close_by;
        }
        notified.await;
        self.tx.borrow().unwrap_or_else(Instant::now)
    }

    fn begin(&self, close_by: Instant) {
        self.tx.send_replace(Some(close_by));
        self.notify.notify_waiters();
    }

    async fn sessions_ended(&self) {
        self.tx.closed().await;
    }
}

/// Stops a running server gracefully; see the module documentation.
#[derive(Clone)]
pub struct Stopper {
    pub(crate) server: ServerHandle,
    pub(crate) realtime: Arc<Realtime>,
    pub(crate) timeout: Duration,
}

impl Stopper {
    /// Runs the whole sequence; returns once the server has stopped, within the timeout.
    pub async fn graceful(&self) {
        let deadline = Instant::now() + self.timeout;
        let shutdown = &self.realtime.shutdown;
        shutdown.begin(deadline - CLOSE_MARGIN.min(self.timeout / 2));
        self.server.pause().await;
        let drained = tokio::time::timeout_at(deadline, shutdown.sessions_ended())
            .await
            .is_ok();
        if !drained {
            tracing::warn!("sessions still open at the shutdown deadline: dropping them");
        }
        if tokio::time::timeout_at(deadline, self.server.stop(true))
            .await
            .is_err()
        {
            tracing::warn!("requests still running at the shutdown deadline: dropping them");
            self.server.stop(false).await;
        }
    }

    /// Stops at once, dropping every connection.
    pub async fn now(&self) {
        self.server.stop(false).await;
    }
}

/// Waits for SIGTERM or SIGINT, then shuts down gracefully; a second signal stops at once.
pub async fn on_signals(stopper: Stopper) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM/SIGINT");
            return;
        }
    };
    let name = signals.next().await;
    tracing::info!(
        signal = name,
        timeout_secs = stopper.timeout.as_secs(),
        "shutting down"
    );
    let graceful = stopper.clone();
    let graceful = actix_web::rt::spawn(async move { graceful.graceful().await });
    tokio::select! {
        _ = graceful => tracing::info!("stopped"),
        name = signals.next() => {
            tracing::warn!(signal = name, "second signal: stopping now");
            stopper.now().await;
        }
    }
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}
