//! The OpenAPI 3.1 document of the whole HTTP API (`openapi.json` beside
//! this file, hand-written), served at `GET /openapi.json` without a token.
//!
//! Hand-written rather than generated: the handlers parse their own query
//! strings and raw bodies (goim's API is not shaped for derive macros), and
//! the document's promises are checked from two sides instead: a unit test
//! compares its paths and methods with the router's ([`super::routes`]),
//! and schemathesis checks every answer of a real `rim standalone` against
//! it (scripts/schemathesis.sh).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The OpenAPI document (JSON).
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub(crate) async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
