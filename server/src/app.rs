//! Builds the application: state, middleware, routes, and the bound HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_http::HttpService;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, map_config};
use actix_web::dev::{AppConfig, Server, ServerHandle, Service};
use actix_web::middleware::{ErrorHandlers, Logger};
use actix_web::{App, web};

use crate::accounts::Accounts;
use crate::auth::{PasswordHasher, TokenIssuer, revocation};
use crate::bus::delivery::LogChannel;
use crate::bus::{Bus, RedisBus};
use crate::calls::Calls;
use crate::calls::ice::IceConfig;
use crate::chat::{Chat, ChatLimits};
use crate::config::Settings;
use crate::db::{Db, StartupError};
use crate::limits::Limits;
use crate::security::OriginPolicy;
use crate::shutdown::{Shutdown, Stopper};
use crate::ws::hub::Hub;
use crate::ws::session::Realtime;
use crate::ws::ticket::Tickets;

/// Everything handlers share. Cloned per worker; every field is a cheap handle.
pub struct AppState {
    pub db: Db,
    pub accounts: Accounts,
    pub tokens: TokenIssuer,
    pub chat: Chat,
    pub tickets: Tickets,
    pub realtime: Arc<Realtime>,
    pub ice: IceConfig,
    pub calls: Calls,
    pub origins: OriginPolicy,
    pub limits: Limits,
}

impl AppState {
    /// `log`: the message log's delivery the bus was connected to; `log_start`: the newest
    /// message id at start-up.
    pub fn new(settings: &Settings, db: Db, bus: Bus, log: LogChannel, log_start: i64) -> Self {
        let tokens = TokenIssuer::new(&settings.jwt_secret, settings.access_token_ttl);
        let accounts = Accounts::new(
            db.clone(),
            PasswordHasher::new(settings.bcrypt_cost),
            tokens.clone(),
            settings.refresh_token_ttl,
            Arc::new(bus.hub().clone()),
        );
        let chat = Chat::new(
            db.clone(),
            bus.clone(),
            log,
            log_start,
            ChatLimits {
                replay_page: 200,
                replay_max: settings.replay_max,
                message_writers: settings.message_writers,
                group_max_members: settings.group_max_members,
            },
        );
        let tickets = bus
            .redis()
            .map_or_else(Tickets::default, |redis| Tickets::shared(redis.commands()));
        let limits = Limits::new(&settings.limits, bus.redis().cloned());
        let calls = Calls::new(bus, chat.clone(), settings.calls);
        Self {
            db,
            accounts,
            tokens,
            realtime: Arc::new(Realtime {
                chat: chat.clone(),
                calls: calls.clone(),
                limits: settings.ws,
                shutdown: Shutdown::default(),
            }),
            calls,
            chat,
            tickets,
            ice: settings.ice.clone(),
            origins: settings.origins.clone(),
            limits,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Database(#[from] StartupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Redis(#[from] crate::bus::redis::RedisStartError),
}

/// Opens the database and applies pending migrations (blocking: call off the async workers).
pub fn open_database(settings: &Settings) -> Result<Db, StartupError> {
    let db = Db::connect_with_timeout(
        &settings.database_url,
        settings.database_pool_size,
        settings.database_timeout,
    )?;
    let applied = db.migrate(&settings.database_url)?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    Ok(db)
}

/// The newest message id: where this instance's delivery of the message log starts (before any
/// connection, so every connection replays what came before from the database).
fn log_start(db: &Db) -> Result<i64, StartupError> {
    db.with_connection(|conn| Ok(crate::db::events::newest_seq(conn)?.unwrap_or(0)))
        .map_err(|err| StartupError::Migrate {
            url: "the message log".into(),
            message: err.to_string(),
        })
}

/// This instance's hub. The instance id tells its connections and publishes apart from every
/// other instance's.
fn new_hub() -> Hub {
    let instance = loop {
        let id: u32 = rand::random();
        if id != 0 {
            break id;
        }
    };
    Hub::new(instance)
}

/// The in-process bus, or the Redis one when configured.
async fn connect_bus(settings: &Settings, hub: Hub, log: &LogChannel) -> Result<Bus, RunError> {
    let instance = hub.instance();
    let Some(url) = &settings.redis_url else {
        return Ok(Bus::in_process(hub));
    };
    let redis = RedisBus::connect(url.expose(), instance, hub.clone(), log.inbox()).await?;
    tracing::info!(instance, "fan-out through redis");
    actix_web::rt::spawn(redis.clone().supervise(hub.clone(), log.inbox()));
    let sweeper = redis.clone();
    let sweep_hub = hub.clone();
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            sweeper.unsubscribe_idle(&sweep_hub).await;
        }
    });
    Ok(Bus::with_redis(hub, redis))
}

