//! v2 node endpoints (`/goim/nodes/*`): where clients should connect (goim's
//! `NodesReply`), and the comet instance list.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use rim_proto::pb::logic::{Backoff, NodesReply, NodesReq};
use serde::Serialize;

use super::error::{ok_data, ApiError};
use super::params::Params;
use crate::balancer::effective_weight;
use crate::Logic;

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

fn is_zero_f32(v: &f32) -> bool {
    *v == 0.0
}

/// `NodesReply` with goim's JSON names and `omitempty`.
#[derive(Debug, Serialize)]
struct NodesJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    domain: String,
    #[serde(skip_serializing_if = "is_zero_i32")]
    tcp_port: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    ws_port: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    wss_port: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    heartbeat: i32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backoff: Option<BackoffJson>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    heartbeat_max: i32,
}

#[derive(Debug, Serialize)]
struct BackoffJson {
    #[serde(skip_serializing_if = "is_zero_i32")]
    max_delay: i32,
    #[serde(skip_serializing_if = "is_zero_i32")]
    base_delay: i32,
    #[serde(skip_serializing_if = "is_zero_f32")]
    factor: f32,
    #[serde(skip_serializing_if = "is_zero_f32")]
    jitter: f32,
}

impl From<Backoff> for BackoffJson {
    fn from(b: Backoff) -> Self {
        BackoffJson {
            max_delay: b.max_delay,
            base_delay: b.base_delay,
            factor: b.factor,
            jitter: b.jitter,
        }
    }
}

impl From<NodesReply> for NodesJson {
    fn from(r: NodesReply) -> Self {
        NodesJson {
            domain: r.domain,
            tcp_port: r.tcp_port,
            ws_port: r.ws_port,
            wss_port: r.wss_port,
            heartbeat: r.heartbeat,
            nodes: r.nodes,
            backoff: r.backoff.map(BackoffJson::from),
            heartbeat_max: r.heartbeat_max,
        }
    }
}

/// A comet in goim's discovery instance shape, with the fields rim knows.
#[derive(Debug, Serialize)]
struct Instance {
    hostname: String,
    addrs: Vec<String>,
    latest_timestamp: i64,
    metadata: BTreeMap<&'static str, String>,
}

/// `GET /goim/nodes/weighted?platform=`: the comets a client should use.
pub(crate) async fn weighted(
    State(logic): State<Arc<Logic>>,
    params: Params,
) -> Result<Response, ApiError> {
    let req = NodesReq {
        platform: params.str("platform").unwrap_or_default().to_owned(),
        client_ip: String::new(),
    };
    let reply = logic.nodes(req).await?;
    Ok(ok_data(NodesJson::from(reply)))
}

/// `GET /goim/nodes/instances`: every comet offered to clients (online
/// report within `node_stale`).
pub(crate) async fn instances(State(logic): State<Arc<Logic>>) -> Result<Response, ApiError> {
    let instances: Vec<Instance> = logic
        .online_nodes()
        .await?
        .into_iter()
        .map(|s| Instance {
            metadata: BTreeMap::from([
                ("weight", effective_weight(s.weight).to_string()),
                ("conn_count", s.conn_count.to_string()),
                ("ip_count", s.ip_count.to_string()),
                ("offline", "false".to_owned()),
            ]),
            hostname: s.server,
            addrs: s.addrs,
            latest_timestamp: s.updated,
        })
        .collect();
    Ok(ok_data(instances))
}
