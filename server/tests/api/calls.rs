//! Calls: the original PyChat room flow, mesh routing, authorization, lifecycle, direct calls
//! and ICE configuration, with real WebSocket clients.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};
use crate::on_every_backend;
use crate::ws_client::WsClient;

on_every_backend!(
    @with |s: &mut pychat::config::Settings| s.calls.ring_timeout = std::time::Duration::from_millis(600);
    unanswered_calls_leave_a_missed_call_in_history
);

async fn create(client: &mut WsClient, name: &str) -> String {
    let reply = client
        .request(json!({"type": "room_create", "name": name}), "create")
        .await;
    assert_eq!(reply["type"], "room_created", "{reply}");
    reply["peer_id"].as_str().expect("peer id").to_string()
}

async fn join(client: &mut WsClient, name: &str) -> (String, Value) {
    let reply = client
        .request(json!({"type": "room_join", "name": name}), "join")
        .await;
    assert_eq!(reply["type"], "room_joined", "{reply}");
    (
        reply["peer_id"].as_str().expect("peer id").to_string(),
        reply["room"].clone(),
    )
}

async fn error_code(client: &mut WsClient, frame: Value) -> String {
    let reply = client.request(frame, "expect-error").await;
    assert_eq!(reply["type"], "error", "{reply}");
    reply["code"].as_str().expect("code").to_string()
}

fn signal(to: &str, kind: &str, payload: Value) -> Value {
    json!({"type": "signal", "to": to, "kind": kind, "payload": payload})
}

#[actix_web::test]
async fn the_original_two_user_flow() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;

    // Alice creates a room by name and shares the name; Bob joins with it.
    let pa = create(&mut a, "  Team Room ").await;
    let (pb, room) = join(&mut b, "team room").await;
    assert_eq!(room["name"], "Team Room");
    assert_eq!(room["creator"], pa);
    assert_eq!(room["creator_username"], "alice");
    assert_eq!(room["session_started"], false);
    let members: Vec<&str> = room["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["username"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(members, ["alice", "bob"]);
    let joined = a.next_of("member_joined").await;
    assert_eq!(joined["member"]["peer_id"], pb);
    assert_eq!(joined["member"]["username"], "bob");

    // Nothing is relayed before the creator presses "start session", and only she can.
    assert_eq!(
        error_code(&mut a, signal(&pb, "offer", json!({"sdp": "v=0"}))).await,
        "session_not_started"
    );
    assert_eq!(
        error_code(&mut b, json!({"type": "session_start"})).await,
        "not_room_creator"
    );
    let ok = a.request(json!({"type": "session_start"}), "start").await;
    assert_eq!(ok["type"], "ok");
    for client in [&mut a, &mut b] {
        let started = client.next_of("session_started").await;
        assert_eq!(started["peers"].as_array().map(Vec::len), Some(2));
    }

    // Offer, answer and candidates go to the named peer only, stamped by the server.
    a.send(json!({"type": "signal", "to": pb, "kind": "offer", "payload": {"type": "offer", "sdp": "v=0 a"}, "from": "someone-else"})).await;
    let offer = b.next_of("signal").await;
    assert_eq!(
        offer,
        json!({"type": "signal", "from": pa, "from_user": "alice", "kind": "offer", "payload": {"type": "offer", "sdp": "v=0 a"}})
    );
    b.send(signal(
        &pa,
        "answer",
        json!({"type": "answer", "sdp": "v=0 b"}),
    ))
    .await;
    let answer = a.next_of("signal").await;
    assert_eq!(
        (answer["from"].as_str(), answer["kind"].as_str()),
        (Some(pb.as_str()), Some("answer"))
    );
    for i in 0..3 {
        a.send(signal(
            &pb,
            "candidate",
            json!({"candidate": format!("candidate:{i}"), "sdpMid": "0"}),
        ))
        .await;
        b.send(signal(
            &pa,
            "candidate",
            json!({"candidate": format!("candidate:b{i}"), "sdpMid": "0"}),
        ))
        .await;
    }
    a.send(signal(&pb, "end_of_candidates", json!(null))).await;
    for i in 0..3 {
        assert_eq!(
            b.next_of("signal").await["payload"]["candidate"],
            format!("candidate:{i}")
        );
        assert_eq!(
            a.next_of("signal").await["payload"]["candidate"],
            format!("candidate:b{i}")
        );
    }
    assert_eq!(b.next_of("signal").await["kind"], "end_of_candidates");

    // Mute is broadcast; the room shows it.
    a.request(
        json!({"type": "peer_state", "muted": true, "camera": false, "screen": false}),
        "mute",
    )
    .await;
    let state = b.next_of("peer_state").await;
    assert_eq!(
        (
            state["peer_id"].as_str(),
            state["muted"].as_bool(),
            state["camera"].as_bool()
        ),
        (Some(pa.as_str()), Some(true), Some(false))
    );
    let view = app.get("/api/rooms/TEAM%20ROOM", &bob.access).await;
    assert_eq!(view.status, StatusCode::OK, "{:?}", view.body);
    assert_eq!(view.body["members"][0]["muted"], true);
    assert_eq!(view.body["session_started"], true);

    // Bob leaves; Alice is told. When the last member leaves, the room closes.
    b.request(json!({"type": "room_leave"}), "leave").await;
    let left = a.next_of("member_left").await;
    assert_eq!(
        (left["peer_id"].as_str(), left["reason"].as_str()),
        (Some(pb.as_str()), Some("left"))
    );
    a.request(json!({"type": "room_leave"}), "leave").await;
    assert_eq!(
        error_code(&mut b, json!({"type": "room_join", "name": "team room"})).await,
        "room_not_found"
    );
    create(&mut b, "Team Room").await;
}

