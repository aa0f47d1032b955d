//! Group commit with several writer threads, acked and delivered in id order.
//!
//! Each writer takes whatever is waiting in its queue (up to a batch), inserts it with one
//! multi-row INSERT in one transaction, and only after the commit acks each sender and fans the
//! messages out. An ack therefore always means stored, and a busy server pays one commit per
//! batch.
//!
//! Several writers INSERT and COMMIT at once (the database works on them in parallel and flushes
//! their commits together), so ids can commit out of order. Yet nobody may see a message before
//! one with a lower id: a client resumes after the highest id it has seen, so a lower id made
//! visible later would be skipped for good. The rules:
//!
//! 1. **Senders stay in order**: a message goes to the writer chosen by its sender, so one
//!    sender's messages are stored one batch after another, in the order sent.
//! 2. **Floors**: before a batch's INSERT starts, it is registered with the highest id any INSERT
//!    has returned so far. Ids are handed out in increasing order of time (PostgreSQL's identity
//!    sequence, which must keep the default CACHE 1; InnoDB's auto-increment counter, in any
//!    `innodb_autoinc_lock_mode`; SQLite's one writer), so every id the batch gets lies above
//!    that floor. Once the INSERT returns, the batch's lowest id replaces the floor. (MySQL's
//!    read-back by `LAST_INSERT_ID()` range checks that the range holds exactly its own rows,
//!    and reads by key otherwise.)
//! 3. **Release**: a stored row is acked and fanned out only once no uncommitted batch can hold a
//!    lower id (the bound: the lowest floor or lowest id of the batches not yet committed). Rows
//!    are released one release at a time, in id order across batches, so every connection gets
//!    messages in id order.
//! 4. **Visibility**: readers (resume replay, history, conversation lists) read nothing above the
//!    released watermark, the bound of the last release. It moves before the rows are fanned
//!    out, so a connection registered after a fan-out finds those rows in its replay, and one
//!    registered before gets them live.
//!
//! With several instances (Redis), each has one writer and every batch takes a cluster-wide lock
//! held through its commit (`messages::in_write_order`), so commits are in id order across
//! instances and readers need no watermark. SQLite has one write lock: one writer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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
/// fan-out lands on a recipient's queue at once (one release can carry a batch from each
/// writer), so connection queues must hold at least two batches; the default holds eight.
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
    /// One queue per writer thread; a sender's messages always take the same one (rule 1).
    queues: Arc<[mpsc::Sender<PendingMessage>]>,
    visible: Arc<Watermark>,
}

/// The released watermark (rule 4).
struct Watermark {
    /// With a cluster-wide lock ordering commits, every committed row may be read.
    unbounded: bool,
    released: AtomicI64,
}

/// What the writer threads share.
struct Shared {
    db: Db,
    bus: Bus,
    cluster: bool,
    order: Mutex<Order>,
    /// Held (before `order`) while a release is delivered: one release at a time, in order,
    /// while other writers can still register and note their ids.
    delivery: Mutex<()>,
    visible: Arc<Watermark>,
}

/// The batches between registration and release (rules 2 and 3).
struct Order {
    /// The highest id any INSERT has returned, or the newest stored id at start; `None` until
    /// the writers have read it.
    high: Option<i64>,
    next_batch: u64,
    batches: BTreeMap<u64, InFlight>,
}

struct InFlight {
    /// Every id this batch gets is above it; once the INSERT returned, its lowest id minus one.
    floor: i64,
    committed: bool,
    /// After the commit: answers not yet released, in id order.
    waiting: VecDeque<Release>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A writer that panicked leaves consistent state behind (a map of batches, a counter).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MessageWriter {
    /// Starts `writers` writer threads (one with SQLite or several instances). They end when
    /// every handle is dropped.
    pub fn start(db: Db, bus: Bus, writers: Option<usize>) -> Self {
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
            order: Mutex::new(Order {
                high: None,
                next_batch: 0,
                batches: BTreeMap::new(),
            }),
            delivery: Mutex::new(()),
            visible: visible.clone(),
        });
        tracing::info!(writers, "message writers");
        let mut queues = Vec::with_capacity(writers);
        for n in 0..writers {
            let (tx, rx) = mpsc::channel(QUEUE);
            queues.push(tx);
            let shared = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("pychat-writer-{n}"))
                .spawn(move || run(&shared, rx));
            if let Err(err) = spawned {
                tracing::error!(error = %err, "cannot start a message writer");
            }
        }
        Self {
            queues: queues.into(),
            visible,
        }
    }

    pub async fn store(&self, pending: PendingMessage) -> Result<(), AppError> {
        let count = u64::try_from(self.queues.len()).unwrap_or(1).max(1);
        let index = usize::try_from(pending.row.sender_id.unsigned_abs() % count).unwrap_or(0);
        self.queues[index]
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

fn run(shared: &Shared, mut rx: mpsc::Receiver<PendingMessage>) {
    start_order(shared);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let slot = Slot::register(shared);
        let results = write_batch(shared, &mut batch, &slot);
        let releases = prepare(&mut batch, results);
        slot.committed(releases);
    }
}

