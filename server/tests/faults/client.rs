//! One logical chat client that behaves exactly as docs/protocol.md tells a client to: a ticket
//! per connection, `after=` the newest message id it has received, `replay_end` and
//! `resync_required` handled, every `send` kept in an outbox until its `ack` and re-sent with the
//! same `client_msg_id` after a reconnect or an error, app-level pings with a liveness timeout,
//! reconnects with backoff rotating through the instances' addresses (a load balancer).
//!
//! It records everything the final counts need: what it sent, what was acked (and with which
//! id), every `message` frame it received and on which connection, closes and errors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// No frame at all (not even a pong) for this long: the server is gone, reconnect.
const LIVENESS: Duration = Duration::from_secs(4);
const PING_EVERY: Duration = Duration::from_secs(1);
/// A `send` with no answer for this long is sent again (same `client_msg_id`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(300);
const STEP: Duration = Duration::from_millis(20);
const IO_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct Close {
    pub instance: usize,
    /// The Close frame's code; `None` when the connection ended without one (a 1006).
    pub code: Option<u16>,
    pub at: Instant,
}

struct Pending {
    body: String,
    /// When it last went out on a connection; `None`: not on the current connection yet.
    sent_at: Option<Instant>,
    retry_at: Option<Instant>,
    attempts: u32,
}

/// Everything one client knows and did. Read by the harness through [`Client::state`].
#[derive(Default)]
pub struct State {
    pub cursor: i64,
    next_seq: u64,
    outbox: BTreeMap<String, Pending>,
    pub sent: HashSet<String>,
    /// client_msg_id -> message id of the first ack.
    pub acked: HashMap<String, i64>,
    pub ack_conflicts: u64,
    /// Ids of every `message` frame received (to or from this user), and how often.
    pub received: HashMap<i64, u32>,
    /// Ids that came in over REST after `resync_required`.
    pub fetched: HashSet<i64>,
    pub duplicates: u64,
    /// (newest id before, id that came after it, during the replay?) on one connection.
    pub out_of_order: Vec<(i64, i64, bool)>,
    pub internal_errors: u64,
    pub db_unavailable: u64,
    pub other_errors: Vec<String>,
    pub connects: u64,
    pub failed_connects: u64,
    /// Reconnects the harness asked for (the final resumes), not caused by a fault.
    pub requested_reconnects: u64,
    pub resyncs: u64,
    pub closes: Vec<Close>,
    pub connected_to: Option<usize>,
    /// The instance of the latest connection (kept after it ends).
    pub last_instance: Option<usize>,
    /// Resume requests served: `replay_end` (or `resync_required`) received after the request.
    pub resumes_done: u64,
    pub live_deliveries: u64,
    pub last_live_delivery: Option<Instant>,
    // Control, set by the harness.
    pub sending: bool,
    pub stop: bool,
    pub paused: bool,
    pub resume_requested: u64,
    pub prefer: Option<usize>,
}

impl State {
    pub fn unacked(&self) -> usize {
        self.outbox.len()
    }

    /// What is still waiting for an ack: `client_msg_id` and how often it was sent.
    pub fn unacked_examples(&self, n: usize) -> Vec<(String, u32)> {
        self.outbox
            .iter()
            .take(n)
            .map(|(cmid, p)| (cmid.clone(), p.attempts))
            .collect()
    }
}

#[derive(Clone)]
pub struct Client {
    pub user: String,
    /// Who it writes to: a user (their direct conversation), or a group's name.
    pub peer: String,
    /// When it writes to a group: the group's id.
    pub conversation: Option<i64>,
    /// Who must get what it sends: its peer, or the group's other members.
    pub recipients: Vec<String>,
    pub access: String,
    state: Arc<Mutex<State>>,
}

pub struct Config {
    pub addrs: Arc<Vec<String>>,
    /// Messages per second this client sends to its peer while sending.
    pub rate: f64,
    /// Small receive buffer (the slow consumer), so the server's queue fills soon.
    pub small_rcvbuf: bool,
    pub first_instance: usize,
    /// Characters added to every body (big frames fill a stalled reader's buffers sooner).
    pub padding: usize,
}

enum Ended {
    Closed(Option<u16>),
    Dead,
    Requested,
    Stopped,
}

type Socket = WebSocketStream<TcpStream>;

