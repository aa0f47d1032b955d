//! Configuration: defaults, then an optional TOML file, then `PYCHAT_*` environment variables.
//!
//! [`RawSettings`] is what the sources say; [`Settings`] is the checked result the server runs
//! with. Every check names the setting it rejects, so a bad value stops the server with one line.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::calls::CallLimits;
use crate::calls::ice::IceConfig;
use crate::db::DatabaseUrl;
use crate::limits::{ClientIpConfig, LimitSettings, Rule};
use crate::security::{OriginPolicy, Origins};
use crate::ws::WsLimits;

pub const ENV_PREFIX: &str = "PYCHAT_";
const MIN_SECRET_BYTES: usize = 32;
const SECRET_FILE: &str = "jwt_secret";

/// A value that must never reach a log: its `Debug` and `Display` print a placeholder.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Settings as the sources state them, before any check.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub bind: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub database_pool_size: u32,
    /// How long a request waits for a pooled connection, and a health probe for an answer,
    /// before the database counts as unavailable.
    pub database_timeout_secs: u64,
    /// Message writer threads; unset: the backend's default (SQLite and clusters use one).
    pub message_writers: Option<usize>,
    pub redis_url: Option<String>,
    pub jwt_secret: Option<Secret>,
    pub bcrypt_cost: u32,
    pub log: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub workers: Option<usize>,
    pub ws_heartbeat_interval_secs: u64,
    pub ws_client_timeout_secs: u64,
    pub ws_rate_per_sec: f64,
    pub ws_rate_burst: f64,
    pub ws_outbound_queue: usize,
    pub replay_max: i64,
    /// Most members a group may have.
    pub group_max_members: usize,
    /// Comma-separated `stun:` URLs.
    pub stun_urls: String,
    /// Comma-separated `turn:` / `turns:` URLs.
    pub turn_urls: String,
    pub turn_secret: Option<Secret>,
    pub turn_credential_ttl_secs: u64,
    pub room_max_peers: u32,
    pub call_grace_secs: u64,
    pub call_ring_secs: u64,
    pub rooms_per_minute: usize,
    pub calls_per_minute: usize,
    /// The built web app; served when the directory exists.
    pub web_dir: PathBuf,
    /// Allows Redis fan-out over SQLite, for several processes on one machine sharing the file.
    pub single_machine: bool,
    /// How soon a killed instance's users are marked offline (with Redis).
    pub instance_timeout_secs: u64,
    /// How long a SIGTERM or SIGINT may take: draining connections, then exiting.
    pub shutdown_timeout_secs: u64,
    /// Comma-separated origins besides the server's own that may open the WebSocket.
    pub allowed_origins: String,
    /// Comma-separated origins that may call the API cross-origin (CORS); empty: none.
    pub cors_origins: String,
    /// Failed sign-ins for one account from one address within the failure window.
    pub login_failures_per_account_address: u32,
    /// Failed sign-ins for one account from all addresses within the failure window.
    pub login_failures_per_account: u32,
    /// Failed sign-ins from one address, whatever the account, within the failure window.
    pub login_failures_per_address: u32,
    pub login_failure_window_secs: u64,
    /// Password checks running at once for one client address.
    pub login_concurrency_per_address: usize,
    pub registrations_per_address_per_hour: u32,
    pub tickets_per_user_per_minute: u32,
    pub ws_connections_per_user: u32,
    pub ws_connections_per_address: u32,
    /// Comma-separated IPs or CIDRs of the proxies whose client-address header is believed.
    pub trusted_proxies: String,
    /// The header those proxies put the client's address in.
    pub client_ip_header: String,
}

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_pool_size: 16,
            database_timeout_secs: 2,
            message_writers: None,
            redis_url: None,
            jwt_secret: None,
            bcrypt_cost: 12,
            log: "info".into(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 60 * 60,
            workers: None,
            ws_heartbeat_interval_secs: 20,
            ws_client_timeout_secs: 60,
            ws_rate_per_sec: 30.0,
            ws_rate_burst: 60.0,
            // One release of several writers can bring a user up to a batch per writer at once;
            // the capacity costs nothing until used (the channel grows in 32-slot blocks).
            ws_outbound_queue: 2048,
            replay_max: 1000,
            group_max_members: 1000,
            stun_urls: String::new(),
            turn_urls: String::new(),
            turn_secret: None,
            turn_credential_ttl_secs: 24 * 60 * 60,
            room_max_peers: 6,
            call_grace_secs: 15,
            call_ring_secs: 30,
            rooms_per_minute: 10,
            calls_per_minute: 10,
            web_dir: PathBuf::from("web/dist"),
            single_machine: false,
            instance_timeout_secs: 30,
            shutdown_timeout_secs: 10,
            allowed_origins: String::new(),
            cors_origins: String::new(),
            // A person who forgot a password gets ten tries per quarter hour from where they are;
            // a botnet gets fifty per account; one address spraying many accounts a hundred.
            login_failures_per_account_address: 10,
            login_failures_per_account: 50,
            login_failures_per_address: 100,
            login_failure_window_secs: 15 * 60,
            login_concurrency_per_address: 1,
            // Enough for a household or a classroom behind one address signing up together.
            registrations_per_address_per_hour: 10,
            // A client reconnecting with back-off needs a few per minute.
            tickets_per_user_per_minute: 30,
            ws_connections_per_user: 32,
            ws_connections_per_address: 256,
            trusted_proxies: String::new(),
            client_ip_header: "X-Forwarded-For".into(),
        }
    }
}

