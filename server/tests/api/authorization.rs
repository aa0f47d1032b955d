//! The authorization matrix: every endpoint of the router (`pychat::routes::endpoints`) and every
//! frame type of the protocol (`ClientFrame::TYPES`), tried by every kind of caller, with the
//! exact answer each must get. A route or frame type without a row fails the test, so nothing
//! new goes unchecked.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Session, TestApp, session_from};
use crate::on_every_backend;
use crate::ws_client::WsClient;

on_every_backend!(every_endpoint_answers_each_caller_as_the_matrix_says);
on_every_backend!(@with |s: &mut pychat::config::Settings| {
    s.calls.rooms_per_minute = 1000;
    s.calls.calls_per_minute = 1000;
}; every_frame_type_answers_each_caller_as_the_matrix_says);

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// No credentials at all.
    Anonymous,
    /// A token that is not one of ours.
    BadToken,
    /// The token of a session that signed out.
    Revoked,
    /// The token of a user an operator disabled since.
    Disabled,
    /// A signed-in user with no part in the resource (not in the room, not the peer).
    Other,
    /// A signed-in user the resource belongs to (the room's member, the conversation's side).
    Member,
}

const CALLERS: [Caller; 6] = [
    Caller::Anonymous,
    Caller::BadToken,
    Caller::Revoked,
    Caller::Disabled,
    Caller::Other,
    Caller::Member,
];

/// The answer a caller must get: a status, with the error code when it is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expect(u16, Option<&'static str>);

const fn ok(status: u16) -> Expect {
    Expect(status, None)
}

const fn err(status: u16, code: &'static str) -> Expect {
    Expect(status, Some(code))
}

/// An endpoint that needs a live session: anonymous, forged, revoked and disabled callers are
/// refused alike; `other` and `member` get what they get.
const fn signed_in(other: Expect, member: Expect) -> [Expect; 6] {
    [
        err(401, "missing_token"),
        err(401, "invalid_token"),
        err(401, "invalid_token"),
        err(401, "invalid_token"),
        other,
        member,
    ]
}

/// An endpoint that answers everyone alike.
const fn public(status: u16) -> [Expect; 6] {
    [ok(status); 6]
}

