//! Every configuration file rim reads: `rim standalone`'s (one file, a
//! section per component) and one per process (`rim logic|router|job|comet
//! -c FILE`). Every field has a default, so no file is needed at all; each
//! file is read with [`load`], and each type checks itself ([`Validate`])
//! into the one [`ConfigError`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use rim_job::discovery::{DiscoveryConfig, StaticComet};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The parse error, with line and column.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A configuration that can say whether its values are usable, before
/// anything is bound.
pub trait Validate {
    /// Checks every section.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Reads, parses and validates a TOML file, naming the file in errors.
pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let config: T = read(path)?;
    config.validate()?;
    Ok(config)
}

/// Reads and parses a TOML file without validating it, naming the file in
/// errors: for callers that validate later anyway (each process's `run`
/// does, before it binds).
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let path = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse { path, source })
}

/// Parses and validates TOML text; `path` names it in errors.
fn parse_as<T: DeserializeOwned + Validate>(text: &str, path: String) -> Result<T, ConfigError> {
    let config: T = toml::from_str(text).map_err(|source| ConfigError::Parse { path, source })?;
    config.validate()?;
    Ok(config)
}

// === standalone ===

/// Configuration of `rim standalone`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneConfig {
    /// Client connections: listeners, timeouts, buckets, queues.
    pub comet: rim_comet::Config,
    /// HTTP push API, token handling, node list.
    pub logic: rim_logic::Config,
    /// Fan-out to comets, room batching.
    pub job: rim_job::Config,
    /// Session registry TTLs.
    pub router: rim_router::Config,
    /// The in-process queue between logic and job.
    pub queue: QueueConfig,
    /// Where mailboxes (stored messages) live.
    pub mailbox: MailboxSection,
    /// The web pages on the HTTP port (`/admin/`, `/demo/`). On by default.
    pub web: WebSection,
}

/// `[web]`: whether the HTTP port also serves the web pages, the admin
/// console at `/admin/` and the demo at `/demo/` ([`crate::web`]). They are
/// static and public; the API calls they make need the API's bearer token
/// when one is configured. On by default in `rim standalone`, off by
/// default in `rim logic`. The section, when written, names `enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// Serve the pages.
    pub enabled: bool,
}

impl Default for WebSection {
    /// On: `rim standalone`'s default (`rim logic` turns it off).
    fn default() -> Self {
        WebSection { enabled: true }
    }
}

/// Which mailbox store `rim standalone` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// The embedded on-disk store (redb) in `data`: a stored push is answered
    /// once it is fsynced. The default.
    #[default]
    Redb,
    /// In memory: lost at exit (tests, demos).
    Memory,
    /// No mailboxes: `store=1` answers 400 and IM sessions are refused.
    None,
}

/// `[mailbox]`: the store and its retention.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxSection {
    /// `redb` (default), `memory` or `none`.
    pub store: StoreKind,
    /// The data directory of the `redb` store (flag `--data`). Default
    /// `rim-data`, relative to the working directory.
    pub data: PathBuf,
    /// Retention: messages per mailbox, idempotency window, age.
    pub retention: rim_mailbox::MailboxConfig,
}

impl Default for MailboxSection {
    fn default() -> Self {
        MailboxSection {
            store: StoreKind::Redb,
            data: PathBuf::from("rim-data"),
            retention: rim_mailbox::MailboxConfig::default(),
        }
    }
}

/// The in-process push queue (the standalone stand-in for Kafka).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Records the queue holds before publishers wait. Default 65536.
    pub capacity: usize,
    /// How long a push request waits for room before the API answers 503. Default 5s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 65536,
            timeout: Duration::from_secs(5),
        }
    }
}

impl StandaloneConfig {
    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<StandaloneConfig, ConfigError> {
        parse_as(text, "<text>".into())
    }
}

impl Validate for StandaloneConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.comet
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[comet] {e}")))?;
        self.logic
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[logic] {e}")))?;
        self.job
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[job] {e}")))?;
        if let Some(upstream) = &self.logic.hooks.upstream {
            // The comet answers 503 itself when logic takes longer than this.
            if upstream.timeout >= self.comet.logic_timeout {
                return Err(ConfigError::Invalid(format!(
                    "[logic.hooks.upstream] timeout ({:?}) must be below [comet] logic_timeout ({:?})",
                    upstream.timeout, self.comet.logic_timeout
                )));
            }
        }
        if self.queue.capacity == 0 {
            return Err(ConfigError::Invalid(
                "[queue] capacity must be at least 1".into(),
            ));
        }
        self.mailbox
            .retention
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[mailbox.retention] {e}")))?;
        if self.mailbox.store == StoreKind::Redb && self.mailbox.data.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "[mailbox] data must name a directory".into(),
            ));
        }
        Ok(())
    }
}

