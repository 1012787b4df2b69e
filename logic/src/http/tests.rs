//! HTTP tests without sockets: the real in-memory router and the real
//! in-process queue, asserting on exact envelopes and on the records queued.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use rim_proto::pb::logic::push_msg::Type;
use rim_proto::pb::logic::{OnlineReq, PushMsg};
use serde_json::{json, Value};
use tokio::sync::mpsc::Receiver;
use tower::ServiceExt;

use crate::service::tests::{logic, logic_with};
use crate::{Config, Logic};

struct Answer {
    status: StatusCode,
    json: Value,
    allow: Option<String>,
}

/// The peer address a server records for a client on this host: the
/// default API serves loopback clients only, and refuses a request whose
/// peer is unknown.
fn loopback_peer() -> ConnectInfo<SocketAddr> {
    ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000)))
}

/// A request from a loopback client, as the real servers see it.
async fn call(logic: &Arc<Logic>, method: &str, uri: &str, body: impl Into<Body>) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .unwrap();
    request.extensions_mut().insert(loopback_peer());
    let response = super::app(logic.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let allow = response
        .headers()
        .get(header::ALLOW)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{method} {uri}: not JSON: {bytes:?}"));
    Answer {
        status,
        json,
        allow,
    }
}

async fn post(logic: &Arc<Logic>, uri: &str, body: &'static [u8]) -> Answer {
    call(logic, "POST", uri, body).await
}

async fn get(logic: &Arc<Logic>, uri: &str) -> Answer {
    call(logic, "GET", uri, Body::empty()).await
}

#[track_caller]
fn assert_answer(answer: &Answer, status: StatusCode, json: Value) {
    assert_eq!((answer.status, &answer.json), (status, &json));
}

fn ok() -> Value {
    json!({"code": 0, "message": ""})
}

fn bad(message: &str) -> Value {
    json!({"code": -400, "message": message})
}

fn v1_bad(message: &str) -> Value {
    json!({"ret": 65535, "message": message})
}

