//! A COMMIT whose answer never comes back: the database stored the batch, the writer cannot know.
//! A proxy between pychat and the database passes the COMMIT on and cuts the connection instead of
//! passing its answer back. The message must still reach its recipient, once, and the sender's
//! retry must get the original.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cluster::PrivateRedis;
use crate::helpers::{Backend, TestDb, spawn_instance};
use crate::ws_client::WsClient;

/// Forwards TCP to the database; once armed, cuts the next connection that sends a COMMIT just
/// as the database answers it.
struct CommitCutter {
    port: u16,
    armed: Arc<AtomicBool>,
    cut: Arc<AtomicUsize>,
}

impl CommitCutter {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let armed = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicUsize::new(0));
        let (a, c) = (armed.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = match TcpStream::connect(&target).await {
                    Ok(server) => server,
                    Err(err) => {
                        eprintln!("proxy cannot reach {target}: {err}");
                        continue;
                    }
                };
                tokio::spawn(relay(client, server, a.clone(), c.clone()));
            }
        });
        Self { port, armed, cut }
    }

    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn cuts(&self) -> usize {
        self.cut.load(Ordering::SeqCst)
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<AtomicBool>,
    cut: Arc<AtomicUsize>,
) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let sent_commit = Arc::new(AtomicBool::new(false));
    let seen = sent_commit.clone();
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
            if buf[..n].windows(6).any(|w| w == b"COMMIT") {
                seen.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
        if sent_commit.swap(false, Ordering::SeqCst)
            && armed
                .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            // The database has committed; its answer is dropped with the connection.
            cut.fetch_add(1, Ordering::SeqCst);
            upstream.abort();
            return;
        }
        if to_client.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    upstream.abort();
}

fn through(url: &str, port: u16) -> (String, String) {
    let mut url = url::Url::parse(url).expect("database URL");
    let target = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    );
    url.set_port(Some(port)).expect("port");
    if url.scheme().starts_with("postgres") {
        // In clear, so that the proxy sees the COMMIT.
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    (url.to_string(), target)
}

async fn frames_until(
    client: &mut WsClient,
    wait: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        if let Some(frame) = client.recv_within(Duration::from_millis(100)).await {
            let stop = done(&frame);
            got.push(frame);
            if stop {
                break;
            }
        }
    }
    got
}

async fn a_commit_whose_answer_is_lost_is_delivered_once(backend: Backend) {
    lost_commit(backend, false).await;
}

/// The same in a cluster: the recipient is on the other instance.
async fn a_lost_commit_answer_reaches_the_other_instance(backend: Backend) {
    lost_commit(backend, true).await;
}

async fn lost_commit(backend: Backend, cluster: bool) {
    let Some(db) = TestDb::create(backend) else {
        return;
    };
    let db = Arc::new(db);
    let redis = if cluster {
        Some(PrivateRedis::start().await)
    } else {
        None
    };
    let redis_url = redis.as_ref().map(|r| pychat::config::Secret::new(r.url()));
    let (_, target) = through(&db.url, 0);
    let cutter = CommitCutter::start(target).await;
    let (proxied, _) = through(&db.url, cutter.port);
    let with_redis = redis_url.clone();
    let app = spawn_instance(db.clone(), |s| {
        s.database_url = pychat::db::DatabaseUrl::parse(&proxied).expect("proxied URL");
        s.redis_url = with_redis;
    })
    .await;
    let other = if cluster {
        Some(spawn_instance(db, |s| s.redis_url = redis_url).await)
    } else {
        None
    };
    let bobs = other.as_ref().unwrap_or(&app);
    let alice = app.register("alice").await;
    let bob = bobs.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = bobs.connect(&bob, None).await;
    a.send_message("bob", "before", "k0").await;
    b.recv_type("message").await;

    cutter.arm();
    let send =
        json!({"type": "send", "id": "s1", "to": "bob", "body": "in doubt", "client_msg_id": "k1"});
    a.send(send.clone()).await;
    let answer = frames_until(&mut a, Duration::from_secs(10), |f| f["id"] == "s1").await;
    let answer = answer.last().expect("an answer to the send");
    assert_eq!(cutter.cuts(), 1, "the commit's answer was cut");
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(
        answer["code"], "database_unavailable",
        "retryable, not internal: {answer}"
    );

    // The writer finds out the batch was stored and delivers it without anyone retrying.
    let live = frames_until(&mut b, Duration::from_secs(10), |f| f["type"] == "message").await;
    let delivered = live
        .iter()
        .find(|f| f["type"] == "message")
        .unwrap_or_else(|| panic!("the stored message never reached bob: {live:?}"));
    assert_eq!(delivered["message"]["body"], "in doubt");

    // The retry gets the original; bob gets nothing twice.
    let mut retry = send;
    retry["id"] = json!("s2");
    let ack = a.request(retry, "s2").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["message"]["id"], delivered["message"]["id"]);
    let after = a.send_message("bob", "after", "k2").await;
    let next = b.recv_type("message").await;
    assert_eq!(
        next["message"]["id"], after["message"]["id"],
        "no duplicate before it"
    );
    let path = app.direct_path(&bob, "alice", "/messages").await;
    let history = app.get(&path, &bob.access).await;
    let bodies: Vec<&str> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, ["before", "in doubt", "after"], "stored once");
}

crate::on_server_backends!(
    a_commit_whose_answer_is_lost_is_delivered_once,
    a_lost_commit_answer_reaches_the_other_instance,
);
