//! "The limit": the leanest room relay we can write, the ceiling pychat is
//! benchmarked against. No auth, no storage, no JSON: a WebSocket upgrade on
//! any path with `?room=NAME` joins room NAME and gets the text frame
//! `joined`; every text frame it sends then goes, unchanged, to every other
//! member of that room. Binary frames are ignored, pings answered by
//! tungstenite.
//!
//! Lean on purpose: a 1 KiB read buffer instead of tungstenite's preallocated
//! 128 KiB, no write buffering, and a received frame's bytes are shared (not
//! copied or re-encoded) by every member it is forwarded to.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Room map shards: joins and leaves in different rooms rarely contend.
const SHARDS: usize = 16;
/// Read buffer per connection; tungstenite allocates it up front. 1 KiB
/// rather than 4 KiB saved about 2.5 KiB of RSS per connection and cost no
/// measurable CPU per relayed message (bursts of 100-byte frames).
const READ_BUFFER: usize = 1024;
/// Largest frame or message accepted from a client.
const MAX_MESSAGE: usize = 1 << 20;
const BACKLOG: u32 = 4096;
const DEFAULT_PORT: u16 = 8090;

type Outbox = UnboundedSender<Utf8Bytes>;
type Shard = Mutex<HashMap<Box<str>, Arc<Room>>>;

/// One room: its members' ids and outboxes. Broadcasts only read-lock it, so
/// senders in the same room do not serialise on each other.
#[derive(Default)]
struct Room {
    members: RwLock<Vec<(u64, Outbox)>>,
}

impl Room {
    fn broadcast(&self, from: u64, text: &Utf8Bytes) {
        let members = self.members.read().unwrap_or_else(PoisonError::into_inner);
        for (id, outbox) in members.iter() {
            if *id != from {
                // A closed outbox belongs to a connection on its way out.
                let _ = outbox.send(text.clone());
            }
        }
    }
}

/// Room name → room, sharded by name. Only joins and leaves touch it.
struct Rooms {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

impl Rooms {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, name: &str) -> &Shard {
        // The modulo keeps the index below SHARDS, so the cast loses nothing.
        let index = (self.hasher.hash_one(name) % SHARDS as u64) as usize;
        &self.shards[index]
    }

    fn join(&self, name: &str, id: u64, outbox: Outbox) -> Arc<Room> {
        let mut shard = self
            .shard(name)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let room = match shard.get(name) {
            Some(room) => Arc::clone(room),
            None => {
                let room = Arc::new(Room::default());
                shard.insert(name.into(), Arc::clone(&room));
                room
            }
        };
        room.members
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, outbox));
        room
    }

    /// Removes member `id`, and the room once empty. Under the shard lock, so
    /// a concurrent join either finds the room before it empties or makes a
    /// new one.
    fn leave(&self, name: &str, room: &Room, id: u64) {
        let mut shard = self
            .shard(name)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut members = room.members.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = members.iter().position(|(member, _)| *member == id) {
            members.swap_remove(index);
        }
        if members.is_empty() {
            drop(members);
            shard.remove(name);
        }
    }
}

/// The value of `room` in a query string, taken as is (not percent-decoded:
/// it is only ever compared with other clients' values).
fn room_in(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("room="))
        .filter(|room| !room.is_empty())
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

async fn serve(stream: TcpStream, rooms: Arc<Rooms>, id: u64) {
    let _ = stream.set_nodelay(true);
    let mut room_name: Option<Box<str>> = None;
    // The error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let check_room = |request: &Request, response: Response| {
        if let Some(room) = room_in(request.uri().query()) {
            room_name = Some(room.into());
            Ok(response)
        } else {
            let mut refusal = ErrorResponse::new(Some("query must carry room=NAME\n".to_owned()));
            *refusal.status_mut() = StatusCode::BAD_REQUEST;
            Err(refusal)
        }
    };
    let accepted =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_room, Some(config())).await;
    let (Ok(mut ws), Some(name)) = (accepted, room_name) else {
        return;
    };

    let (outbox, mut inbox) = mpsc::unbounded_channel();
    let room = rooms.join(&name, id, outbox);
    if ws.send(Message::text("joined")).await.is_ok() {
        relay(&mut ws, &mut inbox, &room, id).await;
    }
    rooms.leave(&name, &room, id);
}

/// Until the connection ends: forward what the other members sent to this
/// client, and what this client sends to the other members. Outgoing frames
/// go first, so a client that floods the room is slowed rather than its
/// peers' outboxes left to grow.
async fn relay(
    ws: &mut WebSocketStream<TcpStream>,
    inbox: &mut UnboundedReceiver<Utf8Bytes>,
    room: &Room,
    id: u64,
) {
    loop {
        tokio::select! {
            biased;
            Some(text) = inbox.recv() => {
                if ws.feed(Message::Text(text)).await.is_err() {
                    return;
                }
                while let Ok(text) = inbox.try_recv() {
                    if ws.feed(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => room.broadcast(id, &text),
                // Binary frames are ignored; pings, pongs and the closing
                // handshake are tungstenite's.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            },
        }
    }
}

/// `--port N`, `--port=N`, else `PORT`, else 8090.
fn port() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut given = std::env::var("PORT").ok();
    while let Some(arg) = args.next() {
        if arg == "--port" {
            given = Some(args.next().ok_or("--port needs a value")?);
        } else if let Some(value) = arg.strip_prefix("--port=") {
            given = Some(value.to_owned());
        } else {
            return Err(format!(
                "unknown argument {arg:?}; usage: pychat-limit-relay [--port N]"
            ));
        }
    }
    given.map_or(Ok(DEFAULT_PORT), |port| {
        port.parse().map_err(|_| format!("bad port {port:?}"))
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let port = match port() {
        Ok(port) => port,
        Err(message) => {
            eprintln!("pychat-limit-relay: {message}");
            return ExitCode::from(2);
        }
    };
    let listener = TcpSocket::new_v4().and_then(|socket| {
        socket.set_reuseaddr(true)?;
        socket.bind(([127, 0, 0, 1], port).into())?;
        socket.listen(BACKLOG)
    });
    let listener = match listener {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("pychat-limit-relay: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("pychat-limit-relay listening on 127.0.0.1:{port}");

    let rooms = Arc::new(Rooms::new());
    let mut next_id: u64 = 0;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                next_id += 1;
                tokio::spawn(serve(stream, Arc::clone(&rooms), next_id));
            }
            // Out of file descriptors or the like: give closing connections
            // a moment instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
