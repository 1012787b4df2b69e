//! What only the Redis store promises, against the test Redis and the test
//! Redis Cluster (`RIM_TEST_REDIS`, `RIM_TEST_REDIS_CLUSTER`, see
//! `scripts/services.sh`; most tests run on both): bodies byte-exact,
//! retention by time to live (messages gone but the epoch kept; the epoch
//! redrawn once the mailbox's state is gone), the idempotency window,
//! concurrent appenders, the last seq, scripts Redis forgot, and its AOF
//! report; the keys of groups and mutes, and the mute watch, across a
//! killed connection. Each test uses its own key prefix. The layout the
//! tests poke at is the documented one (`<prefix>{<mid>}:x`, `:m`,
//! `:i:<id>`, `<prefix>g:{<gid>}`, `<prefix>mute:{<mid>}`, channel
//! `<prefix>mutes`). On the cluster only: every key of one user lands in
//! one slot, and the mute watch hears changes published on other nodes.
#![cfg(feature = "redis")]

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use rim_mailbox::{
    Ack, Entry, GroupStore, MailboxConfig, MailboxError, MailboxStore, MsgId, MuteChange,
    MuteWatch, RedisDurability, RedisStore, MAX_SEQ,
};
use rim_redis::{Conn, Target};
use rim_testkit::{poll, services};

const TIMEOUT: Duration = Duration::from_secs(5);

rim_testkit::on_redis_node_and_cluster!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    binary_bodies_and_odd_ids_come_back_byte_exact,
    expired_messages_keep_the_epoch_and_leave_first_past_top,
    a_lost_mailbox_state_starts_a_new_epoch,
    an_expired_mailbox_state_starts_a_new_epoch,
    a_message_id_is_forgotten_after_the_window,
    concurrent_appenders_get_dense_unique_seqs,
    no_seq_is_given_past_max_seq,
    scripts_redis_forgot_are_loaded_again,
    durability_reports_the_aof_setting,
    groups_and_mutes_live_in_the_documented_keys,
    mute_changes_reach_a_watch_also_after_its_connection_is_killed,
);

/// A store under a fresh prefix, and a plain connection to look behind it
/// (on a cluster, one that routes each command to its key's node).
struct Fixture {
    target: Target,
    prefix: String,
    store: RedisStore,
    raw: Conn,
}

impl Fixture {
    async fn new(target: Target, config: MailboxConfig) -> Fixture {
        let prefix = format!("{}:", services::unique("rim-test-mb"));
        let store = RedisStore::connect_to(&target, &prefix, config, TIMEOUT)
            .await
            .unwrap();
        let raw = Conn::connect(&target, TIMEOUT).await.unwrap();
        Fixture {
            target,
            prefix,
            store,
            raw,
        }
    }

    fn data(&self, mid: i64) -> String {
        format!("{}{{{mid}}}:x", self.prefix)
    }

    fn meta(&self, mid: i64) -> String {
        format!("{}{{{mid}}}:m", self.prefix)
    }

    fn idem(&self, mid: i64, id: &str) -> String {
        format!("{}{{{mid}}}:i:{id}", self.prefix)
    }

    fn group(&self, gid: i64) -> String {
        format!("{}g:{{{gid}}}", self.prefix)
    }

    fn mutes(&self, mid: i64) -> String {
        format!("{}mute:{{{mid}}}", self.prefix)
    }

    async fn exists(&self, key: &str) -> bool {
        let mut raw = self.raw.clone();
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<i64>(&mut raw)
            .await
            .unwrap()
            == 1
    }

    async fn pttl(&self, key: &str) -> i64 {
        let mut raw = self.raw.clone();
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap()
    }

