//! How an [`AppError`] becomes an HTTP answer: the status each code maps to, the
//! `WWW-Authenticate` and `Retry-After` headers, and the JSON body. The error type itself
//! (`crate::error`) knows nothing of HTTP.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::error::{AppError, ErrorCode};

/// The HTTP status of an answer carrying `code`.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::InvalidJson | C::InvalidQuery | C::InvalidFrame | C::UnknownFrameType => {
            StatusCode::BAD_REQUEST
        }
        C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        C::RoomNameReserved => StatusCode::BAD_REQUEST,
        C::RoomNotFound | C::PeerNotFound | C::CallNotFound => StatusCode::NOT_FOUND,
        C::RoomExists
        | C::RoomFull
        | C::AlreadyInRoom
        | C::NotInRoom
        | C::SessionNotStarted
        | C::Busy
        | C::NotAGroup
        | C::GroupFull => StatusCode::CONFLICT,
        C::NotRoomCreator | C::OriginNotAllowed | C::AccountDisabled | C::Forbidden => {
            StatusCode::FORBIDDEN
        }
        C::InvalidBody | C::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
        C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        C::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::NotFound | C::UserNotFound | C::ConversationNotFound | C::MemberNotFound => {
            StatusCode::NOT_FOUND
        }
        C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        C::UsernameTaken => StatusCode::CONFLICT,
        C::InvalidCredentials
        | C::MissingToken
        | C::InvalidToken
        | C::RefreshTokenReused
        | C::InvalidTicket => StatusCode::UNAUTHORIZED,
        C::DatabaseUnavailable | C::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The code for a response that carries no code of ours (actix's own 404, 405, …).
pub fn code_for_status(status: StatusCode) -> ErrorCode {
    use ErrorCode as C;
    match status {
        StatusCode::NOT_FOUND => C::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => C::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => C::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => C::UnsupportedMediaType,
        StatusCode::UNAUTHORIZED => C::InvalidToken,
        StatusCode::SERVICE_UNAVAILABLE => C::DatabaseUnavailable,
        status if status.is_client_error() => C::InvalidBody,
        _ => C::InternalError,
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        status_of(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if status_of(self.code()) == StatusCode::UNAUTHORIZED {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let Some(secs) = self.retry_after() {
            response.insert_header(("Retry-After", secs.to_string()));
        }
        response.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldError;
    use std::time::Duration;

    #[test]
    fn validation_failures_are_unprocessable() {
        let err = AppError::validation(vec![FieldError {
            field: "username",
            code: "too_short",
            message: "must be at least 3 characters".into(),
        }]);
        assert_eq!(err.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn rate_limited_says_when_in_whole_seconds() {
        let err = AppError::rate_limited("slow down", Duration::from_millis(1500));
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers().get("Retry-After").map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
        let zero = AppError::rate_limited("slow down", Duration::ZERO).error_response();
        assert_eq!(
            zero.headers().get("Retry-After").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
}
