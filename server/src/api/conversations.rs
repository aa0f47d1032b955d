//! Conversations, their members and their history. Every endpoint acts as the caller: a
//! conversation they do not belong to is `conversation_not_found`, as one that does not exist.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::body::Json;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::chat::{
    ConversationPage, ConversationType, ConversationView, GroupChange, HistoryPage, Identity,
    MemberList, ReadState, Role,
};
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

/// A conversation id from the path: anything else names no conversation.
fn conversation_id(raw: &str) -> Result<i64, AppError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        AppError::new(
            ErrorCode::ConversationNotFound,
            "a conversation is named by its numeric id",
        )
    })
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

/// The caller's conversations, most recent first: groups, and direct conversations with a
/// message; with unread counts and a direct peer's presence.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", security(("bearer" = [])),
    params(ConversationsQuery),
    responses((status = 200, body = ConversationPage), (status = 401, body = ErrorBody)))]
pub async fn list(
    state: web::Data<AppState>,
    auth: AuthUser,
    query: web::Query<ConversationsQuery>,
) -> Result<web::Json<ConversationPage>, AppError> {
    let limit = super::page_limit(query.limit, DEFAULT_CONVERSATIONS, MAX_CONVERSATIONS)?;
    let mut page = state
        .chat
        .conversations(&identity(auth), query.before, limit as usize)
        .await?;
    with_calls(&state, &mut page.conversations).await;
    Ok(web::Json(page))
}

/// Marks the groups with a call going on.
async fn with_calls(state: &AppState, views: &mut [ConversationView]) {
    if !views.iter().any(|v| v.kind == ConversationType::Group) {
        return;
    }
    let mut calls = state.calls.active_calls().await;
    for view in views {
        view.active_call = calls.remove(&view.id);
    }
}

/// One conversation of the user's, with its call.
async fn view_of(state: &AppState, user: &Identity, id: i64) -> Result<ConversationView, AppError> {
    let mut view = state.chat.conversation(user, id).await?;
    with_calls(state, std::slice::from_mut(&mut view)).await;
    Ok(view)
}

/// Either `user` (the direct conversation with them) or `title` and `members` (a new group).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConversation {
    /// Open (or find) the direct conversation with this user.
    pub user: Option<String>,
    /// A new group's title (1–128 characters).
    #[schema(min_length = 1, max_length = 128)]
    pub title: Option<String>,
    /// A new group's first members besides you (user names, at most 100).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub members: Vec<String>,
}

/// Opens the direct conversation with `user` (200, or the existing one), or makes a group
/// with you as its owner (201).
#[utoipa::path(post, path = "/api/conversations", tag = "conversations", security(("bearer" = [])),
    request_body = NewConversation,
    responses(
        (status = 200, description = "the direct conversation", body = ConversationView),
        (status = 201, description = "the new group", body = ConversationView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`user_not_found`", body = ErrorBody),
        (status = 409, description = "`group_full`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody),
    ))]
pub async fn create(
    state: web::Data<AppState>,
    auth: AuthUser,
    body: Json<NewConversation>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let user = identity(auth);
    match (body.user, body.title) {
        (Some(peer), None) if body.members.is_empty() => {
            Ok(HttpResponse::Ok().json(state.chat.direct_with(&user, &peer).await?))
        }
        (None, Some(title)) => Ok(HttpResponse::Created().json(
            state
                .chat
                .create_group(&user, &title, &body.members)
                .await?,
        )),
        _ => Err(field_error(
            "user",
            "give either \"user\" (a direct conversation) or \"title\" and \"members\" (a group)",
        )),
    }
}

fn field_error(field: &'static str, message: impl Into<String>) -> AppError {
    AppError::validation(vec![crate::error::FieldError {
        field,
        code: "invalid",
        message: message.into(),
    }])
}

