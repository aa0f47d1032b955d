//! The signed-in user's own account.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::body::Json;
use crate::accounts::UserView;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{AppError, ErrorBody};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// 1–64 characters after trimming, no control characters.
    #[schema(
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]*[^\s\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8][^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]*$"
    )]
    pub display_name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[schema(pattern = r"^[^\x00]*$")]
    pub current_password: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128, pattern = r"^[^\x00]*$")]
    pub new_password: String,
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/me", tag = "me", security(("bearer" = [])), responses(
    (status = 200, body = UserView),
    (status = 401, body = ErrorBody),
))]
pub async fn get(
    state: web::Data<AppState>,
    auth: AuthUser,
) -> Result<web::Json<UserView>, AppError> {
    Ok(web::Json(state.accounts.me(&auth).await?))
}

/// Change the display name.
#[utoipa::path(patch, path = "/api/me", tag = "me", security(("bearer" = [])), request_body = UpdateMeRequest, responses(
    (status = 200, body = UserView),
    (status = 401, body = ErrorBody),
    (status = 422, body = ErrorBody),
))]
pub async fn update(
    state: web::Data<AppState>,
    auth: AuthUser,
    body: Json<UpdateMeRequest>,
) -> Result<web::Json<UserView>, AppError> {
    Ok(web::Json(
        state
            .accounts
            .update_display_name(&auth, &body.display_name)
            .await?,
    ))
}

/// Change the password; every other session is signed out.
#[utoipa::path(put, path = "/api/me/password", tag = "me", security(("bearer" = [])), request_body = ChangePasswordRequest, responses(
    (status = 204, description = "changed"),
    (status = 401, body = ErrorBody),
    (status = 422, description = "`validation_failed`: `current_password` is `incorrect`, or `new_password` is invalid", body = ErrorBody),
))]
pub async fn change_password(
    state: web::Data<AppState>,
    auth: AuthUser,
    body: Json<ChangePasswordRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    state
        .accounts
        .change_password(&auth, body.current_password, body.new_password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
