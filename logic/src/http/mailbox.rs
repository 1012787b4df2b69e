//! rim's mailbox API under `/rim/v1` (docs/protocol.md, "Durable
//! messaging"): stored messages to users, history, cursors and trims. JSON
//! in, JSON out; errors are `{"code": <HTTP status>, "message": ".."}`.
//!
//! Bodies come back byte-exact: a stored body that is a JSON text (with no
//! surrounding whitespace) is embedded as it is; any other body is a base64
//! string, and its message says `"body_encoding": "base64"`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rim_mailbox::{Cursor, Page, Stored};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{read_body, ApiError};
use super::params::{quoted, Params};
use crate::{History, Logic};

/// Messages per history page when `limit` is not given.
const HISTORY_LIMIT_DEFAULT: usize = 100;

/// An [`ApiError`] answered in rim's own shape.
#[derive(Debug)]
pub(crate) struct RimError(pub(crate) ApiError);

impl<E: Into<ApiError>> From<E> for RimError {
    fn from(err: E) -> Self {
        RimError(err.into())
    }
}

#[derive(Serialize)]
struct ErrorBody {
    code: u16,
    message: String,
}

impl IntoResponse for RimError {
    fn into_response(self) -> Response {
        let (status, message) = self.0.status_and_message();
        super::error::with_challenge(
            (
                status,
                Json(ErrorBody {
                    code: status.as_u16(),
                    message,
                }),
            )
                .into_response(),
        )
    }
}

/// `POST /rim/v1/messages`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMessage<'a> {
    #[serde(deserialize_with = "super::json::ints")]
    mids: Vec<i64>,
    #[serde(deserialize_with = "super::json::int")]
    op: i32,
    #[serde(borrow)]
    body: &'a RawValue,
    #[serde(default)]
    id: Option<String>,
}

#[derive(Serialize)]
struct Accepted {
    id: String,
    accepted: usize,
    /// Each user's seq for the message, when the store answered before the
    /// reply (standalone; in the distributed mode job appends after it).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    seqs: BTreeMap<String, u32>,
}

/// `POST /rim/v1/messages`: stores the message in each user's mailbox and
/// delivers it live.
pub(crate) async fn post_messages(
    State(logic): State<Arc<Logic>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RimError> {
    let body = read_body(body, logic.config().max_body)?;
    let message: NewMessage<'_> = serde_json::from_slice(&body)
        .map_err(|err| ApiError::BadRequest(format!("body: {err}")))?;
    let msg = body.slice_ref(message.body.get().as_bytes());
    let stored = logic
        .push_stored(message.op, &message.mids, msg, message.id.as_deref())
        .await?;
    Ok(Json(Accepted {
        id: stored.id.as_str().to_owned(),
        accepted: stored.accepted,
        seqs: stored
            .seqs
            .into_iter()
            .map(|(mid, seq)| (mid.to_string(), seq))
            .collect(),
    })
    .into_response())
}

/// The `{mid}` of a mailbox path.
pub(crate) fn mid_of(raw: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(0) => Err(ApiError::BadRequest(
            "mid: 0 is the anonymous user and has no mailbox".into(),
        )),
        Ok(mid) => Ok(mid),
        Err(_) => Err(ApiError::BadRequest(format!(
            "mid: expected an int64, got {}",
            quoted(raw)
        ))),
    }
}

#[derive(Serialize)]
struct MessageView {
    seq: u32,
    id: String,
    ts: i64,
    op: i32,
    from: i64,
    body: BodyView,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_encoding: Option<&'static str>,
}

impl From<Stored> for MessageView {
    fn from(m: Stored) -> Self {
        let (body, body_encoding) = json_or_base64(&m.body);
        MessageView {
            seq: m.seq,
            id: m.id.as_str().to_owned(),
            ts: m.ts_ms,
            op: m.op,
            from: m.from,
            body,
            body_encoding,
        }
    }
}

