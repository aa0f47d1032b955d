use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use pychat::app::{Application, RunError, open_database};
use pychat::config::{ConfigError, RawSettings, Settings};

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

#[derive(Subcommand, Clone, Copy)]
enum Command {
    /// Apply migrations and serve HTTP and WebSocket (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document and exit.
    Openapi,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Database(#[from] pychat::db::StartupError),
}

fn settings(cli: &Cli) -> Result<Settings, ConfigError> {
    let raw = RawSettings::load(cli.config.as_deref())?;
    pychat::telemetry::init(&raw.log)?;
    raw.resolve()
}

fn run(cli: &Cli) -> Result<(), MainError> {
    match cli.command.unwrap_or(Command::Serve) {
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
