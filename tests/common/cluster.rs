//! Multi-process clusters for the distributed tests: every component is the
//! built `rim` binary in its own process, bound to 127.0.0.1:0, reporting its
//! addresses on a `READY {json}` line. Each cluster has its own Kafka topic
//! and consumer group on the suite's one broker, so clusters never see each
//! other's messages.
//!
//! A cluster's Redis is the suite's Redis (a database per test) or, with
//! [`Options::on_redis_cluster`], the suite's Redis Cluster, which has only
//! database 0 and is shared by every test on it: there the comets' server
//! ids are made unique, the tests use keys, mids and rooms of their own
//! ([`unique`], [`unique_mid`]), and a job, which discovers every comet
//! reporting to that Redis, is waited for until it has joined its own.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rim_testkit::poll;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::Http;

/// The broker and Redis the suite started (see `rim_testkit::services`).
pub fn services() -> Option<(String, String)> {
    Some((
        rim_testkit::services::kafka()?,
        rim_testkit::services::redis()?,
    ))
}

/// The broker and the seed nodes of the Redis Cluster the suite started
/// (`RIM_TEST_REDIS_CLUSTER`), checked to answer: a cluster that is not up
/// fails the test, saying how to start it.
pub async fn redis_cluster_services() -> Option<(String, Vec<String>)> {
    let kafka = rim_testkit::services::kafka()?;
    let seeds = rim_testkit::services::redis_cluster()?;
    let target = rim_redis::Target::Cluster(seeds.clone());
    let answers = async {
        let conn = rim_redis::Conn::connect(&target, Duration::from_secs(5)).await?;
        conn.on_masters(&rim_redis::redis::cmd("PING")).await
    };
    match tokio::time::timeout(Duration::from_secs(20), answers).await {
        Ok(Ok(masters)) if !masters.is_empty() => Some((kafka, seeds)),
        other => panic!(
            "the Redis Cluster at {seeds:?} (RIM_TEST_REDIS_CLUSTER) does not answer \
             ({other:?}): run `scripts/services.sh up redis-cluster`"
        ),
    }
}

pub use rim_testkit::services::unique;

/// A user id unique to this process, moment and call, for the session keys
/// (`mid_<mid>`) of tests sharing a Redis; below 2^48, so JSON keeps it exact.
pub fn unique_mid() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(unique("mid").as_bytes());
    (h.finish() >> 16) as i64 + 1
}

