//! Calls: ICE server configuration.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Backend, spawn_app_with};

#[actix_web::test]
async fn ice_servers_carry_turn_rest_credentials() {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.ice.stun_urls = vec!["stun:stun.example.org:3478".into()];
        s.ice.turn_urls = vec!["turn:turn.example.org:3478?transport=udp".into()];
        s.ice.turn_secret = Some(pychat::config::Secret::new("coturn-shared-secret"));
        s.ice.turn_credential_ttl = std::time::Duration::from_secs(600);
    })
    .await
    .expect("sqlite");
    let alice = app.register("alice").await;
    let reply = app.get("/api/ice-servers", &alice.access).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let servers = reply.body["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(servers[0]["urls"], json!(["stun:stun.example.org:3478"]));
    assert!(servers[0].get("credential").is_none());
    let turn = &servers[1];
    let username = turn["username"].as_str().expect("username");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    assert_eq!(user, "alice");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expiry: u64 = expiry.parse().expect("unix time");
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "expiry {expiry}, now {now}"
    );
    // What coturn computes with use-auth-secret: base64(HMAC-SHA1(secret, username)).
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"coturn-shared-secret").expect("key");
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], expected);
    assert_eq!(reply.body["ttl"], 600);
    let anonymous = app
        .request(Method::GET, "/api/ice-servers", None, None)
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}
