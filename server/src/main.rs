use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pychat::app::{Application, RunError, open_database};
use pychat::config::{ConfigError, RawSettings, Settings};
use pychat::db::users;

#[derive(Parser)]
#[command(
    name = "pychat",
    version,
    about = "Self-hostable chat and calling server"
)]
struct Cli {
    /// TOML file with settings; PYCHAT_* environment variables override it.
    #[arg(long, env = "PYCHAT_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// Apply migrations and serve HTTP and WebSocket (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document and exit.
    Openapi,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
}

#[derive(Subcommand, Clone)]
enum UserCommand {
    /// Sign the user out everywhere and refuse their sign-ins; their open sockets close within a
    /// second on every running instance.
    Disable { username: String },
    /// Let a disabled user sign in again.
    Enable { username: String },
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Database(#[from] pychat::db::StartupError),
    #[error("{0}")]
    User(String),
}

fn settings(cli: &Cli) -> Result<Settings, ConfigError> {
    let raw = RawSettings::load(cli.config.as_deref())?;
    pychat::telemetry::init(&raw.log)?;
    raw.resolve()
}

fn run(cli: &Cli) -> Result<(), MainError> {
    match cli.command.clone().unwrap_or(Command::Serve) {
        Command::Serve => {
            let settings = settings(cli)?;
            settings.log_effective();
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings).await?;
                actix_web::rt::spawn(pychat::shutdown::on_signals(app.stopper()));
                app.run_until_stopped().await.map_err(RunError::from)?;
                Ok(())
            })
        }
        Command::Migrate => {
            let settings = settings(cli)?;
            open_database(&settings)?;
            tracing::info!(database = %settings.database_url, "migrations up to date");
            Ok(())
        }
        Command::User { action } => {
            let settings = settings(cli)?;
            let db = open_database(&settings)?;
            let (username, disable) = match action {
                UserCommand::Disable { username } => (username, true),
                UserCommand::Enable { username } => (username, false),
            };
            let lookup = username.to_lowercase();
            let found = db
                .with_connection(|conn| {
                    Ok(users::set_disabled(
                        conn,
                        &lookup,
                        disable,
                        pychat::db::now(),
                    )?)
                })
                .map_err(|err| MainError::User(err.message().to_string()))?;
            let Some((user_id, revoked)) = found else {
                return Err(MainError::User(format!("no user named {username:?}")));
            };
            let state = if disable { "disabled" } else { "enabled" };
            tracing::info!(user_id, revoked_sessions = revoked.len(), "user {state}");
            Ok(())
        }
        Command::Openapi => {
            #[allow(clippy::print_stdout)]
            {
                print!("{}", pychat::api::openapi::to_pretty_json());
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pychat: error: {err}");
            ExitCode::FAILURE
        }
    }
}
