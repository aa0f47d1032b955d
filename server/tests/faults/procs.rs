//! The real processes a fault scenario runs and breaks: private PostgreSQL, MariaDB and Redis
//! servers on free ports, and pychat instances started from the built binary. Each one is
//! stopped when dropped, also when the test panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const JWT_SECRET: &str = "fault-secret-fault-secret-fault-secret-0123456";
pub const PASSWORD: &str = "correct horse battery";

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until something accepts on `port`.
pub async fn wait_for_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Whether `tool` can run here. Missing outside CI: the test is skipped with a message; under
/// `CI=true` it fails (every fault scenario runs in CI), as helpers.rs does for backends.
pub fn require_tool(tool: &str) -> bool {
    let found = if tool.starts_with('/') {
        Path::new(tool).exists()
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} must be installed under CI=true: every fault scenario runs in CI");
        }
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status();
}

/// A directory removed on drop unless the test is failing (then it is kept, and named, so the
/// server logs in it can be read).
pub struct ScratchDir {
    dir: Option<tempfile::TempDir>,
}

impl ScratchDir {
    pub fn new() -> Self {
        Self {
            dir: Some(
                tempfile::Builder::new()
                    .prefix("pychat-faults-")
                    .tempdir()
                    .expect("temp dir"),
            ),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("dir").path()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("kept {} (server logs)", dir.keep().display());
        }
    }
}

fn run_ok(command: &mut Command, what: &str) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Redis

/// A redis-server of the test's own: killed and restarted empty, or stalled with SIGSTOP.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl PrivateRedis {
    pub async fn start(scratch: &ScratchDir) -> Self {
        let dir = scratch.path().join("redis");
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = Self {
            port: free_port(),
            child: None,
            dir,
        };
        redis.restart().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)).await,
            "redis-server never listened on {}",
            self.port
        );
    }

    /// SIGKILL: everything in it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn stall(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "STOP");
        }
    }

    pub fn resume(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
    }

    /// `PUBSUB CHANNELS pychat:*`: the user channels someone is subscribed to.
    pub fn channels(&self) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "PUBSUB",
                "CHANNELS",
                "pychat:*",
            ])
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id(), "CONT");
        }
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Databases

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        }
    }

    fn tools(self) -> &'static [&'static str] {
        match self {
            Self::Sqlite => &["sqlite3"],
            Self::Postgres => &[
                "/usr/lib/postgresql/15/bin/initdb",
                "/usr/lib/postgresql/15/bin/pg_ctl",
                "runuser",
                "psql",
            ],
            Self::Mysql => &["mariadbd", "mariadb-install-db", "mariadb"],
        }
    }
}

/// A database server of the test's own (or an SQLite file), which the scenario may crash.
pub struct PrivateDb {
    pub backend: Backend,
    pub port: u16,
    dir: PathBuf,
    mariadb: Option<Child>,
    pg_running: bool,
}

const DB_NAME: &str = "pychat";

/// One initialised data directory per backend, made once under cargo's target tmp dir and
/// copied for every test: `initdb` and `mariadb-install-db` take seconds each.
fn template(backend: Backend) -> &'static Path {
    static PG: OnceLock<PathBuf> = OnceLock::new();
    static MY: OnceLock<PathBuf> = OnceLock::new();
    let (cell, name) = match backend {
        Backend::Postgres => (&PG, "faults-template-postgres15"),
        _ => (&MY, "faults-template-mariadb"),
    };
    cell.get_or_init(|| {
        let done = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        if done.join("data").exists() {
            return done.join("data");
        }
        let root =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("template dir");
        match backend {
            Backend::Postgres => {
                // initdb runs as `postgres`, which may not be able to reach the target directory
                // (a checkout in a 0700 directory, as `mktemp -d` makes): it initialises in the
                // system temp dir, and the result is copied here.
                let scratch = tempfile::Builder::new()
                    .prefix("pychat-initdb-")
                    .tempdir()
                    .expect("initdb dir");
                run_ok(
                    Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(scratch.path()),
                    "chown the initdb dir",
                );
                run_ok(
                    Command::new("runuser")
                        .args(["-u", "postgres", "--"])
                        .arg(format!("{PG_BIN}/initdb"))
                        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
                        .arg("-D")
                        .arg(scratch.path().join("data")),
                    "initdb",
                );
                run_ok(
                    Command::new("cp")
                        .arg("-a")
                        .arg(scratch.path().join("data"))
                        .arg(root.join("data")),
                    "copy the template",
                );
            }
            _ => {
                run_ok(
                    Command::new("mariadb-install-db")
                        // The machine's my.cnf describes the machine's own server.
                        .arg("--no-defaults")
                        .arg(format!("--datadir={}", root.join("data").display()))
                        .args([
                            "--auth-root-authentication-method=normal",
                            "--user=root",
                            "--skip-test-db",
                        ]),
                    "mariadb-install-db",
                );
            }
        }
        if std::fs::rename(&root, &done).is_err() {
            // Another test process made it meanwhile.
            let _ = std::fs::remove_dir_all(&root);
        }
        done.join("data")
    })
}

