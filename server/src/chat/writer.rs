//! Group commit with several writer threads, acked and delivered in id order.
//!
//! Each writer takes whatever is waiting (up to a batch), inserts it with one multi-row INSERT in
//! one transaction, and only after the commit acks each sender and fans the messages out. An ack
//! therefore always means stored, and a busy server pays one commit per batch.
//!
//! Several writers commit at once (the database flushes their commits together), but nobody may
//! see a message before one with a lower id: a client resumes after the highest id it has seen,
//! so a lower id made visible later would be skipped for good. Three rules keep that order:
//!
//! 1. **Intake**: a writer takes its batch from the queue and runs BEGIN and the INSERT while
//!    holding one lock, which also hands out tickets. Batches therefore get their ids in ticket
//!    order (and keep each sender's queue order). The COMMIT runs after the lock is let go.
//! 2. **Release**: after its commit, a batch waits for its ticket's turn; acks and fan-out happen
//!    one batch at a time in ticket order, so every connection gets messages in id order.
//! 3. **Visibility**: readers (resume replay, history, conversation lists) read nothing above the
//!    released watermark, the highest id up to which everything is released. A batch that
//!    committed before an earlier one (ids above an uncommitted gap) stays invisible until its
//!    turn. The watermark moves before a batch is fanned out, so a connection registered after
//!    the fan-out finds the batch in its replay, and one registered before gets it live.
//!
//! With several instances (Redis), each has one writer and every batch takes a cluster-wide lock
//! held through its commit (`messages::in_write_order`), so commits are in id order across
//! instances and readers need no watermark. SQLite has one write lock: one writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::TransactionManager;
use tokio::sync::{mpsc, oneshot};

use crate::bus::Bus;
use crate::db::messages::{self, MessageRow, NewMessage};
use crate::db::{self, Backend, Db, DbConnection};
use crate::error::AppError;
use crate::ws::hub::{ConnId, Outbound};
use crate::ws::protocol::ServerFrame;

use super::MessageView;

/// Most rows in one INSERT (8 binds each stays far below every backend's limit). A batch's
/// fan-out lands on a recipient's queue at once, so connection queues must hold two batches.
pub const MAX_BATCH: usize = 256;
/// Most writer threads `PYCHAT_MESSAGE_WRITERS` may ask for.
pub const MAX_WRITERS: usize = 32;
/// Messages waiting for the writers before senders have to wait for room.
const QUEUE: usize = 8192;
/// The watermark before the writers have read the newest stored id.
const NOT_READY: i64 = i64::MIN;
/// How long a reader waits for the writers to start before giving up.
const READY_WAIT: Duration = Duration::from_secs(10);

pub struct PendingMessage {
    pub row: NewMessage,
    pub sender_name: String,
    pub recipient_name: String,
    /// The connection that sent it gets an ack, not a copy.
    pub origin: Option<ConnId>,
    pub reply: oneshot::Sender<Result<Stored, AppError>>,
}

/// The outcome of a send.
#[derive(Debug, Clone)]
pub struct Stored {
    pub message: MessageView,
    /// False when `(sender, client_msg_id)` was stored before: a retry, answered with the original.
    pub created: bool,
}

/// How many writer threads a backend gets unless configured: measured in docs/benchmarks.md.
pub fn default_writers(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1,
        Backend::Postgres | Backend::Mysql => 4,
    }
}

#[derive(Clone)]
pub struct MessageWriter {
    tx: mpsc::Sender<PendingMessage>,
    visible: Arc<Watermark>,
}

/// The released watermark (rule 3).
struct Watermark {
    /// With a cluster-wide lock ordering commits, every committed row may be read.
    unbounded: bool,
    released: AtomicI64,
}

impl Watermark {
    fn advance(&self, id: i64) {
        self.released.fetch_max(id, Ordering::SeqCst);
    }
}

