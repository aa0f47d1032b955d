//! Storage: one diesel `MultiConnection` over SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! The backend is picked from the URL scheme, never by trial: diesel's SQLite driver accepts any
//! string as a file name. Queries are written once against [`DbConnection`]; the pool hands out
//! connections that already carry each backend's session settings.

pub mod messages;
pub mod reads;
pub mod schema;
pub mod sessions;
pub mod users;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::{SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::{MysqlConnection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::AppError;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
const MYSQL_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/mysql");

/// How long an SQLite writer waits for the lock before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

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

    fn establish(&self) -> ConnectionResult<DbConnection> {
        let mut conn = match self.backend {
            Backend::Sqlite => DbConnection::Sqlite(SqliteConnection::establish(&self.target)?),
            Backend::Postgres => DbConnection::Postgres(PgConnection::establish(&self.target)?),
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
}

impl r2d2::ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = ConnectionError;

    fn connect(&self) -> Result<DbConnection, ConnectionError> {
        self.url.establish()
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), ConnectionError> {
        conn.batch_execute("SELECT 1")
            .map_err(ConnectionError::CouldntSetupConfiguration)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        <DbConnection as Connection>::TransactionManager::is_broken_transaction_manager(conn)
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
}

impl Db {
    pub fn connect(url: &DatabaseUrl, pool_size: u32) -> Result<Self, StartupError> {
        if url.backend == Backend::Sqlite
            && let Some(parent) = std::path::Path::new(&url.target).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| StartupError::CreateDir {
                path: url.redacted(),
                source,
            })?;
        }
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            // Open connections on demand: many instances (or test databases) share one server.
            .min_idle(Some(pool_size.min(2)))
            .connection_timeout(Duration::from_secs(10))
            .build(Manager { url: url.clone() })
            .map_err(|source| StartupError::Connect {
                url: url.redacted(),
                source,
            })?;
        Ok(Self {
            pool,
            backend: url.backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Most connections the pool opens.
    pub fn pool_size(&self) -> u32 {
        self.pool.max_size()
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
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
            DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
            DbConnection::Mysql(c) => c.run_pending_migrations(MYSQL_MIGRATIONS),
        }
        .map_err(|err| migrate_error(err.to_string()))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    }

    /// Runs `work` with a pooled connection on the calling thread, which must be one that may
    /// block (the message writer's own thread).
    pub fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        let mut conn = self.pool.get().map_err(AppError::database_unavailable)?;
        work(&mut conn)
    }

    /// Runs `work` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, work: F) -> Result<T, AppError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        actix_web::web::block(move || {
            let mut conn = pool.get().map_err(AppError::database_unavailable)?;
            work(&mut conn)
        })
        .await
        .map_err(AppError::internal)?
    }
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
