//! The Kafka consumer against a real Kafka-protocol broker (Tansu, started by
//! scripts/services.sh; address from RIM_TEST_KAFKA): records reach the comet,
//! and offsets are committed only after the comet accepted them, in
//! consumption order across comets.

use std::sync::Arc;
use std::time::Duration;

use rim_job::testing::FakeComet;
use rim_job::{CometClient, Job};
use rim_proto::pb::logic::{push_msg::Type, PushMsg};
use rim_queue::kafka::{KafkaConfig, KafkaQueue, KafkaSource};
use rim_queue::{PushQueue, QueueError};
use rim_testkit::poll;
use rim_testkit::services::{self, unique};
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

/// A comet that accepts pushes, except those whose body starts with `hang`:
/// it never answers them.
fn new_comet() -> Arc<FakeComet> {
    FakeComet::holding(b"hang")
}

/// How long a test waits for a delivery, and how often it looks.
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

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

fn job(comets: &[(&str, &Arc<FakeComet>)]) -> Arc<Job> {
    let job = Job::new(rim_job::Config {
        push_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(300),
        // One call per record: the fake comet holds the calls of hang-*
        // records, and these tests need the others in calls of their own.
        push_batch: 1,
        ..rim_job::Config::default()
    });
    for (name, comet) in comets {
        job.add_comet(name, Arc::clone(comet) as Arc<dyn CometClient>);
    }
    job
}

/// The bodies `comet` accepted that start with `prefix`, in order.
fn bodies(comet: &FakeComet, prefix: &str) -> Vec<String> {
    comet
        .bodies()
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
    let comet = new_comet();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &comet)]),
        config(&broker, &topic, &unique("g")),
        stop.clone(),
    ));
    poll::until("50 records never arrived", WAIT, POLL, async || {
        comet.bodies().len() >= 50
    })
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
    let comet = new_comet();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &comet)]),
        config(&broker, &topic, &group),
        stop.clone(),
    ));
    poll::until(
        "ok-* not all delivered, or hang-0 not in flight",
        WAIT,
        POLL,
        async || comet.bodies().len() == 3 && comet.held() >= 1,
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();

    // A new job in the group starts after the accepted records: it gets every
    // hang-* record again and none of the ok-* ones.
    let again = new_comet();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &again)]),
        config(&broker, &topic, &group),
        stop.clone(),
    ));
    poll::until("hang-0 never redelivered", WAIT, POLL, async || {
        again.held() >= 1
    })
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

    let hung = new_comet();
    let fast = new_comet();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &hung), ("comet-2", &fast)]),
        config(&broker, &topic, &group),
        stop.clone(),
    ));
    poll::until(
        "ok-0 and ok-1 never accepted by comet-2",
        WAIT,
        POLL,
        async || fast.bodies().len() == 2,
    )
    .await;
    poll::until("hang never in flight on comet-1", WAIT, POLL, async || {
        hung.held() == 1
    })
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
    let hung = new_comet();
    let fast = new_comet();
    let stop = CancellationToken::new();
    let task = tokio::spawn(consume(
        job(&[("comet-1", &hung), ("comet-2", &fast)]),
        config(&broker, &topic, &group),
        stop.clone(),
    ));
    poll::until(
        "the new job never delivered the marker",
        WAIT,
        POLL,
        async || bodies(&fast, "marker").len() == 1,
    )
    .await;
    poll::until(
        "hang not redelivered to comet-1 (the committed offset passed it)",
        Duration::from_secs(10),
        POLL,
        async || hung.held() == 1,
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
}