/// One of the caller's conversations.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = i64, Path, example = 7)),
    responses(
        (status = 200, body = ConversationView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<String>,
) -> Result<web::Json<ConversationView>, AppError> {
    let id = conversation_id(&id)?;
    Ok(web::Json(view_of(&state, &identity(auth), id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationUpdate {
    /// The group's new title (1–128 characters).
    #[schema(min_length = 1, max_length = 128)]
    pub title: String,
}

/// Renames a group (its owner and admins).
#[utoipa::path(patch, path = "/api/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = i64, Path, example = 7)), request_body = ConversationUpdate,
    responses(
        (status = 200, body = ConversationView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
        (status = 409, description = "`not_a_group`", body = ErrorBody),
    ))]
pub async fn update(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<String>,
    body: Json<ConversationUpdate>,
) -> Result<web::Json<ConversationView>, AppError> {
    let id = conversation_id(&id)?;
    let user = identity(auth);
    state
        .chat
        .change_group(&user, id, GroupChange::Rename(body.into_inner().title))
        .await?;
    Ok(web::Json(view_of(&state, &user, id).await?))
}

/// The conversation's current members: owner first, then admins, then members.
#[utoipa::path(get, path = "/api/conversations/{id}/members", tag = "conversations", security(("bearer" = [])),
    params(("id" = i64, Path, example = 7)),
    responses(
        (status = 200, body = MemberList),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    ))]
pub async fn members(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<String>,
) -> Result<web::Json<MemberList>, AppError> {
    let id = conversation_id(&id)?;
    Ok(web::Json(state.chat.members(&identity(auth), id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    /// User names (at most 100); those who are members already are left as they are.
    #[schema(min_items = 1, max_items = 100)]
    pub users: Vec<String>,
}

/// Adds members to a group (its owner and admins).
#[utoipa::path(post, path = "/api/conversations/{id}/members", tag = "conversations", security(("bearer" = [])),
    params(("id" = i64, Path, example = 7)), request_body = AddMembers,
    responses(
        (status = 200, body = MemberList),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`, `user_not_found`", body = ErrorBody),
        (status = 409, description = "`group_full`, `not_a_group`", body = ErrorBody),
    ))]
pub async fn add_members(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<String>,
    body: Json<AddMembers>,
) -> Result<web::Json<MemberList>, AppError> {
    let id = conversation_id(&id)?;
    let users = body.into_inner().users;
    let user = identity(auth);
    state
        .chat
        .change_group(&user, id, GroupChange::Add(users))
        .await?;
    Ok(web::Json(state.chat.members(&user, id).await?))
}

/// Removes a member (owner and admins; admins remove members only). Your own name: you leave.
#[utoipa::path(delete, path = "/api/conversations/{id}/members/{username}", tag = "conversations", security(("bearer" = [])),
    params(("id" = i64, Path, example = 7), ("username" = String, Path, example = "bob")),
    responses(
        (status = 204, description = "removed"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`, `member_not_found`", body = ErrorBody),
        (status = 409, description = "`not_a_group`", body = ErrorBody),
    ))]
pub async fn remove_member(
    state: web::Data<AppState>,
    auth: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (id, username) = path.into_inner();
    let id = conversation_id(&id)?;
    let by = identity(auth);
    state
        .chat
        .change_group(&by, id, GroupChange::Remove(username.clone()))
        .await?;
    let (removed, _) = state.chat.resolve_user(&username).await?;
    state
        .calls
        .conversation_member_gone(id, removed, &by.username)
        .await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdate {
    /// `owner` hands the group over (you become an admin).
    pub role: Role,
}

/// Sets a member's role (the owner only).
#[utoipa::path(patch, path = "/api/conversations/{id}/members/{username}", tag = "conversations", security(("bearer" = [])),
    params(("id" = i64, Path, example = 7), ("username" = String, Path, example = "bob")),
    request_body = RoleUpdate,
    responses(
        (status = 200, body = MemberList),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`conversation_not_found`, `member_not_found`", body = ErrorBody),
        (status = 409, description = "`not_a_group`", body = ErrorBody),
    ))]
pub async fn set_role(
    state: web::Data<AppState>,
    auth: AuthUser,
    path: web::Path<(String, String)>,
    body: Json<RoleUpdate>,
) -> Result<web::Json<MemberList>, AppError> {
    let (id, username) = path.into_inner();
    let id = conversation_id(&id)?;
    let user = identity(auth);
    state
        .chat
        .change_group(&user, id, GroupChange::SetRole(username, body.role))
        .await?;
    Ok(web::Json(state.chat.members(&user, id).await?))
}

/// Leaves a group. An owner who leaves hands it to the oldest admin, or else the oldest member.
#[utoipa::path(post, path = "/api/conversations/{id}/leave", tag = "conversations", security(("bearer" = [])),
    params(("id" = i64, Path, example = 7)),
    responses(
        (status = 204, description = "left"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
        (status = 409, description = "`not_a_group`", body = ErrorBody),
    ))]
pub async fn leave(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = conversation_id(&id)?;
    let user = identity(auth);
    state
        .chat
        .change_group(&user, id, GroupChange::Leave)
        .await?;
    state
        .calls
        .conversation_member_gone(id, user.user_id, &user.username)
        .await;
    Ok(HttpResponse::NoContent().finish())
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

/// A page of the conversation, oldest first. Without a cursor: the newest page. Members see
/// what happened since they joined.
#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("id" = i64, Path, example = 7), HistoryQuery),
    responses(
        (status = 200, body = HistoryPage),
        (status = 400, description = "`invalid_query`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    ))]
pub async fn messages(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<HistoryPage>, AppError> {
    let id = conversation_id(&id)?;
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
            .history(&identity(auth), id, cursor, i64::from(limit))
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

/// Mark the conversation read up to a message. A direct peer gets a read receipt; the caller's
/// other connections get the new unread count.
#[utoipa::path(post, path = "/api/conversations/{id}/read", tag = "conversations", security(("bearer" = [])),
    params(("id" = i64, Path, example = 7)), request_body = ReadRequest,
    responses(
        (status = 200, body = ReadState),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`conversation_not_found`", body = ErrorBody),
    ))]
pub async fn read(
    state: web::Data<AppState>,
    auth: AuthUser,
    id: web::Path<String>,
    body: Json<ReadRequest>,
) -> Result<web::Json<ReadState>, AppError> {
    let id = conversation_id(&id)?;
    Ok(web::Json(
        state
            .chat
            .mark_read(&identity(auth), id, body.up_to)
            .await?,
    ))
}
