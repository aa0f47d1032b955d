use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::prelude::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{JWT_SECRET, TestApp};
use crate::on_every_backend;

on_every_backend!(forged_expired_and_orphaned_tokens_are_refused);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn sign(algorithm: Algorithm, secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

async fn assert_refused(app: &TestApp, token: &str, why: &str) {
    let reply = app.get("/api/me", token).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "{why}: {:?}",
        reply.body
    );
    assert_eq!(reply.error_code(), "invalid_token", "{why}");
}

async fn forged_expired_and_orphaned_tokens_are_refused(app: TestApp) {
    let session = app.register("mallory").await;
    let me = app.get("/api/me", &session.access).await;
    let user_id = me.body["id"].as_i64().expect("id");
    let sid = {
        let payload = session.access.split('.').nth(1).expect("payload");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64"))
                .expect("json");
        claims["sid"].as_i64().expect("sid")
    };
    let claims = |exp: u64| json!({"sub": user_id.to_string(), "sid": sid, "iat": now(), "exp": exp, "jti": "x"});

    // A token made exactly like the server's is accepted: the refusals below are about one flaw each.
    let good = sign(Algorithm::HS256, JWT_SECRET, &claims(now() + 60));
    assert_eq!(app.get("/api/me", &good).await.status, StatusCode::OK);

    assert_refused(
        &app,
        &sign(Algorithm::HS256, &"k".repeat(40), &claims(now() + 60)),
        "other key",
    )
    .await;
    assert_refused(
        &app,
        &sign(Algorithm::HS512, JWT_SECRET, &claims(now() + 60)),
        "other algorithm",
    )
    .await;
    assert_refused(
        &app,
        &sign(Algorithm::HS256, JWT_SECRET, &claims(now() - 120)),
        "expired",
    )
    .await;
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(now() + 60).to_string());
    assert_refused(&app, &format!("{header}.{body}."), "alg none").await;
    assert_refused(&app, "not.a.jwt", "malformed").await;
    assert_refused(&app, "", "empty").await;

    let wrong_scheme = app
        .client
        .get(app.url("/api/me"))
        .header("Authorization", format!("Basic {}", session.access))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_scheme.status(), StatusCode::UNAUTHORIZED);
    let missing = app.request(Method::GET, "/api/me", None, None).await;
    assert_eq!(missing.error_code(), "missing_token");
    assert_eq!(
        missing
            .headers
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );

    // The user is deleted: a token that is otherwise perfect no longer opens anything.
    let db = app.db.connect();
    db.run(move |conn| {
        use pychat::db::schema::users;
        Ok(diesel::delete(users::table.filter(users::id.eq(user_id))).execute(conn)?)
    })
    .await
    .expect("delete user");
    assert_refused(&app, &session.access, "deleted user").await;
}
