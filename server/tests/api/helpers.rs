//! Spawns the real application on port 0 with its own fresh database, per test and backend.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, MysqlConnection, PgConnection};
use pychat::app::Application;
use pychat::config::{RawSettings, Secret, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
pub const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    fn admin_url_var(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("PYCHAT_TEST_POSTGRES_URL"),
            Self::Mysql => Some("PYCHAT_TEST_MYSQL_URL"),
        }
    }
}

/// A database made for one test and dropped after it.
pub struct TestDb {
    pub url: String,
    backend: Backend,
    admin_url: Option<String>,
    name: String,
    dir: tempfile::TempDir,
}

fn unique_name() -> String {
    format!(
        "pychat_test_{}",
        pychat::auth::tokens::random_token(9)
            .to_lowercase()
            .replace(['-', '_'], "x")
    )
}

fn with_database(admin_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin_url).expect("admin URL parses");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// libpq initialises Kerberos for GSSAPI encryption on every connection; a connection still being
/// opened by a background thread while the test process exits then aborts in krb5's teardown
/// ("k5_mutex_lock: Received error 22"). TLS is the same hazard with OpenSSL's teardown (one
/// SIGSEGV at exit was seen in CI once test apps kept a database probe querying to the end).
/// Loopback needs neither: switch both off.
pub fn without_gssapi(url: &str) -> String {
    let mut url = url.to_string();
    for (key, value) in [("gssencmode", "disable"), ("sslmode", "disable")] {
        if !url.contains(&format!("{key}=")) {
            let separator = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{separator}{key}={value}");
        }
    }
    url
}

