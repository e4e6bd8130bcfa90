//! The web portal: the pages people use, as plain HTML, CSS and ES modules compiled
//! into the binary (`portal-svc/web/`), so the service works offline and needs no
//! build tool. `GET /` is the single page; `GET /assets/{name}` the files it loads.
//! The pages speak only the public HTTP API, signed in by the session cookie
//! (`POST /v1/auth/session`) with the CSRF token on every change.
//!
//! Every file is answered with a strict Content-Security-Policy (scripts, styles and
//! everything else from this origin only: no inline script or style, no framing),
//! `nosniff`, and `Cache-Control: no-cache` with an `ETag`, so a browser revalidates
//! cheaply (304) and never runs a stale script after an upgrade.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;

use crate::api::{Access, Endpoint};
use crate::error::ApiError;
use crate::extract::ApiPath;

/// The policy every page and file is served with. `img-src data:` is for the MFA QR
/// code, an SVG the page shows as an image (an image runs no script).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset { name: $name, content_type: $content_type, body: include_bytes!(concat!("../../web/", $name)) }
    };
}

/// The page itself, at `/`.
const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// Every file under `/assets/` (a unit test checks this list against `web/`).
const ASSETS: &[Asset] = &[
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("ui.js", "text/javascript; charset=utf-8"),
    asset!("chart.js", "text/javascript; charset=utf-8"),
    asset!("notes.js", "text/javascript; charset=utf-8"),
    asset!("page-signin.js", "text/javascript; charset=utf-8"),
    asset!("page-account.js", "text/javascript; charset=utf-8"),
    asset!("page-dashboard.js", "text/javascript; charset=utf-8"),
    asset!("page-transactions.js", "text/javascript; charset=utf-8"),
    asset!("page-batches.js", "text/javascript; charset=utf-8"),
    asset!("page-reports.js", "text/javascript; charset=utf-8"),
    asset!("page-devices.js", "text/javascript; charset=utf-8"),
    asset!("page-tickets.js", "text/javascript; charset=utf-8"),
    asset!("page-admin.js", "text/javascript; charset=utf-8"),
    asset!("page-activity.js", "text/javascript; charset=utf-8"),
    asset!("page-api.js", "text/javascript; charset=utf-8"),
    asset!("page-webhooks.js", "text/javascript; charset=utf-8"),
];

/// The quoted ETag of each asset (index 0 the page, then `ASSETS` in order): a
/// content hash, computed once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        std::iter::once(&INDEX).chain(ASSETS).map(|a| format!("\"{}\"", &blake3::hash(a.body).to_hex()[..32])).collect()
    })
}

/// Answers `asset` (the `index`-th ETag), or 304 when the browser holds this version.
fn serve(asset: &Asset, index: usize, request: &HeaderMap) -> Response {
    let etag = etags().get(index).map_or("\"\"", String::as_str);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let headers = response.headers_mut();
    if !fresh {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    }
    if let Ok(tag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// `GET /`: the portal's page.
async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, 0, &headers)
}

/// `GET /assets/{name}`: one of the page's files; any other name is 404.
async fn asset(ApiPath(name): ApiPath<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (index, asset) = ASSETS
        .iter()
        .enumerate()
        .find(|(_, a)| a.name == name)
        .ok_or_else(|| ApiError::not_found("no such file of the web portal"))?;
    Ok(serve(asset, index + 1, &headers))
}

/// A file of the web portal, as its content type says (HTML, script, style sheet, SVG).
#[derive(Debug, utoipa::ToSchema)]
pub struct WebFile(pub String);

/// The endpoints of this module.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        Endpoint::new(
            Method::GET,
            "/",
            Access::Public,
            "The web portal: sign-in and the pages for people (HTML)",
            routing::get(index),
        )
        .returns_as::<WebFile>("text/html"),
        Endpoint::new(
            Method::GET,
            "/assets/{name}",
            Access::Public,
            "A file of the web portal (script, style sheet or image)",
            routing::get(asset),
        )
        .returns_as::<WebFile>("text/javascript")
        .returns_as::<WebFile>("text/css")
        .returns_as::<WebFile>("image/svg+xml"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const JS: &str = "text/javascript; charset=utf-8";

    fn web_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
    }

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).expect("text assets are UTF-8")
    }

    #[test]
    fn every_file_of_the_web_directory_is_served_and_nothing_else() {
        let mut on_disk: Vec<String> = std::fs::read_dir(web_dir())
            .expect("portal-svc/web")
            .map(|e| e.expect("entry"))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut served: Vec<String> = std::iter::once(&INDEX).chain(ASSETS).map(|a| a.name.to_string()).collect();
        served.sort();
        assert_eq!(on_disk, served, "add the file to ASSETS (or remove it from web/)");
        for a in ASSETS {
            let expected = match a.name.rsplit('.').next() {
                Some("js") => JS,
                Some("css") => "text/css; charset=utf-8",
                Some("svg") => "image/svg+xml",
                other => panic!("no content type for {other:?}"),
            };
            assert_eq!(a.content_type, expected, "{}", a.name);
        }
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len() + 1);
        assert!(tags.iter().all(|t| t.len() == 34 && t.starts_with('"')));
    }

    #[test]
    fn nothing_inline_that_the_policy_would_block() {
        let html = text(&INDEX);
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').expect("a closed tag")];
            assert!(tag.contains(" src=\"/assets/"), "inline script: {tag}");
        }
        for file in std::iter::once(&INDEX).chain(ASSETS.iter().filter(|a| a.content_type == JS)) {
            let text = text(file);
            for banned in [
                "style=\"",
                "setAttribute('style'",
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "new Function",
                "document.write",
                "javascript:",
            ] {
                assert!(!text.contains(banned), "{} uses {banned}", file.name);
            }
            // Inline event handlers (onclick="...") are inline script.
            let lower = text.to_ascii_lowercase();
            for (at, _) in lower.match_indices(" on") {
                let rest = &lower[at + 3..];
                let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
                assert!(
                    file.content_type == JS || name_len == 0 || !rest[name_len..].starts_with("=\""),
                    "{} has an inline handler near {}",
                    file.name,
                    &lower[at..(at + 20).min(lower.len())]
                );
            }
        }
    }

    #[test]
    fn every_module_and_file_the_page_names_exists() {
        let names: Vec<&str> = ASSETS.iter().map(|a| a.name).collect();
        let html = text(&INDEX);
        for (at, _) in html.match_indices("/assets/") {
            let name: String = html[at + 8..].chars().take_while(|c| *c != '"').collect();
            assert!(names.contains(&name.as_str()), "index.html names /assets/{name}");
        }
        for file in ASSETS.iter().filter(|a| a.content_type == JS) {
            for line in text(file).lines().filter(|l| l.starts_with("import ") || l.contains("import('")) {
                let quoted = line.split('\'').nth(1).unwrap_or_else(|| panic!("{}: {line}", file.name));
                let name =
                    quoted.strip_prefix("./").unwrap_or_else(|| panic!("{}: relative imports only: {line}", file.name));
                assert!(names.contains(&name), "{} imports {name}", file.name);
            }
        }
    }
}
