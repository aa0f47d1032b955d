//! `fanout`: one sender, k listener connections. A pychat room holds at most 16 peers and a
//! `signal` goes to one peer, so the fan-out rides on what the server already sends to every
//! connection of a user:
//! - `typing` (default, nothing stored): `typing {to}` reaches every connection of `to`. The server
//!   drops a connection's repeated typing to the same user within 2 s, so the sender alternates
//!   between two listener users with k connections each; every send reaches k connections. The
//!   frame has no payload: the i-th `typing` a listener receives is matched to the i-th send time.
//! - `dm` (stored): `send` to one listener user with k connections; the body carries the time.
//!
//! `--rate 0` finds the ceiling: the sender keeps at most `window` sends not yet delivered to all
//! k connections. With two servers (a cluster), the sender uses the first and every listener the
//! second, so every delivery crosses instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::client::{self, Result, Server, Ws};

pub struct Args {
    pub listeners: usize,
    /// Sends per second; 0 = as fast as `window` allows.
    pub rate: f64,
    pub window: usize,
    pub duration_secs: f64,
    pub stored: bool,
    pub sources: String,
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    message: Option<Body>,
}

#[derive(Deserialize)]
struct Body {
    body: String,
}

/// Most send times kept at saturation (8 bytes each).
const MAX_SENDS: usize = 4_000_000;

pub async fn run(servers: &[Server], args: Args) -> Result<Value> {
    let server = &servers[0];
    let listener_server = &servers[servers.len() - 1];
    let sources = client::sources(&args.sources)?;
    let prefix = client::run_prefix();
    let k = args.listeners.max(1);
    let listener_users = if args.stored { 1 } else { 2 };
    let sender_token = server.account(&format!("{prefix}-fs")).await?;
    let mut names = Vec::new();
    let mut tokens = Vec::new();
    for u in 0..listener_users {
        let name = format!("{prefix}-fl{u}");
        tokens.push(server.account(&name).await?);
        names.push(name);
    }
    let gate = Arc::new(Semaphore::new(128));
    let mut connecting = Vec::new();
    for u in 0..listener_users {
        for c in 0..k {
            let (server, token, gate) = (listener_server.clone(), tokens[u].clone(), gate.clone());
            let source = sources[(u * k + c) % sources.len()];
            connecting.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                server
                    .connect(source, &token, false)
                    .await
                    .map(|ws| (u, ws))
            }));
        }
    }
    let mut listeners = Vec::with_capacity(connecting.len());
    for task in connecting {
        listeners.push(task.await??);
    }
    let mut sender = server.connect(sources[0], &sender_token, true).await?;
    if !args.stored {
        // Typing reaches only someone the sender has a conversation with: one message each.
        for (u, name) in names.iter().enumerate() {
            let id = format!("prime{u}");
            let frame =
                json!({"type": "send", "id": id, "to": name, "body": "hi", "client_msg_id": id});
            sender.send(client::text(&frame)).await?;
            loop {
                let reply = client::next_json(&mut sender).await?;
                if reply["id"] == id.as_str() {
                    break;
                }
            }
        }
    }

    let duration = Duration::from_secs_f64(args.duration_secs.max(0.1));
    let saturate = args.rate <= 0.0;
    let sends = if saturate {
        MAX_SENDS
    } else {
        ((args.rate * duration.as_secs_f64()).ceil() as usize).clamp(1, MAX_SENDS)
    };
    // At saturation, one permit per send; every k-th delivery gives one back.
    let window = Arc::new(Semaphore::new(if saturate {
        args.window.max(1)
    } else {
        0
    }));
    let send_times: Arc<Vec<AtomicU64>> = Arc::new((0..sends).map(|_| AtomicU64::new(0)).collect());
    let delivered = Arc::new(AtomicU64::new(0));
    let delivered_in_window = Arc::new(AtomicU64::new(0));
    // The number of sends once the sender is done; until then, unknown.
    let final_sent = Arc::new(AtomicU64::new(u64::MAX));
    let started = Instant::now() + Duration::from_millis(200);
    let end = started + duration;
    let drain_end = end + Duration::from_secs(3);

    let mut tasks = Vec::new();
    for (u, ws) in listeners {
        let (send_times, delivered) = (send_times.clone(), delivered.clone());
        let final_sent = final_sent.clone();
        let listener = Listener {
            user: u as u64,
            users: listener_users as u64,
            k: k as u64,
            stored: args.stored,
            window: saturate.then(|| window.clone()),
            send_times,
            delivered,
            delivered_in_window: delivered_in_window.clone(),
            final_sent,
            end,
            drain_end,
        };
        tasks.push(tokio::spawn(listener.listen(ws)));
    }
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1e-3));
    let (mut sink, mut stream) = sender.split();
    let reader = {
        let final_sent = final_sent.clone();
        let stored = args.stored;
        tokio::spawn(async move {
            // Done once the sends are over and, for stored sends, each is answered.
            client::read_answers(&mut stream, drain_end, |answered| {
                let sent = final_sent.load(Ordering::Acquire);
                sent != u64::MAX && (!stored || answered >= sent)
            })
            .await
        })
    };
    let mut sent = 0usize;
    tokio::time::sleep_until(started.into()).await;
    for (i, slot) in send_times.iter().enumerate() {
        if saturate {
            match tokio::time::timeout_at(end.into(), window.acquire()).await {
                Ok(Ok(permit)) => permit.forget(),
                _ => break,
            }
        } else {
            let due = started + interval.mul_f64(i as f64);
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        let now = client::now_nanos();
        slot.store(now, Ordering::Release);
        let frame = if args.stored {
            json!({"type": "send", "to": names[0], "body": format!("t={now}"), "client_msg_id": format!("f{i}")})
        } else {
            json!({"type": "typing", "to": names[i % 2]})
        };
        if sink.send(client::text(&frame)).await.is_err() {
            break;
        }
        sent += 1;
    }
    final_sent.store(sent as u64, Ordering::Release);
    let mut latency = client::histogram();
    for task in tasks {
        latency.add(&task.await?)?;
    }
    let (acked, errors) = reader.await?;
    let _ = sink.close().await;
    let secs = duration.as_secs_f64();
    Ok(json!({
        "scenario": "fanout",
        "mode": if args.stored { "dm" } else { "typing" },
        "listeners": k,
        "listener_connections": k * listener_users,
        "target": "pychat",
        "instances": servers.len(),
        "rate": args.rate,
        "window": if saturate { args.window.max(1) } else { 0 },
        "duration_secs": secs,
        "sent": sent,
        "acked": acked,
        "expected_deliveries": sent * k,
        "delivered": delivered.load(Ordering::Relaxed),
        "delivered_per_sec": delivered_in_window.load(Ordering::Relaxed) as f64 / secs,
        "latency": client::summary(&latency),
        "errors": errors,
    }))
}