    /// Waits until Redis expired `key`.
    async fn until_gone(&self, key: &str) {
        poll::until(
            &format!("{key} did not expire"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            async || !self.exists(key).await,
        )
        .await;
    }
}

/// Short lives, so that the test Redis forgets the keys.
fn config() -> MailboxConfig {
    MailboxConfig {
        idle_ttl: Duration::from_secs(600),
        meta_ttl: Duration::from_secs(600),
        ..MailboxConfig::default()
    }
}

fn entry(mid: i64, id: &str, body: impl Into<Bytes>) -> Entry {
    Entry {
        mid,
        id: MsgId::parse(id).unwrap(),
        op: 1000,
        from: 0,
        ts_ms: 0,
        body: body.into(),
        dedupe: true,
    }
}

async fn binary_bodies_and_odd_ids_come_back_byte_exact(target: Target) {
    let fx = Fixture::new(target, config()).await;
    let large: Vec<u8> = (0..256 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let bodies: Vec<Bytes> = vec![
        Bytes::from((0..=255u8).collect::<Vec<_>>()),
        Bytes::new(),
        Bytes::from_static(b"\0"),
        Bytes::from_static(b"\xff\xfe\xc3\x28 not utf-8 \r\n\0tail"),
        Bytes::from_static(b"1-0 i o f t d"),
        Bytes::from(large),
    ];
    let ids = [
        "a{b}c",
        "x:y:z",
        "%00\"'\\",
        "0190c3a2-7d4e-7b1c-9f00-123456789abc",
    ];
    let sent: Vec<Entry> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| Entry {
            mid: -3,
            id: MsgId::parse(ids.get(i).copied().unwrap_or(&format!("id-{i}"))).unwrap(),
            op: i32::MIN + i as i32,
            from: i64::MIN + i as i64,
            ts_ms: i64::MAX - i as i64,
            body: body.clone(),
            dedupe: true,
        })
        .collect();
    fx.store.append(sent.clone()).await.unwrap();

    let page = fx.store.read(-3, 0, 100, usize::MAX).await.unwrap();
    assert_eq!(page.entries.len(), sent.len());
    for (got, sent) in page.entries.iter().zip(&sent) {
        assert_eq!(got.id, sent.id);
        assert_eq!(
            (got.op, got.from, got.ts_ms),
            (sent.op, sent.from, sent.ts_ms)
        );
        assert!(got.body == sent.body, "body of seq {} differs", got.seq);
    }
    let back = fx
        .store
        .read_back(-3, u32::MAX, 100, usize::MAX)
        .await
        .unwrap();
    let mut back = back.entries;
    back.reverse();
    assert_eq!(back, page.entries);
    // A duplicate of an odd id is found again.
    let again = fx.store.append(vec![sent[0].clone()]).await.unwrap();
    assert_eq!((again[0].seq, again[0].duplicate), (1, true));
}

async fn expired_messages_keep_the_epoch_and_leave_first_past_top(target: Target) {
    let config = MailboxConfig {
        idle_ttl: Duration::from_secs(1),
        meta_ttl: Duration::from_secs(600),
        ..MailboxConfig::default()
    };
    let fx = Fixture::new(target, config).await;
    let batch = (1..=5).map(|i| entry(1, &format!("m{i}"), "x")).collect();
    let appended = fx.store.append(batch).await.unwrap();
    let epoch = appended[0].epoch;
    let data_ttl = fx.pttl(&fx.data(1)).await;
    assert!((1..=1000).contains(&data_ttl), "data ttl {data_ttl}");
    assert!(fx.pttl(&fx.meta(1)).await > 500_000, "meta outlives data");
    assert!(fx.pttl(&fx.idem(1, "m1")).await > 80_000_000, "24h window");

    fx.until_gone(&fx.data(1)).await;
    let cursor = fx.store.cursor(1).await.unwrap();
    assert_eq!(cursor.epoch, epoch, "the epoch outlives the messages");
    assert_eq!((cursor.first, cursor.top), (6, 5), "everything is gone");
    let e = epoch.to_string();
    assert!(
        cursor.complete(Some(&e), 5),
        "a client holding all misses none"
    );
    assert!(
        !cursor.complete(Some(&e), 3),
        "a client at 3 missed 4 and 5"
    );
    assert!(!cursor.complete(None, 0));
    let page = fx.store.read(1, 0, 100, usize::MAX).await.unwrap();
    assert_eq!((page.first, page.top, page.more), (6, 5, false));
    assert!(page.entries.is_empty());

    let appended = fx
        .store
        .append(vec![entry(1, "m6", "y"), entry(1, "m1", "retry")])
        .await
        .unwrap();
    let placed: Vec<(u32, bool)> = appended.iter().map(|a| (a.seq, a.duplicate)).collect();
    assert_eq!(placed, [(6, false), (1, true)], "ids outlive the messages");
    assert!(appended.iter().all(|a| a.epoch == epoch));
    let page = fx.store.read(1, 0, 100, usize::MAX).await.unwrap();
    assert_eq!((page.first, page.top, page.entries.len()), (6, 6, 1));
}

async fn a_lost_mailbox_state_starts_a_new_epoch(target: Target) {
    let fx = Fixture::new(target, config()).await;
    let appended = fx
        .store
        .append(vec![entry(1, "a", "1"), entry(1, "b", "2")])
        .await
        .unwrap();
    let old = appended[0].epoch;
    fx.store.set_read(1, 2).await.unwrap();
    // What a restart without AOF, or an eviction, does to the meta hash.
    let mut raw = fx.raw.clone();
    redis::cmd("DEL")
        .arg(fx.meta(1))
        .query_async::<i64>(&mut raw)
        .await
        .unwrap();

    let cursor = fx.store.cursor(1).await.unwrap();
    assert_ne!(cursor.epoch, old, "a new history");
    assert_eq!((cursor.first, cursor.top, cursor.read), (1, 0, 0));
    assert!(!cursor.complete(Some(&old.to_string()), 2));
    assert!(
        !fx.exists(&fx.data(1)).await,
        "the old history's messages are dropped"
    );
    let appended = fx.store.append(vec![entry(1, "a", "again")]).await.unwrap();
    assert_eq!(
        (appended[0].seq, appended[0].duplicate, appended[0].epoch),
        (1, false, cursor.epoch),
        "an id of the lost history is not a duplicate"
    );
    let page = fx.store.read(1, 0, 10, usize::MAX).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].body, "again");
}

