//! The backend hooks end to end (docs/protocol.md, "Backend hooks"): a
//! standalone rim calls an HTTP backend started by the test. The upstream
//! hook accepts, rejects and replaces IM clients' messages, and its failures
//! fail closed (503) or open as configured; the offline hook lists stored
//! messages no device acknowledged, and only those.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use common::{test_config, Rim};
use parking_lot::Mutex;
use rim::config::StandaloneConfig;
use rim_logic::{OfflineHookConfig, OnFailure, UpstreamHookConfig};
use rim_proto::{Frame, Op};
use rim_testkit::{poll, Client, Token};
use serde_json::{json, Value};

const TRANSPORTS: [bool; 2] = [false, true];

/// The test's backend. The upstream hook answers by the message's
/// `body.text`; every call of both hooks is recorded.
struct Backend {
    addr: SocketAddr,
    /// The upstream hook's requests.
    upstream: Arc<Mutex<Vec<Value>>>,
    /// The offline hook's entries, every batch's in arrival order.
    offline: Arc<Mutex<Vec<Value>>>,
}

async fn upstream_answer(text: &str) -> (StatusCode, String) {
    let json = |v: Value| (StatusCode::OK, v.to_string());
    match text {
        "reject" => json(json!({"action": "reject", "reason": "not on my watch"})),
        "reject quietly" => json(json!({"action": "reject"})),
        "replace" => {
            json(json!({"action": "replace", "body": {"text": "replaced", "by": "backend"}}))
        }
        "replace big" => json(json!({"action": "replace", "body": "x".repeat(3000)})),
        "replace nothing" => json(json!({"action": "replace"})),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json(json!({"action": "accept"}))
        }
        "error" => (StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
        "garbage" => (StatusCode::OK, "not json".into()),
        _ => json(json!({"action": "accept"})),
    }
}