/// A setting that cannot be used, named the way the operator wrote it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    pub setting: String,
    pub message: String,
}

impl ConfigError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            setting: env_name(field),
            message: message.into(),
        }
    }
}

fn env_name(field: &str) -> String {
    format!("{ENV_PREFIX}{}", field.to_ascii_uppercase())
}

impl RawSettings {
    const KEYS: &'static [&'static str] = &[
        "bind",
        "data_dir",
        "database_url",
        "database_pool_size",
        "database_timeout_secs",
        "message_writers",
        "redis_url",
        "jwt_secret",
        "bcrypt_cost",
        "log",
        "access_token_ttl_secs",
        "refresh_token_ttl_secs",
        "workers",
        "ws_heartbeat_interval_secs",
        "ws_client_timeout_secs",
        "ws_rate_per_sec",
        "ws_rate_burst",
        "ws_outbound_queue",
        "replay_max",
        "group_max_members",
        "stun_urls",
        "turn_urls",
        "turn_secret",
        "turn_credential_ttl_secs",
        "room_max_peers",
        "call_grace_secs",
        "call_ring_secs",
        "rooms_per_minute",
        "calls_per_minute",
        "web_dir",
        "single_machine",
        "instance_timeout_secs",
        "shutdown_timeout_secs",
        "allowed_origins",
        "cors_origins",
        "login_failures_per_account_address",
        "login_failures_per_account",
        "login_failures_per_address",
        "login_failure_window_secs",
        "login_concurrency_per_address",
        "registrations_per_address_per_hour",
        "tickets_per_user_per_minute",
        "ws_connections_per_user",
        "ws_connections_per_address",
        "trusted_proxies",
        "client_ip_header",
    ];

    /// Reads defaults, then `config_file` (if any), then the environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(ConfigError {
                    setting: "--config".into(),
                    message: format!("no such file: {}", path.display()),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only known names are read from the environment: other PYCHAT_* variables (the test
        // suite's, say) belong to other tools. The TOML file, by contrast, rejects unknown keys.
        figment = figment.merge(Env::prefixed(ENV_PREFIX).only(Self::KEYS));
        figment.extract().map_err(|err| {
            let field = err.path.last().cloned().unwrap_or_default();
            let setting = if field.is_empty() {
                "configuration".to_string()
            } else {
                env_name(&field)
            };
            ConfigError {
                setting,
                message: err.kind.to_string(),
            }
        })
    }

    /// Checks every value and resolves the derived ones (database URL, JWT secret).
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let bind: SocketAddr = self.bind.parse().map_err(|_| {
            ConfigError::new(
                "bind",
                format!(
                    "expected host:port such as 127.0.0.1:8080, got {:?}",
                    self.bind
                ),
            )
        })?;
        if !(4..=31).contains(&self.bcrypt_cost) {
            return Err(ConfigError::new(
                "bcrypt_cost",
                format!("must be between 4 and 31, got {}", self.bcrypt_cost),
            ));
        }
        if self.database_pool_size == 0 {
            return Err(ConfigError::new("database_pool_size", "must be at least 1"));
        }
        if self.database_timeout_secs == 0 {
            return Err(ConfigError::new(
                "database_timeout_secs",
                "must be at least 1",
            ));
        }
        if let Some(writers) = self.message_writers {
            let max = crate::chat::MAX_WRITERS;
            if !(1..=max).contains(&writers) {
                return Err(ConfigError::new(
                    "message_writers",
                    format!("must be between 1 and {max}"),
                ));
            }
            // Each writer holds a connection while it inserts and commits; leave the rest for
            // replays and REST.
            if u32::try_from(writers).unwrap_or(u32::MAX) >= self.database_pool_size {
                return Err(ConfigError::new(
                    "message_writers",
                    "must be below PYCHAT_DATABASE_POOL_SIZE",
                ));
            }
        }
        if self.access_token_ttl_secs < 30 {
            return Err(ConfigError::new(
                "access_token_ttl_secs",
                "must be at least 30 seconds",
            ));
        }
        if self.refresh_token_ttl_secs <= self.access_token_ttl_secs {
            return Err(ConfigError::new(
                "refresh_token_ttl_secs",
                "must be longer than PYCHAT_ACCESS_TOKEN_TTL_SECS",
            ));
        }
        if self.workers == Some(0) {
            return Err(ConfigError::new("workers", "must be at least 1"));
        }
        if self.ws_heartbeat_interval_secs == 0 {
            return Err(ConfigError::new(
                "ws_heartbeat_interval_secs",
                "must be at least 1",
            ));
        }
        if self.ws_client_timeout_secs <= self.ws_heartbeat_interval_secs {
            return Err(ConfigError::new(
                "ws_client_timeout_secs",
                "must be longer than PYCHAT_WS_HEARTBEAT_INTERVAL_SECS",
            ));
        }
        // Written to also reject NaN.
        if !self.ws_rate_per_sec.is_finite()
            || self.ws_rate_per_sec <= 0.0
            || !self.ws_rate_burst.is_finite()
            || self.ws_rate_burst < 1.0
        {
            return Err(ConfigError::new(
                "ws_rate_per_sec",
                "PYCHAT_WS_RATE_PER_SEC must be above 0 and PYCHAT_WS_RATE_BURST at least 1",
            ));
        }
        // One commit's fan-out arrives at once: a queue must hold it with room to spare.
        let min_queue = 2 * crate::chat::MAX_BATCH;
        if self.ws_outbound_queue < min_queue {
            return Err(ConfigError::new(
                "ws_outbound_queue",
                format!("must be at least {min_queue}"),
            ));
        }
        if self.replay_max < 1 {
            return Err(ConfigError::new("replay_max", "must be at least 1"));
        }
        if !(2..=100_000).contains(&self.group_max_members) {
            return Err(ConfigError::new(
                "group_max_members",
                "must be between 2 and 100000",
            ));
        }
        let stun_urls = url_list(&self.stun_urls, &["stun:", "stuns:"])
            .map_err(|m| ConfigError::new("stun_urls", m))?;
        let turn_urls = url_list(&self.turn_urls, &["turn:", "turns:"])
            .map_err(|m| ConfigError::new("turn_urls", m))?;
        if self.turn_secret.is_some() && turn_urls.is_empty() {
            return Err(ConfigError::new(
                "turn_secret",
                "is set but PYCHAT_TURN_URLS is empty",
            ));
        }
        if !(2..=16).contains(&self.room_max_peers) {
            return Err(ConfigError::new(
                "room_max_peers",
                "must be between 2 and 16 (a full mesh grows with the square)",
            ));
        }
        if self.instance_timeout_secs < 3 {
            return Err(ConfigError::new(
                "instance_timeout_secs",
                "must be at least 3",
            ));
        }
        if self.call_ring_secs == 0 {
            return Err(ConfigError::new("call_ring_secs", "must be at least 1"));
        }
        if self.rooms_per_minute == 0 || self.calls_per_minute == 0 {
            return Err(ConfigError::new(
                "rooms_per_minute",
                "PYCHAT_ROOMS_PER_MINUTE and PYCHAT_CALLS_PER_MINUTE must be at least 1",
            ));
        }
        let origins = OriginPolicy {
            allowed: Origins::parse(&self.allowed_origins)
                .map_err(|m| ConfigError::new("allowed_origins", m))?,
            cors: Origins::parse(&self.cors_origins)
                .map_err(|m| ConfigError::new("cors_origins", m))?,
        };
        let limits = self.limits()?;
        let database_url = match &self.database_url {
            Some(url) => DatabaseUrl::parse(url)
                .map_err(|message| ConfigError::new("database_url", message))?,
            None => DatabaseUrl::sqlite_file(self.data_dir.join("pychat.sqlite3")),
        };
        let redis_url = match &self.redis_url {
            Some(url) if !url.starts_with("redis://") && !url.starts_with("rediss://") => {
                return Err(ConfigError::new(
                    "redis_url",
                    "must start with redis:// or rediss://",
                ));
            }
            other => other.clone().map(Secret::new),
        };
        if redis_url.is_some()
            && database_url.backend() == crate::db::Backend::Sqlite
            && !self.single_machine
        {
            return Err(ConfigError::new(
                "redis_url",
                "Redis fan-out is for several instances, which need PostgreSQL or MySQL; \
                 with SQLite set PYCHAT_SINGLE_MACHINE=true if every instance runs on this machine",
            ));
        }
        let jwt_secret = match self.jwt_secret {
            Some(secret) => {
                check_secret_length(&secret).map_err(|m| ConfigError::new("jwt_secret", m))?;
                secret
            }
            None => load_or_create_secret(&self.data_dir)?,
        };
        Ok(Settings {
            bind,
            data_dir: self.data_dir,
            database_url,
            database_pool_size: self.database_pool_size,
            database_timeout: Duration::from_secs(self.database_timeout_secs),
            message_writers: self.message_writers,
            redis_url,
            jwt_secret,
            bcrypt_cost: self.bcrypt_cost,
            log: self.log,
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
            refresh_token_ttl: Duration::from_secs(self.refresh_token_ttl_secs),
            workers: self.workers,
            ws: WsLimits {
                heartbeat_interval: Duration::from_secs(self.ws_heartbeat_interval_secs),
                client_timeout: Duration::from_secs(self.ws_client_timeout_secs),
                rate_per_sec: self.ws_rate_per_sec,
                rate_burst: self.ws_rate_burst,
                outbound_queue: self.ws_outbound_queue,
            },
            replay_max: self.replay_max,
            group_max_members: self.group_max_members,
            web_dir: self
                .web_dir
                .join("index.html")
                .is_file()
                .then_some(self.web_dir),
            instance_timeout: Duration::from_secs(self.instance_timeout_secs),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            origins,
            limits,
            calls: CallLimits {
                max_peers: self.room_max_peers,
                grace: Duration::from_secs(self.call_grace_secs),
                ring_timeout: Duration::from_secs(self.call_ring_secs),
                rooms_per_minute: self.rooms_per_minute,
                calls_per_minute: self.calls_per_minute,
            },
            ice: IceConfig {
                stun_urls,
                turn_urls,
                turn_secret: self.turn_secret,
                turn_credential_ttl: Duration::from_secs(self.turn_credential_ttl_secs),
            },
        })
    }
}

