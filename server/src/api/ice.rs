//! ICE servers for WebRTC.

use actix_web::{HttpResponse, web};

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::calls::ice::IceServers;
use crate::error::ErrorBody;

/// STUN and TURN servers for `RTCPeerConnection`, with short-lived TURN credentials when a TURN
/// shared secret is configured.
#[utoipa::path(get, path = "/api/ice-servers", tag = "calls", security(("bearer" = [])), responses(
    (status = 200, body = IceServers),
    (status = 401, body = ErrorBody),
))]
pub async fn list(state: web::Data<AppState>, auth: AuthUser) -> HttpResponse {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(state.ice.servers_for(&auth.username, now))
}
