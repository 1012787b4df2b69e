//! Router configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Session registry settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How long a mapping lives without a heartbeat refresh (goim `redis.expire`).
    /// Default 30m.
    #[serde(with = "humantime_serde")]
    pub expire: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            expire: Duration::from_secs(30 * 60),
        }
    }
}