/// What the writer threads share.
struct Shared {
    db: Db,
    bus: Bus,
    cluster: bool,
    intake: Mutex<Intake>,
    /// The ticket whose batch is released next.
    turn: Mutex<u64>,
    turn_changed: Condvar,
    visible: Arc<Watermark>,
}

/// Held while taking a batch and inserting it (rule 1).
struct Intake {
    rx: mpsc::Receiver<PendingMessage>,
    next_ticket: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A writer that panicked leaves consistent state behind (a counter, a queue).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MessageWriter {
    /// Starts `writers` writer threads (one with SQLite or several instances). They end when
    /// every handle is dropped.
    pub fn start(db: Db, bus: Bus, writers: Option<usize>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let cluster = bus.redis().is_some();
        let writers = if cluster || db.backend() == Backend::Sqlite {
            1
        } else {
            // By default at most half the pool: replays and REST need connections too.
            let half_pool = usize::try_from(db.pool_size() / 2).unwrap_or(1);
            writers
                .unwrap_or_else(|| default_writers(db.backend()).min(half_pool))
                .clamp(1, MAX_WRITERS)
        };
        let visible = Arc::new(Watermark {
            unbounded: cluster,
            released: AtomicI64::new(NOT_READY),
        });
        let shared = Arc::new(Shared {
            db,
            bus,
            cluster,
            intake: Mutex::new(Intake { rx, next_ticket: 0 }),
            turn: Mutex::new(0),
            turn_changed: Condvar::new(),
            visible: visible.clone(),
        });
        tracing::info!(writers, "message writers");
        for n in 0..writers {
            let shared = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("pychat-writer-{n}"))
                .spawn(move || run(&shared));
            if let Err(err) = spawned {
                tracing::error!(error = %err, "cannot start a message writer");
            }
        }
        Self { tx, visible }
    }

    pub async fn store(&self, pending: PendingMessage) -> Result<(), AppError> {
        self.tx
            .send(pending)
            .await
            .map_err(|_| AppError::internal("message writer stopped"))
    }

