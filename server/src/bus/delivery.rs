//! The one thread per instance that delivers the message log to this instance's connections, in
//! log order (see [`super::sequencer`] for why and how).
//!
//! Its inputs: batches this instance's writer committed ([`LogSink::committed`], which also
//! publishes them to the other instances), batches other instances published (through Redis),
//! and nudges to look at the database now (Redis came back). With other instances around it also
//! asks the database for its newest id every [`POLL`], so a batch that nobody published (its
//! instance died after the commit, Redis was away) is found and read within about a second.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
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
/// Batches queued for the delivery thread. A full queue holds the writer back; a batch from
/// Redis that finds it full is dropped and read from the database later.
const QUEUE: usize = 4096;

pub enum LogInput {
    /// Committed by this instance's writer.
    Local(LogBatch),
    /// Published by another instance.
    Remote(LogBatch),
    /// Look at the database now (Redis was away and is back).
    Check,
}

/// How the delivery thread reads the database.
pub trait LogSource: Send + 'static {
    /// The newest message id stored.
    fn newest(&mut self) -> Result<i64, AppError>;
    /// Every message with an id in `(after, upto]`, at most `limit`, as a batch covering
    /// `(after, last]` (`last` = `upto`, or the last row read when the limit was reached).
    fn read(&mut self, after: i64, upto: i64, limit: usize) -> Result<LogBatch, AppError>;
}

/// Where the writer hands what it committed.
#[derive(Clone)]
pub struct LogSink {
    input: SyncSender<LogInput>,
    redis: Option<RedisBus>,
}

impl LogSink {
    /// Publishes the batch to the other instances and queues it for this one's connections.
    /// Blocks while the delivery thread is far behind (call it from the writer's thread).
    pub fn committed(&self, batch: LogBatch) {
        if let Some(redis) = &self.redis {
            redis.publish_log(&batch);
        }
        let _ = self.input.send(LogInput::Local(batch));
    }
}

/// The sending half for other instances' batches and nudges; never blocks.
#[derive(Clone)]
pub struct LogInbox {
    input: SyncSender<LogInput>,
}

impl LogInbox {
    pub fn remote(&self, batch: LogBatch) {
        if let Err(TrySendError::Full(_)) = self.input.try_send(LogInput::Remote(batch)) {
            tracing::debug!("delivery queue full; a batch will be read from the database");
        }
    }

    pub fn check(&self) {
        let _ = self.input.try_send(LogInput::Check);
    }
}

/// The delivery thread's queue, made before the bus so that Redis can feed it.
pub struct LogChannel {
    input: SyncSender<LogInput>,
    output: Receiver<LogInput>,
}

impl Default for LogChannel {
    fn default() -> Self {
        let (input, output) = std::sync::mpsc::sync_channel(QUEUE);
        Self { input, output }
    }
}

impl LogChannel {
    pub fn inbox(&self) -> LogInbox {
        LogInbox {
            input: self.input.clone(),
        }
    }

    /// Starts the delivery thread, after `start` (the newest id when this instance started: every
    /// connection replays what came before from the database). `poll`: other instances write
    /// too. Returns where the writer hands its batches.
    pub fn start(
        self,
        start: i64,
        hub: Hub,
        redis: Option<RedisBus>,
        source: impl LogSource,
    ) -> LogSink {
        let poll = redis.is_some();
        let Self { input, output } = self;
        let spawned = thread::Builder::new()
            .name("pychat-delivery".into())
            .spawn(move || run(start, &hub, poll, source, &output));
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot start the delivery thread");
        }
        LogSink { input, redis }
    }
}

/// Most rows read from the database at once.
const FILL_PAGE: usize = 1000;

fn run(start: i64, hub: &Hub, poll: bool, mut source: impl LogSource, inputs: &Receiver<LogInput>) {
    let mut sequencer = Sequencer::new(start);
    let mut next_poll = Instant::now() + POLL;
    let mut next_read = Instant::now();
    loop {
        let now = Instant::now();
        let mut wake = if poll {
            next_poll
        } else {
            now + Duration::from_secs(3600)
        };
        if let Some(deadline) = sequencer.gap_deadline(GRACE) {
            wake = wake.min(deadline.max(next_read));
        }
        let input = match inputs.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(input) => Some(input),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = Instant::now();
        match input {
            Some(LogInput::Local(batch) | LogInput::Remote(batch)) => {
                deliver(hub, sequencer.offer(batch, now));
            }
            Some(LogInput::Check) => next_poll = now,
            None => {}
        }
        if poll && now >= next_poll {
            next_poll = now + POLL;
            match source.newest() {
                Ok(newest) => sequencer.observe(newest, now),
                Err(err) => tracing::debug!(error = %err, "delivery cannot read the newest id"),
            }
        }
        while now >= next_read
            && let Some((after, upto)) = sequencer.overdue(Instant::now(), GRACE)
        {
            match source.read(after, upto, FILL_PAGE) {
                Ok(batch) => {
                    tracing::info!(
                        after,
                        upto = batch.last,
                        messages = batch.entries.len(),
                        "read a gap in the message log from the database"
                    );
                    deliver(hub, sequencer.filled(batch, Instant::now()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, after, upto, "cannot read a gap in the message log");
                    next_read = Instant::now() + RETRY;
                }
            }
        }
    }
}

/// Hands each message to its recipient's and its sender's connections here (not the one it came
/// from). The frames were serialised once, by the instance that stored them.
fn deliver(hub: &Hub, batches: Vec<LogBatch>) {
    for batch in batches {
        for entry in batch.entries {
            let out = Outbound::Message {
                id: entry.id,
                text: entry.frame,
            };
            hub.send_to_user(entry.recipient_id, &out, None);
            let except = (entry.except != 0).then_some(entry.except);
            hub.send_to_user(entry.sender_id, &out, except);
        }
    }
}
