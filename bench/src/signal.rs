//! `signal`: two peers per room relay `signal` frames (ICE candidates) to each other after
//! `room_create` / `room_join` / `session_start`. Each payload carries its send time; latency is
//! the receiver's clock at arrival minus that time. Nothing is stored; nothing is acked.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Result, Server, Ws};

pub struct Args {
    pub rooms: usize,
    /// Signals per second sent by each peer.
    pub rate: f64,
    pub duration_secs: f64,
    pub sources: String,
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    payload: Option<Payload>,
    code: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    t: Option<u64>,
}

/// Reads frames until one of type `kind` arrives (an `error` fails), for at most 10 s.
async fn expect(ws: &mut Ws, kind: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline.into(), client::next_json(ws))
            .await
            .map_err(|_| format!("no {kind} within 10 s"))??;
        if frame["type"] == kind {
            return Ok(frame);
        }
        if frame["type"] == "error" {
            return Err(format!("waiting for {kind}: {frame}").into());
        }
    }
}

pub async fn run(server: Server, args: Args) -> Result<Value> {
    let sources = client::sources(&args.sources)?;
    let rooms = args.rooms.max(1);
    let peers = call_rooms(&server, &sources, rooms).await?;
    let duration = Duration::from_secs_f64(args.duration_secs.max(0.1));
    let started = Instant::now();
    let end = started + duration;
    let relayed = relay_signals(peers, args.rate, started, end, end).await?;
    let [latency, _] = relayed.latency;
    let (sent, errors) = (relayed.sent, relayed.errors);
    let secs = duration.as_secs_f64();
    Ok(json!({
        "scenario": "signal",
        "target": "pychat",
        "rooms": rooms,
        "peers": rooms * 2,
        "rate_per_peer": args.rate,
        "duration_secs": secs,
        "sent": sent,
        "relayed": latency.len(),
        "relayed_per_sec": latency.len() as f64 / secs,
        "latency": client::summary(&latency),
        "errors": errors,
    }))
}

/// `rooms` call rooms of two peers with their session started: each peer's socket and the
/// other's peer id.
pub async fn call_rooms(
    server: &Server,
    sources: &[Option<IpAddr>],
    rooms: usize,
) -> Result<Vec<(Ws, String)>> {
    let prefix = client::run_prefix();
    let mut peers = Vec::with_capacity(rooms * 2);
    for r in 0..rooms {
        let creator_token = server.account(&format!("{prefix}-s{r}a")).await?;
        let joiner_token = server.account(&format!("{prefix}-s{r}b")).await?;
        let mut a = server
            .connect(sources[(2 * r) % sources.len()], &creator_token, true)
            .await?;
        let mut b = server
            .connect(sources[(2 * r + 1) % sources.len()], &joiner_token, true)
            .await?;
        let name = format!("{prefix} room {r}");
        a.send(client::text(
            &json!({"type": "room_create", "id": "c", "name": name}),
        ))
        .await?;
        let created = expect(&mut a, "room_created").await?;
        b.send(client::text(
            &json!({"type": "room_join", "id": "j", "name": name}),
        ))
        .await?;
        let joined = expect(&mut b, "room_joined").await?;
        expect(&mut a, "member_joined").await?;
        a.send(client::text(&json!({"type": "session_start", "id": "s"})))
            .await?;
        expect(&mut a, "session_started").await?;
        expect(&mut b, "session_started").await?;
        let a_id = created["peer_id"].as_str().ok_or("no peer_id")?.to_string();
        let b_id = joined["peer_id"].as_str().ok_or("no peer_id")?.to_string();
        peers.push((a, b_id));
        peers.push((b, a_id));
    }
    Ok(peers)
}

/// What the peers of [`relay_signals`] saw.
pub struct Relayed {
    /// Latency of the signals sent before the split, then of those sent after it.
    pub latency: [Histogram<u64>; 2],
    pub sent: u64,
    pub errors: BTreeMap<String, u64>,
}

/// Every peer sends `rate` signals per second to its room's other peer from `started` to `end`;
/// latencies are split by send time at `split`.
pub async fn relay_signals(
    peers: Vec<(Ws, String)>,
    rate: f64,
    started: Instant,
    split: Instant,
    end: Instant,
) -> Result<Relayed> {
    let mut tasks = Vec::new();
    for (ws, to) in peers {
        tasks.push(tokio::spawn(peer(ws, to, rate, started, split, end)));
    }
    let mut relayed = Relayed {
        latency: [client::histogram(), client::histogram()],
        sent: 0,
        errors: BTreeMap::new(),
    };
    for task in tasks {
        let (latency, sent, errors) = task.await??;
        for (total, part) in relayed.latency.iter_mut().zip(&latency) {
            total.add(part)?;
        }
        relayed.sent += sent;
        for (code, n) in errors {
            *relayed.errors.entry(code).or_insert(0) += n;
        }
    }
    Ok(relayed)
}

type PeerOutcome = ([Histogram<u64>; 2], u64, BTreeMap<String, u64>);

async fn peer(
    ws: Ws,
    to: String,
    rate: f64,
    started: Instant,
    split: Instant,
    end: Instant,
) -> Result<PeerOutcome> {
    let (mut sink, mut stream) = ws.split();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let writer = tokio::spawn(async move {
        let mut seq = 0u64;
        loop {
            let due = started + interval.mul_f64(seq as f64);
            if due >= end {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            let frame = json!({
                "type": "signal",
                "to": to,
                "kind": "candidate",
                "payload": {
                    "candidate": "candidate:842163049 1 udp 1677729535 127.0.0.1 54321 typ host",
                    "sdpMid": "0",
                    "sdpMLineIndex": 0,
                    "t": client::now_nanos(),
                },
            });
            if sink.send(client::text(&frame)).await.is_err() {
                break;
            }
            seq += 1;
        }
        (sink, seq)
    });
    let mut latency = [client::histogram(), client::histogram()];
    let split_nanos = client::now_nanos()
        + u64::try_from(split.saturating_duration_since(Instant::now()).as_nanos()).unwrap_or(0);
    let mut errors = BTreeMap::new();
    let drain_end = end + Duration::from_millis(500);
    loop {
        let frame = match tokio::time::timeout_at(drain_end.into(), stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
            Ok(_) | Err(_) => break,
        };
        let Ok(incoming) = serde_json::from_str::<Incoming>(frame.as_str()) else {
            continue;
        };
        match incoming.kind.as_str() {
            "signal" => {
                if let Some(t) = incoming.payload.and_then(|p| p.t) {
                    latency[usize::from(t >= split_nanos)]
                        .saturating_record(client::elapsed_micros(t));
                }
            }
            "error" => {
                let code = incoming.code.unwrap_or_else(|| "unknown".into());
                *errors.entry(code).or_insert(0) += 1;
            }
            _ => {}
        }
    }
    let (sink, sent) = writer.await.map_err(|e| e.to_string())?;
    if let Ok(mut ws) = sink.reunite(stream) {
        let _ = ws.close(None).await;
    }
    Ok((latency, sent, errors))
}
