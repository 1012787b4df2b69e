//! Cluster online aggregation: comets report their room counts and
//! connection totals through `renew_online` (goim's `RenewOnline`); logic
//! keeps one cluster-wide aggregate in memory for the `RenewOnline` reply,
//! the online and count endpoints, the instance list and the balancer.
//!
//! The reports themselves live in the session registry (so that every logic
//! node sees every comet); this module owns only the aggregate built from
//! them. Each report also refreshes the room membership records of the
//! rooms it lists (`rooms.rs`), before the report is stored. Reports older than `online_stale` are skipped (their comet is
//! presumed gone). The aggregate is rebuilt on every report and, when a read
//! finds it older than `online_refresh`, before answering.
//!
//! `rim standalone` runs its comet in logic's process: logic is given it as
//! a [`LocalOnline`], reads its live counts in place of its last report, and
//! rebuilds the aggregate on every read, so a client that just connected
//! counts at once (the comet keeps reporting for its cluster room counts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use rim_proto::pb::logic::{OnlineReply, OnlineReq};
use rim_router::ServerOnline;
use tokio::time::Instant;
use tracing::debug;

use crate::{Logic, LogicError};

/// Cluster-wide connection totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnlineTotal {
    /// Distinct client IPs, summed over comets.
    pub ip_count: i64,
    /// Connections, summed over comets.
    pub conn_count: i64,
}

/// One aggregate, built from the fresh reports of one registry read.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Which refresh built it; a slower, older refresh never replaces a newer one.
    generation: u64,
    /// When it was built (tokio clock, so paused-time tests see it).
    built_at: Option<Instant>,
    /// Room key → connections, summed over comets.
    rooms: HashMap<String, i64>,
    total: OnlineTotal,
    /// The fresh reports, ordered by server id.
    servers: Vec<ServerOnline>,
    /// The reports fresh enough (`node_stale`) to offer their comet to clients.
    nodes: Vec<ServerOnline>,
}

/// A comet in logic's own process (`rim standalone`), whose counts logic
/// reads live instead of from its last online report.
pub trait LocalOnline: Send + Sync {
    /// The report the comet would send now (`OnlineReq`, goim's
    /// `RenewOnline` with rim's fields); `None` once the comet is gone.
    fn online(&self) -> Option<OnlineReq>;
}

/// The in-memory aggregate. Readers clone the `Arc` and release the lock at
/// once; a refresh swaps in a new snapshot.
#[derive(Default)]
pub(crate) struct OnlineState {
    current: RwLock<Arc<Snapshot>>,
    generations: AtomicU64,
    /// The comet in this process, if any ([`Logic::set_local_online`]).
    local: OnceLock<Arc<dyn LocalOnline>>,
}

impl std::fmt::Debug for OnlineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlineState")
            .field("current", &self.current)
            .field("local", &self.local.get().is_some())
            .finish_non_exhaustive()
    }
}

fn saturating_i32(count: i64) -> i32 {
    i32::try_from(count.max(0)).unwrap_or(i32::MAX)
}

/// The stored form of a comet's report, dated `updated`.
fn server_online(req: OnlineReq, updated: i64) -> ServerOnline {
    ServerOnline {
        room_count: req
            .room_count
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .collect(),
        conn_count: req.conn_count.max(0),
        ip_count: req.ip_count.max(0),
        addrs: req.addrs,
        weight: req.weight,
        grpc_addr: req.grpc_addr,
        updated,
        server: req.server,
    }
}

impl Logic {
    /// Makes the online answers read `comet`'s live counts (`rim
    /// standalone`: the comet runs in this process) instead of waiting for
    /// its reports. Set once; a second call is ignored.
    pub fn set_local_online(&self, comet: Arc<dyn LocalOnline>) {
        if self.online.local.set(comet).is_err() {
            tracing::warn!(
                "a local comet for the online counts was set already; keeping the first"
            );
        }
    }

