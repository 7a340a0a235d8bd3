//! Agora's web dashboard: the pages a buyer, a provider and an auditor open in a browser
//! to watch a market, submit jobs, compare costs and audit the ledger.
//!
//! The dashboard is a handful of hand-written files — one HTML shell, one stylesheet and
//! small vanilla JavaScript modules — embedded in the binary with `include_str!`, so a
//! market node serves it with no build step and the browser loads nothing from anywhere
//! else. Everything it shows comes from the node's JSON API (`/v1/...`) and its
//! server-sent event streams; it has no server-side rendering and no state of its own.
//!
//! Key components:
//! - [`router`]: the axum [`Router`] the market node merges at `/`: the shell at `/` and
//!   each asset under `/assets/`, with its content type, an `ETag` (answering
//!   `If-None-Match` with 304) and `Cache-Control: no-cache`, so browsers revalidate
//!   instead of running a stale page against a newer API.
//! - [`CONTENT_SECURITY_POLICY`]: the strict policy on every dashboard response (scripts
//!   and styles only from the node itself, no inline script, no framing), the second
//!   line of defence behind the pages' rule of building the DOM with `textContent` only.
//! - [`ASSETS`]: the embedded files, by path.
//!
//! Signing never happens here: the submit page signs with WebCrypto Ed25519 in the
//! browser, with a key that stays in the browser's storage (see `docs/dashboard.md`).
#![warn(unused_crate_dependencies, missing_docs)]

// The browser tests' dependencies, unused by the unit tests.
#[cfg(test)]
use {
    agora_core as _, agora_ledger as _, agora_market as _, agora_node as _, agora_proto as _,
    agora_provider as _, fantoccini as _, hyper_util as _, reqwest as _, serde_json as _,
    tempfile as _, tokio as _, wat as _,
};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The Content-Security-Policy on every dashboard response: nothing but the node's own
/// scripts, styles and API; no inline script, no plugins, no framing, no form posts
/// elsewhere. Images may be `data:` URLs (none are built from user data).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'none'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Clone, Copy, Debug)]
pub struct Asset {
    /// Its path under `/assets/` (for the shell: `index.html`, served at `/`).
    pub path: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_str!(concat!("../assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every embedded file: the shell first, then the stylesheet and the modules.
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("keys.js", JS),
    asset!("overview.js", JS),
    asset!("jobs.js", JS),
    asset!("job.js", JS),
    asset!("submit.js", JS),
    asset!("providers.js", JS),
    asset!("ledger.js", JS),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The embedded file at `path` (under `/assets/`), if there is one.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// A strong validator for `body`: FNV-1a over its bytes, quoted. Computed per request;
/// the files are a few kilobytes, so it costs microseconds.
fn etag(body: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

/// The headers every dashboard response carries.
fn common_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let tag = etag(asset.body);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let headers = response.headers_mut();
    common_headers(headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, value);
    }
    response
}

async fn shell(request: HeaderMap) -> Response {
    match asset("index.html") {
        Some(index) => serve(index, &request),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn file(Path(path): Path<String>, request: HeaderMap) -> Response {
    match asset(&path).filter(|a| a.path != "index.html") {
        Some(found) => serve(found, &request),
        None => {
            let mut response = (StatusCode::NOT_FOUND, "no such dashboard file").into_response();
            common_headers(response.headers_mut());
            response
        }
    }
}

/// The dashboard's routes: `/` (the shell, every page is a `#/...` route inside it) and
/// `/assets/{file}`. Generic over the state so it merges into any router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(shell))
        .route("/assets/{file}", get(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_import_is_embedded() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for line in a.body.lines() {
                let Some(from) = line.split(" from \"./").nth(1) else {
                    continue;
                };
                let target = from.split('"').next().unwrap_or_default();
                assert!(
                    asset(target).is_some(),
                    "{} imports missing {target}",
                    a.path
                );
            }
        }
    }

    #[test]
    fn no_page_builds_markup_from_strings() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for bad in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!a.body.contains(bad), "{} uses {bad}", a.path);
            }
        }
    }

    #[test]
    fn the_shell_has_no_inline_script_or_style() {
        let index = asset("index.html").map(|a| a.body).unwrap_or_default();
        assert!(!index.contains("<script>"));
        assert!(!index.contains("style="));
        assert!(!index.contains("http://") && !index.contains("https://"));
    }

    #[test]
    fn etags_differ_by_content() {
        assert_ne!(etag("a"), etag("b"));
        assert_eq!(etag("a"), etag("a"));
    }
}
