//! goim v1.2's HTTP API (`/1/*`, the README's HTTP API) on top of the same
//! logic service: `{"ret":1}` envelopes, users addressed by uid (= mid),
//! rooms by their full string id. goim v1 had no accepts, so its pushes reach
//! their targets whatever their accepts ([`Accepts::Ignore`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::{read_body, v1_ok, v1_ok_data, ApiError, V1Error};
use super::params::{quoted, Params};
use super::push::StoredData;
use crate::{Accepts, Logic};

/// The operation of a v1 push: `operation` if given, else the configured one.
fn operation(logic: &Logic, params: &Params) -> Result<i32, ApiError> {
    Ok(params
        .optional("operation")?
        .unwrap_or(logic.config().v1_operation))
}

/// `POST /1/push?uid=`: push the body to every connection of one user.
pub(crate) async fn push(
    State(logic): State<Arc<Logic>>,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V1Error> {
    let uid: i64 = params.required("uid")?;
    let operation = operation(&logic, &params)?;
    let store = params.store()?;
    let id = params.stored_id(store)?;
    let msg = read_body(body, logic.config().max_body)?;
    if store {
        let stored = logic
            .push_stored_with(operation, &[uid], msg, id, Accepts::Ignore)
            .await?;
        return Ok(v1_ok_data(StoredData::from(stored)));
    }
    logic
        .push_mids_with(operation, &[uid], msg, Accepts::Ignore)
        .await?;
    Ok(v1_ok())
}

/// The `/1/pushs` body: the message as any JSON value, and the users.
#[derive(Debug, Deserialize)]
struct PushsBody<'a> {
    #[serde(borrow)]
    m: &'a RawValue,
    #[serde(default, deserialize_with = "super::json::ints")]
    u: Vec<i64>,
}

/// `POST /1/pushs`: push the raw JSON of `m` to every connection of the users `u`.
pub(crate) async fn pushs(
    State(logic): State<Arc<Logic>>,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V1Error> {
    let operation = operation(&logic, &params)?;
    let store = params.store()?;
    let id = params.stored_id(store)?;
    let body = read_body(body, logic.config().max_body)?;
    let parsed: PushsBody<'_> = serde_json::from_slice(&body)
        .map_err(|err| ApiError::BadRequest(format!("body: invalid JSON: {err}")))?;
    if parsed.u.is_empty() {
        return Err(ApiError::BadRequest("u: at least one uid is required".into()).into());
    }
    // `m` borrows from the body, so the message shares its buffer.
    let msg = body.slice_ref(parsed.m.get().as_bytes());
    if store {
        let stored = logic
            .push_stored_with(operation, &parsed.u, msg, id, Accepts::Ignore)
            .await?;
        return Ok(v1_ok_data(StoredData::from(stored)));
    }
    logic
        .push_mids_with(operation, &parsed.u, msg, Accepts::Ignore)
        .await?;
    Ok(v1_ok())
}

/// `POST /1/push/room?rid=`: push the body to a room, `rid` used verbatim.
pub(crate) async fn push_room(
    State(logic): State<Arc<Logic>>,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V1Error> {
    params.refuse_store("rooms are not stored")?;
    let room = params.required_str("rid")?;
    let operation = operation(&logic, &params)?;
    let msg = read_body(body, logic.config().max_body)?;
    logic.push_room(operation, room, msg).await?;
    Ok(v1_ok())
}

/// `POST /1/push/all`: broadcast the body.
pub(crate) async fn push_all(
    State(logic): State<Arc<Logic>>,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V1Error> {
    params.refuse_store("broadcasts are not stored")?;
    let operation = operation(&logic, &params)?;
    let msg = read_body(body, logic.config().max_body)?;
    logic
        .push_all_with(operation, 0, msg, Accepts::Ignore)
        .await?;
    Ok(v1_ok())
}

#[derive(Debug, Serialize)]
struct RoomCount {
    #[serde(rename = "RoomId")]
    room_id: String,
    #[serde(rename = "Count")]
    count: i64,
}

#[derive(Debug, Serialize)]
struct ServerCount {
    #[serde(rename = "Server")]
    server: String,
    #[serde(rename = "Count")]
    count: i64,
}

/// `GET /1/count?type=room|server`: connections per room or per comet.
pub(crate) async fn count(
    State(logic): State<Arc<Logic>>,
    params: Params,
) -> Result<Response, V1Error> {
    match params.required_str("type")? {
        "room" => {
            let rooms: Vec<RoomCount> = logic
                .online_room_counts()
                .await?
                .into_iter()
                .map(|(room_id, count)| RoomCount { room_id, count })
                .collect();
            Ok(v1_ok_data(rooms))
        }
        "server" => {
            let servers: Vec<ServerCount> = logic
                .online_servers()
                .await?
                .into_iter()
                .map(|s| ServerCount {
                    server: s.server,
                    count: s.conn_count,
                })
                .collect();
            Ok(v1_ok_data(servers))
        }
        other => Err(ApiError::BadRequest(format!(
            "type: must be \"room\" or \"server\", got {}",
            quoted(other)
        ))
        .into()),
    }
}

/// `POST /1/server/del?server=`: forget a comet and its sessions.
pub(crate) async fn server_del(
    State(logic): State<Arc<Logic>>,
    params: Params,
) -> Result<Response, V1Error> {
    let server = params.required_str("server")?;
    logic.del_server(server).await?;
    Ok(v1_ok())
}