async fn an_expired_mailbox_state_starts_a_new_epoch(target: Target) {
    let config = MailboxConfig {
        idle_ttl: Duration::from_secs(1),
        meta_ttl: Duration::from_secs(1),
        ..MailboxConfig::default()
    };
    let fx = Fixture::new(target, config).await;
    let old = fx.store.append(vec![entry(1, "a", "1")]).await.unwrap()[0].epoch;
    fx.until_gone(&fx.meta(1)).await;
    let cursor = fx.store.cursor(1).await.unwrap();
    assert_ne!(cursor.epoch, old);
    assert_eq!((cursor.first, cursor.top), (1, 0));
    assert!(!cursor.complete(Some(&old.to_string()), 1));
}

async fn a_message_id_is_forgotten_after_the_window(target: Target) {
    let config = MailboxConfig {
        idempotency_window: Duration::from_secs(1),
        ..config()
    };
    let fx = Fixture::new(target, config).await;
    let first = fx.store.append(vec![entry(1, "a", "1")]).await.unwrap();
    let again = fx.store.append(vec![entry(1, "a", "2")]).await.unwrap();
    assert_eq!(
        (first[0].seq, again[0].seq, again[0].duplicate),
        (1, 1, true)
    );
    fx.until_gone(&fx.idem(1, "a")).await;
    let later = fx.store.append(vec![entry(1, "a", "3")]).await.unwrap();
    assert_eq!((later[0].seq, later[0].duplicate), (2, false));
}

