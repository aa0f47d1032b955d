//! What an attacker's inputs get, on every backend: NUL characters anywhere, names that show
//! nothing or reorder the text around them, bodies of the wrong shape, typing notices to
//! strangers, frames from a user deleted meanwhile. Each is a clear 4xx or error frame, never a
//! 5xx or `internal_error`, and the connection lives on.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, reply};
use crate::on_every_backend;

on_every_backend!(
    nul_characters_are_refused_everywhere,
    names_must_show_something_and_not_reorder_text,
    errors_name_no_rust_types,
    typing_reaches_only_people_you_talk_with,
    a_deleted_users_socket_gets_a_clear_error,
);

async fn raw_post(app: &TestApp, path: &str, token: Option<&str>, body: &str) -> Reply {
    let mut request = app
        .client
        .post(app.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    reply(request.send().await.expect("request")).await
}

fn assert_validation(reply: &Reply, what: &str) {
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{what}: {:?}",
        reply.body
    );
    assert_eq!(reply.error_code(), "validation_failed", "{what}");
}

async fn nul_characters_are_refused_everywhere(app: TestApp) {
    let ann = app.register("ann").await;
    app.register("bob").await;
    let mut ws = app.connect(&ann, None).await;
    let sent = ws.send_message("bob", "hello", "m0").await;
    let conversation = sent["message"]["conversation_id"].clone();

    for path in [
        "/api/users/a%00b".to_string(),
        "/api/users?q=a%00".to_string(),
        "/api/users?q=an&after=a%00".to_string(),
        "/api/conversations/1%000/messages".to_string(),
        format!("/api/conversations/{conversation}/messages?before=1%00"),
        "/api/rooms/r%00".to_string(),
    ] {
        let got = app.get(&path, &ann.access).await;
        assert_validation(&got, &path);
    }
    let read_path = format!("/api/conversations/{conversation}/read");
    let bodies = [
        (
            "/api/auth/register",
            None,
            r#"{"username":"eve","password":"pass\u0000word1"}"#,
        ),
        (
            "/api/auth/login",
            None,
            r#"{"username":"ann\u0000","password":"whatever1"}"#,
        ),
        ("/api/auth/refresh", None, r#"{"refresh_token":"x\u0000"}"#),
        (
            read_path.as_str(),
            Some(ann.access.as_str()),
            r#"{"up_to":1,"note\u0000":1}"#,
        ),
    ];
    for (path, token, body) in bodies {
        let got = raw_post(&app, path, token, body).await;
        assert_validation(&got, &format!("{path} {body}"));
    }
    let patch = app
        .client
        .patch(app.url("/api/me"))
        .bearer_auth(&ann.access)
        .header("Content-Type", "application/json")
        .body(r#"{"display_name":"A\u0000nn"}"#)
        .send()
        .await
        .expect("request");
    assert_validation(&reply(patch).await, "display name");
    // A backslash before "u0000" is text, not a NUL.
    let literal = ws.send_message("bob", r"a \u0000 b", "literal").await;
    assert_eq!(literal["message"]["body"], r"a \u0000 b");

    let frames: [Value; 6] = [
        json!({"type": "send", "id": "f1", "to": "bob", "body": "a\u{0}b", "client_msg_id": "n1"}),
        json!({"type": "send", "id": "f2", "to": "bob", "body": "ok", "client_msg_id": "n\u{0}2"}),
        json!({"type": "send", "id": "f3", "to": "bo\u{0}b", "body": "ok", "client_msg_id": "n3"}),
        json!({"type": "read", "id": "f4", "peer": "bob\u{0}", "up_to": 1}),
        json!({"type": "typing", "id": "f5", "to": "\u{0}bob"}),
        json!({"type": "call", "id": "f6", "to": "bob\u{0}", "media": "audio"}),
    ];
    for frame in frames {
        let id = frame["id"].clone();
        ws.send(frame).await;
        let error = ws.recv_type("error").await;
        assert_eq!(error["id"], id, "{error}");
        assert_eq!(error["code"], "validation_failed", "{error}");
    }
    // Nothing was stored, and the connection lives on.
    ws.send_message("bob", "after all that", "m1").await;
    let path = app.direct_path(&ann, "bob", "/messages").await;
    let history = app.get(&path, &ann.access).await;
    let bodies: Vec<&str> = history.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, ["hello", r"a \u0000 b", "after all that"]);
}

async fn names_must_show_something_and_not_reorder_text(app: TestApp) {
    let ann = app.register("ann").await;
    let refused = [
        ("\u{200B}\u{200B}", "required"),
        ("\u{3164}", "required"),
        ("\u{2800}", "required"),
        ("\u{FEFF} \u{2060}", "required"),
        ("ann\u{202E}gpj.exe", "invalid_characters"),
        ("\u{2067}bob\u{2069}", "invalid_characters"),
    ];
    for (name, code) in refused {
        let got = app
            .request(
                Method::PATCH,
                "/api/me",
                Some(&ann.access),
                Some(json!({"display_name": name})),
            )
            .await;
        assert_validation(&got, &format!("{name:?}"));
        assert_eq!(got.body["error"]["fields"][0]["code"], code, "{name:?}");
    }
    let register = app
        .post(
            "/api/auth/register",
            json!({"username": "eve", "password": "long enough", "display_name": "\u{200B}"}),
        )
        .await;
    assert_validation(&register, "register with an invisible display name");
    // Normalised: the decomposed é is stored composed; emoji sequences keep their joiners.
    for (given, stored) in [
        ("Rene\u{301}e", "Ren\u{e9}e"),
        ("👩\u{200D}💻 Ann", "👩\u{200D}💻 Ann"),
    ] {
        let got = app
            .request(
                Method::PATCH,
                "/api/me",
                Some(&ann.access),
                Some(json!({"display_name": given})),
            )
            .await;
        assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
        assert_eq!(got.body["display_name"], stored);
    }
    // Room names: the same normalisation, and nothing invisible.
    let mut ws = app.connect(&ann, None).await;
    let created = ws
        .request(json!({"type": "room_create", "name": "Cafe\u{301}"}), "r1")
        .await;
    assert_eq!(created["type"], "room_created", "{created}");
    ws.request(json!({"type": "room_leave"}), "r2").await;
    for name in ["\u{200B}", "a\u{202E}b"] {
        let refused = ws
            .request(json!({"type": "room_create", "name": name}), "r3")
            .await;
        assert_eq!(refused["code"], "validation_failed", "{name:?}: {refused}");
    }
}

async fn errors_name_no_rust_types(app: TestApp) {
    let ann = app.register("ann").await;
    for (path, token, body) in [
        ("/api/auth/register", None, r#""just a string""#),
        ("/api/auth/login", None, "[1,2]"),
        ("/api/auth/refresh", None, "42"),
        ("/api/conversations", Some(ann.access.as_str()), "true"),
    ] {
        let got = raw_post(&app, path, token, body).await;
        assert!(got.status.is_client_error(), "{path}: {:?}", got.body);
        let message = got.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("struct") && !message.contains("Request"),
            "{path}: {message}"
        );
    }
    let mut ws = app.connect(&ann, None).await;
    ws.send(json!({"type": "send", "id": "x", "to": 5, "body": [], "client_msg_id": {}}))
        .await;
    let error = ws.recv_type("error").await;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(!message.contains("struct"), "{message}");
}

async fn typing_reaches_only_people_you_talk_with(app: TestApp) {
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let mut a = app.connect(&ann, None).await;
    let mut b = app.connect(&bob, None).await;
    let mut c = app.connect(&carol, None).await;
    a.send(json!({"type": "typing", "id": "t1", "to": "carol"}))
        .await;
    let refused = a.recv_type("error").await;
    assert_eq!(refused["code"], "conversation_not_found", "{refused}");
    c.assert_quiet().await;

    a.send_message("bob", "hi", "m1").await;
    b.recv_type("message").await;
    a.send(json!({"type": "typing", "id": "t2", "to": "bob"}))
        .await;
    assert_eq!(b.recv_type("typing").await["from"], "ann");
    // Still a stranger to carol.
    a.send(json!({"type": "typing", "id": "t3", "to": "carol"}))
        .await;
    assert_eq!(a.recv_type("error").await["code"], "conversation_not_found");
    c.assert_quiet().await;
}

async fn a_deleted_users_socket_gets_a_clear_error(app: TestApp) {
    let ann = app.register("ann").await;
    app.register("bob").await;
    let mut ws = app.connect(&ann, None).await;
    ws.send_message("bob", "before", "m1").await;
    // An operator deletes the account in SQL while its socket is open.
    let db = app.db.connect();
    db.with_connection(|conn| {
        use diesel::prelude::*;
        diesel::delete(
            pychat::db::schema::users::table.filter(pychat::db::schema::users::username.eq("ann")),
        )
        .execute(conn)?;
        Ok(())
    })
    .expect("delete");
    ws.send(
        json!({"type": "send", "id": "after", "to": "bob", "body": "after", "client_msg_id": "m2"}),
    )
    .await;
    // Either the server already closed the socket (the session is gone), or the frame is refused
    // with a code a client understands; never an internal error.
    loop {
        match ws.next_message().await {
            None => panic!("the connection ended without a close frame or an answer"),
            Some(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                let code = frame.map(|f| u16::from(f.code));
                assert_eq!(code, Some(4001));
                break;
            }
            Some(tokio_tungstenite::tungstenite::Message::Text(text)) => {
                let frame: Value = serde_json::from_str(&text).expect("json");
                if frame["id"] == "after" {
                    assert_eq!(frame["type"], "error", "{frame}");
                    // Its conversations went with the account.
                    assert!(
                        ["user_not_found", "conversation_not_found"]
                            .contains(&frame["code"].as_str().unwrap_or_default()),
                        "{frame}"
                    );
                    break;
                }
            }
            Some(_) => {}
        }
    }
}

/// The original PyChat named files after user names; here no name can walk a path: user names
/// allow only `a-z 0-9 _ . -` (so no `/` or `\`), a name made of dots is refused, and neither
/// the API nor the static files answer with anything outside the web app's directory.
#[actix_web::test]
async fn names_and_paths_cannot_walk_out_of_their_directory() {
    let root = tempfile::tempdir().expect("tempdir");
    let dist = root.path().join("dist");
    std::fs::create_dir(&dist).expect("dist");
    std::fs::write(dist.join("index.html"), "<!doctype html><title>app</title>").expect("index");
    std::fs::write(root.path().join("secret.txt"), "TOP SECRET").expect("secret");
    let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, move |s| {
        s.web_dir = Some(dist)
    })
    .await
    .expect("sqlite");
    for name in ["../../etc/passwd", "a/b", "a\\b", "..", "...", "%2e%2e"] {
        let got = app
            .post(
                "/api/auth/register",
                json!({"username": name, "password": "long enough"}),
            )
            .await;
        assert_eq!(got.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
    }
    let ann = app.register("ann").await;
    let lookup = app
        .get("/api/users/..%2F..%2Fetc%2Fpasswd", &ann.access)
        .await;
    assert_eq!(lookup.status, StatusCode::NOT_FOUND);
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2Fsecret.txt",
        "/assets/..%2F..%2Fsecret.txt",
    ] {
        let response = app.client.get(app.url(path)).send().await.expect("request");
        let body = response.text().await.expect("body");
        assert!(
            !body.contains("TOP SECRET"),
            "{path} served a file outside the app"
        );
    }
}
