//! The backend hooks (`[logic.hooks]`; docs/protocol.md, "Backend hooks"):
//! HTTP calls from logic to the business backend.
//!
//! - **upstream**: each client message (op 4) is posted before it is
//!   accepted; the backend accepts it, rejects it (op 5 403) or replaces its
//!   body. A failed call (timeout, non-2xx, unreadable answer, no
//!   connection) accepts the message or answers 503, as `on_failure` says.
//!   The call runs in logic's handling of op 4, which the comet runs off the
//!   connection's read loop, so a slow backend never holds up reads.
//! - **offline**: every stored message is remembered with a due time; when
//!   due, the mailbox's cursor tells whether a device of the user
//!   acknowledged it, and the ones no device did are posted in batches, so
//!   the backend can send a mobile push notification.
//!
//! The offline hook's pending set lives in memory and is bounded: messages
//! stored before a restart and not yet due are not listed, and above
//! [`OFFLINE_PENDING_MAX`] new ones are dropped (counted). Each logic
//! instance watches the messages it accepted.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use rim_mailbox::{MailboxStore, MsgId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::chat::{Refusal, Target};
use crate::config::{HooksConfig, OfflineHookConfig, OnFailure};
use crate::Logic;

/// Most stored messages the offline hook remembers at once; beyond it new
/// ones are not watched (`rim_logic_offline_dropped_total{reason="full"}`).
pub(crate) const OFFLINE_PENDING_MAX: usize = 100_000;
/// Characters of a message's body in an offline entry's `preview`.
pub(crate) const PREVIEW_CHARS: usize = 100;
/// Longest answer read from the backend, in bytes; longer is invalid.
const ANSWER_MAX: usize = 256 * 1024;
/// Longest reason of a rejection passed on to the client, in characters.
const REASON_MAX: usize = 200;
/// The newest messages of a mailbox searched for a message's seq when the
/// seq is not known (the distributed mode: job appends after logic answers).
const LOOKUP_LIMIT: usize = 500;
const LOOKUP_BYTES: usize = 1024 * 1024;
/// Mailboxes whose cursors are read at once by the offline watcher.
const CURSOR_READS: usize = 16;
/// First pause before an offline POST is tried again; doubles each time.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a hook call failed: `rim_logic_hook_failures_total`'s `reason`.
#[derive(Debug)]
enum Failure {
    /// No answer within the hook's timeout.
    Timeout,
    /// A non-2xx answer.
    Status(reqwest::StatusCode),
    /// An answer that is not the hook's JSON (or too long).
    Invalid(String),
    /// No connection, or it broke (also: the client could not be built).
    Connect(String),
}

impl Failure {
    fn reason(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Status(_) => "status",
            Failure::Invalid(_) => "invalid",
            Failure::Connect(_) => "connect",
        }
    }

    fn from_reqwest(err: &reqwest::Error) -> Failure {
        if err.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Connect(err.to_string())
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Status(status) => write!(f, "answered {status}"),
            Failure::Invalid(what) => write!(f, "invalid answer: {what}"),
            Failure::Connect(what) => write!(f, "no connection: {what}"),
        }
    }
}

/// One HTTP endpoint of the backend, with its client (timeout included).
struct Endpoint {
    url: reqwest::Url,
    /// `None`: the client could not be built (logged once); every call fails.
    client: Option<reqwest::Client>,
}