#[actix_web::test]
async fn four_peers_negotiate_a_full_mesh() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.calls.max_peers = 4)
        .await
        .expect("sqlite");
    let names = ["ann", "ben", "cat", "dan"];
    let mut clients = Vec::new();
    let mut peers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let session = app.register(name).await;
        let mut client = app.connect(&session, None).await;
        let peer = if i == 0 {
            create(&mut client, "mesh").await
        } else {
            join(&mut client, "mesh").await.0
        };
        clients.push(client);
        peers.push(peer);
    }
    let eve = app.register("eve").await;
    let mut e = app.connect(&eve, None).await;
    assert_eq!(
        error_code(&mut e, json!({"type": "room_join", "name": "mesh"})).await,
        "room_full"
    );

    clients[0]
        .request(json!({"type": "session_start"}), "start")
        .await;
    for client in clients.iter_mut() {
        assert_eq!(
            client.next_of("session_started").await["peers"]
                .as_array()
                .map(Vec::len),
            Some(4)
        );
    }
    // Every pair negotiates: each peer offers to every peer after it.
    for (i, client) in clients.iter_mut().enumerate() {
        for (j, to) in peers.iter().enumerate().skip(i + 1) {
            client
                .send(signal(to, "offer", json!({"sdp": format!("{i}->{j}")})))
                .await;
        }
    }
    for (j, client) in clients.iter_mut().enumerate() {
        let mut from: Vec<(String, String)> = Vec::new();
        for _ in 0..j {
            let frame = client.next_of("signal").await;
            from.push((
                frame["from"].as_str().unwrap_or("").into(),
                frame["payload"]["sdp"].as_str().unwrap_or("").into(),
            ));
        }
        from.sort();
        let mut expected: Vec<(String, String)> = (0..j)
            .map(|i| (peers[i].clone(), format!("{i}->{j}")))
            .collect();
        expected.sort();
        assert_eq!(
            from, expected,
            "peer {j} got offers from exactly the peers before it"
        );
        client.assert_quiet().await;
    }

    // A late joiner, once a seat is free, connects to everyone already in the call.
    clients[3]
        .request(json!({"type": "room_leave"}), "bye")
        .await;
    for client in clients.iter_mut().take(3) {
        client.next_of("member_left").await;
    }
    let (pe, room) = join(&mut e, "mesh").await;
    assert_eq!(
        room["session_started"], true,
        "the joiner learns the call is on"
    );
    for (i, to) in peers.iter().enumerate().take(3) {
        e.send(signal(to, "offer", json!({"sdp": format!("late->{i}")})))
            .await;
    }
    for (i, client) in clients.iter_mut().enumerate().take(3) {
        assert_eq!(
            client.next_of("member_joined").await["member"]["peer_id"],
            pe
        );
        let offer = client.next_of("signal").await;
        assert_eq!(
            (offer["from"].as_str(), offer["payload"]["sdp"].as_str()),
            (Some(pe.as_str()), Some(format!("late->{i}").as_str()))
        );
    }
}

