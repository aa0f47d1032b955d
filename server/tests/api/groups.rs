//! Group conversations: made, changed and read by their members only, with every change an
//! event of the conversation that reaches each device live and on resume.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, Session, TestApp, spawn_app_with};
use crate::on_every_backend;
use crate::ws_client::WsClient;

on_every_backend!(
    a_group_reaches_every_member_and_nobody_else,
    a_removed_member_stops_receiving_at_once_and_cannot_read_or_send,
    roles_decide_who_changes_the_group,
    a_member_added_while_offline_learns_it_on_resume,
);

async fn call(app: &TestApp, method: Method, path: &str, who: &Session, body: Value) -> Reply {
    let body = (method != Method::GET).then_some(body);
    app.request(method, path, Some(&who.access), body).await
}

async fn create(app: &TestApp, owner: &Session, title: &str, members: &[&str]) -> i64 {
    let created = call(
        app,
        Method::POST,
        "/api/conversations",
        owner,
        json!({"title": title, "members": members}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["kind"], "group");
    assert_eq!(created.body["title"], title);
    assert_eq!(created.body["role"], "owner");
    created.body["id"].as_i64().expect("id")
}

async fn send(ws: &mut WsClient, group: i64, body: &str, key: &str) -> Value {
    ws.send(json!({"type": "send", "id": key, "conversation_id": group, "body": body, "client_msg_id": key}))
        .await;
    loop {
        let frame = ws.recv().await;
        if frame["id"] == key {
            return frame;
        }
    }
}

/// The next `message` frame (an event of a conversation), skipping presence and the like.
async fn event(ws: &mut WsClient) -> Value {
    ws.next_of("message").await["message"].clone()
}

fn names(list: &Reply) -> Vec<(String, String)> {
    list.body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["user"]["username"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                m["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn a_group_reaches_every_member_and_nobody_else(app: TestApp) {
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cid = app.register("cid").await;
    let eve = app.register("eve").await;
    let mut a = app.connect(&ann, None).await;
    let mut b = app.connect(&bob, None).await;
    let mut c = app.connect(&cid, None).await;
    let mut e = app.connect(&eve, None).await;

    let group = create(&app, &ann, "Weekend plans 🏕️", &["bob", "cid"]).await;
    // Every member's devices learn of it, the creator's too.
    for ws in [&mut a, &mut b, &mut c] {
        let created = event(ws).await;
        assert_eq!(created["kind"], "group_created");
        assert_eq!(created["conversation_id"], group);
        assert_eq!(created["from"], "ann");
        assert_eq!(created["title"], "Weekend plans 🏕️");
        assert_eq!(created["subjects"], json!(["bob", "cid"]));
        assert!(created.get("to").is_none(), "a group message has no `to`");
    }

    let ack = send(&mut b, group, "I'll bring the tent", "b1").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let id = ack["message"]["id"].as_i64().expect("id");
    for ws in [&mut a, &mut c] {
        let got = event(ws).await;
        assert_eq!(got["id"], id);
        assert_eq!(got["from"], "bob");
        assert_eq!(got["body"], "I'll bring the tent");
    }
    // The sender's own other devices get it too; eve, outside, gets nothing.
    e.assert_quiet().await;
    let refused = send(&mut e, group, "let me in", "e1").await;
    assert_eq!(refused["code"], "conversation_not_found", "{refused}");
    a.assert_quiet().await;

    // The list shows the group with its title and members, unread for ann.
    let list = app.get("/api/conversations", &ann.access).await;
    let first = &list.body["conversations"][0];
    assert_eq!(first["id"], group);
    assert_eq!(first["kind"], "group");
    assert_eq!(first["members_count"], 3);
    assert_eq!(first["last_message"]["id"], id);
    assert_eq!(first["unread_count"], 1, "the created event is not unread");
    assert!(first.get("peer").is_none());
    let members = call(
        &app,
        Method::GET,
        &format!("/api/conversations/{group}/members"),
        &cid,
        json!(null),
    )
    .await;
    assert_eq!(
        names(&members),
        [
            ("ann".to_string(), "owner".to_string()),
            ("bob".to_string(), "member".to_string()),
            ("cid".to_string(), "member".to_string()),
        ]
    );
    // Reads move each member's own position; typing reaches the others.
    let read = call(
        &app,
        Method::POST,
        &format!("/api/conversations/{group}/read"),
        &ann,
        json!({"up_to": id}),
    )
    .await;
    assert_eq!(read.body["unread"], 0, "{:?}", read.body);
    assert_eq!(read.body["conversation_id"], group);
    a.send(json!({"type": "typing", "conversation_id": group}))
        .await;
    for ws in [&mut b, &mut c] {
        let typing = ws.next_of("typing").await;
        assert_eq!(typing["conversation_id"], group);
        assert_eq!(typing["from"], "ann");
    }
    // In a group, notices are coalesced: Bob typing a moment later is not relayed yet; after
    // the interval it is.
    b.send(json!({"type": "typing", "conversation_id": group}))
        .await;
    let quiet_until = std::time::Instant::now() + std::time::Duration::from_millis(300);
    while let Some(frame) = c
        .recv_within(quiet_until.saturating_duration_since(std::time::Instant::now()))
        .await
    {
        assert_ne!(frame["type"], "typing", "coalesced: {frame}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    b.send(json!({"type": "typing", "conversation_id": group}))
        .await;
    assert_eq!(c.next_of("typing").await["from"], "bob");
    // Asking for a conversation both ways at once is a clear error.
    a.send(json!({"type": "send", "id": "both", "conversation_id": group, "to": "bob", "body": "x", "client_msg_id": "x"}))
        .await;
    assert_eq!(a.recv_type("error").await["code"], "invalid_frame");
}

async fn a_removed_member_stops_receiving_at_once_and_cannot_read_or_send(app: TestApp) {
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    app.register("cid").await;
    let group = create(&app, &ann, "Project", &["bob", "cid"]).await;
    let mut a = app.connect(&ann, None).await;
    let mut b = app.connect(&bob, None).await;
    let before = send(&mut a, group, "before", "a1").await;
    assert_eq!(event(&mut b).await["id"], before["message"]["id"]);

    let removed = call(
        &app,
        Method::DELETE,
        &format!("/api/conversations/{group}/members/bob"),
        &ann,
        json!(null),
    )
    .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    // Bob learns of his removal, and then nothing more of the group.
    let removal = event(&mut b).await;
    assert_eq!(removal["kind"], "member_removed");
    assert_eq!(removal["subjects"], json!(["bob"]));
    let after = send(&mut a, group, "after bob left", "a2").await;
    assert_eq!(after["type"], "ack");
    b.assert_quiet().await;
    let refused = send(&mut b, group, "still here?", "b1").await;
    assert_eq!(refused["code"], "conversation_not_found", "{refused}");
    for path in [
        format!("/api/conversations/{group}/messages"),
        format!("/api/conversations/{group}"),
        format!("/api/conversations/{group}/members"),
    ] {
        let reply = app.get(&path, &bob.access).await;
        assert_eq!(reply.error_code(), "conversation_not_found", "{path}");
    }
    // On resume from before it all, bob gets what he saw, up to his removal, and not after.
    let cursor = before["message"]["id"].as_i64().expect("id") - 1;
    let mut again = app.connect(&bob, Some(cursor)).await;
    let mut replayed = Vec::new();
    loop {
        let frame = again.recv().await;
        match frame["type"].as_str() {
            Some("message") => replayed.push(frame["message"]["kind"].clone()),
            Some("replay_end") => break,
            _ => {}
        }
    }
    assert_eq!(replayed, [json!("text"), json!("member_removed")]);
    // The group drops out of his list.
    let list = app.get("/api/conversations", &bob.access).await;
    assert_eq!(list.body["conversations"], json!([]));
}

async fn roles_decide_who_changes_the_group(app: TestApp) {
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cid = app.register("cid").await;
    app.register("dan").await;
    let group = create(&app, &ann, "Book club", &["bob", "cid"]).await;
    let path = |rest: &str| format!("/api/conversations/{group}{rest}");

    // A member may not add, rename, or set roles.
    for (method, rest, body) in [
        (Method::POST, "/members", json!({"users": ["dan"]})),
        (Method::PATCH, "", json!({"title": "Mine now"})),
        (Method::PATCH, "/members/cid", json!({"role": "admin"})),
        (Method::DELETE, "/members/cid", json!(null)),
    ] {
        let reply = call(&app, method.clone(), &path(rest), &bob, body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {rest}");
        assert_eq!(reply.error_code(), "forbidden");
    }
    // The owner makes bob an admin; an admin adds and renames, but cannot remove the owner.
    let promoted = call(
        &app,
        Method::PATCH,
        &path("/members/bob"),
        &ann,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(promoted.status, StatusCode::OK, "{:?}", promoted.body);
    let added = call(
        &app,
        Method::POST,
        &path("/members"),
        &bob,
        json!({"users": ["dan", "cid"]}),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{:?}", added.body);
    assert_eq!(added.body["members"].as_array().map(Vec::len), Some(4));
    let renamed = call(
        &app,
        Method::PATCH,
        &path(""),
        &bob,
        json!({"title": "  Book club ✨ "}),
    )
    .await;
    assert_eq!(renamed.body["title"], "Book club ✨", "{:?}", renamed.body);
    let blank = call(
        &app,
        Method::PATCH,
        &path(""),
        &bob,
        json!({"title": "\u{200b}"}),
    )
    .await;
    assert_eq!(blank.error_code(), "validation_failed");
    let coup = call(
        &app,
        Method::DELETE,
        &path("/members/ann"),
        &bob,
        json!(null),
    )
    .await;
    assert_eq!(coup.error_code(), "forbidden");
    let stranger = call(
        &app,
        Method::DELETE,
        &path("/members/eve"),
        &ann,
        json!(null),
    )
    .await;
    assert_eq!(stranger.error_code(), "user_not_found");

    // The owner leaves: the oldest admin (bob) owns it now.
    let left = call(&app, Method::POST, &path("/leave"), &ann, json!(null)).await;
    assert_eq!(left.status, StatusCode::NO_CONTENT, "{:?}", left.body);
    let members = call(&app, Method::GET, &path("/members"), &cid, json!(null)).await;
    assert_eq!(
        names(&members),
        [
            ("bob".to_string(), "owner".to_string()),
            ("cid".to_string(), "member".to_string()),
            ("dan".to_string(), "member".to_string()),
        ]
    );
    // ... who hands it to cid and becomes an admin.
    let handed = call(
        &app,
        Method::PATCH,
        &path("/members/cid"),
        &bob,
        json!({"role": "owner"}),
    )
    .await;
    assert_eq!(
        names(&handed)[..2],
        [
            ("cid".to_string(), "owner".to_string()),
            ("bob".to_string(), "admin".to_string()),
        ]
    );
    // A direct conversation has no members to change.
    let direct = app.direct_id(&cid, "dan").await;
    let refused = call(
        &app,
        Method::POST,
        &format!("/api/conversations/{direct}/members"),
        &cid,
        json!({"users": ["bob"]}),
    )
    .await;
    assert_eq!(refused.error_code(), "not_a_group");
    let _ = ann;
}

async fn a_member_added_while_offline_learns_it_on_resume(app: TestApp) {
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let cid = app.register("cid").await;
    // Cid has been online before: her cursor is her last message.
    let mut c = app.connect(&cid, None).await;
    let seen = c.send_message("ann", "hi ann", "c1").await;
    let cursor = seen["message"]["id"].as_i64().expect("id");
    c.close().await;

    let group = create(&app, &ann, "Surprise party", &["bob"]).await;
    let mut a = app.connect(&ann, None).await;
    let secret = send(&mut a, group, "before cid joins: a secret", "a1").await;
    assert_eq!(secret["type"], "ack");
    let added = call(
        &app,
        Method::POST,
        &format!("/api/conversations/{group}/members"),
        &ann,
        json!({"users": ["cid"]}),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK);
    let welcome = send(&mut a, group, "welcome cid!", "a2").await;
    assert_eq!(welcome["type"], "ack");

    // Cid comes back: the addition and what followed, in order, and nothing from before.
    let mut c = app.connect(&cid, Some(cursor)).await;
    let mut replayed = Vec::new();
    loop {
        let frame = c.recv().await;
        match frame["type"].as_str() {
            Some("message") => replayed.push((
                frame["message"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                frame["message"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )),
            Some("replay_end") => break,
            _ => {}
        }
    }
    assert_eq!(
        replayed,
        [
            ("members_added".to_string(), String::new()),
            ("text".to_string(), "welcome cid!".to_string()),
        ]
    );
    let history = app
        .get(&format!("/api/conversations/{group}/messages"), &cid.access)
        .await;
    let kinds: Vec<&str> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["members_added", "text"],
        "nothing from before she joined"
    );
    let _ = bob;
}

#[actix_web::test]
async fn a_group_holds_at_most_the_configured_members() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.group_max_members = 3)
        .await
        .expect("sqlite");
    let ann = app.register("ann").await;
    for name in ["bob", "cid", "dan"] {
        app.register(name).await;
    }
    let full = call(
        &app,
        Method::POST,
        "/api/conversations",
        &ann,
        json!({"title": "Too many", "members": ["bob", "cid", "dan"]}),
    )
    .await;
    assert_eq!(full.status, StatusCode::CONFLICT);
    assert_eq!(full.error_code(), "group_full");
    let group = create(&app, &ann, "Three", &["bob", "cid"]).await;
    let more = call(
        &app,
        Method::POST,
        &format!("/api/conversations/{group}/members"),
        &ann,
        json!({"users": ["dan"]}),
    )
    .await;
    assert_eq!(more.error_code(), "group_full");
}
