//! [`MemoryStore`]: an in-process shard. Expiry is checked on every read and
//! expired entries are swept during writes, so memory stays bounded without a
//! background task.
//!
//! There is an entry per connected key and per connected mid, so the entries
//! are kept lean: keys are `Box<str>`, server ids are interned `Arc<str>`s
//! (a handful of comets hold all sessions), and a mid's keys are stored
//! inline while there is only one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::{ServerOnline, SessionStore};
use crate::StoreError;

#[derive(Debug)]
struct Expiring<T> {
    value: T,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    /// key -> server.
    keys: HashMap<Box<str>, Expiring<Arc<str>>>,
    mids: HashMap<i64, Expiring<MidKeys>>,
    online: HashMap<String, Expiring<ServerOnline>>,
    /// room -> server -> when its membership record expires.
    rooms: HashMap<Box<str>, HashMap<Arc<str>, Instant>>,
    /// Every server id referenced by `keys`, `mids` or `rooms` (dropped in the sweep
    /// once nothing else refers to it).
    servers: HashSet<Arc<str>>,
    writes_since_sweep: usize,
}

impl Inner {
    /// The shared copy of a server id.
    fn server(&mut self, server: &str) -> Arc<str> {
        if let Some(interned) = self.servers.get(server) {
            return Arc::clone(interned);
        }
        let interned: Arc<str> = Arc::from(server);
        self.servers.insert(Arc::clone(&interned));
        interned
    }
}

/// The keys of one mid and their servers: usually a single key, held inline
/// (the map is boxed to keep every entry small).
#[derive(Debug, Default)]
enum MidKeys {
    #[default]
    None,
    One(Box<str>, Arc<str>),
    // Boxed on purpose: keeps `MidKeys` at two words and a tag.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Box<str>, Arc<str>>>),
}

impl MidKeys {
    fn is_empty(&self) -> bool {
        match self {
            MidKeys::None => true,
            MidKeys::One(..) => false,
            MidKeys::Many(keys) => keys.is_empty(),
        }
    }

    fn insert(&mut self, key: &str, server: Arc<str>) {
        match self {
            MidKeys::One(k, s) if **k == *key => *s = server,
            MidKeys::One(..) => {
                let MidKeys::One(k, s) = std::mem::take(self) else {
                    unreachable!("matched One")
                };
                *self = MidKeys::Many(Box::new(HashMap::from([(k, s), (Box::from(key), server)])));
            }
            MidKeys::None => *self = MidKeys::One(Box::from(key), server),
            MidKeys::Many(keys) => {
                keys.insert(Box::from(key), server);
            }
        }
    }

    /// Removes `key` if it is on `server`; returns whether it was.
    fn remove_if_on(&mut self, key: &str, server: &str) -> bool {
        match self {
            MidKeys::One(k, s) if **k == *key && **s == *server => {
                *self = MidKeys::default();
                true
            }
            MidKeys::None | MidKeys::One(..) => false,
            MidKeys::Many(keys) => match keys.get(key) {
                Some(s) if **s == *server => keys.remove(key).is_some(),
                _ => false,
            },
        }
    }

    fn clear(&mut self) {
        *self = MidKeys::default();
    }

    fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        match self {
            MidKeys::None => {}
            MidKeys::One(k, s) => {
                if !keep(k, s) {
                    self.clear();
                }
            }
            MidKeys::Many(keys) => keys.retain(|k, s| keep(k, s)),
        }
    }

    fn pairs(&self) -> Box<dyn Iterator<Item = (&str, &str)> + '_> {
        match self {
            MidKeys::None => Box::new(std::iter::empty()),
            MidKeys::One(k, s) => Box::new(std::iter::once((&**k, &**s))),
            MidKeys::Many(keys) => Box::new(keys.iter().map(|(k, s)| (&**k, &**s))),
        }
    }
}

/// A shard kept in memory; mappings expire after `ttl` without refresh.
#[derive(Debug)]
pub struct MemoryStore {
    ttl: Duration,
    inner: Mutex<Inner>,
}

/// Sweep expired entries after this many writes.
const SWEEP_EVERY: usize = 4096;

