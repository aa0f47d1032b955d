//! Integration tests: real HTTP against the real application, one fresh database per test.

mod accounts;
mod calls;
mod cli;
mod cluster;
mod database_loss;
mod errors;
mod helpers;
mod in_doubt;
mod openapi;
mod protocol;
mod realtime;
mod security;
mod shutdown;
mod tokens;
mod upgrade;
mod web_app;
mod writers;
mod ws_client;