/// A free loopback port (for services whose advertised address must be
/// known before they start).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One rim process.
pub struct Proc {
    pub name: String,
    pub ready: Value,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `rim <kind> -c <dir>/<name>.toml --ready` and waits for its READY line.
    pub async fn spawn(dir: &Path, kind: &str, name: &str, config: &str) -> Proc {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_rim"))
            .arg(kind)
            .arg("-c")
            .arg(&path)
            .arg("--ready")
            .env("RUST_LOG", "info,rim_comet::conn=debug")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("rim binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(json) = line.strip_prefix("READY ") {
                    return Some(serde_json::from_str::<Value>(json).unwrap());
                }
            }
            None
        })
        .await;
        match ready {
            Ok(Some(ready)) => Proc {
                name: name.to_owned(),
                ready,
                child,
                log,
            },
            _ => panic!(
                "{name} ({kind}) never became ready; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }

    pub fn addr(&self, field: &str) -> String {
        self.ready[field]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no {field} in {}", self.name, self.ready))
            .to_owned()
    }

    pub fn first(&self, field: &str) -> std::net::SocketAddr {
        self.ready[field][0].as_str().unwrap().parse().unwrap()
    }

    /// Sends `sig` (as `kill` takes it, e.g. `-STOP`) to the process.
    pub fn signal(&self, sig: &str) {
        signal(&self.child, sig);
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill9(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, and wait (bounded) for a clean exit; returns whether it exited 0.
    pub async fn terminate(&mut self) -> bool {
        if self.child.id().is_some() {
            signal(&self.child, "-TERM");
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => false,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The `[[routers]]` entries naming these router processes r1, r2, ...;
/// with `direct` (the `redis_url` or `redis_cluster` line), the same shards
/// as the Redis the routers store them in, which logic and job then use
/// themselves.
fn router_list(routers: &[Proc], direct: Option<&str>) -> String {
    routers
        .iter()
        .enumerate()
        .map(|(i, r)| match direct {
            Some(redis) => format!("[[routers]]\nname = \"r{}\"\n{redis}\n", i + 1),
            None => format!(
                "[[routers]]\nname = \"r{}\"\naddr = \"{}\"\n",
                i + 1,
                r.addr("grpc")
            ),
        })
        .collect()
}

/// The routers' session store settings.
fn store_config(opts: &Options) -> String {
    match (&opts.redis_cluster, &opts.redis) {
        (Some(seeds), _) => format!("store = \"redis\"\n{}\n", cluster_line(seeds)),
        (None, Some(url)) => format!("store = \"redis\"\nredis_url = \"{url}\"\n"),
        (None, None) => "store = \"memory\"\n".to_owned(),
    }
}

/// `redis_cluster = [<seeds>]`.
fn cluster_line(seeds: &[String]) -> String {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    format!("redis_cluster = [{}]", seeds.join(", "))
}

/// With `direct_redis`, the line of `[[routers]]` naming the routers' Redis
/// (`redis_url` or `redis_cluster`) for logic and job to use themselves.
fn direct_line(opts: &Options) -> Option<String> {
    if !opts.direct_redis {
        return None;
    }
    match (&opts.redis_cluster, &opts.redis) {
        (Some(seeds), _) => Some(cluster_line(seeds)),
        (None, Some(url)) => Some(format!("redis_url = \"{url}\"")),
        (None, None) => None,
    }
}

async fn spawn_router(dir: &Path, name: &str, store: &str, bind: &str) -> Proc {
    let config = format!("grpc_bind = \"{bind}\"\nmetrics_bind = \"127.0.0.1:0\"\n{store}");
    Proc::spawn(dir, "router", name, &config).await
}

async fn spawn_logic(
    dir: &Path,
    name: &str,
    router_list: &str,
    opts: &Options,
    topic: &str,
    extra: &str,
) -> Proc {
    let (kafka, timeout) = (&opts.kafka, opts.kafka_timeout);
    let mailbox = mailbox_config(opts, topic);
    let config = format!(
        "grpc_bind = \"127.0.0.1:0\"\n{router_list}\n[logic]\nhttp_bind = \"127.0.0.1:0\"\nonline_refresh = \"100ms\"\n{extra}\n\
         [logic.auth]\nmode = \"trust\"\n[logic.api]\nopen = true\n\n\
         [kafka]\nbrokers = [\"{kafka}\"]\ntopic = \"{topic}\"\ntimeout = \"{timeout}\"\npartitions = 4\n{mailbox}"
    );
    Proc::spawn(dir, "logic", name, &config).await
}

/// Comet `i` of cluster `cluster` (server id `<cluster>-comet<i>`).
///
/// The test clients share two cores with several clusters' processes; a deep
/// session queue keeps a replay burst (after a job restart) from
/// disconnecting them as slow. The slow-client policy has its own tests.
async fn spawn_comet(
    dir: &Path,
    cluster: &str,
    i: usize,
    logic_grpc: &str,
    opts: &Options,
    extra: &str,
) -> Proc {
    let config = format!(
        "grpc_bind = \"127.0.0.1:0\"\nmetrics_bind = \"127.0.0.1:0\"\nlogic_addrs = [\"{logic_grpc}\"]\n\n[comet]\n\
         server_id = \"{cluster}-comet{i}\"\ntcp_bind = [\"127.0.0.1:0\"]\nws_bind = [\"127.0.0.1:0\"]\n\
         online_report_interval = \"{report}\"\nsession_queue = 8192\nlogic_heartbeat_interval_min = \"{r}\"\nlogic_heartbeat_interval_max = \"{r}\"\n{extra}\n",
        r = opts.session_refresh,
        report = opts.report_interval,
    );
    Proc::spawn(dir, "comet", &format!("comet{i}"), &config).await
}

/// A job; `comets` is its comet source (`[[routers]]` or `[[comets]]` tables).
async fn spawn_job(
    dir: &Path,
    opts: &Options,
    topic: &str,
    group: &str,
    comets: &str,
    name: &str,
) -> Proc {
    let (kafka, comet_ttl, push_timeout) = (&opts.kafka, opts.comet_ttl, opts.push_timeout);
    let job_room = &opts.job_room;
    let connect_timeout = opts.connect_timeout;
    let mailbox = mailbox_config(opts, topic);
    let config = format!(
        "metrics_bind = \"127.0.0.1:0\"\ndiscovery_interval = \"200ms\"\ncomet_ttl = \"{comet_ttl}\"\n\
         connect_timeout = \"{connect_timeout}\"\n{comets}\n\
         [kafka]\nbrokers = [\"{kafka}\"]\ntopic = \"{topic}\"\ngroup = \"{group}\"\nsession_timeout = \"6s\"\n\
         properties = {{ \"statistics.interval.ms\" = \"500\" }}\n\n\
         [job]\npush_timeout = \"{push_timeout}\"\nretries = 1\nroutines = {routines}\nroutine_queue = {routine_queue}\n\
         push_batch = {push_batch}\nenqueue_timeout = \"{enqueue_timeout}\"\n[job.room]\n{job_room}\n{mailbox}",
        routines = opts.routines,
        routine_queue = opts.routine_queue,
        push_batch = opts.push_batch,
        enqueue_timeout = opts.enqueue_timeout,
    );
    Proc::spawn(dir, "job", name, &config).await
}

/// Waits until `job` reports `n` comets (static or discovered).
pub async fn wait_for_job_comets(job: &Proc, n: usize) {
    let metrics = format!("http://{}/metrics", job.addr("metrics"));
    let want = format!("rim_job_comets {n}");
    poll::eventually(
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            if let Ok(resp) = reqwest::get(&metrics).await {
                if resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .lines()
                    .any(|l| l.trim() == want)
                {
                    return Ok(());
                }
            }
            Err(format!(
                "{} never saw {n} comets; its log:\n{}",
                job.name,
                job.log()
            ))
        },
    )
    .await
}

/// Sends `sig` (as `kill` takes it, e.g. `-STOP`) to a running child.
pub fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("process running").to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// Knobs of a test cluster.
#[derive(Clone)]
pub struct Options {
    pub kafka: String,
    /// Router store: `None` for memory, `Some(url)` for Redis.
    pub redis: Option<String>,
    pub comets: usize,
    /// Comet: seconds between a connection's refreshes of its session (0: every heartbeat).
    pub session_refresh: &'static str,
    /// Wait until the job has discovered every comet (needs the router store).
    pub wait_for_job: bool,
    /// Job: how long a comet's last online report counts (comets report
    /// through logic, so with logic stopped they go stale after this).
    pub comet_ttl: &'static str,
    /// Job: the comets as a static `[[comets]]` list, no discovery.
    pub static_comets: bool,
    /// Job: the deadline of one call to a comet.
    pub push_timeout: &'static str,
    /// Job: the deadline of connecting to a comet or a router, and of a
    /// comet's health check (push calls run under `push_timeout`).
    pub connect_timeout: &'static str,
    /// Job: workers per comet, the capacity of each worker's queue, and how
    /// long a record waits for room in a full one before it is dropped.
    pub routines: usize,
    pub routine_queue: usize,
    pub enqueue_timeout: &'static str,
    /// Job: most keyed pushes in one call to a comet.
    pub push_batch: usize,
    /// Logic: how long a push waits for Kafka's acknowledgement before 503.
    /// Generous by default: two loaded cores can slow the broker for seconds.
    pub kafka_timeout: &'static str,
    /// Logic and job: stored messages in this Redis (URL), `None`: off.
    pub mailbox: Option<String>,
    /// Logic and job use the routers' Redis (`redis`, or `redis_cluster`)
    /// themselves instead of calling the router processes.
    pub direct_redis: bool,
    /// The seed nodes of a Redis Cluster holding the routers' sessions
    /// instead of `redis` (see [`Options::on_redis_cluster`]).
    pub redis_cluster: Option<Vec<String>>,
    /// With `redis_cluster`: the mailboxes there too (stored messages on),
    /// instead of in `mailbox`.
    pub mailbox_on_cluster: bool,
    /// Job: lines of its `[job.room]` section.
    pub job_room: String,
    /// Comet: how often it sends logic its online report.
    pub report_interval: &'static str,
}

impl Options {
    /// The suite's defaults on the broker `kafka`: two comets, routers in
    /// memory, discovery, no mailboxes.
    pub fn new(kafka: &str) -> Options {
        Options {
            kafka: kafka.to_owned(),
            redis: None,
            comets: 2,
            session_refresh: "5m",
            wait_for_job: true,
            comet_ttl: "3s",
            static_comets: false,
            push_timeout: "2s",
            connect_timeout: "2s",
            routines: 32,
            routine_queue: 1024,
            enqueue_timeout: "5s",
            push_batch: 64,
            kafka_timeout: "15s",
            mailbox: None,
            direct_redis: false,
            redis_cluster: None,
            mailbox_on_cluster: false,
            job_room: String::new(),
            report_interval: "200ms",
        }
    }

    /// The defaults, with the routers' sessions (and room records) on the
    /// Redis Cluster of `seeds` ([`redis_cluster_services`]); set
    /// `direct_redis` for logic and job to use it themselves, and
    /// `mailbox_on_cluster` for the mailboxes to live there too.
    pub fn on_redis_cluster(kafka: &str, seeds: Vec<String>) -> Options {
        Options {
            redis_cluster: Some(seeds),
            ..Options::new(kafka)
        }
    }
}

/// The `[mailbox]` section of logic and job: a prefix, topic and group of
/// the cluster's own.
fn mailbox_config(opts: &Options, cluster: &str) -> String {
    let redis = match (&opts.redis_cluster, &opts.mailbox) {
        (Some(seeds), _) if opts.mailbox_on_cluster => cluster_line(seeds),
        (_, Some(url)) => format!("redis_url = \"{url}\""),
        _ => return String::new(),
    };
    format!(
        "\n[mailbox]\n{redis}\nprefix = \"{}\"\ntopic = \"{cluster}-mailbox\"\ngroup = \"{cluster}-mailbox-job\"\n",
        mailbox_prefix(cluster)
    )
}

/// The mailbox key prefix of the cluster whose topic is `topic`.
pub fn mailbox_prefix(topic: &str) -> String {
    format!("rim:mb:{topic}:")
}

/// 2 routers, 1 logic, N comets, 1 job; more of each can be added.
pub struct Cluster {
    pub dir: PathBuf,
    /// The comets' server ids are `<name>-comet<i>` (on a Redis Cluster,
    /// `name` is the given one made unique).
    pub name: String,
    pub topic: String,
    pub group: String,
    pub routers: Vec<Proc>,
    pub logic: Proc,
    pub comets: Vec<Proc>,
    pub job: Proc,
    pub http: Http,
    /// The knobs it was started with, for the processes added later.
    opts: Options,
    /// The job's comet source: `[[routers]]` (discovery) or `[[comets]]`.
    discovery: String,
    spawned: usize,
}

impl Cluster {
    pub async fn start(name: &str, opts: Options) -> Cluster {
        let dir = std::env::temp_dir().join(unique(&format!("rim-{name}")));
        // Comets report to the Redis the routers keep sessions in, and jobs
        // discover every comet reporting there: on the shared Redis Cluster
        // the server ids must not meet another test's (or run's).
        let unique_name;
        let name = match opts.redis_cluster {
            Some(_) => {
                unique_name = unique(name);
                unique_name.as_str()
            }
            None => name,
        };
        std::fs::create_dir_all(&dir).unwrap();
        let topic = unique(&format!("rim-{name}"));
        let group = unique(&format!("rim-{name}-group"));
        let store = store_config(&opts);
        let mut routers = Vec::new();
        for i in 1..=2 {
            let name = format!("router{i}");
            routers.push(spawn_router(&dir, &name, &store, "127.0.0.1:0").await);
        }
        let router_list = router_list(&routers, direct_line(&opts).as_deref());
        let logic = spawn_logic(&dir, "logic", &router_list, &opts, &topic, "").await;
        let mut comets = Vec::new();
        for i in 1..=opts.comets {
            let grpc = logic.addr("grpc");
            comets.push(spawn_comet(&dir, name, i, &grpc, &opts, "").await);
        }
        let discovery = if opts.static_comets {
            "routers = []\n".to_owned()
                + &comets
                    .iter()
                    .map(|c| {
                        format!(
                            "[[comets]]\nid = \"{}\"\naddr = \"{}\"\n",
                            c.addr("server_id"),
                            c.addr("grpc")
                        )
                    })
                    .collect::<String>()
        } else {
            router_list
        };
        let cluster = Cluster {
            job: spawn_job(&dir, &opts, &topic, &group, &discovery, "job").await,
            http: Http::new(logic.addr("http").parse().unwrap()),
            dir,
            name: name.to_owned(),
            topic,
            group,
            routers,
            logic,
            comets,
            opts,
            discovery,
            spawned: 0,
        };
        if cluster.opts.wait_for_job {
            let n = cluster.comets.len();
            cluster.wait_for_comets(n).await;
        }
        cluster
    }

    fn next_name(&mut self, kind: &str) -> String {
        self.spawned += 1;
        format!("{kind}-extra{}", self.spawned)
    }

    /// Replaces the job with a new process in the same consumer group.
    pub async fn restart_job(&mut self) {
        let name = self.next_name("job");
        self.job = self.spawn_job(&name).await;
        self.wait_for_comets(self.comets.len()).await;
    }

    /// A further job process in the same consumer group (not waited for).
    pub async fn spawn_job(&self, name: &str) -> Proc {
        spawn_job(
            &self.dir,
            &self.opts,
            &self.topic,
            &self.group,
            &self.discovery,
            name,
        )
        .await
    }

    /// A further logic process on the same routers and topic.
    pub async fn add_logic(&mut self) -> Proc {
        let name = self.next_name("logic");
        let list = router_list(&self.routers, direct_line(&self.opts).as_deref());
        spawn_logic(&self.dir, &name, &list, &self.opts, &self.topic, "").await
    }

    /// A further logic process on the same routers and topic, with `extra`
    /// lines in its `[logic]` section.
    pub async fn add_logic_with(&mut self, extra: &str) -> Proc {
        let name = self.next_name("logic");
        let list = router_list(&self.routers, direct_line(&self.opts).as_deref());
        spawn_logic(&self.dir, &name, &list, &self.opts, &self.topic, extra).await
    }

    /// A further logic process on the same routers, publishing to `topic`
    /// (which it creates if it is missing).
    pub async fn add_logic_on(&mut self, topic: &str) -> Proc {
        let name = self.next_name("logic");
        let list = router_list(&self.routers, direct_line(&self.opts).as_deref());
        spawn_logic(&self.dir, &name, &list, &self.opts, topic, "").await
    }

    /// A further job process on the same comets, consuming `topic` in `group`
    /// (not waited for).
    pub async fn spawn_job_on(&self, name: &str, topic: &str, group: &str) -> Proc {
        spawn_job(&self.dir, &self.opts, topic, group, &self.discovery, name).await
    }

    /// A further comet, reporting through the first logic; returns its index.
    pub async fn add_comet(&mut self) -> usize {
        let i = self.comets.len() + 1;
        let grpc = self.logic.addr("grpc");
        let comet = spawn_comet(&self.dir, &self.name, i, &grpc, &self.opts, "").await;
        self.comets.push(comet);
        i - 1
    }

    /// A further comet reporting to the logic at `logic_grpc`, with `extra`
    /// lines in its `[comet]` section; returns its index.
    pub async fn add_comet_with(&mut self, logic_grpc: &str, extra: &str) -> usize {
        let i = self.comets.len() + 1;
        let comet = spawn_comet(&self.dir, &self.name, i, logic_grpc, &self.opts, extra).await;
        self.comets.push(comet);
        i - 1
    }

    /// The routers' shards as logic and job see them (names r1, r2, ...),
    /// for looking behind the services.
    pub fn routers_client(&self) -> rim_router::Router {
        let shards = self
            .routers
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let store: std::sync::Arc<dyn rim_router::SessionStore> = std::sync::Arc::new(
                    rim_router::grpc::RemoteStore::new(&r.addr("grpc"), Duration::from_secs(2))
                        .unwrap(),
                );
                (format!("r{}", i + 1), store)
            })
            .collect();
        rim_router::Router::new(shards).unwrap()
    }

    /// Kills router `i` and starts a new process on the same address.
    pub async fn restart_router(&mut self, i: usize) {
        let addr = self.routers[i].addr("grpc");
        self.routers[i].kill9().await;
        let name = self.next_name("router");
        let store = store_config(&self.opts);
        self.routers[i] = spawn_router(&self.dir, &name, &store, &addr).await;
    }

    /// Waits until the job reports `n` comets (its discovery found them);
    /// on the shared Redis Cluster, where it also finds other tests'
    /// comets, until it has joined the first `n` of this cluster's.
    pub async fn wait_for_comets(&self, n: usize) {
        if self.opts.redis_cluster.is_none() {
            return wait_for_job_comets(&self.job, n).await;
        }
        let ids: Vec<String> = self.comets[..n]
            .iter()
            .map(|c| c.addr("server_id"))
            .collect();
        poll::eventually(
            Duration::from_secs(30),
            Duration::from_millis(100),
            async || {
                let log = self.job.log();
                let joined = |id: &String| {
                    let field = format!("server={id} ");
                    log.lines()
                        .any(|l| l.contains("comet joined") && l.contains(&field))
                };
                match ids.iter().find(|id| !joined(id)) {
                    None => Ok(()),
                    Some(id) => Err(format!(
                        "{} never joined comet {id}; its log:\n{log}",
                        self.job.name
                    )),
                }
            },
        )
        .await
    }

    /// A connection to the Redis Cluster the cluster runs on (to look
    /// behind the services).
    pub async fn redis_cluster(&self) -> rim_redis::Conn {
        let seeds = self
            .opts
            .redis_cluster
            .clone()
            .expect("a cluster on the Redis Cluster");
        rim_redis::Conn::connect(&rim_redis::Target::Cluster(seeds), Duration::from_secs(5))
            .await
            .expect("the Redis Cluster answers")
    }

    pub fn comet_tcp(&self, i: usize) -> std::net::SocketAddr {
        self.comets[i].first("tcp")
    }

    pub fn comet_ws(&self, i: usize) -> std::net::SocketAddr {
        self.comets[i].first("ws")
    }
}

/// A TCP forwarder standing in for a service that is down: while closed it
/// accepts and at once drops every connection (the client sees a reset or
/// EOF, as from a dead service behind a load balancer); once opened it
/// forwards new connections to `target`. Between [`Gate::record`] and
/// [`Gate::sent_contains`] it keeps what the clients sent, so a test can
/// see that a request reached the service (e.g. one it stopped).
pub struct Gate {
    pub addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent: std::sync::Arc<parking_lot::Mutex<Option<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    /// A closed gate in front of `target` (`host:port`).
    pub async fn closed(target: &str) -> Gate {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sent = std::sync::Arc::new(parking_lot::Mutex::new(None));
        let target = target.to_owned();
        let is_open = open.clone();
        let transcript = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !is_open.load(Ordering::Acquire) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let transcript = transcript.clone();
                tokio::spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        let (from_client, to_client) = inbound.into_split();
                        let (from_target, to_target) = outbound.into_split();
                        tokio::join!(
                            forward(from_client, to_target, Some(transcript)),
                            forward(from_target, to_client, None),
                        );
                    }
                });
            }
        });
        Gate {
            addr,
            open,
            sent,
            task,
        }
    }

    /// Forwards every connection from now on.
    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Keeps what clients send through the gate from now on (forgetting
    /// what an earlier call kept).
    pub fn record(&self) {
        *self.sent.lock() = Some(Vec::new());
    }

    /// Whether clients sent `needle` since [`Gate::record`].
    pub fn sent_contains(&self, needle: &[u8]) -> bool {
        self.sent
            .lock()
            .as_ref()
            .is_some_and(|sent| sent.windows(needle.len()).any(|w| w == needle))
    }
}

