//! rim's group and mute API under `/rim/v1` (docs/protocol.md, "Chat"):
//! membership, messages to a group from the backend, and user mutes. JSON
//! in and out; errors as the rest of `/rim/v1`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rim_mailbox::Mute;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{read_body, ApiError};
use super::mailbox::{mid_of, RimError};
use super::params::{quoted, Params};
use crate::{GroupError, Logic, MuteScope};

impl From<GroupError> for RimError {
    fn from(err: GroupError) -> Self {
        match err {
            GroupError::Logic(e) => RimError(ApiError::Logic(e)),
            GroupError::NoGroup(_) => RimError(ApiError::NotFound(err.to_string())),
            GroupError::TooBig { .. } => RimError(ApiError::PayloadTooLarge(err.to_string())),
        }
    }
}

/// The `{gid}` of a group path.
fn gid_of(raw: &str) -> Result<i64, ApiError> {
    match raw.parse::<i64>() {
        Ok(0) => Err(ApiError::BadRequest("gid: 0 is not a group".into())),
        Ok(gid) => Ok(gid),
        Err(_) => Err(ApiError::BadRequest(format!(
            "gid: expected an int64, got {}",
            quoted(raw)
        ))),
    }
}

fn json_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| ApiError::BadRequest(format!("body: {err}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mids {
    #[serde(deserialize_with = "super::json::ints")]
    mids: Vec<i64>,
}

#[derive(Serialize)]
struct Members {
    mids: Vec<i64>,
}

fn members(mids: Vec<i64>) -> Response {
    Json(Members { mids }).into_response()
}

/// `PUT /rim/v1/groups/{gid}/members` `{"mids": [..]}`: adds members.
pub(crate) async fn put_members(
    State(logic): State<Arc<Logic>>,
    Path(gid): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RimError> {
    let gid = gid_of(&gid)?;
    let body = read_body(body, logic.config().max_body)?;
    let Mids { mids } = json_body(&body)?;
    Ok(members(logic.add_members(gid, &mids).await?))
}

/// `DELETE /rim/v1/groups/{gid}/members` `{"mids": [..]}`: removes members.
pub(crate) async fn delete_members(
    State(logic): State<Arc<Logic>>,
    Path(gid): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RimError> {
    let gid = gid_of(&gid)?;
    let body = read_body(body, logic.config().max_body)?;
    let Mids { mids } = json_body(&body)?;
    Ok(members(logic.remove_members(gid, &mids).await?))
}

/// `GET /rim/v1/groups/{gid}/members`.
pub(crate) async fn get_members(
    State(logic): State<Arc<Logic>>,
    Path(gid): Path<String>,
) -> Result<Response, RimError> {
    let gid = gid_of(&gid)?;
    Ok(members(logic.group_members(gid).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupMessage<'a> {
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
}

/// `POST /rim/v1/groups/{gid}/messages` `{"op", "body", "id"?}`: stores the
/// message in every member's mailbox (write diffusion).
pub(crate) async fn post_group_message(
    State(logic): State<Arc<Logic>>,
    Path(gid): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RimError> {
    let gid = gid_of(&gid)?;
    let body = read_body(body, logic.config().max_body)?;
    let message: GroupMessage<'_> = json_body(&body)?;
    let msg = body.slice_ref(message.body.get().as_bytes());
    let stored = logic
        .push_group(gid, message.op, msg, message.id.as_deref())
        .await?;
    Ok(Json(Accepted {
        id: stored.id.as_str().to_owned(),
        accepted: stored.accepted,
    })
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MuteRequest {
    /// RFC 3339, or null: until lifted.
    until: Option<String>,
    scope: String,
}

#[derive(Serialize)]
struct MuteView {
    scope: String,
    /// RFC 3339 (UTC), or null: until lifted.
    until: Option<String>,
}

#[derive(Serialize)]
struct MutesView {
    mid: i64,
    mutes: Vec<MuteView>,
}

fn mutes_view(mid: i64, mutes: Vec<Mute>) -> Response {
    let mutes = mutes
        .into_iter()
        .map(|m| MuteView {
            scope: m.scope,
            until: m.until_ms.map(|ms| {
                let t = std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
                humantime::format_rfc3339_millis(t).to_string()
            }),
        })
        .collect();
    Json(MutesView { mid, mutes }).into_response()
}

/// `PUT /rim/v1/users/{mid}/mute` `{"until": "<RFC 3339>" | null, "scope": ..}`.
pub(crate) async fn put_mute(
    State(logic): State<Arc<Logic>>,
    Path(mid): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RimError> {
    let mid = mid_of(&mid)?;
    let body = read_body(body, logic.config().max_body)?;
    let request: MuteRequest = json_body(&body)?;
    let scope = MuteScope::parse(&request.scope)?;
    let until = match &request.until {
        None => None,
        Some(text) => Some(parse_rfc3339(text)?),
    };
    let mutes = logic.mute(mid, &scope, until).await?;
    Ok(mutes_view(mid, mutes))
}

/// An RFC 3339 time (`2030-01-01T00:00:00Z`, any offset, years 0000 to
/// 9999; before 1970 is fine, it has passed).
fn parse_rfc3339(text: &str) -> Result<SystemTime, ApiError> {
    let refuse = |reason: &dyn std::fmt::Display| {
        ApiError::BadRequest(format!(
            "until: an RFC 3339 time or null, got {}: {reason}",
            quoted(text)
        ))
    };
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| refuse(&e))?;
    Ok(SystemTime::from(time))
}

/// `DELETE /rim/v1/users/{mid}/mute[?scope=]`: lifts one scope, or all.
pub(crate) async fn delete_mute(
    State(logic): State<Arc<Logic>>,
    Path(mid): Path<String>,
    params: Params,
) -> Result<Response, RimError> {
    let mid = mid_of(&mid)?;
    let scope = params.str("scope").map(MuteScope::parse).transpose()?;
    let mutes = logic.unmute(mid, scope.as_ref()).await?;
    Ok(mutes_view(mid, mutes))
}

/// `GET /rim/v1/users/{mid}/mute`: the mutes that hold.
pub(crate) async fn get_mute(
    State(logic): State<Arc<Logic>>,
    Path(mid): Path<String>,
) -> Result<Response, RimError> {
    let mid = mid_of(&mid)?;
    let mutes = logic.user_mutes(mid).await?;
    Ok((StatusCode::OK, mutes_view(mid, mutes)).into_response())
}
