//! HTTP handlers: parse the request, call the service, shape the response. One file per resource.

pub mod auth;
pub mod body;
pub mod conversations;
pub mod error_response;
pub mod health;
pub mod ice;
pub mod me;
pub mod openapi;
pub mod rooms;
pub mod typescript;
pub mod users;
pub mod ws;

use std::net::{IpAddr, Ipv4Addr};

use actix_web::HttpRequest;

use crate::error::{AppError, ErrorCode};
use crate::limits::Limits;

/// A page size from the query: `default` when absent, and refused (400 `invalid_query`) outside
/// 1–`max` rather than silently changed, as the OpenAPI document declares.
pub fn page_limit(requested: Option<u32>, default: u32, max: u32) -> Result<u32, AppError> {
    match requested {
        None => Ok(default),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit),
        Some(_) => Err(AppError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {max}"),
        )),
    }
}

/// The client's address as the abuse limits count it: the TCP peer, or what a trusted proxy's
/// header says (see `limits::client_ip`).
pub fn client_address(req: &HttpRequest, limits: &Limits) -> IpAddr {
    let config = limits.client_ip();
    // Every request of ours comes over TCP; a test request without a peer counts as one client.
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| addr.ip());
    let forwarded: Vec<&str> = if config.trusted_proxies.is_empty() {
        Vec::new()
    } else {
        req.headers()
            .get_all(config.header.as_str())
            .filter_map(|value| value.to_str().ok())
            .collect()
    };
    config.client(peer, &forwarded)
}
