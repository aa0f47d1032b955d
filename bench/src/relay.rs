//! The peers of `bench/peers/`: relays that only join rooms and pass text on, spoken in their
//! own framing (plain WebSocket text, or Socket.IO over Engine.IO v4). Every relay scenario is
//! the same shape: rooms of members, some of whom send timestamped text at a pace; every other
//! member of the room records its arrival.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::{self, Result, Server, Ws};

/// How a relay frames a room message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `ws://HOST/?room=NAME`, greeted with `joined`; every text frame is the message itself.
    Plain,
    /// Socket.IO 4: `0{…}` / `40` / `40{…}`, `42["join",room]` → `42["joined"]`, messages
    /// `42["msg",text]`, and the server's ping `2` answered with `3`.
    SocketIo,
}

impl Framing {
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "relay",
            Self::SocketIo => "socketio",
        }
    }

    fn message(self, text: &str) -> Message {
        match self {
            Self::Plain => Message::text(text),
            Self::SocketIo => Message::text(format!("42{}", json!(["msg", text]))),
        }
    }
}

/// What a frame from a relay is.
enum Incoming<'a> {
    /// A relayed message (its text, for the timestamp).
    Relayed(&'a str),
    /// Engine.IO's ping: answer `3`.
    Ping,
    Other,
}

fn classify(framing: Framing, frame: &str) -> Incoming<'_> {
    match framing {
        Framing::Plain if frame == "joined" => Incoming::Other,
        Framing::Plain => Incoming::Relayed(frame),
        Framing::SocketIo if frame == "2" => Incoming::Ping,
        Framing::SocketIo => match frame.strip_prefix("42[\"msg\",") {
            Some(rest) => Incoming::Relayed(rest),
            None => Incoming::Other,
        },
    }
}

/// The send time inside a message: the digits after its first `t=`.
fn sent_at(text: &str) -> Option<u64> {
    let digits = &text[text.find("t=")? + 2..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Joins `room` on a relay and waits until the relay says so.
pub async fn join(
    server: &Server,
    framing: Framing,
    source: Option<IpAddr>,
    room: &str,
) -> Result<Ws> {
    let url = match framing {
        Framing::Plain => format!("ws://{}/?room={room}", server.host_port),
        Framing::SocketIo => format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            server.host_port
        ),
    };
    let mut ws = server.open(source, url.into_client_request()?).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let next = async |ws: &mut Ws| -> Result<String> {
        loop {
            match tokio::time::timeout_at(deadline.into(), ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) if text.as_str() == "2" => {
                    ws.send(Message::text("3")).await?;
                }
                Ok(Some(Ok(Message::Text(text)))) => return Ok(text.as_str().to_owned()),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) => return Err("connection ended while joining".into()),
                Err(_) => return Err("no answer within 10 s while joining".into()),
            }
        }
    };
    match framing {
        Framing::Plain => {
            let first = next(&mut ws).await?;
            if first != "joined" {
                return Err(format!("expected `joined`, got {first:?}").into());
            }
        }
        Framing::SocketIo => {
            let open = next(&mut ws).await?;
            if !open.starts_with('0') {
                return Err(format!("expected Engine.IO open, got {open:?}").into());
            }
            ws.send(Message::text("40")).await?;
            let connected = next(&mut ws).await?;
            if !connected.starts_with("40") {
                return Err(format!("expected Socket.IO connect, got {connected:?}").into());
            }
            ws.send(Message::text(format!("42{}", json!(["join", room]))))
                .await?;
            let joined = next(&mut ws).await?;
            if joined != r#"42["joined"]"# {
                return Err(format!("expected joined, got {joined:?}").into());
            }
        }
    }
    Ok(ws)
}

/// How senders pace themselves.
#[derive(Clone, Copy)]
pub enum Pace {
    /// Messages per second, per sender, evenly spaced.
    Rate(f64),
    /// As fast as the relay delivers: at most this many messages per sender not yet delivered
    /// to every other member of the room.
    Window(usize),
}

