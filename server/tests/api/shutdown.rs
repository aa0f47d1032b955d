//! Closing: a client's close is answered; SIGTERM drains every WebSocket (replies of work in
//! flight, then 1001) and the process exits 0 within `PYCHAT_SHUTDOWN_TIMEOUT_SECS`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::cluster::{free_port, wait_for_port};
use crate::helpers::{Backend, JWT_SECRET, PASSWORD, Reply, reply, spawn_app};
use crate::ws_client::WsClient;

/// The child processes' `PYCHAT_SHUTDOWN_TIMEOUT_SECS`.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

#[actix_web::test]
async fn a_client_close_is_answered_with_its_code() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    for code in [1000, 4321] {
        let mut a = app.connect(&alice, None).await;
        a.send_raw(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "bye".into(),
        })))
        .await;
        assert_eq!(a.closed().await, Some(code), "the answering close");
    }
}

#[actix_web::test]
async fn readyz_says_shutting_down_while_sockets_drain() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let readyz = async || {
        app.request(reqwest::Method::GET, "/readyz", None, None)
            .await
    };
    assert_eq!(readyz().await.status, StatusCode::OK);
    // A client that does not answer the server's close holds the drain open for a second.
    let mut deaf = app.connect(&alice, None).await;

    let stopper = app.stopper.clone();
    let stopped = actix_web::rt::spawn(async move { stopper.graceful().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Over the connection the first /readyz left open: new ones are no longer accepted.
    let draining = readyz().await;
    assert_eq!(draining.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        draining.body["status"], "shutting_down",
        "{:?}",
        draining.body
    );

    assert_eq!(deaf.closed().await, Some(1001));
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the server stops")
        .expect("graceful shutdown");
}

/// The real binary on an SQLite file in `data_dir`; killed if the test ends first.
struct ServerProcess {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

impl ServerProcess {
    async fn start(data_dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_pychat"))
            .arg("serve")
            .env_remove("PYCHAT_DATABASE_URL")
            .env_remove("PYCHAT_CONFIG")
            .env("PYCHAT_BIND", format!("127.0.0.1:{port}"))
            .env("PYCHAT_DATA_DIR", data_dir)
            .env("PYCHAT_JWT_SECRET", JWT_SECRET)
            .env("PYCHAT_BCRYPT_COST", "4")
            .env("PYCHAT_WEB_DIR", "/nonexistent")
            .env("PYCHAT_LOG", "warn")
            .env(
                "PYCHAT_SHUTDOWN_TIMEOUT_SECS",
                SHUTDOWN_TIMEOUT.as_secs().to_string(),
            )
            .env("PYCHAT_WS_RATE_PER_SEC", "100000")
            .env("PYCHAT_WS_RATE_BURST", "100000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pychat runs");
        wait_for_port(port).await;
        Self {
            child,
            port,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let mut request = self
            .http
            .post(format!("http://127.0.0.1:{}{path}", self.port))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        reply(request.send().await.expect("request sent")).await
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        let request = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(token);
        reply(request.send().await.expect("request sent")).await
    }

    /// Signs `username` up (or in, on a second server over the same data) for an access token.
    async fn sign_in(&self, username: &str) -> String {
        let credentials = json!({"username": username, "password": PASSWORD});
        let mut answer = self
            .post("/api/auth/register", None, credentials.clone())
            .await;
        if answer.status == StatusCode::CONFLICT {
            answer = self.post("/api/auth/login", None, credentials).await;
        }
        assert!(answer.status.is_success(), "{:?}", answer.body);
        answer.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string()
    }

    async fn connect(&self, token: &str) -> WsClient {
        let ticket = self.post("/api/ws/ticket", Some(token), json!({})).await;
        let ticket = ticket.body["ticket"].as_str().expect("ticket");
        WsClient::open(&format!("ws://127.0.0.1:{}/ws?ticket={ticket}", self.port)).await
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the process to exit; panics if it takes longer than `within`.
    async fn exited(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "still running {within:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn sigterm_closes_every_socket_with_1001_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = ServerProcess::start(dir.path()).await;
    let alice = server.sign_in("alice").await;
    let bob = server.sign_in("bob").await;
    let mut sockets = vec![
        server.connect(&alice).await,
        server.connect(&alice).await,
        server.connect(&bob).await,
    ];

    let signalled = Instant::now();
    server.sigterm();
    for socket in &mut sockets {
        match socket.next_message().await {
            Some(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1001);
                assert_eq!(frame.reason.as_str(), "server shutting down");
            }
            other => panic!("expected close 1001, got {other:?}"),
        }
        // Reading on sends the answering close; the server then closes the connection.
        assert!(socket.next_message().await.is_none());
    }
    // As a browser does once the closing handshake is over.
    drop(sockets);
    let closed = signalled.elapsed();
    let status = server
        .exited(SHUTDOWN_TIMEOUT + Duration::from_secs(1))
        .await;
    eprintln!(
        "closed after {closed:?}, exited after {:?}",
        signalled.elapsed()
    );
    assert!(status.success(), "exit status {status}");
}

#[actix_web::test]
async fn a_send_in_flight_at_sigterm_is_acked_or_safely_retried() {
    const SENDS: usize = 150;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = ServerProcess::start(dir.path()).await;
    let alice = server.sign_in("alice").await;
    server.sign_in("bob").await;
    let mut a = server.connect(&alice).await;
    for i in 0..SENDS {
        let key = format!("k{i}");
        a.send(json!({"type": "send", "id": key, "to": "bob", "body": format!("m{i}"), "client_msg_id": key}))
            .await;
    }
    // Message id per acked client_msg_id; every other frame is noise or a retryable error.
    let mut acked: HashMap<String, i64> = HashMap::new();
    // The signal comes once the first is acked: the rest are being read, stored or acked.
    let first = a.recv_type("ack").await;
    acked.insert(
        first["id"].as_str().expect("id").to_string(),
        first["message"]["id"].as_i64().expect("message id"),
    );
    server.sigterm();
    let close = loop {
        match a.next_message().await {
            Some(Message::Text(text)) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if frame["type"] == "ack" {
                    let key = frame["id"].as_str().expect("id").to_string();
                    acked.insert(key, frame["message"]["id"].as_i64().expect("message id"));
                } else if frame["type"] == "error" {
                    assert_eq!(frame["error"]["code"], "database_unavailable", "{frame}");
                }
            }
            Some(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Some(_) => {}
            None => break None,
        }
    };
    assert_eq!(close, Some(1001));
    let status = server
        .exited(SHUTDOWN_TIMEOUT + Duration::from_secs(1))
        .await;
    assert!(status.success(), "exit status {status}");
    drop(server);

    // Another server over the same data: every ack was for a stored message, and retrying the
    // rest with their client_msg_id stores each exactly once.
    let server = ServerProcess::start(dir.path()).await;
    let alice = server.sign_in("alice").await;
    let mut a = server.connect(&alice).await;
    let mut retried = 0;
    let mut conversation = 0;
    for i in 0..SENDS {
        let key = format!("k{i}");
        let ack = a.send_message("bob", &format!("m{i}"), &key).await;
        let id = ack["message"]["id"].as_i64().expect("id");
        conversation = ack["message"]["conversation_id"]
            .as_i64()
            .expect("conversation");
        if let Some(first) = acked.get(&key) {
            assert_eq!(
                *first, id,
                "{key}: acked before the shutdown as another message"
            );
        } else {
            retried += 1;
        }
    }
    let history = server
        .get(
            &format!("/api/conversations/{conversation}/messages?limit=200"),
            &alice,
        )
        .await;
    let mut bodies: Vec<String> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["body"].as_str().expect("body").to_string())
        .collect();
    bodies.sort();
    let mut expected: Vec<String> = (0..SENDS).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(bodies, expected, "every message stored once");
    eprintln!(
        "{} of {SENDS} acked before the close, {retried} retried after it",
        acked.len()
    );
}