#[actix_web::test]
async fn signals_cannot_leave_the_room_or_pose_as_another_peer() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let mut clients = Vec::new();
    for name in ["alice", "bob", "mallory", "trent"] {
        let session = app.register(name).await;
        clients.push((app.connect(&session, None).await, session));
    }
    let (mut a, alice) = clients.remove(0);
    let (mut b, _bob) = clients.remove(0);
    let (mut m, mallory) = clients.remove(0);
    let (mut t, _trent) = clients.remove(0);
    let pa = create(&mut a, "private talk").await;
    let (pb, _) = join(&mut b, "private talk").await;
    a.request(json!({"type": "session_start"}), "s").await;
    a.next_of("session_started").await;
    b.next_of("session_started").await;

    // Mallory is in no room: she can neither signal nor read the room.
    assert_eq!(
        error_code(&mut m, signal(&pa, "offer", json!({}))).await,
        "not_in_room"
    );
    // Nor learn that it exists: the answer is the one for a name nobody uses.
    let peek = app.get("/api/rooms/private%20talk", &mallory.access).await;
    let missing = app.get("/api/rooms/nope", &mallory.access).await;
    assert_eq!(peek.status, StatusCode::NOT_FOUND);
    assert_eq!(peek.body, missing.body);
    assert_eq!(missing.error_code(), "room_not_found");
    assert_eq!(
        app.get("/api/rooms/private%20talk", &alice.access)
            .await
            .status,
        StatusCode::OK
    );

    // In a room of her own, she still cannot reach a peer of another room.
    let pm = create(&mut m, "mallorys room").await;
    let (_pt, _) = join(&mut t, "mallorys room").await;
    m.request(json!({"type": "session_start"}), "s").await;
    t.next_of("session_started").await;
    assert_eq!(
        error_code(&mut m, signal(&pa, "offer", json!({}))).await,
        "peer_not_found"
    );
    assert_eq!(
        error_code(&mut m, signal(&pm, "offer", json!({}))).await,
        "peer_not_found",
        "not to herself either"
    );
    // Payload size limits: candidates are small.
    let big = "c".repeat(5000);
    assert_eq!(
        error_code(&mut a, signal(&pb, "candidate", json!({"candidate": big}))).await,
        "payload_too_large"
    );
    a.assert_quiet().await;
    b.assert_quiet().await;

    // One room per connection.
    assert_eq!(
        error_code(&mut a, json!({"type": "room_create", "name": "other"})).await,
        "already_in_room"
    );
    assert_eq!(
        error_code(&mut m, json!({"type": "room_join", "name": "private talk"})).await,
        "already_in_room"
    );
    t.assert_quiet().await;
}

#[actix_web::test]
async fn room_names_follow_the_original_rules() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.calls.rooms_per_minute = 2)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;
    assert_eq!(
        error_code(&mut a, json!({"type": "room_create", "name": "_user1"})).await,
        "room_name_reserved"
    );
    assert_eq!(
        error_code(&mut a, json!({"type": "room_create", "name": "   "})).await,
        "validation_failed"
    );
    assert_eq!(
        error_code(&mut a, json!({"type": "room_create", "name": "no/slashes"})).await,
        "validation_failed"
    );
    assert_eq!(
        error_code(&mut b, json!({"type": "room_join", "name": "ghost"})).await,
        "room_not_found"
    );
    create(&mut a, "Lobby").await;
    assert_eq!(
        error_code(&mut b, json!({"type": "room_create", "name": "LOBBY"})).await,
        "room_exists"
    );
    assert_eq!(
        error_code(
            &mut b,
            json!({"type": "room_join", "name": "_call-anything"})
        )
        .await,
        "room_not_found"
    );
    // Creating rooms is rate-limited per user; refused attempts do not use up the quota.
    a.request(json!({"type": "room_leave"}), "l").await;
    create(&mut a, "second").await;
    a.request(json!({"type": "room_leave"}), "l").await;
    assert_eq!(
        error_code(&mut a, json!({"type": "room_create", "name": "third"})).await,
        "rate_limited"
    );
}

#[actix_web::test]
async fn the_creator_ends_the_room_for_everyone() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;
    create(&mut a, "standup").await;
    join(&mut b, "standup").await;
    assert_eq!(
        error_code(&mut b, json!({"type": "room_end"})).await,
        "not_room_creator"
    );
    a.request(json!({"type": "room_end"}), "end").await;
    for client in [&mut a, &mut b] {
        let ended = client.next_of("room_ended").await;
        assert_eq!(
            (ended["room"].as_str(), ended["by"].as_str()),
            (Some("standup"), Some("alice"))
        );
    }
    assert_eq!(
        error_code(&mut b, json!({"type": "room_leave"})).await,
        "not_in_room"
    );
}

