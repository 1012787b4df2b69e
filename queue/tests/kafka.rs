#![cfg(feature = "kafka")]
//! The Kafka push queue against a real Kafka-protocol broker (Tansu, started
//! by scripts/services.sh; address from RIM_TEST_KAFKA).

use std::time::Duration;

use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rim_proto::pb::logic::{push_msg::Type, PushMsg};
use rim_queue::kafka::{KafkaConfig, KafkaQueue};
use rim_queue::{PushQueue, QueueError};
use rim_testkit::services::{self, unique};

#[tokio::test]
async fn records_are_goim_pushmsg_with_goim_keys_and_acknowledged() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let config = KafkaConfig {
        brokers: vec![broker.clone()],
        topic: unique("rim-test-push"),
        partitions: 2,
        ..KafkaConfig::default()
    };
    let queue = KafkaQueue::new(&config).unwrap();
    queue.ensure_topic(&config).await.unwrap();
    // Idempotent.
    queue.ensure_topic(&config).await.unwrap();

    let room = PushMsg {
        r#type: Type::Room as i32,
        operation: 1002,
        room: "live://1000".into(),
        msg: bytes::Bytes::from_static(b"{\"room\":\"msg\"}"),
        ..PushMsg::default()
    };
    queue.publish("live://1000", room.clone()).await.unwrap();

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker)
        .set("group.id", unique("rim-test-group"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[&config.topic]).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .expect("record arrives")
        .unwrap();
    assert_eq!(msg.key(), Some(&b"live://1000"[..]));
    let decoded = PushMsg::decode(msg.payload().unwrap()).unwrap();
    assert_eq!(decoded, room);
}

#[tokio::test]
async fn unreachable_broker_fails_within_the_timeout() {
    // Nothing listens on port 1: no service needed for this test. The
    // timeout is long enough that one applied twice (queue wait, then ack
    // wait) overruns the bound below.
    let timeout = Duration::from_millis(2500);
    let config = KafkaConfig {
        brokers: vec!["127.0.0.1:1".into()],
        topic: "rim-nowhere".into(),
        timeout,
        ..KafkaConfig::default()
    };
    let queue = KafkaQueue::new(&config).unwrap();
    let started = tokio::time::Instant::now();
    let err = queue.publish("k", PushMsg::default()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(err, QueueError::Unavailable(_) | QueueError::Timeout(_)),
        "{err}"
    );
    // librdkafka keeps retrying a refused broker until message.timeout.ms, so
    // the error comes at the timeout: not before it, and not long after it
    // (librdkafka scans for timed-out messages about once a second, and
    // publish's own deadline is the timeout plus 1 s; hence the 2 s).
    assert!(
        elapsed >= timeout - Duration::from_millis(100),
        "failed after {elapsed:?}, before the {timeout:?} timeout: {err}"
    );
    assert!(
        elapsed <= timeout + Duration::from_secs(2),
        "failed after {elapsed:?}, long after the {timeout:?} timeout: {err}"
    );
}
