//! The real services the suite's service tests run against, found through
//! the environment that `scripts/services.sh env` prints (and
//! `scripts/test.sh` exports).
//!
//! A test that needs a service calls [`kafka`] or [`redis`]. When the suite
//! requires services (`RIM_REQUIRE_SERVICES=1`, set by `scripts/test.sh`) a
//! missing one fails the test loudly; under a plain `cargo test` the test is
//! skipped with a printed reason.

fn lookup(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("RIM_REQUIRE_SERVICES").is_ok_and(|v| v == "1") => {
            panic!("{var} is not set but services are required: run scripts/test.sh, which starts {what}")
        }
        _ => {
            eprintln!("skipping: {var} not set (scripts/test.sh starts {what} and sets it)");
            None
        }
    }
}

/// The Kafka-protocol broker's `host:port` (`RIM_TEST_KAFKA`).
pub fn kafka() -> Option<String> {
    lookup("RIM_TEST_KAFKA", "a Kafka-protocol broker")
}

/// The Redis URL (`RIM_TEST_REDIS`).
pub fn redis() -> Option<String> {
    lookup("RIM_TEST_REDIS", "Redis")
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