pub struct Plan {
    pub scenario: &'static str,
    pub rooms: usize,
    /// Members per room (at least 2).
    pub members: usize,
    /// The first `senders` members of each room send.
    pub senders: usize,
    pub pace: Pace,
    /// Filler after the timestamp, in bytes.
    pub pad: usize,
    pub duration_secs: f64,
}

/// One room's traffic counters. Deliveries release window permits: one permit per message
/// delivered to every other member (`members - 1` arrivals).
struct Room {
    permits: Semaphore,
    arrivals: AtomicU64,
}

#[derive(Default)]
struct Totals {
    sent: AtomicU64,
    expected: AtomicU64,
    delivered: AtomicU64,
    delivered_in_window: AtomicU64,
    senders_done: AtomicU64,
}

/// Runs `plan` against a relay. `servers` holds one address, or two for a cluster (member 0 of
/// each room on the first, the others on the second).
pub async fn run(servers: &[Server], framing: Framing, sources: &str, plan: Plan) -> Result<Value> {
    let sources = client::sources(sources)?;
    let prefix = client::run_prefix();
    let members = plan.members.max(2);
    let senders = plan.senders.clamp(1, members);
    let window = match plan.pace {
        Pace::Window(w) => w.max(1),
        Pace::Rate(_) => 0,
    };
    let gate = Arc::new(Semaphore::new(128));
    let mut joining = Vec::new();
    for r in 0..plan.rooms.max(1) {
        let room = Arc::new(Room {
            permits: Semaphore::new(window * senders),
            arrivals: AtomicU64::new(0),
        });
        for m in 0..members {
            let server = servers[usize::from(m > 0 && servers.len() > 1)].clone();
            let source = sources[(r * members + m) % sources.len()];
            let name = format!("{prefix}-r{r}");
            let (gate, room) = (gate.clone(), room.clone());
            joining.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                let ws = join(&server, framing, source, &name).await?;
                Ok::<_, client::Error>((ws, room, m < senders))
            }));
        }
    }
    let mut conns = Vec::with_capacity(joining.len());
    for task in joining {
        conns.push(task.await??);
    }
    // Joins are acknowledged per connection; give the last ones a moment to settle in every
    // instance of a cluster before the first message.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let totals = Arc::new(Totals::default());
    let total_senders = (plan.rooms.max(1) * senders) as u64;
    let duration = Duration::from_secs_f64(plan.duration_secs.max(0.1));
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::with_capacity(conns.len());
    for (ws, room, sends) in conns {
        let member = Member {
            framing,
            room,
            members: members as u64,
            sends,
            pace: plan.pace,
            pad: "x".repeat(plan.pad),
            totals: totals.clone(),
            total_senders,
            started,
            end,
        };
        tasks.push(tokio::spawn(member.run(ws)));
    }
    let mut latency = client::histogram();
    let mut errors = BTreeMap::<String, u64>::new();
    for task in tasks {
        match task.await? {
            Ok(h) => latency.add(&h)?,
            Err(e) => *errors.entry(e.to_string()).or_insert(0) += 1,
        }
    }
    let secs = duration.as_secs_f64();
    let t = &totals;
    Ok(json!({
        "scenario": plan.scenario,
        "target": framing.name(),
        "instances": servers.len(),
        "rooms": plan.rooms.max(1),
        "members": members,
        "senders_per_room": senders,
        "connections": plan.rooms.max(1) * members,
        "offered_rate_per_sender": match plan.pace { Pace::Rate(r) => r, Pace::Window(_) => 0.0 },
        "window": window,
        "duration_secs": secs,
        "sent": t.sent.load(Ordering::Relaxed),
        "expected_deliveries": t.expected.load(Ordering::Relaxed),
        "delivered": t.delivered.load(Ordering::Relaxed),
        "delivered_per_sec": t.delivered_in_window.load(Ordering::Relaxed) as f64 / secs,
        "latency": client::summary(&latency),
        "errors": errors,
    }))
}

struct Member {
    framing: Framing,
    room: Arc<Room>,
    members: u64,
    sends: bool,
    pace: Pace,
    pad: String,
    totals: Arc<Totals>,
    total_senders: u64,
    started: Instant,
    end: Instant,
}

