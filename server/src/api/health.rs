use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` / `ready`; `degraded` when Redis is unreachable (this instance still serves its own
    /// users); `unavailable` when the database is down; `shutting_down` once the server has been
    /// told to stop (SIGTERM) and is draining its connections.
    pub status: &'static str,
    pub database: &'static str,
    /// Cross-instance fan-out: `ok`, `degraded` or `disabled` (single instance).
    pub bus: &'static str,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        database: "unchecked",
        bus: "unchecked",
    })
}

/// Readiness: the database answers a query, and the server is not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, body = Health),
))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let bus = state.chat.bus().status();
    if state.realtime.shutdown.is_started() {
        return HttpResponse::ServiceUnavailable().json(Health {
            status: "shutting_down",
            database: "unchecked",
            bus,
        });
    }
    let database = state
        .db
        .run(|conn| {
            use diesel::connection::SimpleConnection;
            Ok(conn.batch_execute("SELECT 1")?)
        })
        .await;
    match database {
        Ok(()) => HttpResponse::Ok().json(Health {
            status: if bus == "degraded" {
                "degraded"
            } else {
                "ready"
            },
            database: "ok",
            bus,
        }),
        Err(_) => HttpResponse::ServiceUnavailable().json(Health {
            status: "unavailable",
            database: "unavailable",
            bus,
        }),
    }
}
