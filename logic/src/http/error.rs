//! The HTTP edge of errors and the response envelopes.
//!
//! [`ApiError`] is the one place where failures become HTTP answers: it picks
//! the status and the public message (logging what must not be returned).
//! v2 answers wrap it in goim's `{"code","message","data"}` envelope, v1
//! answers in goim v1.2's `{"ret","message"}`; both set the real HTTP status,
//! where goim answered 200.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tracing::{error, warn};

use crate::LogicError;

/// goim's v2 code for a request error.
const CODE_REQUEST_ERROR: i32 = -400;
/// rim's v2 code for a request without a bearer token (HTTP 401).
const CODE_UNAUTHORIZED: i32 = -401;
/// rim's v2 code for a request with a bearer token not accepted (HTTP 403).
const CODE_FORBIDDEN: i32 = -403;
/// goim's v2 code for a server error.
const CODE_SERVER_ERROR: i32 = -500;
/// goim v1.2's success code.
const RET_OK: i32 = 1;
/// goim v1.2's error code.
const RET_ERROR: i32 = 65535;

/// Why an HTTP request failed.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// A missing or malformed parameter or body (400).
    BadRequest(String),
    /// The body is larger than `max_body` (413).
    PayloadTooLarge(String),
    /// No such path (404).
    NotFound(String),
    /// The path exists, the method does not (405).
    MethodNotAllowed(String),
    /// The API needs a bearer token and the request has none (401).
    Unauthorized(String),
    /// The request's bearer token is not one of the configured ones (403).
    Forbidden(String),
    /// The logic service refused or failed the request.
    Logic(LogicError),
}

impl From<LogicError> for ApiError {
    fn from(err: LogicError) -> Self {
        ApiError::Logic(err)
    }
}

impl ApiError {
    /// The HTTP status and the message for the caller.
    pub(crate) fn status_and_message(self) -> (StatusCode, String) {
        match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::PayloadTooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, m),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            ApiError::Logic(LogicError::BadRequest(m)) => (StatusCode::BAD_REQUEST, m),
            ApiError::Logic(LogicError::Refused(m)) => (StatusCode::FORBIDDEN, m),
            ApiError::Logic(LogicError::Unavailable(m)) => {
                warn!(error = %m, "request failed: dependency unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, m)
            }
            ApiError::Logic(LogicError::Internal(detail)) => {
                error!(error = %detail, "request failed: internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal server error".to_owned(),
                )
            }
        }
    }
}

/// goim v2's envelope.
#[derive(Debug, Serialize)]
struct Envelope<T> {
    code: i32,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

/// Tells a 401's client which scheme to use (RFC 6750).
pub(crate) fn with_challenge(mut response: Response) -> Response {
    if response.status() == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let special = match &self {
            ApiError::Unauthorized(_) => Some(CODE_UNAUTHORIZED),
            ApiError::Forbidden(_) => Some(CODE_FORBIDDEN),
            _ => None,
        };
        let (status, message) = self.status_and_message();
        let code = special.unwrap_or(if status.is_server_error() {
            CODE_SERVER_ERROR
        } else {
            CODE_REQUEST_ERROR
        });
        let body = Envelope::<()> {
            code,
            message,
            data: None,
        };
        with_challenge((status, Json(body)).into_response())
    }
}

/// An [`ApiError`] answered in the v1 envelope.
#[derive(Debug)]
pub(crate) struct V1Error(pub(crate) ApiError);

impl From<ApiError> for V1Error {
    fn from(err: ApiError) -> Self {
        V1Error(err)
    }
}

impl From<LogicError> for V1Error {
    fn from(err: LogicError) -> Self {
        V1Error(ApiError::Logic(err))
    }
}

/// goim v1.2's envelope.
#[derive(Debug, Serialize)]
struct V1Envelope<T> {
    ret: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let (status, message) = self.0.status_and_message();
        let body = V1Envelope::<()> {
            ret: RET_ERROR,
            message: Some(message),
            data: None,
        };
        with_challenge((status, Json(body)).into_response())
    }
}

/// `{"code":0,"message":""}`.
pub(crate) fn ok() -> Response {
    Json(Envelope::<()> {
        code: 0,
        message: String::new(),
        data: None,
    })
    .into_response()
}

/// `{"code":0,"message":"","data":...}`.
pub(crate) fn ok_data<T: Serialize>(data: T) -> Response {
    Json(Envelope {
        code: 0,
        message: String::new(),
        data: Some(data),
    })
    .into_response()
}

/// `{"ret":1}`.
pub(crate) fn v1_ok() -> Response {
    Json(V1Envelope::<()> {
        ret: RET_OK,
        message: None,
        data: None,
    })
    .into_response()
}

/// `{"ret":1,"data":...}`.
pub(crate) fn v1_ok_data<T: Serialize>(data: T) -> Response {
    Json(V1Envelope {
        ret: RET_OK,
        message: None,
        data: Some(data),
    })
    .into_response()
}

/// The request body, or why it could not be read.
pub(crate) fn read_body(
    body: Result<Bytes, BytesRejection>,
    max_body: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("body: larger than the limit of {max_body} bytes"))
        } else {
            ApiError::BadRequest(format!("body: {}", rejection.body_text()))
        }
    })
}
