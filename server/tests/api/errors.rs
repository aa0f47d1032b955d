//! Malformed requests get the JSON error body with the right status; none of them needs storage,
//! so SQLite alone is enough here.

use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, Reply, reply, spawn_app};

async fn raw(
    app: &crate::helpers::TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut request = app.client.request(method, app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    reply(request.send().await.expect("request")).await
}

#[actix_web::test]
async fn malformed_requests_get_json_errors() {
    let app = spawn_app(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    let json = Some("application/json");
    let cases: Vec<(&str, Reply, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            raw(
                &app,
                Method::POST,
                "/api/auth/login",
                json,
                b"{\"username\":".to_vec(),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "wrong field type",
            raw(
                &app,
                Method::POST,
                "/api/auth/login",
                json,
                br#"{"username":1,"password":"x"}"#.to_vec(),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "missing field",
            raw(
                &app,
                Method::POST,
                "/api/auth/register",
                json,
                br#"{"username":"abc"}"#.to_vec(),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "wrong content type",
            raw(
                &app,
                Method::POST,
                "/api/auth/login",
                Some("text/plain"),
                b"{}".to_vec(),
            )
            .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "body over the limit",
            raw(
                &app,
                Method::POST,
                "/api/auth/login",
                json,
                vec![b' '; 70 * 1024],
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "unknown route",
            raw(&app, Method::GET, "/api/nothing-here", None, Vec::new()).await,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "wrong method",
            raw(&app, Method::DELETE, "/api/me", None, Vec::new()).await,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "bad query parameter",
            app.get("/api/users?limit=many", "token").await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            "malformed refresh body",
            raw(
                &app,
                Method::POST,
                "/api/auth/refresh",
                json,
                b"{nope".to_vec(),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ];
    for (what, reply, status, code) in cases {
        assert_eq!(reply.status, status, "{what}: {:?}", reply.body);
        assert_eq!(reply.error_code(), code, "{what}");
        assert!(reply.body["error"]["message"].is_string(), "{what}");
    }

    let session = app.register("quinn").await;
    let bad_query = app.get("/api/users?limit=many", &session.access).await;
    assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_query.error_code(), "invalid_query");
    // Page sizes outside the documented range are refused, not quietly changed.
    for path in [
        "/api/users?limit=0",
        "/api/users?limit=101",
        "/api/conversations?limit=101",
        "/api/conversations/1/messages?limit=201",
        "/api/conversations?limit=99999999999999999999",
    ] {
        let reply = app.get(path, &session.access).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(reply.error_code(), "invalid_query", "{path}");
    }
    for path in ["/api/users?limit=100", "/api/conversations?limit=100"] {
        assert_eq!(
            app.get(path, &session.access).await.status,
            StatusCode::OK,
            "{path}"
        );
    }

    // Odd bytes in the path and huge names are answered, not crashed on.
    let odd = app.get("/api/users/%F0%9F%8E%89", &session.access).await;
    assert_eq!(odd.status, StatusCode::NOT_FOUND);
    let not_utf8 = app.get("/api/users/%FF%FE", &session.access).await;
    assert_eq!(not_utf8.status, StatusCode::NOT_FOUND);
    let long = app
        .get(&format!("/api/users/{}", "x".repeat(5000)), &session.access)
        .await;
    assert_eq!(long.status, StatusCode::NOT_FOUND);
    let health = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["database"], "ok");
}
