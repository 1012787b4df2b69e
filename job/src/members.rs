//! Which comets a room batch goes to ([`RoomTargets`]): with `members`, the
//! comets the router shards record as holding members of the room, plus
//! every comet job cannot rule out.
//!
//! The rule, and why it keeps every join answered before a push was
//! accepted (docs/protocol.md, "Rooms"):
//! - a comet announces a room to logic, which records it in the router
//!   shards, before it answers a join to it; every online report refreshes
//!   the records of the rooms it lists; nothing removes a record early;
//! - this job looks the room up for every batch, after taking the push from
//!   the queue (which logic filled before it answered the push's HTTP
//!   request), so it sees every record written before that answer; no
//!   lookup is cached;
//! - a comet whose online report is stale (or missing) may have records
//!   that lapsed while it lives on: it gets every batch, as does every
//!   comet when the lookup fails or runs out of time.
//!
//! With at most one comet there is nothing to choose: no lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;
use tracing::warn;

use crate::config::{RoomConfig, RoomTargets};
use crate::metrics;
use crate::routine::CometHandle;

/// The least time between two warnings of failed lookups.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where job finds which comets hold members of a room: the router shards'
/// room membership records ([`rim_router::Router::room_servers`]).
#[async_trait]
pub trait RoomDirectory: Send + Sync + 'static {
    /// The server ids of the comets on record as holding members of `room`.
    async fn room_servers(&self, room: &str) -> Result<Vec<String>, String>;
}

#[async_trait]
impl RoomDirectory for rim_router::Router {
    async fn room_servers(&self, room: &str) -> Result<Vec<String>, String> {
        let mut servers = rim_router::Router::room_servers(self, &[room.to_owned()])
            .await
            .map_err(|e| e.to_string())?;
        servers
            .pop()
            .ok_or_else(|| "no answer for the room".to_owned())
    }
}

/// The room target choice of one job.
pub(crate) struct Members {
    targets: RoomTargets,
    lookup_timeout: Duration,
    directory: OnceLock<Arc<dyn RoomDirectory>>,
    /// Server id -> until when its online report counts as fresh, as of the
    /// last discovery round that read the reports.
    fresh_until: RwLock<HashMap<String, Instant>>,
    /// When a failed lookup was last logged, and how many since.
    last_failure_log: Mutex<Option<Instant>>,
    unlogged_failures: AtomicU64,
}

impl Members {
    pub(crate) fn new(config: &RoomConfig) -> Members {
        Members {
            targets: config.targets,
            lookup_timeout: config.lookup_timeout,
            directory: OnceLock::new(),
            fresh_until: RwLock::new(HashMap::new()),
            last_failure_log: Mutex::new(None),
            unlogged_failures: AtomicU64::new(0),
        }
    }

    /// Sets the directory; once (a second one is ignored, and logged).
    pub(crate) fn set_directory(&self, directory: Arc<dyn RoomDirectory>) {
        if self.directory.set(directory).is_err() {
            warn!("room directory already set; keeping the first");
        }
    }

