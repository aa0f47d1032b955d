//! How upgrade requests leave HTTP, over raw TCP: what a client sends along with its handshake is
//! kept, and an upgrade request that is not accepted gets its ordinary answer. SQLite is enough.

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::helpers::{Backend, spawn_app};
use crate::ws_client::WAIT;

fn upgrade_request(target: &str, extra_headers: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: pychat\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// A client frame as RFC 6455 wants it: final, masked, short.
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let length = u8::try_from(payload.len()).expect("short payload");
    assert!(length < 126);
    let mut frame = vec![0x81, 0x80 | length];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// Reads a response head; returns it and whatever followed it.
async fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut received = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = received.split_off(end + 4);
            return (String::from_utf8(received).expect("ASCII head"), rest);
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("timed out reading a response")
            .expect("read");
        assert!(n > 0, "closed before a response head: {received:?}");
        received.extend_from_slice(&buf[..n]);
    }
}

async fn next_json(socket: &mut WebSocketStream<TcpStream>) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("connection ended")
            .expect("websocket error");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON frame");
        }
    }
}

#[actix_web::test]
async fn a_frame_sent_along_with_the_handshake_is_served() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let ticket = app.ticket(&alice).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    let mut bytes = upgrade_request(&format!("/ws?ticket={ticket}"), KEY).into_bytes();
    bytes.extend(masked_text_frame(br#"{"type":"ping","id":"early"}"#));
    stream.write_all(&bytes).await.expect("write");

    let (head, rest) = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // The accept key of RFC 6455's own example.
    assert!(
        head.to_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let mut socket = WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await;
    assert_eq!(next_json(&mut socket).await["type"], "hello");
    let pong = next_json(&mut socket).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    assert_eq!(pong["id"], "early");
}

/// Sends a raw request, reads until the server closes, returns the status line and JSON body.
async fn answer_then_close(app: &crate::helpers::TestApp, request: String) -> (String, Value) {
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection after answering")
        .expect("read");
    let text = String::from_utf8(received).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap_or_default().to_string();
    assert!(head.to_lowercase().contains("connection: close"), "{head}");
    (status, serde_json::from_str(body).expect("JSON body"))
}

#[actix_web::test]
async fn upgrade_requests_that_are_not_accepted_get_their_answer_and_are_closed() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;

    // Any other path answers as it would without the upgrade headers.
    let (status, body) = answer_then_close(&app, upgrade_request("/healthz", KEY)).await;
    assert!(status.starts_with("HTTP/1.1 200 "), "{status}");
    assert_eq!(body["status"], "ok", "{body}");

    let (status, body) = answer_then_close(&app, upgrade_request("/api/nowhere", KEY)).await;
    assert!(status.starts_with("HTTP/1.1 404 "), "{status}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    // /ws itself: authentication first, then the handshake is checked.
    let (status, body) = answer_then_close(&app, upgrade_request("/ws", KEY)).await;
    assert!(status.starts_with("HTTP/1.1 401 "), "{status}");
    assert!(body["error"]["code"].is_string(), "{body}");

    let bearer = format!("Authorization: Bearer {}\r\n", alice.access);
    let (status, body) = answer_then_close(&app, upgrade_request("/ws", &bearer)).await;
    assert!(status.starts_with("HTTP/1.1 400 "), "no key: {status}");
    assert!(body["error"]["code"].is_string(), "{body}");
}

#[actix_web::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let mut a = app.connect(&alice, None).await;
    let invalid = Frame::message(
        Bytes::from_static(b"\xff\xfe"),
        OpCode::Data(Data::Text),
        true,
    );
    a.send_raw(Message::Frame(invalid)).await;
    assert_eq!(a.closed().await, Some(1007));
}
