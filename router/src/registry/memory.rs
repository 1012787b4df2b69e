//! [`MemoryStore`]: an in-process shard. Expiry is checked on every read and
//! expired entries are swept during writes, so memory stays bounded without a
//! background task.

use std::collections::HashMap;
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
    keys: HashMap<String, Expiring<String>>,
    mids: HashMap<i64, Expiring<HashMap<String, String>>>,
    online: HashMap<String, Expiring<ServerOnline>>,
    writes_since_sweep: usize,
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
        }
        f(&mut inner, now, expires)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn set_key(&self, key: &str, server: &str) -> Result<(), StoreError> {
        self.write(|inner, _, expires| {
            inner.keys.insert(
                key.to_owned(),
                Expiring {
                    value: server.to_owned(),
                    expires,
                },
            );
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
            Some(e) if e.value == server => {
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
                    .get(k)
                    .filter(|e| e.expires > now)
                    .map(|e| e.value.clone())
            })
            .collect())
    }

    async fn add_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<(), StoreError> {
        self.write(|inner, now, expires| {
            let entry = inner.mids.entry(mid).or_insert_with(|| Expiring {
                value: HashMap::new(),
                expires,
            });
            if entry.expires <= now {
                entry.value.clear();
            }
            entry.expires = expires;
            entry.value.insert(key.to_owned(), server.to_owned());
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
            let removed = match entry.value.get(key) {
                Some(s) if s == server => entry.value.remove(key).is_some(),
                _ => false,
            };
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
                out.extend(e.value.iter().map(|(k, s)| (k.clone(), s.clone())));
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
            inner.keys.retain(|_, e| e.value != server);
            let removed = (before - inner.keys.len()) as u64;
            inner.mids.retain(|_, e| {
                e.value.retain(|_, s| s != server);
                !e.value.is_empty()
            });
            removed
        }))
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
}