impl Client {
    pub fn new(user: &str, peer: &str, access: &str) -> Self {
        Self {
            user: user.to_string(),
            peer: peer.to_string(),
            conversation: None,
            recipients: vec![peer.to_string()],
            access: access.to_string(),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client's life: connect, serve, reconnect, until told to stop.
    pub async fn run(self, config: Config) {
        let http = reqwest::Client::builder()
            .timeout(IO_TIMEOUT)
            .build()
            .expect("http client");
        let mut instance = config.first_instance % config.addrs.len();
        let mut attempt = 0u32;
        let mut started = Instant::now();
        let mut sent_so_far = 0u64;
        loop {
            if self.state().stop {
                return;
            }
            if let Some(prefer) = self.state().prefer.take() {
                instance = prefer % config.addrs.len();
            }
            let addr = config.addrs[instance].clone();
            let ended = match self.connect(&http, &addr, config.small_rcvbuf).await {
                Ok(socket) => {
                    attempt = 0;
                    {
                        let mut s = self.state();
                        s.connects += 1;
                        s.connected_to = Some(instance);
                        s.last_instance = Some(instance);
                    }
                    let ended = self
                        .serve(
                            socket,
                            &http,
                            &addr,
                            &config,
                            &mut started,
                            &mut sent_so_far,
                        )
                        .await;
                    let mut s = self.state();
                    s.connected_to = None;
                    if let Ended::Closed(code) = ended {
                        s.closes.push(Close {
                            instance,
                            code,
                            at: Instant::now(),
                        });
                    }
                    ended
                }
                Err(_) => {
                    self.state().failed_connects += 1;
                    Ended::Dead
                }
            };
            match ended {
                Ended::Stopped => return,
                Ended::Requested => self.state().requested_reconnects += 1,
                Ended::Closed(_) | Ended::Dead => {
                    // Backoff with jitter, then the next address (as a load balancer would).
                    attempt += 1;
                    let base = 100u64 << attempt.min(4);
                    let jitter = rand::random_range(0..=base / 2);
                    tokio::time::sleep(Duration::from_millis((base + jitter).min(1500))).await;
                    instance = (instance + 1) % config.addrs.len();
                }
            }
        }
    }

    async fn connect(
        &self,
        http: &reqwest::Client,
        addr: &str,
        small_rcvbuf: bool,
    ) -> Result<Socket, String> {
        let reply = http
            .post(format!("http://{addr}/api/ws/ticket"))
            .bearer_auth(&self.access)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !reply.status().is_success() {
            return Err(format!("ticket: {}", reply.status()));
        }
        let body: Value = reply.json().await.map_err(|e| e.to_string())?;
        let ticket = body["ticket"].as_str().ok_or("no ticket")?.to_string();
        let cursor = self.state().cursor;
        let url = format!("ws://{addr}/ws?ticket={ticket}&after={cursor}");
        let socket_addr: std::net::SocketAddr = addr.parse().map_err(|_| "bad address")?;
        let tcp = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        if small_rcvbuf {
            tcp.set_recv_buffer_size(4096).map_err(|e| e.to_string())?;
        }
        let stream = tokio::time::timeout(IO_TIMEOUT, tcp.connect(socket_addr))
            .await
            .map_err(|_| "connect timed out")?
            .map_err(|e| e.to_string())?;
        let (socket, _) =
            tokio::time::timeout(IO_TIMEOUT, tokio_tungstenite::client_async(url, stream))
                .await
                .map_err(|_| "handshake timed out")?
                .map_err(|e| e.to_string())?;
        Ok(socket)
    }

    async fn send_frame(socket: &mut Socket, frame: Value) -> bool {
        matches!(
            tokio::time::timeout(IO_TIMEOUT, socket.send(Message::text(frame.to_string()))).await,
            Ok(Ok(()))
        )
    }

    fn send_frame_of(&self, cmid: &str, body: &str) -> Value {
        match self.conversation {
            Some(group) => {
                json!({"type": "send", "id": cmid, "conversation_id": group, "body": body, "client_msg_id": cmid})
            }
            None => {
                json!({"type": "send", "id": cmid, "to": self.peer, "body": body, "client_msg_id": cmid})
            }
        }
    }

    /// One connection, from `hello` to its end.
    async fn serve(
        &self,
        mut socket: Socket,
        http: &reqwest::Client,
        addr: &str,
        config: &Config,
        started: &mut Instant,
        sent_so_far: &mut u64,
    ) -> Ended {
        let mut last_rx = Instant::now();
        let mut last_ping = Instant::now();
        let mut hello = false;
        let mut last_on_connection = 0i64;
        let mut replaying = true;
        let mut step = tokio::time::interval(STEP);
        let resume_request = self.state().resume_requested;
        {
            // Everything un-acked goes out again on the new connection.
            let mut s = self.state();
            for pending in s.outbox.values_mut() {
                pending.sent_at = None;
            }
        }
        loop {
            let paused = self.state().paused;
            tokio::select! {
                next = socket.next(), if !paused => {
                    last_rx = Instant::now();
                    let message = match next {
                        None => return Ended::Closed(None),
                        Some(Err(_)) => return Ended::Closed(None),
                        Some(Ok(message)) => message,
                    };
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Close(frame) => {
                            let code = frame.map(|f| u16::from(f.code));
                            // Answer the close (tungstenite does when we go on reading).
                            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                            return Ended::Closed(code);
                        }
                        _ => continue,
                    };
                    let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                        self.state().other_errors.push(format!("not JSON: {text}"));
                        continue;
                    };
                    match frame["type"].as_str() {
                        Some("hello") => hello = true,
                        Some("message") => self.on_message(&frame, &mut last_on_connection, replaying),
                        Some("replay_end") => {
                            replaying = false;
                            let mut s = self.state();
                            let last = frame["last_id"].as_i64().unwrap_or(0);
                            s.cursor = s.cursor.max(last);
                            last_on_connection = last_on_connection.max(last);
                            s.resumes_done = s.resumes_done.max(resume_request);
                        }
                        Some("resync_required") => {
                            replaying = false;
                            let newest = frame["newest_id"].as_i64().unwrap_or(0);
                            if self.resync(http, addr, newest).await.is_err() {
                                return Ended::Dead;
                            }
                            last_on_connection = last_on_connection.max(newest);
                            self.state().resumes_done = resume_request;
                        }
                        Some("ack") => self.on_ack(&frame),
                        Some("error") => self.on_error(&frame),
                        _ => {}
                    }
                }
                _ = step.tick() => {
                    let now = Instant::now();
                    let (stop, requested) = {
                        let s = self.state();
                        (s.stop, s.resume_requested > resume_request)
                    };
                    if stop {
                        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                        return Ended::Stopped;
                    }
                    if requested {
                        let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                        return Ended::Requested;
                    }
                    if paused {
                        last_rx = now;
                        continue;
                    }
                    if now.duration_since(last_rx) > LIVENESS {
                        return Ended::Dead;
                    }
                    if !hello {
                        continue;
                    }
                    if now.duration_since(last_ping) > PING_EVERY {
                        last_ping = now;
                        if !Self::send_frame(&mut socket, json!({"type": "ping", "id": "live?"})).await {
                            return Ended::Closed(None);
                        }
                    }
                    // New messages at the configured rate.
                    let mut frames = Vec::new();
                    {
                        let mut s = self.state();
                        if s.sending {
                            let due = (started.elapsed().as_secs_f64() * config.rate) as u64;
                            while *sent_so_far < due && frames.len() < 50 {
                                *sent_so_far += 1;
                                s.next_seq += 1;
                                let cmid = format!("{}-{}", self.user, s.next_seq);
                                let body = format!("{} #{} to {} {}", self.user, s.next_seq, self.peer, "~".repeat(config.padding));
                                s.sent.insert(cmid.clone());
                                s.outbox.insert(cmid, Pending { body, sent_at: None, retry_at: None, attempts: 0 });
                            }
                        } else {
                            // Not sending: don't owe a burst when sending starts again.
                            *started = Instant::now();
                            *sent_so_far = 0;
                        }
                        // Un-acked frames that were never sent here, got an error, or no answer.
                        for (cmid, pending) in s.outbox.iter_mut() {
                            let due = match (pending.sent_at, pending.retry_at) {
                                (None, _) => true,
                                (Some(_), Some(retry)) => now >= retry,
                                (Some(at), None) => now.duration_since(at) > ANSWER_TIMEOUT,
                            };
                            if due && frames.len() < 200 {
                                pending.sent_at = Some(now);
                                pending.retry_at = None;
                                pending.attempts += 1;
                                frames.push(self.send_frame_of(cmid, &pending.body));
                            }
                        }
                    }
                    for frame in frames {
                        if !Self::send_frame(&mut socket, frame).await {
                            return Ended::Closed(None);
                        }
                    }
                }
            }
        }
    }

