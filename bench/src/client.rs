//! What every scenario needs from pychat: accounts over REST, authenticated WebSockets bound to a
//! chosen source address, frames as JSON, and latency histograms.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;
pub type Ws = WebSocketStream<TcpStream>;

pub const PASSWORD: &str = "bench-password-1";

/// Small buffers: tungstenite would otherwise keep a 128 KiB read buffer per connection, and
/// the generator holds thousands of them.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

/// Where the server is, as HTTP for REST and as a socket address for WebSockets.
#[derive(Clone)]
pub struct Server {
    pub http: String,
    pub addr: SocketAddr,
    pub host_port: String,
    pub http_client: reqwest::Client,
}

impl Server {
    pub async fn new(url: &str) -> Result<Self> {
        let http = url.trim_end_matches('/').to_string();
        let host_port = http
            .strip_prefix("http://")
            .ok_or("--server must be an http:// URL, e.g. http://127.0.0.1:8080")?
            .to_string();
        let addr = tokio::net::lookup_host(&host_port)
            .await?
            .next()
            .ok_or("cannot resolve the server's address")?;
        if !addr.ip().is_loopback() {
            return Err("pychat-bench only targets loopback addresses (127.0.0.0/8, ::1)".into());
        }
        let http_client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self {
            http,
            addr,
            host_port,
            http_client,
        })
    }

    /// Registers `username`, or signs in when it exists already; returns an access token.
    pub async fn account(&self, username: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Auth {
            access_token: String,
        }
        let body = json!({"username": username, "password": PASSWORD});
        let response = self
            .http_client
            .post(format!("{}/api/auth/register", self.http))
            .json(&body)
            .send()
            .await?;
        let response = if response.status() == reqwest::StatusCode::CONFLICT {
            self.http_client
                .post(format!("{}/api/auth/login", self.http))
                .json(&body)
                .send()
                .await?
        } else {
            response
        };
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!("account {username}: HTTP {status}: {text}").into());
        }
        Ok(response.json::<Auth>().await?.access_token)
    }

    /// Opens a WebSocket for `request` from `source` (port chosen by the kernel): no
    /// compression, Nagle off, the generator's small buffers.
    pub async fn open(
        &self,
        source: Option<IpAddr>,
        mut request: tungstenite::handshake::client::Request,
    ) -> Result<Ws> {
        request.headers_mut().remove("sec-websocket-extensions");
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(source) = source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config())).await?;
        Ok(ws)
    }

    /// A single-use WebSocket ticket for `token`.
    pub async fn ticket(&self, token: &str) -> Result<String> {
        #[derive(Deserialize)]
        struct Ticket {
            ticket: String,
        }
        let response = self
            .http_client
            .post(format!("{}/api/ws/ticket", self.http))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("ticket: HTTP {status}").into());
        }
        Ok(response.json::<Ticket>().await?.ticket)
    }

    /// Opens `/ws` from `source` (port chosen by the kernel), authenticated with a ticket when
    /// `ticket` is true, else with the bearer token on the upgrade request. Waits for `hello`.
    pub async fn connect(&self, source: Option<IpAddr>, token: &str, ticket: bool) -> Result<Ws> {
        let request = if ticket {
            let ticket = self.ticket(token).await?;
            format!("ws://{}/ws?ticket={ticket}", self.host_port).into_client_request()?
        } else {
            let mut request = format!("ws://{}/ws", self.host_port).into_client_request()?;
            request.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            );
            request
        };
        let mut ws = self.open(source, request).await?;
        let hello = tokio::time::timeout(Duration::from_secs(10), next_json(&mut ws))
            .await
            .map_err(|_| "no hello within 10 s")??;
        if hello["type"] != "hello" {
            return Err(format!("expected hello, got {hello}").into());
        }
        Ok(ws)
    }
}

/// The next text frame as JSON, answering pings on the way (tungstenite queues the pong).
pub async fn next_json(ws: &mut Ws) -> Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(text.as_str())?),
            Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}").into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("connection ended".into()),
        }
    }
}

/// What a short wait for the next frame gave.
pub enum Next {
    Text(Utf8Bytes),
    /// Nothing yet, or a control frame: look at the clock and wait again.
    Idle,
    /// The connection ended, or `deadline` passed.
    Closed,
}

/// Waits at most 100 ms, and never past `deadline`, for the next text frame.
pub async fn next_text<S>(stream: &mut S, deadline: Instant) -> Next
where
    S: Stream<Item = std::result::Result<Message, tungstenite::Error>> + Unpin,
{
    let wait = (Instant::now() + Duration::from_millis(100)).min(deadline);
    match tokio::time::timeout_at(wait.into(), stream.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => Next::Text(text),
        Ok(Some(Ok(_))) => Next::Idle,
        Ok(_) => Next::Closed,
        Err(_) if Instant::now() >= deadline => Next::Closed,
        Err(_) => Next::Idle,
    }
}

/// A sender's answers: how many sends were acked, and the errors by code.
pub type Answers = (u64, std::collections::BTreeMap<String, u64>);

/// Reads a sender's `ack` and `error` frames until `done(answered so far)` says so, the
/// connection closes or `deadline` passes.
pub async fn read_answers<S>(
    stream: &mut S,
    deadline: Instant,
    done: impl Fn(u64) -> bool,
) -> Answers
where
    S: Stream<Item = std::result::Result<Message, tungstenite::Error>> + Unpin,
{
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "type")]
        kind: String,
        code: Option<String>,
    }
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    let mut acked = 0u64;
    while !done(acked + errors.values().sum::<u64>()) {
        let frame = match next_text(stream, deadline).await {
            Next::Text(text) => text,
            Next::Idle => continue,
            Next::Closed => break,
        };
        let Ok(answer) = serde_json::from_str::<Answer>(frame.as_str()) else {
            continue;
        };
        match answer.kind.as_str() {
            "ack" => acked += 1,
            "error" => {
                *errors
                    .entry(answer.code.unwrap_or_else(|| "unknown".into()))
                    .or_insert(0) += 1;
            }
            _ => {}
        }
    }
    (acked, errors)
}

pub fn text(value: &Value) -> Message {
    Message::text(value.to_string())
}

/// Nanoseconds since the Unix epoch: one clock for sender and receiver on one machine.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Microseconds from `sent_nanos` until now.
pub fn elapsed_micros(sent_nanos: u64) -> u64 {
    now_nanos().saturating_sub(sent_nanos) / 1000
}

/// Latencies in microseconds, 1 µs to 60 s, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// p50/p99/p99.9/max/mean in milliseconds.
pub fn summary(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64) / 1000.0;
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "mean_ms": h.mean() / 1000.0,
    })
}

/// Parses `--sources 127.0.0.2,127.0.0.3`.
pub fn sources(list: &str) -> Result<Vec<Option<IpAddr>>> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ip: IpAddr = part.parse()?;
        if !ip.is_loopback() {
            return Err(format!("source {ip} is not a loopback address").into());
        }
        out.push(Some(ip));
    }
    if out.is_empty() {
        out.push(None);
    }
    Ok(out)
}

/// A prefix that keeps user and room names of separate runs apart on one server.
pub fn run_prefix() -> String {
    format!("b{:x}", (now_nanos() / 1000) % 0xffff_ffff)
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
