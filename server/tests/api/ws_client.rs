//! A real WebSocket client for tests (tokio-tungstenite), speaking the JSON protocol.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{Session, TestApp};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
}

impl TestApp {
    pub async fn ticket(&self, session: &Session) -> String {
        let reply = self
            .request(
                reqwest::Method::POST,
                "/api/ws/ticket",
                Some(&session.access),
                None,
            )
            .await;
        assert_eq!(reply.status, reqwest::StatusCode::OK, "{:?}", reply.body);
        reply.body["ticket"].as_str().expect("ticket").to_string()
    }

    /// A WebSocket handshake on `/ws?{query}` (with `bearer` as the token, if any) made with
    /// plain HTTP, for upgrades that are meant to be refused: the status, and the error code of
    /// a refusal.
    pub async fn upgrade_answer(&self, query: &str, bearer: Option<&str>) -> (u16, Option<String>) {
        let mut request = self
            .client
            .get(self.url(&format!("/ws?{query}")))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("upgrade request");
        let status = response.status().as_u16();
        if status == 101 {
            return (status, None);
        }
        let body = crate::helpers::reply(response).await.body;
        (status, body["error"]["code"].as_str().map(str::to_string))
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws?{query}", self.addr)
    }

    /// Connects with a fresh ticket; `after` resumes from that message id.
    pub async fn connect(&self, session: &Session, after: Option<i64>) -> WsClient {
        let ticket = self.ticket(session).await;
        let mut query = format!("ticket={ticket}");
        if let Some(after) = after {
            query.push_str(&format!("&after={after}"));
        }
        WsClient::open(&self.ws_url(&query)).await
    }
}

impl WsClient {
    pub async fn open(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let mut client = Self {
            socket,
            hello: Value::Null,
        };
        let hello = client.recv().await;
        assert_eq!(hello["type"], "hello", "first frame must be hello: {hello}");
        client.hello = hello;
        client
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .expect("send frame");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("send raw");
    }

    /// The next JSON text frame (control frames are skipped).
    pub async fn recv(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("connection ended")
                .expect("websocket error");
            match next {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                Message::Close(frame) => panic!("closed by server: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame of `kind`, skipping presence and typing noise in between.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
            assert!(
                matches!(
                    frame["type"].as_str(),
                    Some("presence" | "typing" | "read_state")
                ),
                "expected {kind}, got {frame}"
            );
        }
    }

    /// Sends a frame and returns the reply carrying its `id` (skipping other traffic).
    pub async fn request(&mut self, mut frame: Value, id: &str) -> Value {
        frame["id"] = Value::from(id);
        self.send(frame).await;
        loop {
            let reply = self.recv().await;
            if reply["id"] == id {
                return reply;
            }
        }
    }

    /// The next JSON text frame if one arrives within `wait`; `None` when quiet.
    pub async fn recv_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let next = tokio::time::timeout(wait, self.socket.next()).await.ok()?;
            match next.expect("connection ended").expect("websocket error") {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("JSON frame"));
                }
                Message::Close(frame) => panic!("closed by server: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame of `kind`, skipping any other frame.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Sends a message and returns its ack.
    pub async fn send_message(&mut self, to: &str, body: &str, client_msg_id: &str) -> Value {
        self.send(json!({"type": "send", "id": client_msg_id, "to": to, "body": body, "client_msg_id": client_msg_id}))
            .await;
        let ack = self.recv_type("ack").await;
        assert_eq!(ack["id"], client_msg_id, "{ack}");
        ack
    }

    /// Proves nothing else is queued: a ping's pong is the next frame (besides noise).
    pub async fn assert_quiet(&mut self) {
        self.send(json!({"type": "ping", "id": "quiet?"})).await;
        let pong = self.recv_type("pong").await;
        assert_eq!(pong["id"], "quiet?");
    }

    /// Waits for the server to close; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Err(_) => panic!("server did not close the connection"),
                Ok(None) => return None,
                Ok(Some(Err(err))) => {
                    eprintln!("connection ended without a close frame: {err}");
                    return None;
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return frame.map(|f: CloseFrame| u16::from(f.code));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next frame of any kind, control frames included; `None` once the connection ended.
    pub async fn next_message(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.socket.next()).await {
            Err(_) => panic!("nothing arrived within {WAIT:?}"),
            Ok(next) => next.and_then(Result::ok),
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        // Drain until the server's close arrives, so the server has unregistered us.
        while let Ok(Some(Ok(message))) = tokio::time::timeout(WAIT, self.socket.next()).await {
            if message.is_close() {
                break;
            }
        }
    }
}