/// With Redis: keeps this instance's heartbeat alive, and when another instance dies (killed,
/// crashed) clears what it left: its users go offline, its members leave their rooms, its calls
/// stop ringing, all within `timeout`.
fn maintain_cluster(state: &AppState, timeout: Duration) {
    let Some(redis) = state.chat.bus().redis().cloned() else {
        return;
    };
    let (chat, calls) = (state.chat.clone(), state.calls.clone());
    let ttl = timeout * 2 / 3;
    actix_web::rt::spawn(async move {
        let mut every = actix_web::rt::time::interval(timeout / 6);
        loop {
            every.tick().await;
            if let Err(err) = redis.heartbeat(ttl).await {
                tracing::debug!(error = %err, "instance heartbeat failed");
                continue;
            }
            let dead = match redis.reap_dead_instances(ttl).await {
                Ok(dead) => dead,
                Err(err) => {
                    tracing::debug!(error = %err, "reaping dead instances failed");
                    continue;
                }
            };
            for (instance, offline) in dead {
                calls.instance_died(instance).await;
                for user_id in offline {
                    if let Err(err) = chat.announce_offline(user_id).await {
                        tracing::warn!(error = %err, "presence announcement failed");
                    }
                }
            }
        }
    });
}

/// A bound, not yet running server. Tests bind port 0 and read the port from [`Self::addr`].
pub struct Application {
    server: Server,
    addr: SocketAddr,
    realtime: Arc<Realtime>,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, RunError> {
        let db_settings = settings.clone();
        let (db, start) = web::block(move || {
            let db = open_database(&db_settings)?;
            let start = log_start(&db)?;
            Ok::<_, StartupError>((db, start))
        })
        .await
        .map_err(std::io::Error::other)??;
        tracing::info!(backend = %db.backend(), "database ready");
        let hub = new_hub();
        let log = LogChannel::new(start, hub.clone());
        let bus = connect_bus(&settings, hub, &log).await?;
        let state = web::Data::new(AppState::new(&settings, db, bus, log, start));
        maintain_cluster(&state, settings.instance_timeout);
        let stopping = state.realtime.clone();
        actix_web::rt::spawn(revocation::sweep(
            state.db.clone(),
            Arc::new(state.chat.bus().hub().clone()),
            async move {
                stopping.shutdown.started().await;
            },
        ));
        let realtime = state.realtime.clone();

        let listener = TcpListener::bind(settings.bind).map_err(|source| RunError::Bind {
            addr: settings.bind,
            source,
        })?;
        let addr = listener.local_addr()?;
        let web_dir = settings.web_dir.clone();
        let app = move || {
            let mut app = App::new()
                .app_data(state.clone())
                // Inside the error handlers: its refusals get the API's error body.
                .wrap(state.origins.cors())
                .wrap(ErrorHandlers::new().default_handler(crate::routes::json_error_body))
                // %U is the path without the query string: nothing secret reaches the log.
                .wrap(
                    Logger::new("%{method}xi %U %s %b %Dms")
                        .custom_request_replace("method", |req| req.method().to_string()),
                )
                .wrap_fn(|req, service| {
                    let call = match crate::routes::refuse_nul(&req) {
                        Ok(()) => Ok(service.call(req)),
                        Err(refused) => Err(req.error_response(refused)),
                    };
                    async move {
                        let mut response = match call {
                            Ok(response) => response.await?.map_into_boxed_body(),
                            Err(refused) => refused,
                        };
                        crate::spa::apply_cache_control(&mut response);
                        crate::security::apply_headers(&mut response);
                        Ok(response)
                    }
                })
                .configure(crate::routes::configure);
            if let Some(dir) = &web_dir {
                app = app.service(crate::spa::service(dir));
            }
            // As actix-web's HttpServer serves an App. The default config differs from the one
            // HttpServer makes only in host name and local address, which nothing here reads
            // (they serve absolute URLs, and the host of requests without a Host header).
            map_config(
                app.into_factory()
                    .map_err(|err: actix_web::Error| err.error_response()),
                |()| AppConfig::default(),
            )
        };

        // What actix-web's HttpServer assembles, plus the upgrade service: requests that ask for
        // an upgrade reach `ws::upgrade` together with their connection.
        // Signals are `shutdown::on_signals`'s (the binary's): WebSocket sessions must be drained
        // before actix-server stops its workers.
        let mut server = actix_server::Server::build()
            .disable_signals()
            .shutdown_timeout(settings.shutdown_timeout.as_secs());
        let shutdown = server.graceful_shutdown_signal();
        server = server.listen("pychat", listener, move || {
            let shutdown = shutdown.clone();
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                // HttpServer's defaults (the builder's own disconnect timeout is zero).
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(addr)
                // Nagle's algorithm would hold a small write (an ack, a delivery) while an
                // earlier one waits for the peer's delayed ACK: ~25 ms at moderate load. The
                // session loop coalesces what is ready itself (`Connection::send_ready`).
                // Upgraded WebSockets keep the option with the socket.
                .tcp_nodelay(true)
                .upgrade(crate::ws::upgrade::service(app()))
                .finish(app())
                .tcp()
        })?;
        if let Some(workers) = settings.workers {
            server = server.workers(workers);
        }
        tracing::info!(%addr, "listening");
        Ok(Self {
            server: server.run(),
            addr,
            realtime,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Shuts the server down gracefully (what SIGTERM does; see `shutdown.rs`).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            server: self.server.handle(),
            realtime: self.realtime.clone(),
            timeout: self.shutdown_timeout,
        }
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
