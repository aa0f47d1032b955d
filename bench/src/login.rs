//! `login`: a storm of password logins while other users keep a call's signaling going. The
//! question is whether bcrypt, which is meant to be slow, slows everyone else's WebSocket down.
//!
//! Peers in call rooms relay `signal` frames at a fixed rate for a calm phase, then for a storm
//! phase while `concurrency` clients log in over and over (each login: one bcrypt verify at the
//! server's cost). Signal latency is reported per phase, by send time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{self, PASSWORD, Result, Server};
use crate::signal;

pub struct Args {
    pub rooms: usize,
    /// Signals per second sent by each peer.
    pub rate: f64,
    /// Seconds of each phase (calm, then storm).
    pub phase_secs: f64,
    /// Logins in flight at once during the storm.
    pub concurrency: usize,
    /// Accounts the storm logs into (registered first).
    pub accounts: usize,
    pub sources: String,
}

pub async fn run(server: Server, args: Args) -> Result<Value> {
    let sources = client::sources(&args.sources)?;
    let prefix = client::run_prefix();
    let mut names = Vec::with_capacity(args.accounts.max(1));
    for i in 0..args.accounts.max(1) {
        let name = format!("{prefix}-l{i}");
        server.account(&name).await?;
        names.push(name);
    }
    let peers = signal::call_rooms(&server, &sources, args.rooms.max(1)).await?;

    let phase = Duration::from_secs_f64(args.phase_secs.max(0.1));
    let started = Instant::now();
    let storm_start = started + phase;
    let end = storm_start + phase;
    let signals = tokio::spawn(signal::relay_signals(
        peers,
        args.rate,
        started,
        storm_start,
        end,
    ));

    tokio::time::sleep_until(storm_start.into()).await;
    let logins = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut login_latency = Vec::new();
    let mut storm = Vec::new();
    for c in 0..args.concurrency.max(1) {
        let (server, names) = (server.clone(), names.clone());
        let (logins, failures) = (logins.clone(), failures.clone());
        storm.push(tokio::spawn(async move {
            let mut latency = client::histogram();
            let mut i = c;
            while Instant::now() < end {
                let begun = Instant::now();
                let body = json!({"username": names[i % names.len()], "password": PASSWORD});
                let ok = server
                    .http_client
                    .post(format!("{}/api/auth/login", server.http))
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok && Instant::now() <= end {
                    logins.fetch_add(1, Ordering::Relaxed);
                    latency.saturating_record(
                        u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX),
                    );
                } else if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                i += args.concurrency.max(1);
            }
            latency
        }));
    }
    for task in storm {
        login_latency.push(task.await?);
    }
    let mut login_histogram = client::histogram();
    for h in &login_latency {
        login_histogram.add(h)?;
    }
    let relayed = signals.await??;
    let [calm, during] = &relayed.latency;
    let p99 = |h: &hdrhistogram::Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
    let secs = phase.as_secs_f64();
    Ok(json!({
        "scenario": "login",
        "target": "pychat",
        "rooms": args.rooms.max(1),
        "rate_per_peer": args.rate,
        "phase_secs": secs,
        "concurrency": args.concurrency.max(1),
        "logins": logins.load(Ordering::Relaxed),
        "login_failures": failures.load(Ordering::Relaxed),
        "logins_per_sec": logins.load(Ordering::Relaxed) as f64 / secs,
        "login_latency": client::summary(&login_histogram),
        "calm_latency": client::summary(calm),
        "storm_latency": client::summary(during),
        "storm_p99_over_calm": p99(during) / p99(calm).max(1e-3),
        "sent": relayed.sent,
        "errors": relayed.errors,
    }))
}
