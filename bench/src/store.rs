//! `store`: the storage ceiling of a backend, with no WebSocket in the way.
//!
//! The same rows the `dm` scenario makes pychat store (2P users, user 2i and 2i+1 writing to each
//! other, 64-byte bodies, client message ids unique per sender), inserted through the server's
//! own code: `pychat::db` opens the database with the server's session settings, applies the
//! server's migrations and stores each batch with `db::events::insert_batch`, the call the
//! server's message writer makes. N OS threads each insert B-row batches, one transaction per
//! batch, for S seconds. pychat's dm figure divided by this one says what the rest of the server
//! costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use diesel::Connection;
use hdrhistogram::Histogram;
use pychat::db::conversations;
use pychat::db::events::{self, NewEvent};
use pychat::db::{self, DatabaseUrl, Db, users};
use serde_json::{Value, json};

use crate::client::{self, Result};

pub struct Args {
    pub database_url: String,
    pub writers: usize,
    pub batch: usize,
    pub duration_secs: f64,
    /// Pairs of users the rows are spread over (as `dm --pairs`).
    pub pairs: usize,
}

/// What one writer thread did.
struct Outcome {
    rows: u64,
    transactions: u64,
    /// BEGIN … COMMIT, microseconds.
    transaction: Histogram<u64>,
    /// The COMMIT alone.
    commit: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

fn fail(context: &str, err: impl std::fmt::Display) -> client::Error {
    format!("{context}: {err}").into()
}

pub fn run(args: Args) -> Result<Value> {
    let url = DatabaseUrl::parse(&args.database_url).map_err(|e| fail("--database-url", e))?;
    let writers = args.writers.max(1);
    let batch = args.batch.max(1);
    let pool = u32::try_from(writers + 1).unwrap_or(u32::MAX);
    let db = Db::connect(&url, pool).map_err(|e| fail("connect", e))?;
    db.migrate(&url).map_err(|e| fail("migrate", e))?;
    let user_ids = create_users(&db, args.pairs.max(1) * 2)?;
    let prefix = client::run_prefix();

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut threads = Vec::with_capacity(writers);
    for w in 0..writers {
        let db = db.clone();
        let stop = stop.clone();
        let user_ids = user_ids.clone();
        let key = format!("{prefix}-w{w}-");
        threads.push(
            thread::Builder::new()
                .name(format!("store-writer-{w}"))
                .spawn(move || write_until(&db, &stop, &user_ids, w, batch, &key))
                .map_err(|e| fail("spawn", e))?,
        );
    }
    thread::sleep(Duration::from_secs_f64(args.duration_secs.max(0.1)));
    stop.store(true, Ordering::Relaxed);
    let mut total = Outcome {
        rows: 0,
        transactions: 0,
        transaction: client::histogram(),
        commit: client::histogram(),
        errors: 0,
        first_error: None,
    };
    for handle in threads {
        let outcome = handle.join().map_err(|_| "a writer thread panicked")?;
        total.rows += outcome.rows;
        total.transactions += outcome.transactions;
        total.transaction.add(&outcome.transaction)?;
        total.commit.add(&outcome.commit)?;
        total.errors += outcome.errors;
        total.first_error = total.first_error.or(outcome.first_error);
    }
    // Every transaction that was started is counted, so the time is until the last one ended.
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "scenario": "store",
        "backend": url.backend().to_string(),
        "writers": writers,
        "batch": batch,
        "users": user_ids.len(),
        "duration_secs": secs,
        "rows": total.rows,
        "transactions": total.transactions,
        "rows_per_sec": total.rows as f64 / secs,
        "tx_per_sec": total.transactions as f64 / secs,
        "commit_latency": client::summary(&total.commit),
        "tx_latency": client::summary(&total.transaction),
        "errors": total.errors,
        "first_error": total.first_error,
    }))
}

/// 2P users with names unique to this run, so runs can share a database, and the direct
/// conversation of each pair (2i, 2i+1), as (user, its pair's conversation).
fn create_users(db: &Db, count: usize) -> Result<Vec<(i64, i64)>> {
    let prefix = client::run_prefix();
    db.with_connection(|conn| {
        let now = db::now();
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("{prefix}s{i}");
            let user = users::create(
                conn,
                &users::NewUser {
                    username: &name,
                    display_name: &name,
                    password_hash: "not-a-hash",
                    created_at: now,
                    updated_at: now,
                },
            )?;
            ids.push(user.id);
        }
        let mut members = Vec::with_capacity(count);
        for pair in ids.chunks(2) {
            let conversation = conversations::open_direct(conn, pair[0], pair[pair.len() - 1])?;
            members.extend(pair.iter().map(|&user| (user, conversation)));
        }
        Ok(members)
    })
    .map_err(|e| fail("create users", e))
}

fn write_until(
    db: &Db,
    stop: &AtomicBool,
    user_ids: &[(i64, i64)],
    writer: usize,
    batch: usize,
    key: &str,
) -> Outcome {
    let mut out = Outcome {
        rows: 0,
        transactions: 0,
        transaction: client::histogram(),
        commit: client::histogram(),
        errors: 0,
        first_error: None,
    };
    let pad = "x".repeat(40);
    let mut seq = 0u64;
    // Writers start on different users so their rows interleave as many senders' would.
    let mut next_sender = writer * 7;
    let result = db.with_connection(|conn| {
        while !stop.load(Ordering::Relaxed) {
            let now = db::now();
            let rows: Vec<NewEvent> = (0..batch)
                .map(|_| {
                    let sender = next_sender % user_ids.len();
                    next_sender += 1;
                    seq += 1;
                    // ~64 bytes, shaped like the dm scenario's bodies.
                    let body = format!("t={} {pad}", client::now_nanos());
                    let (sender_id, conversation_id) = user_ids[sender];
                    NewEvent::new(
                        conversation_id,
                        sender_id,
                        "text",
                        body,
                        format!("{key}{seq}"),
                        now,
                    )
                })
                .collect();
            let begun = Instant::now();
            let mut inserted = begun;
            let stored = conn.transaction(|conn| {
                let stored = events::insert_batch(conn, &rows)?;
                inserted = Instant::now();
                Ok::<_, diesel::result::Error>(stored)
            });
            let done = Instant::now();
            match stored {
                Ok(stored) if stored.len() == rows.len() => {
                    out.rows += rows.len() as u64;
                    out.transactions += 1;
                    out.transaction
                        .saturating_record(micros(done.duration_since(begun)));
                    out.commit
                        .saturating_record(micros(done.duration_since(inserted)));
                }
                Ok(stored) => {
                    out.errors += 1;
                    out.first_error.get_or_insert_with(|| {
                        format!("{} rows read back of {}", stored.len(), rows.len())
                    });
                }
                Err(err) => {
                    out.errors += 1;
                    out.first_error.get_or_insert_with(|| err.to_string());
                }
            }
        }
        Ok(())
    });
    if let Err(err) = result {
        out.errors += 1;
        out.first_error.get_or_insert_with(|| err.to_string());
    }
    out
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
