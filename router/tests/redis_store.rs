//! The Redis shard against a real redis-server (started by scripts/services.sh;
//! its address comes from RIM_TEST_REDIS).

use std::collections::HashMap;
use std::time::Duration;

use rim_router::{RedisStore, ServerOnline, SessionStore};
use rim_testkit::services::{self, unique};

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

fn store(url: &str) -> RedisStore {
    RedisStore::new(url, Duration::from_secs(60), Duration::from_secs(2)).expect("redis url parses")
}

#[tokio::test]
async fn sessions_round_trip_in_goim_layout() {
    let Some(url) = services::redis() else { return };
    let store = store(&url);
    store.ping().await.expect("redis answers PING");
    let key = unique("key");
    let mid = (rand_suffix() >> 2) as i64;
    store.set_key(&key, "comet-a").await.unwrap();
    store.add_mid_key(mid, &key, "comet-a").await.unwrap();

    // goim's layout, readable by goim itself.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("key_{key}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(raw.as_deref(), Some("comet-a"));
    let hash: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(format!("mid_{mid}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(hash, HashMap::from([(key.clone(), "comet-a".to_owned())]));
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("key_{key}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");

    assert_eq!(
        store
            .get_keys(&[key.clone(), unique("missing")])
            .await
            .unwrap(),
        vec![Some("comet-a".into()), None]
    );
    assert_eq!(
        store.get_mids(&[mid]).await.unwrap(),
        vec![(key.clone(), "comet-a".into())]
    );
    assert!(store.expire_key(&key).await.unwrap());
    assert!(store.expire_mid(mid).await.unwrap());

    // A newer session of the same key on another comet survives the old one's delete.
    store.set_key(&key, "comet-b").await.unwrap();
    store.add_mid_key(mid, &key, "comet-b").await.unwrap();
    assert!(!store.del_key(&key, "comet-a").await.unwrap());
    assert!(!store.del_mid_key(mid, &key, "comet-a").await.unwrap());
    assert_eq!(
        store.get_keys(std::slice::from_ref(&key)).await.unwrap(),
        vec![Some("comet-b".into())]
    );
    assert!(store.del_key(&key, "comet-b").await.unwrap());
    assert!(store.del_mid_key(mid, &key, "comet-b").await.unwrap());
    assert!(store.get_mids(&[mid]).await.unwrap().is_empty());
    assert!(!store.expire_key(&key).await.unwrap());
}

#[tokio::test]
async fn online_reports_replace_old_rooms_and_list_servers() {
    let Some(url) = services::redis() else { return };
    let store = store(&url);
    let server = unique("comet");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut report = ServerOnline {
        server: server.clone(),
        room_count: HashMap::from([("live://1".into(), 3), ("live://2".into(), 1)]),
        conn_count: 4,
        ip_count: 2,
        addrs: vec!["127.0.0.1:3101".into()],
        weight: 1,
        updated: now,
        grpc_addr: "127.0.0.1:3109".into(),
    };
    store.put_online(&report).await.unwrap();
    report.room_count = HashMap::from([("live://1".into(), 2)]);
    store.put_online(&report).await.unwrap();
    let all = store.online().await.unwrap();
    let mine: Vec<&ServerOnline> = all.iter().filter(|r| r.server == server).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0], &report, "live://2 emptied and must not linger");

    let key = unique("key");
    store.set_key(&key, &server).await.unwrap();
    assert_eq!(store.del_server(&server).await.unwrap(), 1);
    assert!(store
        .online()
        .await
        .unwrap()
        .iter()
        .all(|r| r.server != server));
    assert_eq!(store.get_keys(&[key]).await.unwrap(), vec![None]);
}

#[tokio::test]
async fn unreachable_redis_fails_fast_with_a_clear_error() {
    // Port 1 on loopback refuses connections; no service needed for this test.
    let store = RedisStore::new(
        "redis://127.0.0.1:1/",
        Duration::from_secs(60),
        Duration::from_millis(300),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let err = store.set_key("k", "c").await.unwrap_err();
    assert!(err.to_string().contains("redis"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}
