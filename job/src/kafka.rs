//! The Kafka consumer: reads push records (consumer group), dispatches them
//! to comets, and commits an offset only after every comet the record
//! targets has accepted it (at-least-once). A job killed mid-stream re-reads
//! from the last committed offset: clients that stayed connected may see
//! duplicates, never gaps.
//!
//! Offsets are stored (`enable.auto.offset.store=false`) strictly in
//! consumption order by a committer task that awaits each record's
//! [`Delivery`]; librdkafka commits stored offsets periodically and once more
//! on shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use rim_proto::pb::logic::PushMsg;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::{Delivery, Job};

/// Kafka consumer settings (`[kafka]` in job.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers. Default `["127.0.0.1:9092"]`.
    pub brokers: Vec<String>,
    /// Topic of push records. Default `goim-push-topic`.
    pub topic: String,
    /// Consumer group. Default `goim-push-group-job`.
    pub group: String,
    /// Consumer-group session timeout. Default 10s (tests use less).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Records dispatched but not yet accepted by every comet, at most. Default 8192.
    pub max_in_flight: usize,
    /// Extra librdkafka properties.
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: vec!["127.0.0.1:9092".into()],
            topic: "goim-push-topic".into(),
            group: "goim-push-group-job".into(),
            session_timeout: Duration::from_secs(10),
            max_in_flight: 8192,
            properties: Default::default(),
        }
    }
}

/// Why the consumer could not run.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused the configuration or the subscription.
    #[error("kafka consumer: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

struct Pending {
    partition: i32,
    offset: i64,
    delivery: Option<Delivery>,
}

/// Logs every partition assignment and revocation, so an operator (or a
/// failing test) can see which job held which partitions when.
struct LoggingContext;

impl ClientContext for LoggingContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): the
    /// consumer's offset lag, summed over the partitions this job holds.
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            let lag: i64 = t
                .partitions
                .iter()
                .filter(|(partition, _)| **partition >= 0)
                .map(|(_, p)| p.consumer_lag.max(0))
                .sum();
            metrics::gauge!("rim_job_kafka_consumer_lag_messages", "topic" => topic.clone())
                .set(lag as f64);
        }
    }
}

impl ConsumerContext for LoggingContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |tpl: &TopicPartitionList| -> Vec<i32> {
            tpl.elements().iter().map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(partitions = ?partitions(tpl), "kafka partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                info!(partitions = ?partitions(tpl), "kafka partitions revoked")
            }
            Rebalance::Error(e) => warn!(error = %e, "kafka rebalance failed"),
        }
    }
}

/// Consumes `config.topic` and dispatches every record through `job` until
/// `shutdown` is cancelled; then shuts `job` down (in-flight records get its
/// shutdown grace) and commits the offsets of accepted records.
pub async fn consume(
    job: Arc<Job>,
    config: KafkaConfig,
    shutdown: CancellationToken,
) -> Result<(), KafkaError> {
    let session_ms = config.session_timeout.as_millis().max(1000).to_string();
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", config.brokers.join(","))
        .set("group.id", &config.group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false")
        // Statistics feed the consumer-lag gauge.
        .set("statistics.interval.ms", "5000")
        // A brand-new group starts at the oldest record: nothing published
        // before the first job came up is skipped (goim starts at the newest).
        .set("auto.offset.reset", "earliest")
        // A subscribed topic that does not exist yet (logic creates it once
        // the broker is reachable) is picked up within 5 s, not librdkafka's
        // default 5 min.
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("session.timeout.ms", &session_ms)
        .set("max.poll.interval.ms", session_ms.clone())
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout.as_millis().max(1000) / 3).to_string(),
        );
    for (k, v) in &config.properties {
        client.set(k, v);
    }
    let consumer: Arc<StreamConsumer<LoggingContext>> =
        Arc::new(client.create_with_context(LoggingContext)?);
    consumer.subscribe(&[&config.topic])?;
    info!(topic = %config.topic, group = %config.group, "kafka consumer subscribed");

    let (tx, mut rx) = mpsc::channel::<Pending>(config.max_in_flight.max(1));
    let committer = {
        let consumer = consumer.clone();
        let topic = config.topic.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                if let Some(delivery) = p.delivery {
                    match delivery.await {
                        Ok(()) => {}
                        Err(e) if e.keeps_offset() => {
                            // Interrupted by shutdown, not refused by a comet:
                            // leave this offset and everything after it
                            // uncommitted so the next job delivers them.
                            info!(partition = p.partition, offset = p.offset, error = %e, "stopping offset commits at shutdown");
                            break;
                        }
                        Err(e) => {
                            // Already logged and counted by job; the record
                            // is given up (a dead comet must not stall the
                            // partition forever).
                            debug!(partition = p.partition, offset = p.offset, error = %e, "record not delivered everywhere");
                        }
                    }
                }
                let mut tpl = TopicPartitionList::new();
                if let Err(e) =
                    tpl.add_partition_offset(&topic, p.partition, Offset::Offset(p.offset + 1))
                {
                    error!(error = %e, "cannot record offset");
                    continue;
                }
                if let Err(e) = consumer.store_offsets(&tpl) {
                    warn!(partition = p.partition, offset = p.offset, error = %e, "storing offset failed");
                }
            }
        })
    };

    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = consumer.recv() => r,
        };
        let msg = match received {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "kafka receive error");
                metrics::counter!("rim_job_kafka_errors_total").increment(1);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                }
            }
        };
        if let Some(ts) = msg.timestamp().to_millis() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(ts);
            metrics::histogram!("rim_job_kafka_consume_lag_seconds")
                .record((now - ts).max(0) as f64 / 1000.0);
        }
        let (partition, offset) = (msg.partition(), msg.offset());
        let decoded = msg.payload().map(PushMsg::decode);
        let delivery = match decoded {
            Some(Ok(push)) => {
                let started = Instant::now();
                let d = job.dispatch(push).await;
                metrics::histogram!("rim_job_dispatch_seconds")
                    .record(started.elapsed().as_secs_f64());
                match d {
                    Ok(d) => Some(d),
                    Err(e) => {
                        warn!(partition, offset, error = %e, "record not dispatched");
                        None
                    }
                }
            }
            Some(Err(e)) => {
                error!(partition, offset, error = %e, "undecodable push record skipped");
                metrics::counter!("rim_job_dropped_total", "reason" => "undecodable").increment(1);
                None
            }
            None => {
                warn!(partition, offset, "empty push record skipped");
                metrics::counter!("rim_job_dropped_total", "reason" => "empty_record").increment(1);
                None
            }
        };
        if tx
            .send(Pending {
                partition,
                offset,
                delivery,
            })
            .await
            .is_err()
        {
            break;
        }
    }
    // Stop polling, let the comets accept what is in flight (bounded by the
    // job's shutdown grace; what is left fails as `Shutdown` and stays
    // uncommitted), then commit what was accepted.
    drop(tx);
    job.shutdown().await;
    let _ = committer.await;
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => info!("kafka offsets committed"),
        Err(e) => debug!(error = %e, "final commit (nothing stored or not assigned)"),
    }
    Ok(())
}