impl Endpoint {
    fn new(hook: &'static str, url: &str, timeout: Duration) -> Option<Endpoint> {
        let url = match reqwest::Url::parse(url) {
            Ok(url) => url,
            Err(err) => {
                // Config::validate refuses it first; a config that skipped it gets no hook.
                error!(hook, url, error = %err, "backend hook off: invalid url");
                return None;
            }
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A backend hook talks to the backend directly: no proxy from
            // the environment, and a redirect is an answer like any non-2xx.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build();
        let client = match client {
            Ok(client) => Some(client),
            Err(err) => {
                error!(hook, error = %err, "backend hook client not built: every call fails");
                None
            }
        };
        Some(Endpoint { url, client })
    }

    /// POSTs `body` (JSON) and answers the answer's body when 2xx.
    async fn post(&self, body: Vec<u8>) -> Result<Vec<u8>, Failure> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| Failure::Connect("no HTTP client".into()))?;
        let mut response = client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::from_reqwest(&e))?;
        if !response.status().is_success() {
            return Err(Failure::Status(response.status()));
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Failure::from_reqwest(&e))?
        {
            if answer.len() + chunk.len() > ANSWER_MAX {
                return Err(Failure::Invalid(format!("longer than {ANSWER_MAX} bytes")));
            }
            answer.extend_from_slice(&chunk);
        }
        Ok(answer)
    }
}

/// The hooks this logic calls; each is optional.
pub(crate) struct Hooks {
    upstream: Option<Upstream>,
    offline: Option<Offline>,
}

struct Upstream {
    endpoint: Endpoint,
    on_failure: OnFailure,
}

struct Offline {
    config: OfflineHookConfig,
    endpoint: Endpoint,
    pending: Mutex<Pending>,
}

impl Hooks {
    pub(crate) fn from_config(config: &HooksConfig) -> Hooks {
        let upstream = config.upstream.as_ref().and_then(|c| {
            Some(Upstream {
                endpoint: Endpoint::new("upstream", &c.url, c.timeout)?,
                on_failure: c.on_failure,
            })
        });
        let offline = config.offline.as_ref().and_then(|c| {
            Some(Offline {
                endpoint: Endpoint::new("offline", &c.url, c.timeout)?,
                config: c.clone(),
                pending: Mutex::new(Pending::default()),
            })
        });
        Hooks { upstream, offline }
    }
}

// === impl upstream ===

/// What the upstream hook is posted.
#[derive(Serialize)]
struct UpstreamRequest<'a> {
    from: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    id: &'a str,
    op: i32,
    body: &'a RawValue,
}

/// The upstream hook's answer.
#[derive(Deserialize)]
struct Verdict {
    action: Action,
    /// `replace`: the new body (`null` or missing makes the answer invalid).
    #[serde(default)]
    body: Option<Box<RawValue>>,
    /// `reject`: told to the client.
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Accept,
    Reject,
    Replace,
}

fn count_action(action: &'static str) {
    metrics::counter!("rim_logic_hook_actions_total", "action" => action).increment(1);
}

fn count_failure(hook: &'static str, failure: &Failure) {
    metrics::counter!("rim_logic_hook_failures_total", "hook" => hook, "reason" => failure.reason())
        .increment(1);
}

