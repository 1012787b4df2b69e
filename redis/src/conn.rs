//! [`Conn`]: a connection to one Redis or to a Redis Cluster.

use std::time::Duration;

use futures_util::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::time::Instant;

use crate::{Batch, Target};

/// How many times the cluster client tries a command again (a redirection,
/// a lost node, a failover in progress), within [`Conn`]'s overall deadline.
const CLUSTER_RETRIES: u32 = 8;
/// The first pause before a batch's slot pipeline is sent again.
const MIN_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two tries.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// A connection to the Redis of a [`Target`]; cloning is cheap and shares
/// it. Each command, and each connection attempt, gives up after the
/// `timeout` it was made with. A lost connection is made again on the next
/// command. On a cluster a command may also wait through redirections and a
/// failover, up to `3 × timeout` in all.
#[derive(Clone)]
pub struct Conn {
    inner: Inner,
    timeout: Duration,
}

#[derive(Clone)]
enum Inner {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("cluster", &self.is_cluster())
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}

fn cluster_client(seeds: &[String], timeout: Duration) -> RedisResult<ClusterClient> {
    ClusterClientBuilder::new(seeds.iter().map(String::as_str))
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .overall_response_timeout(Some(overall(timeout)))
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(MIN_PAUSE.as_millis() as u64)
        .max_retry_wait(MAX_PAUSE.as_millis() as u64)
        .retry_wait_formula(MIN_PAUSE.as_millis() as u64, 2)
        .build()
}

/// How long a command may take on a cluster, retries included.
fn overall(timeout: Duration) -> Duration {
    timeout * 3
}

impl Conn {
    /// Connects now: fails if the Redis (or no seed of the cluster) answers
    /// within `timeout`.
    pub async fn connect(target: &Target, timeout: Duration) -> RedisResult<Conn> {
        let inner = match target {
            Target::Node(url) => {
                let client = redis::Client::open(url.as_str())?;
                Inner::Node(
                    ConnectionManager::new_with_config(client, manager_config(timeout)).await?,
                )
            }
            Target::Cluster(seeds) => Inner::Cluster(
                cluster_client(seeds, timeout)?
                    .get_async_connection()
                    .await?,
            ),
        };
        Ok(Conn { inner, timeout })
    }

    /// Connects on first use, in the background: a Redis that is down at
    /// start is tried again with backoff. Fails only on a bad URL.
    pub fn lazy(target: &Target, timeout: Duration) -> RedisResult<Conn> {
        let inner = match target {
            Target::Node(url) => {
                let client = redis::Client::open(url.as_str())?;
                Inner::Node(ConnectionManager::new_lazy_with_config(
                    client,
                    manager_config(timeout),
                )?)
            }
            Target::Cluster(seeds) => Inner::Cluster(
                cluster_client(seeds, timeout)?.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_connection_timeout(timeout)
                        .set_response_timeout(timeout),
                ),
            ),
        };
        Ok(Conn { inner, timeout })
    }

    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// Runs `batch` and answers each command's reply, in the batch's order.
    /// A server error in any reply fails the whole call (some commands may
    /// have run). On a cluster, a slot's pipeline that met a redirection, a
    /// cluster that is down or a lost connection is sent again after a
    /// pause, until `3 × timeout` has passed.
    pub async fn run(&self, batch: &Batch) -> RedisResult<Vec<Value>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let cluster = match &self.inner {
            Inner::Node(conn) => {
                let mut replies: Vec<Value> = if batch.replicas.is_some() {
                    batch.pipeline().query_async(&mut conn.clone()).await?
                } else {
                    batch.pipe.query_async(&mut conn.clone()).await?
                };
                check_wait(batch, &mut replies)?;
                return Ok(replies);
            }
            Inner::Cluster(cluster) => cluster,
        };
        let deadline = Instant::now() + overall(self.timeout);
        let groups = batch.by_slot();
        let replies = try_join_all(
            groups
                .iter()
                .map(|(_, pipe)| run_slot(cluster.clone(), pipe, deadline)),
        )
        .await?;
        let mut out = vec![Value::Nil; batch.len()];
        for ((positions, _), mut replies) in groups.iter().zip(replies) {
            check_wait(batch, &mut replies)?;
            if replies.len() != positions.len() {
                return Err(RedisError::from((
                    ErrorKind::Parse,
                    "pipeline answered a different number of replies",
                )));
            }
            for (at, reply) in positions.iter().zip(replies) {
                out[*at] = reply;
            }
        }
        Ok(out)
    }

    /// Waits until `replicas` replicas of the master of `key`'s slot hold
    /// every write this connection sent it so far (`WAIT`; at most
    /// `timeout`), and fails if fewer do.
    pub async fn wait_replicas(
        &self,
        key: impl AsRef<[u8]>,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<()> {
        if replicas == 0 {
            return Ok(());
        }
        let wait = crate::batch::wait_cmd(replicas, timeout);
        let acked = match &self.inner {
            Inner::Node(conn) => wait.query_async(&mut conn.clone()).await?,
            Inner::Cluster(cluster) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let reply = cluster
                    .clone()
                    .route_command(
                        wait,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                redis::from_redis_value(reply)?
            }
        };
        enough(acked, replicas, timeout)
    }

    /// Runs `cmd` on every master (one node: on it), and answers each
    /// master's address (`host:port`; the URL for one node) and reply.
    pub async fn on_masters(&self, cmd: &Cmd) -> RedisResult<Vec<(String, Value)>> {
        self.on_nodes(cmd, MultipleNodeRoutingInfo::AllMasters)
            .await
    }

    /// Runs `cmd` on every node, replicas included (one node: on it).
    pub async fn on_every_node(&self, cmd: &Cmd) -> RedisResult<Vec<(String, Value)>> {
        self.on_nodes(cmd, MultipleNodeRoutingInfo::AllNodes).await
    }

    async fn on_nodes(
        &self,
        cmd: &Cmd,
        nodes: MultipleNodeRoutingInfo,
    ) -> RedisResult<Vec<(String, Value)>> {
        match &self.inner {
            Inner::Node(conn) => {
                let reply = cmd.query_async(&mut conn.clone()).await?;
                Ok(vec![(String::new(), reply)])
            }
            Inner::Cluster(cluster) => {
                let reply = cluster
                    .clone()
                    .route_command(cmd.clone(), RoutingInfo::MultiNode((nodes, None)))
                    .await?;
                let Value::Map(pairs) = reply else {
                    return Err(RedisError::from((
                        ErrorKind::Parse,
                        "a command on several nodes did not answer per node",
                        format!("{reply:?}"),
                    )));
                };
                pairs
                    .into_iter()
                    .map(|(addr, reply)| {
                        let addr = redis::from_redis_value::<String>(addr)?;
                        Ok((addr, reply))
                    })
                    .collect()
            }
        }
    }

    /// The names of every key matching `pattern` (`SCAN ... MATCH`, never
    /// `KEYS`): on a cluster, from every master.
    pub async fn scan(&self, pattern: &str) -> RedisResult<Vec<String>> {
        match &self.inner {
            Inner::Node(conn) => scan_node(&mut conn.clone(), None, pattern).await,
            Inner::Cluster(cluster) => {
                let mut out = Vec::new();
                let ping = redis::cmd("PING");
                for (addr, _) in self.on_masters(&ping).await? {
                    let (host, port) = addr
                        .rsplit_once(':')
                        .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
                        .ok_or_else(|| {
                            RedisError::from((ErrorKind::Parse, "a node address", addr.clone()))
                        })?;
                    let route = SingleNodeRoutingInfo::ByAddress { host, port };
                    out.extend(scan_node(&mut cluster.clone(), Some(route), pattern).await?);
                }
                Ok(out)
            }
        }
    }
}

