//! The standalone configuration: one TOML file with a section per component.
//! Every field has a default, so no file is needed at all.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Configuration of `rim standalone`.
#[derive(Debug, Clone, Default, Deserialize)]
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
}

/// The in-process push queue (the standalone stand-in for Kafka).
#[derive(Debug, Clone, Deserialize)]
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

impl StandaloneConfig {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<StandaloneConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let config = StandaloneConfig::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<StandaloneConfig, ConfigError> {
        let config: StandaloneConfig =
            toml::from_str(text).map_err(|source| ConfigError::Parse {
                path: "<text>".into(),
                source,
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.comet
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[comet] {e}")))?;
        self.logic
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[logic] {e}")))?;
        self.job
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("[job] {e}")))?;
        if self.queue.capacity == 0 {
            return Err(ConfigError::Invalid(
                "[queue] capacity must be at least 1".into(),
            ));
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
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = StandaloneConfig::parse("[queue]\ncapasity = 3\n").unwrap_err();
        assert!(err.to_string().contains("capasity"), "{err}");
    }
}
