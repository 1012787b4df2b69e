//! The Kafka consumer against a real Kafka-protocol broker (Tansu, started by
//! scripts/services.sh; address from RIM_TEST_KAFKA): records reach the comet,
//! and offsets are committed only after the comet accepted them, in
//! consumption order across comets.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rim_job::{CometCallError, CometClient, Job};
use rim_proto::pb::comet::{BroadcastReq, BroadcastRoomReq, PushMsgReq};
use rim_proto::pb::logic::{push_msg::Type, PushMsg};
use rim_queue::kafka::{KafkaConfig, KafkaQueue, KafkaSource};
use rim_queue::{PushQueue, QueueError};
use rim_testkit::services::{self, unique};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The distributed job's consumer: `job` over a Kafka source until `stop`.
async fn consume(
    job: Arc<Job>,
    config: KafkaConfig,
    stop: CancellationToken,
) -> Result<(), QueueError> {
    let source = KafkaSource::new(&config)?;
    job.consume(source, stop).await;
    Ok(())
}

/// Records keyed pushes; never answers pushes whose body starts with `hang`.
struct Recorder {
    bodies: Mutex<Vec<Vec<u8>>>,
    hanging: Mutex<usize>,
    changed: Notify,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            bodies: Mutex::new(Vec::new()),
            hanging: Mutex::new(0),
            changed: Notify::new(),
        })
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&Recorder) -> bool) {
        self.wait_within(Duration::from_secs(60), what, done).await
    }

    async fn wait_within(&self, within: Duration, what: &str, done: impl Fn(&Recorder) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if done(self) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
    }
}

#[async_trait]
impl CometClient for Recorder {
    async fn push_msg(&self, req: PushMsgReq) -> Result<(), CometCallError> {
        let inner = req.proto.map(|p| p.body.to_vec()).unwrap_or_default();
        let body = inner[16..].to_vec();
        if body.starts_with(b"hang") {
            *self.hanging.lock() += 1;
            self.changed.notify_waiters();
            std::future::pending::<()>().await;
        }
        self.bodies.lock().push(body);
        self.changed.notify_waiters();
        Ok(())
    }
    async fn broadcast(&self, _req: BroadcastReq) -> Result<(), CometCallError> {
        Ok(())
    }
    async fn broadcast_room(&self, _req: BroadcastRoomReq) -> Result<(), CometCallError> {
        Ok(())
    }
}

/// Produces push records for `server`, all with key `k` (one partition).
async fn produce(broker: &str, topic: &str, server: &str, bodies: impl Iterator<Item = String>) {
    let queue = KafkaQueue::new(&KafkaConfig {
        brokers: vec![broker.to_owned()],
        topic: topic.to_owned(),
        timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    })
    .unwrap();
    for body in bodies {
        let msg = PushMsg {
            r#type: Type::Push as i32,
            operation: 1000,
            server: server.into(),
            keys: vec!["k".into()],
            msg: body.into_bytes().into(),
            ..PushMsg::default()
        };
        queue.publish("k", msg).await.unwrap();
    }
}

fn config(broker: &str, topic: &str, group: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: vec![broker.to_owned()],
        topic: topic.to_owned(),
        group: group.to_owned(),
        session_timeout: Duration::from_secs(6),
        ..KafkaConfig::default()
    }
}

fn job(comets: &[(&str, &Arc<Recorder>)]) -> Arc<Job> {
    let job = Job::new(rim_job::Config {
        push_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(300),
        ..rim_job::Config::default()
    });
    for (name, comet) in comets {
        job.add_comet(name, Arc::clone(comet) as Arc<dyn CometClient>);
    }
    job
}

