//! Router shards served over real gRPC (tonic on 127.0.0.1:0), composed by the ring.

use std::sync::Arc;
use std::time::Duration;

use rim_router::grpc::{serve, RemoteStore};
use rim_router::{MemoryStore, Router, SessionStore};
use tokio_util::sync::CancellationToken;

async fn start_shard(shutdown: &CancellationToken) -> (String, Arc<MemoryStore>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let store = Arc::new(MemoryStore::new(Duration::from_secs(60)));
    tokio::spawn(serve(store.clone(), listener, shutdown.clone()));
    (addr, store)
}

#[tokio::test]
async fn logic_side_router_spreads_users_over_remote_shards() {
    let shutdown = CancellationToken::new();
    let (addr_a, store_a) = start_shard(&shutdown).await;
    let (addr_b, store_b) = start_shard(&shutdown).await;
    let shards: Vec<(String, Arc<dyn SessionStore>)> = vec![
        (
            "a".into(),
            Arc::new(RemoteStore::new(&addr_a, Duration::from_secs(2)).unwrap()),
        ),
        (
            "b".into(),
            Arc::new(RemoteStore::new(&addr_b, Duration::from_secs(2)).unwrap()),
        ),
    ];
    let router = Router::new(shards).unwrap();
    for mid in 1..=40i64 {
        router
            .add_mapping(mid, &format!("k{mid}"), "comet-1")
            .await
            .unwrap();
    }
    // Both shards hold some users.
    let on_a = store_a
        .get_mids(&(1..=40).collect::<Vec<_>>())
        .await
        .unwrap()
        .len();
    let on_b = store_b
        .get_mids(&(1..=40).collect::<Vec<_>>())
        .await
        .unwrap()
        .len();
    assert_eq!(on_a + on_b, 40);
    assert!(on_a > 0 && on_b > 0, "a={on_a} b={on_b}");

    let keys: Vec<String> = (1..=40).map(|m| format!("k{m}")).collect();
    let servers = router.servers_by_keys(&keys).await.unwrap();
    assert!(servers.iter().all(|s| s.as_deref() == Some("comet-1")));
    assert_eq!(
        router.keys_by_mids(&[7]).await.unwrap(),
        vec![("k7".into(), "comet-1".into())]
    );
    assert!(router.del_mapping(7, "k7", "comet-1").await.unwrap());
    assert!(router.keys_by_mids(&[7]).await.unwrap().is_empty());
    shutdown.cancel();
}

#[tokio::test]
async fn room_records_round_trip_through_remote_shards() {
    let shutdown = CancellationToken::new();
    let (addr_a, store_a) = start_shard(&shutdown).await;
    let (addr_b, store_b) = start_shard(&shutdown).await;
    let shards: Vec<(String, Arc<dyn SessionStore>)> = vec![
        (
            "a".into(),
            Arc::new(RemoteStore::new(&addr_a, Duration::from_secs(2)).unwrap()),
        ),
        (
            "b".into(),
            Arc::new(RemoteStore::new(&addr_b, Duration::from_secs(2)).unwrap()),
        ),
    ];
    let router = Router::new(shards).unwrap();
    let rooms: Vec<String> = (0..30).map(|i| format!("live://{i}")).collect();
    let ttl = Duration::from_secs(60);
    router.announce_rooms("comet-1", &rooms, ttl).await.unwrap();
    router
        .announce_rooms("comet-2", &rooms[..5], ttl)
        .await
        .unwrap();
    // Both shards hold some rooms, each room one shard.
    let on_a = store_a.room_servers(&rooms).await.unwrap();
    let on_b = store_b.room_servers(&rooms).await.unwrap();
    let held = |v: &[Vec<String>]| v.iter().filter(|s| !s.is_empty()).count();
    assert_eq!(held(&on_a) + held(&on_b), 30);
    assert!(held(&on_a) > 0 && held(&on_b) > 0);
    let servers = router.room_servers(&rooms).await.unwrap();
    for (i, mut servers) in servers.into_iter().enumerate() {
        servers.sort();
        let want: Vec<String> = if i < 5 {
            vec!["comet-1".into(), "comet-2".into()]
        } else {
            vec!["comet-1".into()]
        };
        assert_eq!(servers, want, "room {i}");
    }
    // A zero ttl would record nothing: refused.
    let direct = RemoteStore::new(&addr_a, Duration::from_secs(2)).unwrap();
    let err = direct
        .announce_rooms("comet-1", &rooms, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ttl_ms"), "{err}");
    shutdown.cancel();
}

#[tokio::test]
async fn refused_router_connection_is_a_clear_error() {
    // Port 1 refuses at once; the deadline against a router that never
    // answers is tested in grpc_deadlines.rs.
    let store = RemoteStore::new("127.0.0.1:1", Duration::from_millis(300)).unwrap();
    let started = tokio::time::Instant::now();
    let err = store.set_key("k", "c").await.unwrap_err();
    assert!(err.to_string().contains("router 127.0.0.1:1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
