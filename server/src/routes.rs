//! The whole URL table, and how malformed requests become JSON errors.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Responder, Route, web};

use crate::api;
use crate::error::{AppError, ErrorCode, FieldError};
use crate::input;

/// Largest JSON body accepted by the API.
pub const JSON_BODY_LIMIT: usize = 64 * 1024;

/// One endpoint of the URL table: its method and path (as actix writes it, `{name}` for a path
/// parameter) and its handler.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    route: Route,
}

fn at<F, Args>(method: Method, path: &'static str, handler: F) -> Endpoint
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    Endpoint {
        route: web::route().method(method.clone()).to(handler),
        method,
        path,
    }
}

/// Every endpoint the server answers. Tests enumerate it (the authorization matrix must have a
/// row for each).
pub fn endpoints() -> Vec<Endpoint> {
    use api::*;
    vec![
        at(Method::GET, "/healthz", health::healthz),
        at(Method::GET, "/readyz", health::readyz),
        at(Method::GET, "/ws", ws::connect),
        at(Method::GET, "/api/openapi.json", openapi::document),
        at(Method::POST, "/api/auth/register", auth::register),
        at(Method::POST, "/api/auth/login", auth::login),
        at(Method::POST, "/api/auth/refresh", auth::refresh),
        at(Method::POST, "/api/auth/logout", auth::logout),
        at(Method::GET, "/api/me", me::get),
        at(Method::PATCH, "/api/me", me::update),
        at(Method::PUT, "/api/me/password", me::change_password),
        at(Method::GET, "/api/users", users::search),
        at(Method::GET, "/api/users/{username}", users::profile),
        at(Method::POST, "/api/ws/ticket", ws::ticket),
        at(Method::GET, "/api/ice-servers", ice::list),
        at(Method::GET, "/api/rooms/{name}", rooms::get),
        at(Method::GET, "/api/conversations", conversations::list),
        at(Method::POST, "/api/conversations", conversations::create),
        at(Method::GET, "/api/conversations/{id}", conversations::get),
        at(
            Method::PATCH,
            "/api/conversations/{id}",
            conversations::update,
        ),
        at(
            Method::GET,
            "/api/conversations/{id}/members",
            conversations::members,
        ),
        at(
            Method::POST,
            "/api/conversations/{id}/members",
            conversations::add_members,
        ),
        at(
            Method::DELETE,
            "/api/conversations/{id}/members/{username}",
            conversations::remove_member,
        ),
        at(
            Method::PATCH,
            "/api/conversations/{id}/members/{username}",
            conversations::set_role,
        ),
        at(
            Method::POST,
            "/api/conversations/{id}/leave",
            conversations::leave,
        ),
        at(
            Method::GET,
            "/api/conversations/{id}/messages",
            conversations::messages,
        ),
        at(
            Method::POST,
            "/api/conversations/{id}/read",
            conversations::read,
        ),
    ]
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(JSON_BODY_LIMIT)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .app_data(web::PathConfig::default().error_handler(path_error));
    // One resource per path, with a route per method: another method on a known path is a 405.
    let mut by_path: Vec<(&'static str, Vec<Route>)> = Vec::new();
    for endpoint in endpoints() {
        match by_path.iter_mut().find(|(path, _)| *path == endpoint.path) {
            Some((_, routes)) => routes.push(endpoint.route),
            None => by_path.push((endpoint.path, vec![endpoint.route])),
        }
    }
    for (path, routes) in by_path {
        cfg.service(
            routes
                .into_iter()
                .fold(web::resource(path), |r, route| r.route(route)),
        );
    }
    // An unknown API path is a JSON 404, never the web app's page (which takes the rest).
    cfg.service(web::resource(["/api", "/api/{tail:.*}"]).to(not_found));
    cfg.default_service(web::to(not_found));
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
    let code = crate::api::error_response::code_for_status(status);
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
