//! Storage: one diesel `MultiConnection` over SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! The backend is picked from the URL scheme, never by trial: diesel's SQLite driver accepts any
//! string as a file name. Queries are written once against [`DbConnection`]; the pool hands out
//! connections that already carry each backend's session settings.

pub mod conversations;
pub mod events;
pub mod health;
pub mod schema;
pub mod sessions;
pub mod users;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::{MysqlConnection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{AppError, ErrorCode};

pub use health::{Health, app_error};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
const MYSQL_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/mysql");

/// The migrations of a backend, for tests that stop at an older schema.
pub fn migrations(backend: Backend) -> EmbeddedMigrations {
    match backend {
        Backend::Sqlite => SQLITE_MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
        Backend::Mysql => MYSQL_MIGRATIONS,
    }
}

/// How long an SQLite writer waits for the lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;
/// How long a checkout waits for a pooled connection when no timeout is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a request waiting for a pooled connection looks whether the database went down.
const CHECKOUT_RECHECK: Duration = Duration::from_millis(100);
/// What libpq is told unless the URL says otherwise: TCP keepalives after 5 s of silence, every
/// 2 s, 3 unanswered and the connection is dead; data unacknowledged for 10 s kills it too. A
/// query on a connection to a vanished server then fails in about 10 s instead of the kernel's
/// many minutes. (`connect_timeout` is added from the database timeout.)
const PG_TCP_PARAMS: &[(&str, &str)] = &[
    ("keepalives", "1"),
    ("keepalives_idle", "5"),
    ("keepalives_interval", "2"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "10000"),
];

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Mysql(MysqlConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
        })
    }
}

/// A database location with its backend; `Debug` and `Display` hide any password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// What the driver is given: a URL for the servers, a file path for SQLite.
    target: String,
}

