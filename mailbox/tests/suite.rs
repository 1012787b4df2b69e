//! The behaviour every [`MailboxStore`] and [`GroupStore`] shares, run
//! against [`MemoryStore`], [`RedbStore`] and (feature `redis`) `RedisStore`
//! alike. The Redis runs
//! need the test Redis (`RIM_TEST_REDIS`, see `scripts/services.sh`); each
//! uses its own key prefix, so they run in parallel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rim_mailbox::{
    Ack, Appended, Entry, GroupStore, MailboxConfig, MailboxStore, MsgId, Mute, Stored,
};
use rim_testkit::poll;

/// The suite's retention: small enough to reach the count cap quickly.
const MAX_LEN: u32 = 50;

fn config() -> MailboxConfig {
    MailboxConfig {
        max_len: MAX_LEN,
        ..MailboxConfig::default()
    }
}

fn entry(mid: i64, id: &str, body: &str) -> Entry {
    Entry {
        mid,
        id: MsgId::parse(id).unwrap(),
        op: 1000,
        from: 0,
        ts_ms: 1_700_000_000_000,
        body: Bytes::copy_from_slice(body.as_bytes()),
        dedupe: true,
    }
}

/// Appends `n` messages to `mid`, with ids `<mid>-<i>` and 10-byte bodies.
async fn fill(store: &impl MailboxStore, mid: i64, n: u32) {
    let batch = (1..=n)
        .map(|i| entry(mid, &format!("{mid}-{i}"), &format!("{i:010}")))
        .collect();
    store.append(batch).await.unwrap();
}

fn seqs(entries: &[Stored]) -> Vec<u32> {
    entries.iter().map(|e| e.seq).collect()
}

fn placed(appended: &[Appended]) -> Vec<(i64, u32, bool)> {
    appended
        .iter()
        .map(|a| (a.mid, a.seq, a.duplicate))
        .collect()
}

async fn seqs_are_dense_from_one_per_mailbox(store: impl MailboxStore) {
    let appended = store
        .append(vec![
            entry(1, "a", "x"),
            entry(2, "b", "x"),
            entry(1, "c", "x"),
            entry(1, "d", "x"),
            entry(2, "e", "x"),
        ])
        .await
        .unwrap();
    assert_eq!(
        placed(&appended),
        [
            (1, 1, false),
            (2, 1, false),
            (1, 2, false),
            (1, 3, false),
            (2, 2, false)
        ]
    );
    // The memory and embedded stores have one epoch, the Redis store one
    // per mailbox: either way a mailbox keeps its epoch.
    let epoch = appended[0].epoch;
    assert!(appended
        .iter()
        .filter(|a| a.mid == 1)
        .all(|a| a.epoch == epoch));
    assert_eq!(appended[1].epoch, appended[4].epoch);
    let appended = store.append(vec![entry(1, "f", "x")]).await.unwrap();
    assert_eq!(placed(&appended), [(1, 4, false)]);
    assert_eq!(appended[0].epoch, epoch, "a mailbox keeps its epoch");
    assert!(store.append(Vec::new()).await.unwrap().is_empty());
}

async fn a_repeated_id_returns_its_first_seq_as_a_duplicate(store: impl MailboxStore) {
    store.append(vec![entry(1, "a", "first")]).await.unwrap();
    let appended = store
        .append(vec![
            entry(1, "a", "retry"),
            entry(1, "b", "x"),
            entry(2, "a", "another user"),
            entry(1, "c", "x"),
            entry(1, "c", "same batch"),
        ])
        .await
        .unwrap();
    assert_eq!(
        placed(&appended),
        [
            (1, 1, true),
            (1, 2, false),
            (2, 1, false),
            (1, 3, false),
            (1, 3, true)
        ]
    );
    let page = store.read(1, 0, 100, usize::MAX).await.unwrap();
    assert_eq!(seqs(&page.entries), [1, 2, 3], "duplicates are not stored");
    assert_eq!(page.entries[0].body, "first", "the first copy is kept");
}

