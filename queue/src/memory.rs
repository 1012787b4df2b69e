//! The in-process push queue: the standalone stand-in for Kafka. A bounded
//! channel; its receiving half is the [`RecordSource`] the in-process job
//! reads. Records have no positions to commit, so receipts are untracked;
//! what the channel holds at shutdown is still handed out after `close`, so
//! a push answered with success is delivered, not dropped.

use std::time::Duration;

use async_trait::async_trait;
use rim_proto::pb::logic::PushMsg;
use tokio::sync::mpsc;

use crate::{Position, PushQueue, QueueError, Receipt, Record, RecordSource};

/// A bounded in-process queue: the standalone stand-in for Kafka.
#[derive(Debug, Clone)]
pub struct InProcessQueue {
    tx: mpsc::Sender<PushMsg>,
    timeout: Duration,
}

impl InProcessQueue {
    /// A queue holding up to `capacity` records; `publish` waits at most
    /// `timeout` for room before failing. The source goes to the job.
    pub fn new(capacity: usize, timeout: Duration) -> (InProcessQueue, InProcessSource) {
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

/// The consuming half of an [`InProcessQueue`]: a channel receiver.
pub type InProcessSource = mpsc::Receiver<PushMsg>;

#[async_trait]
impl RecordSource for InProcessSource {
    async fn next(&mut self) -> Option<Record> {
        self.recv().await.map(|msg| Record {
            msg: Ok(msg),
            position: Position::InProcess,
            receipt: Receipt::untracked(),
        })
    }

    fn close(&mut self) {
        // Publishers fail from now on; what is queued is still received.
        mpsc::Receiver::close(self);
    }

    async fn finish(&mut self) {}
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

    #[tokio::test]
    async fn a_closed_source_still_hands_out_what_was_accepted() {
        let (queue, mut source) = InProcessQueue::new(4, Duration::from_secs(1));
        let msg = |op| PushMsg {
            operation: op,
            ..PushMsg::default()
        };
        queue.publish("k", msg(1)).await.unwrap();
        queue.publish("k", msg(2)).await.unwrap();
        RecordSource::close(&mut source);
        assert!(
            queue.publish("k", msg(3)).await.is_err(),
            "closed for new records"
        );
        for op in [1, 2] {
            let record = RecordSource::next(&mut source).await.unwrap();
            assert_eq!(record.msg.unwrap().operation, op);
            assert_eq!(record.position, Position::InProcess);
        }
        assert!(RecordSource::next(&mut source).await.is_none());
    }
}