/// The matrix: one row per endpoint, expectations in [`CALLERS`] order.
fn endpoint_rows() -> Vec<(Method, &'static str, [Expect; 6])> {
    vec![
        (Method::GET, "/healthz", public(200)),
        (Method::GET, "/readyz", public(200)),
        (Method::GET, "/ws", signed_in(ok(101), ok(101))),
        (Method::GET, "/api/openapi.json", public(200)),
        // A bearer token on sign-up is ignored: anyone may register.
        (Method::POST, "/api/auth/register", public(201)),
        // Sign-in with the caller's own name and password: revoking a session does not stop the
        // next sign-in; disabling the account does (told only to who knows the password).
        (
            Method::POST,
            "/api/auth/login",
            [
                ok(200),
                err(401, "invalid_credentials"),
                ok(200),
                err(403, "account_disabled"),
                ok(200),
                ok(200),
            ],
        ),
        // With the caller's refresh token: none, a made-up one, a revoked session's, a disabled
        // user's, then live ones.
        (
            Method::POST,
            "/api/auth/refresh",
            [
                err(401, "missing_token"),
                err(401, "invalid_token"),
                err(401, "invalid_token"),
                err(401, "invalid_token"),
                ok(200),
                ok(200),
            ],
        ),
        (
            Method::POST,
            "/api/auth/logout",
            signed_in(ok(204), ok(204)),
        ),
        (Method::GET, "/api/me", signed_in(ok(200), ok(200))),
        (Method::PATCH, "/api/me", signed_in(ok(200), ok(200))),
        (Method::PUT, "/api/me/password", signed_in(ok(204), ok(204))),
        (Method::GET, "/api/users", signed_in(ok(200), ok(200))),
        (
            Method::GET,
            "/api/users/{username}",
            signed_in(ok(200), ok(200)),
        ),
        (Method::POST, "/api/ws/ticket", signed_in(ok(200), ok(200))),
        (Method::GET, "/api/ice-servers", signed_in(ok(200), ok(200))),
        // A non-member learns nothing, not even that the room exists.
        (
            Method::GET,
            "/api/rooms/{name}",
            signed_in(err(404, "room_not_found"), ok(200)),
        ),
        (
            Method::GET,
            "/api/conversations",
            signed_in(ok(200), ok(200)),
        ),
        // Opening the direct conversation with bob: each caller gets their own.
        (
            Method::POST,
            "/api/conversations",
            signed_in(ok(200), ok(200)),
        ),
        // `{id}`: ann's group with bob (ann owns it). A non-member learns nothing, not even that
        // it exists.
        (
            Method::GET,
            "/api/conversations/{id}",
            signed_in(err(404, "conversation_not_found"), ok(200)),
        ),
        (
            Method::PATCH,
            "/api/conversations/{id}",
            signed_in(err(404, "conversation_not_found"), ok(200)),
        ),
        (
            Method::GET,
            "/api/conversations/{id}/members",
            signed_in(err(404, "conversation_not_found"), ok(200)),
        ),
        (
            Method::POST,
            "/api/conversations/{id}/members",
            signed_in(err(404, "conversation_not_found"), ok(200)),
        ),
        // A member added for the row is removed.
        (
            Method::DELETE,
            "/api/conversations/{id}/members/{username}",
            signed_in(err(404, "conversation_not_found"), ok(204)),
        ),
        (
            Method::PATCH,
            "/api/conversations/{id}/members/{username}",
            signed_in(err(404, "conversation_not_found"), ok(200)),
        ),
        // Leaving a group made for the row.
        (
            Method::POST,
            "/api/conversations/{id}/leave",
            signed_in(err(404, "conversation_not_found"), ok(204)),
        ),
        (
            Method::GET,
            "/api/conversations/{id}/messages",
            signed_in(err(404, "conversation_not_found"), ok(200)),
        ),
        (
            Method::POST,
            "/api/conversations/{id}/read",
            signed_in(err(404, "conversation_not_found"), ok(200)),
        ),
    ]
}

/// The users and credentials every row runs against.
struct World {
    app: TestApp,
    /// ann (the member) is in room `matrix` with bob, and has a conversation with him; the
    /// room lives while their sockets are open.
    _ann_socket: WsClient,
    _bob_socket: WsClient,
    revoked: Session,
    disabled: Session,
    ann: Session,
    /// ann's group with bob.
    group_id: i64,
    bob_message_id: i64,
    next_name: AtomicU32,
}

impl World {
    async fn new(app: TestApp) -> Self {
        let ann = app.register("ann").await;
        let bob = app.register("bob").await;
        app.register("mallory").await;
        let revoked = app.register("rex").await;
        let logout = app
            .request(
                Method::POST,
                "/api/auth/logout",
                Some(&revoked.access),
                None,
            )
            .await;
        assert_eq!(logout.status, StatusCode::NO_CONTENT);
        let disabled = app.register("dora").await;
        let db = app.db.connect();
        db.with_connection(|conn| {
            Ok(pychat::db::users::set_disabled(
                conn,
                "dora",
                true,
                pychat::db::now(),
            )?)
        })
        .expect("disable dora");

        let mut ann_socket = app.connect(&ann, None).await;
        let mut bob_socket = app.connect(&bob, None).await;
        let sent = ann_socket.send_message("bob", "hi bob", "matrix-1").await;
        let bob_message_id = sent["message"]["id"].as_i64().expect("id");
        let created = ann_socket
            .request(json!({"type": "room_create", "name": "matrix"}), "c")
            .await;
        assert_eq!(created["type"], "room_created", "{created}");
        let joined = bob_socket
            .request(json!({"type": "room_join", "name": "matrix"}), "j")
            .await;
        assert_eq!(joined["type"], "room_joined", "{joined}");
        let group_id = create_group(&app, &ann, &["bob"]).await;
        Self {
            ann,
            group_id,
            app,
            _ann_socket: ann_socket,
            _bob_socket: bob_socket,
            revoked,
            disabled,
            bob_message_id,
            next_name: AtomicU32::new(0),
        }
    }