async fn entries_of_one_mid_keep_their_batch_order(store: impl MailboxStore) {
    let batch: Vec<Entry> = (0..30)
        .map(|i| entry(i % 3, &format!("m{i}"), &format!("{i}")))
        .collect();
    store.append(batch).await.unwrap();
    for mid in 0..3 {
        let page = store.read(mid, 0, 100, usize::MAX).await.unwrap();
        let bodies: Vec<Bytes> = page.entries.iter().map(|e| e.body.clone()).collect();
        let expected: Vec<Bytes> = (0..30)
            .filter(|i| i % 3 == mid)
            .map(|i| Bytes::from(format!("{i}")))
            .collect();
        assert_eq!(bodies, expected, "mid {mid}");
        assert_eq!(seqs(&page.entries), (1..=10).collect::<Vec<_>>());
    }
}

async fn stored_messages_come_back_byte_exact(store: impl MailboxStore) {
    let sent = Entry {
        mid: -7,
        id: MsgId::parse("0190c3a2-7d4e-7b1c-9f00-123456789abc").unwrap(),
        op: 1001,
        from: 42,
        ts_ms: 1_712_345_678_901,
        body: Bytes::from_static(b"\x00\xff\xfe not utf-8 \r\n"),
        dedupe: true,
    };
    store.append(vec![sent.clone()]).await.unwrap();
    let page = store.read(-7, 0, 10, usize::MAX).await.unwrap();
    assert_eq!(page.entries, [Stored::new(1, sent)]);
}

async fn read_pages_by_after_limit_and_bytes(store: impl MailboxStore) {
    let page = store.read(1, 0, 10, usize::MAX).await.unwrap();
    assert_eq!(
        (page.first, page.top, page.more),
        (1, 0, false),
        "new mailbox"
    );
    assert!(page.entries.is_empty());

    fill(&store, 1, 10).await;
    let page = store.read(1, 0, 3, usize::MAX).await.unwrap();
    assert_eq!(seqs(&page.entries), [1, 2, 3]);
    assert_eq!((page.first, page.top, page.more), (1, 10, true));
    let page = store.read(1, 8, 5, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![9, 10], false));
    let page = store.read(1, 10, 5, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![], false));
    let page = store.read(1, 500, 5, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![], false));

    // Bodies are 10 bytes each.
    let page = store.read(1, 2, 10, 25).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![3, 4], true));
    let page = store.read(1, 2, 10, 30).await.unwrap();
    assert_eq!(seqs(&page.entries), [3, 4, 5], "max_bytes is inclusive");
    let page = store.read(1, 2, 10, 5).await.unwrap();
    assert_eq!(
        (seqs(&page.entries), page.more),
        (vec![3], true),
        "a page holds at least one message"
    );
    let page = store.read(1, 2, 0, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![], true), "limit 0");
}

async fn read_back_pages_newest_first(store: impl MailboxStore) {
    let page = store.read_back(1, u32::MAX, 10, usize::MAX).await.unwrap();
    assert_eq!(
        (page.first, page.top, page.more),
        (1, 0, false),
        "new mailbox"
    );
    assert!(page.entries.is_empty());

    fill(&store, 1, 10).await;
    let page = store.read_back(1, u32::MAX, 3, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![10, 9, 8], true));
    assert_eq!((page.first, page.top), (1, 10));
    let page = store.read_back(1, 8, 3, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![7, 6, 5], true));
    let page = store.read_back(1, 3, 5, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![2, 1], false));
    let page = store.read_back(1, 1, 5, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![], false));
    let page = store.read_back(1, 11, 10, 15).await.unwrap();
    assert_eq!(
        (seqs(&page.entries), page.more),
        (vec![10], true),
        "max_bytes"
    );
    let page = store.read_back(1, 11, 0, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![], true), "limit 0");
}