// === processes ===

/// A Redis URL with its password, if any, as `<redacted>` (for `rim
/// check-config`): `redis://user:pw@host/` becomes `redis://user:<redacted>@host/`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

fn serialize_redis_urls<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(urls.iter().map(|url| redact_url(url)))
}

fn serialize_redis_url_option<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redact_url(url)),
        None => s.serialize_none(),
    }
}

/// A router shard as logic and job address it: a `rim router` process
/// (`addr`), or the Redis such a process would store the shard in
/// (`redis_url`), read and written directly, in the same key layout, with
/// no router process on the path (as goim's logic reads its Redis).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterNode {
    /// The shard's name on the consistent-hash ring. Keep names stable:
    /// users are placed by name, not by address.
    pub name: String,
    /// gRPC address of a `rim router` (`host:port`). Empty (the default)
    /// with `redis_url`.
    #[serde(default)]
    pub addr: String,
    /// The shard's Redis (`redis://host:port/db`), used directly instead of
    /// through a `rim router`: a keyed push then costs one Redis round trip
    /// instead of a gRPC call plus the router's Redis round trip
    /// (docs/benchmark.md). Every logic and job must address the shard the
    /// same way, or the same Redis as its router does.
    #[serde(default, serialize_with = "serialize_redis_url_option")]
    pub redis_url: Option<String>,
    /// Instead of `redis_url`: the shard's Redis Cluster, by seed nodes, used
    /// directly in the same way (a user's keys share one slot).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "serialize_redis_urls"
    )]
    pub redis_cluster: Vec<String>,
    /// With `redis_url` or `redis_cluster`: how long a session lives without a heartbeat (the
    /// router's `registry.expire`). Default 30m.
    #[serde(default = "default_session_expire", with = "humantime_serde")]
    pub expire: Duration,
}

fn default_session_expire() -> Duration {
    rim_router::Config::default().expire
}

impl RouterNode {
    /// A shard served by the `rim router` at `addr`.
    pub fn remote(name: &str, addr: &str) -> RouterNode {
        RouterNode {
            name: name.to_owned(),
            addr: addr.to_owned(),
            redis_url: None,
            redis_cluster: Vec::new(),
            expire: default_session_expire(),
        }
    }

    /// The shard's Redis when it is used directly (`redis_url` or
    /// `redis_cluster`), `None` when it is a `rim router` at `addr`.
    pub fn redis_target(&self) -> Result<Option<rim_redis::Target>, ConfigError> {
        rim_redis::Target::from_settings(self.redis_url.as_deref(), &self.redis_cluster)
            .map_err(|e| ConfigError::Invalid(format!("[[routers]] {:?}: {e}", self.name)))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match (self.redis_target()?, self.addr.is_empty()) {
            (None, false) | (Some(_), true) => Ok(()),
            (None, true) => Err(ConfigError::Invalid(format!(
                "[[routers]] {:?}: addr or redis_url (or redis_cluster) is required",
                self.name
            ))),
            (Some(_), false) => Err(ConfigError::Invalid(format!(
                "[[routers]] {:?}: addr and redis_url (or redis_cluster) exclude each other",
                self.name
            ))),
        }
    }
}

