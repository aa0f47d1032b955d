//! Abuse limits: failed sign-ins per account and address, sign-ups per address, WebSocket tickets
//! per user, open WebSockets per user and address, and per-account and per-address lanes in front
//! of password checks. No actix types here: handlers pass the client's address (from
//! [`client_ip`]) and turn a refusal, `429 rate_limited` with `Retry-After`, into a response.
//! What each limit defends and how it is shared in a cluster: `docs/security.md#abuse-limits`.

pub mod client_ip;
mod connections;
mod counter;
mod lanes;

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

pub use client_ip::ClientIpConfig;
pub use connections::ConnectionPermit;
pub use counter::Rule;

use crate::accounts::validate;
use crate::bus::RedisBus;
use crate::error::{AppError, ErrorCode};
use connections::{Connections, Full};
use counter::{Exceeded, Failures, Rate, Shared};
use lanes::{Lanes, Place};

/// Requests that may wait in one login lane besides those running; more are refused. Generous,
/// because a refused client retries at once, and a flood of cheap refusals takes the CPU the
/// idle-priority hashing threads need: waiting costs a future, refusing costs a request.
const LOGIN_LANE_WAITING: usize = 32;
/// What a refused connection is told to wait: nobody knows when one of the others closes.
const CONNECTION_RETRY_AFTER: Duration = Duration::from_secs(10);
/// What a request refused for a full login lane is told to wait: the lane moves at bcrypt speed.
const LANE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The configured limits (see `config.rs` for the settings and their defaults).
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Failed sign-ins for one account from one address.
    pub login_failures_per_account_address: Rule,
    /// Failed sign-ins for one account from every address.
    pub login_failures_per_account: Rule,
    /// Failed sign-ins from one address, whatever the account.
    pub login_failures_per_address: Rule,
    /// Password checks running at once for one address (one for an account, always).
    pub login_concurrency_per_address: usize,
    pub registrations_per_address: Rule,
    pub tickets_per_user: Rule,
    pub connections_per_user: u32,
    pub connections_per_address: u32,
    pub client_ip: ClientIpConfig,
}

pub struct Limits {
    shared: Shared,
    login_pairs: Failures,
    login_accounts: Failures,
    login_addresses: Failures,
    account_lanes: Lanes,
    address_lanes: Lanes,
    registrations: Rate,
    tickets: Rate,
    connections: Connections,
    client_ip: ClientIpConfig,
}

fn refused(message: &str, exceeded: Exceeded) -> AppError {
    AppError::rate_limited(message, exceeded.retry_after)
}

/// The account a sign-in names, as it is counted: the stored (lower-case) form, so `Ann` and
/// `ann` share a count. A name that cannot exist is counted too (an answer must not tell which
/// names exist), cut short so that it cannot grow the counters' keys.
fn account_key(username: &str) -> String {
    validate::username(username).unwrap_or_else(|_| {
        username
            .to_lowercase()
            .chars()
            .take(validate::USERNAME_MAX + 1)
            .collect()
    })
}

impl Limits {
    /// `redis`: the cluster's bus, when there is one; counts are then shared by every instance.
    pub fn new(settings: &LimitSettings, redis: Option<RedisBus>) -> Self {
        Self {
            shared: Shared::new(redis),
            login_pairs: Failures::new("login-pair", settings.login_failures_per_account_address),
            login_accounts: Failures::new("login-account", settings.login_failures_per_account),
            login_addresses: Failures::new("login-address", settings.login_failures_per_address),
            account_lanes: Lanes::new(1, LOGIN_LANE_WAITING),
            address_lanes: Lanes::new(settings.login_concurrency_per_address, LOGIN_LANE_WAITING),
            registrations: Rate::new("register", settings.registrations_per_address),
            tickets: Rate::new("ticket", settings.tickets_per_user),
            connections: Connections::new(
                settings.connections_per_user,
                settings.connections_per_address,
            ),
            client_ip: settings.client_ip.clone(),
        }
    }

    pub fn client_ip(&self) -> &ClientIpConfig {
        &self.client_ip
    }

    /// Runs a sign-in `attempt` for `username` from `client` within the limits: refused while the
    /// account, the address or the pair has had too many failures (even with the right
    /// password), queued behind the other checks for the same account and address, and counted
    /// when it fails with `invalid_credentials`. A success clears the pair's failures only: the
    /// owner signing in does not unlock the account for an attacker elsewhere.
    pub async fn login<T>(
        &self,
        username: &str,
        client: IpAddr,
        attempt: impl Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        let account = account_key(username);
        let address = client_ip::limit_key(client);
        let pair = format!("{address}|{account}");
        self.check_login(&account, &address, &pair).await?;
        let lane_full = || {
            AppError::rate_limited(
                "too many sign-ins in progress for this account or address",
                LANE_RETRY_AFTER,
            )
        };
        let mut account_place: Place = self.account_lanes.enter(&account).ok_or_else(lane_full)?;
        let mut address_place: Place = self.address_lanes.enter(&address).ok_or_else(lane_full)?;
        // Always the account's lane first, then the address's: nobody holds an address turn
        // while waiting for an account turn, so two requests can never wait for each other.
        account_place.turn().await;
        address_place.turn().await;
        // Failures counted while this one waited count too.
        self.check_login(&account, &address, &pair).await?;
        let outcome = attempt.await;
        match &outcome {
            Err(err) if err.code() == ErrorCode::InvalidCredentials => {
                tokio::join!(
                    self.login_pairs.fail(&self.shared, &pair),
                    self.login_accounts.fail(&self.shared, &account),
                    self.login_addresses.fail(&self.shared, &address),
                );
            }
            Ok(_) => self.login_pairs.clear(&self.shared, &pair).await,
            Err(_) => {}
        }
        outcome
    }

    /// Refused while any of the three counts is at its limit, told to wait for the longest.
    /// The three are asked at once: with Redis that is one round trip of waiting, not three.
    async fn check_login(&self, account: &str, address: &str, pair: &str) -> Result<(), AppError> {
        let checks = tokio::join!(
            self.login_pairs.check(&self.shared, pair),
            self.login_accounts.check(&self.shared, account),
            self.login_addresses.check(&self.shared, address),
        );
        let longest = [checks.0, checks.1, checks.2]
            .into_iter()
            .filter_map(Result::err)
            .max_by_key(|exceeded| exceeded.retry_after);
        match longest {
            Some(exceeded) => Err(refused(
                "too many failed sign-ins; try again later",
                exceeded,
            )),
            None => Ok(()),
        }
    }

    /// One sign-up from `client`.
    pub async fn register(&self, client: IpAddr) -> Result<(), AppError> {
        self.registrations
            .hit(&self.shared, &client_ip::limit_key(client))
            .await
            .map_err(|e| refused("too many sign-ups from this address; try again later", e))
    }

    /// One WebSocket ticket for `user_id`.
    pub async fn ticket(&self, user_id: i64) -> Result<(), AppError> {
        self.tickets
            .hit(&self.shared, &user_id.to_string())
            .await
            .map_err(|e| refused("too many WebSocket tickets; reconnect more slowly", e))
    }

    /// Counts a WebSocket of `user_id` from `client` for as long as the permit lives.
    pub fn connection(&self, user_id: i64, client: IpAddr) -> Result<ConnectionPermit, AppError> {
        self.connections
            .open(user_id, client_ip::limit_key(client))
            .map_err(|full| {
                let message = match full {
                    Full::User => "too many open WebSockets for this user",
                    Full::Address => "too many open WebSockets from this address",
                };
                AppError::rate_limited(message, CONNECTION_RETRY_AFTER)
            })
    }
}
