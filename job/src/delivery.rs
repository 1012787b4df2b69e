//! The outcome of one record: [`Delivery`] (the caller's side) and `Ack`
//! (the side held by whoever delivers one part of it).
//!
//! A record targets one comet (PUSH) or all of them (ROOM, BROADCAST); each
//! target gets its own `Ack`, and the `Delivery` resolves once every one of
//! them did. Counting and logging a failure is done where it is decided, not
//! here, so that each failure is counted exactly once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use rim_queue::{self as queue, Receipt};
use tokio::sync::oneshot;
use tracing::warn;

use crate::{metrics, JobError};

type DeliveryResult = Result<(), JobError>;

/// Resolves once every comet a record targets has settled: `Ok` when all
/// accepted it, else the failure that matters most (already logged and
/// counted). It never resolves while a target still holds the record, so an
/// offset stored on its outcome cannot skip a delivery still in flight.
///
/// Dropping a `Delivery` does not cancel the delivery.
#[must_use = "a Delivery tells whether the record reached the comets"]
pub struct Delivery {
    ready: Option<DeliveryResult>,
    pending: Vec<oneshot::Receiver<DeliveryResult>>,
    /// The failure to report once the rest have settled.
    failed: Settled,
    /// The queue's receipt for the record, settled with the outcome.
    receipt: Option<Receipt>,
}

/// The combined outcome of several targets, as they settle: `Ok` if all
/// accepted, else the failure that matters most. An interruption (which
/// keeps the offset, see [`JobError::keeps_offset`]) outranks a refusal.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    failed: Option<JobError>,
}

impl Settled {
    /// Takes one target's outcome into account.
    pub(crate) fn add(&mut self, outcome: DeliveryResult) {
        let Err(e) = outcome else { return };
        let keep = match &self.failed {
            Some(first) => first.keeps_offset() || !e.keeps_offset(),
            None => false,
        };
        if !keep {
            self.failed = Some(e);
        }
    }

    /// The combined outcome.
    pub(crate) fn outcome(self) -> DeliveryResult {
        self.failed.map_or(Ok(()), Err)
    }
}

impl Delivery {
    /// A delivery that already has its outcome.
    pub(crate) fn done(outcome: DeliveryResult) -> Delivery {
        Delivery {
            ready: Some(outcome),
            pending: Vec::new(),
            failed: Settled::default(),
            receipt: None,
        }
    }

    /// A delivery that waits for every one of `receivers`.
    pub(crate) fn waiting(receivers: Vec<oneshot::Receiver<DeliveryResult>>) -> Delivery {
        Delivery {
            ready: None,
            pending: receivers,
            failed: Settled::default(),
            receipt: None,
        }
    }

    /// A delivery that resolves once every one of `parts` has (none:
    /// delivered at once).
    pub(crate) fn all(parts: Vec<Delivery>) -> Delivery {
        let mut all = Delivery::waiting(Vec::new());
        for mut part in parts {
            if let Some(outcome) = part.ready.take() {
                all.failed.add(outcome);
            }
            all.pending.append(&mut part.pending);
        }
        all
    }

    /// Settles the queue's `receipt` for the record when this resolves: an
    /// interruption (see [`JobError::keeps_offset`]) keeps the record in the
    /// queue; delivered or given up (logged and counted where it failed, so
    /// a dead comet cannot stall the queue forever) lets the queue pass it.
    pub(crate) fn settling(mut self, receipt: Receipt) -> Delivery {
        self.receipt = Some(receipt);
        self
    }

    fn resolve(&mut self, outcome: DeliveryResult) -> Poll<DeliveryResult> {
        if let Some(receipt) = self.receipt.take() {
            receipt.settle(match &outcome {
                Err(e) if e.keeps_offset() => queue::Outcome::Interrupted,
                _ => queue::Outcome::Settled,
            });
        }
        Poll::Ready(outcome)
    }
}