impl TestDb {
    /// `None` when the backend's URL is not set (outside CI): the test is skipped, and says so.
    pub fn create(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = unique_name();
        let Some(var) = backend.admin_url_var() else {
            let url = format!("sqlite://{}", dir.path().join("test.sqlite3").display());
            return Some(Self {
                url,
                backend,
                admin_url: None,
                name,
                dir,
            });
        };
        let Ok(admin_url) = std::env::var(var).map(|url| match backend {
            Backend::Postgres => without_gssapi(&url),
            _ => url,
        }) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{var} must be set under CI=true: every backend runs in CI");
            }
            eprintln!("skipped: {var} is not set");
            return None;
        };
        match backend {
            Backend::Postgres => {
                let mut conn = PgConnection::establish(&admin_url).expect("connect to PostgreSQL");
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create database");
            }
            Backend::Mysql => {
                let mut conn = MysqlConnection::establish(&admin_url).expect("connect to MySQL");
                conn.batch_execute(&format!(
                    "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                ))
                .expect("create database");
            }
            Backend::Sqlite => unreachable!(),
        }
        Some(Self {
            url: with_database(&admin_url, &name),
            backend,
            admin_url: Some(admin_url),
            name,
            dir,
        })
    }

    /// A database on a server the test runs itself (and stops, to see what the app does):
    /// nothing is created or dropped.
    pub fn on_private_server(backend: Backend, url: String) -> Self {
        Self {
            url,
            backend,
            admin_url: None,
            name: String::new(),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A direct connection, for checks and for changes no endpoint makes (deleting a user).
    pub fn connect(&self) -> pychat::db::Db {
        let url = pychat::db::DatabaseUrl::parse(&self.url).expect("test URL parses");
        pychat::db::Db::connect(&url, 1).expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin_url) = &self.admin_url else {
            return;
        };
        let drop_sql = match self.backend {
            Backend::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            Backend::Mysql => format!("DROP DATABASE IF EXISTS {}", self.name),
            Backend::Sqlite => return,
        };
        let outcome = match self.backend {
            Backend::Postgres => PgConnection::establish(admin_url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.batch_execute(&drop_sql).map_err(|e| e.to_string())),
            _ => MysqlConnection::establish(admin_url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| c.batch_execute(&drop_sql).map_err(|e| e.to_string())),
        };
        if let Err(err) = outcome {
            eprintln!("could not drop test database {}: {err}", self.name);
        }
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    /// Shared by the instances of a cluster; dropped with the last of them.
    pub db: std::sync::Arc<TestDb>,
    /// What SIGTERM runs, for tests of the graceful shutdown.
    pub stopper: pychat::shutdown::Stopper,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sends the stop command now; the workers release the database before it is dropped.
        drop(self.handle.stop(false));
    }
}

pub fn settings_for(db: &TestDb) -> Settings {
    RawSettings {
        bind: "127.0.0.1:0".into(),
        data_dir: db.dir.path().to_path_buf(),
        database_url: Some(db.url.clone()),
        database_pool_size: 4,
        jwt_secret: Some(Secret::new(JWT_SECRET)),
        bcrypt_cost: 4,
        workers: Some(1),
        // Tests send faster than people; the rate-limit test sets its own limits.
        ws_rate_per_sec: 100_000.0,
        ws_rate_burst: 100_000.0,
        // Every test client is 127.0.0.1 and signs up many users: the abuse limits are tested
        // with their own settings (limits.rs).
        login_failures_per_account_address: 100_000,
        login_failures_per_account: 100_000,
        login_failures_per_address: 100_000,
        login_concurrency_per_address: 64,
        registrations_per_address_per_hour: 100_000,
        tickets_per_user_per_minute: 100_000,
        ws_connections_per_user: 100_000,
        ws_connections_per_address: 100_000,
        ..RawSettings::default()
    }
    .resolve()
    .expect("test settings are valid")
}

/// A stand-in for the built web app: `index.html` titled `title`, and one hashed asset,
/// `assets/app-3f9a.js`.
pub fn web_dist(title: &str) -> tempfile::TempDir {
    let dist = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dist.path().join("assets")).expect("assets dir");
    std::fs::write(
        dist.path().join("index.html"),
        format!("<!doctype html><title>{title}</title>"),
    )
    .expect("index");
    std::fs::write(dist.path().join("assets/app-3f9a.js"), "console.log(1)").expect("asset");
    dist
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with settings adjusted first (short heartbeats, small limits).
pub async fn spawn_app_with(
    backend: Backend,
    adjust: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let db = std::sync::Arc::new(TestDb::create(backend)?);
    Some(spawn_instance(db, adjust).await)
}

/// Starts one more instance of the application on `db` (several make a cluster).
pub async fn spawn_instance(
    db: std::sync::Arc<TestDb>,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = settings_for(&db);
    adjust(&mut settings);
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let addr = app.addr();
    let handle = app.handle();
    let stopper = app.stopper();
    actix_web::rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    TestApp {
        addr,
        client,
        db,
        stopper,
        handle,
    }
}

/// A response reduced to what tests check.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

/// Tokens of a signed-in test user.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        reply(response).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request(Method::POST, path, None, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn register(&self, username: &str) -> Session {
        let reply = self
            .post(
                "/api/auth/register",
                json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "register {username}: {:?}",
            reply.body
        );
        session_from(&reply)
    }

    /// The id of the direct conversation of `session`'s user with `peer` (opened if new).
    pub async fn direct_id(&self, session: &Session, peer: &str) -> i64 {
        let reply = self
            .request(
                Method::POST,
                "/api/conversations",
                Some(&session.access),
                Some(json!({ "user": peer })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply.body["id"].as_i64().expect("conversation id")
    }

    /// `/api/conversations/{id}{rest}` for the direct conversation with `peer`.
    pub async fn direct_path(&self, session: &Session, peer: &str, rest: &str) -> String {
        format!(
            "/api/conversations/{}{rest}",
            self.direct_id(session, peer).await
        )
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.post(
            "/api/auth/login",
            json!({"username": username, "password": password}),
        )
        .await
    }
}

pub fn session_from(reply: &Reply) -> Session {
    Session {
        access: reply.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_string(),
        refresh: reply.body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string(),
    }
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body read");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON: {text:?}"))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Runs each listed `async fn(TestApp)` once per backend, as `<name>::sqlite`, `::postgres`
/// and `::mysql`, so the output names the backend of every run.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {
        $crate::on_every_backend!(@with |_: &mut pychat::config::Settings| {}; $($name),+);
    };
    (@with $adjust:expr; $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::{Backend, spawn_app_with};

                #[actix_web::test]
                async fn sqlite() {
                    if let Some(app) = spawn_app_with(Backend::Sqlite, $adjust).await {
                        super::$name(app).await;
                    }
                }

                #[actix_web::test]
                async fn postgres() {
                    if let Some(app) = spawn_app_with(Backend::Postgres, $adjust).await {
                        super::$name(app).await;
                    }
                }

                #[actix_web::test]
                async fn mysql() {
                    if let Some(app) = spawn_app_with(Backend::Mysql, $adjust).await {
                        super::$name(app).await;
                    }
                }
            }
        )+
    };
}

/// Compares a generated artefact with its committed copy; `PYCHAT_BLESS=1` rewrites the copy.
pub fn assert_committed(path: &str, generated: &str, bless_command: &str) {
    if std::env::var("PYCHAT_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(path, generated).expect("write the committed copy");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is stale: run `{bless_command}` and commit it"
    );
}

/// Runs `async fn name(backend)` once on PostgreSQL and once on MariaDB: tests of what only the
/// database servers do (several instances sharing one, connections through a proxy).
#[macro_export]
macro_rules! on_server_backends {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::Backend;

                #[actix_web::test]
                async fn postgres() {
                    super::$name(Backend::Postgres).await;
                }

                #[actix_web::test]
                async fn mysql() {
                    super::$name(Backend::Mysql).await;
                }
            }
        )+
    };
}
