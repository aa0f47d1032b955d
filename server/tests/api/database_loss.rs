//! The database crashes under a running server and comes back: requests fail fast with
//! `database_unavailable`, `/readyz` says so, and everything works again without a restart.
//! Each test runs a PostgreSQL or MariaDB server of its own on a free port, to crash it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::cluster::{free_port, wait_for_port};
use crate::helpers::{Backend, Reply, TestApp, TestDb, spawn_instance, without_gssapi};

/// How soon a request must fail once the database is gone.
const FAIL_WITHIN: Duration = Duration::from_millis(1500);
/// How soon everything must work again once it is back.
const RECOVER_WITHIN: Duration = Duration::from_secs(5);

/// The programs a private server needs; `None` (the test is skipped, and says so) when this
/// machine lacks them, which fails the run under `CI=true`.
fn programs(paths: &[&str]) -> Option<()> {
    if let Some(missing) = paths.iter().find(|p| !Path::new(p).exists()) {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "{missing} is needed under CI=true"
        );
        eprintln!("skipped: {missing} is not installed");
        return None;
    }
    Some(())
}

fn run(command: &mut Command) {
    let output = command.output().expect("command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A database server the test may crash and start again on the same data.
trait PrivateServer {
    fn crash(&mut self);
    async fn restart(&mut self);
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL cluster in a temporary directory, run as the `postgres` user.
struct PrivatePostgres {
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    fn start() -> Option<Self> {
        programs(&[&format!("{PG_BIN}/initdb"), "/usr/sbin/runuser"])?;
        let pg = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        run(Command::new("chown").arg("postgres").arg(pg.dir.path()));
        run(pg
            .as_postgres("initdb")
            .args(["-U", "postgres", "-A", "trust", "--no-sync"]));
        pg.start_again();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, program: &str) -> Command {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/{program}")])
            .arg("-D")
            .arg(self.data());
        command
    }

    fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run(self
            .as_postgres("pg_ctl")
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-o", &options, "start"]));
    }

    fn url(&self) -> String {
        without_gssapi(&format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.port
        ))
    }
}

impl PrivateServer for PrivatePostgres {
    /// What a crash looks like to clients: every backend killed, no shutdown checkpoint.
    fn crash(&mut self) {
        run(self
            .as_postgres("pg_ctl")
            .args(["-m", "immediate", "-w", "stop"]));
    }

    async fn restart(&mut self) {
        self.start_again();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A MariaDB server in a temporary directory; crashed with SIGKILL.
struct PrivateMariadb {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateMariadb {
    async fn start() -> Option<Self> {
        programs(&["/usr/bin/mariadb-install-db", "/usr/sbin/mariadbd"])?;
        let mut db = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        run(Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!(
                "--datadir={}",
                db.dir.path().join("data").display()
            ))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]));
        db.start_again().await;
        let admin = format!("mysql://root@127.0.0.1:{}/mysql", db.port);
        let mut conn = <diesel::MysqlConnection as diesel::Connection>::establish(&admin)
            .expect("connect to the private MariaDB");
        diesel::connection::SimpleConnection::batch_execute(
            &mut conn,
            "CREATE DATABASE pychat CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
        .expect("create database");
        Some(db)
    }

    async fn start_again(&mut self) {
        let dir = self.dir.path();
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--port={}", self.port))
            .args(["--bind-address=127.0.0.1", "--user=root"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd runs");
        self.child = Some(child);
        wait_for_port(self.port).await;
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/pychat", self.port)
    }
}

impl PrivateServer for PrivateMariadb {
    /// SIGKILL: connections drop without a word, InnoDB recovers on the next start.
    fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn restart(&mut self) {
        self.start_again().await;
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        self.crash();
    }
}

async fn app_on(backend: Backend, url: String) -> TestApp {
    spawn_instance(Arc::new(TestDb::on_private_server(backend, url)), |_| {}).await
}

async fn readyz(app: &TestApp) -> Reply {
    app.request(reqwest::Method::GET, "/readyz", None, None)
        .await
}

/// Asserts a request fails with 503 `database_unavailable` within [`FAIL_WITHIN`].
async fn fails_fast(what: &str, request: impl std::future::Future<Output = Reply>) {
    let started = Instant::now();
    let reply = request.await;
    let took = started.elapsed();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {:?}",
        reply.body
    );
    let code = if what == "readyz" {
        reply.body["database"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else {
        reply.error_code().to_string()
    };
    let expected = if what == "readyz" {
        "unavailable"
    } else {
        "database_unavailable"
    };
    assert_eq!(code, expected, "{what}: {:?}", reply.body);
    eprintln!("{what}: 503 after {took:?}");
    assert!(took < FAIL_WITHIN, "{what} took {took:?} to fail");
}

/// Crashes the database under a running server, checks that REST and `/readyz` fail fast,
/// starts it again and checks that REST, `/readyz` and the WebSocket work again.
async fn crash_and_recover(app: TestApp, server: &mut impl PrivateServer) {
    let alice = app.register("alice").await;
    app.register("bob").await;
    assert_eq!(
        app.get("/api/me", &alice.access).await.status,
        StatusCode::OK
    );
    assert_eq!(readyz(&app).await.status, StatusCode::OK);

    server.crash();
    // The first request after the crash finds the pool's connections dead: the slowest case.
    fails_fast("GET /api/me", app.get("/api/me", &alice.access)).await;
    fails_fast("readyz", readyz(&app)).await;
    fails_fast("GET /api/me again", app.get("/api/me", &alice.access)).await;
    fails_fast(
        "POST /api/auth/login",
        app.login("alice", crate::helpers::PASSWORD),
    )
    .await;

    server.restart().await;
    let back = Instant::now();
    loop {
        let reply = app.get("/api/me", &alice.access).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.body["username"], "alice");
            break;
        }
        assert_eq!(
            reply.error_code(),
            "database_unavailable",
            "{:?}",
            reply.body
        );
        assert!(
            back.elapsed() < RECOVER_WITHIN,
            "still failing {:?} after the restart",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("REST recovered {:?} after the restart", back.elapsed());
    let ready = readyz(&app).await;
    assert_eq!(ready.status, StatusCode::OK, "{:?}", ready.body);
    assert_eq!(ready.body["database"], "ok");
    // Messages are stored again: the writer recovered too.
    let mut a = app.connect(&alice, None).await;
    let ack = a.send_message("bob", "after the outage", "m1").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let path = app.direct_path(&alice, "bob", "/messages").await;
    let history = app.get(&path, &alice.access).await;
    assert_eq!(history.status, StatusCode::OK, "{:?}", history.body);
    assert_eq!(history.body["messages"][0]["body"], "after the outage");
}

#[actix_web::test]
async fn a_crashed_postgres_fails_fast_and_recovers() {
    let Some(mut pg) = PrivatePostgres::start() else {
        return;
    };
    let app = app_on(Backend::Postgres, pg.url()).await;
    crash_and_recover(app, &mut pg).await;
}

#[actix_web::test]
async fn a_crashed_mariadb_fails_fast_and_recovers() {
    let Some(mut db) = PrivateMariadb::start().await else {
        return;
    };
    let app = app_on(Backend::Mysql, db.url()).await;
    crash_and_recover(app, &mut db).await;
}
