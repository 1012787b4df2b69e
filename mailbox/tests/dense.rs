//! Property: whatever the batches (several mailboxes, repeated ids within
//! and across batches), each mailbox's seqs are dense from 1, a new id gets
//! the next seq, a repeated one its first seq, and reading gives exactly the
//! new entries in order. Checked against every store (the Redis one against
//! the test Redis, `RIM_TEST_REDIS`, with a fresh key prefix per case).

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use rim_mailbox::{Entry, MailboxConfig, MailboxStore, MemoryStore, MsgId, RedbStore, MAX_SEQ};

/// (mid, id) pairs; small ranges so that batches repeat ids and share mids.
fn batches() -> impl Strategy<Value = Vec<Vec<(i64, u8)>>> {
    prop::collection::vec(prop::collection::vec((0i64..4, 0u8..24), 0..12), 1..8)
}

async fn check(store: impl MailboxStore, batches: Vec<Vec<(i64, u8)>>) {
    // The model: per mid, id -> seq, and the ids in seq order.
    let mut seen: HashMap<(i64, u8), u32> = HashMap::new();
    let mut order: HashMap<i64, Vec<u8>> = HashMap::new();
    for batch in batches {
        let entries = batch
            .iter()
            .map(|&(mid, id)| Entry {
                mid,
                id: MsgId::parse(&format!("id-{id}")).unwrap(),
                op: 1000,
                from: 0,
                ts_ms: 0,
                body: Bytes::from(vec![id]),
                dedupe: true,
            })
            .collect();
        let appended = store.append(entries).await.unwrap();
        assert_eq!(appended.len(), batch.len());
        for (&(mid, id), got) in batch.iter().zip(&appended) {
            assert_eq!(got.mid, mid);
            match seen.get(&(mid, id)) {
                Some(&seq) => assert_eq!((got.seq, got.duplicate), (seq, true)),
                None => {
                    let ids = order.entry(mid).or_default();
                    ids.push(id);
                    let seq = ids.len() as u32;
                    assert_eq!((got.seq, got.duplicate), (seq, false));
                    seen.insert((mid, id), seq);
                }
            }
        }
    }
    for mid in 0..4 {
        let ids = order.remove(&mid).unwrap_or_default();
        let page = store.read(mid, 0, 1000, usize::MAX).await.unwrap();
        assert_eq!((page.first, page.top), (1, ids.len() as u32));
        assert!(page.top < MAX_SEQ);
        let seqs: Vec<u32> = page.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=ids.len() as u32).collect::<Vec<_>>());
        let bodies: Vec<u8> = page.entries.iter().map(|e| e.body[0]).collect();
        assert_eq!(bodies, ids);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn memory_seqs_are_dense(batches in batches()) {
        runtime().block_on(check(MemoryStore::new(MailboxConfig::default()), batches));
    }

    #[test]
    fn redb_seqs_are_dense(batches in batches()) {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = RedbStore::open(dir.path(), MailboxConfig::default()).await.unwrap();
            check(store, batches).await;
        });
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_seqs_are_dense(batches in batches()) {
        let Some(url) = rim_testkit::services::redis() else { return Ok(()) };
        runtime().block_on(async {
            let prefix = format!("{}:", rim_testkit::services::unique("rim-test-mb"));
            let config = MailboxConfig {
                idle_ttl: std::time::Duration::from_secs(600),
                meta_ttl: std::time::Duration::from_secs(600),
                ..MailboxConfig::default()
            };
            let store = rim_mailbox::RedisStore::connect(
                &url,
                &prefix,
                config,
                std::time::Duration::from_secs(5),
            )
            .await
            .unwrap();
            check(store, batches).await;
        });
    }
}
