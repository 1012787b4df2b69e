//! Comet configuration: the serde [`Config`] (every field has a default, so an
//! empty TOML table is a valid config) and its validation.
//!
//! Binding the listen addresses is not done here: the binary binds
//! `tcp_bind` / `ws_bind` / `tls_bind` / `wss_bind` and hands the listeners
//! ([`crate::Listeners`]) to [`crate::Comet::serve`]. Nor is reading the TLS certificate: `validate`
//! only checks that the paths are given together; [`crate::Comet::new`]
//! loads them (module `tls`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::CometConfigError;

/// Largest accepted `max_body`: a frame's packLen is an int32 that includes the
/// 16-byte header.
const MAX_BODY_LIMIT: usize = i32::MAX as usize - rim_proto::HEADER_LEN;

/// Settings of one comet node.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This comet's id, stored by logic as the server of every session and
    /// used by job to address pushes; must be unique in the cluster.
    /// Default: the host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`,
    /// else `"comet"`); see [`Config::server_id`].
    pub server_id: Option<String>,
    /// Raw TCP listen addresses (goim `tcp.bind`). Default `["0.0.0.0:3101"]`.
    pub tcp_bind: Vec<String>,
    /// WebSocket listen addresses, path `/sub` (goim `websocket.bind`).
    /// Default `["0.0.0.0:3102"]`.
    pub ws_bind: Vec<String>,
    /// goim raw-TCP protocol over TLS: listen addresses (e.g.
    /// `["0.0.0.0:3104"]`; goim itself has no TLS TCP port). Needs `tls_cert`
    /// and `tls_key`. Default empty: no TLS TCP listener.
    pub tls_bind: Vec<String>,
    /// WebSocket over TLS (WSS), path `/sub`: listen addresses (goim
    /// `websocket.tlsBind`, port 3103). Needs `tls_cert` and `tls_key`.
    /// Default empty: no WSS listener.
    pub wss_bind: Vec<String>,
    /// PEM file with the certificate chain the `tls_bind` and `wss_bind`
    /// listeners present, leaf first (goim `websocket.certFile`). Set together
    /// with `tls_key`. Default unset.
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1;
    /// goim `websocket.privateFile`). Default unset.
    pub tls_key: Option<PathBuf>,
    /// How often the modification times (and sizes) of `tls_cert` and
    /// `tls_key` are checked. When either changed and both load, new TLS
    /// handshakes use the new certificate; if they do not load, a warning is
    /// logged and the previous certificate keeps serving. Open connections
    /// are never affected. `0s` turns the check off (reload then only through
    /// [`crate::Comet::reload_tls`], e.g. on SIGHUP). Default 10s.
    #[serde(with = "humantime_serde")]
    pub tls_reload_interval: Duration,
    /// Client-facing addresses (`host:port`) reported to logic for its nodes
    /// API. Default empty.
    pub addrs: Vec<String>,
    /// Load-balancing weight reported to logic. Default 1.
    pub weight: i32,
    /// Where job reaches this comet's push service (gRPC `host:port`),
    /// reported with the online counts so job can discover the comet. Set by
    /// `rim comet` from its `grpc_bind`/`grpc_addr`; empty (the default) for
    /// an in-process comet.
    pub grpc_addr: String,
    /// Time from accept (including the WebSocket upgrade) to a successful
    /// auth reply (goim `protocol.handshakeTimeout`). Default 8s.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Heartbeat timeout used when logic's `ConnectReply.heartbeat` is 0.
    /// Default 8m (goim: 4m heartbeat × 2).
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Duration,
    /// Largest client frame body in bytes; a WebSocket message may hold at
    /// most 16 + `max_body` bytes. Default 4096 (goim `MaxBodySize`).
    pub max_body: usize,
    /// Number of session buckets (lock shards). Default 32.
    pub buckets: usize,
    /// Bounded outbound queue per session, in messages; a push into a full
    /// queue disconnects the session as a slow client. Default 128.
    pub session_queue: usize,
    /// How often room and connection counts are reported to logic.
    /// Default 10s (retry after 1s on error).
    #[serde(with = "humantime_serde")]
    pub online_report_interval: Duration,
    /// Deadline on every call to logic; a timeout counts as
    /// `LogicCallError::Unavailable`. Default 5s.
    #[serde(with = "humantime_serde")]
    pub logic_timeout: Duration,
    /// Lower bound of the per-connection interval between logic heartbeats
    /// (TTL refreshes, sent on client heartbeats). Default 5m.
    #[serde(with = "humantime_serde")]
    pub logic_heartbeat_interval_min: Duration,
    /// Upper bound of that interval; each connection picks a random value in
    /// `[min, max]` once. Default 10m.
    #[serde(with = "humantime_serde")]
    pub logic_heartbeat_interval_max: Duration,
    /// How long `serve` waits for connection tasks after shutdown. Default 5s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Open connections (authenticated or not) this comet accepts; more are
    /// closed at accept. 0: no limit. Default 1,000,000.
    pub max_connections: usize,
    /// Open connections per client IP address; 0: no limit. Default 10,000
    /// (carrier NAT puts many users behind one address).
    pub max_connections_per_ip: usize,
    /// Client frames a connection may send in one second (heartbeats
    /// included); a connection over it is closed (reason `frame_rate`).
    /// 0: no limit. Default 50.
    pub max_frames_per_sec: u32,
    /// Rooms a connection may join with op 24, besides its primary room
    /// (the token's `room_id`, op 12); an op 24 beyond them is refused with
    /// code 413. 0: op 24 joins nothing. Default 16.
    pub max_rooms: usize,
    /// A join (op 8 with a room, op 12, op 24) to a room whose membership
    /// record in logic is not known to live at least this much longer is
    /// announced to logic first (`rim.room.Rooms/Announce`), and answered
    /// only once logic stored it. Must exceed job's `comet_ttl` plus
    /// `logic_timeout` (plus any clock skew between hosts): job sends a
    /// comet every room push once its online report is older than
    /// `comet_ttl`, and a record must not lapse before that. A record
    /// lives logic's `online_stale` (5 min) from each announce and each
    /// online report that lists the room. Default 60s.
    #[serde(with = "humantime_serde")]
    pub room_announce_margin: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_id: None,
            tcp_bind: vec!["0.0.0.0:3101".to_owned()],
            ws_bind: vec!["0.0.0.0:3102".to_owned()],
            tls_bind: Vec::new(),
            wss_bind: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_reload_interval: Duration::from_secs(10),
            addrs: Vec::new(),
            weight: 1,
            grpc_addr: String::new(),
            handshake_timeout: Duration::from_secs(8),
            heartbeat_timeout: Duration::from_secs(8 * 60),
            max_body: rim_proto::MAX_BODY_DEFAULT,
            buckets: 32,
            session_queue: 128,
            online_report_interval: Duration::from_secs(10),
            logic_timeout: Duration::from_secs(5),
            logic_heartbeat_interval_min: Duration::from_secs(5 * 60),
            logic_heartbeat_interval_max: Duration::from_secs(10 * 60),
            shutdown_grace: Duration::from_secs(5),
            max_connections: 1_000_000,
            max_connections_per_ip: 10_000,
            max_frames_per_sec: 50,
            max_rooms: 16,
            room_announce_margin: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// The server id: `server_id` if set, else the host name.
    pub fn server_id(&self) -> String {
        match &self.server_id {
            Some(id) => id.clone(),
            None => host_name(),
        }
    }

    /// Checks every field; call before binding anything.
    pub fn validate(&self) -> Result<(), CometConfigError> {
        if let Some(id) = &self.server_id {
            if id.trim().is_empty() {
                return Err(invalid("server_id", "must not be empty when set"));
            }
        }
        for (field, addrs) in [
            ("tcp_bind", &self.tcp_bind),
            ("ws_bind", &self.ws_bind),
            ("tls_bind", &self.tls_bind),
            ("wss_bind", &self.wss_bind),
        ] {
            if addrs.iter().any(|a| a.trim().is_empty()) {
                return Err(invalid(field, "addresses must not be empty"));
            }
        }
        self.validate_tls()?;
        if self.weight < 0 {
            return Err(invalid("weight", "must not be negative"));
        }
        if self.max_body == 0 || self.max_body > MAX_BODY_LIMIT {
            return Err(invalid(
                "max_body",
                format!("must be between 1 and {MAX_BODY_LIMIT}"),
            ));
        }
        if self.buckets == 0 || self.buckets > u32::MAX as usize {
            return Err(invalid("buckets", "must be between 1 and 2^32-1"));
        }
        if self.session_queue == 0 {
            return Err(invalid("session_queue", "must be at least 1"));
        }
        for (field, value) in [
            ("handshake_timeout", self.handshake_timeout),
            ("heartbeat_timeout", self.heartbeat_timeout),
            ("online_report_interval", self.online_report_interval),
            ("logic_timeout", self.logic_timeout),
            (
                "logic_heartbeat_interval_min",
                self.logic_heartbeat_interval_min,
            ),
        ] {
            if value.is_zero() {
                return Err(invalid(field, "must be greater than zero"));
            }
        }
        if self.logic_heartbeat_interval_max < self.logic_heartbeat_interval_min {
            return Err(invalid(
                "logic_heartbeat_interval_max",
                "must not be below logic_heartbeat_interval_min",
            ));
        }
        if self.room_announce_margin <= self.logic_timeout {
            return Err(invalid(
                "room_announce_margin",
                "must exceed logic_timeout (and job's comet_ttl plus logic_timeout, which the comet cannot check)",
            ));
        }
        Ok(())
    }

    /// TLS listeners need both files; the files come as a pair.
    fn validate_tls(&self) -> Result<(), CometConfigError> {
        for (field, path) in [("tls_cert", &self.tls_cert), ("tls_key", &self.tls_key)] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(invalid(field, "must not be empty when set"));
            }
        }
        let listeners = !self.tls_bind.is_empty() || !self.wss_bind.is_empty();
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), Some(_)) => Ok(()),
            (None, None) if !listeners => Ok(()),
            (None, _) if listeners => Err(invalid(
                "tls_cert",
                "tls_bind and wss_bind need tls_cert and tls_key (PEM certificate chain and private key files)",
            )),
            (None, _) => Err(invalid("tls_cert", "tls_key is set: set tls_cert too")),
            (Some(_), None) => Err(invalid(
                "tls_key",
                "tls_cert is set: set tls_key too (the certificate's private key, PEM)",
            )),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CometConfigError {
    CometConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The host name, as goim's `-host` default (`os.Hostname`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
        })
        .unwrap_or_else(|| "comet".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_gives_defaults() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config, Config::default());
        config.validate().unwrap();
        assert_eq!(config.tcp_bind, ["0.0.0.0:3101"]);
        assert_eq!(config.ws_bind, ["0.0.0.0:3102"]);
        assert_eq!(config.handshake_timeout, Duration::from_secs(8));
        assert_eq!(config.heartbeat_timeout, Duration::from_secs(480));
        assert_eq!(config.max_body, 4096);
        assert_eq!(config.buckets, 32);
        assert_eq!(config.session_queue, 128);
        assert!(config.tls_bind.is_empty() && config.wss_bind.is_empty());
        assert_eq!((config.tls_cert, config.tls_key), (None, None));
        assert_eq!(config.tls_reload_interval, Duration::from_secs(10));
    }

    #[test]
    fn tls_keys_parse() {
        let config: Config = toml::from_str(
            r#"
            tls_bind = ["0.0.0.0:3104"]
            wss_bind = ["0.0.0.0:3103"]
            tls_cert = "/etc/rim/cert.pem"
            tls_key = "/etc/rim/key.pem"
            tls_reload_interval = "1m"
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.wss_bind, ["0.0.0.0:3103"]);
        assert_eq!(config.tls_cert, Some(PathBuf::from("/etc/rim/cert.pem")));
        assert_eq!(config.tls_reload_interval, Duration::from_secs(60));
    }

    #[test]
    fn tls_listeners_need_both_files() {
        let listeners = Config {
            tls_bind: vec!["127.0.0.1:0".into()],
            ..Config::default()
        };
        let err = listeners.validate().unwrap_err();
        assert!(
            matches!(
                err,
                CometConfigError::Invalid {
                    field: "tls_cert",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("tls_key"), "{err}");
        let wss_cert_only = Config {
            wss_bind: vec!["127.0.0.1:0".into()],
            tls_cert: Some("cert.pem".into()),
            ..Config::default()
        };
        assert!(matches!(
            wss_cert_only.validate(),
            Err(CometConfigError::Invalid {
                field: "tls_key",
                ..
            })
        ));
        let key_only = Config {
            tls_key: Some("key.pem".into()),
            ..Config::default()
        };
        assert!(matches!(
            key_only.validate(),
            Err(CometConfigError::Invalid {
                field: "tls_cert",
                ..
            })
        ));
        let both = Config {
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            ..listeners
        };
        both.validate().unwrap();
    }

    #[test]
    fn humantime_durations_parse() {
        let config: Config = toml::from_str(
            r#"
            server_id = "comet-1"
            handshake_timeout = "500ms"
            logic_heartbeat_interval_min = "1m"
            logic_heartbeat_interval_max = "1m 30s"
            "#,
        )
        .unwrap();
        assert_eq!(config.handshake_timeout, Duration::from_millis(500));
        assert_eq!(config.logic_heartbeat_interval_max, Duration::from_secs(90));
        assert_eq!(config.server_id(), "comet-1");
        config.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(toml::from_str::<Config>("bucket_size = 3").is_err());
    }

    #[test]
    fn invalid_values_are_reported_by_field() {
        let cases: Vec<(&str, Config)> = vec![
            (
                "buckets",
                Config {
                    buckets: 0,
                    ..Config::default()
                },
            ),
            (
                "session_queue",
                Config {
                    session_queue: 0,
                    ..Config::default()
                },
            ),
            (
                "max_body",
                Config {
                    max_body: 0,
                    ..Config::default()
                },
            ),
            (
                "handshake_timeout",
                Config {
                    handshake_timeout: Duration::ZERO,
                    ..Config::default()
                },
            ),
            (
                "logic_heartbeat_interval_max",
                Config {
                    logic_heartbeat_interval_max: Duration::from_secs(1),
                    ..Config::default()
                },
            ),
            (
                "server_id",
                Config {
                    server_id: Some(" ".into()),
                    ..Config::default()
                },
            ),
            (
                "wss_bind",
                Config {
                    wss_bind: vec![String::new()],
                    ..Config::default()
                },
            ),
            (
                "tls_cert",
                Config {
                    tls_cert: Some(PathBuf::new()),
                    tls_key: Some("key.pem".into()),
                    ..Config::default()
                },
            ),
            (
                "room_announce_margin",
                Config {
                    room_announce_margin: Duration::from_secs(5),
                    ..Config::default()
                },
            ),
        ];
        for (field, config) in cases {
            match config.validate() {
                Err(CometConfigError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn default_server_id_is_not_empty() {
        assert!(!Config::default().server_id().is_empty());
    }
}
