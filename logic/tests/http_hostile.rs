//! Hostile inputs against every HTTP endpoint, through the public API only
//! (`rim_logic::http::app` with the in-memory router and the in-process
//! queue, one `oneshot` request each): missing, wrong-typed, overflowing,
//! negative, empty, duplicated, very long and badly encoded parameters,
//! oversize and deeply nested bodies, wrong methods and content types.
//!
//! Every answer must be a JSON envelope; a refusal must be a 4xx with a
//! non-empty `message`; nothing may answer 5xx or panic. Inputs that are
//! legitimately valid (free-form strings, content types, which rim ignores
//! as goim does) must answer 2xx; each such case says so.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use rim_logic::{Config, Logic};
use rim_proto::pb::logic::PushMsg;
use rim_queue::InProcessQueue;
use serde_json::Value;
use tokio::sync::mpsc::Receiver;
use tower::ServiceExt;

/// The request body limit of these tests (`max_body`).
const MAX_BODY: usize = 64 * 1024;

/// The longest hostile query value: `http::Uri` holds at most 64 KiB - 2,
/// so a 100 KB query cannot reach a handler; hyper answers it 414 itself
/// (`query_over_64k_is_refused_by_the_server`).
const LONG: usize = 60 * 1024;

/// A logic service with the real in-memory router and in-process queue; the
/// receiver must live as long as the service (a closed queue answers 503).
fn logic() -> (Arc<Logic>, Receiver<PushMsg>) {
    logic_with_max_body(MAX_BODY)
}

fn logic_with_max_body(max_body: usize) -> (Arc<Logic>, Receiver<PushMsg>) {
    let config = Config {
        max_body,
        ..Config::default()
    };
    let (queue, rx) = InProcessQueue::new(1 << 16, Duration::from_secs(1));
    let router = rim_router::Router::memory(&rim_router::Config::default());
    (Logic::new(config, router, Arc::new(queue)), rx)
}

/// A logic service like [`logic`] in which the session every keyed
/// endpoint's valid query names is live: mid 1 (`mids=1`, `uid=1`) with key
/// `k1` (`keys=k1`) on comet-1. Without it a keyed push queues nothing.
async fn logic_with_a_session() -> (Arc<Logic>, Receiver<PushMsg>) {
    let config = Config {
        max_body: MAX_BODY,
        ..Config::default()
    };
    let (queue, rx) = InProcessQueue::new(1 << 16, Duration::from_secs(1));
    let router = rim_router::Router::memory(&rim_router::Config::default());
    router
        .add_mapping(1, "k1", "comet-1")
        .await
        .expect("register mid 1 with key k1");
    (Logic::new(config, router, Arc::new(queue)), rx)
}

/// Every record queued and not yet taken.
fn drain(rx: &mut Receiver<PushMsg>) -> Vec<PushMsg> {
    let mut records = Vec::new();
    while let Ok(record) = rx.try_recv() {
        records.push(record);
    }
    records
}

/// The message a valid request to `endpoint` with `body` queues: the body
/// as is (goim's messages are opaque bytes), the raw JSON of `m` for
/// `/1/pushs`; `None` for the endpoints that push nothing.
fn queued_msg<'a>(endpoint: &Endpoint, body: &'a [u8]) -> Option<&'a [u8]> {
    match endpoint.path {
        _ if endpoint.method != "POST" => None,
        "/1/server/del" => None,
        "/1/pushs" => {
            assert_eq!(body, valid_body(endpoint).as_bytes(), "a valid pushs body");
            Some(br#"{"a":1}"#)
        }
        _ => Some(body),
    }
}

/// Asserts what the last request queued: one record carrying exactly
/// `msg`, or nothing.
#[track_caller]
fn assert_queued(rx: &mut Receiver<PushMsg>, msg: Option<&[u8]>, what: &str) {
    let records = drain(rx);
    match msg {
        Some(msg) => {
            assert_eq!(records.len(), 1, "{what}: {records:?}");
            assert_eq!(&records[0].msg[..], msg, "{what}: the queued message");
        }
        None => assert!(records.is_empty(), "{what}: queued {records:?}"),
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    json: Value,
    allow: Option<String>,
}

impl Answer {
    fn message(&self) -> &str {
        self.json["message"].as_str().unwrap_or_default()
    }
}

/// Sends `request` as from a loopback client (the peer address the real
/// servers record; the default API serves loopback clients only).
async fn send(logic: &Arc<Logic>, mut request: Request<Body>) -> Answer {
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let what = format!("{} {}", request.method(), request.uri());
    let what = &what[..what.len().min(200)];
    let response = rim_logic::http::app(logic.clone())
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let allow = response
        .headers()
        .get(header::ALLOW)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{what}: {status}, not JSON: {bytes:?}"));
    assert!(
        !status.is_server_error(),
        "{what}: server error {status} {json}"
    );
    Answer {
        status,
        json,
        allow,
    }
}

async fn call(logic: &Arc<Logic>, method: &str, uri: &str, body: impl Into<Body>) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.into())
        .unwrap_or_else(|err| panic!("{method} {uri}: {err}"));
    send(logic, request).await
}

