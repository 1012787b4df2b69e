//! rim's push queue: the seam between logic, which publishes push records
//! (`goim.logic.PushMsg`), and job, which consumes them.
//!
//! # Data flow
//!
//! ```text
//! logic --PushQueue::publish--> [in-process channel | Kafka topic] --RecordSource::next--> job
//!                                                      ^                                      |
//!                                                      +---------- Receipt::settle -----------+
//! ```
//!
//! - [`PushQueue`] is the publish side: `publish` returns `Ok` only once the
//!   queue has accepted the record (the broker acknowledged it), and fails
//!   within a bounded time otherwise, so the HTTP API never answers success
//!   for a message that was not accepted.
//! - [`RecordSource`] is the consume side: each [`Record`] comes with a
//!   [`Receipt`]. The consumer settles the receipt once the record's outcome
//!   is known ([`Outcome`]); the Kafka source stores offsets strictly in
//!   consumption order, each only once its record and every record before it
//!   are settled, so an offset never passes a record still in flight.
//!
//! Both have an in-process implementation (`memory`, standalone mode) and
//! one on Kafka ([`kafka`], the distributed mode, behind the default
//! feature `kafka`; rdkafka is linked by this crate only).
//!
//! # Layout
//! - `memory`: [`InProcessQueue`] and its source, a bounded channel.
//! - [`kafka`]: [`kafka::KafkaConfig`] (one `[kafka]` section for producer
//!   and consumer), [`kafka::KafkaQueue`] (producer, topic creation) and
//!   [`kafka::KafkaSource`] (consumer group, ordered offset store, final
//!   commit).

#![warn(missing_docs)]

#[cfg(feature = "kafka")]
pub mod kafka;
mod memory;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use rim_proto::pb::logic::PushMsg;
use tokio::sync::oneshot;

pub use memory::{InProcessQueue, InProcessSource};

/// Why the queue did not accept a record, or could not be set up (a
/// producer, consumer or topic on Kafka).
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The queue did not accept the record in time (full or unreachable).
    #[error("push queue did not accept the message within {0:?}")]
    Timeout(Duration),
    /// The queue is gone (shutting down) or refused the record.
    #[error("push queue unavailable: {0}")]
    Unavailable(String),
}

/// The publish side of the push queue.
#[async_trait]
pub trait PushQueue: Send + Sync + 'static {
    /// Publishes one record; `key` is goim's record key: the first key for
    /// PUSH, the room for ROOM, the decimal operation for BROADCAST (see
    /// docs/protocol.md, "Between the services").
    async fn publish(&self, key: &str, msg: PushMsg) -> Result<(), QueueError>;
}

/// The consume side of the push queue: the records job dispatches, in the
/// order the queue holds them.
#[async_trait]
pub trait RecordSource: Send {
    /// The next record, or `None` once the source is closed and drained (or
    /// failed for good). Cancel-safe: a record not yet returned is not lost
    /// (Kafka redelivers what was never settled).
    async fn next(&mut self) -> Option<Record>;

    /// Stops taking new records. What the source already holds and must not
    /// lose (the in-process queue's accepted records) is still returned by
    /// `next`; a Kafka source returns `None` at once, its unread records stay
    /// in the topic for the next consumer.
    fn close(&mut self);

    /// After `close` and once every receipt handed out is settled or dropped:
    /// makes the outcomes durable (Kafka: waits for the ordered offset store,
    /// then commits synchronously).
    async fn finish(&mut self);
}

/// One record taken from the queue.
#[derive(Debug)]
pub struct Record {
    /// The push, or why the record holds none.
    pub msg: Result<PushMsg, RecordError>,
    /// Where the record sits in the queue, for logs.
    pub position: Position,
    /// Settle it once the record's outcome is known.
    pub receipt: Receipt,
}

/// Why a record carries no push. The consumer counts it as dropped and
/// settles its receipt: it can never be delivered.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record has no value.
    #[error("empty push record")]
    Empty,
    /// The value is not a protobuf `goim.logic.PushMsg`.
    #[error("undecodable push record: {0}")]
    Undecodable(#[from] prost::DecodeError),
}

impl RecordError {
    /// The `reason` label of `rim_job_dropped_total` for this record.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::Empty => "empty_record",
            RecordError::Undecodable(_) => "undecodable",
        }
    }
}

/// Where a record sits in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The in-process queue (no addressable position).
    InProcess,
    /// A Kafka partition and offset.
    Kafka {
        /// The partition.
        partition: i32,
        /// The record's offset in it.
        offset: i64,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::InProcess => f.write_str("in-process"),
            Position::Kafka { partition, offset } => {
                write!(f, "partition {partition} offset {offset}")
            }
        }
    }
}

/// A record's outcome, as far as the queue is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done with: delivered, or given up (already logged and counted). The
    /// queue may move past it.
    Settled,
    /// Interrupted (shutdown): the queue must keep it, and everything after
    /// it, for the next consumer.
    Interrupted,
}

/// The consumer's promise to report a record's [`Outcome`]. Dropping it
/// unsettled counts as [`Outcome::Interrupted`]: a record is never passed
/// over by accident.
#[derive(Debug)]
pub struct Receipt(Option<oneshot::Sender<Outcome>>);

impl Receipt {
    /// A receipt nobody waits for (the in-process queue holds no positions).
    pub fn untracked() -> Receipt {
        Receipt(None)
    }

    /// A receipt whose outcome `rx` receives (dropped: `Err`, interrupted).
    pub fn tracked() -> (Receipt, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        (Receipt(Some(tx)), rx)
    }

    /// Reports the record's outcome.
    pub fn settle(mut self, outcome: Outcome) {
        if let Some(tx) = self.0.take() {
            // The source may have stopped waiting (shut down); nothing to do.
            let _ = tx.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_receipt_counts_as_interrupted() {
        let (receipt, rx) = Receipt::tracked();
        drop(receipt);
        assert!(
            rx.await.is_err(),
            "an unsettled receipt must not read as settled"
        );
        let (receipt, rx) = Receipt::tracked();
        receipt.settle(Outcome::Settled);
        assert_eq!(rx.await.ok(), Some(Outcome::Settled));
    }

    #[test]
    fn positions_name_partition_and_offset() {
        let p = Position::Kafka {
            partition: 3,
            offset: 17,
        };
        assert_eq!(p.to_string(), "partition 3 offset 17");
        assert_eq!(Position::InProcess.to_string(), "in-process");
    }
}
