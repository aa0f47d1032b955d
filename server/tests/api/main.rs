//! Integration tests: real HTTP against the real application, one fresh database per test.

mod accounts;
mod authorization;
mod calls;
mod cli;
mod cluster;
mod concurrent_writes;
mod database_loss;
mod errors;
mod group_calls;
mod groups;
mod helpers;
mod hostile_input;
mod in_doubt;
mod limits;
mod migrations;
mod openapi;
mod protocol;
mod realtime;
mod security;
mod sessions_end;
mod shutdown;
mod tokens;
mod upgrade;
mod web_app;
mod writers;
mod ws_client;
