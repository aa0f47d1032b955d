//! A handler that takes [`AuthUser`] cannot forget to check the token.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};

use crate::app::AppState;
use crate::db::sessions;
use crate::error::{AppError, ErrorCode};

/// The authenticated caller: the token verified and its user and session still live.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: i64,
    pub session_id: i64,
    pub username: String,
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::internal("AppState missing"))?;
            let token = token?;
            state.authenticate(&token).await
        })
    }
}

/// The token from `Authorization: Bearer …`.
pub fn bearer_token(req: &HttpRequest) -> Result<String, AppError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        AppError::new(
            ErrorCode::MissingToken,
            "send an access token as Authorization: Bearer <token>",
        )
    })?;
    let value = value.to_str().map_err(|_| AppError::invalid_token())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(AppError::invalid_token)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AppError::invalid_token());
    }
    Ok(token.trim().to_string())
}

impl AppState {
    /// Verifies an access token and checks that its user and session still exist.
    pub async fn authenticate(&self, token: &str) -> Result<AuthUser, AppError> {
        let claims = self.tokens.verify(token)?;
        let user_id = claims.user_id().ok_or_else(AppError::invalid_token)?;
        self.live_session(user_id, claims.sid).await
    }

    /// The caller of a session, if it is still live (not revoked or expired, its user there and
    /// not disabled); otherwise `invalid_token`.
    pub async fn live_session(&self, user_id: i64, session_id: i64) -> Result<AuthUser, AppError> {
        let username = self
            .db
            .run(move |conn| Ok(sessions::active_session_user(conn, session_id, user_id)?))
            .await?
            .ok_or_else(AppError::invalid_token)?;
        Ok(AuthUser {
            user_id,
            session_id,
            username,
        })
    }
}
