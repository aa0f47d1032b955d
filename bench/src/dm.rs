//! `dm`: pairs of users sending each other direct messages (stored, then acked and delivered).
//!
//! Each body carries its send time (`t=<unix nanos>`). Delivery latency is the recipient's clock
//! at arrival minus that time; ack latency is the sender's clock at the `ack` minus that time.
//! Each connection keeps at most `window` sends unacked. `--rate 0` sends as fast as the window
//! allows (saturation); otherwise the offered load is spread evenly over all senders.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::client::{self, Result, Server};

pub struct Args {
    pub pairs: usize,
    pub rate: f64,
    pub duration_secs: f64,
    pub window: usize,
    pub sources: String,
    /// Client message ids `c0, c1, …` repeated by every sender, instead of ids unique across
    /// senders (as random ids from real clients are). Both are valid: ids are unique per sender.
    pub shared_client_ids: bool,
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    /// A stored message in `ack` and `message` frames; the text of an `error`.
    message: Option<serde_json::Value>,
    code: Option<String>,
}

impl Incoming {
    fn stored(self) -> Option<StoredMessage> {
        serde_json::from_value(self.message?).ok()
    }
}

#[derive(Deserialize)]
struct StoredMessage {
    from: String,
    body: String,
}

fn sent_at(body: &str) -> Option<u64> {
    body.strip_prefix("t=")?.split(' ').next()?.parse().ok()
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    acked_in_window: AtomicU64,
    delivered: AtomicU64,
    delivered_in_window: AtomicU64,
    writers_done: AtomicU64,
}