impl RawSettings {
    /// The abuse limits: every count at least 1, the proxies as networks, the header a name.
    fn limits(&self) -> Result<LimitSettings, ConfigError> {
        for (field, value) in [
            (
                "login_failures_per_account_address",
                self.login_failures_per_account_address,
            ),
            (
                "login_failures_per_account",
                self.login_failures_per_account,
            ),
            (
                "login_failures_per_address",
                self.login_failures_per_address,
            ),
            (
                "registrations_per_address_per_hour",
                self.registrations_per_address_per_hour,
            ),
            (
                "tickets_per_user_per_minute",
                self.tickets_per_user_per_minute,
            ),
            ("ws_connections_per_user", self.ws_connections_per_user),
            (
                "ws_connections_per_address",
                self.ws_connections_per_address,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::new(field, "must be at least 1"));
            }
        }
        if self.login_failure_window_secs == 0 {
            return Err(ConfigError::new(
                "login_failure_window_secs",
                "must be at least 1",
            ));
        }
        if self.login_concurrency_per_address == 0 {
            return Err(ConfigError::new(
                "login_concurrency_per_address",
                "must be at least 1",
            ));
        }
        let trusted_proxies = self
            .trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        ConfigError::new(
                            "trusted_proxies",
                            format!("{p:?} is neither an IP address nor a CIDR such as 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let header = self.client_ip_header.trim().to_ascii_lowercase();
        // RFC 9110 token characters: what a header name may be made of.
        let is_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if header.is_empty() || !header.chars().all(is_token) {
            return Err(ConfigError::new(
                "client_ip_header",
                format!("{:?} is not a header name", self.client_ip_header),
            ));
        }
        let window = Duration::from_secs(self.login_failure_window_secs);
        let failures = |max| Rule { max, window };
        Ok(LimitSettings {
            login_failures_per_account_address: failures(self.login_failures_per_account_address),
            login_failures_per_account: failures(self.login_failures_per_account),
            login_failures_per_address: failures(self.login_failures_per_address),
            login_concurrency_per_address: self.login_concurrency_per_address,
            registrations_per_address: Rule {
                max: self.registrations_per_address_per_hour,
                window: Duration::from_secs(60 * 60),
            },
            tickets_per_user: Rule {
                max: self.tickets_per_user_per_minute,
                window: Duration::from_secs(60),
            },
            connections_per_user: self.ws_connections_per_user,
            connections_per_address: self.ws_connections_per_address,
            client_ip: ClientIpConfig {
                trusted_proxies,
                header,
            },
        })
    }
}

/// Splits a comma-separated list of URLs, each of which must start with one of `schemes`.
fn url_list(raw: &str, schemes: &[&str]) -> Result<Vec<String>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            if schemes.iter().any(|s| u.starts_with(s)) {
                Ok(u.to_string())
            } else {
                Err(format!("{u:?} must start with {}", schemes.join(" or ")))
            }
        })
        .collect()
}