impl Future for Delivery {
    type Output = DeliveryResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DeliveryResult> {
        let this = self.get_mut();
        if let Some(outcome) = this.ready.take() {
            return this.resolve(outcome);
        }
        let mut i = 0;
        while i < this.pending.len() {
            let settled = match Pin::new(&mut this.pending[i]).poll(cx) {
                Poll::Ready(Ok(outcome)) => outcome,
                // The Ack's Drop always sends; a closed channel means its task
                // was torn down with the runtime.
                Poll::Ready(Err(_)) => Err(JobError::Abandoned),
                Poll::Pending => {
                    i += 1;
                    continue;
                }
            };
            this.pending.swap_remove(i);
            this.failed.add(settled);
        }
        if this.pending.is_empty() {
            let outcome = std::mem::take(&mut this.failed).outcome();
            this.resolve(outcome)
        } else {
            Poll::Pending
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("ready", &self.ready)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// The delivering side of one target of a record (or of a room batch).
///
/// Must be resolved; if it is dropped unresolved (its task was aborted) it
/// fails the delivery with [`JobError::Abandoned`] and counts `messages` drops.
pub(crate) struct Ack {
    tx: Option<oneshot::Sender<DeliveryResult>>,
    messages: u64,
}

impl Ack {
    /// An ack for `messages` messages (1, or the size of a room batch).
    pub(crate) fn new(messages: u64) -> (Ack, oneshot::Receiver<DeliveryResult>) {
        let (tx, rx) = oneshot::channel();
        (
            Ack {
                tx: Some(tx),
                messages,
            },
            rx,
        )
    }

    /// Messages this ack stands for.
    pub(crate) fn messages(&self) -> u64 {
        self.messages
    }

    /// Reports the outcome. A failure must already be logged and counted.
    pub(crate) fn resolve(mut self, outcome: DeliveryResult) {
        if let Some(tx) = self.tx.take() {
            // The Delivery may have been dropped by a caller that does not
            // care; the outcome is recorded either way.
            let _ = tx.send(outcome);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let err = JobError::Abandoned;
            warn!(
                messages = self.messages,
                reason = err.reason(),
                "push dropped"
            );
            metrics::dropped(err.reason(), self.messages);
            let _ = tx.send(Err(err));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn waits_for_every_target() {
        let (a, rx_a) = Ack::new(1);
        let (b, rx_b) = Ack::new(1);
        let mut delivery = Delivery::waiting(vec![rx_a, rx_b]);
        assert!((&mut delivery).now_or_never().is_none());
        a.resolve(Ok(()));
        assert!((&mut delivery).now_or_never().is_none());
        b.resolve(Ok(()));
        assert_eq!(delivery.await, Ok(()));
    }

    #[tokio::test]
    async fn a_failure_waits_for_the_other_targets() {
        let (a, rx_a) = Ack::new(1);
        let (b, rx_b) = Ack::new(1);
        let mut delivery = Delivery::waiting(vec![rx_a, rx_b]);
        a.resolve(Err(JobError::NoComets));
        // b still holds the record: its offset must not be stored yet.
        assert!((&mut delivery).now_or_never().is_none());
        b.resolve(Ok(()));
        assert_eq!(delivery.await, Err(JobError::NoComets));
    }

    #[tokio::test]
    async fn an_interruption_outranks_a_refusal() {
        let (a, rx_a) = Ack::new(1);
        let (b, rx_b) = Ack::new(1);
        let (c, rx_c) = Ack::new(1);
        let delivery = Delivery::waiting(vec![rx_a, rx_b, rx_c]);
        a.resolve(Err(JobError::NoComets));
        b.resolve(Err(JobError::Shutdown));
        c.resolve(Err(JobError::CometRejected {
            server: "c".into(),
            reason: "bad".into(),
        }));
        assert_eq!(delivery.await, Err(JobError::Shutdown));
    }

    #[tokio::test]
    async fn dropped_ack_is_abandoned() {
        let (a, rx) = Ack::new(3);
        drop(a);
        assert_eq!(Delivery::waiting(vec![rx]).await, Err(JobError::Abandoned));
        assert_eq!(Delivery::waiting(Vec::new()).await, Ok(()));
        assert_eq!(
            Delivery::done(Err(JobError::Shutdown)).await,
            Err(JobError::Shutdown)
        );
    }
}
