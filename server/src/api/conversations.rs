//! Conversations and their history. The caller is always one side of the pair: no endpoint takes
//! a second user, so nobody can read or mark another pair's conversation.

use actix_web::web;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::body::Json;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::chat::{ConversationPage, HistoryPage, Identity, ReadState};
use crate::db::events::PageCursor;
use crate::error::{AppError, ErrorBody, ErrorCode};

const DEFAULT_MESSAGES: u32 = 50;
const MAX_MESSAGES: u32 = 200;
const DEFAULT_CONVERSATIONS: u32 = 30;
const MAX_CONVERSATIONS: u32 = 100;

fn identity(auth: AuthUser) -> Identity {
    Identity {
        user_id: auth.user_id,
        username: auth.username,
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationsQuery {
    /// Cursor: the `next_before` of the previous page.
    pub before: Option<i64>,
    /// 1–100, default 30.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The caller's conversations, most recent first, with unread counts and the peer's presence.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", security(("bearer" = [])),
    params(ConversationsQuery),
    responses((status = 200, body = ConversationPage), (status = 401, body = ErrorBody)))]
pub async fn list(
    state: web::Data<AppState>,
    auth: AuthUser,
    query: web::Query<ConversationsQuery>,
) -> Result<web::Json<ConversationPage>, AppError> {
    let limit = super::page_limit(query.limit, DEFAULT_CONVERSATIONS, MAX_CONVERSATIONS)?;
    Ok(web::Json(
        state
            .chat
            .conversations(&identity(auth), query.before, limit as usize)
            .await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages older than this id (page backwards).
    pub before: Option<i64>,
    /// Messages newer than this id (page forwards). Not together with `before`.
    pub after: Option<i64>,
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A page of the conversation with `username`, oldest first. Without a cursor: the newest page.
#[utoipa::path(get, path = "/api/conversations/{username}/messages", tag = "conversations", security(("bearer" = [])),
    params(("username" = String, Path, example = "bob"), HistoryQuery),
    responses(
        (status = 200, body = HistoryPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
    ))]
pub async fn messages(
    state: web::Data<AppState>,
    auth: AuthUser,
    username: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<HistoryPage>, AppError> {
    let cursor = match (query.before, query.after) {
        (Some(_), Some(_)) => {
            return Err(AppError::new(
                ErrorCode::InvalidQuery,
                "give either before or after, not both",
            ));
        }
        (Some(before), None) => PageCursor::Before(before),
        (None, Some(after)) => PageCursor::After(after),
        (None, None) => PageCursor::Latest,
    };
    let limit = super::page_limit(query.limit, DEFAULT_MESSAGES, MAX_MESSAGES)?;
    Ok(web::Json(
        state
            .chat
            .history(&identity(auth), &username, cursor, i64::from(limit))
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The newest message id read.
    #[schema(minimum = 0)]
    pub up_to: i64,
}

/// Mark the conversation read up to a message. The peer gets a read receipt; the caller's other
/// connections get the new unread count.
#[utoipa::path(post, path = "/api/conversations/{username}/read", tag = "conversations", security(("bearer" = [])),
    params(("username" = String, Path, example = "bob")), request_body = ReadRequest,
    responses(
        (status = 200, body = ReadState),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
    ))]
pub async fn read(
    state: web::Data<AppState>,
    auth: AuthUser,
    username: web::Path<String>,
    body: Json<ReadRequest>,
) -> Result<web::Json<ReadState>, AppError> {
    Ok(web::Json(
        state
            .chat
            .mark_read(&identity(auth), &username, body.up_to)
            .await?,
    ))
}
