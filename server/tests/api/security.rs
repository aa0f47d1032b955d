//! Security headers on every response, the WebSocket's `Origin` check, and CORS (off unless
//! configured). None of it touches the database: SQLite is enough.

use pychat::security::{APP_POLICY, DATA_POLICY, Origins};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

fn assert_hardened(headers: &HeaderMap, policy: &str, what: &str) {
    assert_eq!(headers["content-security-policy"], policy, "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
}

#[actix_web::test]
async fn every_response_is_hardened_and_api_answers_are_not_stored() {
    let dist = crate::helpers::web_dist("x");
    let dir = dist.path().to_path_buf();
    let app = spawn_app_with(Backend::Sqlite, move |s| s.web_dir = Some(dir))
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;

    for path in ["/", "/chat/bob"] {
        let page = app.client.get(app.url(path)).send().await.expect("page");
        assert_hardened(page.headers(), APP_POLICY, path);
        assert_eq!(page.headers()["cache-control"], "no-cache", "{path}");
    }
    let asset = app
        .client
        .get(app.url("/assets/app-3f9a.js"))
        .send()
        .await
        .expect("asset");
    assert_hardened(asset.headers(), DATA_POLICY, "asset");
    assert_eq!(
        asset.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );

    // API answers, successes and errors alike, may be kept by no cache.
    let me = app.get("/api/me", &alice.access).await;
    let unauthorized = app.request(Method::GET, "/api/me", None, None).await;
    let missing = app.get("/api/nothing", &alice.access).await;
    let ticket = app
        .request(Method::POST, "/api/ws/ticket", Some(&alice.access), None)
        .await;
    for (reply, status) in [
        (&me, StatusCode::OK),
        (&unauthorized, StatusCode::UNAUTHORIZED),
        (&missing, StatusCode::NOT_FOUND),
        (&ticket, StatusCode::OK),
    ] {
        assert_eq!(reply.status, status, "{:?}", reply.body);
        assert_hardened(&reply.headers, DATA_POLICY, &format!("{status}"));
        assert_eq!(reply.headers["cache-control"], "no-store", "{status}");
    }
    let health = app.request(Method::GET, "/healthz", None, None).await;
    assert_hardened(&health.headers, DATA_POLICY, "/healthz");
}

/// Opens `/ws` with a fresh ticket and the given `Origin`: the response status, and the error
/// body when it was refused.
async fn open_ws(app: &TestApp, ticket: &str, origin: Option<&str>) -> (u16, Value) {
    let mut request = app
        .ws_url(&format!("ticket={ticket}"))
        .into_client_request()
        .expect("request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("origin"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => (response.status().as_u16(), Value::Null),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            (
                response.status().as_u16(),
                serde_json::from_slice(body).expect("JSON error body"),
            )
        }
        Err(err) => panic!("connect: {err}"),
    }
}

#[actix_web::test]
async fn the_websocket_opens_only_for_its_own_or_allowed_origins() {
    let allowed = Origins::parse("https://chat.example.com").expect("origins");
    let app = spawn_app_with(Backend::Sqlite, move |s| s.origins.allowed = allowed)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;
    let own = format!("http://{}", app.addr);
    // Behind a TLS-terminating proxy the page is https: while the request reaching the server
    // names the same host and port.
    let own_tls = format!("https://{}", app.addr);

    for origin in [
        None,
        Some(own.as_str()),
        Some(own_tls.as_str()),
        Some("https://chat.example.com"),
    ] {
        let ticket = app.ticket(&alice).await;
        assert_eq!(open_ws(&app, &ticket, origin).await.0, 101, "{origin:?}");
    }

    let ticket = app.ticket(&alice).await;
    for origin in [
        "https://evil.example",
        "http://chat.example.com",
        "null",
        &format!("http://127.0.0.1:{}", app.addr.port() + 1),
    ] {
        let (status, body) = open_ws(&app, &ticket, Some(origin)).await;
        assert_eq!(status, 403, "{origin}");
        assert_eq!(body["error"]["code"], "origin_not_allowed", "{origin}");
    }
    // Refused before the ticket was looked at: it still works.
    assert_eq!(open_ws(&app, &ticket, Some(&own)).await.0, 101);
}

fn cors_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .keys()
        .map(|name| name.as_str().to_string())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, app.url("/api/me"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("preflight")
}

#[actix_web::test]
async fn cors_is_off_by_default() {
    let app = spawn_app(Backend::Sqlite).await.expect("sqlite");
    let alice = app.register("alice").await;
    let preflight = preflight(&app, "https://client.example").await;
    assert_eq!(cors_headers(preflight.headers()), Vec::<String>::new());
    let get = app
        .client
        .get(app.url("/api/me"))
        .bearer_auth(&alice.access)
        .header("origin", "https://client.example")
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(cors_headers(get.headers()), Vec::<String>::new());
}

#[actix_web::test]
async fn cors_serves_only_the_configured_origins() {
    let cors = Origins::parse("https://client.example").expect("origins");
    let app = spawn_app_with(Backend::Sqlite, move |s| s.origins.cors = cors)
        .await
        .expect("sqlite");
    let alice = app.register("alice").await;

    let allowed = preflight(&app, "https://client.example").await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://client.example"
    );
    assert!(
        !allowed
            .headers()
            .contains_key("access-control-allow-credentials")
    );
    let get = |origin: &'static str| {
        app.client
            .get(app.url("/api/me"))
            .bearer_auth(&alice.access)
            .header("origin", origin)
            .send()
    };
    let from_client = get("https://client.example").await.expect("get");
    assert_eq!(from_client.status(), StatusCode::OK);
    assert_eq!(
        from_client.headers()["access-control-allow-origin"],
        "https://client.example"
    );

    // Any other origin is answered without CORS headers, so a browser hides the answer; the
    // app's own requests (which carry their origin) work as before.
    let other = preflight(&app, "https://evil.example").await;
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    let from_other = get("https://evil.example").await.expect("get");
    assert_eq!(from_other.status(), StatusCode::OK);
    assert!(
        !from_other
            .headers()
            .contains_key("access-control-allow-origin")
    );
    let own = app
        .client
        .post(app.url("/api/auth/login"))
        .header("origin", format!("http://{}", app.addr))
        .json(&json!({"username": "alice", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(own.status(), StatusCode::OK);

    // An origin trusted with the API may open the WebSocket too.
    let ticket = app.ticket(&alice).await;
    assert_eq!(
        open_ws(&app, &ticket, Some("https://client.example"))
            .await
            .0,
        101
    );
}
