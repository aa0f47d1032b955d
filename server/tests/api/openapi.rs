//! The committed OpenAPI document must match the code. To refresh it after an API change:
//! `PYCHAT_BLESS=1 cargo test -p pychat openapi` (or `cargo run -- openapi > docs/openapi.json`).

use reqwest::{Method, StatusCode};

use crate::helpers::{Backend, spawn_app};

#[test]
fn committed_document_is_current() {
    crate::helpers::assert_committed(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"),
        &pychat::api::openapi::to_pretty_json(),
        "PYCHAT_BLESS=1 cargo test -p pychat openapi",
    );
}

#[actix_web::test]
async fn served_document_is_openapi_3_1_with_every_route() {
    let app = spawn_app(Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    let reply = app
        .request(Method::GET, "/api/openapi.json", None, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        reply.body["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let paths = reply.body["paths"].as_object().expect("paths");
    for path in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/logout",
        "/api/me",
        "/api/me/password",
        "/api/users",
        "/api/users/{username}",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the document");
    }
}
