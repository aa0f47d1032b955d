//! HTTP handlers: parse the request, call the service, shape the response. One file per resource.

pub mod auth;
pub mod body;
pub mod conversations;
pub mod health;
pub mod ice;
pub mod me;
pub mod openapi;
pub mod rooms;
pub mod users;
pub mod ws;

use crate::error::{AppError, ErrorCode};

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