fn check_secret_length(secret: &Secret) -> Result<(), String> {
    let len = secret.expose().len();
    if len < MIN_SECRET_BYTES {
        return Err(format!(
            "must be at least {MIN_SECRET_BYTES} bytes, got {len}"
        ));
    }
    Ok(())
}

/// Keeps a generated secret in the data directory so tokens survive a restart.
fn load_or_create_secret(data_dir: &Path) -> Result<Secret, ConfigError> {
    let path = data_dir.join(SECRET_FILE);
    let data_dir_error =
        |err: std::io::Error| ConfigError::new("data_dir", format!("{}: {err}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(contents) => {
            let secret = Secret::new(contents.trim());
            check_secret_length(&secret).map_err(|m| {
                ConfigError::new("data_dir", format!("{}: secret {m}", path.display()))
            })?;
            Ok(secret)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(data_dir_error)?;
            let secret = Secret::new(crate::auth::tokens::random_token(48));
            write_private_file(&path, secret.expose()).map_err(data_dir_error)?;
            tracing::info!(path = %path.display(), "generated a new JWT secret");
            Ok(secret)
        }
        Err(err) => Err(data_dir_error(err)),
    }
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// Checked settings the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: DatabaseUrl,
    pub database_pool_size: u32,
    pub database_timeout: Duration,
    pub message_writers: Option<usize>,
    pub redis_url: Option<Secret>,
    pub jwt_secret: Secret,
    pub bcrypt_cost: u32,
    pub log: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub workers: Option<usize>,
    pub ws: WsLimits,
    pub replay_max: i64,
    pub group_max_members: usize,
    pub ice: IceConfig,
    pub calls: CallLimits,
    /// The web app to serve, if it has been built.
    pub web_dir: Option<PathBuf>,
    pub instance_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub origins: OriginPolicy,
    pub limits: LimitSettings,
}

