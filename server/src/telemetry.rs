//! Logging via `tracing`, filtered by `PYCHAT_LOG` (an `EnvFilter` directive such as `info` or
//! `pychat=debug,actix_web=info`).

use tracing_subscriber::EnvFilter;

use crate::config::ConfigError;

pub fn init(directive: &str) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(directive).map_err(|err| ConfigError {
        setting: "PYCHAT_LOG".into(),
        message: err.to_string(),
    })?;
    // A second init (tests build many apps in one process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
    Ok(())
}
