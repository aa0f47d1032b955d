//! `groups`: R group conversations of k members each (plus one sender per group), every message
//! **stored and acked** and fanned out to the group's k other members, one connection each. Each
//! group's sender keeps at most `window` messages not yet delivered to all of its group (at
//! `--rate 0`), or sends at `rate / R` per second. The body carries the send time; every member
//! records its arrival. The relays of `bench/peers/` run the same shape as R rooms of k + 1
//! (`relay.rs`), so the two compare deliveries/s with the database in pychat's path.
//!
//! With two servers (a cluster), the senders use the first and every member the second, so every
//! delivery crosses instances.

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
    /// Members per group besides its sender.
    pub members: usize,
    pub groups: usize,
    /// Sends per second over all groups; 0 = as fast as `window` allows.
    pub rate: f64,
    pub window: usize,
    pub duration_secs: f64,
    pub sources: String,
}

/// The server adds at most this many members per request.
const ADD_AT_ONCE: usize = 100;
/// Most send times kept per group at saturation.
const MAX_SENDS: usize = 1_000_000;

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    message: Option<Body>,
}

#[derive(Deserialize)]
struct Body {
    body: String,
    conversation_id: i64,
}

/// One group's counters: deliveries give back window permits, one per k.
struct Group {
    id: i64,
    permits: Semaphore,
    delivered: AtomicU64,
    /// Its sender's number of sends once done; until then, unknown.
    final_sent: AtomicU64,
}

/// Makes a group of `members` owned by `owner`, adding them 100 at a time.
async fn make_group(server: &Server, owner: &str, title: &str, members: &[String]) -> Result<i64> {
    let post = |path: String, body: Value| {
        server
            .http_client
            .post(format!("{}{path}", server.http))
            .bearer_auth(owner)
            .json(&body)
            .send()
    };
    let mut chunks = members.chunks(ADD_AT_ONCE);
    let first = chunks.next().unwrap_or(&[]);
    let response = post(
        "/api/conversations".into(),
        json!({"title": title, "members": first}),
    )
    .await?;
    let status = response.status();
    let created: Value = response.json().await?;
    let id = created["id"]
        .as_i64()
        .ok_or_else(|| format!("creating a group: HTTP {status}: {created}"))?;
    for chunk in chunks {
        let response = post(
            format!("/api/conversations/{id}/members"),
            json!({"users": chunk}),
        )
        .await?;
        if !response.status().is_success() {
            let status = response.status();
            return Err(
                format!("adding members: HTTP {status}: {}", response.text().await?).into(),
            );
        }
    }
    Ok(id)
}

pub async fn run(servers: &[Server], args: Args) -> Result<Value> {
    let server = &servers[0];
    let member_server = &servers[servers.len() - 1];
    let sources = client::sources(&args.sources)?;
    let prefix = client::run_prefix();
    let k = args.members.max(1);
    let r = args.groups.max(1);
    let saturate = args.rate <= 0.0;

    let gate = Arc::new(Semaphore::new(64));
    let mut groups = Vec::with_capacity(r);
    let mut member_tokens = Vec::with_capacity(r * k);
    let mut sender_tokens = Vec::with_capacity(r);
    for g in 0..r {
        let sender = server.account(&format!("{prefix}-gs{g}")).await?;
        let names: Vec<String> = (0..k).map(|m| format!("{prefix}-g{g}m{m}")).collect();
        let mut registering = Vec::new();
        for name in &names {
            let (server, gate, name) = (server.clone(), gate.clone(), name.clone());
            registering.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                server.account(&name).await
            }));
        }
        for task in registering {
            member_tokens.push((g, task.await??));
        }
        let id = make_group(server, &sender, &format!("{prefix} group {g}"), &names).await?;
        groups.push(Arc::new(Group {
            id,
            permits: Semaphore::new(if saturate { args.window.max(1) } else { 0 }),
            delivered: AtomicU64::new(0),
            final_sent: AtomicU64::new(u64::MAX),
        }));
        sender_tokens.push(sender);
    }

    let mut connecting = Vec::new();
    for (i, (g, token)) in member_tokens.into_iter().enumerate() {
        let (server, gate) = (member_server.clone(), gate.clone());
        let source = sources[i % sources.len()];
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            server
                .connect(source, &token, false)
                .await
                .map(|ws| (g, ws))
        }));
    }
    let mut members = Vec::with_capacity(connecting.len());
    for task in connecting {
        members.push(task.await??);
    }
    let mut senders = Vec::with_capacity(r);
    for (g, token) in sender_tokens.iter().enumerate() {
        senders.push(
            server
                .connect(sources[g % sources.len()], token, true)
                .await?,
        );
    }

    let duration = Duration::from_secs_f64(args.duration_secs.max(0.1));
    let started = Instant::now() + Duration::from_millis(300);
    let end = started + duration;
    let drain_end = end + Duration::from_secs(5);
    let delivered_in_window = Arc::new(AtomicU64::new(0));

    let mut listening = Vec::new();
    for (g, ws) in members {
        let member = Member {
            group: groups[g].clone(),
            k: k as u64,
            window: saturate,
            delivered_in_window: delivered_in_window.clone(),
            end,
            drain_end,
        };
        listening.push(tokio::spawn(member.listen(ws)));
    }
    let per_group_rate = args.rate / r as f64;
    let mut sending = Vec::new();
    for (g, ws) in senders.into_iter().enumerate() {
        let group = groups[g].clone();
        sending.push(tokio::spawn(send(
            ws,
            group,
            g,
            saturate,
            per_group_rate,
            started,
            end,
            drain_end,
        )));
    }
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    for task in sending {
        let (s, a, e) = task.await??;
        sent += s;
        acked += a;
        for (code, n) in e {
            *errors.entry(code).or_insert(0) += n;
        }
    }
    let mut latency = client::histogram();
    for task in listening {
        latency.add(&task.await?)?;
    }
    let delivered: u64 = groups
        .iter()
        .map(|g| g.delivered.load(Ordering::Relaxed))
        .sum();
    let secs = duration.as_secs_f64();
    Ok(json!({
        "scenario": "groups",
        "target": "pychat",
        "instances": servers.len(),
        "groups": r,
        "members": k,
        "connections": r * (k + 1),
        "rate": args.rate,
        "window": if saturate { args.window.max(1) } else { 0 },
        "duration_secs": secs,
        "sent": sent,
        "acked": acked,
        "expected_deliveries": sent * k as u64,
        "delivered": delivered,
        "delivered_per_sec": delivered_in_window.load(Ordering::Relaxed) as f64 / secs,
        "latency": client::summary(&latency),
        "errors": errors,
    }))
}