fn bodies(comet: &Recorder, prefix: &str) -> Vec<String> {
    comet
        .bodies
        .lock()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .filter(|b| b.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn records_reach_the_comet_in_order() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = unique("rim-test-consume");
    produce(&broker, &topic, "comet-1", (0..50).map(|i| format!("m{i}"))).await;
    let comet = Recorder::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &comet)]),
        config(&broker, &topic, &unique("g")),
        stop.clone(),
    ));
    comet
        .wait_until("50 records", |c| c.bodies.lock().len() >= 50)
        .await;
    let expected: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies(&comet, "m"), expected);
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn unaccepted_records_stay_uncommitted_and_a_new_job_redelivers_them() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = unique("rim-test-redeliver");
    let group = unique("g");
    let names = ["ok-0", "ok-1", "ok-2", "hang-0", "hang-1", "hang-2"];
    produce(
        &broker,
        &topic,
        "comet-1",
        names.iter().map(|s| s.to_string()),
    )
    .await;

    // The comet accepts the ok-* records and never answers the hang-* ones;
    // the job is stopped while they are in flight.
    let comet = Recorder::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &comet)]),
        config(&broker, &topic, &group),
        stop.clone(),
    ));
    comet
        .wait_until("ok-* delivered and hang-0 in flight", |c| {
            c.bodies.lock().len() == 3 && *c.hanging.lock() >= 1
        })
        .await;
    stop.cancel();
    task.await.unwrap().unwrap();

    // A new job in the group starts after the accepted records: it gets every
    // hang-* record again and none of the ok-* ones.
    let again = Recorder::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &again)]),
        config(&broker, &topic, &group),
        stop.clone(),
    ));
    again
        .wait_until("hang-0 redelivered", |c| *c.hanging.lock() >= 1)
        .await;
    assert!(
        bodies(&again, "ok").is_empty(),
        "accepted records were not committed: {:?}",
        bodies(&again, "ok")
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// README: "a comet that fails fast never lets the offset pass a delivery
/// still queued for another comet". Record 0 waits on comet-1, which never
/// answers, while records 1 and 2 are accepted by comet-2: an offset stored
/// as each delivery finishes (rather than in consumption order) would commit
/// past record 0, and a new job would never see it again.
#[tokio::test]
async fn an_accepted_record_never_commits_past_one_in_flight_on_another_comet() {
    let Some(broker) = services::kafka() else {
        return;
    };
    let topic = unique("rim-test-in-order");
    let group = unique("g");
    produce(&broker, &topic, "comet-1", ["hang".to_owned()].into_iter()).await;
    produce(
        &broker,
        &topic,
        "comet-2",
        ["ok-0", "ok-1"].map(String::from).into_iter(),
    )
    .await;

    let hung = Recorder::new();
    let fast = Recorder::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &hung), ("comet-2", &fast)]),
        config(&broker, &topic, &group),
        stop.clone(),
    ));
    fast.wait_until("ok-0 and ok-1 accepted by comet-2", |c| {
        c.bodies.lock().len() == 2
    })
    .await;
    hung.wait_until("hang in flight on comet-1", |c| *c.hanging.lock() == 1)
        .await;
    assert_eq!(bodies(&fast, ""), ["ok-0", "ok-1"]);
    stop.cancel();
    task.await.unwrap().unwrap();

    // A marker after the stop: once the new job has delivered it, it has
    // dispatched everything before it, so `hang` must be on comet-1 by then
    // (the ok-* records may come again, as duplicates).
    produce(
        &broker,
        &topic,
        "comet-2",
        ["marker".to_owned()].into_iter(),
    )
    .await;
    let hung = Recorder::new();
    let fast = Recorder::new();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &hung), ("comet-2", &fast)]),
        config(&broker, &topic, &group),
        stop.clone(),
    ));
    fast.wait_until("the marker delivered by the new job", |c| {
        bodies(c, "marker").len() == 1
    })
    .await;
    hung.wait_within(
        Duration::from_secs(10),
        "hang redelivered to comet-1 (the committed offset passed it)",
        |c| *c.hanging.lock() == 1,
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
}
