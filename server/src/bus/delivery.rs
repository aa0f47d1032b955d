//! Delivers the message log to this instance's connections, in log order (see
//! [`super::sequencer`] for why and how).
//!
//! A batch is delivered by whoever brings it, under one lock that keeps the order: the writer's
//! thread for this instance's own batches ([`LogSink::committed`], which also publishes them to
//! the other instances), Redis's connection task for the others' ([`LogInbox::remote`]). One
//! thread per instance deals with what did not arrive: it reads a gap that stayed open from the
//! database and, with other instances around, asks the database for its newest id every
//! [`POLL`], so a batch nobody published (its instance died after the commit, Redis was away) is
//! found and delivered within about a second.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::AppError;
use crate::ws::hub::{Hub, Outbound};

use super::RedisBus;
use super::log::LogBatch;
use super::sequencer::Sequencer;

/// How long a gap in the log may stay open before it is read from the database: long enough for
/// the batch to arrive through Redis, short enough that a lost one is barely noticed.
pub const GRACE: Duration = Duration::from_millis(200);
/// How often, with other instances, the database is asked for its newest id.
pub const POLL: Duration = Duration::from_secs(1);
/// After a failed read, how long before the next try.
const RETRY: Duration = Duration::from_millis(500);
/// How the gap reader reads the database.
pub trait LogSource: Send + 'static {
    /// The newest message id stored.
    fn newest(&mut self) -> Result<i64, AppError>;
    /// Every message with an id in `(after, upto]`, at most `limit`, as a batch covering
    /// `(after, last]` (`last` = `upto`, or the last row read when the limit was reached).
    fn read(&mut self, after: i64, upto: i64, limit: usize) -> Result<LogBatch, AppError>;
}

/// The sequencer and where it delivers, shared by everyone who brings a batch.
struct Shared {
    sequencer: Mutex<Sequencer>,
    hub: Hub,
    /// Wakes the gap reader (a gap opened, or the database should be asked now).
    nudge: SyncSender<()>,
}

impl Shared {
    fn sequencer(&self) -> MutexGuard<'_, Sequencer> {
        // The sequencer's state is consistent between calls; a panic cannot leave it halfway.
        self.sequencer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers a batch and delivers what it lets go, under the lock: the order is the log's.
    fn offer(&self, batch: LogBatch, filled: bool) {
        let mut sequencer = self.sequencer();
        let now = Instant::now();
        let ready = if filled {
            sequencer.filled(batch, now)
        } else {
            sequencer.offer(batch, now)
        };
        deliver(&self.hub, ready);
        if sequencer.gap_deadline(GRACE).is_some() {
            let _ = self.nudge.try_send(());
        }
    }
}

/// Where the writer hands what it committed.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
    redis: Option<RedisBus>,
}

impl LogSink {
    /// Publishes the batch to the other instances and delivers it to this one's connections.
    pub fn committed(&self, batch: LogBatch) {
        if let Some(redis) = &self.redis {
            redis.publish_log(&batch);
        }
        self.shared.offer(batch, false);
    }
}

/// Where other instances' batches arrive, and nudges to look at the database; never blocks long.
#[derive(Clone)]
pub struct LogInbox {
    shared: Arc<Shared>,
}

impl LogInbox {
    pub fn remote(&self, batch: LogBatch) {
        self.shared.offer(batch, false);
    }

    /// Look at the database now (Redis was away and is back).
    pub fn check(&self) {
        let _ = self.shared.nudge.try_send(());
    }
}

/// The log's delivery for one instance, made before the bus so that Redis can feed it.
pub struct LogChannel {
    shared: Arc<Shared>,
    nudges: Receiver<()>,
}

impl LogChannel {
    /// Delivery to `hub` starting after `start`, the newest id when this instance started (every
    /// connection replays what came before from the database).
    pub fn new(start: i64, hub: Hub) -> Self {
        let (nudge, nudges) = std::sync::mpsc::sync_channel(1);
        Self {
            shared: Arc::new(Shared {
                sequencer: Mutex::new(Sequencer::new(start)),
                hub,
                nudge,
            }),
            nudges,
        }
    }

    pub fn inbox(&self) -> LogInbox {
        LogInbox {
            shared: self.shared.clone(),
        }
    }

    /// Starts the gap reader; `redis`: other instances write too (and get this one's batches).
    /// Returns where the writer hands its batches.
    pub fn start(self, redis: Option<RedisBus>, source: impl LogSource) -> LogSink {
        let poll = redis.is_some();
        let Self { shared, nudges } = self;
        // A weak handle: the reader ends with the last sink and inbox (its queue's senders).
        let reader = Arc::downgrade(&shared);
        let spawned = thread::Builder::new()
            .name("pychat-log-gaps".into())
            .spawn(move || read_gaps(&reader, poll, source, &nudges));
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot start the log's gap reader");
        }
        LogSink { shared, redis }
    }
}

/// Most rows read from the database at once.
const FILL_PAGE: usize = 1000;

/// Reads from the database what did not arrive: a gap open for [`GRACE`], and, with other
/// instances (`poll`), anything beyond the newest id delivered.
fn read_gaps(shared: &Weak<Shared>, poll: bool, mut source: impl LogSource, nudges: &Receiver<()>) {
    let mut next_poll = Instant::now() + POLL;
    let mut next_read = Instant::now();
    loop {
        let Some(deadline) = shared.upgrade().map(|s| s.sequencer().gap_deadline(GRACE)) else {
            return;
        };
        let now = Instant::now();
        let mut wake = if poll {
            next_poll
        } else {
            now + Duration::from_secs(3600)
        };
        if let Some(deadline) = deadline {
            wake = wake.min(deadline.max(next_read));
        }
        let nudged = match nudges.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(()) => true,
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // A nudge from `check` asks the database at once; one from a gap only wakes us.
        if nudged && poll && shared.sequencer().gap_deadline(GRACE).is_none() {
            next_poll = Instant::now();
        }
        let now = Instant::now();
        if poll && now >= next_poll {
            next_poll = now + POLL;
            match source.newest() {
                Ok(newest) => shared.sequencer().observe(newest, Instant::now()),
                Err(err) => tracing::debug!(error = %err, "cannot read the newest message id"),
            }
        }
        while Instant::now() >= next_read {
            let Some((after, upto)) = shared.sequencer().overdue(Instant::now(), GRACE) else {
                break;
            };
            // Read without the lock: batches keep flowing meanwhile, and what overlaps with
            // them is trimmed when the rows are offered.
            match source.read(after, upto, FILL_PAGE) {
                Ok(batch) => {
                    tracing::info!(
                        after,
                        upto = batch.last,
                        messages = batch.entries.len(),
                        "read a gap in the message log from the database"
                    );
                    shared.offer(batch, true);
                }
                Err(err) => {
                    tracing::warn!(error = %err, after, upto, "cannot read a gap in the message log");
                    next_read = Instant::now() + RETRY;
                }
            }
        }
    }
}

/// Hands each event to its recipients' connections here (the sender's too, but not the one it
/// came from). The frames were serialised once, by the instance that stored them.
fn deliver(hub: &Hub, batches: Vec<LogBatch>) {
    for batch in batches {
        for entry in batch.entries {
            let out = Outbound::Message {
                id: entry.id,
                text: entry.frame,
            };
            let except = (entry.except != 0).then_some(entry.except);
            for &user in entry.recipients.iter() {
                let except = if user == entry.sender_id {
                    except
                } else {
                    None
                };
                hub.send_to_user(user, &out, except);
            }
        }
    }
}