impl DatabaseUrl {
    /// `postgres://` / `postgresql://`, `mysql://` / `mariadb://`, `sqlite://PATH`, or a bare path.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        let (backend, target) =
            if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
                (Backend::Postgres, raw.to_string())
            } else if raw.starts_with("mysql://") {
                (Backend::Mysql, raw.to_string())
            } else if let Some(rest) = raw.strip_prefix("mariadb://") {
                (Backend::Mysql, format!("mysql://{rest}"))
            } else if let Some(path) = raw.strip_prefix("sqlite://") {
                (Backend::Sqlite, path.to_string())
            } else if let Some(path) = raw.strip_prefix("sqlite:") {
                (Backend::Sqlite, path.to_string())
            } else if raw.contains("://") {
                return Err(format!(
                    "unsupported scheme in {:?}: use sqlite://, postgres:// or mysql://",
                    crate::config::redact_url(raw)
                ));
            } else {
                (Backend::Sqlite, raw.to_string())
            };
        if backend != Backend::Sqlite {
            url::Url::parse(&target).map_err(|err| format!("not a valid URL: {err}"))?;
        } else if target.is_empty() {
            return Err("sqlite:// needs a file path".into());
        }
        Ok(Self { backend, target })
    }

    pub fn sqlite_file(path: PathBuf) -> Self {
        Self {
            backend: Backend::Sqlite,
            target: path.to_string_lossy().into_owned(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn redacted(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}", self.target),
            _ => crate::config::redact_url(&self.target),
        }
    }

    /// The PostgreSQL URL with the connect timeout and TCP settings it does not set itself.
    fn with_pg_params(&self, connect_timeout: Duration) -> String {
        let Ok(mut url) = url::Url::parse(&self.target) else {
            return self.target.clone();
        };
        let given: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        // libpq takes whole seconds, at least 2.
        let timeout = connect_timeout.as_secs().max(2).to_string();
        let defaults = PG_TCP_PARAMS
            .iter()
            .copied()
            .chain([("connect_timeout", timeout.as_str())]);
        {
            let mut query = url.query_pairs_mut();
            for (key, value) in defaults {
                if !given.iter().any(|k| k == key) {
                    query.append_pair(key, value);
                }
            }
        }
        url.into()
    }

    fn establish(&self, connect_timeout: Duration) -> ConnectionResult<DbConnection> {
        let mut conn = match self.backend {
            Backend::Sqlite => DbConnection::Sqlite(SqliteConnection::establish(&self.target)?),
            Backend::Postgres => DbConnection::Postgres(PgConnection::establish(
                &self.with_pg_params(connect_timeout),
            )?),
            // diesel's MySQL connection already sets utf8mb4 and a UTC session time zone.
            Backend::Mysql => DbConnection::Mysql(MysqlConnection::establish(&self.target)?),
        };
        let setup = match self.backend {
            // synchronous=FULL: an ack must mean the row survives a power loss.
            Backend::Sqlite => format!(
                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
            ),
            Backend::Postgres => "SET TIME ZONE 'UTC'".to_string(),
            Backend::Mysql => "SET time_zone = '+00:00'".to_string(),
        };
        conn.batch_execute(&setup)
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
        Ok(conn)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// r2d2 manager that establishes the backend named by the URL and applies its session setup.
struct Manager {
    url: DatabaseUrl,
    timeout: Duration,
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<DbConnection, ConnectionError> {
        self.url.establish(self.timeout)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ConnectionError> {
        conn.batch_execute("SELECT 1")
            .map_err(ConnectionError::CouldntSetupConfiguration)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        <DbConnection as Connection>::TransactionManager::is_broken_transaction_manager(conn)
    }
}

/// r2d2 reports every failed attempt to open a connection, again and again while the database
/// is down; the probe reports the outage once (`health.rs`), so these go to the debug log.
#[derive(Debug)]
struct QuietErrors;

impl r2d2::HandleError<ConnectionError> for QuietErrors {
    fn handle_error(&self, err: ConnectionError) {
        tracing::debug!(error = %err, "database connection attempt failed");
    }
}

/// Errors opening the database at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot create the directory for {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: r2d2::Error },
    #[error("migrations failed on {url}: {message}")]
    Migrate { url: String, message: String },
}

/// The shared handle to the pool. Every checkout and query runs on the blocking pool so the
/// async workers never wait on the database.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<Manager>,
    backend: Backend,
    health: Arc<Health>,
    /// How long a checkout waits for a pooled connection while the database counts as up.
    timeout: Duration,
}

/// How long start-up waits for the database to answer (a server starting alongside, say).
const STARTUP_WAIT: Duration = Duration::from_secs(10);

impl Db {
    /// Opens the pool with the default checkout timeout.
    pub fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<Self, StartupError> {
        Self::connect_with_timeout(url, pool_size, DEFAULT_TIMEOUT)
    }

    /// Opens the pool; `timeout` bounds a checkout, a connection attempt and a health probe (see
    /// [`health`]).
    pub fn connect_with_timeout(
        url: &DatabaseUrl,
        pool_size: u32,
        timeout: Duration,
    ) -> Result<Self, StartupError> {
        if url.backend == Backend::Sqlite
            && let Some(parent) = std::path::Path::new(&url.target).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| StartupError::CreateDir {
                path: url.redacted(),
                source,
            })?;
        }
        let connect_error = |source| StartupError::Connect {
            url: url.redacted(),
            source,
        };
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            // Open connections on demand: many instances (or test databases) share one server.
            .min_idle(Some(pool_size.min(2)))
            // Also caps r2d2's back-off between attempts to open a connection at half of it, so
            // the pool refills soon after the database returns.
            .connection_timeout(timeout)
            .error_handler(Box::new(QuietErrors))
            .build_unchecked(Manager {
                url: url.clone(),
                timeout,
            });
        drop(pool.get_timeout(STARTUP_WAIT).map_err(connect_error)?);
        let health = match url.backend {
            Backend::Sqlite => Health::unprobed(),
            Backend::Postgres | Backend::Mysql => Health::probed(url, timeout),
        };
        Ok(Self {
            pool,
            backend: url.backend,
            health,
            timeout,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Most connections the pool opens.
    pub fn pool_size(&self) -> u32 {
        self.pool.max_size()
    }

    /// False while the database is known to be down: requests fail at once meanwhile.
    pub fn is_up(&self) -> bool {
        self.health.is_up()
    }

    /// Applies the embedded migrations of this backend that have not run yet.
    pub fn migrate(&self, url: &DatabaseUrl) -> Result<Vec<String>, StartupError> {
        let migrate_error = |message: String| StartupError::Migrate {
            url: url.redacted(),
            message,
        };
        let mut conn = self.pool.get().map_err(|source| StartupError::Connect {
            url: url.redacted(),
            source,
        })?;
        let applied = match &mut *conn {
            DbConnection::Sqlite(c) => c.run_pending_migrations(migrations(Backend::Sqlite)),
            DbConnection::Postgres(c) => c.run_pending_migrations(migrations(Backend::Postgres)),
            DbConnection::Mysql(c) => c.run_pending_migrations(migrations(Backend::Mysql)),
        }
        .map_err(|err| migrate_error(err.to_string()))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    }

    /// A pooled connection, or `database_unavailable`: at once while the database is known to be
    /// down, else once none has come free within the timeout. Waits in short steps so that a
    /// database found down meanwhile ends the wait.
    fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>, AppError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if !self.health.is_up() {
                return Err(AppError::database_down());
            }
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(CHECKOUT_RECHECK);
            match self.pool.get_timeout(step) {
                Ok(conn) => return Ok(conn),
                Err(err) if Instant::now() >= deadline => {
                    self.health.wake();
                    return Err(AppError::database_unavailable(err));
                }
                // No connection yet: the pool is busy, or connections fail. The probe tells.
                Err(_) => self.health.wake(),
            }
        }
    }

    /// Runs `work` on a checked-out connection; a failure that may be the database's wakes the
    /// probe.
    fn with_checkout<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        let mut conn = self.checkout()?;
        let result = work(&mut conn);
        if let Err(err) = &result
            && err.code() == ErrorCode::DatabaseUnavailable
        {
            self.health.wake();
        }
        result
    }

    /// Runs `work` with a pooled connection on the calling thread, which must be one that may
    /// block (the message writer's own thread).
    pub fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        self.with_checkout(work)
    }

    /// Runs `work` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        // Known down: no trip to the blocking pool.
        if !self.health.is_up() {
            return Err(AppError::database_down());
        }
        let db = self.clone();
        actix_web::web::block(move || db.with_checkout(work))
            .await
            .map_err(AppError::internal)?
    }
}