#[actix_web::test]
async fn a_dropped_peer_can_take_its_seat_back_within_the_grace_period() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.calls.grace = Duration::from_millis(800)
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let b = app.connect(&bob, None).await;
    let mut b = b;
    let pa = create(&mut a, "call").await;
    let (pb, _) = join(&mut b, "call").await;
    a.request(json!({"type": "session_start"}), "s").await;
    b.close().await;
    let dropped = a.next_of("member_disconnected").await;
    assert_eq!(dropped["peer_id"], pb);

    // Back within the grace period, on a new connection: same seat, same peer id.
    let mut b = app.connect(&bob, None).await;
    let back = b
        .request(
            json!({"type": "room_rejoin", "name": "call", "peer_id": pb}),
            "rejoin",
        )
        .await;
    assert_eq!(back["type"], "room_joined", "{back}");
    assert_eq!(back["peer_id"], pb);
    assert_eq!(a.next_of("member_reconnected").await["peer_id"], pb);
    // Peers renegotiate (ICE restart) through the same addressing.
    a.send(signal(&pb, "offer", json!({"iceRestart": true})))
        .await;
    assert_eq!(b.next_of("signal").await["from"], pa);
    // Someone else cannot take Bob's seat.
    let mallory = app.register("mallory").await;
    let mut m = app.connect(&mallory, None).await;
    assert_eq!(
        error_code(
            &mut m,
            json!({"type": "room_rejoin", "name": "call", "peer_id": pb})
        )
        .await,
        "peer_not_found"
    );

    // Gone for longer than the grace period: removed, and the room is told.
    b.close().await;
    a.next_of("member_disconnected").await;
    let left = a.next_of("member_left").await;
    assert_eq!(
        (left["peer_id"].as_str(), left["reason"].as_str()),
        (Some(pb.as_str()), Some("timeout"))
    );
    let mut b = app.connect(&bob, None).await;
    assert_eq!(
        error_code(
            &mut b,
            json!({"type": "room_rejoin", "name": "call", "peer_id": pb})
        )
        .await,
        "peer_not_found"
    );
}

#[actix_web::test]
async fn a_direct_call_answered_on_the_second_tab_stops_the_first_ringing() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b1 = app.connect(&bob, None).await;
    let mut b2 = app.connect(&bob, None).await;
    let ringing = a
        .request(
            json!({"type": "call", "to": "bob", "media": "video"}),
            "call",
        )
        .await;
    assert_eq!(ringing["type"], "call_ringing", "{ringing}");
    let call_id = ringing["call_id"].as_str().expect("call id").to_string();
    for tab in [&mut b1, &mut b2] {
        let incoming = tab.next_of("incoming_call").await;
        assert_eq!(
            (
                incoming["call_id"].as_str(),
                incoming["from"].as_str(),
                incoming["media"].as_str()
            ),
            (Some(call_id.as_str()), Some("alice"), Some("video"))
        );
    }
    b2.send(json!({"type": "call_accept", "call_id": call_id}))
        .await;
    let accepted_b = b2.next_of("call_accepted").await;
    let accepted_a = a.next_of("call_accepted").await;
    assert_eq!(accepted_a["room"]["direct"], true);
    assert_eq!(accepted_a["room"]["session_started"], true);
    let stopped = b1.next_of("call_ended").await;
    assert_eq!(stopped["reason"], "answered_elsewhere");
    // The accepted call is a private room with the same signaling.
    let pb = accepted_b["peer_id"].as_str().expect("peer").to_string();
    a.send(signal(&pb, "offer", json!({"sdp": "v=0"}))).await;
    assert_eq!(b2.next_of("signal").await["from_user"], "alice");
    // A third party calling either of them hears busy.
    let carol = app.register("carol").await;
    let mut c = app.connect(&carol, None).await;
    assert_eq!(
        error_code(
            &mut c,
            json!({"type": "call", "to": "bob", "media": "audio"})
        )
        .await,
        "busy"
    );
    // One side leaving ends a direct call for the other.
    a.request(json!({"type": "room_leave"}), "bye").await;
    assert_eq!(b2.next_of("room_ended").await["by"], "alice");
    b1.assert_quiet().await;
}

