//! The WebSocket endpoint and the tickets that open it.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::auth::extractor::bearer_token;
use crate::chat::Identity;
use crate::error::{AppError, ErrorBody, ErrorCode};
use crate::ws::session::SessionContext;
use crate::ws::ticket::{Holder, TICKET_TTL};
use crate::ws::upgrade;

#[derive(Serialize, ToSchema)]
pub struct TicketResponse {
    /// Connect to `/ws?ticket=…` within `expires_in` seconds; it works once.
    pub ticket: String,
    pub expires_in: u64,
}

/// Trade the access token for a single-use WebSocket ticket (browsers cannot set headers on a
/// WebSocket, and a token must never appear in a URL).
#[utoipa::path(post, path = "/api/ws/ticket", tag = "realtime", security(("bearer" = [])), responses(
    (status = 200, body = TicketResponse),
    (status = 401, body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many tickets for this user", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait"))),
))]
pub async fn ticket(state: web::Data<AppState>, auth: AuthUser) -> Result<HttpResponse, AppError> {
    state.limits.ticket(auth.user_id).await?;
    let ticket = state
        .tickets
        .issue(Holder {
            identity: Identity {
                user_id: auth.user_id,
                username: auth.username,
            },
            session_id: auth.session_id,
        })
        .await;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(TicketResponse {
            ticket,
            expires_in: TICKET_TTL.as_secs(),
        }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectQuery {
    /// From `POST /api/ws/ticket`. Without it, send `Authorization: Bearer`.
    #[param(pattern = r"^[^\x00]*$")]
    pub ticket: Option<String>,
    /// Resume: the newest message id the client has. Everything newer is replayed first.
    pub after: Option<i64>,
}

/// Upgrade to the WebSocket. Refused before upgrading: a bad or reused ticket with 401, a page of
/// another origin with 403, a user or address with too many open WebSockets with 429.
#[utoipa::path(get, path = "/ws", tag = "realtime", params(ConnectQuery), responses(
    (status = 101, description = "switching to the WebSocket protocol (see docs/protocol.md)"),
    (status = 400, description = "not a WebSocket handshake, or a malformed query", body = ErrorBody),
    (status = 401, description = "`invalid_ticket`, `invalid_token` or `missing_token`", body = ErrorBody),
    (status = 403, description = "`origin_not_allowed`: the `Origin` header names neither this server nor an allowed origin", body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many open WebSockets for this user or from this address", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait"))),
))]
pub async fn connect(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ConnectQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    // Before the ticket is redeemed: a refused page must not use it up.
    state.origins.check_websocket(&req)?;
    let query = query.into_inner();
    let auth = match &query.ticket {
        Some(ticket) => {
            let invalid = || {
                AppError::new(
                    ErrorCode::InvalidTicket,
                    "the ticket is unknown, expired or already used, or its session has ended",
                )
            };
            let holder = state.tickets.redeem(ticket).await.ok_or_else(invalid)?;
            // A ticket outlives nothing: one issued before a sign-out is void.
            state
                .live_session(holder.identity.user_id, holder.session_id)
                .await
                .map_err(|err| match err.code() {
                    ErrorCode::InvalidToken => invalid(),
                    _ => err,
                })?
        }
        None => state.authenticate(&bearer_token(&req)?).await?,
    };
    let identity = Identity {
        user_id: auth.user_id,
        username: auth.username,
    };
    let client = super::client_address(&req, &state.limits);
    let permit = state.limits.connection(identity.user_id, client)?;
    let user = state.accounts.user(identity.user_id).await?;
    let handshake = actix_http::ws::handshake(req.head())?;
    let context = SessionContext {
        identity,
        session_id: auth.session_id,
        display_name: user.display_name,
        realtime: state.realtime.clone(),
        resume_after: query.after,
    };
    Ok(upgrade::accept(handshake, context, permit))
}