impl MemoryStore {
    /// An empty store whose entries live `ttl` without refresh.
    pub fn new(ttl: Duration) -> MemoryStore {
        MemoryStore {
            ttl,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn write<R>(&self, f: impl FnOnce(&mut Inner, Instant, Instant) -> R) -> R {
        let now = Instant::now();
        let expires = now + self.ttl;
        let mut inner = self.inner.lock();
        inner.writes_since_sweep += 1;
        if inner.writes_since_sweep >= SWEEP_EVERY {
            inner.writes_since_sweep = 0;
            inner.keys.retain(|_, e| e.expires > now);
            inner.mids.retain(|_, e| e.expires > now);
            inner.online.retain(|_, e| e.expires > now);
            inner.rooms.retain(|_, servers| {
                servers.retain(|_, expires| *expires > now);
                !servers.is_empty()
            });
            inner.servers.retain(|s| Arc::strong_count(s) > 1);
        }
        f(&mut inner, now, expires)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn set_key(&self, key: &str, server: &str) -> Result<(), StoreError> {
        self.write(|inner, _, expires| {
            let value = inner.server(server);
            match inner.keys.get_mut(key) {
                Some(e) => *e = Expiring { value, expires },
                None => {
                    inner.keys.insert(key.into(), Expiring { value, expires });
                }
            }
        });
        Ok(())
    }

    async fn expire_key(&self, key: &str) -> Result<bool, StoreError> {
        Ok(
            self.write(|inner, now, expires| match inner.keys.get_mut(key) {
                Some(e) if e.expires > now => {
                    e.expires = expires;
                    true
                }
                _ => false,
            }),
        )
    }

    async fn del_key(&self, key: &str, server: &str) -> Result<bool, StoreError> {
        Ok(self.write(|inner, now, _| match inner.keys.get(key) {
            Some(e) if *e.value == *server => {
                let live = e.expires > now;
                inner.keys.remove(key);
                live
            }
            _ => false,
        }))
    }

    async fn get_keys(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let now = Instant::now();
        let inner = self.inner.lock();
        Ok(keys
            .iter()
            .map(|k| {
                inner
                    .keys
                    .get(k.as_str())
                    .filter(|e| e.expires > now)
                    .map(|e| e.value.to_string())
            })
            .collect())
    }

    async fn add_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<(), StoreError> {
        self.write(|inner, now, expires| {
            let server = inner.server(server);
            let entry = inner.mids.entry(mid).or_insert_with(|| Expiring {
                value: MidKeys::default(),
                expires,
            });
            if entry.expires <= now {
                entry.value.clear();
            }
            entry.expires = expires;
            entry.value.insert(key, server);
        });
        Ok(())
    }

    async fn expire_mid(&self, mid: i64) -> Result<bool, StoreError> {
        Ok(
            self.write(|inner, now, expires| match inner.mids.get_mut(&mid) {
                Some(e) if e.expires > now => {
                    e.expires = expires;
                    true
                }
                _ => false,
            }),
        )
    }

    async fn del_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<bool, StoreError> {
        Ok(self.write(|inner, now, _| {
            let Some(entry) = inner.mids.get_mut(&mid) else {
                return false;
            };
            let live = entry.expires > now;
            let removed = entry.value.remove_if_on(key, server);
            if entry.value.is_empty() || !live {
                inner.mids.remove(&mid);
            }
            removed && live
        }))
    }

    async fn get_mids(&self, mids: &[i64]) -> Result<Vec<(String, String)>, StoreError> {
        let now = Instant::now();
        let inner = self.inner.lock();
        let mut out = Vec::new();
        for mid in mids {
            if let Some(e) = inner.mids.get(mid).filter(|e| e.expires > now) {
                out.extend(e.value.pairs().map(|(k, s)| (k.to_owned(), s.to_owned())));
            }
        }
        Ok(out)
    }

    async fn put_online(&self, online: &ServerOnline) -> Result<(), StoreError> {
        self.write(|inner, _, expires| {
            inner.online.insert(
                online.server.clone(),
                Expiring {
                    value: online.clone(),
                    expires,
                },
            );
        });
        Ok(())
    }

    async fn online(&self) -> Result<Vec<ServerOnline>, StoreError> {
        let now = Instant::now();
        let inner = self.inner.lock();
        Ok(inner
            .online
            .values()
            .filter(|e| e.expires > now)
            .map(|e| e.value.clone())
            .collect())
    }

    async fn del_server(&self, server: &str) -> Result<u64, StoreError> {
        Ok(self.write(|inner, _, _| {
            inner.online.remove(server);
            let before = inner.keys.len();
            inner.keys.retain(|_, e| *e.value != *server);
            let removed = (before - inner.keys.len()) as u64;
            inner.mids.retain(|_, e| {
                e.value.retain(|_, s| s != server);
                !e.value.is_empty()
            });
            removed
        }))
    }

    async fn announce_rooms(
        &self,
        server: &str,
        rooms: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.write(|inner, now, _| {
            let server = inner.server(server);
            let expires = now + ttl;
            for room in rooms {
                if !inner.rooms.contains_key(room.as_str()) {
                    inner.rooms.insert(Box::from(room.as_str()), HashMap::new());
                }
                let Some(servers) = inner.rooms.get_mut(room.as_str()) else {
                    continue; // inserted just above
                };
                servers.retain(|_, at| *at > now);
                let at = servers.entry(Arc::clone(&server)).or_insert(expires);
                *at = (*at).max(expires);
            }
        });
        Ok(())
    }

    async fn room_servers(&self, rooms: &[String]) -> Result<Vec<Vec<String>>, StoreError> {
        let now = Instant::now();
        let inner = self.inner.lock();
        Ok(rooms
            .iter()
            .map(|room| {
                inner
                    .rooms
                    .get(room.as_str())
                    .map_or_else(Vec::new, |servers| {
                        servers
                            .iter()
                            .filter(|(_, expires)| **expires > now)
                            .map(|(server, _)| server.to_string())
                            .collect()
                    })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn mappings_expire_without_refresh() {
        let store = MemoryStore::new(Duration::from_secs(60));
        store.set_key("k1", "c1").await.unwrap();
        store.add_mid_key(7, "k1", "c1").await.unwrap();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(store.expire_key("k1").await.unwrap());
        assert!(store.expire_mid(7).await.unwrap());
        tokio::time::advance(Duration::from_secs(50)).await;
        // Refreshed at t=50, so alive at t=100.
        assert_eq!(
            store.get_keys(&["k1".into()]).await.unwrap(),
            vec![Some("c1".into())]
        );
        assert_eq!(store.get_mids(&[7]).await.unwrap().len(), 1);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(store.get_keys(&["k1".into()]).await.unwrap(), vec![None]);
        assert!(store.get_mids(&[7]).await.unwrap().is_empty());
        assert!(!store.expire_key("k1").await.unwrap());
        assert!(!store.expire_mid(7).await.unwrap());
    }

    #[tokio::test]
    async fn delete_leaves_a_newer_session_on_another_comet_alone() {
        let store = MemoryStore::new(Duration::from_secs(60));
        store.set_key("k", "old").await.unwrap();
        store.add_mid_key(1, "k", "old").await.unwrap();
        // The same key reconnects on another comet before the old one disconnects.
        store.set_key("k", "new").await.unwrap();
        store.add_mid_key(1, "k", "new").await.unwrap();
        assert!(!store.del_key("k", "old").await.unwrap());
        assert!(!store.del_mid_key(1, "k", "old").await.unwrap());
        assert_eq!(
            store.get_keys(&["k".into()]).await.unwrap(),
            vec![Some("new".into())]
        );
        assert_eq!(
            store.get_mids(&[1]).await.unwrap(),
            vec![("k".into(), "new".into())]
        );
        assert!(store.del_key("k", "new").await.unwrap());
        assert!(store.del_mid_key(1, "k", "new").await.unwrap());
        assert!(store.get_mids(&[1]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn del_server_forgets_its_sessions_only() {
        let store = MemoryStore::new(Duration::from_secs(60));
        for (key, mid, server) in [("a", 1, "c1"), ("b", 1, "c2"), ("c", 2, "c1")] {
            store.set_key(key, server).await.unwrap();
            store.add_mid_key(mid, key, server).await.unwrap();
        }
        store
            .put_online(&ServerOnline {
                server: "c1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(store.del_server("c1").await.unwrap(), 2);
        let keys = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(
            store.get_keys(&keys).await.unwrap(),
            vec![None, Some("c2".into()), None]
        );
        assert_eq!(
            store.get_mids(&[1, 2]).await.unwrap(),
            vec![("b".into(), "c2".into())]
        );
        assert!(store.online().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_mid_holds_one_key_inline_and_many_in_a_map() {
        let store = MemoryStore::new(Duration::from_secs(60));
        store.add_mid_key(1, "a", "c1").await.unwrap();
        store.add_mid_key(1, "a", "c2").await.unwrap();
        assert_eq!(
            store.get_mids(&[1]).await.unwrap(),
            vec![("a".into(), "c2".into())]
        );
        store.add_mid_key(1, "b", "c1").await.unwrap();
        let mut keys = store.get_mids(&[1]).await.unwrap();
        keys.sort();
        assert_eq!(
            keys,
            vec![("a".into(), "c2".into()), ("b".into(), "c1".into())]
        );
        assert!(!store.del_mid_key(1, "a", "c1").await.unwrap());
        assert!(store.del_mid_key(1, "a", "c2").await.unwrap());
        assert!(store.del_mid_key(1, "b", "c1").await.unwrap());
        assert!(store.get_mids(&[1]).await.unwrap().is_empty());
        // Empty again: the next key is held inline.
        store.add_mid_key(1, "c", "c1").await.unwrap();
        assert!(matches!(
            store.inner.lock().mids[&1].value,
            MidKeys::One(..)
        ));
        assert!(store.del_mid_key(1, "c", "c1").await.unwrap());
        assert!(store.inner.lock().mids.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn room_records_expire_and_are_never_shortened() {
        let store = MemoryStore::new(Duration::from_secs(60));
        let ttl = Duration::from_secs(30);
        let rooms = ["live://1".to_owned(), "live://2".to_owned()];
        store.announce_rooms("c1", &rooms, ttl).await.unwrap();
        store.announce_rooms("c2", &rooms[..1], ttl).await.unwrap();
        let sorted = |mut v: Vec<Vec<String>>| {
            v.iter_mut().for_each(|s| s.sort());
            v
        };
        let all = [rooms[0].clone(), rooms[1].clone(), "live://3".to_owned()];
        assert_eq!(
            sorted(store.room_servers(&all).await.unwrap()),
            vec![
                vec!["c1".to_owned(), "c2".to_owned()],
                vec!["c1".to_owned()],
                vec![]
            ]
        );
        // A shorter ttl does not shorten c1's record of live://1.
        tokio::time::advance(Duration::from_secs(10)).await;
        store
            .announce_rooms("c1", &rooms[..1], Duration::from_secs(1))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(19)).await;
        assert_eq!(
            sorted(store.room_servers(&rooms).await.unwrap()),
            vec![
                vec!["c1".to_owned(), "c2".to_owned()],
                vec!["c1".to_owned()]
            ]
        );
        // A refresh keeps c2's record of live://1; the rest expire.
        store.announce_rooms("c2", &rooms[..1], ttl).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            store.room_servers(&rooms).await.unwrap(),
            vec![vec!["c2".to_owned()], vec![]]
        );
        // del_server leaves room records to expire.
        store.del_server("c2").await.unwrap();
        assert_eq!(
            store.room_servers(&rooms[..1]).await.unwrap(),
            vec![vec!["c2".to_owned()]]
        );
        tokio::time::advance(ttl).await;
        assert_eq!(
            store.room_servers(&rooms).await.unwrap(),
            vec![Vec::<String>::new(), vec![]]
        );
    }

    #[test]
    fn entries_stay_small() {
        // Two pointers and a tag: a mid's entry is as small as a key's.
        assert!(std::mem::size_of::<MidKeys>() <= 40);
    }
}