/// `[mailbox]` of `rim logic` and `rim job`: stored messages in Redis (one
/// node or a Redis Cluster), carried from logic to job by their own Kafka
/// topic. Off unless `redis_url` or `redis_cluster` is set (both processes
/// need the same settings).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessMailbox {
    /// The mailbox Redis (`redis://host:port/`); unset: no stored messages
    /// (`store=1` answers 400, IM sessions are refused). It may be the
    /// router's Redis. Run it with `appendonly yes` and `appendfsync always`
    /// (see README); rim warns at start otherwise.
    #[serde(serialize_with = "serialize_redis_url_option")]
    pub redis_url: Option<String>,
    /// The seed nodes of a Redis Cluster holding the mailboxes
    /// (`["redis://host:port", ...]`), instead of `redis_url`. Each user's
    /// keys share one slot (the mid is the hash tag). Default none.
    #[serde(serialize_with = "serialize_redis_urls")]
    pub redis_cluster: Vec<String>,
    /// Key prefix. Default `rim:mb:`.
    pub prefix: String,
    /// Deadline of connecting to the mailbox Redis, and of each command (on
    /// a cluster a command may wait through a failover up to 3 times it).
    /// Default 2s.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Replicas that must hold a stored message (and a group or mute
    /// change) before it counts as stored (Redis `WAIT`); with 1, a
    /// failover loses no stored message, and a master left without a
    /// replica refuses stores until one is back. Default 0: the master's
    /// answer is enough (replication is asynchronous).
    pub redis_wait_replicas: u32,
    /// How long a store waits for those replicas before it fails (and is
    /// retried). Default 1s.
    #[serde(with = "humantime_serde")]
    pub redis_wait_timeout: Duration,
    /// The topic of stored messages. Default `rim-mailbox`.
    pub topic: String,
    /// job's consumer group on `topic`. Default `rim-mailbox-job`.
    pub group: String,
    /// Retention: messages per mailbox, idle TTL, metadata TTL, idempotency
    /// window.
    pub retention: rim_mailbox::MailboxConfig,
}

impl Default for ProcessMailbox {
    fn default() -> Self {
        ProcessMailbox {
            redis_url: None,
            redis_cluster: Vec::new(),
            prefix: "rim:mb:".into(),
            redis_timeout: Duration::from_secs(2),
            redis_wait_replicas: 0,
            redis_wait_timeout: Duration::from_secs(1),
            topic: "rim-mailbox".into(),
            group: "rim-mailbox-job".into(),
            retention: rim_mailbox::MailboxConfig::default(),
        }
    }
}

impl ProcessMailbox {
    /// The mailbox Redis: one node, a cluster, or `None` (stored messages
    /// off).
    pub fn target(&self) -> Result<Option<rim_redis::Target>, ConfigError> {
        rim_redis::Target::from_settings(self.redis_url.as_deref(), &self.redis_cluster)
            .map_err(|e| ConfigError::Invalid(format!("[mailbox] {e}")))
    }

    /// Whether stored messages are on (a Redis is named).
    pub fn enabled(&self) -> bool {
        self.redis_url.is_some() || !self.redis_cluster.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.target()?;
        self.retention
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[mailbox.retention] {e}")))?;
        if self.topic.is_empty() || self.group.is_empty() {
            return Err(ConfigError::Invalid(
                "[mailbox] topic and group must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// `kafka` for the mailbox topic (and job's group on it).
    pub fn kafka(&self, kafka: &rim_queue::kafka::KafkaConfig) -> rim_queue::kafka::KafkaConfig {
        let mut kafka = kafka.clone();
        kafka.topic = self.topic.clone();
        kafka.group = self.group.clone();
        kafka
    }
}

/// `logic.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogicProcessConfig {
    /// HTTP API, nodes, online aggregation (`[logic]`).
    pub logic: rim_logic::Config,
    /// gRPC listen address for comets. Default `0.0.0.0:3119`.
    pub grpc_bind: String,
    /// Router shards (`[[routers]]`). Default one at `127.0.0.1:3129` named `r1`.
    pub routers: Vec<RouterNode>,
    /// Deadline of every router call. Default 2s.
    #[serde(with = "humantime_serde")]
    pub router_timeout: Duration,
    /// The push topic (`[kafka]`).
    pub kafka: rim_queue::kafka::KafkaConfig,
    /// Stored messages (`[mailbox]`).
    pub mailbox: ProcessMailbox,
    /// The web pages on the HTTP port (`[web]`). Off by default.
    pub web: WebSection,
}

impl Default for LogicProcessConfig {
    fn default() -> Self {
        LogicProcessConfig {
            logic: rim_logic::Config::default(),
            grpc_bind: "0.0.0.0:3119".into(),
            routers: vec![RouterNode::remote("r1", "127.0.0.1:3129")],
            router_timeout: Duration::from_secs(2),
            kafka: rim_queue::kafka::KafkaConfig::default(),
            mailbox: ProcessMailbox::default(),
            web: WebSection { enabled: false },
        }
    }
}

impl LogicProcessConfig {
    /// `[logic]` with the defaults of an exposed logic filled in: JWT client
    /// tokens and a push API that requires bearer tokens, unless the file
    /// says `mode = "trust"` / `open = true` explicitly.
    pub fn effective_logic(&self) -> rim_logic::Config {
        self.logic.clone().secure_defaults()
    }
}

impl Validate for LogicProcessConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::Invalid;
        self.effective_logic()
            .validate()
            .map_err(|e| Invalid(format!("[logic] {e}")))?;
        if self.routers.is_empty() {
            return Err(Invalid("at least one [[routers]] entry is required".into()));
        }
        for node in &self.routers {
            node.validate()?;
        }
        if self.kafka.brokers.is_empty() {
            return Err(Invalid("[kafka] brokers must not be empty".into()));
        }
        self.mailbox.validate()
    }
}

/// `router.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterProcessConfig {
    /// gRPC listen address. Default `0.0.0.0:3129`.
    pub grpc_bind: String,
    /// Prometheus `/metrics` listen address. Default `0.0.0.0:3128`.
    pub metrics_bind: String,
    /// `"memory"` or `"redis"`. Default `"memory"`.
    pub store: String,
    /// Redis URL when `store = "redis"`. Default `redis://127.0.0.1:6379/`
    /// (unless `redis_cluster` is given).
    #[serde(serialize_with = "serialize_redis_url_option")]
    pub redis_url: Option<String>,
    /// The seed nodes of a Redis Cluster (`["redis://host:port", ...]`)
    /// when `store = "redis"`, instead of `redis_url`. Default none.
    #[serde(serialize_with = "serialize_redis_urls")]
    pub redis_cluster: Vec<String>,
    /// Deadline of every Redis command (on a cluster a command may wait
    /// through a failover up to 3 times it). Default 2s.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// Session TTLs.
    pub registry: rim_router::Config,
}