impl Settings {
    /// Logs the effective configuration; secrets and URL passwords are redacted.
    pub fn log_effective(&self) {
        tracing::info!(
            bind = %self.bind,
            data_dir = %self.data_dir.display(),
            database = %self.database_url.redacted(),
            database_pool_size = self.database_pool_size,
            database_timeout_secs = self.database_timeout.as_secs(),
            message_writers = self.message_writers.map_or("auto".to_string(), |w| w.to_string()),
            redis = %self.redis_url.as_ref().map_or("in-process".to_string(), |url| redact_url(url.expose())),
            jwt_secret = "[redacted]",
            bcrypt_cost = self.bcrypt_cost,
            access_token_ttl_secs = self.access_token_ttl.as_secs(),
            refresh_token_ttl_secs = self.refresh_token_ttl.as_secs(),
            workers = self.workers.map_or("auto".to_string(), |w| w.to_string()),
            ws = ?self.ws,
            replay_max = self.replay_max,
            calls = ?self.calls,
            limits = ?self.limits,
            shutdown_timeout_secs = self.shutdown_timeout.as_secs(),
            allowed_origins = ?self.origins.allowed,
            cors_origins = ?self.origins.cors,
            web_dir = self.web_dir.as_ref().map_or("not built (API only)".to_string(), |d| d.display().to_string()),
            stun_urls = ?self.ice.stun_urls,
            turn_urls = ?self.ice.turn_urls,
            turn_secret = if self.ice.turn_secret.is_some() { "[redacted]" } else { "unset" },
            "effective configuration"
        );
    }
}

