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
//! visible later would be skipped for good. The rules (2 and 3 are kept by `release_order.rs`, a
//! pure module with its own tests):
//!
//! 1. **Conversations stay in order**: an event goes to the writer chosen by its conversation,
//!    so one conversation's events (a sender's messages, and the membership changes between
//!    them) are stored one batch after another, in the order sent. A change to a conversation's
//!    members or title is a batch of its own: every message is checked against the members as
//!    they are in its own transaction, and goes to exactly those who are members then.
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
//! held through its commit (`events::in_write_order`), so commits are in id order across
//! instances and readers need no watermark. SQLite has one write lock: one writer.
//!
//! 5. **The log**: what is released goes to the log's delivery as a [`LogBatch`] covering
//!    `(prev, last]` of the id sequence (`bus::delivery`), which delivers it in order to this
//!    instance's connections and, with Redis, publishes it to the other instances. Alone, an
//!    instance's batches are its releases (`prev` is the previous release's bound). In a
//!    cluster, `prev` is the newest id committed by anyone, read under the cluster lock, so each
//!    instance can tell a batch that follows on from one that skipped another instance's.
//! 6. **In doubt**: a COMMIT whose answer was lost (the connection died on the way) may or may
//!    not have stored the batch. Its senders are told `database_unavailable` at once (a retry
//!    with the same `client_msg_id` is safe either way); the batch stays registered, holding
//!    back every later id, until the writer has read from the database whether its rows exist,
//!    and then releases (fans out) those that do. Nothing committed is ever left unannounced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use tokio::sync::{mpsc, oneshot};

use crate::bus::ConnId;
use crate::bus::delivery::LogSink;
use crate::bus::log::{LogBatch, LogEntry};
use crate::db::conversations::{self, MemberRow};
use crate::db::events::{self, EventRow, NewEvent};
use crate::db::{self, Backend, Db, DbConnection};
use crate::error::{AppError, ErrorCode};

use super::membership::{self, Change, Member, MemberUpdate, Role};
use super::release_order::{ReleaseOrder, Released};
use super::service::not_yours;
use super::{Directory, MessageView};

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
/// How often a writer asks again whether an in-doubt batch was stored.
const IN_DOUBT_RETRY: Duration = Duration::from_millis(200);

