//! The one error type of the API. Clients switch on [`ErrorCode`], never on message text.
//! Nothing here knows HTTP: `api::error_response` gives each code its status and makes the
//! response, so the rules and the database layer return errors without depending on actix.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use ts_rs::TS;
use utoipa::ToSchema;

/// Stable, snake_case error codes: part of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not well-formed JSON.
    InvalidJson,
    /// The JSON is well-formed but does not have the expected shape (missing field, wrong type).
    InvalidBody,
    /// A query-string parameter is missing or malformed.
    InvalidQuery,
    /// One or more fields failed validation; see `fields`.
    ValidationFailed,
    UnsupportedMediaType,
    PayloadTooLarge,
    NotFound,
    MethodNotAllowed,
    UsernameTaken,
    InvalidCredentials,
    /// No access token was presented.
    MissingToken,
    /// The token is malformed, expired, forged, revoked, or names a user that no longer exists.
    InvalidToken,
    /// A refresh token was presented twice; the whole session has been revoked.
    RefreshTokenReused,
    /// The account was disabled by an operator: it cannot sign in.
    AccountDisabled,
    UserNotFound,
    /// No conversation of yours matches (one you never belonged to or have left, or a typing
    /// notice to someone you never wrote with): it is not said whether it exists.
    ConversationNotFound,
    /// You are a member, but your role does not allow this.
    Forbidden,
    /// A change only groups have (members, title) asked of a direct conversation.
    NotAGroup,
    /// The group has `PYCHAT_GROUP_MAX_MEMBERS` members already.
    GroupFull,
    /// That user is not a member of the conversation.
    MemberNotFound,
    /// A WebSocket ticket that is unknown, expired or already used.
    InvalidTicket,
    /// A WebSocket handshake from a page of an origin that may not open it.
    OriginNotAllowed,
    /// A WebSocket frame with a missing or mistyped field.
    InvalidFrame,
    /// A WebSocket frame whose `type` the server does not know.
    UnknownFrameType,
    /// Too many requests or frames; slow down.
    RateLimited,
    /// An open room already has this name.
    RoomExists,
    /// Room names starting with `_` are reserved.
    RoomNameReserved,
    RoomNotFound,
    RoomFull,
    /// This connection is in a room (or a call) already.
    AlreadyInRoom,
    /// This connection is in no room.
    NotInRoom,
    /// Only the room's creator may do this.
    NotRoomCreator,
    /// Signaling waits for the creator to start the session.
    SessionNotStarted,
    /// No such peer in your room.
    PeerNotFound,
    /// No ringing call with that id is yours to answer.
    CallNotFound,
    /// The callee is in a call already.
    Busy,
    DatabaseUnavailable,
    /// A shared service (the cluster's Redis) cannot be reached; retry shortly.
    ServiceUnavailable,
    InternalError,
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, TS)]
pub struct FieldError {
    pub field: &'static str,
    /// Stable snake_case reason: `required`, `too_short`, `too_long`, `invalid_characters`, `reserved`.
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema, TS)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[ts(as = "Option<Vec<FieldError>>", optional)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// Every error response has this body.
#[derive(Debug, Serialize, ToSchema, TS)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone)]
pub struct AppError {
    code: ErrorCode,
    message: String,
    fields: Vec<FieldError>,
    /// Seconds for the `Retry-After` header of a `rate_limited` answer.
    retry_after: Option<u64>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
        }
    }

    /// `429 rate_limited`, to be retried after `retry_after` (rounded up to whole seconds, at
    /// least one: `Retry-After: 0` would invite an immediate retry).
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Self {
            retry_after: Some(secs.max(1)),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }

    pub fn validation(fields: Vec<FieldError>) -> Self {
        let message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            code: ErrorCode::ValidationFailed,
            message,
            fields,
            retry_after: None,
        }
    }

    /// An unexpected failure: logged here in full, reported to the client without detail.
    pub fn internal(err: impl fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(ErrorCode::InternalError, "internal server error")
    }

    /// A database failure (see `db::health`): logged here, retryable by the client.
    pub fn database_unavailable(err: impl fmt::Display) -> Self {
        tracing::error!(error = %err, "database unavailable");
        Self::database_down()
    }

    /// The database is known to be down: its probe has logged that once, requests do not.
    pub fn database_down() -> Self {
        Self::new(
            ErrorCode::DatabaseUnavailable,
            "the database is unavailable; try again shortly",
        )
    }

    pub fn invalid_token() -> Self {
        Self::new(ErrorCode::InvalidToken, "the access token is not valid")
    }

    pub fn user_not_found(username: &str) -> Self {
        Self::new(
            ErrorCode::UserNotFound,
            format!("no user named {username:?}"),
        )
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Seconds a `rate_limited` client should wait (the `Retry-After` header).
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                fields: self.fields.clone(),
            },
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for AppError {}

/// `database_unavailable` for failures of the database, `internal_error` for the rest: the one
/// classification is `db::app_error`.
impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        crate::db::app_error(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_snake_case() {
        let json = serde_json::to_value(ErrorCode::RefreshTokenReused).expect("serialize");
        assert_eq!(json, "refresh_token_reused");
    }

    #[test]
    fn validation_error_lists_fields() {
        let err = AppError::validation(vec![FieldError {
            field: "username",
            code: "too_short",
            message: "must be at least 3 characters".into(),
        }]);
        let body = serde_json::to_value(err.body()).expect("serialize");
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["fields"][0]["field"], "username");
    }
}
