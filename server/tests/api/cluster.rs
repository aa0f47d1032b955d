//! Several instances behind one address, fanned out through a private Redis, sharing one
//! PostgreSQL or MariaDB database.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, JWT_SECRET, TestApp, TestDb, spawn_instance};

/// A redis-server of the test's own, on a free port; killed when dropped.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub async fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        wait_for_port(self.port).await;
    }

    /// Runs `redis-cli` against this server; returns what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Sends a signal (`STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill -{signal}");
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two instances on one database and one Redis.
async fn cluster(backend: Backend) -> Option<(PrivateRedis, TestApp, TestApp)> {
    let db = Arc::new(TestDb::create(backend)?);
    let redis = PrivateRedis::start().await;
    let url = redis.url();
    let one = spawn_instance(db.clone(), |s| {
        s.redis_url = Some(pychat::config::Secret::new(url.clone()))
    })
    .await;
    let url = redis.url();
    let two = spawn_instance(db, |s| {
        s.redis_url = Some(pychat::config::Secret::new(url.clone()))
    })
    .await;
    Some((redis, one, two))
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

crate::on_server_backends!(
    rooms_and_direct_calls_span_instances,
    chat_receipts_typing_and_presence_cross_instances,
    redis_outage_loses_nothing_and_heals_itself,
    a_killed_instance_goes_offline_and_its_users_resume_elsewhere,
    a_stalled_redis_never_reorders_a_connection,
    a_group_spans_instances_and_a_removal_takes_effect_on_all,
);

/// A group with members on both instances: messages reach all of them, and once a member is
/// removed (on one instance), the other instance delivers nothing more of it to them.
async fn a_group_spans_instances_and_a_removal_takes_effect_on_all(backend: Backend) {
    let Some((_redis, one, two)) = cluster(backend).await else {
        return;
    };
    let ann = one.register("ann").await;
    let bob = two.register("bob").await;
    let cid = two.register("cid").await;
    let created = one
        .request(
            reqwest::Method::POST,
            "/api/conversations",
            Some(&ann.access),
            Some(json!({"title": "Across", "members": ["bob", "cid"]})),
        )
        .await;
    let group = created.body["id"].as_i64().expect("group");
    let mut a = one.connect(&ann, None).await;
    let mut b = two.connect(&bob, None).await;
    let mut c = two.connect(&cid, None).await;
    let send = json!({"type": "send", "id": "m1", "conversation_id": group, "body": "to all", "client_msg_id": "m1"});
    a.send(send).await;
    let ack = a.recv_type("ack").await;
    for ws in [&mut b, &mut c] {
        assert_eq!(
            ws.next_of("message").await["message"]["id"],
            ack["message"]["id"]
        );
    }
    // A call of the group started on one instance rings and seats members on the other.
    let started = a
        .request(
            json!({"type": "call", "conversation_id": group, "media": "audio"}),
            "call",
        )
        .await;
    let call_id = started["room"]["call_id"]
        .as_str()
        .expect("call")
        .to_string();
    let ring = b.next_of("incoming_call").await;
    assert_eq!(ring["call_id"], call_id.as_str());
    b.send(json!({"type": "call_accept", "call_id": call_id}))
        .await;
    let accepted = b.next_of("call_accepted").await;
    assert_eq!(accepted["room"]["conversation_id"], group);
    assert_eq!(
        a.next_of("member_joined").await["member"]["username"],
        "bob"
    );
    let pa = started["peer_id"].as_str().expect("peer").to_string();
    b.send(json!({"type": "signal", "to": pa, "kind": "offer", "payload": {}}))
        .await;
    assert_eq!(a.next_of("signal").await["from_user"], "bob");
    for ws in [&mut a, &mut b] {
        ws.request(json!({"type": "room_leave"}), "bye").await;
    }
    // Its start and end reach members on both instances, in order, as events of the group.
    assert_eq!(
        c.next_of("message").await["message"]["kind"],
        "call_started"
    );
    assert_eq!(c.next_of("message").await["message"]["kind"], "call_ended");
    // Bob's `call_started` may have gone by while he answered.
    let mut kind = b.next_of("message").await["message"]["kind"].clone();
    if kind == "call_started" {
        kind = b.next_of("message").await["message"]["kind"].clone();
    }
    assert_eq!(kind, "call_ended");
    let removed = one
        .request(
            reqwest::Method::DELETE,
            &format!("/api/conversations/{group}/members/bob"),
            Some(&ann.access),
            None,
        )
        .await;
    assert_eq!(removed.status, reqwest::StatusCode::NO_CONTENT);
    assert_eq!(
        b.next_of("message").await["message"]["kind"],
        "member_removed"
    );
    assert_eq!(
        c.next_of("message").await["message"]["kind"],
        "member_removed"
    );
    a.send(json!({"type": "send", "id": "m2", "conversation_id": group, "body": "without bob", "client_msg_id": "m2"}))
        .await;
    let ack = a.next_of("ack").await;
    assert_eq!(
        c.next_of("message").await["message"]["id"],
        ack["message"]["id"]
    );
    b.assert_quiet().await;
    // Bob cannot send to it through either instance.
    b.send(json!({"type": "send", "id": "b1", "conversation_id": group, "body": "hello?", "client_msg_id": "b1"}))
        .await;
    assert_eq!(b.recv_type("error").await["code"], "conversation_not_found");
}

async fn chat_receipts_typing_and_presence_cross_instances(backend: Backend) {
    let Some((_redis, one, two)) = cluster(backend).await else {
        return;
    };
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;

    // A ticket issued by one instance opens a socket on the other.
    let ticket = one.ticket(&bob).await;
    let mut b = crate::ws_client::WsClient::open(&two.ws_url(&format!("ticket={ticket}"))).await;
    let mut a = one.connect(&alice, None).await;

    let ack = a.send_message("bob", "hello across instances", "x1").await;
    let got = b.recv_type("message").await;
    assert_eq!(got["message"], ack["message"]);
    b.send(json!({"type": "typing", "to": "alice"})).await;
    assert_eq!(a.recv_type("typing").await["from"], "bob");
    let up_to = ack["message"]["id"].clone();
    b.send(json!({"type": "read", "peer": "alice", "up_to": up_to}))
        .await;
    assert_eq!(a.recv_type("read_receipt").await["up_to"], up_to);

    // Presence is cluster-wide: instance two sees alice (on one) online, then offline.
    let profile = two.get("/api/users/alice", &bob.access).await;
    assert_eq!(profile.body["presence"]["status"], "online");
    a.close().await;
    loop {
        let frame = b.recv().await;
        if frame["type"] == "presence" && frame["status"] == "offline" {
            assert_eq!(frame["user"], "alice");
            break;
        }
    }
    let profile = two.get("/api/users/alice", &bob.access).await;
    assert_eq!(profile.body["presence"]["status"], "offline");
    let ready = two
        .request(reqwest::Method::GET, "/readyz", None, None)
        .await;
    assert_eq!(ready.body["bus"], "ok");
}

async fn rooms_and_direct_calls_span_instances(backend: Backend) {
    let Some((_redis, one, two)) = cluster(backend).await else {
        return;
    };
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let mut a = one.connect(&alice, None).await;
    let mut b = two.connect(&bob, None).await;

    // The original flow with the two members on different instances.
    let created = a
        .request(json!({"type": "room_create", "name": "Across"}), "c")
        .await;
    let pa = created["peer_id"].as_str().expect("peer").to_string();
    let joined = b
        .request(json!({"type": "room_join", "name": "across"}), "j")
        .await;
    assert_eq!(joined["type"], "room_joined", "{joined}");
    assert_eq!(joined["room"]["creator"], pa);
    let pb = joined["peer_id"].as_str().expect("peer").to_string();
    assert_eq!(a.next_of("member_joined").await["member"]["peer_id"], pb);
    // Either instance answers for the room.
    assert_eq!(
        one.get("/api/rooms/Across", &alice.access).await.body["members"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        two.get("/api/rooms/Across", &bob.access).await.body["members"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    // Names are unique across the cluster.
    let mut b_elsewhere = one.connect(&bob, None).await;
    let taken = b_elsewhere
        .request(json!({"type": "room_create", "name": "ACROSS"}), "dup")
        .await;
    assert_eq!(taken["code"], "room_exists");

    a.request(json!({"type": "session_start"}), "s").await;
    b.next_of("session_started").await;
    a.send(json!({"type": "signal", "to": pb, "kind": "offer", "payload": {"sdp": "v=0 a"}}))
        .await;
    let offer = b.next_of("signal").await;
    assert_eq!(
        (offer["from"].as_str(), offer["payload"]["sdp"].as_str()),
        (Some(pa.as_str()), Some("v=0 a"))
    );
    b.send(json!({"type": "signal", "to": pa, "kind": "answer", "payload": {"sdp": "v=0 b"}}))
        .await;
    assert_eq!(a.next_of("signal").await["from"], pb);
    a.request(json!({"type": "room_end"}), "end").await;
    assert_eq!(b.next_of("room_ended").await["by"], "alice");

    // A direct call rung on one instance, answered on the other.
    let ringing = a
        .request(
            json!({"type": "call", "to": "bob", "media": "audio"}),
            "call",
        )
        .await;
    let call_id = ringing["call_id"].as_str().expect("call id").to_string();
    assert_eq!(
        b.next_of("incoming_call").await["call_id"],
        call_id.as_str()
    );
    b.send(json!({"type": "call_accept", "call_id": call_id}))
        .await;
    let accepted_b = b.next_of("call_accepted").await;
    let accepted_a = a.next_of("call_accepted").await;
    assert_eq!(accepted_a["room"]["name"], accepted_b["room"]["name"]);
    let pb = accepted_b["peer_id"].as_str().expect("peer").to_string();
    a.send(json!({"type": "signal", "to": pb, "kind": "offer", "payload": {}}))
        .await;
    assert_eq!(b.next_of("signal").await["from_user"], "alice");
}

/// The next `message` frames on `client`, until `count` arrived or `wait` passed.
async fn messages(
    client: &mut crate::ws_client::WsClient,
    count: usize,
    wait: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        if let Some(frame) = client.recv_within(Duration::from_millis(100)).await
            && frame["type"] == "message"
        {
            got.push(frame["message"].clone());
        }
    }
    got
}

fn ids(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

async fn redis_outage_loses_nothing_and_heals_itself(backend: Backend) {
    let Some((mut redis, one, two)) = cluster(backend).await else {
        return;
    };
    let alice = one.register("alice").await;
    let bob = two.register("bob").await;
    let mut a = one.connect(&alice, None).await;
    let mut b = two.connect(&bob, None).await;
    let first = a.send_message("bob", "before the outage", "o1").await;
    b.recv_type("message").await;
    let last_seen = first["message"]["id"].as_i64().expect("id");

    redis.stop();
    // Each instance keeps serving its own users: storing and acking still work, and bob's
    // instance finds alice's messages in the database: they reach him live, in order.
    let mut acked = Vec::new();
    for i in 0..5 {
        let ack = a
            .send_message("bob", &format!("during {i}"), &format!("d{i}"))
            .await;
        acked.push(ack["message"]["id"].as_i64().expect("id"));
    }
    let during = messages(&mut b, 5, Duration::from_secs(10)).await;
    assert_eq!(ids(&during), acked, "delivered live through the database");
    for instance in [&one, &two] {
        eventually("readyz reports degraded", async || {
            instance
                .request(reqwest::Method::GET, "/readyz", None, None)
                .await
                .body["bus"]
                == "degraded"
        })
        .await;
    }

    // Redis comes back empty: no subscriptions, no presence.
    redis.restart().await;
    for instance in [&one, &two] {
        eventually("the bus round trip works again", async || {
            instance
                .request(reqwest::Method::GET, "/readyz", None, None)
                .await
                .body["bus"]
                == "ok"
        })
        .await;
    }
    let channels = redis.cli(&["PUBSUB", "CHANNELS", "pychat:*"]);
    assert!(channels.contains("pychat:log"), "resubscribed: {channels}");
    let bob_id = two.get("/api/me", &bob.access).await.body["id"]
        .as_i64()
        .expect("id");
    assert!(
        channels.contains(&format!("pychat:u:{bob_id}")),
        "bob's channel resubscribed: {channels}"
    );
    let profile = one
        .request(
            reqwest::Method::GET,
            "/api/users/bob",
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(
        profile.body["presence"]["status"], "online",
        "presence restored"
    );

    // Live delivery across instances works again without anyone reconnecting.
    let after = a.send_message("bob", "after", "a1").await;
    let got = messages(&mut b, 1, Duration::from_secs(5)).await;
    assert_eq!(ids(&got), [after["message"]["id"].as_i64().expect("id")]);

    // And resume has everything, once, in order.
    b.close().await;
    let mut b = two.connect(&bob, Some(last_seen)).await;
    let mut replayed = Vec::new();
    loop {
        let frame = b.recv().await;
        match frame["type"].as_str() {
            Some("message") => replayed.push(frame["message"]["id"].as_i64().expect("id")),
            Some("replay_end") => break,
            _ => {}
        }
    }
    acked.push(after["message"]["id"].as_i64().expect("id"));
    assert_eq!(replayed, acked, "in order, once");
}

/// A stalled Redis delays the other instance's messages; it must not let this instance's own
/// overtake them on a connection (a client resuming after the highest id it has would skip them).
async fn a_stalled_redis_never_reorders_a_connection(backend: Backend) {
    let Some((redis, one, two)) = cluster(backend).await else {
        return;
    };
    let alice = one.register("alice").await;
    let carol = two.register("carol").await;
    let bob = two.register("bob").await;
    let mut a = one.connect(&alice, None).await;
    let mut c = two.connect(&carol, None).await;
    let mut b = two.connect(&bob, None).await;
    a.send_message("bob", "hello", "h0").await;
    messages(&mut b, 1, Duration::from_secs(5)).await;

    redis.signal("STOP");
    let mut acked = Vec::new();
    for i in 0..6 {
        // alice's go through the stalled Redis (or the database), carol's are local to bob.
        let (sender, tag) = if i % 2 == 0 {
            (&mut a, "a")
        } else {
            (&mut c, "c")
        };
        let ack = sender
            .send_message("bob", &format!("{tag}{i}"), &format!("{tag}{i}"))
            .await;
        acked.push(ack["message"]["id"].as_i64().expect("id"));
    }
    let got = messages(&mut b, 6, Duration::from_secs(10)).await;
    redis.signal("CONT");
    assert_eq!(
        ids(&got),
        acked,
        "every message, in id order, during the stall"
    );
    // What Redis delivers late is not delivered twice.
    let late = messages(&mut b, 1, Duration::from_secs(3)).await;
    assert!(late.is_empty(), "nothing twice: {late:?}");
}

/// Starts the real binary as a separate process, to kill it with SIGKILL.
fn spawn_process(db_url: &str, redis_url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pychat"))
        .arg("serve")
        .env("PYCHAT_BIND", format!("127.0.0.1:{port}"))
        .env("PYCHAT_DATABASE_URL", db_url)
        .env("PYCHAT_REDIS_URL", redis_url)
        .env("PYCHAT_JWT_SECRET", JWT_SECRET)
        .env("PYCHAT_BCRYPT_COST", "4")
        .env("PYCHAT_INSTANCE_TIMEOUT_SECS", "3")
        // As helpers.rs: the limits have their own tests.
        .env("PYCHAT_REGISTRATIONS_PER_ADDRESS_PER_HOUR", "1000000")
        .env("PYCHAT_TICKETS_PER_USER_PER_MINUTE", "1000000")
        .env("PYCHAT_WEB_DIR", "/nonexistent")
        .env("PYCHAT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pychat runs")
}

async fn a_killed_instance_goes_offline_and_its_users_resume_elsewhere(backend: Backend) {
    let Some(db) = TestDb::create(backend) else {
        return;
    };
    let db = Arc::new(db);
    let redis = PrivateRedis::start().await;
    let redis_url = redis.url();
    let survivor = spawn_instance(db.clone(), |s| {
        s.redis_url = Some(pychat::config::Secret::new(redis_url.clone()));
        s.instance_timeout = Duration::from_secs(3);
    })
    .await;
    let port = free_port();
    let mut doomed = spawn_process(&db.url, &redis.url(), port);
    wait_for_port(port).await;
    let doomed_ws = |query: &str| format!("ws://127.0.0.1:{port}/ws?{query}");

    let alice = survivor.register("alice").await;
    let bob = survivor.register("bob").await;
    let mut b = survivor.connect(&bob, None).await;
    let ticket = survivor.ticket(&alice).await;
    let mut a = crate::ws_client::WsClient::open(&doomed_ws(&format!("ticket={ticket}"))).await;
    let hello_ack = a
        .send_message("bob", "from the doomed instance", "k1")
        .await;
    assert_eq!(
        b.recv_type("message").await["message"],
        hello_ack["message"]
    );
    let last_id = hello_ack["message"]["id"].as_i64().expect("id");

    // SIGKILL: no goodbye, no cleanup. Within the instance timeout alice is offline everywhere.
    doomed.kill().expect("kill");
    let _ = doomed.wait();
    let started = Instant::now();
    loop {
        let frame: Value = b.recv().await;
        if frame["type"] == "presence" && frame["user"] == "alice" && frame["status"] == "offline" {
            break;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // Bob keeps writing; alice reconnects to the survivor and resumes with nothing lost.
    let missed = b.send_message("alice", "while you were away", "k2").await;
    let mut a2 = survivor.connect(&alice, Some(last_id)).await;
    assert_eq!(a2.recv_type("message").await["message"], missed["message"]);
    assert_eq!(a2.recv_type("replay_end").await["replayed"], 1);
    drop(a);
}