async fn concurrent_appenders_get_dense_unique_seqs(target: Target) {
    const TASKS: usize = 8;
    const BATCHES: usize = 25;
    const BATCH: usize = 8;
    let config = MailboxConfig {
        max_len: 10_000,
        ..config()
    };
    let fx = Fixture::new(target, config.clone()).await;
    // Two stores, two connections: the appends really race in Redis.
    let other = RedisStore::connect_to(&fx.target, &fx.prefix, config, TIMEOUT)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = if t % 2 == 0 {
            fx.store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for b in 0..BATCHES {
                let batch = (0..BATCH)
                    .map(|i| entry(1, &format!("t{t}-{b}-{i}"), format!("{t}-{b}-{i}")))
                    .collect();
                let appended = store.append(batch).await.unwrap();
                assert!(appended.iter().all(|a| !a.duplicate));
                seqs.extend(appended.iter().map(|a| a.seq));
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one appender's entries keep their order"
        );
        all.extend(seqs);
    }
    all.sort_unstable();
    let total = (TASKS * BATCHES * BATCH) as u32;
    assert_eq!(all, (1..=total).collect::<Vec<_>>());
    let page = fx.store.read(1, 0, 10_000, usize::MAX).await.unwrap();
    assert_eq!((page.first, page.top), (1, total));
    let bodies: HashSet<Bytes> = page.entries.iter().map(|e| e.body.clone()).collect();
    assert_eq!(bodies.len(), total as usize, "every message stored once");
}

async fn no_seq_is_given_past_max_seq(target: Target) {
    let fx = Fixture::new(target, config()).await;
    fx.store.append(vec![entry(1, "a", "1")]).await.unwrap();
    let mut raw = fx.raw.clone();
    redis::cmd("HSET")
        .arg(fx.meta(1))
        .arg("s")
        .arg(MAX_SEQ - 1)
        .query_async::<i64>(&mut raw)
        .await
        .unwrap();
    let refused = fx
        .store
        .append(vec![
            entry(1, "last", "x"),
            entry(1, "over", "y"),
            entry(2, "b", "z"),
        ])
        .await;
    assert_eq!(refused, Err(MailboxError::SeqExhausted { mid: 1 }));
    // The batch is not all or nothing: what fitted is stored, and a retry
    // finds it.
    assert_eq!(fx.store.cursor(1).await.unwrap().top, MAX_SEQ);
    assert_eq!(fx.store.cursor(2).await.unwrap().top, 1);
    let retry = fx
        .store
        .append(vec![entry(1, "last", "x"), entry(2, "b", "z")])
        .await
        .unwrap();
    let placed: Vec<(i64, u32, bool)> = retry.iter().map(|a| (a.mid, a.seq, a.duplicate)).collect();
    assert_eq!(placed, [(1, MAX_SEQ, true), (2, 1, true)]);
    let page = fx.store.read(1, MAX_SEQ - 1, 10, usize::MAX).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!((page.entries[0].seq, page.more), (MAX_SEQ, false));
    fx.store.set_read(1, u32::MAX).await.unwrap();
    assert_eq!(fx.store.cursor(1).await.unwrap().read, MAX_SEQ);
}

async fn scripts_redis_forgot_are_loaded_again(target: Target) {
    let fx = Fixture::new(target, config()).await;
    let flush = async || {
        let mut raw = fx.raw.clone();
        redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
    };
    flush().await;
    let appended = fx
        .store
        .append(vec![
            entry(1, "a", "1"),
            entry(2, "b", "2"),
            entry(1, "c", "3"),
        ])
        .await
        .unwrap();
    assert_eq!(appended[2].seq, 2);
    flush().await;
    let ack = |mid, seq| Ack {
        mid,
        key: "phone".to_owned(),
        seq,
    };
    fx.store.ack(vec![ack(1, 2), ack(2, 1)]).await.unwrap();
    flush().await;
    fx.store.set_read(1, 1).await.unwrap();
    flush().await;
    fx.store.trim(1, 1).await.unwrap();
    flush().await;
    let page = fx.store.read(1, 0, 10, usize::MAX).await.unwrap();
    assert_eq!((page.first, page.top, page.entries.len()), (2, 2, 1));
    flush().await;
    let cursor = fx.store.cursor(1).await.unwrap();
    assert_eq!((cursor.read, cursor.devices["phone"].ack), (1, 2));
}