impl Default for RouterProcessConfig {
    fn default() -> Self {
        RouterProcessConfig {
            grpc_bind: "0.0.0.0:3129".into(),
            metrics_bind: "0.0.0.0:3128".into(),
            store: "memory".into(),
            redis_url: None,
            redis_cluster: Vec::new(),
            redis_timeout: Duration::from_secs(2),
            registry: rim_router::Config::default(),
        }
    }
}

impl RouterProcessConfig {
    /// The Redis of `store = "redis"`: `redis_cluster`'s seeds, else
    /// `redis_url` (or its default).
    pub fn redis_target(&self) -> Result<rim_redis::Target, ConfigError> {
        let url = match (&self.redis_url, self.redis_cluster.is_empty()) {
            (None, true) => Some("redis://127.0.0.1:6379/"),
            (url, _) => url.as_deref(),
        };
        rim_redis::Target::from_settings(url, &self.redis_cluster)
            .map_err(ConfigError::Invalid)?
            .ok_or_else(|| ConfigError::Invalid("no redis given".into()))
    }
}

impl Validate for RouterProcessConfig {
    /// Checks the store choice, and the Redis of `store = "redis"`.
    fn validate(&self) -> Result<(), ConfigError> {
        match self.store.as_str() {
            "memory" => Ok(()),
            "redis" => self.redis_target().map(drop),
            other => Err(ConfigError::Invalid(format!(
                "store must be \"memory\" or \"redis\", not {other:?}"
            ))),
        }
    }
}

/// `job.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobProcessConfig {
    /// Routines, batching (`[job]`).
    pub job: rim_job::Config,
    /// The push topic and consumer group (`[kafka]`).
    pub kafka: rim_queue::kafka::KafkaConfig,
    /// Comets always pushed to (`[[comets]]`). Default none.
    pub comets: Vec<StaticComet>,
    /// Router shards to discover comets from (`[[routers]]`). Default one at
    /// `127.0.0.1:3129`; empty disables discovery.
    pub routers: Vec<RouterNode>,
    /// How often discovery looks for joins and leaves. Default 2s.
    #[serde(with = "humantime_serde")]
    pub discovery_interval: Duration,
    /// A comet whose last report is older than this is gone, unless it still
    /// answers health checks. Default 30s.
    #[serde(with = "humantime_serde")]
    pub comet_ttl: Duration,
    /// Deadline of gRPC connects to comets and routers, of every router call
    /// and of a comet's health check (push calls run under
    /// `job.push_timeout`). Default 2s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Prometheus `/metrics` listen address. Default `0.0.0.0:3138`.
    pub metrics_bind: String,
    /// Stored messages (`[mailbox]`): job consumes their topic, appends to
    /// the mailbox Redis, then delivers.
    pub mailbox: ProcessMailbox,
}