impl Hooks {
    /// The upstream hook's verdict on a message from `from`: `None` to go on
    /// with `body`, `Some` replacement body, or the refusal (403 rejected,
    /// 413 a replacement over `max_body`, 503 a failed call that fails
    /// closed). Without the hook: `None` at once.
    pub(crate) async fn upstream(
        &self,
        from: i64,
        target: &Target,
        id: &str,
        op: i32,
        body: &RawValue,
        max_body: usize,
    ) -> Result<Option<Box<RawValue>>, Refusal> {
        let Some(upstream) = &self.upstream else {
            return Ok(None);
        };
        let request = UpstreamRequest {
            from,
            to: match target {
                Target::Peer(to) => Some(*to),
                _ => None,
            },
            group: match target {
                Target::Group(gid) => Some(*gid),
                _ => None,
            },
            room: match target {
                Target::Room(room) => Some(room.as_str()),
                _ => None,
            },
            id,
            op,
            body,
        };
        let request = serde_json::to_vec(&request)
            .map_err(|e| Refusal::Unavailable(format!("upstream hook request: {e}")))?;
        let started = Instant::now();
        let answer = upstream.endpoint.post(request).await;
        metrics::histogram!("rim_logic_hook_seconds", "hook" => "upstream")
            .record(started.elapsed().as_secs_f64());
        let verdict = answer.and_then(|answer| {
            serde_json::from_slice::<Verdict>(&answer).map_err(|e| Failure::Invalid(e.to_string()))
        });
        let failure = match verdict {
            Ok(Verdict {
                action: Action::Accept,
                ..
            }) => {
                count_action("accept");
                return Ok(None);
            }
            Ok(Verdict {
                action: Action::Reject,
                reason,
                ..
            }) => {
                count_action("reject");
                let reason = reason.filter(|r| !r.is_empty()).map_or_else(
                    || "rejected by the backend".to_owned(),
                    |r| r.chars().take(REASON_MAX).collect(),
                );
                return Err(Refusal::Forbidden(reason));
            }
            Ok(Verdict {
                action: Action::Replace,
                body: Some(body),
                ..
            }) => {
                count_action("replace");
                if body.get().len() > max_body {
                    return Err(Refusal::TooBig(format!(
                        "body: the backend's replacement is {} bytes, at most {max_body} are accepted",
                        body.get().len()
                    )));
                }
                return Ok(Some(body));
            }
            Ok(Verdict {
                action: Action::Replace,
                body: None,
                ..
            }) => Failure::Invalid("replace without a body".into()),
            Err(failure) => failure,
        };
        count_failure("upstream", &failure);
        match upstream.on_failure {
            OnFailure::Accept => {
                count_action("fail_open");
                warn!(mid = from, id, error = %failure, "upstream hook failed: message accepted (on_failure = accept)");
                Ok(None)
            }
            OnFailure::Reject => {
                count_action("fail_closed");
                warn!(mid = from, id, error = %failure, "upstream hook failed: message refused (on_failure = reject)");
                Err(Refusal::Unavailable("backend hook unavailable".into()))
            }
        }
    }
}

// === impl offline ===

/// A stored message the offline hook watches.
#[derive(Debug, Clone)]
struct Watched {
    mid: i64,
    id: MsgId,
    /// Its seq in `mid`'s mailbox, when logic appended it (standalone).
    seq: Option<u32>,
    op: i32,
    from: i64,
    preview: Option<Arc<str>>,
    /// Checks that found neither the mailbox nor the message.
    attempts: u32,
}

/// The watched messages by due time; `keys` makes a message noted twice
/// (a resend of the same id) watched once.
#[derive(Default)]
struct Pending {
    by_due: BTreeMap<(Instant, u64), Watched>,
    keys: HashSet<(i64, MsgId)>,
    next: u64,
}

impl Pending {
    /// Watches `watched` until `due`; `false` when full.
    fn insert(&mut self, due: Instant, watched: Watched) -> bool {
        if self.by_due.len() >= OFFLINE_PENDING_MAX {
            return false;
        }
        if self.keys.insert((watched.mid, watched.id.clone())) {
            self.next += 1;
            self.by_due.insert((due, self.next), watched);
        }
        true
    }

    /// Takes every message due at `now`.
    fn take_due(&mut self, now: Instant) -> Vec<Watched> {
        let mut due = Vec::new();
        while let Some(entry) = self.by_due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let watched = entry.remove();
            self.keys.remove(&(watched.mid, watched.id.clone()));
            due.push(watched);
        }
        due
    }

    fn len(&self) -> usize {
        self.by_due.len()
    }
}

/// One entry of an offline POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Notice {
    mid: i64,
    id: String,
    seq: u32,
    op: i32,
    from: i64,
    #[serde(serialize_with = "shared_str")]
    preview: Option<Arc<str>>,
}

/// A preview shared by a message's mailboxes, as a JSON string (serde's
/// `rc` feature is off).
fn shared_str<S: serde::Serializer>(text: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    text.as_deref().serialize(s)
}

/// The offline POST's body.
#[derive(Serialize)]
struct Notices<'a> {
    messages: &'a [Notice],
}