type SenderTotals = (u64, u64, std::collections::BTreeMap<String, u64>);

/// One group's sender: sends until `end`, then reads answers until each send has one.
#[allow(clippy::too_many_arguments)]
async fn send(
    ws: Ws,
    group: Arc<Group>,
    g: usize,
    saturate: bool,
    rate: f64,
    started: Instant,
    end: Instant,
    drain_end: Instant,
) -> Result<SenderTotals> {
    let (mut sink, mut stream) = ws.split();
    let reader_group = group.clone();
    let reader = tokio::spawn(async move {
        client::read_answers(&mut stream, drain_end, |answered| {
            let sent = reader_group.final_sent.load(Ordering::Acquire);
            sent != u64::MAX && answered >= sent
        })
        .await
    });
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let mut sent = 0u64;
    tokio::time::sleep_until(started.into()).await;
    for i in 0..MAX_SENDS {
        if saturate {
            match tokio::time::timeout_at(end.into(), group.permits.acquire()).await {
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
        let key = format!("g{g}-{i}");
        let frame = json!({"type": "send", "conversation_id": group.id, "body": format!("t={}", client::now_nanos()), "client_msg_id": key});
        if sink.send(client::text(&frame)).await.is_err() {
            break;
        }
        sent += 1;
    }
    group.final_sent.store(sent, Ordering::Release);
    let (acked, errors) = reader.await?;
    let _ = sink.close().await;
    Ok((sent, acked, errors))
}

struct Member {
    group: Arc<Group>,
    k: u64,
    window: bool,
    delivered_in_window: Arc<AtomicU64>,
    end: Instant,
    drain_end: Instant,
}

impl Member {
    async fn listen(self, mut ws: Ws) -> Histogram<u64> {
        let mut latency = client::histogram();
        let mut received = 0u64;
        loop {
            let sent = self.group.final_sent.load(Ordering::Acquire);
            if sent != u64::MAX && received >= sent {
                break;
            }
            let frame = match client::next_text(&mut ws, self.drain_end).await {
                client::Next::Text(text) => text,
                client::Next::Idle => continue,
                client::Next::Closed => break,
            };
            let Ok(incoming) = serde_json::from_str::<Incoming>(frame.as_str()) else {
                continue;
            };
            let Some(message) = incoming.message.filter(|_| incoming.kind == "message") else {
                continue;
            };
            if message.conversation_id != self.group.id {
                continue;
            }
            let Some(sent_at) = message
                .body
                .strip_prefix("t=")
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            received += 1;
            let total = self.group.delivered.fetch_add(1, Ordering::AcqRel) + 1;
            if self.window && total.is_multiple_of(self.k) {
                self.group.permits.add_permits(1);
            }
            if Instant::now() <= self.end {
                self.delivered_in_window.fetch_add(1, Ordering::Relaxed);
            }
            latency.saturating_record(client::elapsed_micros(sent_at));
        }
        let _ = ws.close(None).await;
        latency
    }
}
