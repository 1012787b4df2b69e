//! [`RedisCluster`]: a private Redis Cluster of child redis-server
//! processes, for tests that kill a node (the suite's shared cluster,
//! `services::redis_cluster`, must stay whole for the tests running beside
//! them). Nodes run with `appendonly yes` and `appendfsync always`, in a
//! temporary directory, and are killed when the cluster is dropped.
//!
//! Needs `redis-server` and `redis-cli` on the PATH (scripts/services.sh
//! installs them); a test that finds them missing fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How long a node waits for a silent peer before the cluster calls it
/// failed and promotes its replica (`cluster-node-timeout`).
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// One node of the cluster.
#[derive(Debug)]
struct Node {
    port: u16,
    child: Option<Child>,
}

/// A running cluster; every node is killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

/// A port, and its cluster bus port 10000 above, both free just now.
fn free_port_pair(taken: &[u16]) -> Result<u16> {
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        if port > 55535 || taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port pair for a cluster node")
}

/// `redis-cli -p <port> <args>`'s output.
pub fn cli(port: u16, args: &[&str]) -> Result<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .context("running redis-cli (installed by scripts/services.sh)")?;
    if !out.status.success() {
        bail!(
            "redis-cli -p {port} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `check` every 50 ms until it holds, or fails after `within`.
fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = std::time::SystemTime::now() + within;
    while !check() {
        if std::time::SystemTime::now() > deadline {
            bail!("{what} within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl RedisCluster {
    /// [`RedisCluster::start`] from an async test: run on a blocking thread,
    /// failing the test loudly when the cluster cannot start.
    pub async fn start_for_test(masters: usize) -> RedisCluster {
        tokio::task::spawn_blocking(move || RedisCluster::start(masters))
            .await
            .expect("the cluster start task ran")
            .expect(
                "a private redis cluster starts (redis-server and redis-cli from scripts/services.sh)",
            )
    }

    /// Starts `masters` masters with one replica each and joins them
    /// (`redis-cli --cluster create --cluster-replicas 1`); returns once
    /// every node reports `cluster_state:ok` and each replica is in sync.
    /// Blocking: call it from `spawn_blocking` in an async test.
    pub fn start(masters: usize) -> Result<RedisCluster> {
        let dir = std::env::temp_dir().join(crate::services::unique("rim-redis-cluster"));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        let mut ports = Vec::new();
        for _ in 0..masters * 2 {
            let port = free_port_pair(&ports)?;
            ports.push(port);
            cluster.nodes.push(Node { port, child: None });
            cluster.spawn(port)?;
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        for port in &ports {
            wait_for(
                &format!("node {port} did not report cluster_state:ok"),
                Duration::from_secs(20),
                || cli(*port, &["cluster", "info"]).is_ok_and(|i| i.contains("cluster_state:ok")),
            )?;
        }
        for port in &ports {
            wait_for(
                &format!("node {port} did not settle as master or synced replica"),
                Duration::from_secs(20),
                || {
                    cli(*port, &["info", "replication"]).is_ok_and(|i| {
                        i.contains("role:master") || i.contains("master_link_status:up")
                    })
                },
            )?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, port: u16) -> Result<()> {
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args([
                "--cluster-node-timeout",
                &NODE_TIMEOUT.as_millis().to_string(),
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (installed by scripts/services.sh)")?;
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .context("no such node")?;
        node.child = Some(child);
        wait_for(
            &format!("redis-server did not answer on {port}"),
            Duration::from_secs(20),
            || cli(port, &["ping"]).is_ok_and(|p| p.trim() == "PONG"),
        )
    }

    /// Every node's URL, masters and replicas: the seeds for a client.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// The port of the master serving `key`'s slot, and of its replica.
    pub fn master_and_replica_of(&self, key: &str) -> Result<(u16, u16)> {
        let any = self.live_port()?;
        let slot: u16 = cli(any, &["cluster", "keyslot", key])?.trim().parse()?;
        let nodes = cli(any, &["cluster", "nodes"])?;
        // <id> <ip:port@bus> <flags> <master id|-> <ping> <pong> <epoch> <state> <slots>...
        let mut master = None;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                matches!((lo.parse::<u16>(), hi.parse::<u16>()), (Ok(lo), Ok(hi)) if (lo..=hi).contains(&slot))
            });
            if serves {
                master = Some((fields[0].to_owned(), port_of(fields[1])?));
            }
        }
        let (id, master) = master.with_context(|| format!("no master serves slot {slot}"))?;
        let replica = nodes
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[2].contains("slave") && f[3] == id)
            .with_context(|| format!("master {master} has no replica"))?;
        Ok((master, port_of(replica[1])?))
    }

    /// A node that is running.
    fn live_port(&self) -> Result<u16> {
        self.nodes
            .iter()
            .find(|n| n.child.is_some())
            .map(|n| n.port)
            .context("no node is running")
    }

    /// Kills the node on `port` (SIGKILL: no goodbye to its peers).
    pub fn kill(&mut self, port: u16) -> Result<()> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .context("no such node")?;
        if let Some(mut child) = node.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Waits until the node on `port` calls itself a master.
    pub fn wait_master(&self, port: u16, within: Duration) -> Result<()> {
        wait_for(&format!("node {port} was not promoted"), within, || {
            cli(port, &["info", "replication"]).is_ok_and(|i| i.contains("role:master"))
        })
    }

    /// Waits until the node on `port` is a replica in sync with its master.
    pub fn wait_replica_synced(&self, port: u16, within: Duration) -> Result<()> {
        wait_for(
            &format!("node {port} did not sync as a replica"),
            within,
            || {
                cli(port, &["info", "replication"])
                    .is_ok_and(|i| i.contains("role:slave") && i.contains("master_link_status:up"))
            },
        )
    }

    /// Starts the node on `port` again, on its directory (its AOF and its
    /// nodes.conf): it rejoins the cluster, as a replica if it was replaced.
    pub fn restart(&mut self, port: u16) -> Result<()> {
        self.spawn(port)
    }
}

fn port_of(addr: &str) -> Result<u16> {
    let host_port = addr.split('@').next().unwrap_or(addr);
    let (_, port) = host_port
        .rsplit_once(':')
        .with_context(|| format!("node address {addr:?}"))?;
    Ok(port.parse()?)
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
