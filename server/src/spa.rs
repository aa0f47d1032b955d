//! Serves the built web app (`web/dist`): files as they are, hashed assets cached for a year, and
//! every other path answered with `index.html` so the app's own routes survive a reload.

use std::path::{Path, PathBuf};

use actix_files::{Files, NamedFile};
use actix_web::dev::{ServiceRequest, ServiceResponse, fn_service};
use actix_web::http::header::{self, HeaderValue};

/// Vite puts content-hashed files here: their names change whenever their bytes do.
pub const ASSETS_PREFIX: &str = "/assets/";

pub fn service(dir: &Path) -> Files {
    let index: PathBuf = dir.join("index.html");
    Files::new("/", dir)
        .index_file("index.html")
        .default_handler(fn_service(move |req: ServiceRequest| {
            let index = index.clone();
            // index.html is small and opening it blocks: keep it off the async worker.
            async move {
                let (req, _) = req.into_parts();
                let file = actix_web::web::block(move || NamedFile::open(index))
                    .await
                    .map_err(actix_web::error::ErrorInternalServerError)??;
                let response = file.into_response(&req);
                Ok(ServiceResponse::new(req, response))
            }
        }))
}

/// The Cache-Control a successful web-app response should carry, if any.
pub fn cache_control(path: &str, content_type: Option<&HeaderValue>) -> Option<HeaderValue> {
    if path.starts_with(ASSETS_PREFIX) {
        return Some(HeaderValue::from_static(
            "public, max-age=31536000, immutable",
        ));
    }
    let is_html = content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    // index.html names the current assets: always revalidate it.
    is_html.then(|| HeaderValue::from_static("no-cache"))
}

pub fn apply_cache_control<B>(response: &mut ServiceResponse<B>) {
    if !response.status().is_success() {
        return;
    }
    let path = response.request().path().to_owned();
    let value = cache_control(&path, response.headers().get(header::CONTENT_TYPE));
    if let Some(value) = value {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
}
