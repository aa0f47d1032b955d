//! Requests that write at the same moment: on SQLite, where one writer holds the file at a time,
//! each waits its turn (no `database is locked`); on every backend, the answers are those of the
//! requests run one after another.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Session, TestApp};
use crate::on_every_backend;

on_every_backend!(@with |s: &mut pychat::config::Settings| s.database_pool_size = 16;
    sixteen_refreshes_at_once_all_succeed,
    one_refresh_token_presented_eight_times_at_once_wins_once,
);

async fn sixteen_refreshes_at_once_all_succeed(app: TestApp) {
    let mut sessions: Vec<Session> = Vec::new();
    for i in 0..16 {
        sessions.push(app.register(&format!("user{i}")).await);
    }
    for round in 0..3 {
        let replies = join_all(
            sessions
                .iter()
                .map(|s| app.post("/api/auth/refresh", json!({"refresh_token": s.refresh}))),
        )
        .await;
        for (i, reply) in replies.iter().enumerate() {
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "round {round}, user{i}: {:?}",
                reply.body
            );
            sessions[i] = crate::helpers::session_from(reply);
        }
    }
}

async fn one_refresh_token_presented_eight_times_at_once_wins_once(app: TestApp) {
    let ann = app.register("ann").await;
    let replies = join_all(
        (0..8).map(|_| app.post("/api/auth/refresh", json!({"refresh_token": ann.refresh}))),
    )
    .await;
    let statuses: Vec<StatusCode> = replies.iter().map(|r| r.status).collect();
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!((won, refused), (1, 7), "{statuses:?}");
    // The losers were a reuse: the session is revoked, the winner's new token with it.
    let winner = replies
        .iter()
        .find(|r| r.status == StatusCode::OK)
        .map(crate::helpers::session_from)
        .expect("a winner");
    let after = app
        .post(
            "/api/auth/refresh",
            json!({"refresh_token": winner.refresh}),
        )
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{:?}", after.body);
}