async fn trim_moves_first_and_seqs_are_never_reused(store: impl MailboxStore) {
    fill(&store, 1, 10).await;
    store.trim(1, 4).await.unwrap();
    let page = store.read(1, 0, 100, usize::MAX).await.unwrap();
    assert_eq!((page.first, page.top), (5, 10));
    assert_eq!(seqs(&page.entries), [5, 6, 7, 8, 9, 10]);
    assert!(!page.complete(None, 0), "seqs 1 to 4 are gone");
    let epoch = page.epoch.to_string();
    assert!(page.complete(Some(&epoch), 4));
    assert!(!page.complete(Some(&epoch), 3));
    let page = store.read_back(1, 7, 100, usize::MAX).await.unwrap();
    assert_eq!((seqs(&page.entries), page.more), (vec![6, 5], false));

    store.trim(1, 2).await.unwrap();
    assert_eq!(
        store.cursor(1).await.unwrap().first,
        5,
        "below first: no-op"
    );

    store.trim(1, 1000).await.unwrap();
    let cursor = store.cursor(1).await.unwrap();
    assert_eq!((cursor.first, cursor.top), (11, 10), "past top: everything");
    let page = store.read(1, 0, 100, usize::MAX).await.unwrap();
    assert!(page.entries.is_empty());
    assert!(!page.more);

    let appended = store.append(vec![entry(1, "new", "x")]).await.unwrap();
    assert_eq!(appended[0].seq, 11, "trimmed seqs are not given again");
    let page = store.read(1, 0, 100, usize::MAX).await.unwrap();
    assert_eq!(
        (page.first, page.top, seqs(&page.entries)),
        (11, 11, vec![11])
    );

    store.trim(2, 5).await.unwrap();
    let cursor = store.cursor(2).await.unwrap();
    assert_eq!(
        (cursor.first, cursor.top),
        (1, 0),
        "an empty mailbox stays new"
    );
}

async fn the_count_cap_moves_first(store: impl MailboxStore) {
    fill(&store, 1, MAX_LEN + 10).await;
    let page = store.read(1, 0, 1000, usize::MAX).await.unwrap();
    assert_eq!((page.first, page.top), (11, MAX_LEN + 10));
    assert_eq!(seqs(&page.entries), (11..=MAX_LEN + 10).collect::<Vec<_>>());
    assert!(!page.complete(None, 0));
    let appended = store.append(vec![entry(1, "one-more", "x")]).await.unwrap();
    assert_eq!(appended[0].seq, MAX_LEN + 11);
    assert_eq!(store.cursor(1).await.unwrap().first, 12);
    // A cap reached in one batch, with duplicates inside it.
    let batch = (0..MAX_LEN * 2)
        .map(|i| entry(2, &format!("b{}", i / 2), "x"))
        .collect();
    store.append(batch).await.unwrap();
    let cursor = store.cursor(2).await.unwrap();
    assert_eq!((cursor.first, cursor.top), (1, MAX_LEN));
}

async fn acks_only_move_forward_per_device(store: impl MailboxStore) {
    fill(&store, 1, 10).await;
    let ack = |key: &str, seq| Ack {
        mid: 1,
        key: key.to_owned(),
        seq,
    };
    store
        .ack(vec![ack("phone", 3), ack("laptop", 5)])
        .await
        .unwrap();
    store
        .ack(vec![ack("phone", 2), ack("laptop", 6)])
        .await
        .unwrap();
    let cursor = store.cursor(1).await.unwrap();
    let acked: Vec<(&str, u32)> = cursor
        .devices
        .iter()
        .map(|(k, d)| (k.as_str(), d.ack))
        .collect();
    assert_eq!(acked, [("laptop", 6), ("phone", 3)]);
    assert!(cursor.devices["phone"].ts_ms > 0);

    store.ack(vec![ack("phone", 99)]).await.unwrap();
    assert_eq!(
        store.cursor(1).await.unwrap().devices["phone"].ack,
        10,
        "an ack stops at top"
    );
    store
        .ack(vec![Ack {
            mid: 2,
            key: "phone".to_owned(),
            seq: 4,
        }])
        .await
        .unwrap();
    assert!(
        store.cursor(2).await.unwrap().devices.is_empty(),
        "nothing to ack in an empty mailbox"
    );
    store.ack(Vec::new()).await.unwrap();
}