/// Asserts a refusal: `status`, in the envelope, with a message.
#[track_caller]
fn refused(answer: &Answer, status: StatusCode, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.json);
    assert!(
        !answer.message().is_empty(),
        "{what}: no message: {}",
        answer.json
    );
}

/// Asserts a success in either envelope.
#[track_caller]
fn accepted(answer: &Answer, what: &str) {
    assert!(
        answer.status.is_success(),
        "{what}: {} {}",
        answer.status,
        answer.json
    );
    let code_ok = answer.json["code"] == 0 || answer.json["ret"] == 1;
    assert!(code_ok, "{what}: not a success envelope: {}", answer.json);
}

/// One endpoint: method, path, and a query that makes it succeed.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    valid: &'static str,
    params: &'static [(&'static str, Kind)],
}

/// What a parameter holds, which decides what counts as hostile for it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// An int32 that is required (and not 0): `operation` of room/all pushes.
    RequiredInt,
    /// An optional int32 (absent or empty means the default).
    OptionalInt,
    /// An int64 list (`mids`), or the v1 `uid`; negative ids are ids.
    Id,
    /// A positive count (`limit`).
    Positive,
    /// A non-negative int32 (`speed`).
    NonNegative,
    /// A required free-form string.
    RequiredStr,
    /// An optional free-form string or a string list.
    OptionalStr,
    /// `type` of `/1/count`: `room` or `server`.
    CountType,
}

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "POST",
        path: "/goim/push/keys",
        valid: "operation=1000&keys=k1",
        params: &[
            ("operation", Kind::OptionalInt),
            ("keys", Kind::RequiredStr),
        ],
    },
    Endpoint {
        method: "POST",
        path: "/goim/push/mids",
        valid: "operation=1000&mids=1",
        params: &[("operation", Kind::OptionalInt), ("mids", Kind::Id)],
    },
    Endpoint {
        method: "POST",
        path: "/goim/push/room",
        valid: "operation=1000&type=live&room=1",
        params: &[
            ("operation", Kind::RequiredInt),
            ("type", Kind::RequiredStr),
            ("room", Kind::RequiredStr),
        ],
    },
    Endpoint {
        method: "POST",
        path: "/goim/push/all",
        valid: "operation=1000&speed=1",
        params: &[
            ("operation", Kind::RequiredInt),
            ("speed", Kind::NonNegative),
        ],
    },
    Endpoint {
        method: "GET",
        path: "/goim/online/top",
        valid: "type=live&limit=10",
        params: &[("type", Kind::RequiredStr), ("limit", Kind::Positive)],
    },
    Endpoint {
        method: "GET",
        path: "/goim/online/room",
        valid: "type=live&rooms=1",
        params: &[("type", Kind::RequiredStr), ("rooms", Kind::RequiredStr)],
    },
    Endpoint {
        method: "GET",
        path: "/goim/online/total",
        valid: "",
        params: &[],
    },
    Endpoint {
        method: "GET",
        path: "/goim/nodes/weighted",
        valid: "platform=web",
        params: &[("platform", Kind::OptionalStr)],
    },
    Endpoint {
        method: "GET",
        path: "/goim/nodes/instances",
        valid: "",
        params: &[],
    },
    Endpoint {
        method: "POST",
        path: "/1/push",
        valid: "uid=1&operation=5",
        params: &[("uid", Kind::Id), ("operation", Kind::OptionalInt)],
    },
    Endpoint {
        method: "POST",
        path: "/1/pushs",
        valid: "operation=5",
        params: &[("operation", Kind::OptionalInt)],
    },
    Endpoint {
        method: "POST",
        path: "/1/push/room",
        valid: "rid=live://1&operation=5",
        params: &[("rid", Kind::RequiredStr), ("operation", Kind::OptionalInt)],
    },
    Endpoint {
        method: "POST",
        path: "/1/push/all",
        valid: "operation=5",
        params: &[("operation", Kind::OptionalInt)],
    },
    Endpoint {
        method: "GET",
        path: "/1/count",
        valid: "type=room",
        params: &[("type", Kind::CountType)],
    },
    Endpoint {
        method: "POST",
        path: "/1/server/del",
        valid: "server=comet-1",
        params: &[("server", Kind::RequiredStr)],
    },
];