impl Default for JobProcessConfig {
    fn default() -> Self {
        JobProcessConfig {
            job: rim_job::Config::default(),
            kafka: rim_queue::kafka::KafkaConfig::default(),
            comets: Vec::new(),
            routers: vec![RouterNode::remote("r1", "127.0.0.1:3129")],
            discovery_interval: Duration::from_secs(2),
            comet_ttl: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            metrics_bind: "0.0.0.0:3138".into(),
            mailbox: ProcessMailbox::default(),
        }
    }
}

impl JobProcessConfig {
    /// The discovery settings.
    pub fn discovery(&self) -> DiscoveryConfig {
        DiscoveryConfig {
            comets: self.comets.clone(),
            interval: self.discovery_interval,
            comet_ttl: self.comet_ttl,
            connect_timeout: self.connect_timeout,
        }
    }
}

impl Validate for JobProcessConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::Invalid;
        self.job
            .validate()
            .map_err(|e| Invalid(format!("[job] {e}")))?;
        if self.comets.is_empty() && self.routers.is_empty() {
            return Err(Invalid(
                "no comets: give [[comets]] or [[routers]] for discovery".into(),
            ));
        }
        if self.mailbox.enabled() && self.routers.is_empty() {
            return Err(Invalid(
                "[mailbox] needs [[routers]]: job finds each user's connections there".into(),
            ));
        }
        for node in &self.routers {
            node.validate()?;
        }
        self.mailbox.validate()
    }
}

/// `comet.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CometProcessConfig {
    /// Listeners, timeouts, buckets, queues (`[comet]`).
    pub comet: rim_comet::Config,
    /// gRPC listen address for job. Default `0.0.0.0:3109`.
    pub grpc_bind: String,
    /// The gRPC address job should dial, reported with the online counts.
    /// Default: `grpc_bind` with an unspecified host replaced by 127.0.0.1;
    /// set it to a routable address in production.
    pub grpc_addr: Option<String>,
    /// logic gRPC addresses. Default `["127.0.0.1:3119"]`.
    pub logic_addrs: Vec<String>,
    /// Prometheus `/metrics` listen address. Default `0.0.0.0:3108`.
    pub metrics_bind: String,
}

impl Default for CometProcessConfig {
    fn default() -> Self {
        CometProcessConfig {
            comet: rim_comet::Config::default(),
            grpc_bind: "0.0.0.0:3109".into(),
            grpc_addr: None,
            logic_addrs: vec!["127.0.0.1:3119".into()],
            metrics_bind: "0.0.0.0:3108".into(),
        }
    }
}

