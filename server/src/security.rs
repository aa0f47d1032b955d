//! What browsers are told about the server's responses (security headers), which pages may open
//! the WebSocket (`Origin`), and CORS, which stays off unless origins are configured. The reasons
//! are in `docs/security.md#browsers-headers-websocket-origin-cors`.

use actix_cors::Cors;
use actix_web::HttpRequest;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Condition;
use url::Url;

use crate::error::{AppError, ErrorCode};

/// The policy of the web app's pages: its own scripts, styles, images and media, requests to its
/// own origin only (`'self'` covers `ws:`/`wss:` of that origin too), no plugins, never framed.
/// Inline scripts and `style` attributes are refused: the build has neither, and the app sets
/// styles through the CSSOM, which CSP does not restrict. Call media is attached with `srcObject`,
/// which loads no URL, so no `blob:` or `mediastream:` source is needed.
pub const APP_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; media-src 'self'; font-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The policy of everything that is not a page (JSON, scripts, images): opened on its own in a
/// browser, such a response may load and run nothing.
pub const DATA_POLICY: &str = "default-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Adds the security headers every response carries, and `Cache-Control: no-store` to API
/// responses that do not say otherwise (they carry users' data: no cache may keep them).
pub fn apply_headers<B>(response: &mut ServiceResponse<B>) {
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let is_api = is_api_path(response.request().path());
    let headers = response.headers_mut();
    let policy = if is_page { APP_POLICY } else { DATA_POLICY };
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The app links nowhere else; nothing of its URLs (user names, room names) should leave.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // `frame-ancestors` for browsers that predate it.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if is_api && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/") || path == "/ws"
}

/// A list of origins (`scheme://host[:port]`), as browsers write them in `Origin`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins(Vec<String>);

impl Origins {
    /// Parses a comma-separated list; each entry must be an http or https origin, nothing more
    /// (no path, query or credentials). Entries are kept in the form browsers send.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let invalid = || {
                    format!("{entry:?} is not an origin such as https://chat.example.com[:port]")
                };
                let url = Url::parse(entry).map_err(|_| invalid())?;
                let bare = url.path() == "/"
                    && url.query().is_none()
                    && url.fragment().is_none()
                    && url.username().is_empty()
                    && url.password().is_none();
                if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
                    return Err(invalid());
                }
                Ok(url.origin().ascii_serialization())
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    fn contains(&self, origin: &str) -> bool {
        Url::parse(origin).is_ok_and(|url| {
            let origin = url.origin().ascii_serialization();
            self.0.contains(&origin)
        })
    }
}

/// Who may open the WebSocket and call the API from another origin.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Origins besides the server's own that may open `/ws` (`PYCHAT_ALLOWED_ORIGINS`).
    pub allowed: Origins,
    /// Origins that may call the API cross-origin (`PYCHAT_CORS_ORIGINS`); they may open `/ws`
    /// as well, since a client the API serves needs its WebSocket too.
    pub cors: Origins,
}

impl OriginPolicy {
    /// A WebSocket is not bound by the same-origin policy: any page a user visits could open one
    /// to this server. Browsers always say which page asks (`Origin`), so a handshake that names
    /// an origin must name this server's own (the host and port the request was made to) or a
    /// configured one. Clients that are not browsers send no `Origin` and are let through: they
    /// could send any value anyway, and authenticate with a ticket or token like everyone.
    pub fn check_websocket(&self, req: &HttpRequest) -> Result<(), AppError> {
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let allowed = origin.to_str().is_ok_and(|origin| {
            request_host(req).is_some_and(|host| same_host(origin, host))
                || self.allowed.contains(origin)
                || self.cors.contains(origin)
        });
        if allowed {
            Ok(())
        } else {
            Err(AppError::new(
                ErrorCode::OriginNotAllowed,
                "pages of this origin may not open the WebSocket (see PYCHAT_ALLOWED_ORIGINS)",
            ))
        }
    }

    /// The CORS middleware: present only when `PYCHAT_CORS_ORIGINS` names origins, so by default
    /// no response carries a CORS header and browsers keep other sites from reading the API.
    /// Credentials (the refresh cookie) are not shared: clients of other origins send tokens.
    pub fn cors(&self) -> Condition<Cors> {
        let cors = self.cors.iter().fold(
            Cors::default()
                .allowed_methods(["GET", "POST", "PATCH", "PUT"])
                .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .expose_headers([HeaderName::from_static("retry-after")])
                .max_age(600)
                // Requests from other origins are answered without CORS headers (so browsers
                // hide the answer) rather than refused: the app's own POSTs carry an Origin too.
                .block_on_origin_mismatch(false),
            Cors::allowed_origin,
        );
        Condition::new(!self.cors.is_empty(), cors)
    }
}

/// The authority the request was made to: the `Host` header (HTTP/1.1 requires it), or the
/// request target's own for absolute-form and HTTP/2 requests.
fn request_host(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// Whether `origin` names `host` (`host[:port]`), whatever the scheme: behind a TLS-terminating
/// proxy the page is `https://` while the server itself speaks plain HTTP. A missing port is the
/// origin scheme's default on both sides.
fn same_host(origin: &str, host: &str) -> bool {
    let Ok(origin) = Url::parse(origin) else {
        return false;
    };
    if !matches!(origin.scheme(), "http" | "https") || host.contains(['/', '\\', '?', '#', '@']) {
        return false;
    }
    Url::parse(&format!("{}://{host}", origin.scheme())).is_ok_and(|host| {
        host.host() == origin.host()
            && host.port_or_known_default() == origin.port_or_known_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_ignores_scheme_and_default_ports() {
        assert!(same_host("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_host("https://Chat.Example.com", "chat.example.com"));
        assert!(same_host(
            "https://chat.example.com",
            "chat.example.com:443"
        ));
        assert!(same_host("http://[::1]:8080", "[::1]:8080"));
        assert!(!same_host("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!same_host(
            "https://chat.example.com",
            "chat.example.com:8080"
        ));
        assert!(!same_host("http://evil.example", "chat.example.com"));
        assert!(!same_host("null", "chat.example.com"));
        assert!(!same_host("http://evil.example", "x@evil.example"));
        assert!(!same_host("file:///etc", "chat.example.com"));
    }

    #[test]
    fn origins_parse_to_what_browsers_send() {
        let origins =
            Origins::parse(" https://Chat.Example.com/ , http://localhost:5173,").expect("parses");
        assert_eq!(
            origins.iter().collect::<Vec<_>>(),
            ["https://chat.example.com", "http://localhost:5173"]
        );
        assert!(origins.contains("https://chat.example.com"));
        assert!(!origins.contains("http://chat.example.com"));
        assert!(Origins::parse("").expect("empty").is_empty());
        for bad in [
            "chat.example.com",
            "*",
            "https://chat.example.com/app",
            "https://user@chat.example.com",
            "ftp://chat.example.com",
            "https://chat.example.com?x",
        ] {
            assert!(Origins::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
