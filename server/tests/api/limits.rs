//! Abuse limits: each failure of the adversarial test (issue #12, item 4) reproduced and closed.
//! The suite's default settings lift every limit (helpers.rs); each test sets its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pychat::config::{Secret, Settings};
use pychat::limits::Rule;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_tungstenite::tungstenite;

use crate::cluster::PrivateRedis;
use crate::helpers::{
    Backend, PASSWORD, Reply, TestApp, TestDb, reply, spawn_app_with, spawn_instance,
};

const HOUR: Duration = Duration::from_secs(60 * 60);

fn failures(max: u32) -> Rule {
    Rule {
        max,
        window: Duration::from_secs(15 * 60),
    }
}

/// The limits a real deployment starts with (config.rs), where these tests need them.
fn default_login_limits(s: &mut Settings) {
    s.limits.login_failures_per_account_address = failures(10);
    s.limits.login_failures_per_account = failures(50);
    s.limits.login_failures_per_address = failures(100);
}

/// 127.0.0.1 (every test client) as the trusted proxy, so a test can speak for many clients.
fn behind_proxy(s: &mut Settings) {
    s.limits.client_ip.trusted_proxies = vec!["127.0.0.1/32".parse().expect("network")];
}

fn retry_after(reply: &Reply) -> u64 {
    reply
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {:?}", reply.headers))
}

fn assert_rate_limited(reply: &Reply) -> u64 {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        reply.body
    );
    assert_eq!(reply.error_code(), "rate_limited");
    let secs = retry_after(reply);
    assert!(secs >= 1, "Retry-After {secs}");
    secs
}

impl TestApp {
    /// POSTs `body` as the client `forwarded_for` (an X-Forwarded-For header) says.
    async fn post_from(&self, path: &str, forwarded_for: &str, body: serde_json::Value) -> Reply {
        let response = self
            .client
            .post(self.url(path))
            .header("X-Forwarded-For", forwarded_for)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        reply(response).await
    }
}

async fn login_from(app: &TestApp, forwarded_for: &str, username: &str, password: &str) -> Reply {
    app.post_from(
        "/api/auth/login",
        forwarded_for,
        json!({"username": username, "password": password}),
    )
    .await
}

// Paths from `super`: the closure is expanded inside the macro's module per test.
crate::on_every_backend!(@with |s: &mut pychat::config::Settings| {
        super::default_login_limits(s);
        super::behind_proxy(s);
    };
    wrong_passwords_lock_the_account_for_that_address,
);

