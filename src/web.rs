//! The web pages rim serves on its HTTP port, next to the API: the admin
//! console at `/admin/` and the demo at `/demo/` ([`PAGES`]).
//!
//! The pages are built from `web/` (TypeScript, bundled by esbuild; see
//! docs/architecture.md, "Web pages") into `web/dist/<page>/`, which is kept
//! in the repository, and embedded in the binary at compile time, in debug
//! builds too: `cargo build` needs no Node, and the binary needs no files
//! beside it. The suite fails when `web/dist` is stale (`npm run check` in
//! `web/`).
//!
//! The pages are static and public: no bearer token is asked for them. The
//! API calls they make carry the token the page asks its user for, when the
//! API wants one. What is not an embedded file answers 404; a directory
//! answers its `index.html`.
//!
//! Not here: the API (`rim_logic::http`), `/metrics` (`crate::wiring`).

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The pages, each served at `/<page>/` from `web/dist/<page>/`.
pub const PAGES: &[&str] = &["admin", "demo"];

/// Every file under `web/dist`, embedded at compile time (`debug-embed`:
/// in debug builds too, so tests serve what a release serves). `build.rs`
/// makes cargo rebuild when a file there is added or changed.
#[derive(rust_embed::RustEmbed)]
#[folder = "web/dist/"]
struct Assets;

/// What the pages may load and connect to: only this origin, plus
/// WebSocket connections to the comets (the demo's client; a comet listens
/// on its own port). Nothing from the internet.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `app` with the pages added: `/<page>` redirects to `/<page>/`, and
/// `/<page>/<path>` serves `web/dist/<page>/<path>` (GET and HEAD). Routes
/// added here bypass the API's request metric and bearer tokens.
pub fn routes(mut app: axum::Router) -> axum::Router {
    for &page in PAGES {
        app = app
            .route(&format!("/{page}"), get(move || redirect(page)))
            .route(
                &format!("/{page}/"),
                get(move |headers: HeaderMap| asset(page, String::new(), headers)),
            )
            .route(
                &format!("/{page}/{{*path}}"),
                get(move |Path(path): Path<String>, headers: HeaderMap| asset(page, path, headers)),
            );
    }
    app
}

/// Whether `page`'s `index.html` is embedded (a build without the pages
/// would serve only 404s).
pub fn has_page(page: &str) -> bool {
    Assets::get(&format!("{page}/index.html")).is_some()
}

async fn redirect(page: &'static str) -> Response {
    // Relative, so that it also works behind a reverse proxy's path prefix:
    // `<prefix>/admin` resolves `admin/` to `<prefix>/admin/`.
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, format!("{page}/"))],
    )
        .into_response()
}

async fn asset(page: &'static str, path: String, headers: HeaderMap) -> Response {
    let mut name = format!("{page}/{path}");
    if name.ends_with('/') {
        name.push_str("index.html");
    }
    // A lookup in the embedded table, never the file system: `..` and the
    // like simply name no file.
    let Some(file) = Assets::get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("not found: /{name}\n"),
        )
            .into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mime = file.metadata.mimetype();
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Body::from(file.data).into_response()
    };
    let out = response.headers_mut();
    if !fresh {
        out.insert(header::CONTENT_TYPE, content_type(mime));
    }
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, etag);
    }
    // Revalidate every time: the files change with the binary, not their names.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if mime == "text/html" {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    response
}

/// The content type of a file's guessed mime type, with the charset for
/// text (the build writes UTF-8).
fn content_type(mime: &str) -> HeaderValue {
    let textual = mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "image/svg+xml"
        );
    let value = if textual {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app() -> axum::Router {
        routes(axum::Router::new())
    }

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    #[test]
    fn every_page_is_embedded() {
        for page in PAGES {
            assert!(has_page(page), "web/dist/{page}/index.html is not embedded");
        }
    }

    #[tokio::test]
    async fn a_directory_serves_its_index_with_the_policy() {
        for page in PAGES {
            let response = get(&format!("/{page}/"), None).await;
            assert_eq!(response.status(), StatusCode::OK, "/{page}/");
            assert_eq!(
                header_of(&response, header::CONTENT_TYPE),
                "text/html; charset=utf-8"
            );
            let policy = header_of(&response, header::CONTENT_SECURITY_POLICY);
            assert!(policy.contains("default-src 'self'"), "{policy}");
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            let html = body(response).await;
            assert!(html.contains("<!doctype html>"), "{html}");
        }
    }

    #[tokio::test]
    async fn files_get_their_content_types() {
        let response = get("/admin/app.js", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        let response = get("/admin/app.css", None).await;
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "text/css; charset=utf-8"
        );
        assert_eq!(
            header_of(&get("/admin/index.html", None).await, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn the_bare_page_path_redirects_to_the_directory() {
        let response = get("/admin", None).await;
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header_of(&response, header::LOCATION), "admin/");
        let response = get("/demo", None).await;
        assert_eq!(header_of(&response, header::LOCATION), "demo/");
    }

    #[tokio::test]
    async fn unknown_files_answer_404() {
        for path in [
            "/admin/nope.js",
            "/admin/../Cargo.toml",
            "/admin/..%2f..%2fCargo.toml",
            "/demo/admin/app.js",
            "/admin/sub/",
        ] {
            let response = get(path, None).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert!(body(response).await.starts_with("not found"), "{path}");
        }
    }

    #[tokio::test]
    async fn a_matching_etag_answers_304() {
        let response = get("/admin/app.js", None).await;
        let etag = header_of(&response, header::ETAG).to_owned();
        assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
        let response = get("/admin/app.js", Some(&etag)).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert!(body(response).await.is_empty());
        let response = get("/admin/app.js", Some("\"other\"")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}