impl PrivateDb {
    /// `None` (skipped) when a tool is missing outside CI.
    pub async fn start(backend: Backend, scratch: &ScratchDir) -> Option<Self> {
        for tool in backend.tools() {
            if !require_tool(tool) {
                return None;
            }
        }
        let dir = scratch.path().join("db");
        let mut db = Self {
            backend,
            port: free_port(),
            dir: dir.clone(),
            mariadb: None,
            pg_running: false,
        };
        match backend {
            Backend::Sqlite => std::fs::create_dir_all(&dir).expect("sqlite dir"),
            Backend::Postgres | Backend::Mysql => {
                let template = template(backend);
                run_ok(
                    Command::new("cp").arg("-a").arg(template).arg(&dir),
                    "copy the data directory",
                );
                if backend == Backend::Postgres {
                    run_ok(
                        Command::new("chown")
                            .args(["-R", "postgres:postgres"])
                            .arg(scratch.path()),
                        "chown",
                    );
                }
                db.restart().await;
                let create = match backend {
                    Backend::Postgres => format!("CREATE DATABASE {DB_NAME}"),
                    _ => format!(
                        "CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                    ),
                };
                db.sql_admin(&create).expect("create the database");
            }
        }
        Some(db)
    }

    pub fn url(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}", self.dir.join("pychat.sqlite3").display()),
            Backend::Postgres => format!(
                "postgres://postgres@127.0.0.1:{}/{DB_NAME}?gssencmode=disable",
                self.port
            ),
            Backend::Mysql => format!("mysql://root@127.0.0.1:{}/{DB_NAME}", self.port),
        }
    }

    /// Starts the server on its data directory (after a crash: it recovers).
    pub async fn restart(&mut self) {
        match self.backend {
            Backend::Sqlite => {}
            Backend::Postgres => {
                assert!(!self.pg_running, "postgres is already running");
                run_ok(
                    Command::new("runuser")
                        .args(["-u", "postgres", "--"])
                        .arg(format!("{PG_BIN}/pg_ctl"))
                        .arg("-D")
                        .arg(&self.dir)
                        .arg("-l")
                        .arg(self.dir.join("server.log"))
                        .arg("-o")
                        .arg(format!(
                            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                             -c max_connections=100 -c shared_buffers=32MB",
                            self.port,
                            self.dir.display()
                        ))
                        .args(["-w", "-t", "30", "start"]),
                    "pg_ctl start",
                );
                self.pg_running = true;
            }
            Backend::Mysql => {
                assert!(self.mariadb.is_none(), "mariadbd is already running");
                let child = Command::new("mariadbd")
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", self.dir.display()))
                    .arg(format!("--port={}", self.port))
                    .arg(format!(
                        "--socket={}",
                        self.dir.join("mysqld.sock").display()
                    ))
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.join("mysqld.pid").display()
                    ))
                    .arg(format!(
                        "--log-error={}",
                        self.dir.join("error.log").display()
                    ))
                    .args([
                        "--bind-address=127.0.0.1",
                        "--user=root",
                        "--skip-grant-tables",
                        "--skip-name-resolve",
                        "--innodb-buffer-pool-size=32M",
                        "--innodb-log-file-size=16M",
                        "--max-connections=200",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("mariadbd runs");
                self.mariadb = Some(child);
                let deadline = Instant::now() + Duration::from_secs(30);
                while self.sql_admin("SELECT 1").is_err() {
                    assert!(Instant::now() < deadline, "mariadbd never answered");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Crashes the server: PostgreSQL `stop -m immediate` (no checkpoint, recovery on start),
    /// MariaDB SIGKILL.
    pub fn crash(&mut self) {
        match self.backend {
            Backend::Sqlite => {}
            Backend::Postgres => {
                if self.pg_running {
                    let _ = Command::new("runuser")
                        .args(["-u", "postgres", "--"])
                        .arg(format!("{PG_BIN}/pg_ctl"))
                        .arg("-D")
                        .arg(&self.dir)
                        .args(["-m", "immediate", "-w", "stop"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    self.pg_running = false;
                }
            }
            Backend::Mysql => {
                if let Some(mut child) = self.mariadb.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }

    fn sql_admin(&self, sql: &str) -> Result<String, String> {
        self.sql_in(None, sql)
    }

    /// Runs `sql` with the backend's command-line client, in `database` (or the server's
    /// default one); tab-separated rows.
    fn sql_in(&self, database: Option<&str>, sql: &str) -> Result<String, String> {
        let out = match self.backend {
            Backend::Sqlite => Command::new("sqlite3")
                .arg("-separator")
                .arg("\t")
                .arg(self.dir.join("pychat.sqlite3"))
                .arg(sql)
                .output(),
            Backend::Postgres => Command::new("psql")
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "postgres", "-d", database.unwrap_or("postgres")])
                .args(["-X", "-q", "-t", "-A", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
                .args(["-c", sql])
                .env("PGCONNECT_TIMEOUT", "5")
                .output(),
            Backend::Mysql => Command::new("mariadb")
                .args(["-h", "127.0.0.1", "-P", &self.port.to_string()])
                .args(["-u", "root", "-N", "-B", "--connect-timeout=5"])
                .args(database.map(|d| format!("--database={d}")))
                .args(["-e", sql])
                .output(),
        }
        .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs a query on pychat's database: rows of columns.
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let text = self
            .sql_in(Some(DB_NAME), sql)
            .unwrap_or_else(|e| panic!("query {sql}: {e}"));
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('\t').map(String::from).collect())
            .collect()
    }
}

impl Drop for PrivateDb {
    fn drop(&mut self) {
        self.crash();
    }
}

// ---------------------------------------------------------------------------------------------
// pychat

/// One pychat process: the real binary, configured by `PYCHAT_*` variables. Its address stays
/// the same across restarts (a load balancer's backend).
pub struct Instance {
    pub port: u16,
    pub name: String,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Instance {
    pub fn new(name: &str, scratch: &ScratchDir, env: Vec<(String, String)>) -> Self {
        Self {
            port: free_port(),
            name: name.to_string(),
            env,
            log: scratch.path().join(format!("{name}.log")),
            child: None,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process and waits until it listens.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_pychat"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PYCHAT_BIND", self.addr())
            .env("PYCHAT_JWT_SECRET", JWT_SECRET)
            .env("PYCHAT_BCRYPT_COST", "4")
            .env("PYCHAT_WEB_DIR", "/nonexistent")
            .env("PYCHAT_LOG", "info")
            .env("NO_COLOR", "1")
            .env("PYCHAT_WORKERS", "2")
            .env("PYCHAT_ACCESS_TOKEN_TTL_SECS", "3600")
            .env("PYCHAT_INSTANCE_TIMEOUT_SECS", "3")
            .env("PYCHAT_WS_RATE_PER_SEC", "5000")
            .env("PYCHAT_WS_RATE_BURST", "5000")
            // Every client is 127.0.0.1, signing up many users and reconnecting through faults.
            .env("PYCHAT_REGISTRATIONS_PER_ADDRESS_PER_HOUR", "1000000")
            .env("PYCHAT_TICKETS_PER_USER_PER_MINUTE", "1000000")
            .env("PYCHAT_WS_CONNECTIONS_PER_USER", "1000000")
            .env("PYCHAT_WS_CONNECTIONS_PER_ADDRESS", "1000000")
            .env("PYCHAT_DATABASE_POOL_SIZE", "8");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let child = command
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("pychat runs");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(30)).await,
            "{} never listened (log: {})",
            self.name,
            self.log.display()
        );
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `within` for the exit; SIGKILL after that. Returns how long the
    /// process took, `None` if it had to be killed.
    pub async fn terminate(&mut self, within: Duration) -> Option<Duration> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        signal(child.id(), "TERM");
        while started.elapsed() < within {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}