/// Runs `work` in a transaction that writes. On SQLite the transaction takes the write lock with
/// its first statement: one that reads first and writes later fails at once, without waiting for
/// the busy timeout (a "busy snapshot"), when another connection committed in between.
pub fn write_transaction<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    conn.transaction(|conn| {
        lock_sqlite_for_write(conn)?;
        work(conn)
    })
}

/// Inside a transaction on SQLite: takes the database's write lock now (waiting up to the busy
/// timeout), by a write that changes nothing. Does nothing on the other backends.
pub(crate) fn lock_sqlite_for_write(conn: &mut DbConnection) -> QueryResult<()> {
    if matches!(conn, DbConnection::Sqlite(_)) {
        conn.batch_execute("UPDATE sessions SET id = id WHERE id < 0")?;
    }
    Ok(())
}

/// Current UTC time, truncated to microseconds (the finest every backend stores).
pub fn now() -> time::PrimitiveDateTime {
    let now = time::OffsetDateTime::now_utc();
    let micros = now.microsecond();
    let now = now.replace_microsecond(micros).unwrap_or(now);
    time::PrimitiveDateTime::new(now.date(), now.time())
}

/// The id the last INSERT on this connection generated (for a multi-row INSERT on MySQL: the
/// first one), asked the way each backend answers it.
pub(crate) fn last_insert_id(conn: &mut DbConnection) -> QueryResult<i64> {
    let expression = match conn {
        DbConnection::Sqlite(_) => "last_insert_rowid()",
        DbConnection::Postgres(_) => "lastval()",
        DbConnection::Mysql(_) => "CAST(LAST_INSERT_ID() AS SIGNED)",
    };
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(expression)).get_result(conn)
}

/// True when a diesel error is a unique-constraint violation (same kind on all three backends).
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}
