//! The real services the suite's service tests run against, found through
//! the environment that `scripts/services.sh env` prints (and
//! `scripts/test.sh` exports).
//!
//! A test that needs a service calls [`kafka`], [`redis`] or
//! [`redis_cluster`]. A missing
//! service fails the test loudly: a service test never passes without its
//! service. Only an explicit opt-out, `RIM_SKIP_SERVICES=1`, skips it
//! instead, with the reason written to stderr (past the test harness's
//! capture, so it shows). `RIM_REQUIRE_SERVICES`, which once turned the
//! failure on, is no longer needed and is ignored.

use std::io::Write as _;

/// A service the suite starts: its variable, what it is, and its name for
/// `scripts/services.sh up <name>`.
struct Service {
    var: &'static str,
    what: &'static str,
    name: &'static str,
}

const KAFKA: Service = Service {
    var: "RIM_TEST_KAFKA",
    what: "a Kafka-protocol broker",
    name: "kafka",
};
const REDIS: Service = Service {
    var: "RIM_TEST_REDIS",
    what: "Redis",
    name: "redis",
};
const REDIS_CLUSTER: Service = Service {
    var: "RIM_TEST_REDIS_CLUSTER",
    what: "a Redis Cluster",
    name: "redis-cluster",
};

/// What a test does about `service`, given its variable's value and
/// `RIM_SKIP_SERVICES`: use it, skip (`Ok(None)`, with the reason), or
/// fail (`Err`, with the message).
fn decide(
    service: &Service,
    value: Option<String>,
    skip: Option<String>,
) -> Result<Option<String>, String> {
    let Service { var, what, name } = service;
    match value {
        Some(value) if !value.is_empty() => Ok(Some(value)),
        _ if skip.as_deref() == Some("1") => Ok(None),
        _ => Err(format!(
            "{var} is not set: run scripts/test.sh, which starts {what}, or \
             `scripts/services.sh up {name}` and then \
             `eval \"$(scripts/services.sh env)\"` \
             (RIM_SKIP_SERVICES=1 skips service tests instead)"
        )),
    }
}

#[track_caller]
fn lookup(service: &Service) -> Option<String> {
    let var = service.var;
    let value = std::env::var(var).ok();
    let skip = std::env::var("RIM_SKIP_SERVICES").ok();
    match decide(service, value, skip) {
        Ok(Some(value)) => Some(value),
        Ok(None) => {
            // Not eprintln!: the harness captures that for passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "skipping a service test: {var} not set and RIM_SKIP_SERVICES=1"
            );
            None
        }
        Err(message) => panic!("{message}"),
    }
}

/// The Kafka-protocol broker's `host:port` (`RIM_TEST_KAFKA`).
#[track_caller]
pub fn kafka() -> Option<String> {
    lookup(&KAFKA)
}

/// The Redis URL (`RIM_TEST_REDIS`).
#[track_caller]
pub fn redis() -> Option<String> {
    lookup(&REDIS)
}

/// The seed nodes of the test Redis Cluster (`RIM_TEST_REDIS_CLUSTER`,
/// comma-separated `redis://host:port/` URLs): three masters, a replica
/// each (`scripts/services.sh`).
#[track_caller]
pub fn redis_cluster() -> Option<Vec<String>> {
    lookup(&REDIS_CLUSTER).map(|seeds| {
        seeds
            .split(',')
            .map(str::trim)
            .filter(|seed| !seed.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// A name unique to this process, moment and call, for topics, groups, keys
/// and directories that concurrent tests must not share.
pub fn unique(prefix: &str) -> String {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}-{call}", std::process::id())
}

/// Runs each named `async fn(rim_redis::Target)` twice: on the suite's
/// single Redis (`node::<name>`) and on its Redis Cluster
/// (`cluster::<name>`); each skips as [`redis`] and [`redis_cluster`] say.
/// The test attribute is `#[tokio::test]` unless one is given first:
/// `on_redis_node_and_cluster!(#[tokio::test(flavor = "multi_thread")] a, b)`.
/// The calling crate names `rim_redis` among its dependencies.
#[macro_export]
macro_rules! on_redis_node_and_cluster {
    (#[$test:meta] $($name:ident),* $(,)?) => {
        mod node {
            $(
                #[$test]
                async fn $name() {
                    let Some(url) = $crate::services::redis() else { return };
                    super::$name(rim_redis::Target::Node(url)).await;
                }
            )*
        }

        mod cluster {
            $(
                #[$test]
                async fn $name() {
                    let Some(seeds) = $crate::services::redis_cluster() else { return };
                    super::$name(rim_redis::Target::Cluster(seeds)).await;
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_redis_node_and_cluster!(#[tokio::test] $($name),*);
    };
}

#[cfg(test)]
mod tests {
    use super::{decide, REDIS, REDIS_CLUSTER};

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    #[test]
    fn a_missing_service_fails_unless_skipping_is_asked_for() {
        let err = decide(&REDIS, None, None).unwrap_err();
        assert!(err.contains("RIM_TEST_REDIS is not set"), "{err}");
        assert!(err.contains("scripts/services.sh up redis`"), "{err}");
        let err = decide(&REDIS_CLUSTER, None, None).unwrap_err();
        assert!(
            err.contains("scripts/services.sh up redis-cluster`"),
            "{err}"
        );
        // Empty counts as missing; anything but "1" is not an opt-out.
        assert!(decide(&REDIS, s(""), None).is_err());
        assert!(decide(&REDIS, None, s("0")).is_err());
        assert!(decide(&REDIS, None, s("")).is_err());
        assert_eq!(decide(&REDIS, None, s("1")), Ok(None));
    }

    #[test]
    fn a_present_service_is_used_even_when_skipping_is_allowed() {
        let url = "redis://127.0.0.1:6379/";
        assert_eq!(decide(&REDIS, s(url), None), Ok(s(url)));
        assert_eq!(decide(&REDIS, s(url), s("1")), Ok(s(url)));
    }
}