    /// Replaces what is known of the comets' online reports: `reports` are
    /// (server id, `updated` in Unix seconds), a report counting as fresh
    /// for `comet_ttl` after its `updated`. A comet not listed counts as
    /// unreported.
    pub(crate) fn note_reports<'a>(
        &self,
        reports: impl IntoIterator<Item = (&'a str, i64)>,
        comet_ttl: Duration,
    ) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i128::try_from(d.as_millis()).unwrap_or(i128::MAX));
        let ttl_ms = i128::try_from(comet_ttl.as_millis()).unwrap_or(i128::MAX);
        let now = Instant::now();
        let fresh: HashMap<String, Instant> = reports
            .into_iter()
            .filter_map(|(server, updated)| {
                // `updated` is whole seconds, rounded down: the report looks
                // a little older than it is, never younger.
                let left_ms = i128::from(updated) * 1000 + ttl_ms - now_ms;
                let left = Duration::from_millis(u64::try_from(left_ms).ok()?);
                Some((server.to_owned(), now + left))
            })
            .collect();
        *self.fresh_until.write() = fresh;
    }

    /// Whether `server`'s online report counts as fresh now.
    fn reported(&self, fresh: &HashMap<String, Instant>, server: &str, now: Instant) -> bool {
        fresh.get(server).is_some_and(|until| *until > now)
    }

    /// The comets of `all` that room `room`'s batch goes to.
    pub(crate) async fn targets(
        &self,
        room: &str,
        all: &[Arc<CometHandle>],
    ) -> Vec<Arc<CometHandle>> {
        if self.targets == RoomTargets::All || all.len() <= 1 {
            return all.to_vec();
        }
        let Some(directory) = self.directory.get() else {
            return all.to_vec();
        };
        let looked = tokio::time::timeout(self.lookup_timeout, directory.room_servers(room)).await;
        let servers = match looked {
            Ok(Ok(servers)) => servers,
            Ok(Err(e)) => {
                self.failed(room, &e);
                return all.to_vec();
            }
            Err(_) => {
                let e = format!("timed out after {:?}", self.lookup_timeout);
                self.failed(room, &e);
                return all.to_vec();
            }
        };
        metrics::room_lookup("ok");
        let now = Instant::now();
        let fresh = self.fresh_until.read();
        all.iter()
            .filter(|comet| {
                let server: &str = comet.server();
                servers.iter().any(|s| s == server) || !self.reported(&fresh, server, now)
            })
            .cloned()
            .collect()
    }

    /// Counts a failed lookup; warns at most every [`FAILURE_LOG_INTERVAL`].
    fn failed(&self, room: &str, error: &str) {
        metrics::room_lookup("failed");
        let now = Instant::now();
        let mut last = self.last_failure_log.lock();
        if last.is_some_and(|at| now < at + FAILURE_LOG_INTERVAL) {
            self.unlogged_failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *last = Some(now);
        let since = self.unlogged_failures.swap(0, Ordering::Relaxed);
        warn!(
            room,
            error,
            unlogged_before = since,
            "room membership lookup failed; the batch goes to every comet"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use rim_testkit::metrics::TestRecorder;

    use super::*;
    use crate::testing::{room, FakeComet};
    use crate::{Config, Job, RoomConfig};

    /// A directory that answers a fixed result, or never.
    struct Fixed {
        answer: Option<Result<Vec<String>, String>>,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl RoomDirectory for Fixed {
        async fn room_servers(&self, _room: &str) -> Result<Vec<String>, String> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            match &self.answer {
                Some(answer) => answer.clone(),
                None => std::future::pending().await,
            }
        }
    }

    fn fixed(answer: Option<Result<Vec<String>, String>>) -> Arc<Fixed> {
        Arc::new(Fixed {
            answer,
            lookups: AtomicUsize::new(0),
        })
    }

    const TTL: Duration = Duration::from_secs(30);

    fn now_secs() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// A job on comets `a`, `b`, `c` (all reporting now), with `targets`.
    fn three(targets: RoomTargets) -> (Arc<Job>, [Arc<FakeComet>; 3]) {
        let job = Job::new(Config {
            room: RoomConfig {
                targets,
                ..RoomConfig::default()
            },
            ..Config::default()
        });
        let comets = [
            FakeComet::accepting(),
            FakeComet::accepting(),
            FakeComet::accepting(),
        ];
        for (name, comet) in ["a", "b", "c"].iter().zip(&comets) {
            job.add_comet(name, comet.clone());
        }
        job.note_reports(
            [("a", now_secs()), ("b", now_secs()), ("c", now_secs())],
            TTL,
        );
        (job, comets)
    }

    fn calls(comets: &[Arc<FakeComet>; 3]) -> [usize; 3] {
        [
            comets[0].calls().len(),
            comets[1].calls().len(),
            comets[2].calls().len(),
        ]
    }

    /// The real router's memory shard, with `servers` holding `room`.
    async fn router_with(room: &str, servers: &[&str]) -> Arc<rim_router::Router> {
        let router = rim_router::Router::memory(&rim_router::Config::default());
        for server in servers {
            router
                .announce_rooms(server, &[room.to_owned()], Duration::from_secs(60))
                .await
                .unwrap();
        }
        Arc::new(router)
    }

    #[tokio::test]
    async fn a_batch_goes_only_to_the_comets_holding_members() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let (job, comets) = three(RoomTargets::Members);
        let router = router_with("live://1", &["a", "c"]).await;
        job.set_room_directory(router.clone());
        let delivery = job.dispatch(room("live://1", 1000, "m1")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(calls(&comets), [1, 0, 1]);
        // A room nobody is in: no call at all, and the push is done.
        let delivery = job.dispatch(room("live://9", 1000, "m2")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(calls(&comets), [1, 0, 1]);
        // b announces live://1: the next batch finds it (no cache).
        router
            .announce_rooms("b", &["live://1".to_owned()], Duration::from_secs(60))
            .await
            .unwrap();
        let delivery = job.dispatch(room("live://1", 1000, "m3")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(calls(&comets), [2, 1, 2]);
        assert_eq!(
            recorder.samples("rim_job_room_batch_comets"),
            vec![2.0, 0.0, 3.0]
        );
        assert_eq!(recorder.counter("rim_job_room_lookups_total{result=ok}"), 3);
    }

    #[tokio::test]
    async fn comets_with_a_stale_or_missing_report_get_every_batch() {
        let (job, comets) = three(RoomTargets::Members);
        job.set_room_directory(router_with("live://1", &["a"]).await);
        // b's report is older than comet_ttl; c has none at all.
        job.note_reports(
            [
                ("a", now_secs()),
                ("b", now_secs() - TTL.as_secs() as i64 - 2),
            ],
            TTL,
        );
        let delivery = job.dispatch(room("live://1", 1000, "m")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(calls(&comets), [1, 1, 1]);
        // Once reported afresh, b and c no longer get the room's batches.
        job.note_reports(
            [("a", now_secs()), ("b", now_secs()), ("c", now_secs())],
            TTL,
        );
        let delivery = job.dispatch(room("live://1", 1000, "m")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(calls(&comets), [2, 1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_report_goes_stale_with_time_without_a_new_discovery_round() {
        let (job, comets) = three(RoomTargets::Members);
        job.set_room_directory(router_with("live://1", &["a"]).await);
        let delivery = job.dispatch(room("live://1", 1000, "m")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(calls(&comets), [1, 0, 0]);
        // Discovery stops reading reports (the routers are down): after
        // comet_ttl every comet counts as unreported.
        tokio::time::advance(TTL + Duration::from_secs(1)).await;
        let delivery = job.dispatch(room("live://1", 1000, "m")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(calls(&comets), [2, 1, 1]);
    }

    #[tokio::test]
    async fn a_failed_lookup_sends_the_batch_to_every_comet() {
        let recorder = TestRecorder::default();
        let _guard = ::metrics::set_default_local_recorder(&recorder);
        let (job, comets) = three(RoomTargets::Members);
        let directory = fixed(Some(Err("router down".into())));
        job.set_room_directory(directory.clone());
        for _ in 0..3 {
            let delivery = job.dispatch(room("live://1", 1000, "m")).await.unwrap();
            assert_eq!(delivery.await, Ok(()));
        }
        assert_eq!(calls(&comets), [3, 3, 3]);
        assert_eq!(directory.lookups.load(Ordering::SeqCst), 3);
        assert_eq!(
            recorder.counter("rim_job_room_lookups_total{result=failed}"),
            3
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_does_not_answer_in_time_sends_to_every_comet() {
        let (job, comets) = three(RoomTargets::Members);
        job.set_room_directory(fixed(None));
        let start = Instant::now();
        let delivery = job.dispatch(room("live://1", 1000, "m")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(start.elapsed(), RoomConfig::default().lookup_timeout);
        assert_eq!(calls(&comets), [1, 1, 1]);
    }

    #[tokio::test]
    async fn targets_all_and_a_single_comet_need_no_lookup() {
        let (job, comets) = three(RoomTargets::All);
        let directory = fixed(Some(Ok(vec!["a".into()])));
        job.set_room_directory(directory.clone());
        let delivery = job.dispatch(room("live://1", 1000, "m")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(calls(&comets), [1, 1, 1]);
        assert_eq!(directory.lookups.load(Ordering::SeqCst), 0);

        // One comet (standalone): sent without asking, even if not on record.
        let job = Job::new(Config::default());
        let only = FakeComet::accepting();
        job.add_comet("only", only.clone());
        job.note_reports([("only", now_secs())], TTL);
        let directory = fixed(Some(Ok(vec![])));
        job.set_room_directory(directory.clone());
        let delivery = job.dispatch(room("live://1", 1000, "m")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(only.calls().len(), 1);
        assert_eq!(directory.lookups.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn without_a_directory_every_comet_gets_every_batch() {
        let (job, comets) = three(RoomTargets::Members);
        let delivery = job.dispatch(room("live://1", 1000, "m")).await.unwrap();
        assert_eq!(delivery.await, Ok(()));
        assert_eq!(calls(&comets), [1, 1, 1]);
    }
}
