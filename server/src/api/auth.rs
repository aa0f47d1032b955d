//! Sign-up, sign-in, token refresh and sign-out.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use ts_rs::TS;
use utoipa::ToSchema;

use super::body::Json;
use crate::accounts::{IssuedTokens, UserView};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{AppError, ErrorBody, ErrorCode};

/// The httpOnly cookie that carries the refresh token for the browser app.
pub const REFRESH_COOKIE: &str = "pychat_refresh";
/// The cookie is sent only to the endpoints that use it.
const REFRESH_COOKIE_PATH: &str = "/api/auth";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// 3–32 characters of `a-z 0-9 _ . -`, starting with a letter or digit (`_` is reserved);
    /// stored lower-case.
    #[schema(
        min_length = 3,
        max_length = 32,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"
    )]
    pub username: String,
    /// 8–128 characters.
    #[schema(min_length = 8, max_length = 128, pattern = r"^[^\x00]*$")]
    pub password: String,
    /// Shown to others; defaults to the user name.
    #[schema(
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]*[^\s\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8][^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]*$"
    )]
    pub display_name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(pattern = r"^[^\x00]*$")]
    pub username: String,
    #[schema(pattern = r"^[^\x00]*$")]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// Optional when the `pychat_refresh` cookie is sent.
    #[schema(pattern = r"^[^\x00]*$")]
    pub refresh_token: Option<String>,
}

#[derive(Serialize, ToSchema, TS)]
pub struct AuthResponse {
    pub user: UserView,
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Single-use: each refresh returns a new one. Also set as an httpOnly cookie.
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

fn refresh_cookie(req: &HttpRequest, value: String, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build(REFRESH_COOKIE, value)
        .path(REFRESH_COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .max_age(CookieDuration::seconds(max_age_secs))
        .finish()
}

fn token_response(
    req: &HttpRequest,
    mut response: actix_web::HttpResponseBuilder,
    tokens: IssuedTokens,
) -> HttpResponse {
    let max_age = i64::try_from(tokens.refresh_expires_in).unwrap_or(i64::MAX);
    response
        .cookie(refresh_cookie(req, tokens.refresh_token.clone(), max_age))
        .insert_header(("Cache-Control", "no-store"))
        .json(AuthResponse {
            user: tokens.user,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_type: "Bearer",
            expires_in: tokens.expires_in,
        })
}

/// Create an account and sign in.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, body = AuthResponse),
    (status = 409, description = "`username_taken`", body = ErrorBody),
    (status = 422, description = "`validation_failed`, with a per-field list", body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many sign-ups from this address", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait"))),
))]
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Json<RegisterRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let client = super::client_address(&req, &state.limits);
    state.limits.register(client).await?;
    let tokens = state
        .accounts
        .register(&body.username, body.password, body.display_name.as_deref())
        .await?;
    Ok(token_response(&req, HttpResponse::Created(), tokens))
}

/// Sign in.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = AuthResponse),
    (status = 401, description = "`invalid_credentials`, the same for an unknown user and a wrong password", body = ErrorBody),
    (status = 429, description = "`rate_limited`: too many failed sign-ins for this account or from this address (even the right password is refused until `Retry-After`), or too many in progress", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait"))),
))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Json<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let client = super::client_address(&req, &state.limits);
    let attempt = state.accounts.login(&body.username, body.password);
    let tokens = state.limits.login(&body.username, client, attempt).await?;
    Ok(token_response(&req, HttpResponse::Ok(), tokens))
}

/// Exchange a refresh token (body or cookie) for new tokens. A used token revokes its session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body(content = RefreshRequest, description = "may be empty when the cookie is sent"), responses(
    (status = 200, body = AuthResponse),
    (status = 401, description = "`invalid_token`, or `refresh_token_reused` (the session is now revoked)", body = ErrorBody),
))]
pub async fn refresh(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        super::body::parse::<RefreshRequest>(&body)?.refresh_token
    };
    let presented = from_body
        .or_else(|| req.cookie(REFRESH_COOKIE).map(|c| c.value().to_string()))
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            AppError::new(
                ErrorCode::MissingToken,
                "send refresh_token in the body or the pychat_refresh cookie",
            )
        })?;
    match state.accounts.refresh(&presented).await {
        Ok(tokens) => Ok(token_response(&req, HttpResponse::Ok(), tokens)),
        Err(err) => {
            // A dead token in the cookie would be sent again and again: drop it.
            let mut response = actix_web::ResponseError::error_response(&err);
            let _ = response.add_removal_cookie(&refresh_cookie(&req, String::new(), 0));
            Ok(response)
        }
    }
}

/// Sign out: revokes this session and clears the refresh cookie.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "signed out"),
    (status = 401, body = ErrorBody),
))]
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: AuthUser,
) -> Result<HttpResponse, AppError> {
    state.accounts.logout(&auth).await?;
    let mut response = HttpResponse::NoContent().finish();
    let _ = response.add_removal_cookie(&refresh_cookie(&req, String::new(), 0));
    Ok(response)
}
