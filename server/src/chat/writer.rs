//! Group commit. Every message goes through one writer thread, which takes whatever is waiting
//! (up to a batch), inserts it in one transaction, and only after the commit acks each sender and
//! fans the messages out, in id order. An ack therefore always means stored, and a busy server
//! pays one commit per batch instead of one per message.

use std::collections::HashMap;
use std::thread;

use tokio::sync::{mpsc, oneshot};

use crate::bus::Bus;
use crate::db::messages::{self, MessageRow, NewMessage};
use crate::db::{self, Db, DbConnection};
use crate::error::AppError;
use crate::ws::hub::{ConnId, Outbound};
use crate::ws::protocol::ServerFrame;

use super::MessageView;

/// Most rows in one INSERT (8 binds each stays far below every backend's limit). A batch's
/// fan-out lands on a recipient's queue at once, so connection queues must hold two batches.
pub const MAX_BATCH: usize = 256;
/// Messages waiting for the writer before senders have to wait for room.
const QUEUE: usize = 8192;

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

#[derive(Clone)]
pub struct MessageWriter {
    tx: mpsc::Sender<PendingMessage>,
}

impl MessageWriter {
    /// Starts the writer thread. It ends when every handle is dropped.
    pub fn start(db: Db, bus: Bus) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let cluster = bus.redis().is_some();
        let spawned = thread::Builder::new()
            .name("pychat-writer".into())
            .spawn(move || run(db, bus, rx, cluster));
        if let Err(err) = spawned {
            tracing::error!(error = %err, "cannot start the message writer");
        }
        Self { tx }
    }

    pub async fn store(&self, pending: PendingMessage) -> Result<(), AppError> {
        self.tx
            .send(pending)
            .await
            .map_err(|_| AppError::internal("message writer stopped"))
    }
}

fn run(db: Db, bus: Bus, mut rx: mpsc::Receiver<PendingMessage>, cluster: bool) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        write_batch(&db, &bus, &mut batch, cluster);
    }
}

fn write_batch(db: &Db, bus: &Bus, batch: &mut Vec<PendingMessage>, cluster: bool) {
    let outcome = db.with_connection(|conn| {
        let now = db::now();
        for pending in batch.iter_mut() {
            pending.row.created_at = now;
        }
        let rows: Vec<NewMessage> = batch.iter().map(|p| p.row.clone()).collect();
        match messages::in_write_order(conn, cluster, |conn| messages::insert_batch(conn, &rows)) {
            Ok(stored) => Ok(batch_results(batch, stored)),
            // A retry or a duplicate inside the batch (or a vanished user) fails the whole
            // statement: redo it row by row so each sender gets its own answer.
            Err(err) => {
                tracing::debug!(error = %err, "batch insert failed; inserting one by one");
                Ok(batch
                    .iter()
                    .map(|p| insert_one(conn, &p.row, cluster))
                    .collect())
            }
        }
    });
    let results: Vec<Result<(MessageRow, bool), AppError>> = match outcome {
        Ok(results) => results,
        Err(err) => batch.iter().map(|_| Err(err.clone())).collect(),
    };
    for (pending, result) in batch.drain(..).zip(results) {
        let reply = result.map(|(row, created)| {
            let message = MessageView::from_row(&row, pending.sender_name, pending.recipient_name);
            if created {
                fan_out(
                    bus,
                    &message,
                    row.sender_id,
                    row.recipient_id,
                    pending.origin,
                );
            }
            Stored { message, created }
        });
        // The sender may have gone; the message is stored and was fanned out regardless.
        let _ = pending.reply.send(reply);
    }
}

fn batch_results(
    batch: &[PendingMessage],
    stored: Vec<MessageRow>,
) -> Vec<Result<(MessageRow, bool), AppError>> {
    let mut by_key: HashMap<(i64, String), MessageRow> = stored
        .into_iter()
        .map(|row| ((row.sender_id, row.client_msg_id.clone()), row))
        .collect();
    batch
        .iter()
        .map(|p| {
            by_key
                .remove(&(p.row.sender_id, p.row.client_msg_id.clone()))
                .map(|row| (row, true))
                .ok_or_else(|| AppError::internal("inserted message not read back"))
        })
        .collect()
}

fn insert_one(
    conn: &mut DbConnection,
    row: &NewMessage,
    cluster: bool,
) -> Result<(MessageRow, bool), AppError> {
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

/// Delivers a stored message to the recipient's connections and the sender's other ones.
fn fan_out(
    bus: &Bus,
    message: &MessageView,
    sender_id: i64,
    recipient_id: i64,
    origin: Option<ConnId>,
) {
    let out = Outbound::Message {
        id: message.id,
        text: ServerFrame::Message {
            message: message.clone(),
        }
        .to_text(),
    };
    bus.to_user(recipient_id, &out, None);
    bus.to_user(sender_id, &out, origin);
}