/// Copies `from` to `to` until either side ends, appending what it copies
/// to `transcript` while that is recording.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    transcript: Option<std::sync::Arc<parking_lot::Mutex<Option<Vec<u8>>>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(transcript) = &transcript {
            if let Some(sent) = transcript.lock().as_mut() {
                sent.extend_from_slice(&buf[..n]);
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A private redis-server for tests that restart it; killed when dropped,
/// so a failing test does not leave it running.
pub struct RedisProc(std::process::Child);

impl RedisProc {
    /// No persistence at all: a restart loses everything.
    pub fn start(port: u16) -> RedisProc {
        RedisProc::start_with(port, None)
    }

    /// With `aof_dir`, an append-only file there, fsynced on every write
    /// (`appendfsync always`): a restart on the same directory keeps every
    /// acknowledged write.
    pub fn start_with(port: u16, aof_dir: Option<&std::path::Path>) -> RedisProc {
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        match aof_dir {
            Some(dir) => args.extend([
                "--appendonly".into(),
                "yes".into(),
                "--appendfsync".into(),
                "always".into(),
                "--dir".into(),
                dir.display().to_string(),
            ]),
            None => args.extend(["--appendonly".into(), "no".into()]),
        }
        let child = std::process::Command::new("redis-server")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let mut redis = RedisProc(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = redis.0.try_wait() {
                panic!("redis-server exited ({status}) before opening {port}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis did not open {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The port was free when picked, but another process may have taken
        // it since: make sure the server answering is this one.
        let pid = redis_pid(port);
        assert_eq!(
            pid,
            Some(redis.0.id()),
            "port {port} is served by another redis-server"
        );
        redis
    }
}

/// The `process_id` that the redis-server on `port` reports, if it answers.
pub fn redis_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some(at) = text.find("process_id:") {
            let rest = &text[at + "process_id:".len()..];
            if let Some(end) = rest.find("\r\n") {
                return rest[..end].trim().parse().ok();
            }
        }
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
