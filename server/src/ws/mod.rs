//! The single multiplexed WebSocket: protocol (frames), session (one connection's loop), hub
//! (local routing) and tickets (how a browser authenticates the upgrade).

pub mod hub;
pub mod protocol;
pub mod session;
pub mod ticket;
pub mod upgrade;

use std::time::Duration;

/// Per-connection limits and timings.
#[derive(Debug, Clone, Copy)]
pub struct WsLimits {
    /// How often the server pings; announced in `hello`.
    pub heartbeat_interval: Duration,
    /// A connection silent for this long is closed.
    pub client_timeout: Duration,
    /// Frames per second a connection may send, sustained.
    pub rate_per_sec: f64,
    /// Frames a connection may send in a burst.
    pub rate_burst: f64,
    /// Frames queued for a connection before it counts as not reading and is dropped.
    pub outbound_queue: usize,
}

/// Largest frame a client may send; larger closes the connection with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// A serialised server frame: reference-counted, so one copy is shared by every connection it goes
/// to, and already known to be UTF-8, so the socket sends it as it is.
pub type FrameText = tokio_tungstenite::tungstenite::Utf8Bytes;