/// Takes the `WAIT` reply that ends `replies` when the batch waits for
/// replicas, and fails when fewer acknowledged.
fn check_wait(batch: &Batch, replies: &mut Vec<Value>) -> RedisResult<()> {
    let Some((replicas, timeout)) = batch.replicas else {
        return Ok(());
    };
    let acked = replies
        .pop()
        .ok_or_else(|| RedisError::from((ErrorKind::Parse, "no answer to WAIT")))?;
    enough(redis::from_redis_value(acked)?, replicas, timeout)
}

fn enough(acked: i64, replicas: u32, timeout: Duration) -> RedisResult<()> {
    if acked >= i64::from(replicas) {
        return Ok(());
    }
    Err(RedisError::from((
        ErrorKind::Client,
        "write not replicated",
        format!("{acked} of {replicas} replicas acknowledged it within {timeout:?}"),
    )))
}

/// One slot's pipeline on a cluster, sent again while the cluster moves.
async fn run_slot(
    mut cluster: ClusterConnection,
    pipe: &Pipeline,
    deadline: Instant,
) -> RedisResult<Vec<Value>> {
    let mut pause = MIN_PAUSE;
    loop {
        match pipe.query_async::<Vec<Value>>(&mut cluster).await {
            Err(e) if may_pass(&e) && Instant::now() + pause < deadline => {
                tracing::debug!(error = %e, ?pause, "redis cluster pipeline sent again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            reply => return reply,
        }
    }
}

/// An error that a moment may cure: the slot moved, the cluster is between
/// masters, or the connection to a node went.
fn may_pass(e: &RedisError) -> bool {
    e.is_cluster_error()
        || e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.kind() == ErrorKind::ClusterConnectionNotFound
}

/// Every key matching `pattern` on one node (`route`: which one, on a
/// cluster).
async fn scan_node(
    conn: &mut impl ConnectionLikeRoute,
    route: Option<SingleNodeRoutingInfo>,
    pattern: &str,
) -> RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let reply = conn.query_routed(cmd, route.clone()).await?;
        let (next, batch): (u64, Vec<String>) = redis::from_redis_value(reply)?;
        out.extend(batch);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// A connection that can send a command to a chosen node.
trait ConnectionLikeRoute {
    async fn query_routed(
        &mut self,
        cmd: Cmd,
        route: Option<SingleNodeRoutingInfo>,
    ) -> RedisResult<Value>;
}

impl ConnectionLikeRoute for ConnectionManager {
    async fn query_routed(
        &mut self,
        cmd: Cmd,
        _route: Option<SingleNodeRoutingInfo>,
    ) -> RedisResult<Value> {
        cmd.query_async(self).await
    }
}

impl ConnectionLikeRoute for ClusterConnection {
    async fn query_routed(
        &mut self,
        cmd: Cmd,
        route: Option<SingleNodeRoutingInfo>,
    ) -> RedisResult<Value> {
        match route {
            Some(route) => {
                self.route_command(cmd, RoutingInfo::SingleNode(route))
                    .await
            }
            None => cmd.query_async(self).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Inner::Node(conn) => conn.req_packed_command(cmd),
            Inner::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Inner::Node(conn) => conn.req_packed_commands(pipe, offset, count),
            Inner::Cluster(conn) => conn.req_packed_commands(pipe, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Node(conn) => conn.get_db(),
            Inner::Cluster(conn) => conn.get_db(),
        }
    }
}