fn drain(rx: &mut Receiver<PushMsg>) -> Vec<PushMsg> {
    let mut out = Vec::new();
    while let Ok(record) = rx.try_recv() {
        out.push(record);
    }
    out
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn report(logic: &Logic, server: &str, rooms: &[(&str, i32)], conns: i64, ips: i64) {
    logic
        .renew_online(OnlineReq {
            server: server.into(),
            room_count: rooms.iter().map(|(r, c)| (r.to_string(), *c)).collect(),
            conn_count: conns,
            ip_count: ips,
            addrs: vec![format!("{server}.example:3101")],
            weight: 0,
            grpc_addr: String::new(),
            offline: false,
        })
        .await
        .unwrap();
}

// === v2 push ===

#[tokio::test]
async fn push_keys_groups_per_server() {
    let (logic, mut rx, _) = logic();
    logic.router.add_mapping(1, "k1", "c1").await.unwrap();
    logic.router.add_mapping(2, "k2", "c2").await.unwrap();
    logic.router.add_mapping(3, "k3", "c1").await.unwrap();
    let answer = post(
        &logic,
        "/goim/push/keys?operation=1000&keys=k1&keys=k2&keys=k3&keys=gone",
        b"hello",
    )
    .await;
    assert_answer(&answer, StatusCode::OK, ok());
    let records = drain(&mut rx);
    assert_eq!(
        records,
        vec![
            PushMsg {
                r#type: Type::Push as i32,
                operation: 1000,
                server: "c1".into(),
                keys: strings(&["k1", "k3"]),
                msg: Bytes::from_static(b"hello"),
                ..PushMsg::default()
            },
            PushMsg {
                r#type: Type::Push as i32,
                operation: 1000,
                server: "c2".into(),
                keys: strings(&["k2"]),
                msg: Bytes::from_static(b"hello"),
                ..PushMsg::default()
            },
        ]
    );
    // operation is optional and defaults to 0.
    assert_answer(
        &post(&logic, "/goim/push/keys?keys=k2", b"x").await,
        StatusCode::OK,
        ok(),
    );
    assert_eq!(drain(&mut rx)[0].operation, 0);
}

#[tokio::test]
async fn push_keys_bad_requests() {
    let (logic, mut rx, _) = logic();
    assert_answer(
        &post(&logic, "/goim/push/keys?operation=1", b"x").await,
        StatusCode::BAD_REQUEST,
        bad("keys: at least one key is required"),
    );
    assert_answer(
        &post(&logic, "/goim/push/keys?operation=1&keys=", b"x").await,
        StatusCode::BAD_REQUEST,
        bad("keys: at least one key is required"),
    );
    assert_answer(
        &post(&logic, "/goim/push/keys?operation=abc&keys=a", b"x").await,
        StatusCode::BAD_REQUEST,
        bad("operation: invalid digit found in string \"abc\""),
    );
    assert!(drain(&mut rx).is_empty());
}

#[tokio::test]
async fn push_mids_resolves_users() {
    let (logic, mut rx, _) = logic();
    logic.router.add_mapping(1, "a", "c1").await.unwrap();
    logic.router.add_mapping(1, "b", "c2").await.unwrap();
    let answer = post(&logic, "/goim/push/mids?operation=7&mids=1&mids=404", b"m").await;
    assert_answer(&answer, StatusCode::OK, ok());
    let mut records = drain(&mut rx);
    records.sort_by(|a, b| a.server.cmp(&b.server));
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].server.as_str(), records[0].keys.clone()),
        ("c1", strings(&["a"]))
    );
    assert_eq!(
        (records[1].server.as_str(), records[1].keys.clone()),
        ("c2", strings(&["b"]))
    );
    assert!(records
        .iter()
        .all(|r| r.operation == 7 && r.msg == "m" && r.r#type == Type::Push as i32));

    assert_answer(
        &post(&logic, "/goim/push/mids?operation=7&mids=1&mids=x", b"m").await,
        StatusCode::BAD_REQUEST,
        bad("mids: invalid digit found in string \"x\""),
    );
    assert_answer(
        &post(&logic, "/goim/push/mids?operation=7", b"m").await,
        StatusCode::BAD_REQUEST,
        bad("mids: at least one mid is required"),
    );
    assert_answer(
        &post(&logic, "/goim/push/mids?operation=1.5&mids=1", b"m").await,
        StatusCode::BAD_REQUEST,
        bad("operation: invalid digit found in string \"1.5\""),
    );
    assert!(drain(&mut rx).is_empty());
}

#[tokio::test]
async fn push_room_joins_type_and_room() {
    let (logic, mut rx, _) = logic();
    let answer = post(
        &logic,
        "/goim/push/room?operation=1001&type=live&room=1000",
        b"r",
    )
    .await;
    assert_answer(&answer, StatusCode::OK, ok());
    assert_eq!(
        drain(&mut rx),
        vec![PushMsg {
            r#type: Type::Room as i32,
            operation: 1001,
            room: "live://1000".into(),
            msg: Bytes::from_static(b"r"),
            ..PushMsg::default()
        }]
    );
    for (uri, message) in [
        ("/goim/push/room?type=live&room=1", "operation: required"),
        (
            "/goim/push/room?operation=0&type=live&room=1",
            "operation: required, must not be 0",
        ),
        (
            "/goim/push/room?operation=x&type=live&room=1",
            "operation: invalid digit found in string \"x\"",
        ),
        ("/goim/push/room?operation=1&room=1", "type: required"),
        ("/goim/push/room?operation=1&type=live", "room: required"),
    ] {
        assert_answer(
            &post(&logic, uri, b"r").await,
            StatusCode::BAD_REQUEST,
            bad(message),
        );
    }
    assert!(drain(&mut rx).is_empty());
}

#[tokio::test]
async fn push_all_broadcasts() {
    let (logic, mut rx, _) = logic();
    let answer = post(&logic, "/goim/push/all?operation=1002&speed=2", b"b").await;
    assert_answer(&answer, StatusCode::OK, ok());
    assert_eq!(
        drain(&mut rx),
        vec![PushMsg {
            r#type: Type::Broadcast as i32,
            operation: 1002,
            speed: 2,
            msg: Bytes::from_static(b"b"),
            ..PushMsg::default()
        }]
    );
    assert_answer(
        &post(&logic, "/goim/push/all?operation=1002", b"b").await,
        StatusCode::OK,
        ok(),
    );
    assert_eq!(drain(&mut rx)[0].speed, 0);
    for (uri, message) in [
        ("/goim/push/all", "operation: required"),
        (
            "/goim/push/all?operation=0",
            "operation: required, must not be 0",
        ),
        (
            "/goim/push/all?operation=1&speed=fast",
            "speed: invalid digit found in string \"fast\"",
        ),
        (
            "/goim/push/all?operation=1&speed=-1",
            "speed: must not be negative",
        ),
    ] {
        assert_answer(
            &post(&logic, uri, b"b").await,
            StatusCode::BAD_REQUEST,
            bad(message),
        );
    }
    assert!(drain(&mut rx).is_empty());
}

// === limits, routing ===

#[tokio::test]
async fn oversize_body_is_413_in_both_envelopes() {
    let config = Config {
        max_body: 16,
        ..Config::default()
    };
    let (logic, mut rx, _) = logic_with(config, 16);
    let fits = post(&logic, "/goim/push/all?operation=1", b"0123456789abcdef").await;
    assert_answer(&fits, StatusCode::OK, ok());
    let big = post(&logic, "/goim/push/all?operation=1", b"0123456789abcdefX").await;
    assert_answer(
        &big,
        StatusCode::PAYLOAD_TOO_LARGE,
        bad("body: larger than the limit of 16 bytes"),
    );
    let big = post(&logic, "/1/push/all", b"0123456789abcdefX").await;
    assert_answer(
        &big,
        StatusCode::PAYLOAD_TOO_LARGE,
        v1_bad("body: larger than the limit of 16 bytes"),
    );
    assert_eq!(drain(&mut rx).len(), 1);
}

#[tokio::test]
async fn default_limit_is_one_mebibyte() {
    let (logic, mut rx, _) = logic();
    let answer = call(
        &logic,
        "POST",
        "/goim/push/all?operation=1",
        vec![b'x'; (1 << 20) + 1],
    )
    .await;
    assert_answer(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        bad("body: larger than the limit of 1048576 bytes"),
    );
    let answer = call(
        &logic,
        "POST",
        "/goim/push/all?operation=1",
        vec![b'x'; 1 << 20],
    )
    .await;
    assert_answer(&answer, StatusCode::OK, ok());
    assert_eq!(drain(&mut rx)[0].msg.len(), 1 << 20);
}

#[tokio::test]
async fn wrong_method_is_405_with_envelope() {
    let (logic, _rx, _) = logic();
    let answer = get(&logic, "/goim/push/keys?keys=a").await;
    assert_answer(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        bad("method GET not allowed for /goim/push/keys"),
    );
    assert_eq!(answer.allow.as_deref(), Some("POST"));
    let answer = post(&logic, "/goim/online/total", b"").await;
    assert_answer(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        bad("method POST not allowed for /goim/online/total"),
    );
    let answer = get(&logic, "/1/push?uid=1").await;
    assert_answer(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        v1_bad("method GET not allowed for /1/push"),
    );
}

#[tokio::test]
async fn unknown_path_is_404_with_envelope() {
    let (logic, _rx, _) = logic();
    assert_answer(
        &get(&logic, "/goim/nope").await,
        StatusCode::NOT_FOUND,
        bad("no such path: /goim/nope"),
    );
    assert_answer(
        &post(&logic, "/", b"").await,
        StatusCode::NOT_FOUND,
        bad("no such path: /"),
    );
    assert_answer(
        &get(&logic, "/1/nope").await,
        StatusCode::NOT_FOUND,
        v1_bad("no such path: /1/nope"),
    );
}

#[tokio::test(start_paused = true)]
async fn full_queue_is_503_never_success() {
    let (logic, mut rx, _) = logic_with(Config::default(), 1);
    assert_answer(
        &post(&logic, "/goim/push/all?operation=1", b"a").await,
        StatusCode::OK,
        ok(),
    );
    let answer = post(&logic, "/goim/push/all?operation=1", b"b").await;
    assert_answer(
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"code": -500, "message": "message not confirmed: push queue did not accept the message within 50ms"}),
    );
    let answer = post(&logic, "/1/push/room?rid=live://1", b"c").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json["ret"], 65535);

    // A push over two comets with room for one record says what happened.
    assert_eq!(drain(&mut rx).len(), 1);
    logic.router.add_mapping(1, "a", "c1").await.unwrap();
    logic.router.add_mapping(1, "b", "c2").await.unwrap();
    let answer = post(&logic, "/goim/push/mids?operation=1&mids=1", b"d").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    let message = answer.json["message"].as_str().unwrap();
    assert!(message.contains("1 of 2"), "{message}");
    assert_eq!(answer.json["code"], -500);
}

