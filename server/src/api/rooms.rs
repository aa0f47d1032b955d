//! Call rooms over REST: read-only; rooms are created and joined over the WebSocket.

use actix_web::web;

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::calls::RoomView;
use crate::error::{AppError, ErrorBody};

/// A room's public state, for its members only: to anyone else the room does not exist.
#[utoipa::path(get, path = "/api/rooms/{name}", tag = "calls", security(("bearer" = [])),
    params(("name" = String, Path, description = "case-insensitive")),
    responses(
        (status = 200, body = RoomView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`room_not_found`: no open room has this name, or the caller holds no seat in it", body = ErrorBody),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    auth: AuthUser,
    name: web::Path<String>,
) -> Result<web::Json<RoomView>, AppError> {
    Ok(web::Json(
        state.calls.room_for_member(auth.user_id, &name).await?,
    ))
}