/// Reads the newest stored id before any batch of this process: everything up to it is
/// committed and visible. Holds the order lock, so no batch registers first.
fn start_order(shared: &Shared) {
    let mut order = lock(&shared.order);
    while order.high.is_none() {
        match shared
            .db
            .with_connection(|conn| Ok(messages::newest_id(conn)?))
        {
            Ok(newest) => {
                let newest = newest.unwrap_or(0);
                order.high = Some(newest);
                shared.visible.released.fetch_max(newest, Ordering::SeqCst);
            }
            Err(err) => {
                tracing::warn!(error = %err, "message writer cannot read the newest id; retrying");
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// A batch's entry in [`Order`], from before its INSERT until its commit. Dropped without
/// committing (a panic), it leaves with nothing to release, so later batches are not held up.
struct Slot<'a> {
    shared: &'a Shared,
    number: u64,
    done: bool,
}

impl<'a> Slot<'a> {
    fn register(shared: &'a Shared) -> Self {
        let mut order = lock(&shared.order);
        let number = order.next_batch;
        order.next_batch += 1;
        let floor = order.high.unwrap_or(NOT_READY);
        order.batches.insert(
            number,
            InFlight {
                floor,
                committed: false,
                waiting: VecDeque::new(),
            },
        );
        Slot {
            shared,
            number,
            done: false,
        }
    }

    /// The INSERT returned these ids (not yet committed): the floor rises to just below them.
    fn inserted(&self, rows: &[MessageRow]) {
        let (Some(lowest), Some(highest)) = (
            rows.iter().map(|r| r.id).min(),
            rows.iter().map(|r| r.id).max(),
        ) else {
            return;
        };
        let mut order = lock(&self.shared.order);
        order.high = Some(order.high.map_or(highest, |high| high.max(highest)));
        if let Some(batch) = order.batches.get_mut(&self.number) {
            batch.floor = batch.floor.max(lowest - 1);
        }
    }

    /// Committed (or failed): hands over the answers and releases whatever may go now.
    fn committed(mut self, releases: Vec<Release>) {
        self.done = true;
        // Rows stored one by one (or under the cluster lock) were not noted at their INSERT.
        let newest = releases
            .iter()
            .filter(|r| r.created())
            .map(Release::order_key)
            .max();
        let delivery = lock(&self.shared.delivery);
        let ready = {
            let mut order = lock(&self.shared.order);
            if let (Some(newest), Some(high)) = (newest, order.high) {
                order.high = Some(high.max(newest));
            }
            if let Some(batch) = order.batches.get_mut(&self.number) {
                batch.committed = true;
                batch.waiting = releases.into();
            }
            take_ready(self.shared, &mut order)
        };
        deliver(self.shared, ready);
        drop(delivery);
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.done {
            let delivery = lock(&self.shared.delivery);
            let ready = {
                let mut order = lock(&self.shared.order);
                order.batches.remove(&self.number);
                take_ready(self.shared, &mut order)
            };
            deliver(self.shared, ready);
            drop(delivery);
        }
    }
}

/// Takes, in id order, every committed row that no uncommitted batch can precede (rule 3), and
/// moves the watermark up to that bound. The caller holds the delivery lock and delivers them
/// before the next release is taken, so each connection's queue gets ids in order.
fn take_ready(shared: &Shared, order: &mut Order) -> Vec<Release> {
    let high = order.high.unwrap_or(NOT_READY);
    let bound = order
        .batches
        .values()
        .filter(|b| !b.committed)
        .map(|b| b.floor)
        .min()
        .unwrap_or(high)
        .min(high);
    let mut ready = Vec::new();
    for batch in order.batches.values_mut().filter(|b| b.committed) {
        while batch
            .waiting
            .front()
            .is_some_and(|r| r.order_key() <= bound)
        {
            ready.extend(batch.waiting.pop_front());
        }
    }
    order
        .batches
        .retain(|_, b| !b.committed || !b.waiting.is_empty());
    ready.sort_by_key(Release::order_key);
    // Before the fan-out (rule 4): everything up to the bound is released or about to be.
    shared.visible.released.fetch_max(bound, Ordering::SeqCst);
    ready
}

/// Acks and fans out, building each frame just before it goes, so the first acks of a batch
/// leave while the rest are still being serialised.
fn deliver(shared: &Shared, ready: Vec<Release>) {
    for release in ready {
        release.deliver(&shared.bus);
    }
}

type RowResult = Result<(MessageRow, bool), AppError>;

/// Stores the batch and commits it.
fn write_batch(shared: &Shared, batch: &mut [PendingMessage], slot: &Slot<'_>) -> Vec<RowResult> {
    let now = db::now();
    for pending in batch.iter_mut() {
        pending.row.created_at = now;
    }
    let rows: Vec<NewMessage> = batch.iter().map(|p| p.row.clone()).collect();
    let outcome = shared
        .db
        .with_connection(|conn| Ok(store_rows(conn, &rows, shared.cluster, slot)));
    match outcome {
        Ok(results) => results,
        Err(err) => batch.iter().map(|_| Err(err.clone())).collect(),
    }
}

enum Failure {
    /// Nothing was stored.
    Insert(diesel::result::Error),
    /// The INSERT worked but the commit failed: nothing was stored.
    Commit(diesel::result::Error),
}

fn store_rows(
    conn: &mut DbConnection,
    rows: &[NewMessage],
    cluster: bool,
    slot: &Slot<'_>,
) -> Vec<RowResult> {
    let attempt = if cluster {
        // One writer; the cluster-wide lock is held through the commit.
        messages::in_write_order(conn, true, |conn| messages::insert_batch(conn, rows))
            .map_err(Failure::Insert)
    } else {
        insert_then_commit(conn, rows, slot)
    };
    match attempt {
        Ok(stored) => batch_results(rows, stored),
        // A retry or a duplicate inside the batch (or a vanished user) fails the whole statement:
        // redo it row by row so each sender gets its own answer. The batch stays registered, so
        // these ids too are released in order.
        Err(Failure::Insert(err)) => {
            tracing::debug!(error = %err, "batch insert failed; inserting one by one");
            rows.iter()
                .map(|row| insert_one(conn, row, cluster))
                .collect()
        }
        Err(Failure::Commit(err)) => {
            let err = AppError::database_unavailable(err);
            rows.iter().map(|_| Err(err.clone())).collect()
        }
    }
}

type Tm = <DbConnection as Connection>::TransactionManager;

/// BEGIN, INSERT, note the ids (rule 2), COMMIT.
fn insert_then_commit(
    conn: &mut DbConnection,
    rows: &[NewMessage],
    slot: &Slot<'_>,
) -> Result<Vec<MessageRow>, Failure> {
    Tm::begin_transaction(conn).map_err(Failure::Insert)?;
    let stored = match messages::insert_batch(conn, rows) {
        Ok(stored) => stored,
        Err(err) => {
            // A connection that cannot roll back is broken; the row-by-row retry will say so.
            let _ = Tm::rollback_transaction(conn);
            return Err(Failure::Insert(err));
        }
    };
    slot.inserted(&stored);
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

/// One sender's answer, waiting for its turn.
struct Release {
    pending: PendingMessage,
    result: RowResult,
}

impl Release {
    /// Where it goes in the release order: its id; an error (nothing stored) at once.
    fn order_key(&self) -> i64 {
        match &self.result {
            Ok((row, _)) => row.id,
            Err(_) => i64::MIN,
        }
    }

    fn created(&self) -> bool {
        matches!(self.result, Ok((_, true)))
    }

    /// Acks the sender and, for a new message, delivers it to the recipient's connections and
    /// the sender's other ones.
    fn deliver(self, bus: &Bus) {
        let Self { pending, result } = self;
        let reply = result.map(|(row, created)| {
            let message = MessageView::from_row(&row, pending.sender_name, pending.recipient_name);
            if created {
                let out = Outbound::Message {
                    id: row.id,
                    text: ServerFrame::Message {
                        message: message.clone(),
                    }
                    .to_text(),
                };
                bus.to_user(row.recipient_id, &out, None);
                bus.to_user(row.sender_id, &out, pending.origin);
            }
            Stored { message, created }
        });
        // The sender may have gone; the message is stored and was fanned out regardless.
        let _ = pending.reply.send(reply);
    }
}

/// Pairs each message with its outcome, in id order.
fn prepare(batch: &mut Vec<PendingMessage>, results: Vec<RowResult>) -> Vec<Release> {
    let mut releases: Vec<Release> = batch
        .drain(..)
        .zip(results)
        .map(|(pending, result)| Release { pending, result })
        .collect();
    releases.sort_by_key(Release::order_key);
    releases
}
