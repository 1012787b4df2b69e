//! [`KafkaQueue`]: the publish side on Kafka (rdkafka's producer), and
//! creating the topic.
//!
//! `publish` resolves only once the broker acknowledged the record (acks=all);
//! when the broker is unreachable it fails after `message.timeout.ms`, so the
//! HTTP API answers 503 within a bounded time instead of hanging or lying.

use std::time::Duration;

use async_trait::async_trait;
use prost::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rim_proto::pb::logic::PushMsg;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::KafkaConfig;
use crate::{PushQueue, QueueError};

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
        let client = config.client(|client| {
            client
                .set("acks", "all")
                .set("enable.idempotence", "false")
                // Send at once: at 1k pushes/s this halves-to-thirds the push
                // API's p50 against linger 1 at the same CPU; under saturation
                // linger 1 takes ~14% more (docs/benchmark.md, "Producer
                // linger"). `[kafka.properties]` overrides it.
                .set("linger.ms", "0")
                .set(
                    "message.timeout.ms",
                    config.timeout.as_millis().max(1).to_string(),
                )
                .set(
                    "socket.connection.setup.timeout.ms",
                    config.timeout.as_millis().max(1000).to_string(),
                );
        });
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
        let admin: AdminClient<DefaultClientContext> = config
            .client(|_| {})
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

    /// Creates the topic if it is missing, retrying with backoff (1 s,
    /// doubling up to 30 s) while the broker cannot be reached, until it
    /// exists or `shutdown` is cancelled. Meant to run beside a logic that
    /// already serves: pushes answer 503 until the broker is reachable.
    pub async fn ensure_topic_retrying(&self, config: &KafkaConfig, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.ensure_topic(config).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, topic = %config.topic, retry_in = ?backoff, "push topic not ensured; pushes answer 503 until the broker is reachable");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
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
