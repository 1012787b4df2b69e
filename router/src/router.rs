//! [`Router`]: the sharded session registry that logic uses. A user's hash
//! (`mid`) lives on the shard the ring picks for the mid, a connection's key
//! record on the shard picked for the key, a comet's online report on the
//! shard picked for its server id, a room's membership records on the shard
//! picked for the room.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;

use crate::{Config, MemoryStore, Ring, ServerOnline, SessionStore, StoreError};

/// The sharded session registry.
#[derive(Clone)]
pub struct Router {
    ring: Ring,
    shards: HashMap<String, Arc<dyn SessionStore>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("shards", &self.ring.shards())
            .finish()
    }
}

impl Router {
    /// A registry over named shards.
    pub fn new(shards: Vec<(String, Arc<dyn SessionStore>)>) -> Result<Router, StoreError> {
        if shards.is_empty() {
            return Err(StoreError::NoShards);
        }
        let ring = Ring::new(shards.iter().map(|(name, _)| name.clone()));
        Ok(Router {
            ring,
            shards: shards.into_iter().collect(),
        })
    }

    /// A registry with one in-memory shard (standalone mode).
    pub fn memory(config: &Config) -> Router {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(config.expire));
        Router {
            ring: Ring::new(["memory"]),
            shards: HashMap::from([("memory".to_owned(), store)]),
        }
    }

    /// The shard names.
    pub fn shard_names(&self) -> &[String] {
        self.ring.shards()
    }

    fn shard<T: std::hash::Hash>(&self, item: &T) -> &Arc<dyn SessionStore> {
        // Invariant: `new` refuses an empty shard list and the ring holds
        // exactly the names of `shards`, so both lookups succeed.
        let name = self.ring.shard_of(item).expect("ring is never empty");
        &self.shards[name]
    }

    /// Records a new session: `key` of user `mid` (0: anonymous) on `server`.
    pub async fn add_mapping(&self, mid: i64, key: &str, server: &str) -> Result<(), StoreError> {
        if mid != 0 {
            self.shard(&mid).add_mid_key(mid, key, server).await?;
        }
        self.shard(&key).set_key(key, server).await
    }

    /// Refreshes a session's TTLs, re-adding whatever expired meanwhile.
    /// Returns whether the key record still existed.
    pub async fn expire_mapping(
        &self,
        mid: i64,
        key: &str,
        server: &str,
    ) -> Result<bool, StoreError> {
        let key_alive = self.shard(&key).expire_key(key).await?;
        let mid_alive = mid == 0 || self.shard(&mid).expire_mid(mid).await?;
        if !key_alive || !mid_alive {
            self.add_mapping(mid, key, server).await?;
        }
        Ok(key_alive)
    }

    /// Removes a session if it still points to `server`; returns whether the
    /// key record existed (goim `DisconnectReply.has`).
    pub async fn del_mapping(&self, mid: i64, key: &str, server: &str) -> Result<bool, StoreError> {
        if mid != 0 {
            self.shard(&mid).del_mid_key(mid, key, server).await?;
        }
        self.shard(&key).del_key(key, server).await
    }

    /// The server of each key, in order (`None` for unknown keys).
    pub async fn servers_by_keys(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, StoreError> {
        if self.shards.len() == 1 {
            return self.shard(&0i64).get_keys(keys).await;
        }
        let groups = self.by_shard(keys, |key| self.key_shard(key));
        let mut out = vec![None; keys.len()];
        for (name, (positions, group_keys)) in groups {
            let servers = self.shards[name].get_keys(&group_keys).await?;
            for (pos, server) in positions.into_iter().zip(servers) {
                out[pos] = server;
            }
        }
        Ok(out)
    }

    /// Every (key, server) of the given users.
    pub async fn keys_by_mids(&self, mids: &[i64]) -> Result<Vec<(String, String)>, StoreError> {
        let mut groups: HashMap<&str, Vec<i64>> = HashMap::new();
        for mid in mids {
            let name = self.ring.shard_of(mid).expect("ring is never empty");
            groups.entry(name).or_default().push(*mid);
        }
        let mut out = Vec::new();
        for (name, group) in groups {
            out.extend(self.shards[name].get_mids(&group).await?);
        }
        Ok(out)
    }

    /// Stores a comet's online report.
    pub async fn put_online(&self, online: &ServerOnline) -> Result<(), StoreError> {
        self.shard(&online.server).put_online(online).await
    }

    /// Every comet's latest online report, one per comet. Shards may share a
    /// backend (several routers on one Redis), so the same report can come
    /// back from several shards; the newest one per server wins.
    pub async fn online(&self) -> Result<Vec<ServerOnline>, StoreError> {
        let mut latest: HashMap<String, ServerOnline> = HashMap::new();
        for name in self.ring.shards() {
            for report in self.shards[name].online().await? {
                match latest.get(&report.server) {
                    Some(seen) if seen.updated >= report.updated => {}
                    _ => {
                        latest.insert(report.server.clone(), report);
                    }
                }
            }
        }
        let mut out: Vec<ServerOnline> = latest.into_values().collect();
        out.sort_by(|a, b| a.server.cmp(&b.server));
        Ok(out)
    }

    /// The shard of a room's membership records. A room and a connection
    /// key with the same text are placed independently.
    fn room_shard(&self, room: &str) -> &str {
        // Invariant: the ring is never empty (see `shard`).
        self.ring
            .shard_of(&("room", room))
            .expect("ring is never empty")
    }

    /// The shard of a connection key's record.
    fn key_shard(&self, key: &str) -> &str {
        // Invariant: the ring is never empty (see `shard`).
        self.ring.shard_of(&key).expect("ring is never empty")
    }

    /// `items` grouped by their shard (`shard_of`), each group with the
    /// items' positions in `items`.
    fn by_shard<'a>(
        &'a self,
        items: &[String],
        shard_of: impl Fn(&str) -> &'a str,
    ) -> HashMap<&'a str, (Vec<usize>, Vec<String>)> {
        let mut groups: HashMap<&str, (Vec<usize>, Vec<String>)> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let group = groups.entry(shard_of(item)).or_default();
            group.0.push(i);
            group.1.push(item.clone());
        }
        groups
    }

    /// Records that `server` holds members of each of `rooms` for `ttl`:
    /// one call per shard, the shards written concurrently; answers once
    /// every shard wrote its rooms.
    pub async fn announce_rooms(
        &self,
        server: &str,
        rooms: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let groups = self.by_shard(rooms, |room| self.room_shard(room));
        try_join_all(groups.into_iter().map(|(name, (_, group))| async move {
            self.shards[name].announce_rooms(server, &group, ttl).await
        }))
        .await?;
        Ok(())
    }

    /// The comets with an unexpired membership record of each room, in
    /// order: one call per shard, concurrently.
    pub async fn room_servers(&self, rooms: &[String]) -> Result<Vec<Vec<String>>, StoreError> {
        let groups = self.by_shard(rooms, |room| self.room_shard(room));
        let answers = try_join_all(groups.into_iter().map(
            |(name, (positions, group))| async move {
                let servers = self.shards[name].room_servers(&group).await?;
                if servers.len() != positions.len() {
                    return Err(StoreError::Unavailable(format!(
                        "shard {name}: {} answers to {} rooms",
                        servers.len(),
                        positions.len()
                    )));
                }
                Ok::<_, StoreError>(positions.into_iter().zip(servers))
            },
        ))
        .await?;
        let mut out = vec![Vec::new(); rooms.len()];
        for (pos, servers) in answers.into_iter().flatten() {
            out[pos] = servers;
        }
        Ok(out)
    }

    /// Forgets a comet on every shard; returns how many sessions were removed.
    pub async fn del_server(&self, server: &str) -> Result<u64, StoreError> {
        let mut removed = 0;
        for name in self.ring.shards() {
            removed += self.shards[name].del_server(server).await?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sharded() -> Router {
        let shards = (0..3)
            .map(|i| {
                let store: Arc<dyn SessionStore> =
                    Arc::new(MemoryStore::new(Duration::from_secs(60)));
                (format!("r{i}"), store)
            })
            .collect();
        Router::new(shards).unwrap()
    }

    #[tokio::test]
    async fn sessions_resolve_across_shards() {
        let router = sharded();
        for i in 0..50i64 {
            router
                .add_mapping(i, &format!("key-{i}"), &format!("comet-{}", i % 2))
                .await
                .unwrap();
        }
        router.add_mapping(0, "anon", "comet-9").await.unwrap();
        let keys: Vec<String> = ["key-3", "nope", "key-4", "anon"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            router.servers_by_keys(&keys).await.unwrap(),
            vec![
                Some("comet-1".into()),
                None,
                Some("comet-0".into()),
                Some("comet-9".into())
            ]
        );
        let mut got = router.keys_by_mids(&[3, 4, 99]).await.unwrap();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("key-3".into(), "comet-1".into()),
                ("key-4".into(), "comet-0".into())
            ]
        );
        assert!(router.del_mapping(3, "key-3", "comet-1").await.unwrap());
        assert!(router.keys_by_mids(&[3]).await.unwrap().is_empty());
        assert_eq!(router.del_server("comet-0").await.unwrap(), 25);
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_re_adds_an_expired_session() {
        let router = Router::memory(&Config {
            expire: Duration::from_secs(10),
        });
        router.add_mapping(5, "k", "c").await.unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!router.expire_mapping(5, "k", "c").await.unwrap());
        assert_eq!(
            router.keys_by_mids(&[5]).await.unwrap(),
            vec![("k".into(), "c".into())]
        );
        assert!(router.expire_mapping(5, "k", "c").await.unwrap());
    }

    #[tokio::test]
    async fn shards_sharing_one_backend_report_each_comet_once() {
        // Two router shards on the same store, as two routers on one Redis.
        let shared: Arc<dyn SessionStore> = Arc::new(MemoryStore::new(Duration::from_secs(60)));
        let router =
            Router::new(vec![("r1".into(), shared.clone()), ("r2".into(), shared)]).unwrap();
        for (server, updated) in [("comet-a", 10), ("comet-b", 11)] {
            router
                .put_online(&ServerOnline {
                    server: server.into(),
                    conn_count: 5,
                    updated,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        let online = router.online().await.unwrap();
        let servers: Vec<&str> = online.iter().map(|o| o.server.as_str()).collect();
        assert_eq!(servers, vec!["comet-a", "comet-b"]);
        assert_eq!(online.iter().map(|o| o.conn_count).sum::<i64>(), 10);
    }

    /// A shard that counts its room calls.
    struct Counting {
        inner: MemoryStore,
        announces: std::sync::atomic::AtomicUsize,
        lookups: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl SessionStore for Counting {
        async fn set_key(&self, key: &str, server: &str) -> Result<(), StoreError> {
            self.inner.set_key(key, server).await
        }
        async fn expire_key(&self, key: &str) -> Result<bool, StoreError> {
            self.inner.expire_key(key).await
        }
        async fn del_key(&self, key: &str, server: &str) -> Result<bool, StoreError> {
            self.inner.del_key(key, server).await
        }
        async fn get_keys(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
            self.inner.get_keys(keys).await
        }
        async fn add_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<(), StoreError> {
            self.inner.add_mid_key(mid, key, server).await
        }
        async fn expire_mid(&self, mid: i64) -> Result<bool, StoreError> {
            self.inner.expire_mid(mid).await
        }
        async fn del_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<bool, StoreError> {
            self.inner.del_mid_key(mid, key, server).await
        }
        async fn get_mids(&self, mids: &[i64]) -> Result<Vec<(String, String)>, StoreError> {
            self.inner.get_mids(mids).await
        }
        async fn put_online(&self, online: &ServerOnline) -> Result<(), StoreError> {
            self.inner.put_online(online).await
        }
        async fn online(&self) -> Result<Vec<ServerOnline>, StoreError> {
            self.inner.online().await
        }
        async fn del_server(&self, server: &str) -> Result<u64, StoreError> {
            self.inner.del_server(server).await
        }
        async fn announce_rooms(
            &self,
            server: &str,
            rooms: &[String],
            ttl: Duration,
        ) -> Result<(), StoreError> {
            self.announces
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.announce_rooms(server, rooms, ttl).await
        }
        async fn room_servers(&self, rooms: &[String]) -> Result<Vec<Vec<String>>, StoreError> {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.inner.room_servers(rooms).await
        }
    }

    #[tokio::test]
    async fn rooms_are_placed_by_the_ring_one_call_per_shard() {
        use std::sync::atomic::Ordering;
        let stores: Vec<Arc<Counting>> = (0..3)
            .map(|_| {
                Arc::new(Counting {
                    inner: MemoryStore::new(Duration::from_secs(60)),
                    announces: Default::default(),
                    lookups: Default::default(),
                })
            })
            .collect();
        let shards = stores
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("r{i}"), s.clone() as Arc<dyn SessionStore>))
            .collect();
        let router = Router::new(shards).unwrap();
        let rooms: Vec<String> = (0..60).map(|i| format!("live://{i}")).collect();
        let ttl = Duration::from_secs(30);
        router.announce_rooms("c1", &rooms, ttl).await.unwrap();
        router
            .announce_rooms("c2", &rooms[..10], ttl)
            .await
            .unwrap();
        // Every shard holds some of the 60 rooms, and was called once for them.
        for (i, store) in stores.iter().enumerate() {
            assert_eq!(store.announces.load(Ordering::Relaxed), 2, "shard r{i}");
            let own = store.inner.room_servers(&rooms).await.unwrap();
            let held = own.iter().filter(|s| !s.is_empty()).count();
            assert!(
                (5..=40).contains(&held),
                "shard r{i} holds {held} of 60 rooms"
            );
        }
        // Each room lives on exactly one shard: the one the ring picks.
        for room in &rooms {
            let holders: Vec<usize> = futures_util::future::join_all(
                stores
                    .iter()
                    .map(|s| s.inner.room_servers(std::slice::from_ref(room))),
            )
            .await
            .into_iter()
            .enumerate()
            .filter(|(_, r)| !r.as_ref().unwrap()[0].is_empty())
            .map(|(i, _)| i)
            .collect();
            assert_eq!(holders.len(), 1, "{room} on shards {holders:?}");
            assert_eq!(format!("r{}", holders[0]), router.room_shard(room));
        }
        // A lookup of many rooms: answers in order, one call per shard.
        let mut asked: Vec<String> = rooms.iter().rev().cloned().collect();
        asked.push("live://nobody".into());
        let servers = router.room_servers(&asked).await.unwrap();
        assert_eq!(servers.len(), asked.len());
        for (room, mut servers) in asked.iter().zip(servers) {
            servers.sort();
            let n: usize = room
                .strip_prefix("live://")
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let expected: Vec<String> = match n {
                0..=9 => vec!["c1".into(), "c2".into()],
                10..=59 => vec!["c1".into()],
                _ => vec![],
            };
            assert_eq!(servers, expected, "{room}");
        }
        for store in &stores {
            assert_eq!(
                store.lookups.load(Ordering::Relaxed),
                1,
                "one lookup call per shard"
            );
        }
    }

    #[test]
    fn no_shards_is_an_error() {
        assert!(matches!(Router::new(vec![]), Err(StoreError::NoShards)));
    }
}