#[actix_web::test]
async fn declined_and_cancelled_calls() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;

    let call_id = a
        .request(json!({"type": "call", "to": "bob", "media": "audio"}), "c1")
        .await["call_id"]
        .as_str()
        .expect("id")
        .to_string();
    b.next_of("incoming_call").await;
    assert_eq!(
        error_code(&mut a, json!({"type": "call_accept", "call_id": call_id})).await,
        "call_not_found",
        "the caller cannot answer"
    );
    b.request(json!({"type": "call_decline", "call_id": call_id}), "no")
        .await;
    assert_eq!(a.next_of("call_ended").await["reason"], "declined");

    let call_id = a
        .request(json!({"type": "call", "to": "bob", "media": "audio"}), "c2")
        .await["call_id"]
        .as_str()
        .expect("id")
        .to_string();
    b.next_of("incoming_call").await;
    a.request(
        json!({"type": "call_cancel", "call_id": call_id}),
        "hang-up",
    )
    .await;
    assert_eq!(b.next_of("call_ended").await["reason"], "cancelled");
    // A cancelled call is a missed call for Bob; a declined one is not.
    let missed = b.next_of("message").await;
    assert_eq!(missed["message"]["kind"], "missed_call");
    let path = app.direct_path(&bob, "alice", "/messages").await;
    let history = app.get(&path, &bob.access).await;
    let kinds: Vec<&str> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["missed_call"]);

    assert_eq!(
        error_code(
            &mut a,
            json!({"type": "call", "to": "alice", "media": "audio"})
        )
        .await,
        "validation_failed"
    );
    assert_eq!(
        error_code(
            &mut a,
            json!({"type": "call", "to": "nobody", "media": "audio"})
        )
        .await,
        "user_not_found"
    );
}

async fn unanswered_calls_leave_a_missed_call_in_history(app: TestApp) {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;
    let ringing = a
        .request(
            json!({"type": "call", "to": "bob", "media": "video"}),
            "ring",
        )
        .await;
    let call_id = ringing["call_id"].as_str().expect("call id").to_string();
    b.next_of("incoming_call").await;
    // Nobody answers: the caller hears "timeout", the callee's devices stop ringing ("missed").
    let caller_side = a.next_of("call_ended").await;
    assert_eq!(
        (
            caller_side["call_id"].as_str(),
            caller_side["reason"].as_str()
        ),
        (Some(call_id.as_str()), Some("timeout"))
    );
    assert_eq!(b.next_of("call_ended").await["reason"], "missed");
    let entry = b.next_of("message").await;
    assert_eq!(entry["message"]["kind"], "missed_call");
    assert_eq!(entry["message"]["from"], "alice");
    assert_eq!(entry["message"]["body"], "Missed video call");
    let path = app.direct_path(&alice, "bob", "/messages").await;
    let history = app.get(&path, &alice.access).await;
    assert_eq!(history.body["messages"][0]["kind"], "missed_call");
    assert_eq!(history.body["messages"].as_array().map(Vec::len), Some(1));
    // Answering after the timeout is too late.
    let late = b
        .request(json!({"type": "call_accept", "call_id": call_id}), "late")
        .await;
    assert_eq!(late["code"], "call_not_found");
}

#[actix_web::test]
async fn ice_servers_carry_turn_rest_credentials() {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.ice.stun_urls = vec!["stun:stun.example.org:3478".into()];
        s.ice.turn_urls = vec!["turn:turn.example.org:3478?transport=udp".into()];
        s.ice.turn_secret = Some(pychat::config::Secret::new("coturn-shared-secret"));
        s.ice.turn_credential_ttl = std::time::Duration::from_secs(600);
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let reply = app.get("/api/ice-servers", &alice.access).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let servers = reply.body["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(servers[0]["urls"], json!(["stun:stun.example.org:3478"]));
    assert!(servers[0].get("credential").is_none());
    let turn = &servers[1];
    let username = turn["username"].as_str().expect("username");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, "alice");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expiry: u64 = expiry.parse().expect("unix time");
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "expiry {expiry}, now {now}"
    );
    // What coturn computes with use-auth-secret: base64(HMAC-SHA1(secret, username)).
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"coturn-shared-secret").expect("key");
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], expected);
    assert_eq!(reply.body["ttl"], 600);
    let anonymous = app
        .request(Method::GET, "/api/ice-servers", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}