/// The first [`PREVIEW_CHARS`] characters of what a user reads: for a user's
/// message (`from` ≠ 0, stored in its envelope) the client's `body` (a JSON
/// string unquoted, anything else as JSON text); for a backend's push the
/// body as text. `None` when not UTF-8.
fn preview(from: i64, body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        body: &'a RawValue,
    }
    let text = std::str::from_utf8(body).ok()?;
    let shown: Cow<'_, str> = match serde_json::from_str::<Envelope<'_>>(text) {
        Ok(envelope) if from != 0 => match serde_json::from_str::<String>(envelope.body.get()) {
            Ok(string) => Cow::Owned(string),
            Err(_) => Cow::Borrowed(envelope.body.get()),
        },
        _ => Cow::Borrowed(text),
    };
    Some(shown.chars().take(PREVIEW_CHARS).collect())
}

fn count_dropped(reason: &'static str, count: usize) {
    metrics::counter!("rim_logic_offline_dropped_total", "reason" => reason)
        .increment(count as u64);
}

impl Hooks {
    /// Has the offline hook watch a stored message: `stored` lists its
    /// mailboxes, each with the message's seq there when known. The
    /// sender's own copy (`mid == from`) is not watched. Without the hook,
    /// nothing.
    pub(crate) fn note_stored(
        &self,
        stored: impl IntoIterator<Item = (i64, Option<u32>)>,
        id: &MsgId,
        op: i32,
        from: i64,
        body: &[u8],
    ) {
        let Some(offline) = &self.offline else {
            return;
        };
        let due = Instant::now() + offline.config.after;
        let mut preview_text: Option<Option<Arc<str>>> = None;
        let mut full = 0;
        let mut pending = offline.pending.lock();
        for (mid, seq) in stored {
            if mid == from {
                continue;
            }
            let preview = preview_text
                .get_or_insert_with(|| preview(from, body).map(Arc::from))
                .clone();
            let watched = Watched {
                mid,
                id: id.clone(),
                seq,
                op,
                from,
                preview,
                attempts: 0,
            };
            if !pending.insert(due, watched) {
                full += 1;
            }
        }
        drop(pending);
        if full > 0 {
            count_dropped("full", full);
            warn!(id = %id, mailboxes = full, max = OFFLINE_PENDING_MAX, "offline hook: too many messages pending, these are not watched");
        }
    }
}

/// What the check of one mailbox found.
struct Checked {
    /// Messages no device acknowledged.
    notices: Vec<Notice>,
    /// Messages to check again (the store failed, or the message is not in
    /// the mailbox yet).
    again: Vec<Watched>,
}

/// Checks `mid`'s due messages against its cursor.
async fn check_mailbox(store: &dyn MailboxStore, mid: i64, due: Vec<Watched>) -> Checked {
    let cursor = match store.cursor(mid).await {
        Ok(cursor) => cursor,
        Err(err) => {
            warn!(mid, error = %err, "offline hook: cursor not read; checked again later");
            return Checked {
                notices: Vec::new(),
                again: due,
            };
        }
    };
    // A read mark (op 22) is set by one of the user's devices too.
    let seen = cursor
        .devices
        .values()
        .map(|device| device.ack)
        .max()
        .unwrap_or(0)
        .max(cursor.read);
    let mut seqs = HashMap::new();
    if due.iter().any(|w| w.seq.is_none()) {
        match store
            .read_back(mid, u32::MAX, LOOKUP_LIMIT, LOOKUP_BYTES)
            .await
        {
            Ok(page) => {
                seqs = page
                    .entries
                    .into_iter()
                    .map(|stored| (stored.id, stored.seq))
                    .collect();
            }
            Err(err) => {
                warn!(mid, error = %err, "offline hook: mailbox not read; checked again later");
                return Checked {
                    notices: Vec::new(),
                    again: due,
                };
            }
        }
    }
    let mut checked = Checked {
        notices: Vec::new(),
        again: Vec::new(),
    };
    for watched in due {
        let Some(seq) = watched.seq.or_else(|| seqs.get(&watched.id).copied()) else {
            // Not appended yet (job lags), or already trimmed.
            checked.again.push(watched);
            continue;
        };
        if seq <= seen {
            continue;
        }
        checked.notices.push(Notice {
            mid,
            id: watched.id.as_str().to_owned(),
            seq,
            op: watched.op,
            from: watched.from,
            preview: watched.preview,
        });
    }
    checked
}