    fn on_message(&self, frame: &Value, last_on_connection: &mut i64, replaying: bool) {
        let message = &frame["message"];
        let Some(id) = message["id"].as_i64() else {
            return;
        };
        let mut s = self.state();
        if id <= *last_on_connection {
            s.out_of_order.push((*last_on_connection, id, replaying));
        }
        *last_on_connection = (*last_on_connection).max(id);
        let count = s.received.entry(id).or_insert(0);
        *count += 1;
        if *count > 1 {
            s.duplicates += 1;
        }
        s.cursor = s.cursor.max(id);
        s.live_deliveries += 1;
        s.last_live_delivery = Some(Instant::now());
    }

    fn on_ack(&self, frame: &Value) {
        let message = &frame["message"];
        let (Some(cmid), Some(id)) = (message["client_msg_id"].as_str(), message["id"].as_i64())
        else {
            self.state().other_errors.push(format!("bad ack {frame}"));
            return;
        };
        let mut s = self.state();
        match s.acked.get(cmid) {
            Some(&first) if first != id => s.ack_conflicts += 1,
            Some(_) => {}
            None => {
                s.acked.insert(cmid.to_string(), id);
            }
        }
        s.outbox.remove(cmid);
    }

    fn on_error(&self, frame: &Value) {
        let code = frame["code"].as_str().unwrap_or("?").to_string();
        let mut s = self.state();
        match code.as_str() {
            "database_unavailable" => s.db_unavailable += 1,
            "internal_error" => s.internal_errors += 1,
            "service_unavailable" | "rate_limited" => {}
            _ => {
                if s.other_errors.len() < 20 {
                    s.other_errors.push(frame.to_string());
                }
            }
        }
        // Whatever the error, the frame is tried again shortly with the same client_msg_id.
        if let Some(cmid) = frame["id"].as_str()
            && let Some(pending) = s.outbox.get_mut(cmid)
        {
            pending.retry_at = Some(Instant::now() + RETRY_AFTER_ERROR);
        }
    }

