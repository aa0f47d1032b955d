//! A revoked session ends everywhere within a second: its sockets close with 4001 and its unused
//! tickets stop working, whatever revoked it (sign-out, a password change elsewhere, a reused
//! refresh token, an operator disabling the account) and on whichever instance they are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::cluster::PrivateRedis;
use crate::helpers::{Backend, PASSWORD, Session, TestApp, TestDb, session_from, spawn_instance};
use crate::ws_client::WsClient;
use crate::{on_every_backend, on_server_backends};

/// The close code of a connection whose session was revoked (docs/protocol.md).
const SESSION_ENDED: u16 = 4001;
/// What the issue promises, plus the time a loaded test machine may add.
const WITHIN: Duration = Duration::from_millis(1500);

on_every_backend!(
    signing_out_closes_the_sessions_sockets_and_voids_its_tickets,
    a_password_change_closes_the_other_sessions_sockets,
    a_reused_refresh_token_closes_the_sessions_sockets,
    disabling_an_account_closes_its_sockets_and_refuses_sign_in,
);
on_server_backends!(signing_out_on_one_instance_closes_sockets_on_another);

/// Waits for the server to close `ws`; asserts the code and that it came within [`WITHIN`] of
/// `since`.
async fn assert_closed_since(ws: &mut WsClient, since: Instant, what: &str) {
    let code = ws.closed().await;
    let took = since.elapsed();
    assert_eq!(code, Some(SESSION_ENDED), "{what}: close code");
    assert!(took < WITHIN, "{what}: closed after {took:?}");
}

/// A sent message is acked, so the socket was live as this user.
async fn assert_live(ws: &mut WsClient, to: &str, id: &str) {
    ws.send_message(to, "still here?", id).await;
}

async fn signing_out_closes_the_sessions_sockets_and_voids_its_tickets(app: TestApp) {
    let ann = app.register("ann").await;
    app.register("bob").await;
    let mut socket = app.connect(&ann, None).await;
    assert_live(&mut socket, "bob", "before").await;
    let spare_ticket = app.ticket(&ann).await;
    // Another sign-in of the same user is not touched.
    let other = session_from(&app.login("ann", PASSWORD).await);
    let mut other_socket = app.connect(&other, None).await;

    let started = Instant::now();
    let reply = app
        .request(Method::POST, "/api/auth/logout", Some(&ann.access), None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_closed_since(&mut socket, started, "after sign-out").await;

    let refused = app
        .upgrade_answer(&format!("ticket={spare_ticket}"), None)
        .await;
    assert_eq!(refused, (401, Some("invalid_ticket".into())));

    assert_live(&mut other_socket, "bob", "other session").await;
}

async fn a_password_change_closes_the_other_sessions_sockets(app: TestApp) {
    let phone = app.register("ann").await;
    app.register("bob").await;
    let laptop = session_from(&app.login("ann", PASSWORD).await);
    let mut phone_socket = app.connect(&phone, None).await;
    let mut laptop_socket = app.connect(&laptop, None).await;

    let started = Instant::now();
    let reply = app
        .request(
            Method::PUT,
            "/api/me/password",
            Some(&laptop.access),
            Some(json!({"current_password": PASSWORD, "new_password": "another good one"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    assert_closed_since(&mut phone_socket, started, "the other session").await;
    assert_live(&mut laptop_socket, "bob", "the changing session").await;
}

async fn a_reused_refresh_token_closes_the_sessions_sockets(app: TestApp) {
    let ann = app.register("ann").await;
    let mut socket = app.connect(&ann, None).await;
    let first = app
        .post("/api/auth/refresh", json!({"refresh_token": ann.refresh}))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    // Someone presents the old token again (it was stolen): the whole session ends.
    let started = Instant::now();
    let reuse = app
        .post("/api/auth/refresh", json!({"refresh_token": ann.refresh}))
        .await;
    assert_eq!(reuse.error_code(), "refresh_token_reused");
    assert_closed_since(&mut socket, started, "after reuse").await;
}

async fn disabling_an_account_closes_its_sockets_and_refuses_sign_in(app: TestApp) {
    let ann = app.register("ann").await;
    let mut socket = app.connect(&ann, None).await;
    // What `pychat user disable ann` does, from another process: only the database is shared.
    let started = Instant::now();
    let db = app.db.connect();
    let disabled = db
        .with_connection(|conn| {
            Ok(pychat::db::users::set_disabled(
                conn,
                "ann",
                true,
                pychat::db::now(),
            )?)
        })
        .expect("disable");
    assert!(disabled.is_some_and(|(_, revoked)| revoked.len() == 1));
    assert_closed_since(&mut socket, started, "after disabling").await;

    let me = app.get("/api/me", &ann.access).await;
    assert_eq!(me.error_code(), "invalid_token");
    let login = app.login("ann", PASSWORD).await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
    assert_eq!(login.error_code(), "account_disabled");
    let wrong = app.login("ann", "not the password").await;
    assert_eq!(
        wrong.error_code(),
        "invalid_credentials",
        "only who knows the password learns the account is disabled"
    );

    db.with_connection(|conn| {
        Ok(pychat::db::users::set_disabled(
            conn,
            "ann",
            false,
            pychat::db::now(),
        )?)
    })
    .expect("enable");
    assert_eq!(app.login("ann", PASSWORD).await.status, StatusCode::OK);
}

async fn signing_out_on_one_instance_closes_sockets_on_another(backend: Backend) {
    let Some(db) = TestDb::create(backend) else {
        return;
    };
    let db = Arc::new(db);
    let redis = PrivateRedis::start().await;
    let with_redis = |s: &mut pychat::config::Settings| {
        s.redis_url = Some(pychat::config::Secret::new(redis.url()));
    };
    let one = spawn_instance(db.clone(), with_redis).await;
    let two = spawn_instance(db, with_redis).await;
    let ann: Session = one.register("ann").await;
    let mut on_two = two.connect(&ann, None).await;
    let ticket_from_one = one.ticket(&ann).await;

    let started = Instant::now();
    let reply = one
        .request(Method::POST, "/api/auth/logout", Some(&ann.access), None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_closed_since(&mut on_two, started, "socket on the other instance").await;

    let refused = two
        .upgrade_answer(&format!("ticket={ticket_from_one}"), None)
        .await;
    assert_eq!(refused, (401, Some("invalid_ticket".into())));
}
