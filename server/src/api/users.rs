//! Finding other users.

use actix_web::web;
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::{IntoParams, ToSchema};

use crate::accounts::UserView;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::chat::Presence;
use crate::error::{AppError, ErrorBody};

const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// User-name prefix, case-insensitive. Empty lists everyone.
    #[serde(default)]
    #[param(pattern = r"^[^\x00]*$")]
    pub q: String,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Cursor: the `next_after` of the previous page.
    #[param(pattern = r"^[^\x00]*$")]
    pub after: Option<String>,
}

#[derive(Serialize, ToSchema, TS)]
pub struct UserList {
    pub users: Vec<UserView>,
    /// Present when another page follows.
    pub next_after: Option<String>,
}

/// Search users by name prefix.
#[utoipa::path(get, path = "/api/users", tag = "users", security(("bearer" = [])), params(SearchQuery), responses(
    (status = 200, body = UserList),
    (status = 401, body = ErrorBody),
))]
pub async fn search(
    state: web::Data<AppState>,
    _auth: AuthUser,
    query: web::Query<SearchQuery>,
) -> Result<web::Json<UserList>, AppError> {
    let query = query.into_inner();
    let limit = super::page_limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let page = state
        .accounts
        .search(&query.q, query.after, limit as usize)
        .await?;
    Ok(web::Json(UserList {
        users: page.users,
        next_after: page.next_after,
    }))
}

/// A public profile with the user's presence.
#[derive(Serialize, ToSchema, TS)]
pub struct Profile {
    #[serde(flatten)]
    pub user: UserView,
    pub presence: Presence,
}

/// A user's public profile.
#[utoipa::path(get, path = "/api/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path, description = "case-insensitive", example = "bob")),
    responses(
        (status = 200, body = Profile),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
))]
pub async fn profile(
    state: web::Data<AppState>,
    _auth: AuthUser,
    username: web::Path<String>,
) -> Result<web::Json<Profile>, AppError> {
    let user = state.accounts.profile(&username).await?;
    let presence = state.chat.presence(user.id).await?;
    Ok(web::Json(Profile { user, presence }))
}