/// Was: 30 wrong passwords in a row, no 429, and the right password still worked.
async fn wrong_passwords_lock_the_account_for_that_address(app: TestApp) {
    app.register("alice").await;
    let mut refused = 0;
    for attempt in 0..30 {
        let reply = app.login("alice", "wrong password!").await;
        if attempt < 10 {
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        } else {
            let secs = assert_rate_limited(&reply);
            assert!(secs <= 15 * 60, "Retry-After {secs} beyond the window");
            refused += 1;
        }
    }
    assert_eq!(refused, 20);
    // The cool-down holds even for the right password, and for the name in other case.
    assert_rate_limited(&app.login("alice", PASSWORD).await);
    assert_rate_limited(&app.login("ALICE", PASSWORD).await);
    // The owner, elsewhere, is not locked out by one attacker's address ...
    let owner = login_from(&app, "203.0.113.5", "alice", PASSWORD).await;
    assert_eq!(owner.status, StatusCode::OK, "{:?}", owner.body);
    // ... and that success does not unlock the attacker's address.
    assert_rate_limited(&app.login("alice", PASSWORD).await);
    // An unknown name is counted the same way: a 429 tells nothing about which names exist.
    for _ in 0..10 {
        assert_eq!(
            app.login("nobody", "wrong password!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_rate_limited(&app.login("nobody", "wrong password!").await);
}

/// Failures from many addresses add up for the account: a distributed guesser is stopped too.
#[actix_web::test]
async fn failures_from_many_addresses_lock_the_account() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        default_login_limits(s);
        s.limits.login_failures_per_account = failures(5);
        behind_proxy(s);
    })
    .await
    else {
        return;
    };
    app.register("bob").await;
    for i in 0..5 {
        let reply = login_from(&app, &format!("198.51.100.{i}"), "bob", "wrong password!").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    assert_rate_limited(&login_from(&app, "198.51.100.99", "bob", PASSWORD).await);
    // Other accounts are untouched.
    app.register("carol").await;
    assert_eq!(app.login("carol", PASSWORD).await.status, StatusCode::OK);
}

crate::on_every_backend!(@with |s: &mut pychat::config::Settings| {
        s.limits.registrations_per_address = pychat::limits::Rule { max: 5, window: super::HOUR };
    };
    registrations_from_one_address_are_limited,
);

/// Was: 200 registrations from one address in 1.6 s.
async fn registrations_from_one_address_are_limited(app: TestApp) {
    for i in 0..5 {
        app.register(&format!("user{i}")).await;
    }
    let reply = app
        .post(
            "/api/auth/register",
            json!({"username": "user5", "password": PASSWORD}),
        )
        .await;
    let secs = assert_rate_limited(&reply);
    // One sign-up comes back every 12 minutes.
    assert!(secs > 60 && secs <= 12 * 60, "Retry-After {secs}");
    // No proxy is trusted: a client's own X-Forwarded-For changes nothing.
    let spoofed = app
        .post_from(
            "/api/auth/register",
            "203.0.113.77",
            json!({"username": "user6", "password": PASSWORD}),
        )
        .await;
    assert_rate_limited(&spoofed);
}

/// Behind a trusted proxy each client counts on its own, by the rightmost address the proxy
/// vouches for; what a client wrote to the left of it is ignored.
#[actix_web::test]
async fn a_trusted_proxy_header_names_the_client() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.registrations_per_address = Rule {
            max: 2,
            window: HOUR,
        };
        behind_proxy(s);
    })
    .await
    else {
        return;
    };
    let register = |name: &'static str, forwarded: &'static str| {
        let app = &app;
        async move {
            app.post_from(
                "/api/auth/register",
                forwarded,
                json!({"username": name, "password": PASSWORD}),
            )
            .await
        }
    };
    assert_eq!(
        register("ann1", "198.51.100.1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        register("ann2", "198.51.100.1").await.status,
        StatusCode::CREATED
    );
    assert_rate_limited(&register("ann3", "198.51.100.1").await);
    // A forged entry to the left: still 198.51.100.1.
    assert_rate_limited(&register("ann4", "203.0.113.50, 198.51.100.1").await);
    // Another client behind the same proxy has its own count.
    assert_eq!(
        register("bob1", "198.51.100.2").await.status,
        StatusCode::CREATED
    );
}

#[actix_web::test]
async fn tickets_per_user_are_limited() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.tickets_per_user = Rule {
            max: 3,
            window: Duration::from_secs(60),
        };
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    for _ in 0..3 {
        app.ticket(&alice).await;
    }
    let reply = app
        .request(Method::POST, "/api/ws/ticket", Some(&alice.access), None)
        .await;
    let secs = assert_rate_limited(&reply);
    assert!(
        secs <= 20,
        "one ticket comes back every 20 s, Retry-After {secs}"
    );
    // Another user is not affected.
    let bob = app.register("bob").await;
    app.ticket(&bob).await;
}

/// Opens `/ws` with a fresh ticket and expects a refusal before the upgrade.
async fn refused_upgrade(app: &TestApp, session: &crate::helpers::Session) -> u64 {
    let ticket = app.ticket(session).await;
    let url = app.ws_url(&format!("ticket={ticket}"));
    match tokio_tungstenite::connect_async(&url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("JSON error body");
            assert_eq!(body["error"]["code"], "rate_limited");
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("Retry-After")
        }
        Err(other) => panic!("expected an HTTP 429, got {other}"),
        Ok(_) => panic!("the upgrade was accepted beyond the limit"),
    }
}

