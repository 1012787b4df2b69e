//! Bearer tokens on the push API (`[logic.api]`): protected routes need
//! `Authorization: Bearer <token>` unless the API is open (to everyone, or,
//! by default in standalone, to loopback clients); none answers 401, a
//! wrong one 403, in the envelope of the path's API version.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::in_envelope_of;
use crate::{ApiAccess, Logic};

/// Lets the request through only with one of the configured tokens. Added
/// as a route layer, so it runs before the handler reads the body.
pub(crate) async fn require(
    State(logic): State<Arc<Logic>>,
    request: Request,
    next: Next,
) -> Response {
    let api = &logic.config().api;
    match api.access() {
        ApiAccess::Open => return next.run(request).await,
        // Both servers record the peer address (`ConnectInfo`); a request
        // without one is refused, so a server that stops recording it
        // closes the API instead of opening it to the network.
        ApiAccess::Loopback if is_loopback(&request) => return next.run(request).await,
        ApiAccess::Loopback | ApiAccess::Tokens => {}
    }
    let tokens = &api.tokens;
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    let refusal = match offered {
        None if tokens.is_empty() => ApiError::Unauthorized(
            "the push API serves loopback clients only: configure logic.api.tokens \
             (or logic.api.open = true)"
                .into(),
        ),
        None => ApiError::Unauthorized(
            "missing bearer token: send the header Authorization: Bearer <token>".into(),
        ),
        Some(offered) if accepted(tokens, offered) => return next.run(request).await,
        Some(_) => ApiError::Forbidden("bearer token not accepted".into()),
    };
    tracing::info!(
        method = %request.method(),
        path = %request.uri().path(),
        reason = ?refusal,
        "push api request refused"
    );
    in_envelope_of(request.uri(), refusal)
}

/// Whether the request came from a loopback address; `false` when its peer
/// address is unknown (fail closed).
fn is_loopback(request: &Request) -> bool {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback())
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `offered` is one of `tokens`, comparing every token in constant
/// time (only the lengths can leak).
fn accepted(tokens: &[String], offered: &str) -> bool {
    tokens
        .iter()
        .fold(subtle::Choice::from(0), |found, token| {
            found | token.as_bytes().ct_eq(offered.as_bytes())
        })
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn token_matching() {
        let tokens = vec!["one".to_owned(), "two".to_owned()];
        assert!(accepted(&tokens, "one"));
        assert!(accepted(&tokens, "two"));
        assert!(!accepted(&tokens, "on"));
        assert!(!accepted(&tokens, "three"));
        assert!(!accepted(&[], "one"));
    }
}
