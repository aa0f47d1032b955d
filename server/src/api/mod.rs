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
