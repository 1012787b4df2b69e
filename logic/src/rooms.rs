//! Room membership records: which comets hold members of a room, so that
//! job sends a room push only there (docs/protocol.md, "Rooms").
//!
//! A comet announces a room ([`Logic::announce_rooms`], `rim.room.Rooms/
//! Announce`) before it answers a join to it, and every online report
//! refreshes the records of the rooms it lists (`renew_online`, through
//! [`Logic::record_rooms`]). Both write to the router shards with a
//! lifetime of `online_stale` and answer only once the write succeeded, so
//! a comet never counts on a record that is not there. Nothing here removes
//! a record: they expire.

use std::time::Duration;

use rim_proto::pb::room::{AnnounceReply, AnnounceReq};
use tracing::debug;

use crate::{Logic, LogicError};

/// How long a room membership record lives after a write, in milliseconds
/// (what the comet is told).
fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

impl Logic {
    /// How long a room membership record lives after a write: logic's
    /// `online_stale`.
    pub(crate) fn room_ttl(&self) -> Duration {
        self.config.online_stale
    }

    /// `rim.room.Rooms/Announce`: records that the comet `req.server` holds
    /// (or is about to admit) members of each of `req.rooms`, and answers
    /// with the records' lifetime once the router shards have them.
    pub async fn announce_rooms(&self, req: AnnounceReq) -> Result<AnnounceReply, LogicError> {
        if req.server.is_empty() {
            return Err(LogicError::BadRequest("server: required".into()));
        }
        if req.rooms.iter().any(String::is_empty) {
            return Err(LogicError::BadRequest("rooms: an empty room id".into()));
        }
        let ttl_ms = self
            .record_rooms(&req.server, &req.rooms)
            .await
            .inspect_err(|_| {
                metrics::counter!("rim_logic_room_announces_total", "result" => "error")
                    .increment(1);
            })?;
        metrics::counter!("rim_logic_room_announces_total", "result" => "ok").increment(1);
        debug!(server = %req.server, rooms = req.rooms.len(), "rooms announced");
        Ok(AnnounceReply { ttl_ms })
    }

    /// Writes (or refreshes) the records of `rooms` on comet `server`, for
    /// an announce or an online report; returns their lifetime in
    /// milliseconds once the router shards have them.
    pub(crate) async fn record_rooms(
        &self,
        server: &str,
        rooms: &[String],
    ) -> Result<u64, LogicError> {
        let ttl = self.room_ttl();
        if !rooms.is_empty() {
            self.router.announce_rooms(server, rooms, ttl).await?;
        }
        Ok(ttl_ms(ttl))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rim_proto::pb::logic::OnlineReq;
    use rim_proto::pb::room::AnnounceReq;

    use crate::service::tests::logic_with;
    use crate::{Config, LogicError};

    fn announce(server: &str, rooms: &[&str]) -> AnnounceReq {
        AnnounceReq {
            server: server.into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn an_announce_is_in_the_store_when_it_is_answered() {
        let config = Config {
            online_stale: Duration::from_secs(90),
            ..Config::default()
        };
        let (logic, _rx, _) = logic_with(config, 1);
        let reply = logic
            .announce_rooms(announce("c1", &["live://1", "live://2"]))
            .await
            .unwrap();
        assert_eq!(reply.ttl_ms, 90_000, "the records live online_stale");
        let rooms = [
            "live://1".to_owned(),
            "live://2".to_owned(),
            "live://3".to_owned(),
        ];
        assert_eq!(
            logic.router.room_servers(&rooms).await.unwrap(),
            vec![vec!["c1".to_owned()], vec!["c1".to_owned()], vec![]]
        );
        assert!(matches!(
            logic.announce_rooms(announce("", &["live://1"])).await,
            Err(LogicError::BadRequest(_))
        ));
        assert!(matches!(
            logic.announce_rooms(announce("c1", &[""])).await,
            Err(LogicError::BadRequest(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn online_reports_refresh_the_rooms_they_list() {
        let config = Config {
            online_stale: Duration::from_secs(60),
            ..Config::default()
        };
        let (logic, _rx, _) = logic_with(config, 1);
        let report = |rooms: &[(&str, i32)]| OnlineReq {
            server: "c1".into(),
            room_count: rooms.iter().map(|(r, c)| (r.to_string(), *c)).collect(),
            ..OnlineReq::default()
        };
        let reply = logic
            .renew_online(report(&[("live://1", 2), ("live://0", 0)]))
            .await
            .unwrap();
        assert_eq!(reply.room_ttl_ms, 60_000);
        let rooms = ["live://1".to_owned(), "live://0".to_owned()];
        assert_eq!(
            logic.router.room_servers(&rooms).await.unwrap(),
            vec![vec!["c1".to_owned()], vec![]],
            "a room with no member is not refreshed"
        );
        // Refreshed by the next report, the record outlives the first one's ttl.
        tokio::time::advance(Duration::from_secs(50)).await;
        logic
            .renew_online(report(&[("live://1", 1)]))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(
            logic.router.room_servers(&rooms[..1]).await.unwrap(),
            vec![vec!["c1".to_owned()]]
        );
        // Not listed again: it expires.
        logic.renew_online(report(&[])).await.unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            logic.router.room_servers(&rooms[..1]).await.unwrap(),
            vec![Vec::<String>::new()]
        );
        // A sign-off refreshes nothing and says so.
        let mut bye = report(&[("live://1", 1)]);
        bye.offline = true;
        assert_eq!(logic.renew_online(bye).await.unwrap().room_ttl_ms, 0);
        assert_eq!(
            logic.router.room_servers(&rooms[..1]).await.unwrap(),
            vec![Vec::<String>::new()]
        );
        let _ = logic;
    }

    /// A logic whose only router shard refuses connections.
    fn with_a_dead_router() -> std::sync::Arc<crate::Logic> {
        let dead =
            rim_router::grpc::RemoteStore::new("127.0.0.1:1", Duration::from_millis(300)).unwrap();
        let router =
            rim_router::Router::new(vec![("dead".into(), std::sync::Arc::new(dead))]).unwrap();
        let (queue, _rx) = rim_queue::InProcessQueue::new(4, Duration::from_millis(50));
        crate::Logic::new(Config::default(), router, std::sync::Arc::new(queue))
    }

    #[tokio::test]
    async fn a_store_that_fails_fails_the_announce_and_the_report() {
        let failing = with_a_dead_router();
        let err = failing
            .announce_rooms(announce("c1", &["live://1"]))
            .await
            .unwrap_err();
        assert!(matches!(err, LogicError::Unavailable(_)), "{err:?}");
        let report = OnlineReq {
            server: "c1".into(),
            room_count: [("live://1".to_owned(), 1)].into(),
            ..OnlineReq::default()
        };
        let err = failing.renew_online(report).await.unwrap_err();
        assert!(matches!(err, LogicError::Unavailable(_)), "{err:?}");
        // The report was not stored either: the comet's report goes stale.
        assert!(failing.router.online().await.is_err());
    }
}