async fn durability_reports_the_aof_setting(target: Target) {
    let fx = Fixture::new(target, config()).await;
    let mut raw = fx.raw.clone();
    let appendonly: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut raw)
        .await
        .unwrap();
    let durability = fx.store.durability().await.unwrap();
    if appendonly[1] == "no" {
        // scripts/services.sh runs the test Redis this way.
        assert_eq!(durability, RedisDurability::NoAof);
        assert!(!durability.is_durable());
        assert_eq!(durability.to_string(), "appendonly no");
    } else {
        assert!(!matches!(
            durability,
            RedisDurability::Unknown(_) | RedisDurability::NoAof
        ));
    }
}

/// Every key one user's operations write carries the user's hash tag, so
/// they share one slot; on a cluster each operation (a script over several
/// of them) runs, which Redis refuses with CROSSSLOT otherwise. A group's
/// set is one key, under the gid's tag.
#[tokio::test]
async fn one_users_keys_share_one_slot_on_the_cluster() {
    let Some(seeds) = services::redis_cluster() else {
        return;
    };
    let fx = Fixture::new(Target::Cluster(seeds), config()).await;
    let mid = 4242;
    let appended = fx
        .store
        .append(vec![
            entry(mid, "a", "1"),
            entry(mid, "b", "2"),
            entry(mid, "c", "3"),
        ])
        .await
        .unwrap();
    assert_eq!(
        appended.iter().map(|a| a.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        fx.store
            .read(mid, 0, 10, usize::MAX)
            .await
            .unwrap()
            .entries
            .len(),
        3
    );
    assert_eq!(
        fx.store
            .read_back(mid, 4, 1, usize::MAX)
            .await
            .unwrap()
            .entries[0]
            .seq,
        3
    );
    fx.store
        .ack(vec![Ack {
            mid,
            key: "phone".into(),
            seq: 2,
        }])
        .await
        .unwrap();
    fx.store.set_read(mid, 2).await.unwrap();
    fx.store.trim(mid, 1).await.unwrap();
    let cursor = fx.store.cursor(mid).await.unwrap();
    assert_eq!((cursor.first, cursor.top, cursor.read), (2, 3, 2));
    fx.store.set_mute(mid, "all", None).await.unwrap();
    assert_eq!(fx.store.mutes(mid).await.unwrap().len(), 1);
    assert_eq!(fx.store.add_members(77, &[mid, 1, 2]).await.unwrap(), 3);
    assert!(fx.store.is_member(77, mid).await.unwrap());

    let mut raw = fx.raw.clone();
    let mut keys = raw.scan(&format!("{}*", fx.prefix)).await.unwrap();
    keys.sort();
    let mut want = vec![
        fx.data(mid),
        fx.meta(mid),
        fx.idem(mid, "a"),
        fx.idem(mid, "b"),
        fx.idem(mid, "c"),
        fx.mutes(mid),
        fx.group(77),
    ];
    want.sort();
    assert_eq!(keys, want, "the store wrote only the documented keys");
    let mut slots = HashSet::new();
    for key in keys.iter().filter(|k| **k != fx.group(77)) {
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        slots.insert(slot);
    }
    assert_eq!(slots.len(), 1, "one user's keys share a slot: {slots:?}");
}

/// Needs no Redis: nothing listens on port 1.
#[tokio::test]
async fn bad_settings_and_an_unreachable_redis_are_refused() {
    let connect = |url: &'static str, prefix: &'static str| {
        RedisStore::connect(
            url,
            prefix,
            MailboxConfig::default(),
            Duration::from_secs(1),
        )
    };
    let braces = connect("redis://127.0.0.1:1/", "rim:{mb}:").await;
    assert!(matches!(braces, Err(MailboxError::Config(_))), "{braces:?}");
    let url = connect("nonsense://x", RedisStore::DEFAULT_PREFIX).await;
    assert!(matches!(url, Err(MailboxError::Config(_))), "{url:?}");
    let down = tokio::time::timeout(
        Duration::from_secs(10),
        connect("redis://127.0.0.1:1/", RedisStore::DEFAULT_PREFIX),
    )
    .await
    .expect("a refused connection fails within the bound");
    assert!(
        matches!(down, Err(MailboxError::Unavailable(_))),
        "{down:?}"
    );
}

fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_millis()).unwrap()
}

