//! The whole URL table, and how malformed requests become JSON errors.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::api;
use crate::error::{AppError, ErrorCode, FieldError};
use crate::input;

/// Largest JSON body accepted by the API.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(JSON_BODY_LIMIT)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error))
    .service(web::resource("/healthz").get(api::health::healthz))
    .service(web::resource("/readyz").get(api::health::readyz))
    .service(web::resource("/ws").get(api::ws::connect))
    .service(
        web::scope("/api")
            .service(web::resource("/openapi.json").get(api::openapi::document))
            .service(web::resource("/auth/register").post(api::auth::register))
            .service(web::resource("/auth/login").post(api::auth::login))
            .service(web::resource("/auth/refresh").post(api::auth::refresh))
            .service(web::resource("/auth/logout").post(api::auth::logout))
            .service(
                web::resource("/me")
                    .get(api::me::get)
                    .patch(api::me::update),
            )
            .service(web::resource("/me/password").put(api::me::change_password))
            .service(web::resource("/users").get(api::users::search))
            .service(web::resource("/users/{username}").get(api::users::profile))
            .service(web::resource("/ws/ticket").post(api::ws::ticket))
            .service(web::resource("/ice-servers").get(api::ice::list))
            .service(web::resource("/rooms/{name}").get(api::rooms::get))
            .service(web::resource("/conversations").get(api::conversations::list))
            .service(
                web::resource("/conversations/{username}/messages")
                    .get(api::conversations::messages),
            )
            .service(
                web::resource("/conversations/{username}/read").post(api::conversations::read),
            ),
    )
    .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

fn json_error(err: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let app_error = match &err {
        JsonPayloadError::ContentType => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as Content-Type: application/json",
        ),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {limit} bytes"),
        ),
        JsonPayloadError::Deserialize(inner) if inner.is_data() => {
            AppError::new(ErrorCode::InvalidBody, input::describe_json_error(inner))
        }
        JsonPayloadError::Deserialize(inner) => AppError::new(
            ErrorCode::InvalidJson,
            format!("malformed JSON: {}", input::describe_json_error(inner)),
        ),
        other => AppError::new(ErrorCode::InvalidJson, other.to_string()),
    };
    app_error.into()
}

/// Refuses a request whose path or query string decodes to a NUL (see `input`), before any
/// handler reads it.
pub fn refuse_nul(req: &ServiceRequest) -> Result<(), AppError> {
    let uri = req.uri();
    let encoded = [Some(uri.path()), uri.query()];
    if encoded.into_iter().flatten().any(input::uri_has_nul) {
        return Err(AppError::validation(vec![FieldError {
            field: if input::uri_has_nul(uri.path()) {
                "path"
            } else {
                "query"
            },
            code: "invalid_characters",
            message: input::NUL_MESSAGE.into(),
        }]));
    }
    Ok(())
}

fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    AppError::new(ErrorCode::InvalidQuery, err.to_string()).into()
}

fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    AppError::new(ErrorCode::NotFound, err.to_string()).into()
}

/// Gives every error response that is not already JSON (actix's 405, a 413 from a payload
/// limit, …) the API's error body.
pub fn json_error_body<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let code = ErrorCode::for_status(status);
    let message = status
        .canonical_reason()
        .unwrap_or("request failed")
        .to_lowercase();
    let (req, old) = res.into_parts();
    let mut response = HttpResponse::build(status).json(AppError::new(code, message).body());
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let response: HttpResponse<EitherBody<B, BoxBody>> = response.map_into_right_body();
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(
        req, response,
    )))
}
