//! [`MuteWatch`]: hears, over Redis pub/sub, which users' mutes changed, so
//! that a process caching mutes (logic, comet) drops what went stale within
//! moments instead of reading Redis for every message.
//!
//! Owns the subscriber connection and keeping it alive: one task subscribes
//! to the mute channel (`keys`), forwards each published mid, pings the
//! connection now and then (a silently dead peer is noticed), and after a
//! lost connection or a Redis restart connects again with exponential back
//! off, logging each failure. It does not own any cache: it only says what
//! to forget.
//!
//! On a Redis Cluster it subscribes on one node: a `PUBLISH` (the mute
//! scripts' too) reaches every node's subscribers over the cluster bus.
//! When that node is lost the task moves on to the next seed node, so a
//! failed master does not silence the watch.
//!
//! Pub/sub delivers nothing that was published while the subscriber was
//! away, so every (re)subscription is reported as [`MuteChange::All`]. The
//! same happens when the receiver falls behind: the queue to it is bounded,
//! and rather than block or drop silently the task reports `All` once there
//! is room again.

use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::RedisStore;

/// Reports waiting for the receiver; past it the task reports
/// [`MuteChange::All`] once the receiver catches up.
const QUEUE: usize = 1024;
/// The first pause before connecting again; it doubles on each failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often an idle subscription is pinged.
const PING_EVERY: Duration = Duration::from_secs(15);

/// What a [`MuteWatch`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuteChange {
    /// The mutes of this mid changed: drop what is cached for it.
    Mid(i64),
    /// Any user's mutes may have changed: drop every cached mute, and any
    /// load of one that started before this report. Sent once subscribed
    /// (the first report), after every reconnection, and when the receiver
    /// fell so far behind that reports were merged.
    All,
}

/// The changes of users' mutes, as announced by every [`RedisStore`] under
/// the same prefix (in any process). The watch runs until it is dropped.
#[derive(Debug)]
pub struct MuteWatch {
    rx: mpsc::Receiver<MuteChange>,
    task: JoinHandle<()>,
}

impl MuteWatch {
    /// The next change, waiting for one. `None` only if the watch's task
    /// failed (it never ends by itself).
    pub async fn recv(&mut self) -> Option<MuteChange> {
        self.rx.recv().await
    }
}

impl Drop for MuteWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisStore {
    /// Starts watching the mute channel on a connection of its own (pub/sub
    /// needs one), from a task on the current Tokio runtime. The first
    /// report is [`MuteChange::All`], once the subscription is in place; a
    /// change made after that is reported. Never fails: a Redis it cannot
    /// reach is logged and tried again until it answers.
    pub fn watch_mutes(&self) -> MuteWatch {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(
            self.clients.clone(),
            self.keys.mute_channel(),
            self.timeout,
            tx,
        ));
        MuteWatch { rx, task }
    }
}

/// Why a subscription ended.
enum Ended {
    /// The [`MuteWatch`] is gone: stop.
    ReceiverGone,
    /// The connection was lost: connect again.
    Lost(String),
}

/// Subscribes through `clients[0]`, and after each failure through the
/// next one.
async fn run(
    clients: Vec<redis::Client>,
    channel: String,
    timeout: Duration,
    tx: mpsc::Sender<MuteChange>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut clients = clients.iter().cycle();
    loop {
        let Some(client) = clients.next() else {
            tracing::error!(channel, "mute watch has no redis to subscribe to");
            return;
        };
        match subscribe(client, &channel, timeout).await {
            Ok((sink, stream)) => {
                backoff = MIN_BACKOFF;
                tracing::debug!(channel, "watching mutes");
                match forward(sink, stream, &tx, timeout).await {
                    Ended::ReceiverGone => return,
                    Ended::Lost(error) => tracing::warn!(
                        channel,
                        error,
                        "mute watch lost its redis connection; connecting again"
                    ),
                }
            }
            Err(error) => tracing::warn!(
                channel,
                error,
                retry_in = ?backoff,
                "mute watch cannot subscribe"
            ),
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A new connection, subscribed to `channel` (confirmed by Redis).
async fn subscribe(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
) -> Result<(PubSubSink, PubSubStream), String> {
    let pubsub = tokio::time::timeout(timeout, client.get_async_pubsub())
        .await
        .map_err(|_| format!("connecting timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    let (mut sink, stream) = pubsub.split();
    tokio::time::timeout(timeout, sink.subscribe(channel))
        .await
        .map_err(|_| format!("subscribing timed out after {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    Ok((sink, stream))
}

/// Reports `All`, then every published mid, until the connection or the
/// receiver is gone.
async fn forward(
    mut sink: PubSubSink,
    mut stream: PubSubStream,
    tx: &mpsc::Sender<MuteChange>,
    timeout: Duration,
) -> Ended {
    // Changes made while not subscribed were missed.
    let mut behind = true;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = tx.closed() => return Ended::ReceiverGone,
            permit = tx.reserve(), if behind => match permit {
                Ok(permit) => {
                    permit.send(MuteChange::All);
                    behind = false;
                }
                Err(_) => return Ended::ReceiverGone,
            },
            message = stream.next() => {
                let Some(message) = message else {
                    return Ended::Lost("the connection closed".to_owned());
                };
                let payload = message.get_payload::<String>();
                let change = match payload.as_deref().map(str::parse) {
                    Ok(Ok(mid)) => MuteChange::Mid(mid),
                    _ => {
                        tracing::warn!(payload = ?payload, "mute channel carried no mid");
                        MuteChange::All
                    }
                };
                // While behind, the `All` still to come covers this change.
                if !behind {
                    match tx.try_send(change) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => behind = true,
                        Err(mpsc::error::TrySendError::Closed(_)) => return Ended::ReceiverGone,
                    }
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(timeout, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Ended::Lost(format!("ping failed: {e}")),
                    Err(_) => return Ended::Lost(format!("no answer to a ping within {timeout:?}")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens on port 1: the task keeps trying (paused time skips
    /// its pauses), reports nothing, and ends once its receiver is gone.
    #[tokio::test(start_paused = true)]
    async fn an_unreachable_redis_is_retried_until_the_watch_is_dropped() {
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(run(
            vec![client],
            "mutes".to_owned(),
            Duration::from_secs(1),
            tx,
        ));
        let report = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
        assert!(
            report.is_err(),
            "reported {report:?} without a subscription"
        );
        drop(rx);
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the task ends once the watch is gone")
            .unwrap();
    }
}