    /// Stores a comet's online report (goim `RenewOnline`) and answers with
    /// the cluster-wide room counts.
    pub async fn renew_online(&self, req: OnlineReq) -> Result<OnlineReply, LogicError> {
        if req.server.is_empty() {
            return Err(LogicError::BadRequest("server: required".into()));
        }
        if req.offline {
            // A comet signing off after closing its connections (each of
            // which removed its own session): its report is replaced by an
            // empty one dated 0, stale for every reader, until it expires.
            let gone = ServerOnline {
                server: req.server,
                updated: 0,
                ..ServerOnline::default()
            };
            self.router.put_online(&gone).await?;
            tracing::info!(server = %gone.server, "comet signed off");
            self.refresh_online().await?;
            return Ok(OnlineReply::default());
        }
        let report = server_online(req, self.now());
        // The rooms first: a report stored while its rooms' records were
        // not refreshed would keep job from treating this comet as
        // unreported (and so sending it every room push) while those
        // records expire. A failed refresh fails the report.
        let rooms: Vec<String> = report.room_count.keys().cloned().collect();
        let room_ttl_ms = self.record_rooms(&report.server, &rooms).await?;
        self.router.put_online(&report).await?;
        metrics::counter!("rim_logic_online_reports_total").increment(1);
        debug!(
            server = %report.server,
            rooms = report.room_count.len(),
            conns = report.conn_count,
            "online report stored"
        );
        let snapshot = self.refresh_online().await?;
        Ok(OnlineReply {
            all_room_count: snapshot
                .rooms
                .iter()
                .map(|(room, count)| (room.clone(), saturating_i32(*count)))
                .collect(),
            room_ttl_ms,
        })
    }