    /// The highest message id readers may show: every message up to it is stored, acked and
    /// fanned out. Read it before the query it bounds. Blocks (briefly, at start-up only) until
    /// the writers have read the newest stored id: call it on a blocking thread.
    pub fn visible_up_to(&self) -> Result<i64, AppError> {
        if self.visible.unbounded {
            return Ok(i64::MAX);
        }
        let started = Instant::now();
        loop {
            let released = self.visible.released.load(Ordering::SeqCst);
            if released != NOT_READY {
                return Ok(released);
            }
            if started.elapsed() > READY_WAIT {
                return Err(AppError::database_unavailable(
                    "the message writers have not started",
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

fn run(shared: &Shared) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let mut intake = lock(&shared.intake);
        if shared.visible.released.load(Ordering::SeqCst) == NOT_READY {
            start_watermark(shared);
        }
        let Some(first) = intake.rx.blocking_recv() else {
            return;
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match intake.rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let ticket = Ticket {
            number: intake.next_ticket,
            shared,
        };
        intake.next_ticket += 1;
        let results = write_batch(shared, &mut batch, intake);
        let releases = prepare(&mut batch, results);
        ticket.release(|| {
            if let Some(newest) = releases
                .iter()
                .filter_map(|r| r.fan_out.as_ref().map(|f| f.id))
                .max()
            {
                shared.visible.advance(newest);
            }
            for release in releases {
                release.deliver(&shared.bus);
            }
        });
    }
}

/// Reads the newest stored id before any batch of this process: everything up to it is
/// committed and visible. Called with the intake held, so no insert can come first.
fn start_watermark(shared: &Shared) {
    loop {
        match shared
            .db
            .with_connection(|conn| Ok(messages::newest_id(conn)?))
        {
            Ok(newest) => {
                shared.visible.advance(newest.unwrap_or(0));
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, "message writer cannot read the newest id; retrying");
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// A batch's place in the release order. Released exactly once, even if the writer panics.
struct Ticket<'a> {
    number: u64,
    shared: &'a Shared,
}

impl Ticket<'_> {
    fn release(self, deliver: impl FnOnce()) {
        let mut turn = self.wait_turn();
        deliver();
        *turn += 1;
        drop(turn);
        self.shared.turn_changed.notify_all();
        std::mem::forget(self);
    }

    fn wait_turn(&self) -> MutexGuard<'_, u64> {
        let mut turn = lock(&self.shared.turn);
        while *turn != self.number {
            turn = self
                .shared
                .turn_changed
                .wait(turn)
                .unwrap_or_else(PoisonError::into_inner);
        }
        turn
    }
}

impl Drop for Ticket<'_> {
    /// Only on unwinding: the batch is lost, but the batches behind it must not wait forever.
    fn drop(&mut self) {
        let mut turn = self.wait_turn();
        *turn += 1;
        drop(turn);
        self.shared.turn_changed.notify_all();
    }
}

type RowResult = Result<(MessageRow, bool), AppError>;

/// Stores the batch; lets go of the intake once its ids are assigned.
fn write_batch(
    shared: &Shared,
    batch: &mut [PendingMessage],
    intake: MutexGuard<'_, Intake>,
) -> Vec<RowResult> {
    let now = db::now();
    for pending in batch.iter_mut() {
        pending.row.created_at = now;
    }
    let rows: Vec<NewMessage> = batch.iter().map(|p| p.row.clone()).collect();
    // If no connection can be had, the closure (and with it the intake) is dropped unrun.
    let outcome = shared
        .db
        .with_connection(|conn| Ok(store_rows(conn, &rows, shared.cluster, intake)));
    match outcome {
        Ok(results) => results,
        Err(err) => batch.iter().map(|_| Err(err.clone())).collect(),
    }
}

enum Failure<'a> {
    /// Nothing was stored; the intake is still held.
    Insert(diesel::result::Error, MutexGuard<'a, Intake>),
    /// The ids were assigned and the intake let go, but the commit failed: nothing was stored.
    Commit(diesel::result::Error),
}

fn store_rows(
    conn: &mut DbConnection,
    rows: &[NewMessage],
    cluster: bool,
    intake: MutexGuard<'_, Intake>,
) -> Vec<RowResult> {
    let attempt = if cluster {
        // One writer; the cluster-wide lock is held through the commit.
        match messages::in_write_order(conn, true, |conn| messages::insert_batch(conn, rows)) {
            Ok(stored) => {
                drop(intake);
                Ok(stored)
            }
            Err(err) => Err(Failure::Insert(err, intake)),
        }
    } else {
        insert_then_commit(conn, rows, intake)
    };
    match attempt {
        Ok(stored) => batch_results(rows, stored),
        // A retry or a duplicate inside the batch (or a vanished user) fails the whole statement:
        // redo it row by row so each sender gets its own answer. Still holding the intake, so
        // these ids too come before the next batch's.
        Err(Failure::Insert(err, intake)) => {
            tracing::debug!(error = %err, "batch insert failed; inserting one by one");
            let results = rows
                .iter()
                .map(|row| insert_one(conn, row, cluster))
                .collect();
            drop(intake);
            results
        }
        Err(Failure::Commit(err)) => {
            let err = AppError::database_unavailable(err);
            rows.iter().map(|_| Err(err.clone())).collect()
        }
    }
}

type Tm = <DbConnection as Connection>::TransactionManager;

/// BEGIN and INSERT under the intake, COMMIT after it is let go (rule 1).
fn insert_then_commit<'a>(
    conn: &mut DbConnection,
    rows: &[NewMessage],
    intake: MutexGuard<'a, Intake>,
) -> Result<Vec<MessageRow>, Failure<'a>> {
    if let Err(err) = Tm::begin_transaction(conn) {
        return Err(Failure::Insert(err, intake));
    }
    let stored = match messages::insert_batch(conn, rows) {
        Ok(stored) => stored,
        Err(err) => {
            // A connection that cannot roll back is broken; the row-by-row retry will say so.
            let _ = Tm::rollback_transaction(conn);
            return Err(Failure::Insert(err, intake));
        }
    };
    drop(intake);
    match Tm::commit_transaction(conn) {
        Ok(()) => Ok(stored),
        Err(err) => {
            let _ = Tm::rollback_transaction(conn);
            Err(Failure::Commit(err))
        }
    }
}

fn batch_results(rows: &[NewMessage], stored: Vec<MessageRow>) -> Vec<RowResult> {
    let mut by_key: HashMap<(i64, String), MessageRow> = stored
        .into_iter()
        .map(|row| ((row.sender_id, row.client_msg_id.clone()), row))
        .collect();
    rows.iter()
        .map(|row| {
            by_key
                .remove(&(row.sender_id, row.client_msg_id.clone()))
                .map(|row| (row, true))
                .ok_or_else(|| AppError::internal("inserted message not read back"))
        })
        .collect()
}

fn insert_one(conn: &mut DbConnection, row: &NewMessage, cluster: bool) -> RowResult {
    if let Some(existing) = messages::find_by_client_id(conn, row.sender_id, &row.client_msg_id)? {
        return Ok((existing, false));
    }
    match messages::in_write_order(conn, cluster, |conn| {
        messages::insert_batch(conn, std::slice::from_ref(row))
    }) {
        Ok(mut rows) => rows
            .pop()
            .map(|r| (r, true))
            .ok_or_else(|| AppError::internal("inserted message not read back")),
        Err(err) if db::is_unique_violation(&err) => {
            messages::find_by_client_id(conn, row.sender_id, &row.client_msg_id)?
                .map(|r| (r, false))
                .ok_or_else(|| AppError::internal(err))
        }
        Err(err) => Err(err.into()),
    }
}

/// A new message's delivery: the recipient's connections and the sender's other ones.
struct FanOut {
    id: i64,
    out: Outbound,
    sender_id: i64,
    recipient_id: i64,
    origin: Option<ConnId>,
}

/// One sender's answer, ready before the batch's turn so the turn itself is short.
struct Release {
    reply: oneshot::Sender<Result<Stored, AppError>>,
    outcome: Result<Stored, AppError>,
    fan_out: Option<FanOut>,
}

impl Release {
    fn deliver(self, bus: &Bus) {
        if let Some(f) = &self.fan_out {
            bus.to_user(f.recipient_id, &f.out, None);
            bus.to_user(f.sender_id, &f.out, f.origin);
        }
        // The sender may have gone; the message is stored and was fanned out regardless.
        let _ = self.reply.send(self.outcome);
    }
}

/// Builds every answer and frame of the batch, in id order.
fn prepare(batch: &mut Vec<PendingMessage>, results: Vec<RowResult>) -> Vec<Release> {
    let mut releases: Vec<Release> = batch
        .drain(..)
        .zip(results)
        .map(|(pending, result)| match result {
            Ok((row, created)) => {
                let message =
                    MessageView::from_row(&row, pending.sender_name, pending.recipient_name);
                let fan_out = created.then(|| FanOut {
                    id: row.id,
                    out: Outbound::Message {
                        id: row.id,
                        text: ServerFrame::Message {
                            message: message.clone(),
                        }
                        .to_text(),
                    },
                    sender_id: row.sender_id,
                    recipient_id: row.recipient_id,
                    origin: pending.origin,
                });
                Release {
                    reply: pending.reply,
                    outcome: Ok(Stored { message, created }),
                    fan_out,
                }
            }
            Err(err) => Release {
                reply: pending.reply,
                outcome: Err(err),
                fan_out: None,
            },
        })
        .collect();
    releases.sort_by_key(|r| r.fan_out.as_ref().map_or(0, |f| f.id));
    releases
}