    async fn get_json(&self, http: &reqwest::Client, url: String) -> Result<Value, String> {
        let reply = http
            .get(url)
            .bearer_auth(&self.access)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !reply.status().is_success() {
            return Err(format!("{}", reply.status()));
        }
        reply.json().await.map_err(|e| e.to_string())
    }

    /// `resync_required`: load every conversation over REST from the cursor on (as the web app
    /// reloads what it shows), then continue at `newest`.
    async fn resync(&self, http: &reqwest::Client, addr: &str, newest: i64) -> Result<(), String> {
        let cursor = self.state().cursor;
        let mut conversations: Vec<i64> = Vec::new();
        let mut before: Option<i64> = None;
        for _ in 0..50 {
            let mut url = format!("http://{addr}/api/conversations?limit=100");
            if let Some(before) = before {
                url.push_str(&format!("&before={before}"));
            }
            let page = self.get_json(http, url).await?;
            for conversation in page["conversations"].as_array().into_iter().flatten() {
                if let Some(id) = conversation["id"].as_i64() {
                    conversations.push(id);
                }
            }
            before = page["next_before"].as_i64();
            if before.is_none() {
                break;
            }
        }
        for conversation in conversations {
            let mut after = cursor;
            for _ in 0..1000 {
                let page = self
                    .get_json(
                        http,
                        format!(
                            "http://{addr}/api/conversations/{conversation}/messages?after={after}&limit=200"
                        ),
                    )
                    .await?;
                let messages = page["messages"].as_array().cloned().unwrap_or_default();
                let mut s = self.state();
                for message in &messages {
                    if let Some(id) = message["id"].as_i64() {
                        after = after.max(id);
                        s.fetched.insert(id);
                    }
                }
                if !page["has_more"].as_bool().unwrap_or(false) || messages.is_empty() {
                    break;
                }
            }
        }
        let mut s = self.state();
        s.resyncs += 1;
        s.cursor = s.cursor.max(newest);
        Ok(())
    }

    /// Every message id this client has, however it came.
    pub fn has(&self, s: &State, id: i64) -> bool {
        s.received.contains_key(&id) || s.fetched.contains(&id)
    }
}