    /// A user who just joined ann's group.
    async fn added_member(&self) -> String {
        let name = self.unique("guest");
        self.app.register(&name).await;
        let added = self
            .app
            .request(
                Method::POST,
                &format!("/api/conversations/{}/members", self.group_id),
                Some(&self.ann.access),
                Some(json!({ "users": [name] })),
            )
            .await;
        assert_eq!(added.status, StatusCode::OK, "{:?}", added.body);
        name
    }

    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.next_name.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh sign-in of `username`, so a row that ends or changes its session harms no other.
    async fn fresh(&self, username: &str) -> Session {
        let reply = self.app.login(username, PASSWORD).await;
        assert_eq!(reply.status, StatusCode::OK, "login {username}");
        session_from(&reply)
    }

    /// The access token `caller` presents on `path` (`None`: no Authorization header).
    async fn token(&self, caller: Caller, path: &str) -> Option<String> {
        match caller {
            Caller::Anonymous => None,
            Caller::BadToken => Some("not.a.token".into()),
            Caller::Revoked => Some(self.revoked.access.clone()),
            Caller::Disabled => Some(self.disabled.access.clone()),
            // A password change signs out the user's other sessions (ann's sockets hold the
            // room): it runs on a user of its own.
            Caller::Other | Caller::Member if path == "/api/me/password" => {
                let name = self.unique("pw");
                Some(self.app.register(&name).await.access)
            }
            Caller::Other => Some(self.fresh("mallory").await.access),
            Caller::Member => Some(self.fresh("ann").await.access),
        }
    }

    /// The concrete URL and body of `path` for `caller`.
    async fn request(&self, caller: Caller, path: &str) -> (String, Option<Value>) {
        let group = match path {
            "/api/conversations/{id}/leave" => create_group(&self.app, &self.ann, &["bob"]).await,
            _ => self.group_id,
        };
        let member = match (path, caller) {
            ("/api/conversations/{id}/members/{username}", Caller::Member | Caller::Other) => {
                self.added_member().await
            }
            _ => "bob".to_string(),
        };
        let url = path
            .replace("{username}", &member)
            .replace("{name}", "matrix")
            .replace("{id}", &group.to_string());
        let body = match path {
            "/api/auth/register" => {
                Some(json!({"username": self.unique("new"), "password": PASSWORD}))
            }
            "/api/auth/login" => Some(match caller {
                Caller::Anonymous | Caller::Member => {
                    json!({"username": "ann", "password": PASSWORD})
                }
                Caller::BadToken => json!({"username": "ann", "password": "not the password"}),
                Caller::Revoked => json!({"username": "rex", "password": PASSWORD}),
                Caller::Disabled => json!({"username": "dora", "password": PASSWORD}),
                Caller::Other => json!({"username": "mallory", "password": PASSWORD}),
            }),
            "/api/auth/refresh" => match caller {
                Caller::Anonymous => None,
                Caller::BadToken => Some(json!({"refresh_token": "made-up"})),
                Caller::Revoked => Some(json!({"refresh_token": self.revoked.refresh})),
                Caller::Disabled => Some(json!({"refresh_token": self.disabled.refresh})),
                Caller::Other => {
                    Some(json!({"refresh_token": self.fresh("mallory").await.refresh}))
                }
                Caller::Member => Some(json!({"refresh_token": self.fresh("ann").await.refresh})),
            },
            "/api/me" => Some(json!({"display_name": "Renamed"})),
            "/api/me/password" => {
                Some(json!({"current_password": PASSWORD, "new_password": "another password"}))
            }
            "/api/conversations" => Some(json!({"user": "bob"})),
            "/api/conversations/{id}" => Some(json!({"title": self.unique("Renamed ")})),
            "/api/conversations/{id}/members" => Some(json!({"users": ["rex"]})),
            "/api/conversations/{id}/members/{username}" => Some(json!({"role": "admin"})),
            "/api/conversations/{id}/read" => Some(json!({"up_to": self.bob_message_id})),
            _ => None,
        };
        (url, body)
    }
}

