//! [`KafkaSource`]: the consume side on Kafka (a consumer group).
//!
//! Offsets are stored (`enable.auto.offset.store=false`) strictly in
//! consumption order by a committer task that awaits each record's
//! [`Receipt`](crate::Receipt): record N+1, settled early by a fast comet,
//! never moves the offset past record N, still queued for a slow one.
//! librdkafka commits stored offsets every 500 ms, and [`KafkaSource`]'s
//! `finish` commits once more, synchronously. A consumer killed mid-stream
//! leaves its unsettled records to the next one: clients may see
//! duplicates, never gaps.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prost::Message as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use rim_proto::pb::logic::PushMsg;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::KafkaConfig;
use crate::{Outcome, Position, QueueError, Receipt, Record, RecordError, RecordSource};

/// A record handed out and not yet passed by the committer.
struct Pending {
    partition: i32,
    offset: i64,
    outcome: oneshot::Receiver<Outcome>,
}

/// The push topic consumed in a consumer group.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer<LoggingContext>>,
    /// To the committer, in consumption order; its capacity bounds the
    /// records in flight. `None` once closed.
    pending: Option<mpsc::Sender<Pending>>,
    committer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("closed", &self.pending.is_none())
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    /// Joins `config.group` and subscribes to `config.topic`. A topic that
    /// does not exist yet is picked up within 5 s of its creation.
    pub fn new(config: &KafkaConfig) -> Result<KafkaSource, QueueError> {
        let session_ms = config.session_timeout.as_millis().max(1000).to_string();
        let client = config.client(|client| {
            client
                .set("group.id", &config.group)
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "500")
                .set("enable.auto.offset.store", "false")
                // Statistics feed the consumer-lag gauge.
                .set("statistics.interval.ms", "5000")
                // A brand-new group starts at the oldest record: nothing
                // published before the first job came up is skipped (goim
                // starts at the newest).
                .set("auto.offset.reset", "earliest")
                // A subscribed topic that does not exist yet (logic creates
                // it once the broker is reachable) is picked up within 5 s,
                // not librdkafka's default 5 min.
                .set("topic.metadata.refresh.interval.ms", "5000")
                .set("session.timeout.ms", &session_ms)
                .set("max.poll.interval.ms", session_ms.clone())
                .set(
                    "heartbeat.interval.ms",
                    (config.session_timeout.as_millis().max(1000) / 3).to_string(),
                );
        });
        let unavailable =
            |e: rdkafka::error::KafkaError| QueueError::Unavailable(format!("kafka consumer: {e}"));
        let consumer: Arc<StreamConsumer<LoggingContext>> = Arc::new(
            client
                .create_with_context(LoggingContext)
                .map_err(unavailable)?,
        );
        consumer.subscribe(&[&config.topic]).map_err(unavailable)?;
        info!(topic = %config.topic, group = %config.group, "kafka consumer subscribed");
        let (tx, rx) = mpsc::channel(config.max_in_flight.max(1));
        let committer = tokio::spawn(store_in_order(consumer.clone(), config.topic.clone(), rx));
        Ok(KafkaSource {
            consumer,
            pending: Some(tx),
            committer: Some(committer),
        })
    }
}

#[async_trait]
impl RecordSource for KafkaSource {
    async fn next(&mut self) -> Option<Record> {
        let pending = self.pending.as_ref()?;
        // A slot first: at most `max_in_flight` records are unsettled.
        let Ok(slot) = pending.reserve().await else {
            // The committer stopped at an interrupted record (an aborted
            // delivery): nothing after it may be committed, so stop taking
            // records; the next consumer gets them again.
            error!("offset committer stopped at an interrupted record; the consumer stops");
            self.pending = None;
            return None;
        };
        let msg = loop {
            match self.consumer.recv().await {
                Ok(msg) => break msg,
                Err(e) => {
                    warn!(error = %e, "kafka receive error");
                    metrics::counter!("rim_job_kafka_errors_total").increment(1);
                    tokio::time::sleep(Duration::from_millis(200)).await;
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
        let decoded = match msg.payload() {
            Some(payload) => PushMsg::decode(payload).map_err(RecordError::from),
            None => Err(RecordError::Empty),
        };
        let (receipt, outcome) = Receipt::tracked();
        slot.send(Pending {
            partition,
            offset,
            outcome,
        });
        Some(Record {
            msg: decoded,
            position: Position::Kafka { partition, offset },
            receipt,
        })
    }

    fn close(&mut self) {
        // Unread records stay in the topic for the next consumer.
        self.pending = None;
    }

    async fn finish(&mut self) {
        self.pending = None;
        if let Some(committer) = self.committer.take() {
            let _ = committer.await;
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => info!("kafka offsets committed"),
            Err(e) => debug!(error = %e, "final commit (nothing stored or not assigned)"),
        }
    }
}

/// Stores each record's offset once it and every record before it are
/// settled; stops at the first interrupted one, so it and everything after
/// it stay uncommitted for the next consumer.
async fn store_in_order(
    consumer: Arc<StreamConsumer<LoggingContext>>,
    topic: String,
    mut rx: mpsc::Receiver<Pending>,
) {
    while let Some(p) = rx.recv().await {
        match p.outcome.await {
            Ok(Outcome::Settled) => {}
            Ok(Outcome::Interrupted) | Err(_) => {
                info!(
                    partition = p.partition,
                    offset = p.offset,
                    "stopping offset commits: record interrupted"
                );
                return;
            }
        }
        let mut tpl = TopicPartitionList::new();
        if let Err(e) = tpl.add_partition_offset(&topic, p.partition, Offset::Offset(p.offset + 1))
        {
            error!(error = %e, "cannot record offset");
            continue;
        }
        if let Err(e) = consumer.store_offsets(&tpl) {
            warn!(partition = p.partition, offset = p.offset, error = %e, "storing offset failed");
        }
    }
}

/// Logs every partition assignment and revocation, so an operator (or a
/// failing test) can see which job held which partitions when, and turns
/// librdkafka's statistics into the consumer-lag gauge.
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
