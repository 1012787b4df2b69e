//! v2 push endpoints (`/goim/push/*`, the README's HTTP API): parameters in
//! the query, the message as the raw body, as in goim.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;

use serde::Serialize;

use super::error::{ok, ok_data, read_body, ApiError};
use super::params::Params;
use crate::{Logic, StoredPush};

/// The data of a stored push's answer (`store=1`).
#[derive(Debug, Serialize)]
pub(crate) struct StoredData {
    /// The message id.
    id: String,
    /// Mailboxes that hold it.
    accepted: usize,
}

impl From<StoredPush> for StoredData {
    fn from(stored: StoredPush) -> Self {
        StoredData {
            id: stored.id.as_str().to_owned(),
            accepted: stored.accepted,
        }
    }
}

/// `POST /goim/push/keys?operation=&keys=a&keys=b`.
pub(crate) async fn keys(
    State(logic): State<Arc<Logic>>,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    params.refuse_store("keys name connections, which have no mailbox")?;
    let operation = params.optional("operation")?.unwrap_or(0);
    let keys = params.list_str("keys");
    let msg = read_body(body, logic.config().max_body)?;
    logic.push_keys(operation, &keys, msg).await?;
    Ok(ok())
}

/// `POST /goim/push/mids?operation=&mids=1&mids=2`.
pub(crate) async fn mids(
    State(logic): State<Arc<Logic>>,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let operation = params.optional("operation")?.unwrap_or(0);
    let mids: Vec<i64> = params.list("mids")?;
    let store = params.store()?;
    let id = params.stored_id(store)?;
    let msg = read_body(body, logic.config().max_body)?;
    if store {
        let stored = logic.push_stored(operation, &mids, msg, id).await?;
        return Ok(ok_data(StoredData::from(stored)));
    }
    logic.push_mids(operation, &mids, msg).await?;
    Ok(ok())
}

/// `POST /goim/push/room?operation=&type=&room=`; the room key is `type://room`.
pub(crate) async fn room(
    State(logic): State<Arc<Logic>>,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    params.refuse_store("rooms are not stored")?;
    let operation = params.required_nonzero("operation")?;
    let room_type = params.required_str("type")?;
    let room = params.required_str("room")?;
    let msg = read_body(body, logic.config().max_body)?;
    logic
        .push_room(operation, &format!("{room_type}://{room}"), msg)
        .await?;
    Ok(ok())
}

/// `POST /goim/push/all?operation=&speed=`.
pub(crate) async fn all(
    State(logic): State<Arc<Logic>>,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    params.refuse_store("broadcasts are not stored")?;
    let operation = params.required_nonzero("operation")?;
    let speed = params.optional("speed")?.unwrap_or(0);
    if speed < 0 {
        return Err(ApiError::BadRequest("speed: must not be negative".into()));
    }
    let msg = read_body(body, logic.config().max_body)?;
    logic.push_all(operation, speed, msg).await?;
    Ok(ok())
}
