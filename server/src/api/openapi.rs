//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
        super::conversations::messages,
        super::conversations::read,
        super::ice::list,
        super::rooms::get,
    ),
    components(schemas(crate::error::ErrorCode)),
    modifiers(&BearerAuth),
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