struct Outcome {
    delivery: Histogram<u64>,
    ack: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

/// With two servers (a cluster), each pair has one user on each.
pub async fn run(servers: &[Server], args: Args) -> Result<Value> {
    let server = &servers[0];
    let sources = client::sources(&args.sources)?;
    let prefix = client::run_prefix();
    let users = args.pairs.max(1) * 2;
    let mut accounts = Vec::with_capacity(users);
    for chunk in (0..users).collect::<Vec<_>>().chunks(16) {
        let mut batch = Vec::new();
        for &i in chunk {
            let server = server.clone();
            let name = format!("{prefix}-d{i}");
            batch.push(tokio::spawn(async move {
                let token = server.account(&name).await?;
                Ok::<_, client::Error>((name, token))
            }));
        }
        for task in batch {
            accounts.push(task.await??);
        }
    }
    let mut sockets = Vec::with_capacity(users);
    for (i, (_, token)) in accounts.iter().enumerate() {
        sockets.push(
            servers[i % servers.len()]
                .connect(sources[i % sources.len()], token, true)
                .await?,
        );
    }

    let counters = Arc::new(Counters::default());
    let per_sender_rate = args.rate / users as f64;
    let window = args.window.max(1);
    let duration = Duration::from_secs_f64(args.duration_secs.max(0.1));
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::with_capacity(users);
    for (i, ws) in sockets.into_iter().enumerate() {
        let me = accounts[i].0.clone();
        let peer = accounts[i ^ 1].0.clone();
        let counters = counters.clone();
        tasks.push(tokio::spawn(connection(
            ws,
            me,
            peer,
            counters,
            per_sender_rate,
            window,
            args.shared_client_ids,
            started,
            end,
            users as u64,
        )));
    }
    let mut delivery = client::histogram();
    let mut ack = client::histogram();
    let mut errors = BTreeMap::new();
    for task in tasks {
        let outcome = task.await??;
        delivery.add(&outcome.delivery)?;
        ack.add(&outcome.ack)?;
        for (code, n) in outcome.errors {
            *errors.entry(code).or_insert(0) += n;
        }
    }
    let secs = duration.as_secs_f64();
    let c = &counters;
    Ok(json!({
        "scenario": "dm",
        "target": "pychat",
        "instances": servers.len(),
        "pairs": args.pairs,
        "connections": users,
        "offered_rate": args.rate,
        "window": window,
        "duration_secs": secs,
        "sent": c.sent.load(Ordering::Relaxed),
        "acked": c.acked.load(Ordering::Relaxed),
        "delivered": c.delivered.load(Ordering::Relaxed),
        "acked_per_sec": c.acked_in_window.load(Ordering::Relaxed) as f64 / secs,
        "delivered_per_sec": c.delivered_in_window.load(Ordering::Relaxed) as f64 / secs,
        "delivery_latency": client::summary(&delivery),
        "ack_latency": client::summary(&ack),
        "errors": errors,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    ws: client::Ws,
    me: String,
    peer: String,
    counters: Arc<Counters>,
    rate: f64,
    window: usize,
    shared_client_ids: bool,
    started: Instant,
    end: Instant,
    writers: u64,
) -> Result<Outcome> {
    let (mut sink, mut stream) = ws.split();
    let me_for_writer = me.clone();
    let unacked = Arc::new(Semaphore::new(window));
    let sent_here = Arc::new(AtomicU64::new(0));
    let writer = {
        let unacked = unacked.clone();
        let counters = counters.clone();
        let sent_here = sent_here.clone();
        let me = me_for_writer;
        tokio::spawn(async move {
            let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
            let pad = "x".repeat(40);
            let mut seq = 0u64;
            let id_prefix = if shared_client_ids {
                String::new()
            } else {
                format!("{me}-")
            };
            'send: while Instant::now() < end {
                if let Some(interval) = interval {
                    let due = started + interval.mul_f64(seq as f64);
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                let Ok(permit) = tokio::time::timeout_at(end.into(), unacked.acquire()).await
                else {
                    break;
                };
                let Ok(permit) = permit else { break };
                permit.forget();
                // At saturation, take every free slot of the window and flush once.
                let mut batch = 1;
                if interval.is_none() {
                    while let Ok(p) = unacked.try_acquire() {
                        p.forget();
                        batch += 1;
                    }
                }
                for _ in 0..batch {
                    let frame = json!({
                        "type": "send",
                        "to": peer,
                        "body": format!("t={} {pad}", client::now_nanos()),
                        "client_msg_id": format!("{id_prefix}c{seq}"),
                    });
                    seq += 1;
                    if sink.feed(client::text(&frame)).await.is_err() {
                        break 'send;
                    }
                }
                if sink.flush().await.is_err() {
                    break 'send;
                }
                counters.sent.fetch_add(batch, Ordering::Relaxed);
                sent_here.fetch_add(batch, Ordering::Relaxed);
            }
            counters.writers_done.fetch_add(1, Ordering::Relaxed);
            sink
        })
    };

    let mut outcome = Outcome {
        delivery: client::histogram(),
        ack: client::histogram(),
        errors: BTreeMap::new(),
    };
    let mut answered = 0u64;
    // Read until every writer is done, this connection's sends are answered and every send of
    // the run is delivered; or until a drain period after the end.
    let drain_end = end + Duration::from_secs(10);
    loop {
        if Instant::now() >= end
            && counters.writers_done.load(Ordering::Relaxed) == writers
            && answered >= sent_here.load(Ordering::Relaxed)
            && counters.delivered.load(Ordering::Relaxed) >= counters.sent.load(Ordering::Relaxed)
        {
            break;
        }
        let frame = match client::next_text(&mut stream, drain_end).await {
            client::Next::Text(text) => text,
            client::Next::Idle => continue,
            client::Next::Closed => break,
        };
        let Ok(incoming) = serde_json::from_str::<Incoming>(frame.as_str()) else {
            *outcome.errors.entry("bench_unparsed".into()).or_insert(0) += 1;
            continue;
        };
        let in_window = Instant::now() <= end;
        match incoming.kind.as_str() {
            "ack" => {
                answered += 1;
                unacked.add_permits(1);
                counters.acked.fetch_add(1, Ordering::Relaxed);
                if in_window {
                    counters.acked_in_window.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(t) = incoming.stored().and_then(|m| sent_at(&m.body)) {
                    outcome.ack.saturating_record(client::elapsed_micros(t));
                }
            }
            "message" => {
                if let Some(m) = incoming.stored().filter(|m| m.from != me)
                    && let Some(t) = sent_at(&m.body)
                {
                    outcome
                        .delivery
                        .saturating_record(client::elapsed_micros(t));
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    if in_window {
                        counters.delivered_in_window.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            "error" => {
                answered += 1;
                unacked.add_permits(1);
                let code = incoming.code.unwrap_or_else(|| "unknown".into());
                *outcome.errors.entry(code).or_insert(0) += 1;
            }
            _ => {}
        }
    }
    writer.abort();
    if let Ok(sink) = writer.await {
        let mut ws = sink.reunite(stream).map_err(|_| "reunite")?;
        let _ = ws.close(None).await;
    }
    Ok(outcome)
}