async fn read_position_only_moves_forward(store: impl MailboxStore) {
    fill(&store, 1, 10).await;
    store.set_read(1, 4).await.unwrap();
    store.set_read(1, 2).await.unwrap();
    assert_eq!(store.cursor(1).await.unwrap().read, 4);
    store.set_read(1, 99).await.unwrap();
    assert_eq!(store.cursor(1).await.unwrap().read, 10, "stops at top");
    store.set_read(2, 5).await.unwrap();
    assert_eq!(store.cursor(2).await.unwrap().read, 0);
}

async fn the_cursor_tells_bounds_read_and_devices(store: impl MailboxStore) {
    let cursor = store.cursor(1).await.unwrap();
    assert_eq!((cursor.first, cursor.top, cursor.read), (1, 0, 0));
    assert!(cursor.devices.is_empty());
    assert!(cursor.complete(None, 0));

    let appended = store.append(vec![entry(1, "a", "x")]).await.unwrap();
    fill(&store, 1, 4).await;
    store.set_read(1, 2).await.unwrap();
    store
        .ack(vec![Ack {
            mid: 1,
            key: "k".to_owned(),
            seq: 3,
        }])
        .await
        .unwrap();
    let cursor = store.cursor(1).await.unwrap();
    assert_eq!(cursor.epoch, appended[0].epoch);
    assert_eq!((cursor.first, cursor.top, cursor.read), (1, 5, 2));
    assert_eq!(cursor.devices["k"].ack, 3);
    let epoch = cursor.epoch.to_string();
    assert!(cursor.complete(Some(&epoch), 3));
    assert!(!cursor.complete(Some("other123"), 3));
    assert!(!cursor.complete(Some(&epoch), 6));
    // Another mailbox's devices do not leak in (neighbouring mids).
    assert!(store.cursor(0).await.unwrap().devices.is_empty());
    assert!(store.cursor(2).await.unwrap().devices.is_empty());
}

// === groups ===

async fn members_are_added_and_removed_idempotently(store: impl GroupStore) {
    assert_eq!(store.add_members(9, &[3, 1, 2]).await.unwrap(), 3);
    assert_eq!(
        store.add_members(9, &[2, 3, 4, 4]).await.unwrap(),
        4,
        "members stay, repeats count once"
    );
    assert_eq!(store.members(9).await.unwrap(), [1, 2, 3, 4]);
    assert!(store.is_member(9, 4).await.unwrap());
    assert!(!store.is_member(9, 5).await.unwrap());
    assert_eq!(
        store.remove_members(9, &[2, 5]).await.unwrap(),
        3,
        "a non-member is ignored"
    );
    assert_eq!(store.remove_members(9, &[2]).await.unwrap(), 3, "again");
    assert_eq!(store.members(9).await.unwrap(), [1, 3, 4]);
    assert!(!store.is_member(9, 2).await.unwrap());
    assert_eq!(store.add_members(9, &[]).await.unwrap(), 3, "only the size");
    assert_eq!(store.remove_members(9, &[]).await.unwrap(), 3);
}

async fn members_sort_numerically_and_groups_keep_apart(store: impl GroupStore) {
    let mids = [i64::MAX, -5, 0, 10, i64::MIN, 2];
    assert_eq!(store.add_members(-1, &mids).await.unwrap(), 6);
    // Neighbouring gids, sharing members.
    store.add_members(0, &[7, 2]).await.unwrap();
    store.add_members(1, &[8]).await.unwrap();
    assert_eq!(
        store.members(-1).await.unwrap(),
        [i64::MIN, -5, 0, 2, 10, i64::MAX]
    );
    assert_eq!(store.members(0).await.unwrap(), [2, 7]);
    assert_eq!(store.members(1).await.unwrap(), [8]);
    assert!(!store.is_member(0, 8).await.unwrap());
    assert!(store.is_member(-1, i64::MIN).await.unwrap());
    assert_eq!(store.remove_members(0, &[2]).await.unwrap(), 1);
    assert!(
        store.is_member(-1, 2).await.unwrap(),
        "only gid 0 lost mid 2"
    );
}

