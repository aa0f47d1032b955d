//! pychat: a self-hostable chat and calling server.
//!
//! The binary in `main.rs` only parses the command line; everything it runs is built here so
//! that tests start the very same application.

pub mod accounts;
pub mod api;
pub mod app;
pub mod auth;
pub mod bus;
pub mod calls;
pub mod chat;
pub mod config;
pub mod db;
pub mod error;
pub mod input;
pub mod limits;
pub mod routes;
pub mod security;
pub mod shutdown;
pub mod spa;
pub mod telemetry;
pub mod ws;
