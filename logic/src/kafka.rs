//! [`KafkaQueue`]: the push queue on Kafka (rdkafka's producer).
//!
//! Records are protobuf `goim.logic.PushMsg` values with goim's record keys.
//! `publish` resolves only once the broker acknowledged the record (acks=all);
//! when the broker is unreachable it fails after `message.timeout.ms`, so the
//! HTTP API answers 503 within a bounded time instead of hanging or lying.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use prost::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rim_proto::pb::logic::PushMsg;
use serde::Deserialize;

use crate::queue::{PushQueue, QueueError};

/// Kafka producer settings (`[kafka]` in logic.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers. Default `["127.0.0.1:9092"]`.
    pub brokers: Vec<String>,
    /// Topic of push records. Default `goim-push-topic` (goim's).
    pub topic: String,
    /// How long a push may wait for the broker's acknowledgement before the
    /// API answers 503. Default 5s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Create the topic at start if it does not exist. Default true.
    pub create_topic: bool,
    /// Partitions of a topic created at start. Default 8.
    pub partitions: i32,
    /// Replication factor of a topic created at start. Default 1.
    pub replication: i32,
    /// Extra librdkafka properties, e.g. `{ "linger.ms" = "1" }`.
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: vec!["127.0.0.1:9092".into()],
            topic: "goim-push-topic".into(),
            timeout: Duration::from_secs(5),
            create_topic: true,
            partitions: 8,
            replication: 1,
            properties: Default::default(),
        }
    }
}

/// The publish side of the push queue on Kafka.
pub struct KafkaQueue {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl std::fmt::Debug for KafkaQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaQueue")
            .field("topic", &self.topic)
            .finish()
    }
}

impl KafkaQueue {
    /// A producer for `config`; connects in the background.
    pub fn new(config: &KafkaConfig) -> Result<KafkaQueue, QueueError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", config.brokers.join(","))
            .set("acks", "all")
            .set("enable.idempotence", "false")
            .set("linger.ms", "1")
            .set(
                "message.timeout.ms",
                config.timeout.as_millis().max(1).to_string(),
            )
            .set(
                "socket.connection.setup.timeout.ms",
                config.timeout.as_millis().max(1000).to_string(),
            );
        for (k, v) in &config.properties {
            client.set(k, v);
        }
        let producer: FutureProducer = client
            .create()
            .map_err(|e| QueueError::Unavailable(format!("kafka producer: {e}")))?;
        Ok(KafkaQueue {
            producer,
            topic: config.topic.clone(),
            timeout: config.timeout,
        })
    }
}

impl KafkaQueue {
    /// Creates the topic if it does not exist yet.
    pub async fn ensure_topic(&self, config: &KafkaConfig) -> Result<(), QueueError> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", config.brokers.join(","))
            .create()
            .map_err(|e| QueueError::Unavailable(format!("kafka admin: {e}")))?;
        let topic = NewTopic::new(
            &config.topic,
            config.partitions,
            TopicReplication::Fixed(config.replication),
        );
        let options = AdminOptions::new()
            .operation_timeout(Some(Timeout::After(config.timeout)))
            .request_timeout(Some(Timeout::After(config.timeout)));
        let results = admin.create_topics([&topic], &options).await.map_err(|e| {
            QueueError::Unavailable(format!("creating topic {}: {e}", config.topic))
        })?;
        for result in results {
            match result {
                Ok(name) => {
                    tracing::info!(topic = %name, partitions = config.partitions, "created push topic")
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(QueueError::Unavailable(format!(
                        "creating topic {name}: {code}"
                    )))
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl PushQueue for KafkaQueue {
    async fn publish(&self, key: &str, msg: PushMsg) -> Result<(), QueueError> {
        let payload = msg.encode_to_vec();
        let record = FutureRecord::to(&self.topic).key(key).payload(&payload);
        let started = Instant::now();
        // The queue timeout bounds waiting for room in librdkafka's buffer;
        // message.timeout.ms bounds waiting for the broker's ack.
        let result = tokio::time::timeout(
            self.timeout + Duration::from_secs(1),
            self.producer.send(record, Timeout::After(self.timeout)),
        )
        .await;
        metrics::histogram!("rim_logic_kafka_produce_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => {
                metrics::counter!("rim_logic_kafka_produce_errors_total").increment(1);
                // A produce request already on the wire when the deadline
                // passed may still be written by the broker: say so.
                Err(QueueError::Unavailable(format!(
                    "kafka did not acknowledge the message ({e}); it is not confirmed and may or may not be delivered"
                )))
            }
            Err(_) => {
                metrics::counter!("rim_logic_kafka_produce_errors_total").increment(1);
                Err(QueueError::Timeout(self.timeout))
            }
        }
    }
}