/// Connects `session`, retrying while a closed connection is still counted.
async fn open_eventually(
    app: &TestApp,
    session: &crate::helpers::Session,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ticket = app.ticket(session).await;
        let url = app.ws_url(&format!("ticket={ticket}"));
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(&url).await {
            return socket;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Was: 2,000 WebSockets for one user, all accepted.
#[actix_web::test]
async fn connections_per_user_and_address_are_limited() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.connections_per_user = 2;
        s.limits.connections_per_address = 3;
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let first = app.connect(&alice, None).await;
    let _second = app.connect(&alice, None).await;
    assert!(refused_upgrade(&app, &alice).await >= 1);
    // A closed connection frees its place (once its session has ended).
    first.close().await;
    let third = open_eventually(&app, &alice).await;
    // Alice holds two, bob one: the address is full at three.
    let _bob = app.connect(&bob, None).await;
    refused_upgrade(&app, &bob).await;
    refused_upgrade(&app, &alice).await;
    drop(third);
}

/// Was: 16 parallel wrong-password loops took another user's login from ~1 s to 13 s. Now the
/// storm's address has one password check at a time, so another user's check waits for at most
/// one of its hashes.
#[actix_web::test]
async fn a_login_storm_does_not_starve_other_users() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        // Hashes slow enough to queue behind each other; the failure limits stay out of the
        // way, so every request of the storm reaches bcrypt.
        s.bcrypt_cost = 10;
        s.limits.login_concurrency_per_address = 1;
        behind_proxy(s);
    })
    .await
    else {
        return;
    };
    let app = Arc::new(app);
    app.register("victim").await;
    app.register("target").await;
    let timed_login = || {
        let app = app.clone();
        async move {
            let begun = Instant::now();
            let reply = app.login("victim", PASSWORD).await;
            assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
            begun.elapsed()
        }
    };
    let mut calm = Vec::new();
    for _ in 0..5 {
        calm.push(timed_login().await);
    }
    calm.sort();
    let calm = calm[2];

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hashed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut storm = Vec::new();
    for _ in 0..16 {
        let (app, stop, hashed) = (app.clone(), stop.clone(), hashed.clone());
        storm.push(actix_web::rt::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = login_from(&app, "198.51.100.66", "target", "wrong password!").await;
                if reply.status == StatusCode::UNAUTHORIZED {
                    hashed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut during = Vec::new();
    for _ in 0..5 {
        during.push(timed_login().await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in storm {
        task.await.expect("storm task");
    }
    during.sort();
    let during = during[2];
    assert!(
        hashed.load(std::sync::atomic::Ordering::Relaxed) > 5,
        "the storm never reached bcrypt"
    );
    let bound = calm * 3 + Duration::from_millis(150);
    assert!(
        during < bound,
        "another user's login took {during:?} under the storm, {calm:?} without (bound {bound:?})"
    );
}

/// Two instances count failures together through Redis, and while Redis is away each counts on
/// its own without failing or slowing requests.
async fn limits_are_shared_across_instances(backend: Backend) {
    let Some(db) = TestDb::create(backend) else {
        return;
    };
    let db = Arc::new(db);
    let mut redis = PrivateRedis::start().await;
    let adjust = |url: String| {
        move |s: &mut Settings| {
            s.redis_url = Some(Secret::new(url));
            default_login_limits(s);
            s.limits.login_failures_per_account_address = failures(4);
        }
    };
    let one = spawn_instance(db.clone(), adjust(redis.url())).await;
    let two = spawn_instance(db, adjust(redis.url())).await;
    one.register("alice").await;
    for app in [&one, &two, &one, &two] {
        assert_eq!(
            app.login("alice", "wrong password!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // Four failures in all, two on each: both instances refuse now.
    assert_rate_limited(&one.login("alice", PASSWORD).await);
    assert_rate_limited(&two.login("alice", PASSWORD).await);

    redis.stop();
    // Redis gone: each instance counts locally (bob's failures are new to both), answering
    // quickly, and sign-ins still work.
    one.register("bob").await;
    let begun = Instant::now();
    assert_eq!(two.login("bob", PASSWORD).await.status, StatusCode::OK);
    for _ in 0..4 {
        assert_eq!(
            two.login("bob", "wrong password!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_rate_limited(&two.login("bob", PASSWORD).await);
    assert!(
        begun.elapsed() < Duration::from_secs(6),
        "limits waited for the missing Redis: {:?}",
        begun.elapsed()
    );
}

crate::on_server_backends!(limits_are_shared_across_instances);

/// The upgrade request reaches the limits with its peer address too: behind a trusted proxy two
/// clients each get their own per-address count.
#[actix_web::test]
async fn websockets_count_by_the_address_a_trusted_proxy_names() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let Some(app) = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.connections_per_address = 1;
        behind_proxy(s);
    })
    .await
    else {
        return;
    };
    let alice = app.register("alice").await;
    let open = |forwarded: &'static str| {
        let app = &app;
        let alice = &alice;
        async move {
            let ticket = app.ticket(alice).await;
            let mut request = app
                .ws_url(&format!("ticket={ticket}"))
                .into_client_request()
                .expect("request");
            request
                .headers_mut()
                .insert("X-Forwarded-For", forwarded.parse().expect("header"));
            tokio_tungstenite::connect_async(request).await
        }
    };
    let _first = open("198.51.100.1").await.expect("first client");
    let _second = open("198.51.100.2")
        .await
        .expect("another client, its own count");
    match open("198.51.100.1").await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 429),
        other => panic!("expected 429 for the first client's second socket, got {other:?}"),
    }
}