impl Backend {
    async fn start() -> Backend {
        let upstream = Arc::new(Mutex::new(Vec::new()));
        let offline = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route(
                "/upstream",
                post({
                    let upstream = Arc::clone(&upstream);
                    move |Json(request): Json<Value>| async move {
                        upstream.lock().push(request.clone());
                        let text = request["body"]["text"].as_str().unwrap_or_default();
                        upstream_answer(text).await
                    }
                }),
            )
            .route(
                "/offline",
                post({
                    let offline = Arc::clone(&offline);
                    move |Json(batch): Json<Value>| async move {
                        let messages = batch["messages"].as_array().expect("messages").clone();
                        offline.lock().extend(messages);
                        StatusCode::NO_CONTENT
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Backend {
            addr,
            upstream,
            offline,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn upstream_config(&self, on_failure: OnFailure) -> StandaloneConfig {
        let mut config = test_config();
        config.logic.hooks.upstream = Some(UpstreamHookConfig {
            url: self.url("/upstream"),
            timeout: Duration::from_millis(300),
            on_failure,
        });
        config
    }

    fn offline_config(&self, after: Duration) -> StandaloneConfig {
        let mut config = test_config();
        config.logic.hooks.offline = Some(OfflineHookConfig {
            url: self.url("/offline"),
            after,
            interval: Duration::from_millis(50),
            ..OfflineHookConfig::default()
        });
        config
    }

    /// The offline entries of `mid` so far.
    fn listed(&self, mid: i64) -> Vec<Value> {
        let offline = self.offline.lock();
        offline
            .iter()
            .filter(|m| m["mid"] == mid)
            .cloned()
            .collect()
    }
}

async fn im(rim: &Rim, ws: bool, mid: i64, key: &str, room: &str) -> Client {
    let mut token = Token::im(mid, key);
    token.room_id = room.to_owned();
    Client::connect(rim.addr(ws), ws, &token)
        .await
        .expect("IM client connects")
}

/// Sends op 4 and returns op 5's body; stored frames that arrive first are
/// kept in `others`.
async fn send(client: &mut Client, seq: i32, message: &Value, others: &mut Vec<Frame>) -> Value {
    client
        .send(&Frame::new(1, Op::SendMsg, seq, message.to_string()))
        .await
        .unwrap();
    loop {
        let frame = client.next_frame().await.expect("op 5");
        if frame.op == Op::SendMsgReply.code() {
            assert_eq!(frame.seq, seq, "op 5 echoes the header seq");
            return serde_json::from_slice(&frame.body).unwrap();
        }
        others.push(frame);
    }
}

/// The next stored message's (seq, envelope).
async fn next_message(client: &mut Client) -> (i32, Value) {
    let frame = client.next_frame().await.expect("a message");
    assert_eq!(frame.op, 1000, "{frame:?}");
    (frame.seq, serde_json::from_slice(&frame.body).unwrap())
}

fn text(to: i64, id: &str, text: &str) -> Value {
    json!({"to": to, "op": 1000, "id": id, "body": {"text": text}})
}

async fn expect_nothing(client: &mut Client) {
    let frame = client
        .next_frame_within(Duration::from_millis(200))
        .await
        .unwrap();
    assert!(frame.is_none(), "{frame:?}");
}

#[tokio::test]
async fn upstream_accepts_rejects_and_replaces() {
    let backend = Backend::start().await;
    let rim = Rim::start_with(backend.upstream_config(OnFailure::Reject)).await;
    for ws in TRANSPORTS {
        let (a, b) = if ws { (111, 112) } else { (101, 102) };
        let mut alice = im(&rim, ws, a, &format!("a{a}"), "live://hooks").await;
        let mut bob = im(&rim, !ws, b, &format!("b{b}"), "live://hooks").await;
        let mut seen = Vec::new();

        let reply = send(&mut alice, 1, &text(b, "m1", "hi"), &mut seen).await;
        assert_eq!(reply, json!({"id": "m1", "code": 0}));
        let (seq, envelope) = next_message(&mut bob).await;
        assert_eq!((seq, &envelope["body"]), (1, &json!({"text": "hi"})));
        assert_eq!(
            backend.upstream.lock().last().unwrap(),
            &json!({"from": a, "to": b, "id": "m1", "op": 1000, "body": {"text": "hi"}}),
            "the hook sees the sender from the session and the client's body"
        );

        let reply = send(&mut alice, 2, &text(b, "m2", "reject"), &mut seen).await;
        assert_eq!(
            reply,
            json!({"id": "m2", "code": 403, "reason": "not on my watch"})
        );
        let reply = send(&mut alice, 3, &text(b, "m3", "reject quietly"), &mut seen).await;
        assert_eq!(
            (&reply["code"], &reply["reason"]),
            (&json!(403), &json!("rejected by the backend"))
        );

        let reply = send(&mut alice, 4, &text(b, "m4", "replace"), &mut seen).await;
        assert_eq!(reply["code"], 0, "{reply}");
        let (seq, envelope) = next_message(&mut bob).await;
        assert_eq!(seq, 2, "the rejected messages were not stored");
        assert_eq!(
            envelope["body"],
            json!({"text": "replaced", "by": "backend"})
        );
        assert_eq!(
            (&envelope["from"], &envelope["id"]),
            (&json!(a), &json!("m4"))
        );

        // A replacement is held to chat.max_body (2048) like the client's body.
        let reply = send(&mut alice, 5, &text(b, "m5", "replace big"), &mut seen).await;
        assert_eq!(reply["code"], 413, "{reply}");
        // A replace without a body is an invalid answer: fail closed.
        let reply = send(&mut alice, 6, &text(b, "m6", "replace nothing"), &mut seen).await;
        assert_eq!(reply["code"], 503, "{reply}");

        // Room messages go through the hook too.
        let room =
            json!({"room": "live://hooks", "op": 1001, "id": "r1", "body": {"text": "replace"}});
        assert_eq!(send(&mut alice, 7, &room, &mut seen).await["code"], 0);
        let request = backend.upstream.lock().last().unwrap().clone();
        assert_eq!(
            request,
            json!({"from": a, "room": "live://hooks", "id": "r1", "op": 1001, "body": {"text": "replace"}})
        );
        let push = bob.next_push().await.unwrap();
        let envelope: Value = serde_json::from_slice(&push.body).unwrap();
        assert_eq!(envelope["body"]["text"], "replaced");

        expect_nothing(&mut bob).await;
        let cursor = rim
            .http
            .get(&format!("/rim/v1/users/{b}/cursor"))
            .await
            .unwrap()
            .json;
        assert_eq!(cursor["top"], 2, "m1 and m4: {cursor}");
    }
    rim.server.stop().await;
}

#[tokio::test]
async fn upstream_failures_fail_closed_by_default() {
    let backend = Backend::start().await;
    let rim = Rim::start_with(backend.upstream_config(OnFailure::Reject)).await;
    let mut alice = im(&rim, false, 201, "a201", "").await;
    let mut bob = im(&rim, true, 202, "b202", "").await;
    let mut seen = Vec::new();
    for (i, what) in ["slow", "error", "garbage"].into_iter().enumerate() {
        let id = format!("f{i}");
        let reply = send(&mut alice, i as i32, &text(202, &id, what), &mut seen).await;
        assert_eq!(reply["code"], 503, "{what}: {reply}");
        assert_eq!(reply["id"], id);
        assert!(
            reply["reason"]
                .as_str()
                .unwrap()
                .contains("backend hook unavailable"),
            "{what}: {reply}"
        );
    }
    expect_nothing(&mut bob).await;
    let cursor = rim.http.get("/rim/v1/users/202/cursor").await.unwrap().json;
    assert_eq!(cursor["top"], 0, "nothing stored: {cursor}");
    // The connection is fine, and a later message goes through.
    let reply = send(&mut alice, 9, &text(202, "ok", "hello"), &mut seen).await;
    assert_eq!(reply["code"], 0, "{reply}");
    rim.server.stop().await;

    // No backend listening at all.
    let mut config = test_config();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/upstream", closed.local_addr().unwrap());
    drop(closed);
    config.logic.hooks.upstream = Some(UpstreamHookConfig {
        url,
        ..UpstreamHookConfig::default()
    });
    let rim = Rim::start_with(config).await;
    let mut alice = im(&rim, false, 203, "a203", "").await;
    let reply = send(&mut alice, 1, &text(204, "x", "hi"), &mut Vec::new()).await;
    assert_eq!(reply["code"], 503, "{reply}");
    rim.server.stop().await;
}

#[tokio::test]
async fn upstream_failures_fail_open_when_configured() {
    let backend = Backend::start().await;
    let rim = Rim::start_with(backend.upstream_config(OnFailure::Accept)).await;
    let mut alice = im(&rim, true, 301, "a301", "").await;
    let mut bob = im(&rim, false, 302, "b302", "").await;
    let mut seen = Vec::new();
    for (i, what) in ["slow", "error", "garbage"].into_iter().enumerate() {
        let id = format!("o{i}");
        let reply = send(&mut alice, i as i32, &text(302, &id, what), &mut seen).await;
        assert_eq!(reply, json!({"id": id, "code": 0}), "{what}");
        let (seq, envelope) = next_message(&mut bob).await;
        assert_eq!(seq, i as i32 + 1);
        assert_eq!(envelope["body"]["text"], what, "delivered as sent");
    }
    // A verdict is still a verdict.
    let reply = send(&mut alice, 5, &text(302, "no", "reject"), &mut seen).await;
    assert_eq!(reply["code"], 403, "{reply}");
    rim.server.stop().await;
}

#[tokio::test]
async fn offline_hook_lists_messages_no_device_acked() {
    let backend = Backend::start().await;
    let rim = Rim::start_with(backend.offline_config(Duration::from_millis(300))).await;
    let mut alice = im(&rim, false, 401, "a401", "").await;
    // Bob is connected and receives the message, but never acks it.
    let mut bob = im(&rim, true, 402, "b402", "").await;
    let reply = send(
        &mut alice,
        1,
        &text(402, "m1", "are you there?"),
        &mut Vec::new(),
    )
    .await;
    assert_eq!(reply["code"], 0, "{reply}");
    assert_eq!(next_message(&mut bob).await.0, 1);
    // User 403 never connected: no device at all.
    let id = rim.http.store(&[403], "backend news").await;

    let listed = poll::eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        async || match (
            backend.listed(402).as_slice(),
            backend.listed(403).as_slice(),
        ) {
            ([bob], [nobody]) => Ok((bob.clone(), nobody.clone())),
            _ => Err(format!(
                "offline entries so far: {:?}",
                backend.offline.lock()
            )),
        },
    )
    .await;
    assert_eq!(
        listed.0,
        json!({"mid": 402, "id": "401.m1", "seq": 1, "op": 1000, "from": 401, "preview": "{\"text\":\"are you there?\"}"})
    );
    assert_eq!(
        listed.1,
        json!({"mid": 403, "id": id, "seq": 1, "op": 1000, "from": 0, "preview": "backend news"})
    );
    assert!(
        backend.listed(401).is_empty(),
        "the sender's own copy is not listed"
    );
    rim.server.stop().await;
}

#[tokio::test]
async fn offline_hook_skips_messages_a_device_acked() {
    let backend = Backend::start().await;
    // Above the comet's ack flush (every 500 ms).
    let rim = Rim::start_with(backend.offline_config(Duration::from_millis(1500))).await;
    let mut alice = im(&rim, true, 501, "a501", "").await;
    let mut bob = im(&rim, false, 502, "b502", "").await;
    let reply = send(&mut alice, 1, &text(502, "m1", "ack me"), &mut Vec::new()).await;
    assert_eq!(reply["code"], 0, "{reply}");
    let (seq, _) = next_message(&mut bob).await;
    bob.send(&Frame::new(1, Op::Ack, 0, format!(r#"{{"seq":{seq}}}"#)))
        .await
        .unwrap();
    // Stored after bob's message, so due after it: once it is listed, bob's
    // was checked.
    rim.http.store(&[503], "for nobody").await;
    poll::eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        async || {
            if backend.listed(503).len() == 1 {
                Ok(())
            } else {
                Err(format!(
                    "offline entries so far: {:?}",
                    backend.offline.lock()
                ))
            }
        },
    )
    .await;
    assert!(
        backend.listed(502).is_empty(),
        "bob's device acked: {:?}",
        backend.offline.lock()
    );
    let cursor = rim.http.get("/rim/v1/users/502/cursor").await.unwrap().json;
    assert_eq!(cursor["devices"]["b502"]["ack"], 1, "{cursor}");
    rim.server.stop().await;
}