impl Validate for CometProcessConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::Invalid;
        self.comet
            .validate()
            .map_err(|e| Invalid(format!("[comet] {e}")))?;
        if self.logic_addrs.is_empty() {
            return Err(Invalid("logic_addrs must not be empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let config = StandaloneConfig::parse("").unwrap();
        assert_eq!(config.queue.capacity, 65536);
    }

    #[test]
    fn example_config_is_the_defaults() {
        let text = include_str!("../config/standalone.example.toml");
        let parsed = StandaloneConfig::parse(text).unwrap();
        let default = StandaloneConfig::default();
        assert_eq!(parsed.comet, default.comet);
        assert_eq!(
            format!("{:?}", parsed.logic),
            format!("{:?}", default.logic)
        );
        assert_eq!(format!("{:?}", parsed.job), format!("{:?}", default.job));
        assert_eq!(parsed.router.expire, default.router.expire);
        assert_eq!(parsed.queue.capacity, default.queue.capacity);
        assert_eq!(parsed.queue.timeout, default.queue.timeout);
        assert_eq!(
            format!("{:?}", parsed.mailbox),
            format!("{:?}", default.mailbox)
        );
        assert_eq!(parsed.web, default.web);
    }

    #[test]
    fn the_web_pages_are_on_in_standalone_and_off_in_logic() {
        assert!(StandaloneConfig::parse("").unwrap().web.enabled);
        assert!(
            !StandaloneConfig::parse("[web]\nenabled = false\n")
                .unwrap()
                .web
                .enabled
        );
        assert!(!parse("").web.enabled);
        assert!(parse("[web]\nenabled = true\n").web.enabled);
        let example: LogicProcessConfig =
            toml::from_str(include_str!("../config/logic.example.toml")).unwrap();
        assert_eq!(example.web, LogicProcessConfig::default().web);
        // A section that is written names the switch.
        assert!(StandaloneConfig::parse("[web]\n").is_err());
    }

    #[test]
    fn the_upstream_hook_answers_before_the_comet_gives_up() {
        let text = "[logic.hooks.upstream]\nurl = \"http://127.0.0.1:9/\"\ntimeout = \"5s\"\n";
        let err = StandaloneConfig::parse(text).unwrap_err();
        assert!(err.to_string().contains("logic_timeout"), "{err}");
        let text = "[comet]\nlogic_timeout = \"6s\"\n".to_owned() + text;
        StandaloneConfig::parse(&text).unwrap();
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = StandaloneConfig::parse("[queue]\ncapasity = 3\n").unwrap_err();
        assert!(err.to_string().contains("capasity"), "{err}");
    }

    #[test]
    fn example_configs_parse_and_validate() {
        let logic: LogicProcessConfig =
            toml::from_str(include_str!("../config/logic.example.toml")).unwrap();
        logic.validate().unwrap();
        assert_eq!(logic.routers, LogicProcessConfig::default().routers);
        let router: RouterProcessConfig =
            toml::from_str(include_str!("../config/router.example.toml")).unwrap();
        router.validate().unwrap();
        assert_eq!(router.store, "redis");
        let job: JobProcessConfig =
            toml::from_str(include_str!("../config/job.example.toml")).unwrap();
        job.validate().unwrap();
        assert!(job.comets.is_empty());
        let comet: CometProcessConfig =
            toml::from_str(include_str!("../config/comet.example.toml")).unwrap();
        comet.validate().unwrap();
        assert_eq!(comet.comet, rim_comet::Config::default());
    }

    #[test]
    fn empty_files_are_the_defaults() {
        let logic: LogicProcessConfig = toml::from_str("").unwrap();
        assert_eq!(logic.grpc_bind, "0.0.0.0:3119");
        let job: JobProcessConfig = toml::from_str("").unwrap();
        job.validate().unwrap();
        let router: RouterProcessConfig = toml::from_str("").unwrap();
        assert_eq!(router.store, "memory");
    }

    #[test]
    fn a_redis_cluster_is_named_by_its_seed_nodes() {
        let router: RouterProcessConfig = toml::from_str("store = \"redis\"").unwrap();
        assert_eq!(
            router.redis_target().unwrap(),
            rim_redis::Target::Node("redis://127.0.0.1:6379/".into())
        );
        let seeds = "store = \"redis\"\nredis_cluster = [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001\"]\n";
        let router: RouterProcessConfig = toml::from_str(seeds).unwrap();
        router.validate().unwrap();
        assert!(router.redis_target().unwrap().is_cluster());
        let both: RouterProcessConfig =
            toml::from_str(&format!("{seeds}redis_url = \"redis://127.0.0.1:6379/\"\n")).unwrap();
        let err = both.validate().unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");

        let logic = parse(
            "[mailbox]\nredis_cluster = [\"redis://127.0.0.1:7000\"]\nredis_wait_replicas = 1\n",
        );
        logic.mailbox.validate().unwrap();
        assert!(logic.mailbox.enabled());
        assert!(logic.mailbox.target().unwrap().unwrap().is_cluster());
        assert_eq!(logic.mailbox.redis_wait_replicas, 1);
        let both = parse("[mailbox]\nredis_url = \"redis://127.0.0.1:6379/\"\nredis_cluster = [\"redis://127.0.0.1:7000\"]\n");
        assert!(both.mailbox.validate().is_err());
        let db = parse("[mailbox]\nredis_cluster = [\"redis://127.0.0.1:7000/2\"]\n");
        assert!(
            db.mailbox.validate().is_err(),
            "a cluster has only database 0"
        );
        assert!(!parse("").mailbox.enabled());
    }

    #[test]
    fn a_router_shard_is_a_router_or_its_redis() {
        let direct = parse(
            "[logic.auth]\nmode = \"trust\"\n[logic.api]\nopen = true\n\
             [[routers]]\nname = \"r1\"\nredis_url = \"redis://127.0.0.1:6379/\"\nexpire = \"10m\"\n\
             [[routers]]\nname = \"r2\"\naddr = \"127.0.0.1:3139\"\n",
        );
        direct.validate().unwrap();
        assert_eq!(
            direct.routers[0].redis_url.as_deref(),
            Some("redis://127.0.0.1:6379/")
        );
        assert_eq!(direct.routers[0].expire, Duration::from_secs(600));
        let cluster: JobProcessConfig = toml::from_str(
            "[[routers]]\nname = \"r1\"\nredis_cluster = [\"redis://127.0.0.1:7000\"]\n",
        )
        .unwrap();
        cluster.validate().unwrap();
        assert!(cluster.routers[0]
            .redis_target()
            .unwrap()
            .is_some_and(|t| t.is_cluster()));
        assert_eq!(
            direct.routers[1],
            RouterNode::remote("r2", "127.0.0.1:3139")
        );
        for (shard, message) in [
            (
                "name = \"r1\"\n",
                "addr or redis_url (or redis_cluster) is required",
            ),
            (
                "name = \"r1\"\naddr = \"a:1\"\nredis_url = \"redis://r/\"\n",
                "exclude each other",
            ),
            (
                "name = \"r1\"\nredis_url = \"redis://r/\"\nredis_cluster = [\"redis://c:7000\"]\n",
                "not both",
            ),
        ] {
            let job: JobProcessConfig = toml::from_str(&format!("[[routers]]\n{shard}")).unwrap();
            let err = job.validate().unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<RouterProcessConfig>("stroe = \"redis\"").is_err());
        let bad_store: RouterProcessConfig = toml::from_str("store = \"etcd\"").unwrap();
        assert!(bad_store.validate().is_err());
    }

    /// The docker-compose configs must parse too, even though compose cannot run here.
    #[test]
    fn deploy_configs_parse_and_validate() {
        let logic: LogicProcessConfig =
            toml::from_str(include_str!("../deploy/logic.toml")).unwrap();
        logic.validate().unwrap();
        assert_eq!(logic.routers.len(), 2);
        let router: RouterProcessConfig =
            toml::from_str(include_str!("../deploy/router.toml")).unwrap();
        router.validate().unwrap();
        let job: JobProcessConfig = toml::from_str(include_str!("../deploy/job.toml")).unwrap();
        job.validate().unwrap();
        for text in [
            include_str!("../deploy/comet1.toml"),
            include_str!("../deploy/comet2.toml"),
        ] {
            let comet: CometProcessConfig = toml::from_str(text).unwrap();
            comet.validate().unwrap();
            assert!(comet.grpc_addr.is_some());
        }
    }

    fn parse(text: &str) -> LogicProcessConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn an_exposed_logic_refuses_to_start_without_a_key_or_a_token() {
        let err = parse("").validate().unwrap_err().to_string();
        assert!(err.contains("auth.secret"), "{err}");
        let err = parse("[logic.auth]\nsecret = \"s3cret\"\n")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("open = true"), "{err}");
        let secure = parse("[logic.auth]\nsecret = \"s3cret\"\n[logic.api]\ntokens = [\"t\"]\n");
        secure.validate().unwrap();
        let logic = secure.effective_logic();
        assert_eq!(logic.auth.mode(), rim_logic::AuthMode::Jwt);
        assert_eq!(logic.api.access(), rim_logic::ApiAccess::Tokens);
    }

    #[test]
    fn goims_open_behaviour_must_be_asked_for() {
        let open = parse("[logic.auth]\nmode = \"trust\"\n[logic.api]\nopen = true\n");
        open.validate().unwrap();
        let logic = open.effective_logic();
        assert_eq!(logic.auth.mode(), rim_logic::AuthMode::Trust);
        assert_eq!(logic.api.access(), rim_logic::ApiAccess::Open);
        // Standalone's library defaults stay goim's.
        let standalone = rim_logic::Config::default();
        assert_eq!(standalone.auth.mode(), rim_logic::AuthMode::Trust);
        assert_eq!(standalone.api.access(), rim_logic::ApiAccess::Loopback);
    }
}
