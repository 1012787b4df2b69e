//! The HTTP API (axum): goim's v2 paths under `/goim` and v1.2 paths under
//! `/1`, rim's own under `/rim/v1` (the mailbox API), with their envelopes, a body limit, and 404/405 answers in the
//! envelope of the path's API version, and bearer tokens on the push and
//! admin routes (and the reads when `api.protect_reads`) when configured.
//! Every route is listed once (`routes`); the OpenAPI document describing
//! them is served at `/openapi.json` ([`OPENAPI`]).
//!
//! Handlers only parse requests and shape answers; every decision is made by
//! [`Logic`]. Binding and serving belong to the binary.

mod bearer;
mod error;
mod groups;
mod json;
mod mailbox;
mod nodes;
mod online;
mod openapi;
mod params;
mod push;
mod v1;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};

use self::mailbox::RimError;

use self::error::{ApiError, V1Error};
use crate::Logic;

pub use self::openapi::OPENAPI;

/// The complete HTTP application over `logic`.
pub fn app(logic: Arc<Logic>) -> axum::Router {
    let config = logic.config();
    let max_body = config.max_body;
    let api = &config.api;
    match api.access() {
        crate::ApiAccess::Open => tracing::warn!(
            "push API is open (logic.api.open = true): anyone who reaches it can push and delete servers"
        ),
        crate::ApiAccess::Loopback => tracing::warn!(
            "push API serves loopback clients without a token and refuses others: \
             configure logic.api.tokens to serve other hosts"
        ),
        crate::ApiAccess::Tokens => {}
    }
    let bearer = || middleware::from_fn_with_state(logic.clone(), bearer::require);
    let (mut protected, mut reads, mut public) = (
        axum::Router::new(),
        axum::Router::new(),
        axum::Router::new(),
    );
    for (guard, path, method_router) in routes() {
        match guard {
            Guard::Token => protected = protected.route(path, method_router),
            Guard::Read => reads = reads.route(path, method_router),
            Guard::Open => public = public.route(path, method_router),
        }
    }
    let protected = protected.route_layer(bearer());
    if api.protect_reads {
        reads = reads.route_layer(bearer());
    }
    protected
        .merge(reads)
        .merge(public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(track))
        .with_state(logic)
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// Pushes and admin: a bearer token whenever tokens are configured.
    Token,
    /// Online, count and instance reads: a token only with `api.protect_reads`.
    Read,
    /// Always open: clients call `/goim/nodes/weighted` to find comets.
    Open,
}

/// Every route of the API, in one place: [`app`] serves them, and a test
/// checks that the OpenAPI document ([`OPENAPI`]) describes each one with
/// exactly the methods it serves. (`/metrics` is added by the binary.)
fn routes() -> Vec<(Guard, &'static str, MethodRouter<Arc<Logic>>)> {
    use Guard::{Open, Read, Token};
    vec![
        (Token, "/goim/push/keys", post(push::keys)),
        (Token, "/goim/push/mids", post(push::mids)),
        (Token, "/goim/push/room", post(push::room)),
        (Token, "/goim/push/all", post(push::all)),
        (Token, "/1/push", post(v1::push)),
        (Token, "/1/pushs", post(v1::pushs)),
        (Token, "/1/push/room", post(v1::push_room)),
        (Token, "/1/push/all", post(v1::push_all)),
        (Token, "/1/server/del", post(v1::server_del)),
        (Token, "/rim/v1/messages", post(mailbox::post_messages)),
        (
            Token,
            "/rim/v1/users/{mid}/messages",
            get(mailbox::get_messages).delete(mailbox::delete_messages),
        ),
        (
            Token,
            "/rim/v1/users/{mid}/cursor",
            get(mailbox::get_cursor),
        ),
        (
            Token,
            "/rim/v1/users/{mid}/mute",
            get(groups::get_mute)
                .put(groups::put_mute)
                .delete(groups::delete_mute),
        ),
        (
            Token,
            "/rim/v1/groups/{gid}/members",
            get(groups::get_members)
                .put(groups::put_members)
                .delete(groups::delete_members),
        ),
        (
            Token,
            "/rim/v1/groups/{gid}/messages",
            post(groups::post_group_message),
        ),
        (Read, "/goim/online/top", get(online::top)),
        (Read, "/goim/online/room", get(online::room)),
        (Read, "/goim/online/total", get(online::total)),
        (Read, "/goim/nodes/instances", get(nodes::instances)),
        (Read, "/1/count", get(v1::count)),
        (Open, "/goim/nodes/weighted", get(nodes::weighted)),
        (Open, "/openapi.json", get(openapi::document)),
    ]
}

fn is_v1(uri: &Uri) -> bool {
    uri.path().starts_with("/1/")
}

fn in_envelope_of(uri: &Uri, err: ApiError) -> Response {
    if uri.path().starts_with("/rim/") {
        RimError(err).into_response()
    } else if is_v1(uri) {
        V1Error(err).into_response()
    } else {
        err.into_response()
    }
}

async fn not_found(uri: Uri) -> Response {
    let err = ApiError::NotFound(format!("no such path: {}", uri.path()));
    in_envelope_of(&uri, err)
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let err = ApiError::MethodNotAllowed(format!("method {method} not allowed for {}", uri.path()));
    in_envelope_of(&uri, err)
}

/// Counts every request by route and status.
async fn track(request: Request, next: Next) -> Response {
    // The route pattern, not the raw path, keeps the label set bounded.
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    tracing::debug!(%method, path = %path, status, "http request");
    metrics::counter!("rim_logic_http_requests_total", "path" => path, "status" => status.to_string()).increment(1);
    response
}