impl Offline {
    /// POSTs one batch, trying again with backoff up to `retries` times;
    /// `false` when it was dropped.
    async fn send(&self, batch: &[Notice], shutdown: &CancellationToken) -> bool {
        let body = match serde_json::to_vec(&Notices { messages: batch }) {
            Ok(body) => body,
            Err(err) => {
                error!(error = %err, "offline hook: batch not encoded");
                count_dropped("failed", batch.len());
                return false;
            }
        };
        let mut backoff = RETRY_BACKOFF;
        for attempt in 0..=self.config.retries {
            let started = Instant::now();
            let result = self.endpoint.post(body.clone()).await;
            metrics::histogram!("rim_logic_hook_seconds", "hook" => "offline")
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(_) => {
                    metrics::counter!("rim_logic_offline_notified_total")
                        .increment(batch.len() as u64);
                    debug!(messages = batch.len(), "offline hook: batch sent");
                    return true;
                }
                Err(failure) => {
                    count_failure("offline", &failure);
                    warn!(attempt, messages = batch.len(), error = %failure, "offline hook: batch not sent");
                }
            }
            if attempt < self.config.retries {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
        }
        count_dropped("failed", batch.len());
        error!(
            messages = batch.len(),
            retries = self.config.retries,
            "offline hook: batch dropped"
        );
        false
    }

    /// One round: checks the due messages and posts the unacknowledged ones.
    async fn round(&self, store: &Arc<dyn MailboxStore>, shutdown: &CancellationToken) {
        let now = Instant::now();
        let due = self.pending.lock().take_due(now);
        if due.is_empty() {
            return;
        }
        let mut by_mid: BTreeMap<i64, Vec<Watched>> = BTreeMap::new();
        for watched in due {
            by_mid.entry(watched.mid).or_default().push(watched);
        }
        let checks = futures_util::stream::iter(by_mid)
            .map(|(mid, due)| check_mailbox(store.as_ref(), mid, due))
            .buffer_unordered(CURSOR_READS)
            .collect::<Vec<_>>()
            .await;
        let mut notices = Vec::new();
        let mut again = Vec::new();
        for checked in checks {
            notices.extend(checked.notices);
            again.extend(checked.again);
        }
        self.check_again(again, now);
        for batch in notices.chunks(self.config.batch) {
            if shutdown.is_cancelled() {
                return;
            }
            self.send(batch, shutdown).await;
        }
    }

    /// Watches messages not checked this round until the next round, up to
    /// `retries` times, then gives them up (the store is down, or the
    /// message never reached the mailbox or left it).
    fn check_again(&self, again: Vec<Watched>, now: Instant) {
        let due = now + self.config.interval;
        let mut given_up = 0;
        let mut pending = self.pending.lock();
        for mut watched in again {
            watched.attempts += 1;
            if watched.attempts > self.config.retries || !pending.insert(due, watched) {
                given_up += 1;
            }
        }
        drop(pending);
        if given_up > 0 {
            count_dropped("unchecked", given_up);
            warn!(
                messages = given_up,
                "offline hook: messages not found in their mailboxes (or the store is down); not listed"
            );
        }
    }
}

