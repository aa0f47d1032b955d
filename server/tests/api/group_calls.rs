//! Calls in groups: starting one rings every member, any member joins while it lasts, nobody
//! else can find or enter it, and its start and end are events in the group's history.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, Session, TestApp, spawn_app_with};
use crate::on_every_backend;
use crate::ws_client::WsClient;

on_every_backend!(
    @with |s: &mut pychat::config::Settings| s.calls.ring_timeout = std::time::Duration::from_millis(800);
    a_group_call_rings_every_member_and_any_member_joins_while_it_lasts
);

async fn group(app: &TestApp, owner: &Session, members: &[&str]) -> i64 {
    let created = app
        .request(
            Method::POST,
            "/api/conversations",
            Some(&owner.access),
            Some(json!({"title": "Standup", "members": members})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created.body["id"].as_i64().expect("id")
}

/// Alice, Bob and Carol, and the group Alice made with the other two.
struct Trio {
    alice: Session,
    bob: Session,
    carol: Session,
    group: i64,
}

async fn trio(app: &TestApp) -> Trio {
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let group = group(app, &alice, &["bob", "carol"]).await;
    Trio {
        alice,
        bob,
        carol,
        group,
    }
}

fn call_group(group: i64) -> Value {
    json!({"type": "call", "conversation_id": group, "media": "video"})
}

/// The next stored event of a conversation, skipping everything else.
async fn event(ws: &mut WsClient) -> Value {
    ws.next_of("message").await["message"].clone()
}

fn usernames(room: &Value) -> Vec<&str> {
    room["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["username"].as_str())
        .collect()
}

async fn a_group_call_rings_every_member_and_any_member_joins_while_it_lasts(app: TestApp) {
    let Trio {
        alice,
        bob,
        carol,
        group: id,
    } = trio(&app).await;
    let dave = app.register("dave").await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;
    let mut c = app.connect(&carol, None).await;
    let mut d = app.connect(&dave, None).await;

    let started = a.request(call_group(id), "start").await;
    assert_eq!(started["type"], "room_joined", "{started}");
    let room = &started["room"];
    assert_eq!(room["conversation_id"], id);
    assert_eq!(room["session_started"], true, "nobody waits for a start");
    assert_eq!(usernames(room), ["alice"]);
    let call_id = room["call_id"].as_str().expect("call id").to_string();
    let room_name = room["name"].as_str().expect("name").to_string();
    let alice_peer = started["peer_id"].as_str().expect("peer").to_string();

    for member in [&mut b, &mut c] {
        let ring = member.next_of("incoming_call").await;
        assert_eq!(
            (&ring["call_id"], &ring["from"], &ring["conversation_id"]),
            (&json!(call_id), &json!("alice"), &json!(id))
        );
        let noted = event(member).await;
        assert_eq!(noted["kind"], "call_started");
        assert_eq!(noted["from"], "alice");
        assert_eq!(noted["call"]["call_id"], call_id.as_str());
        assert_eq!(noted["call"]["media"], "video");
    }
    let in_progress = app
        .get(&format!("/api/conversations/{id}"), &carol.access)
        .await;
    assert_eq!(in_progress.body["active_call"]["call_id"], call_id.as_str());
    assert_eq!(
        in_progress.body["active_call"]["participants"],
        json!(["alice"])
    );

    // Bob answers the ring; Carol lets it ring out and joins from the group later.
    b.send(json!({"type": "call_accept", "call_id": call_id}))
        .await;
    let accepted = b.next_of("call_accepted").await;
    assert_eq!(usernames(&accepted["room"]), ["alice", "bob"]);
    assert_eq!(
        a.next_of("member_joined").await["member"]["username"],
        "bob"
    );
    let stopped = c.next_of("call_ended").await;
    assert_eq!(stopped["reason"], "stopped_ringing", "{stopped}");
    let joined = c.request(call_group(id), "join").await;
    assert_eq!(joined["type"], "room_joined", "{joined}");
    assert_eq!(joined["room"]["call_id"], call_id.as_str(), "the same call");
    assert_eq!(usernames(&joined["room"]), ["alice", "bob", "carol"]);
    for member in [&mut a, &mut b] {
        assert_eq!(
            member.next_of("member_joined").await["member"]["username"],
            "carol"
        );
    }
    // The late joiner negotiates with everyone already there, as in a room by name.
    c.send(json!({"type": "signal", "to": alice_peer, "kind": "offer", "payload": {"sdp": "v=0"}}))
        .await;
    assert_eq!(a.next_of("signal").await["from_user"], "carol");

    // Dave is no member: he cannot call, join, answer, look the room up or even learn it exists.
    let refused = d.request(call_group(id), "intrude").await;
    assert_eq!(refused["code"], "conversation_not_found", "{refused}");
    let by_name = d
        .request(json!({"type": "room_join", "name": room_name}), "by-name")
        .await;
    assert_eq!(by_name["code"], "room_not_found", "{by_name}");
    let answer = d
        .request(json!({"type": "call_accept", "call_id": call_id}), "answer")
        .await;
    assert_eq!(answer["code"], "call_not_found", "{answer}");
    let looked_up = app
        .get(&format!("/api/rooms/{room_name}"), &dave.access)
        .await;
    assert_eq!(looked_up.status, StatusCode::NOT_FOUND);
    let outsider = app
        .get(&format!("/api/conversations/{id}"), &dave.access)
        .await;
    assert_eq!(outsider.error_code(), "conversation_not_found");

    // The call ends when its last member leaves, and says how long it lasted.
    for member in [&mut a, &mut b, &mut c] {
        member.request(json!({"type": "room_leave"}), "bye").await;
    }
    // (Alice's own `call_started` may come by first, or may have gone by already.)
    let mut ended = event(&mut a).await;
    if ended["kind"] == "call_started" {
        ended = event(&mut a).await;
    }
    assert_eq!(ended["kind"], "call_ended", "{ended}");
    assert_eq!(ended["call"]["call_id"], call_id.as_str());
    assert!(ended["call"]["duration_secs"].as_u64().is_some(), "{ended}");
    let history = app
        .get(&format!("/api/conversations/{id}/messages"), &bob.access)
        .await;
    let kinds: Vec<&str> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["group_created", "call_started", "call_ended"]);
    let after = app
        .get(&format!("/api/conversations/{id}"), &carol.access)
        .await;
    assert!(after.body.get("active_call").is_none(), "{:?}", after.body);
    d.assert_quiet().await;
}

#[actix_web::test]
async fn declining_stops_only_your_ringing_and_a_removed_member_cannot_get_in() {
    let adjust = |s: &mut pychat::config::Settings| s.calls.ring_timeout = Duration::from_secs(30);
    let app = spawn_app_with(Backend::Sqlite, adjust)
        .await
        .expect("sqlite");
    let Trio {
        alice,
        bob,
        carol,
        group: id,
    } = trio(&app).await;
    let mut a = app.connect(&alice, None).await;
    let mut b1 = app.connect(&bob, None).await;
    let mut b2 = app.connect(&bob, None).await;
    let mut c = app.connect(&carol, None).await;
    let started = a.request(call_group(id), "start").await;
    let call_id = started["room"]["call_id"]
        .as_str()
        .expect("call")
        .to_string();
    for ringing in [&mut b1, &mut b2, &mut c] {
        ringing.next_of("incoming_call").await;
    }
    // Bob declines on one device: both of his stop ringing, the call goes on.
    b1.request(json!({"type": "call_decline", "call_id": call_id}), "no")
        .await;
    for device in [&mut b1, &mut b2] {
        assert_eq!(
            device.next_of("call_ended").await["reason"],
            "stopped_ringing"
        );
    }
    // Carol is removed while ringing: she can neither answer nor join.
    let removed = app
        .request(
            Method::DELETE,
            &format!("/api/conversations/{id}/members/carol"),
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    let answer = c
        .request(json!({"type": "call_accept", "call_id": call_id}), "answer")
        .await;
    assert_eq!(answer["code"], "call_not_found", "{answer}");
    let join = c.request(call_group(id), "join").await;
    assert_eq!(join["code"], "conversation_not_found", "{join}");
    // Bob changes his mind and joins from the group; a second device of his may join too.
    let joined = b2.request(call_group(id), "join").await;
    assert_eq!(usernames(&joined["room"]), ["alice", "bob"]);
    assert_eq!(
        a.next_of("member_joined").await["member"]["username"],
        "bob"
    );
    // The starter leaving does not end it for the others.
    a.request(json!({"type": "room_leave"}), "bye").await;
    let left = b2.next_of("member_left").await;
    assert_eq!(left["username"], "alice");
    let view = app
        .get(&format!("/api/conversations/{id}"), &bob.access)
        .await;
    assert_eq!(view.body["active_call"]["participants"], json!(["bob"]));
    // Calling a direct conversation by id rings its other user, as `to` does.
    let direct = app.direct_id(&alice, "bob").await;
    let ring = a
        .request(
            json!({"type": "call", "conversation_id": direct, "media": "audio"}),
            "dm",
        )
        .await;
    assert_eq!(ring["type"], "error", "bob is in a call: {ring}");
    assert_eq!(ring["code"], "busy");
    let both = a
        .request(
            json!({"type": "call", "conversation_id": direct, "to": "bob", "media": "audio"}),
            "both",
        )
        .await;
    assert_eq!(both["code"], "invalid_frame", "{both}");
}

#[actix_web::test]
async fn a_member_removed_or_leaving_during_the_call_is_put_out_of_it() {
    let app = spawn_app_with(Backend::Sqlite, |_| {})
        .await
        .expect("sqlite");
    let Trio {
        alice,
        bob,
        carol,
        group: id,
    } = trio(&app).await;
    let mut a = app.connect(&alice, None).await;
    let mut b = app.connect(&bob, None).await;
    let mut c = app.connect(&carol, None).await;
    a.request(call_group(id), "start").await;
    let joined = b.request(call_group(id), "join").await;
    let room = joined["room"]["name"].as_str().expect("room").to_string();
    let bob_peer = joined["peer_id"].as_str().expect("peer").to_string();
    c.request(call_group(id), "join").await;

    let removed = app
        .request(
            Method::DELETE,
            &format!("/api/conversations/{id}/members/bob"),
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    let ended = b.next_of("room_ended").await;
    assert_eq!(
        (&ended["room"], &ended["by"]),
        (&json!(room), &json!("alice"))
    );
    for member in [&mut a, &mut c] {
        assert_eq!(member.next_of("member_left").await["username"], "bob");
    }
    let back = b
        .request(
            json!({"type": "room_rejoin", "name": room, "peer_id": bob_peer}),
            "back",
        )
        .await;
    assert_eq!(back["type"], "error", "{back}");

    let left = app
        .request(
            Method::POST,
            &format!("/api/conversations/{id}/leave"),
            Some(&carol.access),
            None,
        )
        .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{:?}", left.body);
    assert_eq!(c.next_of("room_ended").await["by"], "carol");
    assert_eq!(a.next_of("member_left").await["username"], "carol");
    let view = app
        .get(&format!("/api/conversations/{id}"), &alice.access)
        .await;
    assert_eq!(view.body["active_call"]["participants"], json!(["alice"]));
}