#[tokio::test]
async fn closed_queue_is_503() {
    let (logic, rx, _) = logic();
    drop(rx);
    let answer = post(&logic, "/goim/push/room?operation=1&type=live&room=1", b"x").await;
    assert_answer(
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"code": -500, "message": "message not confirmed: push queue unavailable: job is not consuming"}),
    );
    let answer = post(&logic, "/1/push/all", b"x").await;
    assert_answer(
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        v1_bad("message not confirmed: push queue unavailable: job is not consuming"),
    );
}

// === v2 online ===

#[tokio::test]
async fn online_top_matches_the_exact_type() {
    let (logic, _rx, _) = logic();
    assert_answer(
        &get(&logic, "/goim/online/top?type=live&limit=5").await,
        StatusCode::OK,
        json!({"code": 0, "message": "", "data": []}),
    );
    report(
        &logic,
        "c1",
        &[("live://1", 3), ("live://2", 9), ("liveshow://3", 50)],
        12,
        10,
    )
    .await;
    report(&logic, "c2", &[("live://1", 4), ("chat://1", 8)], 12, 10).await;
    assert_answer(
        &get(&logic, "/goim/online/top?type=live&limit=5").await,
        StatusCode::OK,
        json!({"code": 0, "message": "", "data": [
            {"room_id": "2", "count": 9},
            {"room_id": "1", "count": 7},
        ]}),
    );
    assert_answer(
        &get(&logic, "/goim/online/top?type=live&limit=1").await,
        StatusCode::OK,
        json!({"code": 0, "message": "", "data": [{"room_id": "2", "count": 9}]}),
    );
    for (uri, message) in [
        ("/goim/online/top?limit=1", "type: required"),
        ("/goim/online/top?type=live", "limit: required"),
        (
            "/goim/online/top?type=live&limit=0",
            "limit: required, must not be 0",
        ),
        (
            "/goim/online/top?type=live&limit=-2",
            "limit: must be positive",
        ),
        (
            "/goim/online/top?type=live&limit=ten",
            "limit: invalid digit found in string \"ten\"",
        ),
    ] {
        assert_answer(
            &get(&logic, uri).await,
            StatusCode::BAD_REQUEST,
            bad(message),
        );
    }
}