/// A group owned by `owner` with `members`; its id.
async fn create_group(app: &TestApp, owner: &Session, members: &[&str]) -> i64 {
    let created = app
        .request(
            Method::POST,
            "/api/conversations",
            Some(&owner.access),
            Some(json!({"title": "Matrix group", "members": members})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    created.body["id"].as_i64().expect("group id")
}

async fn every_endpoint_answers_each_caller_as_the_matrix_says(app: TestApp) {
    let rows = endpoint_rows();
    let routed: BTreeSet<(String, &str)> = pychat::routes::endpoints()
        .iter()
        .map(|e| (e.method.to_string(), e.path))
        .collect();
    let covered: BTreeSet<(String, &str)> = rows
        .iter()
        .map(|(method, path, _)| (method.to_string(), *path))
        .collect();
    assert_eq!(
        routed, covered,
        "every endpoint needs a row, and every row an endpoint"
    );

    let world = World::new(app).await;
    let mut failures = Vec::new();
    for (method, path, expected) in &rows {
        for (caller, expect) in CALLERS.iter().zip(expected) {
            let token = world.token(*caller, path).await;
            let (url, body) = world.request(*caller, path).await;
            let body = if *method == Method::GET { None } else { body };
            let got = if *path == "/ws" {
                world.app.upgrade_answer("", token.as_deref()).await
            } else {
                let reply = world
                    .app
                    .request(method.clone(), &url, token.as_deref(), body)
                    .await;
                let code = reply.body["error"]["code"].as_str().map(str::to_string);
                (reply.status.as_u16(), code)
            };
            let matches = got.0 == expect.0 && got.1.as_deref() == expect.1;
            if !matches {
                failures.push(format!(
                    "{method} {path} as {caller:?}: expected {expect:?}, got {got:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What a frame got: the reply's `type` (its `code` for an error), or nothing at all.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Reply(String),
    Error(String),
    Nothing,
}

#[allow(non_snake_case)]
fn Reply(kind: &str) -> Answer {
    Answer::Reply(kind.into())
}

#[allow(non_snake_case)]
fn Error(code: &str) -> Answer {
    Answer::Error(code.into())
}

/// One row per frame type: what the party it concerns gets, and what an outsider gets.
fn frame_rows() -> Vec<(&'static str, Answer, Answer)> {
    use Answer::Nothing;
    vec![
        // Anyone may write to anyone, and reads only move the reader's own position.
        ("send", Reply("ack"), Reply("ack")),
        ("read", Reply("ok"), Reply("ok")),
        ("typing", Nothing, Error("conversation_not_found")),
        ("ping", Reply("pong"), Reply("pong")),
        ("room_create", Reply("room_created"), Reply("room_created")),
        // The room's name is what lets one in, as in the original PyChat.
        ("room_join", Reply("room_joined"), Reply("room_joined")),
        // A seat is taken back only by its own user.
        ("room_rejoin", Reply("room_joined"), Error("peer_not_found")),
        ("room_leave", Reply("ok"), Error("not_in_room")),
        ("room_end", Reply("ok"), Error("not_in_room")),
        ("session_start", Reply("ok"), Error("not_in_room")),
        ("signal", Nothing, Error("not_in_room")),
        ("peer_state", Reply("ok"), Error("not_in_room")),
        ("call", Reply("call_ringing"), Reply("call_ringing")),
        ("call_accept", Nothing, Error("call_not_found")),
        ("call_decline", Reply("ok"), Error("call_not_found")),
        ("call_cancel", Reply("ok"), Error("call_not_found")),
    ]
}

/// A fresh room for one frame row: ann created it, bob joined, the session started when asked.
struct Stage {
    ann: WsClient,
    bob: WsClient,
    bob_session: Session,
    mallory: WsClient,
    room: String,
    bob_peer: String,
    bob_message_id: i64,
}

async fn stage(app: &TestApp, world_ann: &Session, n: usize, start_session: bool) -> Stage {
    let bob_session = app.fresh_login("bob").await;
    let mallory = app.fresh_login("mallory").await;
    let mut ann = app.connect(world_ann, None).await;
    let mut bob = app.connect(&bob_session, None).await;
    let mallory = app.connect(&mallory, None).await;
    // `request`, which skips other traffic: an earlier row's unanswered call may arrive as a
    // missed-call message meanwhile.
    let sent = ann
        .request(
            json!({"type": "send", "to": "bob", "body": "stage", "client_msg_id": format!("stage-{n}")}),
            "stage",
        )
        .await;
    assert_eq!(sent["type"], "ack", "{sent}");
    let room = format!("stage {n}");
    let created = ann
        .request(json!({"type": "room_create", "name": room}), "c")
        .await;
    assert_eq!(created["type"], "room_created", "{created}");
    let joined = bob
        .request(json!({"type": "room_join", "name": room}), "j")
        .await;
    let bob_peer = joined["peer_id"].as_str().expect("peer_id").to_string();
    if start_session {
        let started = ann.request(json!({"type": "session_start"}), "s").await;
        assert_eq!(started["type"], "ok", "{started}");
    }
    Stage {
        ann,
        bob,
        bob_session,
        mallory,
        room,
        bob_peer,
        bob_message_id: sent["message"]["id"].as_i64().expect("id"),
    }
}

impl TestApp {
    async fn fresh_login(&self, username: &str) -> Session {
        session_from(&self.login(username, PASSWORD).await)
    }
}

/// Sends `frame` with id `id` and reports what came back for it.
async fn answer(ws: &mut WsClient, mut frame: Value, id: &str) -> Answer {
    frame["id"] = json!(id);
    ws.send(frame).await;
    loop {
        let Some(got) = ws.recv_within(Duration::from_millis(700)).await else {
            return Answer::Nothing;
        };
        if got["id"] != id {
            continue;
        }
        let kind = got["type"].as_str().unwrap_or_default();
        return if kind == "error" {
            Answer::Error(got["code"].as_str().unwrap_or_default().into())
        } else {
            Answer::Reply(kind.into())
        };
    }
}

/// The frame of `kind` as the concerned party sends it on `stage`, and as the outsider does.
fn frames(kind: &str, stage: &Stage, call_id: Option<&str>) -> (Value, Value) {
    let to_bob_peer =
        json!({"type": "signal", "to": stage.bob_peer, "kind": "offer", "payload": {"sdp": "x"}});
    match kind {
        "send" => (
            json!({"type": "send", "to": "bob", "body": "hi", "client_msg_id": "m-member"}),
            json!({"type": "send", "to": "bob", "body": "hi", "client_msg_id": "m-other"}),
        ),
        "read" => (
            json!({"type": "read", "peer": "bob", "up_to": stage.bob_message_id}),
            json!({"type": "read", "peer": "bob", "up_to": stage.bob_message_id}),
        ),
        "typing" => (
            json!({"type": "typing", "to": "bob"}),
            json!({"type": "typing", "to": "ann"}),
        ),
        "ping" => (json!({"type": "ping"}), json!({"type": "ping"})),
        "room_create" => (
            json!({"type": "room_create", "name": format!("{} b", stage.room)}),
            json!({"type": "room_create", "name": format!("{} c", stage.room)}),
        ),
        "room_join" => (
            json!({"type": "room_join", "name": stage.room}),
            json!({"type": "room_join", "name": stage.room}),
        ),
        "room_rejoin" => (
            json!({"type": "room_rejoin", "name": stage.room, "peer_id": stage.bob_peer}),
            json!({"type": "room_rejoin", "name": stage.room, "peer_id": stage.bob_peer}),
        ),
        "room_leave" => (json!({"type": "room_leave"}), json!({"type": "room_leave"})),
        "room_end" => (json!({"type": "room_end"}), json!({"type": "room_end"})),
        "session_start" => (
            json!({"type": "session_start"}),
            json!({"type": "session_start"}),
        ),
        "signal" => (to_bob_peer.clone(), to_bob_peer),
        "peer_state" => {
            let state =
                json!({"type": "peer_state", "muted": true, "camera": false, "screen": false});
            (state.clone(), state)
        }
        "call" => (
            json!({"type": "call", "to": "carol", "media": "audio"}),
            json!({"type": "call", "to": "dave", "media": "audio"}),
        ),
        "call_accept" | "call_decline" | "call_cancel" => {
            let frame = json!({"type": kind, "call_id": call_id.unwrap_or("none")});
            (frame.clone(), frame)
        }
        other => panic!("no frame for {other}: add it to the matrix"),
    }
}

async fn every_frame_type_answers_each_caller_as_the_matrix_says(app: TestApp) {
    let rows = frame_rows();
    let types: BTreeSet<&str> = pychat::ws::protocol::ClientFrame::TYPES
        .iter()
        .copied()
        .collect();
    let covered: BTreeSet<&str> = rows.iter().map(|(kind, ..)| *kind).collect();
    assert_eq!(types, covered, "every frame type needs a row");

    let ann = app.register("ann").await;
    app.register("bob").await;
    app.register("mallory").await;
    app.register("carol").await;
    app.register("dave").await;
    let mut failures = Vec::new();
    for (n, (kind, for_member, for_other)) in rows.into_iter().enumerate() {
        let mut stage = stage(&app, &ann, n, kind == "signal").await;
        // Call rows: ann rings a callee, who answers (accept/decline), or ann cancels.
        let mut callee_ws = None;
        let mut call_id = None;
        if kind.starts_with("call") {
            let left = stage.ann.request(json!({"type": "room_leave"}), "l").await;
            assert_eq!(left["type"], "ok", "{left}");
        }
        if matches!(kind, "call_accept" | "call_decline" | "call_cancel") {
            // A callee of the row's own: an earlier row's call may still be winding down.
            let callee = format!("callee{n}");
            let session = app.register(&callee).await;
            let mut ws = app.connect(&session, None).await;
            let ringing = stage
                .ann
                .request(
                    json!({"type": "call", "to": callee, "media": "audio"}),
                    "call",
                )
                .await;
            assert_eq!(ringing["type"], "call_ringing", "{ringing}");
            call_id = ringing["call_id"].as_str().map(str::to_string);
            ws.recv_type("incoming_call").await;
            callee_ws = Some(ws);
        }
        let (member_frame, other_frame) = frames(kind, &stage, call_id.as_deref());
        // The outsider first: its attempt must change nothing for the member's.
        let other_got = answer(&mut stage.mallory, other_frame, "o").await;
        // Creating or joining a room takes a connection in none: ann's other device. Taking a
        // seat back follows a dropped connection: bob's, replaced by a new one.
        let mut other_device = None;
        if matches!(kind, "room_create" | "room_join") {
            other_device = Some(app.connect(&ann, None).await);
        }
        if kind == "room_rejoin" {
            let dropped =
                std::mem::replace(&mut stage.bob, app.connect(&stage.bob_session, None).await);
            drop(dropped);
            stage.ann.next_of("member_disconnected").await;
        }
        let member_ws = match (kind, callee_ws.as_mut(), other_device.as_mut()) {
            (_, _, Some(device)) => device,
            ("call_accept" | "call_decline", Some(callee), _) => callee,
            ("room_rejoin" | "room_leave" | "peer_state", _, _) => &mut stage.bob,
            _ => &mut stage.ann,
        };
        let member_got = answer(member_ws, member_frame, "m").await;
        if member_got != for_member {
            failures.push(format!(
                "{kind} by its party: expected {for_member:?}, got {member_got:?}"
            ));
        }
        if other_got != for_other {
            failures.push(format!(
                "{kind} by an outsider: expected {for_other:?}, got {other_got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Without a live session no frame can be sent at all: the upgrade is refused (the endpoint
    // matrix's `/ws` row) and a socket whose session is revoked is closed before any other
    // frame is answered.
    let doomed = app.fresh_login("mallory").await;
    let mut sockets = Vec::new();
    for _ in pychat::ws::protocol::ClientFrame::TYPES {
        sockets.push(app.connect(&doomed, None).await);
    }
    let logout = app
        .request(Method::POST, "/api/auth/logout", Some(&doomed.access), None)
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    for mut socket in sockets {
        assert_eq!(socket.closed().await, Some(4001));
    }
}