/// A stored body in a JSON answer.
#[derive(Serialize)]
#[serde(untagged)]
enum BodyView {
    /// The body is a JSON text: embedded as it is.
    Json(Box<RawValue>),
    /// Any other body, base64 (RFC 4648, with padding).
    Base64(String),
}

/// The body as JSON when it is exactly a JSON text, else as a base64 string.
fn json_or_base64(body: &[u8]) -> (BodyView, Option<&'static str>) {
    if let Ok(raw) = serde_json::from_slice::<&RawValue>(body) {
        if raw.get().len() == body.len() {
            return (BodyView::Json(raw.to_owned()), None);
        }
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    (BodyView::Base64(encoded), Some("base64"))
}

#[derive(Serialize)]
struct PageView {
    epoch: String,
    first: u32,
    top: u32,
    more: bool,
    messages: Vec<MessageView>,
}

impl From<Page> for PageView {
    fn from(page: Page) -> Self {
        PageView {
            epoch: page.epoch.as_str().to_owned(),
            first: page.first,
            top: page.top,
            more: page.more,
            messages: page.entries.into_iter().map(MessageView::from).collect(),
        }
    }
}

/// `GET /rim/v1/users/{mid}/messages?after=N&limit=L` (oldest first) or
/// `?before=N&limit=L` (newest first).
pub(crate) async fn get_messages(
    State(logic): State<Arc<Logic>>,
    Path(mid): Path<String>,
    params: Params,
) -> Result<Response, RimError> {
    let mid = mid_of(&mid)?;
    let after: Option<u32> = params.optional("after")?;
    let before: Option<u32> = params.optional("before")?;
    let direction = match (after, before) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest("after and before: give one, not both".into()).into())
        }
        (_, Some(0)) => {
            return Err(ApiError::BadRequest("before: must be at least 1".into()).into())
        }
        (_, Some(before)) => History::Before(before),
        (after, None) => History::After(after.unwrap_or(0)),
    };
    let limit: usize = params.optional("limit")?.unwrap_or(HISTORY_LIMIT_DEFAULT);
    if !(1..=crate::HISTORY_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit: must be 1 to {}, got {limit}",
            crate::HISTORY_LIMIT_MAX
        ))
        .into());
    }
    let page = logic.history(mid, direction, limit).await?;
    Ok(Json(PageView::from(page)).into_response())
}

#[derive(Serialize)]
struct DeviceView {
    ack: u32,
    ts: i64,
}

#[derive(Serialize)]
struct CursorView {
    epoch: String,
    first: u32,
    top: u32,
    read: u32,
    devices: BTreeMap<String, DeviceView>,
}

impl From<Cursor> for CursorView {
    fn from(cursor: Cursor) -> Self {
        CursorView {
            epoch: cursor.epoch.as_str().to_owned(),
            first: cursor.first,
            top: cursor.top,
            read: cursor.read,
            devices: cursor
                .devices
                .into_iter()
                .map(|(key, d)| {
                    (
                        key,
                        DeviceView {
                            ack: d.ack,
                            ts: d.ts_ms,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// `GET /rim/v1/users/{mid}/cursor`.
pub(crate) async fn get_cursor(
    State(logic): State<Arc<Logic>>,
    Path(mid): Path<String>,
) -> Result<Response, RimError> {
    let mid = mid_of(&mid)?;
    let cursor = logic.cursor(mid).await?;
    Ok(Json(CursorView::from(cursor)).into_response())
}

/// `DELETE /rim/v1/users/{mid}/messages?upto=N`: removes every message up to
/// and including N; answers the cursor after the trim.
pub(crate) async fn delete_messages(
    State(logic): State<Arc<Logic>>,
    Path(mid): Path<String>,
    params: Params,
) -> Result<Response, RimError> {
    let mid = mid_of(&mid)?;
    let upto: u32 = params.required("upto")?;
    let cursor = logic.trim(mid, upto).await?;
    Ok((StatusCode::OK, Json(CursorView::from(cursor))).into_response())
}