impl Logic {
    /// The offline hook's watcher: every `interval`, checks the stored
    /// messages that are due and posts the ones no device acknowledged.
    /// Returns at once when the hook is off (or nothing is stored), else
    /// when `shutdown` is cancelled. The binary spawns it beside the HTTP
    /// server.
    pub async fn run_hooks(self: Arc<Logic>, shutdown: CancellationToken) {
        let Some(offline) = &self.hooks.offline else {
            return;
        };
        let Ok(mailbox) = self.mailbox() else {
            warn!("offline hook off: this server stores no messages");
            return;
        };
        let store = Arc::clone(mailbox.store());
        let mut tick = tokio::time::interval(offline.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            offline.round(&store, &shutdown).await;
        }
        let left = offline.pending.lock().len();
        debug!(pending = left, "offline hook stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::post;
    use axum::Router;
    use bytes::Bytes;
    use rim_mailbox::{Ack, Entry, MailboxConfig, MemoryStore};
    use serde_json::{json, Value};

    use super::*;

    fn watched(mid: i64, id: &str, seq: Option<u32>) -> Watched {
        Watched {
            mid,
            id: MsgId::parse(id).unwrap(),
            seq,
            op: 1000,
            from: 9,
            preview: None,
            attempts: 0,
        }
    }

    #[test]
    fn previews_show_what_the_user_reads() {
        let envelope = br#"{"from":9,"to":2,"id":"m","ts":1,"body":"hello there"}"#;
        assert_eq!(preview(9, envelope).as_deref(), Some("hello there"));
        let envelope = br#"{"from":9,"to":2,"id":"m","ts":1,"body":{"text":"hi"}}"#;
        assert_eq!(preview(9, envelope).as_deref(), Some(r#"{"text":"hi"}"#));
        // A backend's push is shown as it is, cut at 100 characters.
        let long = "é".repeat(150);
        assert_eq!(preview(0, long.as_bytes()).unwrap().chars().count(), 100);
        assert_eq!(preview(0, b"{\"body\":1}").as_deref(), Some("{\"body\":1}"));
        assert_eq!(preview(0, &[0xff, 0xfe]), None);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_messages_come_due_in_order_once_each() {
        let mut pending = Pending::default();
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert!(pending.insert(later, watched(1, "b", Some(2))));
        assert!(pending.insert(now, watched(1, "a", Some(1))));
        assert!(pending.insert(now, watched(1, "a", Some(1))), "a resend");
        assert!(pending.insert(now, watched(2, "a", Some(1))));
        assert_eq!(pending.len(), 3);
        let ids: Vec<_> = pending
            .take_due(now)
            .into_iter()
            .map(|w| (w.mid, w.id.to_string()))
            .collect();
        assert_eq!(ids, [(1, "a".to_owned()), (2, "a".to_owned())]);
        assert!(pending.take_due(now).is_empty());
        assert_eq!(pending.take_due(later).len(), 1);
        // Bounded.
        for i in 0..OFFLINE_PENDING_MAX {
            assert!(pending.insert(now, watched(3, &i.to_string(), None)));
        }
        assert!(!pending.insert(now, watched(4, "x", None)));
    }

    async fn store_with(mid: i64, ids: &[&str]) -> MemoryStore {
        let store = MemoryStore::new(MailboxConfig::default());
        let entries = ids
            .iter()
            .map(|id| Entry {
                mid,
                id: MsgId::parse(id).unwrap(),
                op: 1000,
                from: 9,
                ts_ms: 1,
                body: Bytes::from_static(b"x"),
                dedupe: true,
            })
            .collect();
        store.append(entries).await.unwrap();
        store
    }

    #[tokio::test]
    async fn only_messages_no_device_acked_are_listed() {
        let store = store_with(5, &["a", "b", "c"]).await;
        let due = vec![watched(5, "a", Some(1)), watched(5, "c", Some(3))];
        let checked = check_mailbox(&store, 5, due.clone()).await;
        assert_eq!(checked.notices.len(), 2, "no device at all");
        store
            .ack(vec![
                Ack {
                    mid: 5,
                    key: "phone".into(),
                    seq: 1,
                },
                Ack {
                    mid: 5,
                    key: "laptop".into(),
                    seq: 2,
                },
            ])
            .await
            .unwrap();
        let checked = check_mailbox(&store, 5, due).await;
        let listed: Vec<_> = checked.notices.iter().map(|n| (&*n.id, n.seq)).collect();
        assert_eq!(listed, [("c", 3)]);
        store.set_read(5, 3).await.unwrap();
        let checked = check_mailbox(&store, 5, vec![watched(5, "c", Some(3))]).await;
        assert!(checked.notices.is_empty(), "read marks count");
    }

    #[tokio::test]
    async fn unknown_seqs_are_looked_up_and_missing_messages_checked_again() {
        let store = store_with(6, &["a", "b"]).await;
        let due = vec![watched(6, "b", None), watched(6, "later", None)];
        let checked = check_mailbox(&store, 6, due).await;
        assert_eq!(checked.notices.len(), 1);
        assert_eq!(
            (checked.notices[0].id.as_str(), checked.notices[0].seq),
            ("b", 2)
        );
        assert_eq!(checked.again.len(), 1);
        assert_eq!(checked.again[0].id.as_str(), "later");
    }

    /// A backend answering `statuses` in turn (200 after them), counting calls.
    async fn backend(statuses: Vec<u16>) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<Value>>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().route(
            "/offline",
            post({
                let (calls, bodies) = (Arc::clone(&calls), Arc::clone(&bodies));
                move |body: axum::body::Bytes| async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    bodies
                        .lock()
                        .push(serde_json::from_slice::<Value>(&body).unwrap());
                    let status = statuses.get(n).copied().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/offline"), calls, bodies)
    }

    fn offline(url: &str, retries: u32) -> Offline {
        let config = OfflineHookConfig {
            url: url.to_owned(),
            retries,
            ..OfflineHookConfig::default()
        };
        Offline {
            endpoint: Endpoint::new("offline", url, config.timeout).unwrap(),
            config,
            pending: Mutex::new(Pending::default()),
        }
    }

    fn notice(mid: i64) -> Notice {
        Notice {
            mid,
            id: "m".into(),
            seq: 1,
            op: 1000,
            from: 0,
            preview: Some(Arc::from("hi")),
        }
    }

    #[tokio::test]
    async fn failed_batches_are_sent_again_then_dropped() {
        let (url, calls, bodies) = backend(vec![500, 503]).await;
        let hook = offline(&url, 3);
        let shutdown = CancellationToken::new();
        assert!(hook.send(&[notice(1), notice(2)], &shutdown).await);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "two failures, then sent");
        assert_eq!(
            bodies.lock()[2],
            json!({"messages": [
                {"mid": 1, "id": "m", "seq": 1, "op": 1000, "from": 0, "preview": "hi"},
                {"mid": 2, "id": "m", "seq": 1, "op": 1000, "from": 0, "preview": "hi"},
            ]})
        );

        let (url, calls, _) = backend(vec![500; 10]).await;
        let hook = offline(&url, 1);
        assert!(!hook.send(&[notice(1)], &shutdown).await);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "once, then once again");
    }

    #[tokio::test]
    async fn rounds_batch_due_messages() {
        let (url, calls, bodies) = backend(Vec::new()).await;
        let mut hook = offline(&url, 0);
        hook.config.batch = 2;
        hook.config.after = Duration::ZERO;
        let hooks = Hooks {
            upstream: None,
            offline: Some(hook),
        };
        let store: Arc<dyn MailboxStore> = Arc::new(store_with(7, &["a", "b", "c"]).await);
        let id = |id: &str| MsgId::parse(id).unwrap();
        for (seq, name) in [(1, "a"), (2, "b"), (3, "c")] {
            hooks.note_stored([(7, Some(seq)), (9, None)], &id(name), 1000, 9, b"x");
        }
        let offline = hooks.offline.as_ref().unwrap();
        offline.round(&store, &CancellationToken::new()).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "3 messages, batches of 2");
        let sizes: Vec<usize> = bodies
            .lock()
            .iter()
            .map(|b| b["messages"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [2, 1]);
        assert_eq!(
            offline.pending.lock().len(),
            0,
            "the sender's copies are not watched"
        );
    }
}