async fn an_emptied_group_is_no_group(store: impl GroupStore) {
    assert!(store.members(5).await.unwrap().is_empty(), "never used");
    assert!(!store.is_member(5, 1).await.unwrap());
    assert_eq!(store.remove_members(5, &[1]).await.unwrap(), 0);
    assert_eq!(store.add_members(5, &[]).await.unwrap(), 0);

    assert_eq!(store.add_members(5, &[1, 2]).await.unwrap(), 2);
    assert_eq!(store.remove_members(5, &[1, 2]).await.unwrap(), 0);
    assert!(store.members(5).await.unwrap().is_empty(), "emptied");
    assert!(!store.is_member(5, 1).await.unwrap());
    assert_eq!(store.add_members(5, &[3]).await.unwrap(), 1, "a new group");
    assert_eq!(store.members(5).await.unwrap(), [3]);
}

// === mutes ===

fn now_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(now.as_millis()).unwrap()
}

fn mute(scope: &str, until_ms: Option<i64>) -> Mute {
    Mute {
        scope: scope.to_owned(),
        until_ms,
    }
}

async fn mutes_are_kept_per_scope(store: impl GroupStore) {
    assert!(store.mutes(1).await.unwrap().is_empty());
    let later = now_ms() + 3_600_000;
    store
        .set_mute(1, "room:live://1", Some(later))
        .await
        .unwrap();
    store.set_mute(1, "all", None).await.unwrap();
    store.set_mute(1, "group:9", Some(later)).await.unwrap();
    assert_eq!(
        store.mutes(1).await.unwrap(),
        [
            mute("all", None),
            mute("group:9", Some(later)),
            mute("room:live://1", Some(later)),
        ],
        "by scope"
    );
    store.set_mute(1, "group:9", None).await.unwrap();
    store.set_mute(1, "all", Some(later + 1)).await.unwrap();
    assert_eq!(
        store.mutes(1).await.unwrap(),
        [
            mute("all", Some(later + 1)),
            mute("group:9", None),
            mute("room:live://1", Some(later)),
        ],
        "setting a scope again replaces its end"
    );
    assert!(store.mutes(2).await.unwrap().is_empty(), "another user");
    assert!(store.mutes(0).await.unwrap().is_empty(), "another user");
    // Scopes are opaque: any string is kept as given.
    store.set_mute(2, "", None).await.unwrap();
    store.set_mute(2, "x:{1}\u{e9}", None).await.unwrap();
    assert_eq!(
        store.mutes(2).await.unwrap(),
        [mute("", None), mute("x:{1}\u{e9}", None)]
    );
}

async fn a_mute_that_is_over_is_not_returned(store: impl GroupStore) {
    let now = now_ms();
    store.set_mute(1, "all", Some(now - 1000)).await.unwrap();
    store.set_mute(1, "group:1", Some(i64::MIN)).await.unwrap();
    assert!(store.mutes(1).await.unwrap().is_empty(), "over when set");

    store.set_mute(1, "group:9", None).await.unwrap();
    store.set_mute(1, "group:9", Some(now - 1)).await.unwrap();
    assert!(
        store.mutes(1).await.unwrap().is_empty(),
        "an end already past lifts the scope"
    );

    // One that ends while stored: gone from then on, the others stay.
    let soon = now_ms() + 1000;
    store.set_mute(1, "all", Some(soon)).await.unwrap();
    store.set_mute(1, "group:2", Some(i64::MAX)).await.unwrap();
    assert_eq!(
        store.mutes(1).await.unwrap(),
        [mute("all", Some(soon)), mute("group:2", Some(i64::MAX))]
    );
    poll::until(
        "the mute did not end",
        Duration::from_secs(10),
        Duration::from_millis(50),
        async || store.mutes(1).await.unwrap().len() == 1,
    )
    .await;
    assert!(now_ms() >= soon, "not before its end");
    assert_eq!(
        store.mutes(1).await.unwrap(),
        [mute("group:2", Some(i64::MAX))]
    );
    // A change after the end clears the stale row too.
    store.set_mute(1, "group:3", None).await.unwrap();
    assert_eq!(
        store.mutes(1).await.unwrap(),
        [mute("group:2", Some(i64::MAX)), mute("group:3", None)]
    );
}

