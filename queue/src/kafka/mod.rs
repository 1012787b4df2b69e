//! The push queue on Kafka (rdkafka, librdkafka bundled): [`KafkaQueue`]
//! publishes, [`KafkaSource`] consumes in a consumer group, and one
//! [`KafkaConfig`] (`[kafka]` in logic.toml and job.toml) configures both.
//!
//! Records are protobuf `goim.logic.PushMsg` values with goim's record keys,
//! so goim's own logic and job can share the topic.

mod consumer;
mod producer;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use consumer::KafkaSource;
pub use producer::KafkaQueue;

/// The push topic and how to reach it (`[kafka]`). logic reads the
/// producer fields, job the consumer fields; both read `brokers`, `topic`
/// and `properties`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers. Default `["127.0.0.1:9092"]`.
    pub brokers: Vec<String>,
    /// Topic of push records. Default `goim-push-topic` (goim's).
    pub topic: String,
    /// Extra librdkafka properties, e.g. `{ "linger.ms" = "1" }`. Serialized
    /// (`rim check-config`) with the values of passwords and secrets
    /// (`sasl.password`, `ssl.key.password`, ...) as `<redacted>`.
    #[serde(serialize_with = "serialize_properties")]
    pub properties: BTreeMap<String, String>,

    /// Producer (logic): how long a push may wait for the broker's
    /// acknowledgement before the API answers 503. Default 5s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Producer (logic): create the topic at start if it does not exist.
    /// Default true.
    pub create_topic: bool,
    /// Producer (logic): partitions of a topic created at start. Default 8.
    pub partitions: i32,
    /// Producer (logic): replication factor of a topic created at start.
    /// Default 1.
    pub replication: i32,

    /// Consumer (job): the consumer group. Default `goim-push-group-job`.
    pub group: String,
    /// Consumer (job): the consumer-group session timeout. Default 10s
    /// (tests use less).
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Consumer (job): records taken but not yet settled, at most. Default 8192.
    pub max_in_flight: usize,
}

fn serialize_properties<S: serde::Serializer>(
    properties: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(properties.iter().map(|(k, v)| {
        let secret = ["password", "secret", "token"]
            .iter()
            .any(|word| k.contains(word));
        (k, if secret { "<redacted>" } else { v.as_str() })
    }))
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: vec!["127.0.0.1:9092".into()],
            topic: "goim-push-topic".into(),
            properties: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            create_topic: true,
            partitions: 8,
            replication: 1,
            group: "goim-push-group-job".into(),
            session_timeout: Duration::from_secs(10),
            max_in_flight: 8192,
        }
    }
}

impl KafkaConfig {
    /// A librdkafka client configuration with the brokers and, last so they
    /// win, the extra `properties`; `set` adds the client's own settings.
    fn client(&self, set: impl FnOnce(&mut rdkafka::ClientConfig)) -> rdkafka::ClientConfig {
        let mut client = rdkafka::ClientConfig::new();
        client.set("bootstrap.servers", self.brokers.join(","));
        set(&mut client);
        for (k, v) in &self.properties {
            client.set(k, v);
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logic_and_job_sections_parse_into_one_config() {
        let logic: KafkaConfig =
            toml::from_str("brokers = [\"b:9092\"]\ntimeout = \"3s\"\npartitions = 2\n").unwrap();
        assert_eq!(logic.timeout, Duration::from_secs(3));
        assert_eq!(logic.group, "goim-push-group-job");
        let job: KafkaConfig =
            toml::from_str("group = \"g\"\nsession_timeout = \"6s\"\nmax_in_flight = 10\n")
                .unwrap();
        assert_eq!(job.topic, "goim-push-topic");
        assert_eq!(job.max_in_flight, 10);
        assert!(toml::from_str::<KafkaConfig>("grop = \"g\"").is_err());
    }
}