#[tokio::test]
async fn online_room_and_total() {
    let (logic, _rx, _) = logic();
    report(&logic, "c1", &[("live://1", 3)], 5, 4).await;
    report(&logic, "c2", &[("live://1", 4), ("live://2", 1)], 6, 6).await;
    assert_answer(
        &get(
            &logic,
            "/goim/online/room?type=live&rooms=1&rooms=404&rooms=2",
        )
        .await,
        StatusCode::OK,
        json!({"code": 0, "message": "", "data": {"1": 7, "404": 0, "2": 1}}),
    );
    assert_answer(
        &get(&logic, "/goim/online/room?rooms=1").await,
        StatusCode::BAD_REQUEST,
        bad("type: required"),
    );
    assert_answer(
        &get(&logic, "/goim/online/room?type=live").await,
        StatusCode::BAD_REQUEST,
        bad("rooms: required"),
    );
    assert_answer(
        &get(&logic, "/goim/online/total").await,
        StatusCode::OK,
        json!({"code": 0, "message": "", "data": {"ip_count": 10, "conn_count": 11}}),
    );
}

// === v2 nodes ===

#[tokio::test]
async fn nodes_weighted_shape_web_and_other() {
    let config = Config {
        online_refresh: std::time::Duration::ZERO,
        ..Config::default()
    };
    let (logic, _rx, _) = logic_with(config, 4);
    let expected = |nodes: Value| {
        json!({"code": 0, "message": "", "data": {
            "domain": "conn.goim.io",
            "tcp_port": 3101,
            "ws_port": 3102,
            "wss_port": 3103,
            "heartbeat": 240,
            "nodes": nodes,
            "backoff": {"max_delay": 300, "base_delay": 3, "factor": 1.8, "jitter": 1.3},
            "heartbeat_max": 2,
        }})
    };
    assert_answer(
        &get(&logic, "/goim/nodes/weighted?platform=web").await,
        StatusCode::OK,
        expected(json!(["conn.goim.io"])),
    );
    report(&logic, "c1", &[], 0, 0).await;
    assert_answer(
        &get(&logic, "/goim/nodes/weighted?platform=web").await,
        StatusCode::OK,
        expected(json!(["c1.goim.io"])),
    );
    assert_answer(
        &get(&logic, "/goim/nodes/weighted?platform=android").await,
        StatusCode::OK,
        expected(json!(["c1.example:3101"])),
    );
    assert_answer(
        &get(&logic, "/goim/nodes/weighted").await,
        StatusCode::OK,
        expected(json!(["c1.example:3101"])),
    );
}

#[tokio::test]
async fn nodes_weighted_omits_zero_values() {
    let mut config = Config::default();
    config.node.wss_port = 0;
    config.backoff.jitter = 0.0;
    let (logic, _rx, _) = logic_with(config, 4);
    let answer = get(&logic, "/goim/nodes/weighted?platform=web").await;
    assert_eq!(answer.status, StatusCode::OK);
    let data = answer.json["data"].as_object().unwrap();
    assert!(!data.contains_key("wss_port"));
    assert!(!data["backoff"].as_object().unwrap().contains_key("jitter"));
    assert_eq!(data["ws_port"], 3102);
}

#[tokio::test]
async fn nodes_instances_lists_fresh_comets() {
    let (logic, _rx, clock) = logic();
    assert_answer(
        &get(&logic, "/goim/nodes/instances").await,
        StatusCode::OK,
        json!({"code": 0, "message": "", "data": []}),
    );
    report(&logic, "c1", &[("live://1", 2)], 2, 1).await;
    assert_answer(
        &get(&logic, "/goim/nodes/instances").await,
        StatusCode::OK,
        json!({"code": 0, "message": "", "data": [{
            "hostname": "c1",
            "addrs": ["c1.example:3101"],
            "latest_timestamp": 1_700_000_000,
            "metadata": {"weight": "1", "conn_count": "2", "ip_count": "1", "offline": "false"},
        }]}),
    );
    // A stale report is gone after the next refresh.
    clock.set(1_700_000_000 + 301);
    report(&logic, "c2", &[], 0, 0).await;
    let answer = get(&logic, "/goim/nodes/instances").await;
    let hosts: Vec<&str> = answer.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, vec!["c2"]);
}

// === v1 ===

#[tokio::test]
async fn v1_push_by_uid() {
    let (logic, mut rx, _) = logic();
    logic.router.add_mapping(5, "k5", "c1").await.unwrap();
    assert_answer(
        &post(&logic, "/1/push?uid=5", b"hi").await,
        StatusCode::OK,
        json!({"ret": 1}),
    );
    assert_eq!(
        drain(&mut rx),
        vec![PushMsg {
            r#type: Type::Push as i32,
            operation: 5,
            server: "c1".into(),
            keys: strings(&["k5"]),
            msg: Bytes::from_static(b"hi"),
            // goim v1 had no accepts: its pushes skip the filter.
            unfiltered: true,
            ..PushMsg::default()
        }]
    );
    assert_answer(
        &post(&logic, "/1/push?uid=5&operation=1000", b"hi").await,
        StatusCode::OK,
        json!({"ret": 1}),
    );
    assert_eq!(drain(&mut rx)[0].operation, 1000);
    // Offline user: success, nothing queued (goim).
    assert_answer(
        &post(&logic, "/1/push?uid=6", b"hi").await,
        StatusCode::OK,
        json!({"ret": 1}),
    );
    assert!(drain(&mut rx).is_empty());
    for (uri, message) in [
        ("/1/push", "uid: required"),
        (
            "/1/push?uid=1.5",
            "uid: invalid digit found in string \"1.5\"",
        ),
        (
            "/1/push?uid=5&operation=x",
            "operation: invalid digit found in string \"x\"",
        ),
    ] {
        assert_answer(
            &post(&logic, uri, b"hi").await,
            StatusCode::BAD_REQUEST,
            v1_bad(message),
        );
    }
}