async fn groups_and_mutes_live_in_the_documented_keys(target: Target) {
    let fx = Fixture::new(target, config()).await;
    let mut raw = fx.raw.clone();
    fx.store.add_members(9, &[2, -1]).await.unwrap();
    let mut members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(fx.group(9))
        .query_async(&mut raw)
        .await
        .unwrap();
    members.sort();
    assert_eq!(members, ["-1", "2"]);
    assert_eq!(
        fx.pttl(&fx.group(9)).await,
        -1,
        "membership does not expire"
    );
    fx.store.remove_members(9, &[2, -1]).await.unwrap();
    assert!(!fx.exists(&fx.group(9)).await, "an emptied group is gone");

    // Timed mutes only: the hash expires with the last one.
    let later = now_ms() + 600_000;
    fx.store.set_mute(1, "group:9", Some(later)).await.unwrap();
    fx.store
        .set_mute(1, "room:live://1", Some(later - 300_000))
        .await
        .unwrap();
    let ttl = fx.pttl(&fx.mutes(1)).await;
    assert!((590_000..=600_000).contains(&ttl), "mute hash ttl {ttl}");
    // A mute without end: no expiry, stored as "".
    fx.store.set_mute(1, "all", None).await.unwrap();
    assert_eq!(fx.pttl(&fx.mutes(1)).await, -1);
    let all: Option<String> = redis::cmd("HGET")
        .arg(fx.mutes(1))
        .arg("all")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(all.as_deref(), Some(""));
    fx.store.clear_mute(1, Some("all")).await.unwrap();
    let ttl = fx.pttl(&fx.mutes(1)).await;
    assert!((590_000..=600_000).contains(&ttl), "expiry again: {ttl}");
    // Ends beyond what Redis accepts as an expiry are capped, not refused.
    fx.store.set_mute(1, "far", Some(i64::MAX)).await.unwrap();
    assert!(fx.pttl(&fx.mutes(1)).await > 600_000);
    fx.store.clear_mute(1, None).await.unwrap();
    assert!(!fx.exists(&fx.mutes(1)).await);

    // A value this version cannot read is reported, not guessed at.
    redis::cmd("HSET")
        .arg(fx.mutes(2))
        .arg("all")
        .arg("soon")
        .query_async::<i64>(&mut raw)
        .await
        .unwrap();
    let read = fx.store.mutes(2).await;
    assert!(matches!(read, Err(MailboxError::Corrupt(_))), "{read:?}");
    redis::cmd("SADD")
        .arg(fx.group(3))
        .arg("x")
        .query_async::<i64>(&mut raw)
        .await
        .unwrap();
    let read = fx.store.members(3).await;
    assert!(matches!(read, Err(MailboxError::Corrupt(_))), "{read:?}");
}