    /// The most populated rooms of type `room_type` (rooms keyed exactly
    /// `room_type://id`), as (id, count), largest first, at most `limit`.
    pub async fn online_top(
        &self,
        room_type: &str,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, LogicError> {
        let snapshot = self.online_snapshot().await?;
        let prefix = format!("{room_type}://");
        let mut top: Vec<(String, i64)> = snapshot
            .rooms
            .iter()
            .filter_map(|(room, count)| {
                room.strip_prefix(&prefix).map(|id| (id.to_owned(), *count))
            })
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(limit);
        Ok(top)
    }

    /// The connections in each room `room_type://id` of `ids`, as (id, count);
    /// 0 for rooms nobody is in.
    pub async fn online_rooms(
        &self,
        room_type: &str,
        ids: &[String],
    ) -> Result<Vec<(String, i64)>, LogicError> {
        let snapshot = self.online_snapshot().await?;
        Ok(ids
            .iter()
            .map(|id| {
                let count = snapshot
                    .rooms
                    .get(&format!("{room_type}://{id}"))
                    .copied()
                    .unwrap_or(0);
                (id.clone(), count)
            })
            .collect())
    }

    /// Every non-empty room key with its connections, ordered by room.
    pub async fn online_room_counts(&self) -> Result<Vec<(String, i64)>, LogicError> {
        let snapshot = self.online_snapshot().await?;
        let mut rooms: Vec<(String, i64)> = snapshot
            .rooms
            .iter()
            .map(|(r, c)| (r.clone(), *c))
            .collect();
        rooms.sort();
        Ok(rooms)
    }

    /// Cluster-wide connection and IP totals.
    pub async fn online_total(&self) -> Result<OnlineTotal, LogicError> {
        Ok(self.online_snapshot().await?.total)
    }

    /// The fresh online report of every comet, ordered by server id.
    pub async fn online_servers(&self) -> Result<Vec<ServerOnline>, LogicError> {
        Ok(self.online_snapshot().await?.servers.clone())
    }

    /// The comets offered to clients (report within `node_stale`), ordered
    /// by server id.
    pub async fn online_nodes(&self) -> Result<Vec<ServerOnline>, LogicError> {
        Ok(self.online_snapshot().await?.nodes.clone())
    }

    /// Forgets a comet (goim v1 `DelServer`): its report and every session
    /// on it. Returns how many sessions were removed.
    pub async fn del_server(&self, server: &str) -> Result<u64, LogicError> {
        if server.is_empty() {
            return Err(LogicError::BadRequest("server: required".into()));
        }
        let removed = self.router.del_server(server).await?;
        tracing::info!(server = %server, removed, "server removed");
        self.refresh_online().await?;
        Ok(removed)
    }

    /// The aggregate, rebuilt first if it is older than `online_refresh`
    /// (always with a local comet: its counts are live).
    async fn online_snapshot(&self) -> Result<Arc<Snapshot>, LogicError> {
        if self.online.local.get().is_some() {
            return self.refresh_online().await;
        }
        let current = self.online.current.read().clone();
        match current.built_at {
            Some(at) if at.elapsed() < self.config.online_refresh => Ok(current),
            _ => self.refresh_online().await,
        }
    }

    /// Rebuilds the aggregate when it is older than `online_refresh`.
    pub(crate) async fn ensure_online_fresh(&self) -> Result<(), LogicError> {
        self.online_snapshot().await.map(|_| ())
    }

    /// Rebuilds the aggregate from the registry's reports, skipping stale ones.
    async fn refresh_online(&self) -> Result<Arc<Snapshot>, LogicError> {
        let generation = self.online.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reports = self.router.online().await?;
        let now = self.now();
        if let Some(live) = self.online.local.get().and_then(|local| local.online()) {
            let live = server_online(live, now);
            reports.retain(|report| report.server != live.server);
            reports.push(live);
        }
        let stale = i64::try_from(self.config.online_stale.as_secs()).unwrap_or(i64::MAX);
        let node_stale = i64::try_from(self.config.node_stale.as_secs()).unwrap_or(i64::MAX);
        let mut snapshot = Snapshot {
            generation,
            built_at: Some(Instant::now()),
            ..Snapshot::default()
        };
        for report in reports {
            if now.saturating_sub(report.updated) > stale {
                debug!(server = %report.server, updated = report.updated, "skipping stale online report");
                continue;
            }
            for (room, count) in &report.room_count {
                *snapshot.rooms.entry(room.clone()).or_default() += i64::from(*count);
            }
            snapshot.total.conn_count = snapshot.total.conn_count.saturating_add(report.conn_count);
            snapshot.total.ip_count = snapshot.total.ip_count.saturating_add(report.ip_count);
            if now.saturating_sub(report.updated) <= node_stale {
                snapshot.nodes.push(report.clone());
            }
            snapshot.servers.push(report);
        }
        snapshot.servers.sort_by(|a, b| a.server.cmp(&b.server));
        snapshot.nodes.sort_by(|a, b| a.server.cmp(&b.server));

        let snapshot = Arc::new(snapshot);
        let mut current = self.online.current.write();
        if current.generation > generation {
            // A refresh that started later already stored a newer view.
            return Ok(current.clone());
        }
        metrics::gauge!("rim_logic_online_servers").set(snapshot.servers.len() as f64);
        metrics::gauge!("rim_logic_online_rooms").set(snapshot.rooms.len() as f64);
        metrics::gauge!("rim_logic_online_connections").set(snapshot.total.conn_count as f64);
        metrics::gauge!("rim_logic_online_ips").set(snapshot.total.ip_count as f64);
        // Under the snapshot lock so that the balancer follows the same order
        // of refreshes; the balancer lock is never held while taking this one.
        self.balancer.lock().update(&snapshot.nodes);
        *current = snapshot.clone();
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::service::tests::{logic, logic_with};
    use crate::Config;

    fn report(server: &str, rooms: &[(&str, i32)], conns: i64, ips: i64) -> OnlineReq {
        OnlineReq {
            server: server.into(),
            room_count: rooms.iter().map(|(r, c)| (r.to_string(), *c)).collect(),
            conn_count: conns,
            ip_count: ips,
            addrs: vec![],
            weight: 1,
            grpc_addr: String::new(),
            offline: false,
        }
    }

    struct Live(parking_lot::Mutex<Option<OnlineReq>>);

    impl LocalOnline for Live {
        fn online(&self) -> Option<OnlineReq> {
            self.0.lock().clone()
        }
    }

    #[tokio::test]
    async fn a_local_comet_is_read_live() {
        let (logic, _rx, _) = logic();
        // Its last report (from before the changes below), and another comet's.
        logic
            .renew_online(report("local", &[("live://1", 1)], 1, 1))
            .await
            .unwrap();
        logic
            .renew_online(report("other", &[("live://1", 2)], 2, 2))
            .await
            .unwrap();
        let live = Arc::new(Live(parking_lot::Mutex::new(Some(report(
            "local",
            &[("live://1", 5), ("live://9", 1)],
            6,
            3,
        )))));
        logic.set_local_online(live.clone());
        // No report came since, and the aggregate is fresh: still live.
        assert_eq!(
            logic.online_total().await.unwrap(),
            OnlineTotal {
                ip_count: 5,
                conn_count: 8
            }
        );
        assert_eq!(
            logic.online_room_counts().await.unwrap(),
            vec![("live://1".to_owned(), 7), ("live://9".to_owned(), 1)]
        );
        *live.0.lock() = Some(report("local", &[], 0, 0));
        assert_eq!(logic.online_total().await.unwrap().conn_count, 2);
        assert_eq!(
            logic.online_room_counts().await.unwrap(),
            vec![("live://1".to_owned(), 2)]
        );
        // A comet that is gone leaves its stored report.
        *live.0.lock() = None;
        assert_eq!(logic.online_total().await.unwrap().conn_count, 3);
    }

    #[tokio::test]
    async fn aggregates_rooms_across_servers() {
        let (logic, _rx, _) = logic();
        let reply = logic
            .renew_online(report("c1", &[("live://1", 3), ("live://2", 1)], 10, 8))
            .await
            .unwrap();
        assert_eq!(reply.all_room_count.len(), 2);
        let reply = logic
            .renew_online(report(
                "c2",
                &[("live://1", 4), ("chat://9", 2), ("live://0", 0)],
                7,
                7,
            ))
            .await
            .unwrap();
        let expected: HashMap<String, i32> = [("live://1", 7), ("live://2", 1), ("chat://9", 2)]
            .iter()
            .map(|(r, c)| (r.to_string(), *c))
            .collect();
        assert_eq!(reply.all_room_count, expected);
        assert_eq!(
            logic.online_total().await.unwrap(),
            OnlineTotal {
                ip_count: 15,
                conn_count: 17
            }
        );
        // A new report of c1 replaces its old one.
        let reply = logic
            .renew_online(report("c1", &[("live://2", 5)], 5, 5))
            .await
            .unwrap();
        assert_eq!(reply.all_room_count.get("live://1"), Some(&4));
        assert_eq!(reply.all_room_count.get("live://2"), Some(&5));
        let servers: Vec<_> = logic
            .online_servers()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.server)
            .collect();
        assert_eq!(servers, vec!["c1".to_string(), "c2".to_string()]);
    }

    #[tokio::test]
    async fn stale_reports_are_skipped() {
        let (logic, _rx, clock) = logic();
        logic
            .renew_online(report("old", &[("live://1", 3)], 3, 3))
            .await
            .unwrap();
        clock.set(1_700_000_000 + 300);
        // Exactly online_stale old: still counted.
        let reply = logic
            .renew_online(report("new", &[("live://1", 1)], 1, 1))
            .await
            .unwrap();
        assert_eq!(reply.all_room_count.get("live://1"), Some(&4));
        clock.set(1_700_000_000 + 301);
        let reply = logic
            .renew_online(report("new", &[("live://1", 1)], 1, 1))
            .await
            .unwrap();
        assert_eq!(reply.all_room_count.get("live://1"), Some(&1));
        assert_eq!(logic.online_total().await.unwrap().conn_count, 1);
        assert_eq!(logic.online_servers().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn comets_without_a_recent_report_are_not_offered_to_clients() {
        let (logic, _rx, clock) = logic();
        logic
            .renew_online(report("quiet", &[("live://1", 3)], 3, 3))
            .await
            .unwrap();
        // Exactly node_stale (30 s) old: still offered.
        clock.set(1_700_000_000 + 30);
        logic
            .renew_online(report("live", &[("live://1", 1)], 1, 1))
            .await
            .unwrap();
        let names = |servers: Vec<ServerOnline>| -> Vec<String> {
            servers.into_iter().map(|s| s.server).collect()
        };
        assert_eq!(
            names(logic.online_nodes().await.unwrap()),
            ["live", "quiet"]
        );
        clock.set(1_700_000_000 + 31);
        logic
            .renew_online(report("live", &[("live://1", 1)], 1, 1))
            .await
            .unwrap();
        // No longer offered, by any nodes API ...
        assert_eq!(names(logic.online_nodes().await.unwrap()), ["live"]);
        let reply = logic
            .nodes(rim_proto::pb::logic::NodesReq {
                platform: "web".into(),
                client_ip: String::new(),
            })
            .await
            .unwrap();
        assert!(
            reply.nodes.iter().all(|n| !n.starts_with("quiet")),
            "{:?}",
            reply.nodes
        );
        // ... but its rooms count until online_stale.
        assert_eq!(
            names(logic.online_servers().await.unwrap()),
            ["live", "quiet"]
        );
        assert_eq!(logic.online_total().await.unwrap().conn_count, 4);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_refresh_a_snapshot_older_than_online_refresh() {
        let (logic, _rx, clock) = logic_with(Config::default(), 4);
        logic
            .renew_online(report("c1", &[("live://1", 3)], 3, 3))
            .await
            .unwrap();
        assert_eq!(logic.online_total().await.unwrap().conn_count, 3);
        // c1 goes silent; without a refresh the aggregate still shows it.
        clock.set(1_700_000_000 + 400);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(logic.online_total().await.unwrap().conn_count, 3);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(logic.online_total().await.unwrap().conn_count, 0);
        assert!(logic.online_top("live", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn top_matches_the_exact_type_not_a_prefix() {
        let (logic, _rx, _) = logic();
        logic
            .renew_online(report(
                "c1",
                &[
                    ("live://1", 3),
                    ("live://2", 9),
                    ("liveshow://3", 50),
                    ("live://3", 3),
                    ("chat://4", 7),
                ],
                0,
                0,
            ))
            .await
            .unwrap();
        assert_eq!(
            logic.online_top("live", 10).await.unwrap(),
            vec![
                ("2".to_string(), 9),
                ("1".to_string(), 3),
                ("3".to_string(), 3)
            ]
        );
        assert_eq!(
            logic.online_top("live", 1).await.unwrap(),
            vec![("2".to_string(), 9)]
        );
        assert!(logic.online_top("nope", 5).await.unwrap().is_empty());
        assert_eq!(
            logic
                .online_rooms("live", &["1".into(), "404".into()])
                .await
                .unwrap(),
            vec![("1".to_string(), 3), ("404".to_string(), 0)]
        );
    }

    #[tokio::test]
    async fn a_comet_signing_off_drops_its_report_at_once() {
        let (logic, _rx, _) = logic();
        for server in ["c1", "c2"] {
            logic
                .renew_online(report(server, &[("live://1", 1)], 1, 1))
                .await
                .unwrap();
        }
        let mut bye = report("c1", &[], 0, 0);
        bye.offline = true;
        let reply = logic.renew_online(bye).await.unwrap();
        assert!(reply.all_room_count.is_empty());
        let servers = logic.online_servers().await.unwrap();
        let names: Vec<&str> = servers.iter().map(|s| s.server.as_str()).collect();
        assert_eq!(names, ["c2"], "c1 left; c2 stays");
        assert_eq!(logic.online_total().await.unwrap().conn_count, 1);
    }

    #[tokio::test]
    async fn del_server_drops_its_sessions_and_report() {
        let (logic, _rx, _) = logic();
        logic
            .renew_online(report("c1", &[("live://1", 1)], 1, 1))
            .await
            .unwrap();
        logic.router.add_mapping(1, "k1", "c1").await.unwrap();
        assert_eq!(logic.del_server("c1").await.unwrap(), 1);
        assert!(logic.online_servers().await.unwrap().is_empty());
        assert!(matches!(
            logic.del_server("").await,
            Err(LogicError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn report_without_server_is_refused() {
        let (logic, _rx, _) = logic();
        assert!(matches!(
            logic.renew_online(report("", &[], 0, 0)).await,
            Err(LogicError::BadRequest(_))
        ));
    }
}