struct Listener {
    user: u64,
    users: u64,
    k: u64,
    stored: bool,
    window: Option<Arc<Semaphore>>,
    send_times: Arc<Vec<AtomicU64>>,
    delivered: Arc<AtomicU64>,
    delivered_in_window: Arc<AtomicU64>,
    final_sent: Arc<AtomicU64>,
    end: Instant,
    drain_end: Instant,
}

impl Listener {
    async fn listen(self, mut ws: Ws) -> Histogram<u64> {
        let Self {
            user,
            users,
            k,
            stored,
            window,
            send_times,
            delivered,
            delivered_in_window,
            final_sent,
            end,
            drain_end,
        } = self;
        let mut latency = client::histogram();
        let mut received = 0u64;
        loop {
            // This connection's share of the sends, once their number is known.
            let sent = final_sent.load(Ordering::Acquire);
            if sent != u64::MAX && received >= (sent + users - 1 - user) / users {
                break;
            }
            let frame = match client::next_text(&mut ws, drain_end).await {
                client::Next::Text(text) => text,
                client::Next::Idle => continue,
                client::Next::Closed => break,
            };
            let Ok(incoming) = serde_json::from_str::<Incoming>(frame.as_str()) else {
                continue;
            };
            let sent_at = match (incoming.kind.as_str(), stored) {
                ("typing", false) => {
                    let index = usize::try_from(received * users + user).unwrap_or(usize::MAX);
                    received += 1;
                    send_times.get(index).map(|t| t.load(Ordering::Acquire))
                }
                ("message", true) => {
                    received += 1;
                    incoming
                        .message
                        .and_then(|m| m.body.strip_prefix("t=").and_then(|t| t.parse().ok()))
                }
                _ => continue,
            };
            let total = delivered.fetch_add(1, Ordering::AcqRel) + 1;
            if let Some(window) = &window
                && total.is_multiple_of(k)
            {
                window.add_permits(1);
            }
            if Instant::now() <= end {
                delivered_in_window.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(t) = sent_at.filter(|&t| t > 0) {
                latency.saturating_record(client::elapsed_micros(t));
            }
        }
        let _ = ws.close(None).await;
        latency
    }
}