/// A body the endpoint accepts (`/1/pushs` needs its JSON).
fn valid_body(endpoint: &Endpoint) -> &'static str {
    if endpoint.path == "/1/pushs" {
        r#"{"m":{"a":1},"u":[1,2]}"#
    } else {
        "hello"
    }
}

fn uri(endpoint: &Endpoint, query: &str) -> String {
    if query.is_empty() {
        endpoint.path.to_owned()
    } else {
        format!("{}?{query}", endpoint.path)
    }
}

/// `valid` with the value of `name` replaced by `value` (raw, not encoded).
fn with_param(valid: &str, name: &str, value: &str) -> String {
    valid
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k == name => format!("{k}={value}"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `valid` without `name`.
fn without_param(valid: &str, name: &str) -> String {
    valid
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split_once('=').map(|(k, _)| k) != Some(name))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn valid_requests_succeed() {
    let (logic, mut rx) = logic_with_a_session().await;
    for endpoint in ENDPOINTS {
        let body = valid_body(endpoint);
        let answer = call(
            &logic,
            endpoint.method,
            &uri(endpoint, endpoint.valid),
            body,
        )
        .await;
        accepted(&answer, endpoint.path);
        let msg = queued_msg(endpoint, body.as_bytes());
        assert_queued(&mut rx, msg, endpoint.path);
    }
}

#[tokio::test]
async fn missing_and_empty_params() {
    let (logic, _rx) = logic();
    for endpoint in ENDPOINTS {
        for &(name, kind) in endpoint.params {
            // Absent, and present but empty (`name=`, which counts as absent).
            let absent = without_param(endpoint.valid, name);
            let empty = with_param(endpoint.valid, name, "");
            for query in [absent, empty] {
                let what = format!("{} {query:?}", endpoint.path);
                let answer = call(
                    &logic,
                    endpoint.method,
                    &uri(endpoint, &query),
                    valid_body(endpoint),
                )
                .await;
                match kind {
                    // Defaults exist: goim's optional parameters.
                    Kind::OptionalInt | Kind::OptionalStr | Kind::NonNegative => {
                        accepted(&answer, &what)
                    }
                    _ => refused(&answer, StatusCode::BAD_REQUEST, &what),
                }
                assert!(
                    answer.status.is_success() || answer.message().contains(name),
                    "{what}: message does not name {name}: {}",
                    answer.message()
                );
            }
        }
        // No query at all: only endpoints without required parameters pass.
        let answer = call(&logic, endpoint.method, endpoint.path, valid_body(endpoint)).await;
        let needs_something = endpoint
            .params
            .iter()
            .any(|(_, k)| !matches!(k, Kind::OptionalInt | Kind::OptionalStr | Kind::NonNegative));
        if needs_something {
            refused(&answer, StatusCode::BAD_REQUEST, endpoint.path);
        } else {
            accepted(&answer, endpoint.path);
        }
    }
}

/// Hostile values of one parameter and whether each is legitimately valid
/// for a parameter of `kind`.
fn hostile_values(kind: Kind) -> Vec<(String, bool)> {
    let is_str = matches!(kind, Kind::RequiredStr | Kind::OptionalStr);
    let long = "a".repeat(LONG);
    let long_digits = "9".repeat(LONG);
    vec![
        // Letters, floats, overflow, signs: only strings take them.
        ("abc".into(), is_str),
        ("1.5".into(), is_str),
        ("1e3".into(), is_str),
        ("99999999999999999999".into(), is_str),
        ("-99999999999999999999".into(), is_str),
        ("0x10".into(), is_str),
        ("+1".into(), is_str),
        ("%201".into(), is_str),
        ("1%00".into(), is_str),
        (
            "%2B1".into(),
            is_str
                || matches!(
                    kind,
                    Kind::OptionalInt
                        | Kind::Id
                        | Kind::RequiredInt
                        | Kind::Positive
                        | Kind::NonNegative
                ),
        ),
        // Negative: an int32 operation or an id may be negative in goim;
        // a limit or a speed may not.
        (
            "-1".into(),
            !matches!(kind, Kind::Positive | Kind::NonNegative | Kind::CountType),
        ),
        // Percent-encoding garbage decodes lossily: fine for strings.
        ("%ff%fe".into(), is_str),
        ("%".into(), is_str),
        ("%zz".into(), is_str),
        ("%e2%82".into(), is_str),
        // Values as long as a URI can be (see `LONG`).
        (long, is_str),
        (long_digits, is_str),
    ]
}

#[tokio::test]
async fn hostile_param_values() {
    let (logic, _rx) = logic();
    for endpoint in ENDPOINTS {
        for &(name, kind) in endpoint.params {
            for (value, valid) in hostile_values(kind) {
                let query = with_param(endpoint.valid, name, &value);
                let what = format!(
                    "{} {name}={:?}",
                    endpoint.path,
                    &value[..value.len().min(40)]
                );
                let answer = call(
                    &logic,
                    endpoint.method,
                    &uri(endpoint, &query),
                    valid_body(endpoint),
                )
                .await;
                if valid {
                    accepted(&answer, &what);
                } else {
                    refused(&answer, StatusCode::BAD_REQUEST, &what);
                    assert!(
                        answer.message().len() < 1024,
                        "{what}: the message echoes the whole value ({} bytes)",
                        answer.message().len()
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn duplicated_scalar_params_take_the_first_value() {
    let (logic, _rx) = logic();
    for endpoint in ENDPOINTS {
        for &(name, kind) in endpoint.params {
            if matches!(kind, Kind::RequiredStr | Kind::OptionalStr) {
                continue; // lists, or any string: both orders are valid
            }
            // Valid first: the hostile duplicate is ignored (goim reads the first).
            let first_valid = format!("{}&{name}=abc", endpoint.valid);
            let answer = call(
                &logic,
                endpoint.method,
                &uri(endpoint, &first_valid),
                valid_body(endpoint),
            )
            .await;
            let what = format!("{} {first_valid}", endpoint.path);
            if name == "mids" {
                // `mids` is a list: every value must be a mid.
                refused(&answer, StatusCode::BAD_REQUEST, &what);
            } else {
                accepted(&answer, &what);
            }
            // Hostile first: refused.
            let query = format!("{name}=abc&{}", endpoint.valid);
            let answer = call(
                &logic,
                endpoint.method,
                &uri(endpoint, &query),
                valid_body(endpoint),
            )
            .await;
            refused(
                &answer,
                StatusCode::BAD_REQUEST,
                &format!("{} {query}", endpoint.path),
            );
        }
    }
}

#[tokio::test]
async fn long_and_garbage_queries() {
    let (logic, _rx) = logic();
    let long_name = format!("{}=1", "x".repeat(LONG));
    let many = "keys=k&".repeat(LONG / 8);
    for endpoint in ENDPOINTS {
        for extra in [
            long_name.as_str(),
            many.as_str(),
            "%",
            "%%%%",
            "&&&&",
            "=&=&=",
            "%ff%fe=%ff%fe",
            "a=b=c",
        ] {
            // Unknown and malformed extras are ignored: still valid.
            let query = format!("{}&{extra}", endpoint.valid);
            let answer = call(
                &logic,
                endpoint.method,
                &uri(endpoint, &query),
                valid_body(endpoint),
            )
            .await;
            accepted(
                &answer,
                &format!("{} +{:?}", endpoint.path, &extra[..extra.len().min(20)]),
            );
        }
    }
}

#[tokio::test]
async fn wrong_methods_are_405_in_the_envelope() {
    let (logic, _rx) = logic();
    for endpoint in ENDPOINTS {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            if method == endpoint.method {
                continue;
            }
            let answer = call(&logic, method, &uri(endpoint, endpoint.valid), "x").await;
            let what = format!("{method} {}", endpoint.path);
            refused(&answer, StatusCode::METHOD_NOT_ALLOWED, &what);
            let allow = answer.allow.as_deref().unwrap_or_default();
            assert!(allow.contains(endpoint.method), "{what}: Allow {allow:?}");
            let v1 = endpoint.path.starts_with("/1/");
            assert_eq!(answer.json["ret"] == 65535, v1, "{what}: {}", answer.json);
        }
    }
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let (logic, _rx) = logic();
    for path in [
        "/",
        "/goim",
        "/goim/push",
        "/goim/push/keys/extra",
        "/1/",
        "/1/push/room/x",
        "/%ff%fe",
        "/goim/push/%",
        &format!("/{}", "a".repeat(LONG)),
    ] {
        let answer = call(&logic, "POST", path, "x").await;
        refused(&answer, StatusCode::NOT_FOUND, &path[..path.len().min(40)]);
    }
}

#[tokio::test]
async fn oversize_bodies_are_413() {
    let (logic, _rx) = logic();
    let big = vec![b'x'; MAX_BODY + 1];
    for endpoint in ENDPOINTS.iter().filter(|e| e.method == "POST") {
        if endpoint.path == "/1/server/del" {
            continue; // reads no body
        }
        let answer = call(&logic, "POST", &uri(endpoint, endpoint.valid), big.clone()).await;
        refused(&answer, StatusCode::PAYLOAD_TOO_LARGE, endpoint.path);
        // A Content-Length over the limit is refused before the body is read.
        let request = Request::builder()
            .method("POST")
            .uri(uri(endpoint, endpoint.valid))
            .header(header::CONTENT_LENGTH, (MAX_BODY * 1000).to_string())
            .body(Body::from(big.clone()))
            .unwrap();
        let answer = send(&logic, request).await;
        assert!(
            answer.status.is_client_error(),
            "{}: {}",
            endpoint.path,
            answer.status
        );
        // Exactly at the limit is fine (except for /1/pushs, which needs JSON).
        if endpoint.path != "/1/pushs" {
            let answer = call(
                &logic,
                "POST",
                &uri(endpoint, endpoint.valid),
                vec![b'x'; MAX_BODY],
            )
            .await;
            accepted(&answer, endpoint.path);
        }
    }
}

#[tokio::test]
async fn empty_and_binary_bodies_are_messages() {
    // goim pushes the body as opaque bytes: empty and binary are valid, and
    // the queued message is the body byte for byte.
    let (logic, mut rx) = logic_with_a_session().await;
    for endpoint in ENDPOINTS.iter().filter(|e| e.method == "POST") {
        if endpoint.path == "/1/pushs" {
            continue;
        }
        for body in [Vec::new(), vec![0xff, 0xfe, 0, 1], b"\0".repeat(1000)] {
            let what = format!("{} {:?}", endpoint.path, &body[..body.len().min(4)]);
            let msg = queued_msg(endpoint, &body).map(<[u8]>::to_vec);
            let answer = call(&logic, "POST", &uri(endpoint, endpoint.valid), body).await;
            accepted(&answer, &what);
            assert_queued(&mut rx, msg.as_deref(), &what);
        }
    }
}

#[tokio::test]
async fn hostile_pushs_bodies() {
    // The default 1 MiB limit, so that 100 KB of `[` reaches the JSON parser.
    let (logic, _rx) = logic_with_max_body(Config::default().max_body);
    let deep_array = "[".repeat(100_000);
    let deep_closed = format!(
        "{{\"m\":{}{},\"u\":[1]}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let deep_object = format!(
        r#"{{"m":{}1{},"u":[1]}}"#,
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    );
    let many_uids = format!(r#"{{"m":1,"u":[{}1]}}"#, "1,".repeat(20_000));
    let bad: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("whitespace", "   ".into()),
        ("not json", "hello".into()),
        ("truncated", r#"{"m":1,"u":[1"#.into()),
        ("array", "[1,2]".into()),
        ("string", r#""{}""#.into()),
        ("null", "null".into()),
        ("no m", r#"{"u":[1]}"#.into()),
        ("no u", r#"{"m":1}"#.into()),
        ("empty u", r#"{"m":1,"u":[]}"#.into()),
        ("u not a list", r#"{"m":1,"u":1}"#.into()),
        ("u of strings", r#"{"m":1,"u":["1"]}"#.into()),
        ("u of floats", r#"{"m":1,"u":[1.5]}"#.into()),
        ("u overflow", r#"{"m":1,"u":[99999999999999999999]}"#.into()),
        ("u null", r#"{"m":1,"u":null}"#.into()),
        ("duplicate m", r#"{"m":1,"m":2,"u":[1]}"#.into()),
        ("trailing", r#"{"m":1,"u":[1]} x"#.into()),
        ("100k [", deep_array),
    ];
    for (what, body) in bad {
        let answer = call(&logic, "POST", "/1/pushs", body).await;
        refused(&answer, StatusCode::BAD_REQUEST, what);
        assert_eq!(answer.json["ret"], 65535, "{what}");
    }
    // Invalid UTF-8 bytes in the body.
    let answer = call(
        &logic,
        "POST",
        "/1/pushs",
        b"{\"m\":\"\xff\",\"u\":[1]}".to_vec(),
    )
    .await;
    refused(&answer, StatusCode::BAD_REQUEST, "invalid utf-8");
    // Valid: negative uids are uids, unknown fields are ignored, many uids;
    // and a deeply nested but well-formed `m`: the message is opaque, kept
    // as raw JSON (serde_json skips it iteratively, without recursing).
    for body in [
        r#"{"m":1,"u":[-1]}"#.to_owned(),
        r#"{"m":null,"u":[1],"x":{"y":[]}}"#.to_owned(),
        many_uids,
        deep_closed,
        deep_object,
    ] {
        let answer = call(&logic, "POST", "/1/pushs", body).await;
        accepted(&answer, "valid pushs");
    }
}

#[tokio::test]
async fn content_types_are_ignored() {
    // goim reads the raw body whatever the Content-Type; so does rim.
    let (logic, mut rx) = logic_with_a_session().await;
    for endpoint in ENDPOINTS.iter().filter(|e| e.method == "POST") {
        for content_type in [
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/plain; charset=utf-16",
            "\u{0}garbage",
            "",
        ] {
            let mut request = Request::builder()
                .method("POST")
                .uri(uri(endpoint, endpoint.valid));
            if let Ok(value) = header::HeaderValue::from_str(content_type) {
                request = request.header(header::CONTENT_TYPE, value);
            }
            let request = request.body(Body::from(valid_body(endpoint))).unwrap();
            let answer = send(&logic, request).await;
            let what = format!("{} {content_type:?}", endpoint.path);
            accepted(&answer, &what);
            let msg = queued_msg(endpoint, valid_body(endpoint).as_bytes());
            assert_queued(&mut rx, msg, &what);
        }
    }
}

#[tokio::test]
async fn query_over_64k_is_refused_by_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (logic, _rx) = logic();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = rim_logic::http::app(logic.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let query = format!("operation=1000&keys={}", "k".repeat(100 * 1024));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /goim/push/keys?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let head = String::from_utf8_lossy(&response[..response.len().min(12)]).into_owned();
    // hyper refuses the request line itself (414 URI Too Long), before rim.
    assert!(head.starts_with("HTTP/1.1 4"), "{head:?}");
    server.abort();
}

#[tokio::test]
async fn hostile_authorization_headers() {
    let config = Config {
        api: rim_logic::ApiConfig {
            tokens: vec!["s3cret".to_owned()],
            protect_reads: true,
            open: None,
        },
        ..Config::default()
    };
    let (queue, _rx) = InProcessQueue::new(1 << 10, Duration::from_secs(1));
    let router = rim_router::Router::memory(&rim_router::Config::default());
    let logic = Logic::new(config, router, Arc::new(queue));
    let long = format!("Bearer {}", "t".repeat(8 * 1024));
    let cases: Vec<(&[u8], StatusCode)> = vec![
        (b"", StatusCode::UNAUTHORIZED),
        (b"Bearer", StatusCode::UNAUTHORIZED),
        (b"Bearer ", StatusCode::UNAUTHORIZED),
        (b"Basic czNjcmV0", StatusCode::UNAUTHORIZED),
        (b"s3cret", StatusCode::UNAUTHORIZED),
        (b"Bearer \xff\xfe", StatusCode::UNAUTHORIZED), // not UTF-8: unreadable
        (b"Bearer s3cre", StatusCode::FORBIDDEN),
        (b"Bearer s3cret2", StatusCode::FORBIDDEN),
        (b"Bearer S3CRET", StatusCode::FORBIDDEN),
        (long.as_bytes(), StatusCode::FORBIDDEN),
        (b"bearer  s3cret ", StatusCode::OK),
    ];
    for endpoint in ENDPOINTS {
        for (value, status) in &cases {
            let request = Request::builder()
                .method(endpoint.method)
                .uri(uri(endpoint, endpoint.valid))
                .header(
                    header::AUTHORIZATION,
                    header::HeaderValue::from_bytes(value).unwrap(),
                )
                .body(Body::from(valid_body(endpoint)))
                .unwrap();
            let answer = send(&logic, request).await;
            let what = format!("{} {:?}", endpoint.path, String::from_utf8_lossy(value));
            if endpoint.path == "/goim/nodes/weighted" || *status == StatusCode::OK {
                // The nodes API is always open: clients call it.
                accepted(&answer, &what);
            } else {
                refused(&answer, *status, &what);
            }
        }
    }
}