async fn clearing_lifts_one_scope_or_all(store: impl GroupStore) {
    let later = now_ms() + 3_600_000;
    store.set_mute(1, "all", None).await.unwrap();
    store.set_mute(1, "group:9", Some(later)).await.unwrap();
    store.set_mute(1, "room:live://1", None).await.unwrap();
    store.set_mute(2, "all", None).await.unwrap();

    store.clear_mute(1, Some("group:9")).await.unwrap();
    assert_eq!(
        store.mutes(1).await.unwrap(),
        [mute("all", None), mute("room:live://1", None)]
    );
    store.clear_mute(1, Some("group:404")).await.unwrap();
    assert_eq!(store.mutes(1).await.unwrap().len(), 2, "nothing to lift");

    store.clear_mute(1, None).await.unwrap();
    assert!(store.mutes(1).await.unwrap().is_empty());
    assert_eq!(
        store.mutes(2).await.unwrap(),
        [mute("all", None)],
        "another user keeps theirs"
    );
    store.clear_mute(1, None).await.unwrap();
    store.clear_mute(3, None).await.unwrap();
    store.clear_mute(3, Some("all")).await.unwrap();

    store.set_mute(1, "group:9", Some(later)).await.unwrap();
    assert_eq!(
        store.mutes(1).await.unwrap(),
        [mute("group:9", Some(later))],
        "muted again after a lift"
    );
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use rim_mailbox::MemoryStore;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(MemoryStore::new(super::config())).await;
                }
            )*
        }

        mod redb {
            use rim_mailbox::RedbStore;
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = RedbStore::open(dir.path(), super::config()).await.unwrap();
                    super::$name(store).await;
                }
            )*
        }

        #[cfg(feature = "redis")]
        mod redis {
            use std::time::Duration;

            use rim_mailbox::{MailboxConfig, RedisStore};
            use rim_testkit::services;

            $(
                #[tokio::test]
                async fn $name() {
                    let Some(url) = services::redis() else { return };
                    let prefix = format!("{}:", services::unique("rim-test-mb"));
                    // Short lives, so that the test Redis forgets the keys.
                    let config = MailboxConfig {
                        idle_ttl: Duration::from_secs(600),
                        meta_ttl: Duration::from_secs(600),
                        ..super::config()
                    };
                    let store = RedisStore::connect(&url, &prefix, config, Duration::from_secs(5))
                        .await
                        .unwrap();
                    super::$name(store).await;
                }
            )*
        }
    };
}

suite!(
    seqs_are_dense_from_one_per_mailbox,
    a_repeated_id_returns_its_first_seq_as_a_duplicate,
    entries_of_one_mid_keep_their_batch_order,
    stored_messages_come_back_byte_exact,
    read_pages_by_after_limit_and_bytes,
    read_back_pages_newest_first,
    trim_moves_first_and_seqs_are_never_reused,
    the_count_cap_moves_first,
    acks_only_move_forward_per_device,
    read_position_only_moves_forward,
    the_cursor_tells_bounds_read_and_devices,
    members_are_added_and_removed_idempotently,
    members_sort_numerically_and_groups_keep_apart,
    an_emptied_group_is_no_group,
    mutes_are_kept_per_scope,
    a_mute_that_is_over_is_not_returned,
    clearing_lifts_one_scope_or_all,
);
