//! Direct messages over real WebSocket connections, on every backend.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};
use crate::on_every_backend;
use crate::ws_client::WsClient;

on_every_backend!(
    delivered_to_every_connection,
    retry_with_same_client_id_stores_once,
    resume_replays_exactly_what_was_missed,
    concurrent_senders_arrive_in_id_order,
    history_conversations_and_receipts,
    nobody_reads_another_pairs_conversation,
    presence_follows_connections,
    read_positions_are_events_a_resume_delivers,
);

/// Ids of the messages in a history reply.
fn history_ids(reply: &crate::helpers::Reply) -> Vec<i64> {
    reply.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

fn ids(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .map(|f| f["message"]["id"].as_i64().expect("id"))
        .collect()
}

async fn delivered_to_every_connection(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a1 = app.connect(&alice, None).await;
    let mut a2 = app.connect(&alice, None).await;
    let mut b1 = app.connect(&bob, None).await;
    let mut b2 = app.connect(&bob, None).await;
    assert_eq!(a1.hello["user"]["username"], "alice");
    assert_ne!(a1.hello["connection_id"], a2.hello["connection_id"]);
    assert_eq!(a1.hello["protocol_version"], 2);

    // The sender is the connection's user, whatever the frame might claim.
    a1.send(json!({"type": "send", "id": "m1", "to": "BOB", "body": "  hello 👋  ", "client_msg_id": "c-1", "from": "mallory"}))
        .await;
    let ack = a1.recv_type("ack").await;
    let message = &ack["message"];
    assert_eq!(ack["id"], "m1");
    assert_eq!(message["from"], "alice");
    assert_eq!(message["to"], "bob");
    assert_eq!(message["body"], "hello 👋", "trimmed, emoji intact");
    assert!(message["id"].as_i64().expect("id") > 0);
    let created = message["created_at"].as_str().expect("created_at");
    assert!(created.ends_with('Z'), "{created}");

    for client in [&mut b1, &mut b2, &mut a2] {
        let frame = client.recv_type("message").await;
        assert_eq!(&frame["message"], message);
    }
    // The sending connection got the ack only, not a second copy.
    a1.assert_quiet().await;
    b1.assert_quiet().await;
}

async fn retry_with_same_client_id_stores_once(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;
    let first = a.send_message("bob", "only once", "same-key").await;
    // The ack was "lost": the client retries on a new connection.
    let mut a_again = app.connect(&alice, None).await;
    let second = a_again.send_message("bob", "only once", "same-key").await;
    assert_eq!(first["message"], second["message"]);
    b.recv_type("message").await;
    b.assert_quiet().await;
    let path = app.direct_path(&bob, "alice", "/messages").await;
    let history = app.get(&path, &bob.access).await;
    assert_eq!(history.body["messages"].as_array().map(Vec::len), Some(1));
}

async fn resume_replays_exactly_what_was_missed(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;
    let seen = a.send_message("bob", "before the gap", "k0").await;
    let last_id = seen["message"]["id"].as_i64().expect("id");
    b.recv_type("message").await;
    b.close().await;

    let mut sent = Vec::new();
    for i in 1..=100 {
        let ack = a
            .send_message("bob", &format!("missed {i}"), &format!("k{i}"))
            .await;
        sent.push(ack["message"].clone());
    }

    let mut b = app.connect(&bob, Some(last_id)).await;
    let mut replayed = Vec::new();
    for _ in 0..100 {
        replayed.push(b.recv_type("message").await);
    }
    let end = b.recv_type("replay_end").await;
    assert_eq!(end["replayed"], 100);
    assert_eq!(end["last_id"], sent[99]["id"]);
    let bodies: Vec<&str> = replayed
        .iter()
        .map(|f| f["message"]["body"].as_str().unwrap_or(""))
        .collect();
    let expected: Vec<String> = (1..=100).map(|i| format!("missed {i}")).collect();
    assert_eq!(bodies, expected, "exactly the missed messages, in order");
    let replayed_ids = ids(&replayed);
    assert!(replayed_ids.windows(2).all(|w| w[0] < w[1]));
    b.assert_quiet().await;

    // Live traffic after the replay still flows.
    a.send_message("bob", "live again", "k-live").await;
    assert_eq!(
        b.recv_type("message").await["message"]["body"],
        "live again"
    );
}

async fn concurrent_senders_arrive_in_id_order(app: TestApp) {
    let bob = app.register("bob").await;
    let alice = app.register("alice").await;
    let carol = app.register("carol").await;
    let mut b = app.connect(&bob, None).await;
    let mut a = app.connect(&alice, None).await;
    let mut c = app.connect(&carol, None).await;
    // Pipelined: each sender fires 25 sends without waiting for acks.
    for i in 0..25 {
        a.send(json!({"type": "send", "to": "bob", "body": format!("a{i}"), "client_msg_id": format!("a{i}")})).await;
        c.send(json!({"type": "send", "to": "bob", "body": format!("c{i}"), "client_msg_id": format!("c{i}")})).await;
    }
    let mut received = Vec::new();
    for _ in 0..50 {
        received.push(b.recv_type("message").await);
    }
    let live = ids(&received);
    assert!(
        live.windows(2).all(|w| w[0] < w[1]),
        "not in id order: {live:?}"
    );
    for (client, prefix) in [(&mut a, "a"), (&mut c, "c")] {
        let mut acked = Vec::new();
        for _ in 0..25 {
            acked.push(
                client.recv_type("ack").await["message"]["body"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            );
        }
        acked.sort();
        let mut expected: Vec<String> = (0..25).map(|i| format!("{prefix}{i}")).collect();
        expected.sort();
        assert_eq!(acked, expected);
    }
    let path = app.direct_path(&bob, "alice", "/messages?limit=200").await;
    let from_alice = app.get(&path, &bob.access).await;
    let history = history_ids(&from_alice);
    let live_from_alice: Vec<i64> = received
        .iter()
        .filter(|f| f["message"]["from"] == "alice")
        .map(|f| f["message"]["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(
        history, live_from_alice,
        "history and live delivery agree on order"
    );
}

async fn history_conversations_and_receipts(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let mut a = app.connect(&alice, None).await;
    let mut b_phone = app.connect(&bob, None).await;
    let mut ids = Vec::new();
    for i in 1..=5 {
        let ack = a
            .send_message("bob", &format!("msg {i}"), &format!("h{i}"))
            .await;
        ids.push(ack["message"]["id"].as_i64().expect("id"));
    }
    let mut c = app.connect(&carol, None).await;
    c.send_message("bob", "from carol", "c1").await;
    for _ in 0..6 {
        b_phone.recv_type("message").await;
    }

    let list = app.get("/api/conversations", &bob.access).await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    let conversations = list.body["conversations"]
        .as_array()
        .expect("conversations");
    assert_eq!(conversations.len(), 2);
    assert_eq!(
        conversations[0]["peer"]["username"], "carol",
        "most recent first"
    );
    assert_eq!(conversations[1]["peer"]["username"], "alice");
    assert_eq!(conversations[1]["unread_count"], 5);
    assert_eq!(conversations[1]["last_message"]["body"], "msg 5");
    assert_eq!(conversations[1]["presence"]["status"], "online");

    let paged = app.get("/api/conversations?limit=1", &bob.access).await;
    let next = paged.body["next_before"].as_i64().expect("next page");
    let rest = app
        .get(
            &format!("/api/conversations?limit=1&before={next}"),
            &bob.access,
        )
        .await;
    assert_eq!(rest.body["conversations"][0]["peer"]["username"], "alice");
    assert!(rest.body["next_before"].is_null());

    // History pages by id, oldest first within a page.
    let conversation = app.direct_id(&bob, "alice").await;
    assert_eq!(
        rest.body["conversations"][0]["id"], conversation,
        "the list names the conversation the messages are in"
    );
    let latest = app
        .get(
            &format!("/api/conversations/{conversation}/messages?limit=2"),
            &bob.access,
        )
        .await;
    let page_ids = history_ids(&latest);
    assert_eq!(page_ids, ids[3..5]);
    assert_eq!(latest.body["has_more"], true);
    let older = app
        .get(
            &format!(
                "/api/conversations/{conversation}/messages?limit=10&before={}",
                ids[3]
            ),
            &bob.access,
        )
        .await;
    let older_ids = history_ids(&older);
    assert_eq!(older_ids, ids[0..3]);
    assert_eq!(older.body["has_more"], false);
    let newer = app
        .get(
            &format!(
                "/api/conversations/{conversation}/messages?limit=2&after={}",
                ids[0]
            ),
            &bob.access,
        )
        .await;
    let newer_ids = history_ids(&newer);
    assert_eq!(newer_ids, ids[1..3]);
    assert_eq!(newer.body["has_more"], true);
    let both = app
        .get(
            &format!("/api/conversations/{conversation}/messages?before=5&after=1"),
            &bob.access,
        )
        .await;
    assert_eq!(both.error_code(), "invalid_query");

    // Bob reads up to the third message on his laptop (REST).
    let read = app
        .request(
            Method::POST,
            &format!("/api/conversations/{conversation}/read"),
            Some(&bob.access),
            Some(json!({"up_to": ids[2]})),
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(read.body["unread"], 2);
    let receipt = a.recv_type("read_receipt").await;
    assert_eq!(receipt["by"], "bob");
    assert_eq!(receipt["up_to"], ids[2]);
    let state = b_phone.recv_type("read_state").await;
    assert_eq!(state["peer"], "alice");
    assert_eq!(state["conversation_id"], conversation);
    assert_eq!(receipt["conversation_id"], conversation);
    assert_eq!(state["unread"], 2);

    // ...and the rest on his phone (WebSocket).
    b_phone
        .send(json!({"type": "read", "id": "r1", "peer": "alice", "up_to": ids[4]}))
        .await;
    loop {
        let frame = b_phone.recv().await;
        if frame["type"] == "ok" {
            assert_eq!(frame["id"], "r1");
            break;
        }
    }
    assert_eq!(a.recv_type("read_receipt").await["up_to"], ids[4]);
    let list = app.get("/api/conversations", &bob.access).await;
    assert_eq!(list.body["conversations"][1]["unread_count"], 0);
    assert_eq!(list.body["conversations"][1]["last_read_id"], ids[4]);
    assert_eq!(list.body["conversations"][0]["unread_count"], 1);
    // Alice's side: her own messages are never unread for her, and she sees how far bob read.
    let alice_list = app.get("/api/conversations", &alice.access).await;
    assert_eq!(alice_list.body["conversations"][0]["unread_count"], 0);
    assert_eq!(
        alice_list.body["conversations"][0]["peer_last_read_id"],
        ids[4]
    );
    assert_eq!(list.body["conversations"][1]["peer_last_read_id"], 0);
}

async fn nobody_reads_another_pairs_conversation(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let mut a = app.connect(&alice, None).await;
    let secret = a.send_message("bob", "between alice and bob", "s1").await;
    let secret_id = secret["message"]["id"].as_i64().expect("id");

    let alice_bob = secret["message"]["conversation_id"]
        .as_i64()
        .expect("conversation");

    // Carol names alice: she gets her own (empty) conversation with alice, never alice-bob.
    let carol_alice = app.direct_id(&carol, "alice").await;
    assert_ne!(carol_alice, alice_bob);
    let history = app
        .get(
            &format!("/api/conversations/{carol_alice}/messages"),
            &carol.access,
        )
        .await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(history.body["messages"], json!([]));
    assert_eq!(
        app.get("/api/conversations", &carol.access).await.body["conversations"],
        json!([])
    );

    // The alice-bob conversation by its id: to carol it does not exist, whatever she asks.
    for (method, path, body) in [
        (Method::GET, format!("/api/conversations/{alice_bob}"), None),
        (
            Method::GET,
            format!("/api/conversations/{alice_bob}/messages"),
            None,
        ),
        (
            Method::GET,
            format!("/api/conversations/{alice_bob}/members"),
            None,
        ),
        (
            Method::POST,
            format!("/api/conversations/{alice_bob}/read"),
            Some(json!({"up_to": secret_id})),
        ),
    ] {
        let reply = app
            .request(method.clone(), &path, Some(&carol.access), body)
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(reply.error_code(), "conversation_not_found", "{path}");
    }
    // Nor over the socket: no message, read or typing reaches it.
    let mut c = app.connect(&carol, None).await;
    for frame in [
        json!({"type": "send", "id": "x", "conversation_id": alice_bob, "body": "hi", "client_msg_id": "x"}),
        json!({"type": "read", "id": "x", "conversation_id": alice_bob, "up_to": secret_id}),
        json!({"type": "typing", "id": "x", "conversation_id": alice_bob}),
    ] {
        c.send(frame.clone()).await;
        let error = c.recv_type("error").await;
        assert_eq!(error["code"], "conversation_not_found", "{frame}");
    }
    a.assert_quiet().await;

    let unknown = app
        .request(
            Method::POST,
            "/api/conversations",
            Some(&carol.access),
            Some(json!({"user": "nobody"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "user_not_found");
    let anonymous = app
        .request(
            Method::GET,
            &format!("/api/conversations/{alice_bob}/messages"),
            None,
            None,
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let _ = bob;
}

async fn presence_follows_connections(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut b = app.connect(&bob, None).await;
    {
        let mut a = app.connect(&alice, None).await;
        a.send_message("bob", "hi", "p1").await;
        b.recv_type("message").await;
        a.close().await;
    }
    // Alice's only connection closed: bob, who has a conversation with her, is told.
    let mut offline = b.recv().await;
    while offline["type"] != "presence" || offline["status"] != "offline" {
        offline = b.recv().await;
    }
    assert_eq!(offline["user"], "alice");
    assert!(
        offline["last_seen"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let profile = app.get("/api/users/alice", &bob.access).await;
    assert_eq!(profile.body["presence"]["status"], "offline");
    assert!(profile.body["presence"]["last_seen"].is_string());

    let _a = app.connect(&alice, None).await;
    let mut online = b.recv().await;
    while online["type"] != "presence" {
        online = b.recv().await;
    }
    assert_eq!(online["user"], "alice");
    assert_eq!(online["status"], "online");
    let profile = app.get("/api/users/alice", &bob.access).await;
    assert_eq!(profile.body["presence"]["status"], "online");
}

// ---- Paths that do not store: SQLite is enough. ----

#[actix_web::test]
async fn tickets_are_single_use_and_required() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let ticket = app.ticket(&alice).await;
    let ok = WsClient::open(&app.ws_url(&format!("ticket={ticket}"))).await;
    assert_eq!(ok.hello["user"]["username"], "alice");

    for (what, url) in [
        ("reused ticket", app.ws_url(&format!("ticket={ticket}"))),
        ("made-up ticket", app.ws_url("ticket=nope")),
        ("no credentials", format!("ws://{}/ws", app.addr)),
    ] {
        let err = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect_err(what);
        match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), 401, "{what}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                        .expect("JSON body");
                assert!(body["error"]["code"].is_string(), "{what}: {body}");
            }
            other => panic!("{what}: expected HTTP 401, got {other}"),
        }
    }

    // API clients may authenticate the upgrade with the Authorization header instead.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/ws", app.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", alice.access).parse().expect("header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("bearer upgrade");
    use futures_util::StreamExt;
    let hello = socket.next().await.expect("frame").expect("ok");
    assert!(hello.to_text().expect("text").contains("\"hello\""));
}

#[actix_web::test]
async fn bad_frames_get_errors_and_the_connection_lives_on() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    use tokio_tungstenite::tungstenite::Message;

    let long_body = "x".repeat(4001);
    let cases: Vec<(&str, Message, Option<&str>, &str)> = vec![
        (
            "malformed JSON",
            Message::text("{not json"),
            None,
            "invalid_json",
        ),
        (
            "not an object",
            Message::text("[1,2,3]"),
            None,
            "invalid_frame",
        ),
        (
            "unknown type",
            Message::text(r#"{"id":"u1","type":"teleport"}"#),
            Some("u1"),
            "unknown_frame_type",
        ),
        (
            "missing field",
            Message::text(r#"{"id":"u2","type":"send","to":"bob"}"#),
            Some("u2"),
            "invalid_frame",
        ),
        (
            "wrong type",
            Message::text(r#"{"id":"u3","type":"read","peer":"bob","up_to":"all"}"#),
            Some("u3"),
            "invalid_frame",
        ),
        (
            "blank body",
            Message::text(
                r#"{"id":"u4","type":"send","to":"bob","body":"   ","client_msg_id":"x"}"#,
            ),
            Some("u4"),
            "validation_failed",
        ),
        (
            "body too long",
            Message::text(
                json!({"id":"u5","type":"send","to":"bob","body":long_body,"client_msg_id":"y"})
                    .to_string(),
            ),
            Some("u5"),
            "validation_failed",
        ),
        (
            "unknown recipient",
            Message::text(
                r#"{"id":"u6","type":"send","to":"nobody","body":"hi","client_msg_id":"z"}"#,
            ),
            Some("u6"),
            "user_not_found",
        ),
        (
            "message to self",
            Message::text(
                r#"{"id":"u7","type":"send","to":"alice","body":"hi","client_msg_id":"w"}"#,
            ),
            Some("u7"),
            "validation_failed",
        ),
        (
            "binary frame",
            Message::binary(vec![1u8, 2, 3]),
            None,
            "invalid_frame",
        ),
    ];
    for (what, message, id, code) in cases {
        a.send_raw(message).await;
        let frame = a.recv_type("error").await;
        assert_eq!(frame["code"], code, "{what}: {frame}");
        assert_eq!(frame["id"].as_str(), id, "{what}: {frame}");
        assert!(frame["message"].is_string(), "{what}");
    }
    // After all that, the connection works.
    a.send_message("bob", "still here", "ok-1").await;

    // A frame over 64 KiB closes the connection with 1009.
    a.send_raw(Message::text("x".repeat(70 * 1024))).await;
    assert_eq!(a.closed().await, Some(1009));
}

#[actix_web::test]
async fn flooding_is_rate_limited_then_closed() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.ws.rate_per_sec = 5.0;
        s.ws.rate_burst = 5.0;
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let mut a = app.connect(&alice, None).await;
    for i in 0..8 {
        a.send(json!({"type": "ping", "id": format!("p{i}")})).await;
    }
    let mut limited = 0;
    for _ in 0..8 {
        let frame = a.recv().await;
        if frame["type"] == "error" {
            assert_eq!(frame["code"], "rate_limited");
            assert!(frame["id"].as_str().is_some_and(|id| id.starts_with('p')));
            limited += 1;
        }
    }
    assert!(
        limited >= 2,
        "the burst of 5 should leave at least 2 of 8 limited, got {limited}"
    );
    for i in 0..200 {
        a.send(json!({"type": "ping", "id": format!("f{i}")})).await;
    }
    assert_eq!(
        a.closed().await,
        Some(1008),
        "sustained abuse closes with policy violation"
    );
}

#[actix_web::test]
async fn silent_connections_time_out_and_unregister() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.ws.heartbeat_interval = std::time::Duration::from_millis(300);
        s.ws.client_timeout = std::time::Duration::from_millis(900);
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let a = app.connect(&alice, None).await;
    assert_eq!(a.hello["heartbeat_interval_ms"], 300);
    assert_eq!(
        app.get("/api/users/alice", &bob.access).await.body["presence"]["status"],
        "online"
    );
    // Not reading means not answering pings: the server gives up on the connection.
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let mut a = a;
    // The close frame (1001) may be lost: the client's automatic pongs to the pings queued while
    // it slept can hit the already-closed socket first. Either way the server ended it.
    let code = a.closed().await;
    assert!(matches!(code, Some(1001) | None), "closed with {code:?}");
    let mut status = Value::Null;
    for _ in 0..20 {
        status = app.get("/api/users/alice", &bob.access).await.body["presence"]["status"].clone();
        if status == "offline" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "offline", "a timed-out connection is unregistered");
}

#[actix_web::test]
async fn typing_is_relayed_throttled_and_not_stored() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;
    let first = a.send_message("bob", "hi", "first").await;
    let conversation = first["message"]["conversation_id"].clone();
    b.recv_type("message").await;
    for _ in 0..3 {
        a.send(json!({"type": "typing", "to": "bob"})).await;
    }
    let frame = b.recv().await;
    assert_eq!(
        frame,
        json!({"type": "typing", "conversation_id": conversation, "from": "alice"})
    );
    b.assert_quiet().await;
    let path = app.direct_path(&bob, "alice", "/messages").await;
    let history = app.get(&path, &bob.access).await;
    assert_eq!(history.body["messages"].as_array().map(Vec::len), Some(1));
    a.send(json!({"type": "typing", "id": "t", "to": "ghost"}))
        .await;
    assert_eq!(a.recv_type("error").await["code"], "user_not_found");
}

#[actix_web::test]
async fn too_large_a_gap_asks_for_a_resync() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.replay_max = 5)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut newest = 0;
    for i in 0..6 {
        newest = a.send_message("bob", "m", &format!("g{i}")).await["message"]["id"]
            .as_i64()
            .expect("id");
    }
    let mut b = app.connect(&bob, Some(0)).await;
    let frame = b.recv_type("resync_required").await;
    assert_eq!(frame["newest_id"], newest);
    b.assert_quiet().await;
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_dropped_without_slowing_others() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.ws.outbound_queue = 2 * pychat::chat::MAX_BATCH
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut a_other = app.connect(&alice, None).await;
    let mut stalled_bob = app.connect(&bob, None).await;
    // Enough bytes to fill the kernel's socket buffers on both ends, then the queue.
    let body = "x".repeat(4000);
    let total = 5000;
    let reader = async {
        for _ in 0..total {
            a_other.recv_type("message").await;
        }
    };
    let sender = async {
        // 100 in flight at a time: the sender reads its acks as it goes, as a client must.
        for chunk in 0..total / 100 {
            for i in chunk * 100..(chunk + 1) * 100 {
                a.send(json!({"type": "send", "to": "bob", "body": body, "client_msg_id": format!("s{i}")}))
                    .await;
            }
            for _ in 0..100 {
                a.recv_type("ack").await;
            }
        }
    };
    tokio::join!(reader, sender);
    // Alice's other connection got all of it; bob's stalled one was cut off.
    assert_eq!(stalled_bob.closed().await, Some(1008));
    // Nothing was lost: bob resumes and gets every message.
    let path = app.direct_path(&bob, "alice", "/messages?limit=1").await;
    let history = app.get(&path, &bob.access).await;
    assert_eq!(
        history.body["messages"][0]["client_msg_id"],
        format!("s{}", total - 1)
    );
}

/// Reads up to `up_to` over REST as `who`.
async fn read_up_to(
    app: &TestApp,
    who: &crate::helpers::Session,
    conversation: i64,
    up_to: i64,
) -> Value {
    let read = app
        .request(
            Method::POST,
            &format!("/api/conversations/{conversation}/read"),
            Some(&who.access),
            Some(json!({"up_to": up_to})),
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    read.body
}

/// A read that moves a position is an event of the log: a direct peer and the reader's other
/// devices that were offline learn it when they resume, once, in order; a group member's read
/// reaches only their own devices; it is not history, not a conversation's newest event.
async fn read_positions_are_events_a_resume_delivers(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let mut a = app.connect(&alice, None).await;
    let first = a.send_message("bob", "one", "m1").await["message"]["id"]
        .as_i64()
        .expect("id");
    let second = a.send_message("bob", "two", "m2").await["message"]["id"]
        .as_i64()
        .expect("id");
    let conversation = app.direct_id(&alice, "bob").await;
    a.close().await;

    // Bob reads on his laptop while Alice and his phone are offline.
    let read = read_up_to(&app, &bob, conversation, second).await;
    assert_eq!(
        (read["up_to"].as_i64(), read["unread"].as_i64()),
        (Some(second), Some(0))
    );
    // Alice resumes after her last message: the receipt comes, with its place in the log.
    let mut a = app.connect(&alice, Some(second)).await;
    let receipt = a.recv_type("read_receipt").await;
    assert_eq!(
        (&receipt["by"], &receipt["up_to"]),
        (&json!("bob"), &json!(second))
    );
    let seq = receipt["seq"].as_i64().expect("seq");
    assert!(seq > second, "{receipt}");
    let end = a.recv_type("replay_end").await;
    assert_eq!(
        (end["last_id"].as_i64(), end["replayed"].as_i64()),
        (Some(seq), Some(1))
    );
    // Bob's phone resumes from before the read: its own read state arrives.
    let mut phone = app.connect(&bob, Some(first)).await;
    let mut kinds = Vec::new();
    loop {
        let frame = phone.recv().await;
        match frame["type"].as_str() {
            Some("replay_end") => break,
            Some("message") => kinds.push(format!("message {}", frame["message"]["id"])),
            Some("read_state") => {
                assert_eq!(
                    (&frame["up_to"], &frame["unread"], &frame["peer"]),
                    (&json!(second), &json!(0), &json!("alice"))
                );
                kinds.push(format!("read_state {}", frame["seq"]));
            }
            _ => {}
        }
    }
    assert_eq!(
        kinds,
        [format!("message {second}"), format!("read_state {seq}")]
    );
    // Resuming after it brings nothing again; reading the same again logs nothing.
    let mut again = app.connect(&alice, Some(seq)).await;
    assert_eq!(again.recv_type("replay_end").await["replayed"], 0);
    let same = read_up_to(&app, &bob, conversation, second).await;
    assert_eq!(same["up_to"], second);
    a.assert_quiet().await;
    // Not history, not the newest event.
    let history = app
        .get(
            &format!("/api/conversations/{conversation}/messages"),
            &alice.access,
        )
        .await;
    assert_eq!(history_ids(&history), [first, second]);
    let list = app.get("/api/conversations", &alice.access).await;
    assert_eq!(list.body["conversations"][0]["last_message"]["id"], second);
    assert_eq!(list.body["conversations"][0]["peer_last_read_id"], second);

    // In a group, a read reaches the reader's own devices only.
    let created = app
        .request(
            Method::POST,
            "/api/conversations",
            Some(&carol.access),
            Some(json!({"title": "Trio", "members": ["alice", "bob"]})),
        )
        .await;
    let group = created.body["id"].as_i64().expect("group");
    let mut c = app.connect(&carol, None).await;
    c.send(json!({"type": "send", "id": "g1", "conversation_id": group, "body": "hi", "client_msg_id": "g1"}))
        .await;
    let posted = c.recv_type("ack").await["message"]["id"]
        .as_i64()
        .expect("id");
    drop(again);
    let read = read_up_to(&app, &alice, group, posted).await;
    assert_eq!(read["up_to"], posted);
    let mut a2 = app.connect(&alice, Some(posted)).await;
    let state = a2.recv_type("read_state").await;
    assert_eq!(
        (&state["conversation_id"], &state["up_to"]),
        (&json!(group), &json!(posted))
    );
    let mut c2 = app.connect(&carol, Some(posted)).await;
    assert_eq!(
        c2.recv_type("replay_end").await["replayed"],
        0,
        "carol learns nothing of it"
    );
    c.assert_quiet().await;
}
