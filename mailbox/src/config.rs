//! Mailbox retention settings, shared by every store (each field says which
//! stores use it).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a mailbox configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxConfigError {
    /// A field holds a value the store cannot work with.
    #[error("invalid mailbox config: {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// How much a mailbox keeps, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    /// Most messages one mailbox keeps; an append beyond it removes the
    /// oldest (so `first` moves up). Default 1000.
    pub max_len: u32,
    /// How long a message id is remembered per mailbox: an entry whose
    /// `(mid, id)` was appended this recently is not stored again. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
    /// Messages older than this are removed by the embedded store's sweep
    /// (once a minute). The memory store keeps them; the Redis store uses
    /// `idle_ttl` instead. Default `30d`.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Redis store: a mailbox that received nothing for this long loses its
    /// messages (the time to live of its messages, renewed by each append),
    /// so `first` becomes `top + 1`. Default `7d`.
    #[serde(with = "humantime_serde")]
    pub idle_ttl: Duration,
    /// Redis store: how long a mailbox's epoch, bounds, read position and
    /// device acks outlive its last append. At least `idle_ttl`, so that a
    /// client returning after its messages expired still finds the epoch
    /// and `first` and learns that it missed messages, instead of a new
    /// mailbox that looks complete. Past it the mailbox starts over under a
    /// new epoch. Default `30d`.
    #[serde(with = "humantime_serde")]
    pub meta_ttl: Duration,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            max_len: 1000,
            idempotency_window: Duration::from_secs(24 * 60 * 60),
            max_age: Duration::from_secs(30 * 24 * 60 * 60),
            idle_ttl: Duration::from_secs(7 * 24 * 60 * 60),
            meta_ttl: Duration::from_secs(30 * 24 * 60 * 60),
        }
    }
}

impl MailboxConfig {
    /// Refuses settings the stores cannot honour.
    pub fn validate(&self) -> Result<(), MailboxConfigError> {
        let invalid = |field, reason| Err(MailboxConfigError::Invalid { field, reason });
        if self.max_len == 0 {
            return invalid("max_len", "must be at least 1");
        }
        if self.idempotency_window < Duration::from_secs(1) {
            return invalid("idempotency_window", "must be at least 1s");
        }
        if self.max_age < Duration::from_secs(1) {
            return invalid("max_age", "must be at least 1s");
        }
        if self.idle_ttl < Duration::from_secs(1) {
            return invalid("idle_ttl", "must be at least 1s");
        }
        if self.meta_ttl < self.idle_ttl {
            return invalid("meta_ttl", "must be at least idle_ttl");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_gives_the_documented_defaults() {
        let config: MailboxConfig = toml::from_str("").unwrap();
        assert_eq!(config, MailboxConfig::default());
        assert_eq!(config.max_len, 1000);
        assert_eq!(config.idempotency_window, Duration::from_secs(86_400));
        assert_eq!(config.max_age, Duration::from_secs(30 * 86_400));
        assert_eq!(config.idle_ttl, Duration::from_secs(7 * 86_400));
        assert_eq!(config.meta_ttl, Duration::from_secs(30 * 86_400));
        config.validate().unwrap();
    }

    #[test]
    fn durations_are_human_readable_and_unknown_fields_refused() {
        let config: MailboxConfig = toml::from_str(
            "max_len = 5\nidempotency_window = \"1h\"\nmax_age = \"7d\"\n\
             idle_ttl = \"2d\"\nmeta_ttl = \"3d\"",
        )
        .unwrap();
        assert_eq!(config.max_len, 5);
        assert_eq!(config.idle_ttl, Duration::from_secs(2 * 86_400));
        assert_eq!(config.meta_ttl, Duration::from_secs(3 * 86_400));
        assert_eq!(config.idempotency_window, Duration::from_secs(3600));
        assert_eq!(config.max_age, Duration::from_secs(7 * 86_400));
        assert!(toml::from_str::<MailboxConfig>("maxlen = 5").is_err());
    }

    #[test]
    fn zero_limits_are_refused() {
        let config = MailboxConfig {
            max_len: 0,
            ..MailboxConfig::default()
        };
        assert!(config.validate().is_err());
        let config = MailboxConfig {
            idempotency_window: Duration::ZERO,
            ..MailboxConfig::default()
        };
        assert!(config.validate().is_err());
        let config = MailboxConfig {
            idle_ttl: Duration::ZERO,
            meta_ttl: Duration::ZERO,
            ..MailboxConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn meta_must_outlive_the_messages() {
        let config = MailboxConfig {
            idle_ttl: Duration::from_secs(3600),
            meta_ttl: Duration::from_secs(60),
            ..MailboxConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err(MailboxConfigError::Invalid {
                field: "meta_ttl",
                reason: "must be at least idle_ttl"
            })
        );
        let config = MailboxConfig {
            meta_ttl: config.idle_ttl,
            ..config
        };
        config.validate().unwrap();
    }
}
