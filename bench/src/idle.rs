//! `idle`: N authenticated connections that only answer the server's pings (against a relay:
//! N connections spread over `users` rooms).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Result, Server};
use crate::relay::{self, Framing};

pub struct Args {
    pub connections: usize,
    pub users: usize,
    pub sources: String,
    pub hold_secs: f64,
    pub connect_concurrency: usize,
    pub server_pid: Option<String>,
    pub ticket: bool,
    /// Connect to a relay of this framing instead of pychat.
    pub relay: Option<Framing>,
    /// Pause before each RSS sample, for the server's allocations to settle.
    pub settle_secs: f64,
}

pub async fn run(server: Server, args: Args) -> Result<Value> {
    let sources = client::sources(&args.sources)?;
    let prefix = client::run_prefix();
    let users = args.users.clamp(1, args.connections.max(1));
    let mut tokens = Vec::with_capacity(users);
    let accounts = if args.relay.is_some() { 0 } else { users };
    for chunk in (0..accounts).collect::<Vec<_>>().chunks(16) {
        let mut batch = Vec::new();
        for &i in chunk {
            let server = server.clone();
            let name = format!("{prefix}-i{i}");
            batch.push(tokio::spawn(async move { server.account(&name).await }));
        }
        for task in batch {
            tokens.push(task.await??);
        }
    }
    // Let the server settle after the registrations before the baseline.
    tokio::time::sleep(Duration::from_secs_f64(args.settle_secs / 4.0)).await;
    let rss_before = args.server_pid.as_deref().and_then(client::rss_kib);

    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let (ticket, framing) = (args.ticket, args.relay);
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let server = server.clone();
        let token = tokens.get(i % users).cloned().unwrap_or_default();
        let room = format!("{prefix}-i{}", i % users);
        let source = sources[i % sources.len()];
        let gate = gate.clone();
        let (connected, failed, dropped, first_error) = (
            connected.clone(),
            failed.clone(),
            dropped.clone(),
            first_error.clone(),
        );
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let ws = match framing {
                Some(framing) => relay::join(&server, framing, source, &room).await,
                None => server.connect(source, &token, ticket).await,
            };
            drop(permit);
            let mut ws = match ws {
                Ok(ws) => ws,
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert_with(|| e.to_string());
                    }
                    return;
                }
            };
            connected.fetch_add(1, Ordering::Relaxed);
            loop {
                tokio::select! {
                    frame = ws.next() => match frame {
                        // Engine.IO's ping is a text frame that wants `3` back.
                        Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                            let _ = ws.send(Message::text("3")).await;
                        }
                        // Reading is what answers WebSocket pings; anything else is ignored.
                        Some(Ok(_)) => {}
                        _ => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    },
                    _ = stop.changed() => break,
                }
            }
            let _ = ws.close(None).await;
        }));
    }
    // Wait until every connection attempt has finished (bounded by the attempts' own timeouts).
    let deadline = Instant::now() + Duration::from_secs(300);
    while connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed)
        < args.connections as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Let the server's allocations settle, then sample.
    tokio::time::sleep(Duration::from_secs_f64(args.settle_secs)).await;
    let rss_after = args.server_pid.as_deref().and_then(client::rss_kib);
    let holding = connected.load(Ordering::Relaxed) - dropped.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.hold_secs.max(0.0))).await;
    let rss_end = args.server_pid.as_deref().and_then(client::rss_kib);
    let still_open = connected.load(Ordering::Relaxed) - dropped.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if holding > 0 => Some((a as f64 - b as f64) / holding as f64),
        _ => None,
    };
    let error = first_error.lock().ok().and_then(|e| e.clone());
    Ok(json!({
        "scenario": "idle",
        "target": args.relay.map_or("pychat", Framing::name),
        "requested": args.connections,
        "users": users,
        "sources": sources.len(),
        "connected": connected.load(Ordering::Relaxed),
        "failed": failed.load(Ordering::Relaxed),
        "first_error": error,
        "held_after_hold": still_open,
        "connect_secs": connect_secs,
        "connections_per_sec": connected.load(Ordering::Relaxed) as f64 / connect_secs.max(1e-9),
        "hold_secs": args.hold_secs,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_rss_end_kib": rss_end,
        "server_kib_per_connection": per_conn,
        "bench_rss_kib": client::rss_kib("self"),
    }))
}
