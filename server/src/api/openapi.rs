//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use actix_web::HttpResponse;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "pychat", description = "Self-hostable chat and calling server: accounts and history over REST."),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::auth::register,
        super::auth::login,
        super::auth::refresh,
        super::auth::logout,
        super::me::get,
        super::me::update,
        super::me::change_password,
        super::users::search,
        super::users::profile,
        super::ws::ticket,
        super::ws::connect,
        super::conversations::list,
        super::conversations::create,
        super::conversations::get,
        super::conversations::update,
        super::conversations::members,
        super::conversations::add_members,
        super::conversations::remove_member,
        super::conversations::set_role,
        super::conversations::leave,
        super::conversations::messages,
        super::conversations::read,
        super::ice::list,
        super::rooms::get,
    ),
    components(schemas(crate::error::ErrorCode)),
    modifiers(&BearerAuth, &ExtractorErrors),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The answers the extractors of `routes.rs` give before any handler runs, on every operation
/// they apply to: declared once here rather than on each handler, where they would be forgotten.
struct ExtractorErrors;

impl ExtractorErrors {
    const BODY: [(&'static str, &'static str); 4] = [
        ("400", "`invalid_json`: the body is not well-formed JSON"),
        ("413", "`payload_too_large`"),
        (
            "415",
            "`unsupported_media_type`: the body must be sent as `application/json`",
        ),
        (
            "422",
            "`invalid_body` (a missing or mistyped field) or `validation_failed`",
        ),
    ];
    const QUERY: (&'static str, &'static str) =
        ("400", "`invalid_query`: a query parameter is malformed");
    /// `routes::refuse_nul`, before any route: a NUL anywhere in the path or query.
    const NUL: (&'static str, &'static str) = (
        "422",
        "`validation_failed`: the path or query holds a NUL character (`%00`)",
    );

    fn add(operation: &mut Operation) {
        let mut declare = |status: &str, description: &str| {
            let error = ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build();
            operation
                .responses
                .responses
                .entry(status.to_string())
                .or_insert(RefOr::T(error));
        };
        let has_body = operation.request_body.is_some();
        let has_query = operation
            .parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in == ParameterIn::Query);
        if has_body {
            for (status, description) in Self::BODY {
                declare(status, description);
            }
        }
        if has_query {
            declare(Self::QUERY.0, Self::QUERY.1);
        }
        declare(Self::NUL.0, Self::NUL.1);
    }
}

impl Modify for ExtractorErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                Self::add(operation);
            }
        }
    }
}

/// The document as pretty JSON, exactly as committed in `docs/openapi.json`.
pub fn to_pretty_json() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"));
    json.push('\n');
    json
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(to_pretty_json())
}