impl Member {
    /// Sends (if a sender) and reads on one task, so a Socket.IO ping is answered in line.
    async fn run(self, mut ws: Ws) -> Result<Histogram<u64>> {
        let mut latency = client::histogram();
        let mut seq = 0u64;
        let mut sending = self.sends;
        let drain_end = self.end + Duration::from_secs(5);
        let t = &self.totals;
        loop {
            let now = Instant::now();
            if sending && now >= self.end {
                sending = false;
                t.senders_done.fetch_add(1, Ordering::AcqRel);
            }
            if now >= drain_end
                || (now >= self.end
                    && !sending
                    && t.senders_done.load(Ordering::Acquire) == self.total_senders
                    && t.delivered.load(Ordering::Acquire) >= t.expected.load(Ordering::Acquire))
            {
                break;
            }
            let wait = (now + Duration::from_millis(100)).min(drain_end);
            tokio::select! {
                biased;
                frame = tokio::time::timeout_at(wait.into(), ws.next()) => match frame {
                    Ok(Some(Ok(Message::Text(text)))) => match classify(self.framing, text.as_str()) {
                        Incoming::Relayed(body) => {
                            if let Some(at) = sent_at(body) {
                                latency.saturating_record(client::elapsed_micros(at));
                            }
                            self.arrived();
                        }
                        Incoming::Ping => ws.send(Message::text("3")).await?,
                        Incoming::Other => {}
                    },
                    Ok(Some(Ok(_))) | Err(_) => {}
                    Ok(Some(Err(e))) => return Err(e.into()),
                    Ok(None) => return Err("the relay closed the connection".into()),
                },
                burst = self.ready(seq), if sending => {
                    for _ in 0..burst {
                        let text = format!("t={} {}", client::now_nanos(), self.pad);
                        ws.feed(self.framing.message(&text)).await?;
                    }
                    ws.flush().await?;
                    seq += burst;
                    t.sent.fetch_add(burst, Ordering::Relaxed);
                    t.expected.fetch_add(burst * (self.members - 1), Ordering::AcqRel);
                }
            }
        }
        let _ = ws.close(None).await;
        Ok(latency)
    }

    /// Waits until this sender may send, and says how many messages at once.
    async fn ready(&self, seq: u64) -> u64 {
        match self.pace {
            Pace::Rate(rate) => {
                let due = self.started + Duration::from_secs_f64(seq as f64 / rate.max(0.1));
                tokio::time::sleep_until(due.min(self.end).into()).await;
                1
            }
            Pace::Window(_) => {
                let Ok(permit) = self.room.permits.acquire().await else {
                    return 0;
                };
                permit.forget();
                let mut burst = 1;
                while burst < 64
                    && let Ok(p) = self.room.permits.try_acquire()
                {
                    p.forget();
                    burst += 1;
                }
                burst
            }
        }
    }

    fn arrived(&self) {
        let t = &self.totals;
        t.delivered.fetch_add(1, Ordering::AcqRel);
        if Instant::now() <= self.end {
            t.delivered_in_window.fetch_add(1, Ordering::Relaxed);
        }
        let arrivals = self.room.arrivals.fetch_add(1, Ordering::AcqRel) + 1;
        if matches!(self.pace, Pace::Window(_)) && arrivals.is_multiple_of(self.members - 1) {
            self.room.permits.add_permits(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_send_time_in_either_framing() {
        assert_eq!(sent_at("t=123 xxx"), Some(123));
        assert_eq!(sent_at(r#""t=456 xx"]"#), Some(456));
        assert_eq!(sent_at("no time"), None);
    }

    #[test]
    fn socket_io_messages_are_event_packets() {
        let Message::Text(text) = Framing::SocketIo.message("t=1 x") else {
            panic!("not text");
        };
        assert_eq!(text.as_str(), r#"42["msg","t=1 x"]"#);
        assert!(matches!(
            classify(Framing::SocketIo, r#"42["msg","t=1 x"]"#),
            Incoming::Relayed(_)
        ));
        assert!(matches!(classify(Framing::SocketIo, "2"), Incoming::Ping));
        assert!(matches!(
            classify(Framing::Plain, "joined"),
            Incoming::Other
        ));
    }
}
