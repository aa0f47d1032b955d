use std::time::Instant;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, session_from};
use crate::on_every_backend;

on_every_backend!(
    register_login_and_me,
    username_is_unique_case_insensitively,
    register_reports_every_invalid_field,
    unknown_user_and_wrong_password_look_alike,
    refresh_rotates_and_detects_reuse,
    refresh_from_cookie,
    logout_revokes_the_session,
    password_change_signs_out_other_sessions,
    display_name_keeps_emoji,
    search_by_prefix_with_pages,
    profile_by_name,
);

async fn register_login_and_me(app: TestApp) {
    let reply = app
        .post(
            "/api/auth/register",
            json!({"username": "Alice", "password": PASSWORD, "display_name": "Alice A."}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    assert_eq!(reply.body["user"]["username"], "alice");
    assert_eq!(reply.body["user"]["display_name"], "Alice A.");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    let created_at = reply.body["user"]["created_at"]
        .as_str()
        .expect("created_at");
    assert!(
        created_at.ends_with('Z'),
        "timestamps are UTC RFC 3339: {created_at}"
    );

    let login = app.login("ALICE", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    let session = session_from(&login);
    let cookie = login
        .headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("login sets the refresh cookie");
    assert!(cookie.starts_with("pychat_refresh="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let me = app.get("/api/me", &session.access).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "alice");
    assert_eq!(me.body["id"], reply.body["user"]["id"]);
    assert!(me.body.get("password_hash").is_none());
}

async fn username_is_unique_case_insensitively(app: TestApp) {
    app.register("bob").await;
    let reply = app
        .post(
            "/api/auth/register",
            json!({"username": "BoB", "password": PASSWORD}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.error_code(), "username_taken");
}

async fn register_reports_every_invalid_field(app: TestApp) {
    let reply = app
        .post(
            "/api/auth/register",
            json!({"username": "_user1", "password": "short", "display_name": "  "}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.error_code(), "validation_failed");
    let fields: Vec<(String, String)> = reply.body["error"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| {
            (
                f["field"].as_str().unwrap_or_default().into(),
                f["code"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    assert!(
        fields.contains(&("username".into(), "reserved".into())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("password".into(), "too_short".into())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("display_name".into(), "required".into())),
        "{fields:?}"
    );

    for (name, code) in [
        ("ab", "too_short"),
        ("a b c", "invalid_characters"),
        (&"x".repeat(33)[..], "too_long"),
    ] {
        let reply = app
            .post(
                "/api/auth/register",
                json!({"username": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        assert_eq!(reply.body["error"]["fields"][0]["code"], code, "{name}");
    }
    let long_password = "p".repeat(129);
    let reply = app
        .post(
            "/api/auth/register",
            json!({"username": "carol", "password": long_password}),
        )
        .await;
    assert_eq!(reply.body["error"]["fields"][0]["code"], "too_long");
}

async fn unknown_user_and_wrong_password_look_alike(app: TestApp) {
    app.register("dave").await;
    let wrong = app.login("dave", "not the password").await;
    let unknown = app.login("nobody-here", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.body, unknown.body,
        "the two failures must be indistinguishable"
    );
    assert_eq!(wrong.error_code(), "invalid_credentials");

    // Both paths run one bcrypt check: an unknown name must not answer markedly faster.
    let mut known_times = Vec::new();
    let mut unknown_times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        app.login("dave", "not the password").await;
        known_times.push(start.elapsed());
        let start = Instant::now();
        app.login("nobody-here", "not the password").await;
        unknown_times.push(start.elapsed());
    }
    known_times.sort();
    unknown_times.sort();
    let (known, unknown) = (known_times[2], unknown_times[2]);
    assert!(
        unknown * 2 >= known,
        "unknown user answered in {unknown:?}, wrong password in {known:?}"
    );
}

async fn refresh_rotates_and_detects_reuse(app: TestApp) {
    let first = app.register("erin").await;
    let rotated = app
        .post("/api/auth/refresh", json!({"refresh_token": first.refresh}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let second = session_from(&rotated);
    assert_ne!(second.refresh, first.refresh, "refresh tokens rotate");
    assert_eq!(
        app.get("/api/me", &second.access).await.status,
        StatusCode::OK
    );

    // The old token again: someone copied it. The whole session dies.
    let reused = app
        .post("/api/auth/refresh", json!({"refresh_token": first.refresh}))
        .await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reused.error_code(), "refresh_token_reused");
    let after = app
        .post(
            "/api/auth/refresh",
            json!({"refresh_token": second.refresh}),
        )
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.error_code(), "invalid_token");
    let me = app.get("/api/me", &second.access).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(me.error_code(), "invalid_token");

    let bogus = app
        .post("/api/auth/refresh", json!({"refresh_token": "not-a-token"}))
        .await;
    assert_eq!(bogus.error_code(), "invalid_token");
    let missing = app.post("/api/auth/refresh", json!({})).await;
    assert_eq!(missing.error_code(), "missing_token");
}

async fn refresh_from_cookie(app: TestApp) {
    app.register("frank").await;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let login = browser
        .post(app.url("/api/auth/login"))
        .json(&json!({"username": "frank", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let login = crate::helpers::reply(login).await;

    for _ in 0..2 {
        let refreshed = browser
            .post(app.url("/api/auth/refresh"))
            .send()
            .await
            .expect("refresh");
        let refreshed = crate::helpers::reply(refreshed).await;
        assert_eq!(refreshed.status, StatusCode::OK, "{:?}", refreshed.body);
        assert_ne!(refreshed.body["refresh_token"], login.body["refresh_token"]);
        assert_eq!(refreshed.body["user"]["username"], "frank");
    }
}

async fn logout_revokes_the_session(app: TestApp) {
    let session = app.register("gina").await;
    let other = session_from(&app.login("gina", PASSWORD).await);
    let out = app
        .request(
            Method::POST,
            "/api/auth/logout",
            Some(&session.access),
            None,
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/me", &session.access).await.error_code(),
        "invalid_token"
    );
    let refresh = app
        .post(
            "/api/auth/refresh",
            json!({"refresh_token": session.refresh}),
        )
        .await;
    assert_eq!(refresh.error_code(), "invalid_token");
    // Another device's session is untouched.
    assert_eq!(
        app.get("/api/me", &other.access).await.status,
        StatusCode::OK
    );
}

async fn password_change_signs_out_other_sessions(app: TestApp) {
    let here = app.register("hank").await;
    let elsewhere = session_from(&app.login("hank", PASSWORD).await);

    let wrong = app
        .request(
            Method::PUT,
            "/api/me/password",
            Some(&here.access),
            Some(json!({"current_password": "wrong wrong", "new_password": "new password 1"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        wrong.body["error"]["fields"][0]["field"],
        "current_password"
    );

    let changed = app
        .request(
            Method::PUT,
            "/api/me/password",
            Some(&here.access),
            Some(json!({"current_password": PASSWORD, "new_password": "new password 1"})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{:?}", changed.body);
    assert_eq!(
        app.get("/api/me", &here.access).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/me", &elsewhere.access).await.status,
        StatusCode::UNAUTHORIZED
    );
    let refresh = app
        .post(
            "/api/auth/refresh",
            json!({"refresh_token": elsewhere.refresh}),
        )
        .await;
    assert_eq!(refresh.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("hank", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("hank", "new password 1").await.status,
        StatusCode::OK
    );
}

async fn display_name_keeps_emoji(app: TestApp) {
    let session = app.register("iris").await;
    let reply = app
        .request(
            Method::PATCH,
            "/api/me",
            Some(&session.access),
            Some(json!({"display_name": "  Iris 🎉 Ünïcode  "})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["display_name"], "Iris 🎉 Ünïcode");
    let me = app.get("/api/me", &session.access).await;
    assert_eq!(
        me.body["display_name"], "Iris 🎉 Ünïcode",
        "stored 4-byte UTF-8 intact"
    );
    let blank = app
        .request(
            Method::PATCH,
            "/api/me",
            Some(&session.access),
            Some(json!({"display_name": " "})),
        )
        .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn search_by_prefix_with_pages(app: TestApp) {
    let me = app.register("alice").await;
    for name in ["albert", "alfred", "bob", "a_b1", "axb1"] {
        app.register(name).await;
    }
    let names = |reply: &crate::helpers::Reply| -> Vec<String> {
        reply.body["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|u| u["username"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let found = app.get("/api/users?q=AL", &me.access).await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(names(&found), ["albert", "alfred", "alice"]);
    assert!(found.body["next_after"].is_null());

    // '_' is a literal here, not LIKE's any-character wildcard.
    let underscore = app.get("/api/users?q=a_", &me.access).await;
    assert_eq!(names(&underscore), ["a_b1"]);

    let page1 = app.get("/api/users?q=al&limit=2", &me.access).await;
    assert_eq!(names(&page1), ["albert", "alfred"]);
    let after = page1.body["next_after"].as_str().expect("next page");
    let page2 = app
        .get(
            &format!("/api/users?q=al&limit=2&after={after}"),
            &me.access,
        )
        .await;
    assert_eq!(names(&page2), ["alice"]);
    assert!(page2.body["next_after"].is_null());

    let anonymous = app
        .request(Method::GET, "/api/users?q=al", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.error_code(), "missing_token");
}

async fn profile_by_name(app: TestApp) {
    let me = app.register("jane").await;
    app.register("kate").await;
    let kate = app.get("/api/users/KATE", &me.access).await;
    assert_eq!(kate.status, StatusCode::OK);
    assert_eq!(kate.body["username"], "kate");
    assert!(kate.body.get("password_hash").is_none());
    let missing = app.get("/api/users/nobody", &me.access).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "user_not_found");
}