/// Replaces a URL's password, if any, with `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                // set_password fails only for URLs that cannot have one, which this one has.
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "[unparseable url]".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("super-secret-value-that-is-long-enough");
        assert_eq!(format!("{secret:?}"), "[redacted]");
    }

    #[test]
    fn redacts_url_password() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/pychat"),
            "postgres://app:***@db:5432/pychat"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn rejects_short_secret_naming_the_setting() {
        let raw = RawSettings {
            jwt_secret: Some(Secret::new("short")),
            ..RawSettings::default()
        };
        let err = raw.resolve().expect_err("short secret accepted");
        assert_eq!(err.setting, "PYCHAT_JWT_SECRET");
    }

    #[test]
    fn message_writers_must_leave_pool_connections() {
        for (writers, pool) in [(0, 16), (16, 16), (crate::chat::MAX_WRITERS + 1, 64)] {
            let raw = RawSettings {
                message_writers: Some(writers),
                database_pool_size: pool,
                jwt_secret: Some(Secret::new("x".repeat(32))),
                ..RawSettings::default()
            };
            let err = raw.resolve().expect_err("bad writer count accepted");
            assert_eq!(err.setting, "PYCHAT_MESSAGE_WRITERS");
        }
        let raw = RawSettings {
            message_writers: Some(4),
            jwt_secret: Some(Secret::new("x".repeat(32))),
            ..RawSettings::default()
        };
        assert_eq!(raw.resolve().expect("4 writers").message_writers, Some(4));
    }

    #[test]
    fn origin_lists_are_checked_naming_the_setting() {
        for (field, setting) in [
            ("allowed", "PYCHAT_ALLOWED_ORIGINS"),
            ("cors", "PYCHAT_CORS_ORIGINS"),
        ] {
            let mut raw = RawSettings {
                jwt_secret: Some(Secret::new("x".repeat(32))),
                ..RawSettings::default()
            };
            let bad = "https://chat.example.com, chat.example.com".to_string();
            if field == "allowed" {
                raw.allowed_origins = bad;
            } else {
                raw.cors_origins = bad;
            }
            let err = raw
                .resolve()
                .expect_err("a bare host accepted as an origin");
            assert_eq!(err.setting, setting);
        }
        let settings = RawSettings {
            jwt_secret: Some(Secret::new("x".repeat(32))),
            ..RawSettings::default()
        }
        .resolve()
        .expect("defaults");
        assert!(settings.origins.allowed.is_empty() && settings.origins.cors.is_empty());
    }

    #[test]
    fn reads_trusted_proxies_and_rejects_bad_ones() {
        let raw = RawSettings {
            trusted_proxies: " 10.0.0.0/8, 192.0.2.7 ,::1".into(),
            jwt_secret: Some(Secret::new("x".repeat(32))),
            ..RawSettings::default()
        };
        let limits = raw.resolve().expect("valid proxies").limits;
        assert_eq!(limits.client_ip.trusted_proxies.len(), 3);
        assert_eq!(limits.client_ip.header, "x-forwarded-for");
        for (proxies, header, setting) in [
            ("10.0.0.0/33", "X-Forwarded-For", "PYCHAT_TRUSTED_PROXIES"),
            ("", "X Forwarded", "PYCHAT_CLIENT_IP_HEADER"),
        ] {
            let raw = RawSettings {
                trusted_proxies: proxies.into(),
                client_ip_header: header.into(),
                jwt_secret: Some(Secret::new("x".repeat(32))),
                ..RawSettings::default()
            };
            let err = raw.resolve().expect_err("bad value accepted");
            assert_eq!(err.setting, setting);
        }
    }

    #[test]
    fn rejects_bad_bcrypt_cost() {
        let raw = RawSettings {
            bcrypt_cost: 3,
            jwt_secret: Some(Secret::new("x".repeat(32))),
            ..RawSettings::default()
        };
        let err = raw.resolve().expect_err("cost 3 accepted");
        assert_eq!(err.setting, "PYCHAT_BCRYPT_COST");
    }

    #[test]
    fn generated_secret_is_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_secret(dir.path()).expect("create");
        let second = load_or_create_secret(dir.path()).expect("reload");
        assert_eq!(first.expose(), second.expose());
        assert!(first.expose().len() >= MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