#[tokio::test]
async fn v1_pushs_sends_the_raw_json_of_m() {
    let (logic, mut rx, _) = logic();
    logic.router.add_mapping(1, "a", "c1").await.unwrap();
    logic.router.add_mapping(2, "b", "c1").await.unwrap();
    let answer = post(
        &logic,
        "/1/pushs",
        br#"{"u":[1,2,3],"m":{"text": "hi", "n":[1, 2]}}"#,
    )
    .await;
    assert_answer(&answer, StatusCode::OK, json!({"ret": 1}));
    assert_eq!(
        drain(&mut rx),
        vec![PushMsg {
            r#type: Type::Push as i32,
            operation: 5,
            server: "c1".into(),
            keys: strings(&["a", "b"]),
            msg: Bytes::from_static(br#"{"text": "hi", "n":[1, 2]}"#),
            unfiltered: true,
            ..PushMsg::default()
        }]
    );
    assert_answer(
        &post(&logic, "/1/pushs?operation=9", br#"{"m":"plain","u":[1]}"#).await,
        StatusCode::OK,
        json!({"ret": 1}),
    );
    let record = &drain(&mut rx)[0];
    assert_eq!(
        (record.operation, record.msg.as_ref()),
        (9, &br#""plain""#[..])
    );

    let answer = post(&logic, "/1/pushs", b"{not json").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json["ret"], 65535);
    assert!(answer.json["message"]
        .as_str()
        .unwrap()
        .starts_with("body: invalid JSON: "));
    let answer = post(&logic, "/1/pushs", br#"{"u":[1]}"#).await;
    assert_answer(
        &answer,
        StatusCode::BAD_REQUEST,
        v1_bad("body: invalid JSON: missing field `m` at line 1 column 9"),
    );
    let answer = post(&logic, "/1/pushs", br#"{"m":1,"u":["x"]}"#).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_answer(
        &post(&logic, "/1/pushs", br#"{"m":1,"u":[]}"#).await,
        StatusCode::BAD_REQUEST,
        v1_bad("u: at least one uid is required"),
    );
    assert!(drain(&mut rx).is_empty());
}

#[tokio::test]
async fn v1_room_and_all() {
    let (logic, mut rx, _) = logic();
    assert_answer(
        &post(&logic, "/1/push/room?rid=live://1000", b"r").await,
        StatusCode::OK,
        json!({"ret": 1}),
    );
    assert_answer(
        &post(&logic, "/1/push/room?rid=1000&operation=1001", b"r").await,
        StatusCode::OK,
        json!({"ret": 1}),
    );
    let records = drain(&mut rx);
    assert_eq!(
        records
            .iter()
            .map(|r| (r.r#type, r.operation, r.room.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (Type::Room as i32, 5, "live://1000"),
            (Type::Room as i32, 1001, "1000")
        ]
    );
    assert_answer(
        &post(&logic, "/1/push/room", b"r").await,
        StatusCode::BAD_REQUEST,
        v1_bad("rid: required"),
    );

    assert_answer(
        &post(&logic, "/1/push/all", b"b").await,
        StatusCode::OK,
        json!({"ret": 1}),
    );
    assert_eq!(
        drain(&mut rx),
        vec![PushMsg {
            r#type: Type::Broadcast as i32,
            operation: 5,
            msg: Bytes::from_static(b"b"),
            unfiltered: true,
            ..PushMsg::default()
        }]
    );
}

#[tokio::test]
async fn v1_count_and_server_del() {
    let (logic, _rx, _) = logic();
    report(&logic, "c1", &[("live://1", 3), ("2", 1)], 4, 4).await;
    report(&logic, "c2", &[("live://1", 1)], 1, 1).await;
    assert_answer(
        &get(&logic, "/1/count?type=room").await,
        StatusCode::OK,
        json!({"ret": 1, "data": [{"RoomId": "2", "Count": 1}, {"RoomId": "live://1", "Count": 4}]}),
    );
    assert_answer(
        &get(&logic, "/1/count?type=server").await,
        StatusCode::OK,
        json!({"ret": 1, "data": [{"Server": "c1", "Count": 4}, {"Server": "c2", "Count": 1}]}),
    );
    assert_answer(
        &get(&logic, "/1/count").await,
        StatusCode::BAD_REQUEST,
        v1_bad("type: required"),
    );
    assert_answer(
        &get(&logic, "/1/count?type=user").await,
        StatusCode::BAD_REQUEST,
        v1_bad("type: must be \"room\" or \"server\", got \"user\""),
    );

    logic.router.add_mapping(1, "k1", "c1").await.unwrap();
    assert_answer(
        &post(&logic, "/1/server/del?server=c1", b"").await,
        StatusCode::OK,
        json!({"ret": 1}),
    );
    assert!(logic.router.keys_by_mids(&[1]).await.unwrap().is_empty());
    assert_answer(
        &get(&logic, "/1/count?type=server").await,
        StatusCode::OK,
        json!({"ret": 1, "data": [{"Server": "c2", "Count": 1}]}),
    );
    assert_answer(
        &post(&logic, "/1/server/del", b"").await,
        StatusCode::BAD_REQUEST,
        v1_bad("server: required"),
    );
}

// ---- bearer tokens (`[logic.api]`) ----

fn with_tokens(protect_reads: bool) -> (Arc<Logic>, Receiver<PushMsg>) {
    let mut config = Config::default();
    config.api.tokens = vec!["t0ken-a".into(), "t0ken-b".into()];
    config.api.protect_reads = protect_reads;
    let (logic, rx, _) = logic_with(config, 64);
    (logic, rx)
}

/// A request with no peer address: only the token decides (or, without
/// tokens, the request is refused as not provably local).
async fn call_auth(
    logic: &Arc<Logic>,
    method: &str,
    uri: &str,
    authorization: Option<&str>,
) -> (Answer, Option<String>) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let body = if method == "POST" {
        Body::from("hello")
    } else {
        Body::empty()
    };
    let response = super::app(logic.clone())
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{method} {uri}: not JSON: {bytes:?}"));
    (
        Answer {
            status,
            json,
            allow: None,
        },
        challenge,
    )
}

const PROTECTED: [&str; 9] = [
    "/goim/push/keys?operation=1000&keys=k",
    "/goim/push/mids?operation=1000&mids=1",
    "/goim/push/room?operation=1000&type=live&room=1",
    "/goim/push/all?operation=1000",
    "/1/push?uid=1",
    "/1/pushs",
    "/1/push/room?rid=live://1",
    "/1/push/all",
    "/1/server/del?server=nope",
];

const READS: [&str; 5] = [
    "/goim/online/top?type=live&limit=1",
    "/goim/online/room?type=live&rooms=1",
    "/goim/online/total",
    "/goim/nodes/instances",
    "/1/count?type=room",
];

#[track_caller]
fn assert_refusal(uri: &str, answer: &Answer, status: StatusCode, message: &str) {
    assert_eq!(answer.status, status, "{uri}: {:?}", answer.json);
    let text = if uri.starts_with("/1/") {
        assert_eq!(answer.json["ret"], 65535, "{uri}: {:?}", answer.json);
        answer.json["message"].as_str().unwrap()
    } else {
        let code = -i64::from(status.as_u16());
        assert_eq!(answer.json["code"], code, "{uri}: {:?}", answer.json);
        answer.json["message"].as_str().unwrap()
    };
    assert!(text.contains(message), "{uri}: {text:?}");
}

#[tokio::test]
async fn push_api_without_a_bearer_token_is_401() {
    let (logic, mut rx) = with_tokens(false);
    for uri in PROTECTED {
        for authorization in [None, Some("Basic dXNlcjpwYXNz"), Some("Bearer ")] {
            let (answer, challenge) = call_auth(&logic, "POST", uri, authorization).await;
            assert_refusal(
                uri,
                &answer,
                StatusCode::UNAUTHORIZED,
                "missing bearer token",
            );
            assert_eq!(challenge.as_deref(), Some("Bearer"), "{uri}");
        }
    }
    assert!(rx.try_recv().is_err(), "nothing may be queued");
}

#[tokio::test]
async fn push_api_with_a_wrong_bearer_token_is_403() {
    let (logic, mut rx) = with_tokens(false);
    for uri in PROTECTED {
        for authorization in ["Bearer t0ken-c", "Bearer t0ken-a2", "Bearer t0ken-"] {
            let (answer, challenge) = call_auth(&logic, "POST", uri, Some(authorization)).await;
            assert_refusal(uri, &answer, StatusCode::FORBIDDEN, "not accepted");
            assert_eq!(challenge, None);
        }
    }
    assert!(rx.try_recv().is_err(), "nothing may be queued");
}

#[tokio::test]
async fn push_api_with_a_right_bearer_token_works() {
    let (logic, mut rx) = with_tokens(false);
    let (answer, _) = call_auth(
        &logic,
        "POST",
        "/goim/push/room?operation=1000&type=live&room=1",
        Some("Bearer t0ken-a"),
    )
    .await;
    assert_answer(&answer, StatusCode::OK, ok());
    assert_eq!(rx.recv().await.unwrap().room, "live://1");
    let (answer, _) = call_auth(&logic, "POST", "/1/push/all", Some("bearer t0ken-b")).await;
    assert_answer(&answer, StatusCode::OK, json!({"ret": 1}));
    assert!(rx.recv().await.is_some());
    // Past the token check, the request is judged as usual.
    let (answer, _) = call_auth(
        &logic,
        "POST",
        "/goim/push/room?type=live&room=1",
        Some("Bearer t0ken-a"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    // Unknown paths stay 404, whatever the token.
    let (answer, _) = call_auth(&logic, "POST", "/goim/push/nope", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reads_are_open_unless_protected() {
    let (logic, _rx) = with_tokens(false);
    for uri in READS.iter().chain(&["/goim/nodes/weighted?platform=web"]) {
        let (answer, _) = call_auth(&logic, "GET", uri, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {:?}", answer.json);
    }

    let (logic, _rx) = with_tokens(true);
    for uri in READS {
        let (answer, _) = call_auth(&logic, "GET", uri, None).await;
        assert_refusal(
            uri,
            &answer,
            StatusCode::UNAUTHORIZED,
            "missing bearer token",
        );
        let (answer, _) = call_auth(&logic, "GET", uri, Some("Bearer wrong")).await;
        assert_refusal(uri, &answer, StatusCode::FORBIDDEN, "not accepted");
        let (answer, _) = call_auth(&logic, "GET", uri, Some("Bearer t0ken-b")).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {:?}", answer.json);
    }
    // The client bootstrap endpoint stays open.
    let (answer, _) = call_auth(&logic, "GET", "/goim/nodes/weighted?platform=web", None).await;
    assert_eq!(answer.status, StatusCode::OK);
}

/// A push over the network from `peer`, with or without a token.
async fn push_from(logic: &Arc<Logic>, peer: &str, authorization: Option<&str>) -> StatusCode {
    let mut request = Request::post("/goim/push/all?operation=1000");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let mut request = request.body(Body::from("hello")).unwrap();
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    super::app(logic.clone())
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn without_tokens_the_api_serves_loopback_clients_only() {
    let (logic, mut rx, _) = logic();
    for peer in ["127.0.0.1:5000", "127.0.0.9:5000", "[::1]:5000"] {
        assert_eq!(
            push_from(&logic, peer, None).await,
            StatusCode::OK,
            "{peer}"
        );
        assert!(rx.recv().await.is_some());
    }
    for peer in ["10.0.0.1:5000", "192.168.1.2:5000", "[2001:db8::1]:5000"] {
        assert_eq!(
            push_from(&logic, peer, None).await,
            StatusCode::UNAUTHORIZED,
            "{peer}"
        );
    }
    // A request without a peer address (a server that does not record it)
    // is refused too: the rule fails closed.
    let (answer, _) = call_auth(&logic, "POST", "/goim/push/all?operation=1000", None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", answer.json);
    assert!(rx.try_recv().is_err(), "a refused push was queued");
}

#[tokio::test]
async fn open_true_serves_everyone_and_tokens_bind_loopback_too() {
    let mut config = Config::default();
    config.api.open = Some(true);
    let (logic, _rx, _) = logic_with(config, 64);
    assert_eq!(
        push_from(&logic, "10.0.0.1:5000", None).await,
        StatusCode::OK
    );
    let (logic, _rx) = with_tokens(false);
    assert_eq!(
        push_from(&logic, "127.0.0.1:5000", None).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        push_from(&logic, "10.0.0.1:5000", Some("Bearer t0ken-a")).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_closed_api_without_tokens_refuses_every_push() {
    // `rim logic` refuses to start like this; the middleware still fails
    // closed if such a config reaches it.
    let mut config = Config::default();
    config.api.open = Some(false);
    let (logic, _rx, _) = logic_with(config, 64);
    let (answer, _) = call_auth(
        &logic,
        "POST",
        "/goim/push/mids?operation=1000&mids=1",
        None,
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

// === the OpenAPI document ===

/// Paths the router may serve without an entry in the OpenAPI document:
/// static pages (the demo and the admin console), which are files, not API.
const STATIC_PREFIXES: &[&str] = &["/admin", "/demo"];

/// Paths the document describes that the binary adds, not this router.
const ADDED_BY_THE_BINARY: &[&str] = &["/metrics"];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

fn openapi() -> Value {
    serde_json::from_str(super::OPENAPI).expect("openapi.json is JSON")
}

/// The methods the document gives `path`, upper case, sorted.
fn documented_methods(doc: &Value, path: &str) -> Vec<String> {
    let mut methods: Vec<String> = doc["paths"][path]
        .as_object()
        .map(|item| {
            item.keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .map(|k| k.to_uppercase())
                .collect()
        })
        .unwrap_or_default();
    methods.sort();
    methods
}

/// `path` with its parameters filled in (`{mid}` -> `7`).
fn concrete(path: &str) -> String {
    path.replace("{mid}", "7").replace("{gid}", "7")
}

/// Every route is in the document with exactly the methods it serves, and
/// the document lists nothing the server does not serve.
#[tokio::test]
async fn openapi_document_describes_every_route_and_method() {
    let doc = openapi();
    assert_eq!(doc["openapi"], "3.1.0");
    let (logic, _rx, _) = logic();
    let routed: Vec<&str> = super::routes().into_iter().map(|(_, p, _)| p).collect();
    for path in &routed {
        if STATIC_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            continue;
        }
        let documented = documented_methods(&doc, path);
        assert!(
            !documented.is_empty(),
            "route {path} has no entry in logic/src/http/openapi.json"
        );
        // What the router serves: every method it does not answer with its
        // 405 fallback. (A refused or failed call is still served.)
        let mut served = Vec::new();
        for method in METHODS {
            let method = method.to_uppercase();
            let answer = call(&logic, &method, &concrete(path), Body::empty()).await;
            let fallback = answer.json["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("method ") || m.starts_with("no such path"));
            if !fallback {
                served.push(method);
            }
        }
        served.sort();
        assert_eq!(served, documented, "{path}: served methods vs the document");
    }
    let paths = doc["paths"].as_object().expect("paths");
    for path in paths.keys() {
        assert!(
            routed.contains(&path.as_str()) || ADDED_BY_THE_BINARY.contains(&path.as_str()),
            "the document lists {path}, which the router does not serve"
        );
    }
}

/// Every `$ref` in the document points at something in it.
#[test]
fn openapi_references_resolve() {
    fn walk(doc: &Value, node: &Value, refs: &mut usize) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    let pointer = target
                        .strip_prefix('#')
                        .unwrap_or_else(|| panic!("external $ref {target}"));
                    assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
                    *refs += 1;
                }
                map.values().for_each(|v| walk(doc, v, refs));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v, refs)),
            _ => {}
        }
    }
    let doc = openapi();
    let mut refs = 0;
    walk(&doc, &doc, &mut refs);
    assert!(
        refs > 50,
        "only {refs} references: is the document complete?"
    );
}

#[tokio::test]
async fn openapi_json_is_served_without_a_token() {
    let (logic, _rx) = with_tokens(false);
    let request = Request::builder()
        .uri("/openapi.json")
        .body(Body::empty())
        .unwrap();
    let response = super::app(logic).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let served: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(served, openapi());
}

// === findings of schemathesis (scripts/schemathesis.sh) ===

/// A logic with an in-memory mailbox store.
fn logic_with_mailboxes() -> (Arc<Logic>, Receiver<PushMsg>) {
    let (queue, rx) = rim_queue::InProcessQueue::new(64, std::time::Duration::from_millis(50));
    let store = rim_mailbox::MemoryStore::new(rim_mailbox::MailboxConfig::default());
    let logic = Logic::with_mailbox(
        Config::default(),
        rim_router::Router::memory(&rim_router::Config::default()),
        Arc::new(queue),
        crate::Mailbox::direct(Arc::new(store)),
    );
    (logic, rx)
}

async fn send_json(logic: &Arc<Logic>, method: &str, uri: &str, body: &str) -> Answer {
    call(logic, method, uri, body.to_owned()).await
}

/// JSON Schema counts `44.0` as the integer 44, and some encoders write
/// integers so: integer fields of JSON bodies take them, exactly, and
/// refuse fractions and floats too large to be exact, with a message.
#[tokio::test]
async fn json_integers_may_be_spelled_as_whole_floats() {
    let (logic, _rx) = logic_with_mailboxes();
    let answer = send_json(
        &logic,
        "POST",
        "/rim/v1/messages",
        r#"{"mids": [7.0, -3937664481886946.0, 4.4e1], "op": 1000.0, "body": {}}"#,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["accepted"], 3, "{}", answer.json);
    let seqs = answer.json["seqs"].as_object().expect("seqs");
    for mid in ["7", "-3937664481886946", "44"] {
        assert_eq!(seqs[mid], 1, "{}", answer.json);
    }
    let answer = send_json(
        &logic,
        "PUT",
        "/rim/v1/groups/5/members",
        r#"{"mids": [1.0, 2]}"#,
    )
    .await;
    assert_answer(&answer, StatusCode::OK, json!({"mids": [1, 2]}));
    let answer = send_json(&logic, "POST", "/1/pushs", r#"{"m": {}, "u": [3.0]}"#).await;
    assert_answer(&answer, StatusCode::OK, json!({"ret": 1}));
    for (body, expect) in [
        (
            r#"{"mids": [7.5], "op": 1, "body": 1}"#,
            "body: 7.5 is not an integer",
        ),
        (
            r#"{"mids": [1e19], "op": 1, "body": 1}"#,
            "body: 1e19 is not an exact integer",
        ),
        (
            r#"{"mids": [1], "op": 2147483648.0, "body": 1}"#,
            "body: 2147483648 is out of range for i32",
        ),
    ] {
        let answer = send_json(&logic, "POST", "/rim/v1/messages", body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        let message = answer.json["message"].as_str().unwrap();
        assert!(message.starts_with(expect), "{body}: {message}");
    }
}

/// `until` is any RFC 3339 time: any offset, any year (a past one mutes
/// nobody); anything else is refused with a message.
#[tokio::test]
async fn mute_until_takes_every_rfc3339_time() {
    let (logic, _rx) = logic_with_mailboxes();
    let answer = send_json(
        &logic,
        "PUT",
        "/rim/v1/users/9/mute",
        r#"{"until": "2999-01-01T05:30:00+05:30", "scope": "all"}"#,
    )
    .await;
    assert_answer(
        &answer,
        StatusCode::OK,
        json!({"mid": 9, "mutes": [{"scope": "all", "until": "2999-01-01T00:00:00.000Z"}]}),
    );
    // Before 1970 (humantime, used before, refused it with a 400): passed.
    let answer = send_json(
        &logic,
        "PUT",
        "/rim/v1/users/10/mute",
        r#"{"until": "0033-07-03T06:26:16Z", "scope": "all"}"#,
    )
    .await;
    assert_answer(&answer, StatusCode::OK, json!({"mid": 10, "mutes": []}));
    for until in ["tomorrow", "2030-01-01T00:00:00", "2030-02-30T00:00:00Z"] {
        let answer = send_json(
            &logic,
            "PUT",
            "/rim/v1/users/9/mute",
            &json!({"until": until, "scope": "all"}).to_string(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{until}");
        let message = answer.json["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("until: an RFC 3339 time or null, got {until:?}")),
            "{message}"
        );
    }
}
