//! What only the embedded store promises: the file keeps the epoch, the
//! seqs, groups and mutes, an answered append is on disk, and concurrent
//! appends still get dense seqs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rim_mailbox::{
    Entry, GroupStore, MailboxConfig, MailboxError, MailboxStore, MsgId, Mute, RedbStore,
};
use rim_testkit::poll;

fn entry(mid: i64, id: &str) -> Entry {
    Entry {
        mid,
        id: MsgId::parse(id).unwrap(),
        op: 1000,
        from: 0,
        ts_ms: 0,
        body: Bytes::from(id.to_owned()),
        dedupe: true,
    }
}

async fn open(dir: &Path) -> RedbStore {
    RedbStore::open(dir, MailboxConfig::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn reopening_keeps_the_epoch_and_continues_the_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let epoch = store.epoch();
    let appended = store
        .append(vec![entry(1, "a"), entry(1, "b"), entry(2, "c")])
        .await
        .unwrap();
    assert_eq!(appended[0].epoch, epoch);
    store.trim(1, 1).await.unwrap();
    store.close().await;

    let store = open(dir.path()).await;
    assert_eq!(store.epoch(), epoch, "the epoch lives in the file");
    let cursor = store.cursor(1).await.unwrap();
    assert_eq!((cursor.first, cursor.top), (2, 2));
    let appended = store
        .append(vec![entry(1, "b"), entry(1, "d")])
        .await
        .unwrap();
    let placed: Vec<(u32, bool)> = appended.iter().map(|a| (a.seq, a.duplicate)).collect();
    assert_eq!(
        placed,
        [(2, true), (3, false)],
        "ids and seqs survive a reopen"
    );
    let page = store.read(1, 0, 10, usize::MAX).await.unwrap();
    let bodies: Vec<&[u8]> = page.entries.iter().map(|e| &e.body[..]).collect();
    assert_eq!(bodies, [&b"b"[..], b"d"]);
    store.close().await;
}

#[tokio::test]
async fn groups_and_mutes_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.add_members(9, &[1, 2, 3]).await.unwrap();
    store.remove_members(9, &[2]).await.unwrap();
    store.add_members(10, &[4]).await.unwrap();
    store.set_mute(1, "all", None).await.unwrap();
    store.set_mute(1, "group:9", Some(i64::MAX)).await.unwrap();
    store.append(vec![entry(1, "a")]).await.unwrap();
    // Dropped, not closed: answered changes are on disk. The writer lets go
    // of the file once it sees the store gone.
    drop(store);
    let store = poll::eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        async || RedbStore::open(dir.path(), MailboxConfig::default()).await,
    )
    .await;
    assert_eq!(store.members(9).await.unwrap(), [1, 3]);
    assert_eq!(store.members(10).await.unwrap(), [4]);
    let mutes = store.mutes(1).await.unwrap();
    let scopes: Vec<(&str, Option<i64>)> = mutes
        .iter()
        .map(|Mute { scope, until_ms }| (scope.as_str(), *until_ms))
        .collect();
    assert_eq!(scopes, [("all", None), ("group:9", Some(i64::MAX))]);
    assert_eq!(store.cursor(1).await.unwrap().top, 1);
    store.close().await;
}

#[tokio::test]
async fn a_new_file_is_a_new_epoch() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (one, two) = (open(one.path()).await, open(two.path()).await);
    assert_ne!(one.epoch(), two.epoch());
    assert_eq!(one.path().file_name().unwrap(), RedbStore::FILE);
}

#[tokio::test]
async fn a_held_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path()).await;
    let second = RedbStore::open(dir.path(), MailboxConfig::default()).await;
    assert!(
        matches!(second, Err(MailboxError::Unavailable(_))),
        "{second:?}"
    );
}

/// An append that returned is on disk: the store is dropped without
/// `close` (nothing flushed on the way out) and the file read back.
#[tokio::test]
async fn an_answered_append_survives_a_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for i in 0..20 {
        store
            .append(vec![entry(7, &format!("m{i}"))])
            .await
            .unwrap();
    }
    drop(store);
    // The writer lets go of the file once it sees the store gone.
    let mut waited = Duration::ZERO;
    let store = loop {
        match RedbStore::open(dir.path(), MailboxConfig::default()).await {
            Ok(store) => break store,
            Err(e) if waited < Duration::from_secs(5) => {
                tracing::debug!(error = %e, "file still held");
                tokio::time::sleep(Duration::from_millis(10)).await;
                waited += Duration::from_millis(10);
            }
            Err(e) => panic!("the file stayed held: {e}"),
        }
    };
    let page = store.read(7, 0, 100, usize::MAX).await.unwrap();
    assert_eq!(page.entries.len(), 20);
    assert_eq!(page.top, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_one_mailbox_get_dense_unique_seqs() {
    const PRODUCERS: usize = 8;
    const EACH: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let config = MailboxConfig {
        max_len: 10_000,
        ..MailboxConfig::default()
    };
    let store = Arc::new(RedbStore::open(dir.path(), config).await.unwrap());
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let store = Arc::clone(&store);
        producers.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..EACH {
                let appended = store
                    .append(vec![entry(1, &format!("p{p}-{i}"))])
                    .await
                    .unwrap();
                seqs.push(appended[0].seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for producer in producers {
        let seqs = producer.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one producer's appends keep their order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = (PRODUCERS * EACH) as u32;
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    let page = store.read(1, 0, 10_000, usize::MAX).await.unwrap();
    assert_eq!(page.entries.len(), PRODUCERS * EACH);
    assert_eq!(page.top, total);
}