/// An event waiting to be stored: a message, or a change to its conversation.
pub struct PendingMessage {
    pub row: NewEvent,
    /// In a direct conversation: the other user (the message's `to`).
    pub peer: Option<i64>,
    /// What the event changes (members, roles, title), checked and applied in its transaction.
    pub change: Option<Change>,
    /// The connection that sent it gets an ack, not a copy.
    pub origin: Option<ConnId>,
    /// Taken when the sender is answered (an in-doubt batch answers before its release).
    pub reply: Option<oneshot::Sender<Result<Stored, AppError>>>,
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
    directory: Directory,
    max_members: usize,
    log: LogSink,
    cluster: bool,
    order: Mutex<ReleaseOrder<Release>>,
    /// Held (before `order`) while a release is delivered: one release at a time, in order,
    /// while other writers can still register and note their ids.
    delivery: Mutex<()>,
    visible: Arc<Watermark>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A writer that panicked leaves consistent state behind (a map of batches, a counter).
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MessageWriter {
    /// Starts `writers` writer threads (one with SQLite or several instances, `cluster`). They
    /// end when every handle is dropped. `start`: the newest id when the log's delivery started.
    pub fn start(
        db: Db,
        directory: Directory,
        log: LogSink,
        cluster: bool,
        start: i64,
        writers: Option<usize>,
        max_members: usize,
    ) -> Self {
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
            directory,
            max_members,
            log,
            cluster,
            order: Mutex::new(ReleaseOrder::new(start)),
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
        let index =
            usize::try_from(pending.row.conversation_id.unsigned_abs() % count).unwrap_or(0);
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
    // A change that arrived while a batch of messages was filling: the next batch, alone.
    let mut next_change: Option<PendingMessage> = None;
    loop {
        let Some(first) = next_change.take().or_else(|| rx.blocking_recv()) else {
            break;
        };
        let alone = first.change.is_some();
        batch.push(first);
        while !alone && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) if next.change.is_some() => {
                    next_change = Some(next);
                    break;
                }
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let slot = Slot::register(shared);
        let (prev, results) = match write_batch(shared, &mut batch, &slot) {
            Written::Done { prev, results } => (prev, results),
            Written::InDoubt { prev, rows } => {
                let results = settle_in_doubt(shared, &mut batch, rows, &mut rx);
                (prev, results)
            }
        };
        let releases = prepare(&mut batch, results, prev);
        slot.committed(releases);
    }
}

/// A COMMIT's answer was lost: answers the senders now (their retry is safe whichever way it
/// went), then reads until the database answers which of the batch's rows exist. Messages that
/// queue up meanwhile are refused at once: the database is failing.
fn settle_in_doubt(
    shared: &Shared,
    batch: &mut [PendingMessage],
    sent: Vec<StoredRow>,
    rx: &mut mpsc::Receiver<PendingMessage>,
) -> Vec<RowResult> {
    tracing::warn!(
        messages = sent.len(),
        "a commit's outcome is unknown; finding out which messages were stored"
    );
    for pending in batch.iter_mut() {
        if let Some(reply) = pending.reply.take() {
            let _ = reply.send(Err(AppError::database_unavailable(
                "the commit's outcome is unknown",
            )));
        }
    }
    let seqs: Vec<i64> = sent.iter().map(|r| r.row.seq).collect();
    loop {
        match shared
            .db
            .with_connection(|conn| Ok(events::find_many(conn, &seqs)?))
        {
            Ok(rows) => {
                tracing::info!(
                    stored = rows.len(),
                    of = seqs.len(),
                    "settled an in-doubt commit"
                );
                let stored: Vec<StoredRow> = sent
                    .into_iter()
                    .filter(|s| rows.iter().any(|r| r.seq == s.row.seq))
                    .collect();
                let rows: Vec<NewEvent> = batch.iter().map(|p| p.row.clone()).collect();
                return batch_results(&rows, stored, || {
                    AppError::database_unavailable("the commit did not store it")
                });
            }
            Err(err) => tracing::debug!(error = %err, "in-doubt commit not settled yet"),
        }
        while let Ok(pending) = rx.try_recv() {
            if let Some(reply) = pending.reply {
                let _ = reply.send(Err(AppError::database_unavailable(
                    "the database is unavailable",
                )));
            }
        }
        thread::sleep(IN_DOUBT_RETRY);
    }
}

/// Reads the newest stored id before any batch of this process: everything up to it is
/// committed and visible. Holds the order lock, so no batch registers first.
fn start_order(shared: &Shared) {
    let mut order = lock(&shared.order);
    while !order.is_started() {
        match shared
            .db
            .with_connection(|conn| Ok(events::newest_seq(conn)?))
        {
            Ok(newest) => {
                let newest = newest.unwrap_or(0);
                order.start(newest);
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
        let number = lock(&shared.order).register();
        Slot {
            shared,
            number,
            done: false,
        }
    }

    /// The INSERT returned these ids (not yet committed): the floor rises to just below them.
    fn inserted(&self, rows: &[StoredRow]) {
        if let (Some(lowest), Some(highest)) = (
            rows.iter().map(|r| r.row.seq).min(),
            rows.iter().map(|r| r.row.seq).max(),
        ) {
            lock(&self.shared.order).inserted(self.number, lowest, highest);
        }
    }

    /// Committed (or failed, or settled): hands over the answers and releases whatever may go.
    fn committed(mut self, releases: Vec<Release>) {
        self.done = true;
        let items = releases.into_iter().map(|r| (r.order_key, r)).collect();
        let delivery = lock(&self.shared.delivery);
        let ready = {
            let mut order = lock(&self.shared.order);
            order.committed(self.number, items);
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
                order.abandoned(self.number);
                take_ready(self.shared, &mut order)
            };
            deliver(self.shared, ready);
            drop(delivery);
        }
    }
}

/// Takes what may be released now (rule 3) and moves the watermark to its bound before anything
/// is delivered (rule 4). The caller holds the delivery lock and delivers it before the next
/// release is taken, so the log gets its batches in order.
fn take_ready(shared: &Shared, order: &mut ReleaseOrder<Release>) -> Released<Release> {
    // In a cluster the log's stretches come from the database (`prev`), not from the releases.
    let cluster = shared.cluster;
    let ready = order.take_ready(|release| !cluster && release.log.is_some());
    shared
        .visible
        .released
        .fetch_max(ready.bound, Ordering::SeqCst);
    ready
}

/// Answers the senders and hands the log batch on (rule 5).
/// Each new message's frame is serialised (once) just before its sender's ack, so the first acks
/// of a release leave while the rest are still being serialised.
fn deliver(shared: &Shared, ready: Released<Release>) {
    let mut entries = Vec::new();
    // In a cluster a release is one batch, logged with the newest id its commit followed on.
    let mut cluster_prev = None;
    for release in ready.items {
        if let (Some(to), Ok(stored)) = (&release.log, &release.outcome) {
            cluster_prev = cluster_prev.or(Some(to.prev));
            LogEntry::append_event(
                &mut entries,
                stored.message.clone(),
                to.sender_id,
                to.recipients.clone(),
                to.except,
            );
        }
        if let Some(reply) = release.reply {
            // The sender may have gone; the message is stored and is delivered regardless.
            let _ = reply.send(release.outcome);
        }
    }
    let stretch = match (ready.log, cluster_prev) {
        (Some(stretch), _) => Some(stretch),
        (None, Some(prev)) if shared.cluster => entries.last().map(|e| (prev, e.id)),
        _ => None,
    };
    if let Some((prev, last)) = stretch {
        shared.log.committed(LogBatch {
            prev,
            last,
            entries,
        });
    }
}

/// A row as stored, with what its release needs: its view, and who it goes to.
#[derive(Clone)]
struct StoredRow {
    row: EventRow,
    /// False for a retry answered with the original.
    created: bool,
    view: MessageView,
    recipients: Arc<[i64]>,
}

type RowResult = Result<StoredRow, AppError>;

/// What became of a batch.
enum Written {
    /// Committed, or nothing was stored. `prev`: in a cluster, the newest id committed before it.
    Done { prev: i64, results: Vec<RowResult> },
    /// The COMMIT was sent and its answer lost: these rows are stored, or none is.
    InDoubt { prev: i64, rows: Vec<StoredRow> },
}

/// Stores the batch and commits it.
fn write_batch(shared: &Shared, batch: &mut [PendingMessage], slot: &Slot<'_>) -> Written {
    let now = db::now();
    for pending in batch.iter_mut() {
        pending.row.created_at = now;
    }
    let outcome = shared
        .db
        .with_connection(|conn| Ok(store_rows(shared, conn, batch, slot)));
    match outcome {
        Ok(written) => written,
        Err(err) => Written::Done {
            prev: 0,
            results: batch.iter().map(|_| Err(err.clone())).collect(),
        },
    }
}

/// Whether a failed INSERT was refused for one of its rows (a retried `client_msg_id`, a user
/// deleted meanwhile) rather than for want of a working database: then each row is tried alone.
fn refused_a_row(err: &DieselError) -> bool {
    matches!(
        err,
        DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation
                | DatabaseErrorKind::ForeignKeyViolation
                | DatabaseErrorKind::NotNullViolation
                | DatabaseErrorKind::CheckViolation,
            _
        )
    )
}

/// Who may do what in the batch's conversations, read in the batch's transaction.
struct Checked {
    /// Per row: what it changes, or why it may not be stored.
    verdicts: Vec<Result<Vec<MemberUpdate>, AppError>>,
    /// The current members of the batch's conversations.
    members: HashMap<i64, Vec<MemberRow>>,
}

/// Reads the members of the batch's conversations and checks each row against them: a message
/// needs its sender to be a member; a change must be allowed by `membership::plan`.
fn check(
    shared: &Shared,
    conn: &mut DbConnection,
    batch: &[PendingMessage],
) -> diesel::QueryResult<Checked> {
    let mut ids: Vec<i64> = batch.iter().map(|p| p.row.conversation_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut members: HashMap<i64, Vec<MemberRow>> = HashMap::new();
    for member in conversations::current_members(conn, &ids)? {
        members
            .entry(member.conversation_id)
            .or_default()
            .push(member);
    }
    let is_group = match batch.first() {
        Some(pending) if pending.change.is_some() => conversations::find_many(conn, &ids)?
            .first()
            .is_some_and(|c| c.is_group()),
        _ => false,
    };
    let verdicts = batch
        .iter()
        .map(|pending| {
            let current = members
                .get(&pending.row.conversation_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match &pending.change {
                Some(change) => {
                    let current: Vec<Member> = current
                        .iter()
                        .map(|m| Member {
                            user_id: m.user_id,
                            role: Role::parse(&m.role),
                            joined_seq: m.joined_seq,
                        })
                        .collect();
                    membership::plan(
                        change,
                        pending.row.sender_id,
                        &current,
                        is_group,
                        shared.max_members,
                    )
                }
                None if current.iter().any(|m| m.user_id == pending.row.sender_id) => {
                    Ok(Vec::new())
                }
                None => Err(not_yours()),
            }
        })
        .collect();
    Ok(Checked { verdicts, members })
}

/// Applies a change's member updates (and a new title) with its stored event `seq`, and returns
/// who gets the event: the members after it, and whoever it removed.
fn apply_change(
    conn: &mut DbConnection,
    pending: &PendingMessage,
    updates: &[MemberUpdate],
    seq: i64,
    members: &[MemberRow],
) -> diesel::QueryResult<Vec<i64>> {
    let conversation = pending.row.conversation_id;
    let mut recipients: Vec<i64> = members.iter().map(|m| m.user_id).collect();
    for update in updates {
        match *update {
            MemberUpdate::Join { user, role } => {
                conversations::join(
                    conn,
                    conversation,
                    user,
                    role.as_str(),
                    seq,
                    pending.row.created_at,
                )?;
                recipients.push(user);
            }
            MemberUpdate::Leave { user } => conversations::leave(conn, conversation, user, seq)?,
            MemberUpdate::SetRole { user, role } => {
                conversations::set_role(conn, conversation, user, role.as_str())?;
            }
        }
    }
    if let Some(Change::Rename { title }) = &pending.change {
        conversations::set_title(conn, conversation, title)?;
    }
    recipients.sort_unstable();
    recipients.dedup();
    Ok(recipients)
}

/// The stored rows with their views (names from the directory) and recipients.
fn finish(
    shared: &Shared,
    conn: &mut DbConnection,
    batch: &[PendingMessage],
    checked: &Checked,
    stored: Vec<(EventRow, bool)>,
) -> diesel::QueryResult<Vec<StoredRow>> {
    let mut recipients_of: HashMap<i64, Arc<[i64]>> = HashMap::new();
    let mut finished = Vec::with_capacity(stored.len());
    let mut names_needed: Vec<i64> = Vec::new();
    for (row, _) in &stored {
        names_needed.push(row.sender_id);
        names_needed.extend(MessageView::subject_ids(row));
    }
    names_needed.extend(batch.iter().filter_map(|p| p.peer));
    names_needed.sort_unstable();
    names_needed.dedup();
    let names = shared.directory.names(conn, &names_needed)?;
    let name = |id: i64| names.get(&id).cloned().unwrap_or_default();
    // The rows come back in the database's order: find each one's pending event by its key.
    let by_key: HashMap<(i64, &str), usize> = batch
        .iter()
        .enumerate()
        .map(|(index, p)| ((p.row.sender_id, p.row.client_msg_id.as_str()), index))
        .collect();
    for (row, created) in stored {
        let Some(&index) = by_key.get(&(row.sender_id, row.client_msg_id.as_str())) else {
            continue;
        };
        let pending = &batch[index];
        let members = checked
            .members
            .get(&row.conversation_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let recipients = match (&pending.change, &checked.verdicts[index]) {
            (Some(_), Ok(updates)) if created => {
                Arc::from(apply_change(conn, pending, updates, row.seq, members)?)
            }
            _ => recipients_of
                .entry(row.conversation_id)
                .or_insert_with(|| members.iter().map(|m| m.user_id).collect())
                .clone(),
        };
        let view = MessageView::from_row(&row, pending.peer, name);
        if let Some(mark) = view.read.filter(|_| created) {
            conversations::advance_read(conn, row.conversation_id, row.sender_id, mark.up_to)?;
        }
        finished.push(StoredRow {
            row,
            created,
            view,
            recipients,
        });
    }
    Ok(finished)
}

/// One transaction (under the cluster lock when there are other instances): the members read
/// and every row checked, then the allowed rows in one INSERT, or, when a row is refused, row by
/// row in a second transaction.
fn store_rows(
    shared: &Shared,
    conn: &mut DbConnection,
    batch: &[PendingMessage],
    slot: &Slot<'_>,
) -> Written {
    let rows: Vec<NewEvent> = batch.iter().map(|p| p.row.clone()).collect();
    let cluster = shared.cluster;
    let mut sent_commit: Option<(i64, Vec<StoredRow>)> = None;
    let mut refusals: Vec<Option<AppError>> = Vec::new();
    let attempt = events::in_write_order(conn, cluster, |conn| {
        let prev = newest_before(conn, cluster)?;
        let checked = check(shared, conn, batch)?;
        refusals = checked.verdicts.iter().map(|v| v.clone().err()).collect();
        let allowed: Vec<NewEvent> = rows
            .iter()
            .zip(&refusals)
            .filter(|(_, refused)| refused.is_none())
            .map(|(row, _)| row.clone())
            .collect();
        let inserted = if allowed.is_empty() {
            Vec::new()
        } else {
            events::insert_batch(conn, &allowed)?
        };
        let stored = finish(
            shared,
            conn,
            batch,
            &checked,
            inserted.into_iter().map(|r| (r, true)).collect(),
        )?;
        slot.inserted(&stored);
        sent_commit = Some((prev, stored.clone()));
        Ok((prev, stored))
    });
    match attempt {
        Ok((prev, stored)) => Written::Done {
            prev,
            results: with_refusals(
                batch_results(&rows, stored, || {
                    AppError::internal("inserted message not read back")
                }),
                refusals,
            ),
        },
        Err(_) if sent_commit.is_some() => in_doubt(sent_commit),
        Err(err) if refused_a_row(&err) => {
            tracing::debug!(error = %err, "batch insert refused; inserting row by row");
            store_one_by_one(shared, conn, batch, &rows, slot)
        }
        Err(err) => unavailable(&rows, &err),
    }
}

/// A row's refusal (by the membership check) in place of its result.
fn with_refusals(results: Vec<RowResult>, refusals: Vec<Option<AppError>>) -> Vec<RowResult> {
    results
        .into_iter()
        .zip(refusals.into_iter().chain(std::iter::repeat(None)))
        .map(|(result, refused)| match refused {
            Some(err) => Err(err),
            None => result,
        })
        .collect()
}

/// The rows of a batch that was refused, each on its own (in one transaction, each INSERT in a
/// savepoint so that a refused row leaves the others be).
fn store_one_by_one(
    shared: &Shared,
    conn: &mut DbConnection,
    batch: &[PendingMessage],
    rows: &[NewEvent],
    slot: &Slot<'_>,
) -> Written {
    let cluster = shared.cluster;
    let mut sent_commit: Option<(i64, Vec<StoredRow>)> = None;
    let attempt = events::in_write_order(conn, cluster, |conn| {
        let prev = newest_before(conn, cluster)?;
        let checked = check(shared, conn, batch)?;
        let mut outcomes: Vec<Result<(EventRow, bool), AppError>> = Vec::with_capacity(rows.len());
        for (row, verdict) in rows.iter().zip(&checked.verdicts) {
            outcomes.push(match verdict {
                Ok(_) => insert_one(conn, row)?,
                Err(err) => Err(err.clone()),
            });
        }
        let stored = finish(
            shared,
            conn,
            batch,
            &checked,
            outcomes.iter().filter_map(|o| o.clone().ok()).collect(),
        )?;
        let created: Vec<StoredRow> = stored.iter().filter(|s| s.created).cloned().collect();
        slot.inserted(&created);
        sent_commit = Some((prev, created));
        let errors: Vec<Option<AppError>> = outcomes.into_iter().map(Result::err).collect();
        Ok((prev, stored, errors))
    });
    match attempt {
        Ok((prev, stored, errors)) => Written::Done {
            prev,
            results: with_refusals(
                batch_results(rows, stored, || {
                    AppError::internal("inserted message not read back")
                }),
                errors,
            ),
        },
        Err(_) if sent_commit.is_some() => in_doubt(sent_commit),
        Err(err) => unavailable(rows, &err),
    }
}

/// In a cluster, the newest id committed by anyone (read under the cluster lock): the `prev` of
/// this batch in the log.
fn newest_before(conn: &mut DbConnection, cluster: bool) -> diesel::QueryResult<i64> {
    if cluster {
        Ok(events::newest_seq(conn)?.unwrap_or(0))
    } else {
        Ok(0)
    }
}

fn in_doubt(sent_commit: Option<(i64, Vec<StoredRow>)>) -> Written {
    let (prev, rows) = sent_commit.unwrap_or_default();
    Written::InDoubt { prev, rows }
}

fn unavailable(rows: &[NewEvent], err: &DieselError) -> Written {
    let err = AppError::database_unavailable(err);
    Written::Done {
        prev: 0,
        results: rows.iter().map(|_| Err(err.clone())).collect(),
    }
}

/// Pairs each row with the stored one of the same `(sender, client_msg_id)`; `missing` for a row
/// that has none.
fn batch_results(
    rows: &[NewEvent],
    stored: Vec<StoredRow>,
    missing: impl Fn() -> AppError,
) -> Vec<RowResult> {
    let mut by_key: HashMap<(i64, String), StoredRow> = stored
        .into_iter()
        .map(|s| ((s.row.sender_id, s.row.client_msg_id.clone()), s))
        .collect();
    rows.iter()
        .map(|row| {
            by_key
                .remove(&(row.sender_id, row.client_msg_id.clone()))
                .ok_or_else(&missing)
        })
        .collect()
}

/// One row inside the row-by-row transaction: the stored original for a retry, else a new row.
/// A row refused by a constraint gets its own error; a failing database fails the transaction.
fn insert_one(
    conn: &mut DbConnection,
    row: &NewEvent,
) -> diesel::QueryResult<Result<(EventRow, bool), AppError>> {
    if let Some(existing) = events::find_by_client_id(conn, row.sender_id, &row.client_msg_id)? {
        return Ok(Ok((existing, false)));
    }
    // A savepoint: on PostgreSQL a refused INSERT would otherwise abort the whole transaction.
    match conn.transaction(|conn| events::insert_batch(conn, std::slice::from_ref(row))) {
        Ok(mut stored) => Ok(stored
            .pop()
            .map(|r| (r, true))
            .ok_or_else(|| AppError::internal("inserted message not read back"))),
        Err(err) if db::is_unique_violation(&err) => {
            Ok(
                events::find_by_client_id(conn, row.sender_id, &row.client_msg_id)?
                    .map(|r| (r, false))
                    .ok_or_else(|| AppError::internal(err)),
            )
        }
        // The sender's or the recipient's account was deleted since the frame was checked.
        Err(DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
            Ok(Err(AppError::new(
                ErrorCode::UserNotFound,
                "the sender or the recipient no longer exists",
            )))
        }
        Err(err) if refused_a_row(&err) => Ok(Err(AppError::internal(err))),
        Err(err) => Err(err),
    }
}

/// One sender's answer (and, for a new event, its log entry), waiting for its turn.
struct Release {
    /// Where it goes in the release order: its seq; an error (nothing stored) at once.
    order_key: i64,
    reply: Option<oneshot::Sender<Result<Stored, AppError>>>,
    outcome: Result<Stored, AppError>,
    /// For a new event: where it goes in the log.
    log: Option<LogTarget>,
}

/// Who a new event is for, and (in a cluster) the newest id its commit followed on.
struct LogTarget {
    sender_id: i64,
    recipients: Arc<[i64]>,
    except: ConnId,
    prev: i64,
}

/// Pairs each event with its outcome, in seq order.
fn prepare(batch: &mut Vec<PendingMessage>, results: Vec<RowResult>, prev: i64) -> Vec<Release> {
    let mut releases: Vec<Release> = batch
        .drain(..)
        .zip(results)
        .map(|(pending, result)| match result {
            Ok(stored) => Release {
                order_key: stored.row.seq,
                reply: pending.reply,
                log: stored.created.then(|| LogTarget {
                    sender_id: stored.row.sender_id,
                    recipients: stored.recipients,
                    except: pending.origin.unwrap_or(0),
                    prev,
                }),
                outcome: Ok(Stored {
                    message: stored.view,
                    created: stored.created,
                }),
            },
            Err(err) => Release {
                order_key: ReleaseOrder::<Release>::AT_ONCE,
                reply: pending.reply,
                outcome: Err(err),
                log: None,
            },
        })
        .collect();
    releases.sort_by_key(|r| r.order_key);
    releases
}
