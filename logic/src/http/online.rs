//! v2 online endpoints (`/goim/online/*`, the README's HTTP API), answered
//! from the cluster online aggregate.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::error::{ok_data, ApiError};
use super::params::Params;
use crate::Logic;

#[derive(Debug, Serialize)]
struct TopRoom {
    room_id: String,
    count: i64,
}

#[derive(Debug, Serialize)]
struct Total {
    ip_count: i64,
    conn_count: i64,
}

/// `GET /goim/online/top?type=&limit=`: the busiest rooms of a type.
pub(crate) async fn top(
    State(logic): State<Arc<Logic>>,
    params: Params,
) -> Result<Response, ApiError> {
    let room_type = params.required_str("type")?;
    let limit: i64 = params.required_nonzero("limit")?;
    let limit = usize::try_from(limit)
        .map_err(|_| ApiError::BadRequest("limit: must be positive".into()))?;
    let top: Vec<TopRoom> = logic
        .online_top(room_type, limit)
        .await?
        .into_iter()
        .map(|(room_id, count)| TopRoom { room_id, count })
        .collect();
    Ok(ok_data(top))
}

/// `GET /goim/online/room?type=&rooms=a&rooms=b`: connections per room.
pub(crate) async fn room(
    State(logic): State<Arc<Logic>>,
    params: Params,
) -> Result<Response, ApiError> {
    let room_type = params.required_str("type")?;
    let rooms = params.list_str("rooms");
    if rooms.is_empty() {
        return Err(ApiError::BadRequest("rooms: required".into()));
    }
    let counts: serde_json::Map<String, serde_json::Value> = logic
        .online_rooms(room_type, &rooms)
        .await?
        .into_iter()
        .map(|(room, count)| (room, count.into()))
        .collect();
    Ok(ok_data(counts))
}

/// `GET /goim/online/total`: cluster-wide connections and IPs.
pub(crate) async fn total(State(logic): State<Arc<Logic>>) -> Result<Response, ApiError> {
    let total = logic.online_total().await?;
    Ok(ok_data(Total {
        ip_count: total.ip_count,
        conn_count: total.conn_count,
    }))
}