/// The next report of `watch`, within a deadline.
async fn next_change(watch: &mut MuteWatch) -> MuteChange {
    tokio::time::timeout(Duration::from_secs(10), watch.recv())
        .await
        .expect("no mute change reported within 10 s")
        .expect("the mute watch ended")
}

/// The ids of the clients in pub/sub mode (on the node `raw` is connected to).
async fn pubsub_clients(raw: &mut MultiplexedConnection) -> HashSet<u64> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(raw)
        .await
        .unwrap();
    list.lines()
        .filter_map(|line| line.strip_prefix("id="))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// On a cluster the watch subscribes on the first seed node, and the mute
/// scripts publish on the master of each user's slot: the changes cross the
/// cluster bus.
async fn mute_changes_reach_a_watch_also_after_its_connection_is_killed(target: Target) {
    let fx = Fixture::new(target, config()).await;
    // The node the watch subscribes on (the first seed of a cluster).
    let mut raw = redis::Client::open(fx.target.urls()[0].as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Another process's store under the same prefix, and one under another.
    let setter = RedisStore::connect_to(&fx.target, &fx.prefix, config(), TIMEOUT)
        .await
        .unwrap();
    let elsewhere = format!("{}:", services::unique("rim-test-mb"));
    let elsewhere = RedisStore::connect_to(&fx.target, &elsewhere, config(), TIMEOUT)
        .await
        .unwrap();

    let before = pubsub_clients(&mut raw).await;
    let mut watch = fx.store.watch_mutes();
    assert_eq!(next_change(&mut watch).await, MuteChange::All, "subscribed");
    let ours: Vec<u64> = pubsub_clients(&mut raw)
        .await
        .difference(&before)
        .copied()
        .collect();
    assert!(!ours.is_empty(), "the watch's connection is listed");

    setter.set_mute(7, "all", None).await.unwrap();
    assert_eq!(next_change(&mut watch).await, MuteChange::Mid(7));
    setter
        .set_mute(-8, "group:9", Some(now_ms() + 60_000))
        .await
        .unwrap();
    assert_eq!(next_change(&mut watch).await, MuteChange::Mid(-8));
    elsewhere.set_mute(5, "all", None).await.unwrap();
    setter.clear_mute(7, Some("all")).await.unwrap();
    assert_eq!(
        next_change(&mut watch).await,
        MuteChange::Mid(7),
        "another prefix is not heard"
    );
    setter.clear_mute(-8, None).await.unwrap();
    assert_eq!(next_change(&mut watch).await, MuteChange::Mid(-8));
    setter.set_mute(9, "all", Some(0)).await.unwrap();
    assert_eq!(
        next_change(&mut watch).await,
        MuteChange::Mid(9),
        "a lift by a past end is a change too"
    );
    // 30 users: on a cluster their slots are on every master (all on the
    // subscribed one has odds of 3^-30), and each change is heard.
    for mid in 100..130 {
        setter.set_mute(mid, "all", None).await.unwrap();
    }
    let mut heard = HashSet::new();
    while heard.len() < 30 {
        match next_change(&mut watch).await {
            MuteChange::Mid(mid) => assert!(heard.insert(mid), "{mid} heard twice"),
            MuteChange::All => panic!("a full report while connected"),
        }
    }
    assert_eq!(heard, (100..130).collect());

    // What a Redis restart does to the subscriber, limited to this watch's
    // connection so that other tests' subscribers are left alone.
    for id in ours {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .arg("ID")
            .arg(id)
            .query_async::<i64>(&mut raw)
            .await
            .unwrap();
    }
    assert_eq!(
        next_change(&mut watch).await,
        MuteChange::All,
        "subscribed again, and whatever was missed meanwhile is covered"
    );
    setter.set_mute(7, "room:live://1", None).await.unwrap();
    assert_eq!(next_change(&mut watch).await, MuteChange::Mid(7));
    assert_eq!(
        fx.store.mutes(7).await.unwrap().len(),
        1,
        "the reported change is readable"
    );
}
