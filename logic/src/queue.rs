//! The push queue between logic and job: logic publishes `goim.logic.PushMsg`
//! records; job consumes them.
//!
//! [`PushQueue`] is the publish side. Standalone mode uses [`InProcessQueue`]
//! (a bounded channel read by the in-process job); the distributed mode uses a
//! Kafka producer. `publish` returns `Ok` only once the queue has accepted the
//! record, and fails within a bounded time otherwise, so the HTTP API never
//! answers success for a message that was not accepted.

use std::time::Duration;

use async_trait::async_trait;
use rim_proto::pb::logic::PushMsg;
use tokio::sync::mpsc;

/// Why a record was not accepted by the queue.
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
    /// Publishes one record; `key` is the record key goim sets (goim-spec 3.2):
    /// first key for PUSH, room for ROOM, decimal operation for BROADCAST.
    async fn publish(&self, key: &str, msg: PushMsg) -> Result<(), QueueError>;
}

/// A bounded in-process queue: the standalone stand-in for Kafka.
#[derive(Debug, Clone)]
pub struct InProcessQueue {
    tx: mpsc::Sender<PushMsg>,
    timeout: Duration,
}

impl InProcessQueue {
    /// A queue holding up to `capacity` records; `publish` waits at most
    /// `timeout` for room before failing. The receiver goes to the job.
    pub fn new(capacity: usize, timeout: Duration) -> (InProcessQueue, mpsc::Receiver<PushMsg>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (InProcessQueue { tx, timeout }, rx)
    }
}

#[async_trait]
impl PushQueue for InProcessQueue {
    async fn publish(&self, _key: &str, msg: PushMsg) -> Result<(), QueueError> {
        match tokio::time::timeout(self.timeout, self.tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(QueueError::Unavailable("job is not consuming".into())),
            Err(_) => Err(QueueError::Timeout(self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn full_queue_times_out_instead_of_succeeding() {
        let (queue, mut rx) = InProcessQueue::new(1, Duration::from_secs(2));
        queue.publish("k", PushMsg::default()).await.unwrap();
        let err = queue.publish("k", PushMsg::default()).await.unwrap_err();
        assert!(matches!(err, QueueError::Timeout(_)));
        assert!(rx.recv().await.is_some());
        queue.publish("k", PushMsg::default()).await.unwrap();
    }

    #[tokio::test]
    async fn closed_queue_is_unavailable() {
        let (queue, rx) = InProcessQueue::new(4, Duration::from_secs(1));
        drop(rx);
        let err = queue.publish("k", PushMsg::default()).await.unwrap_err();
        assert!(matches!(err, QueueError::Unavailable(_)));
    }
}
