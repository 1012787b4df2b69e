//! Logic configuration: the HTTP listener, request limits, online
//! aggregation timings, what the nodes API tells clients (goim's `[node]`
//! and `[backoff]`),
//! client token verification (`[auth]`) and push API bearer tokens (`[api]`).
//!
//! Every field has a default, so an empty TOML table is a working config.
//! [`Config::validate`] runs before anything binds.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogicConfigError {
    /// A field holds a value logic cannot work with.
    #[error("invalid logic config: {field}: {reason}")]
    Invalid {
        /// The offending field, dotted (`node.heartbeat`).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Logic service settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address (`host:port`) the binary binds the HTTP push API to (goim
    /// `httpServer.addr`). Default `0.0.0.0:3111`.
    pub http_bind: String,
    /// Largest accepted HTTP request body in bytes; larger bodies get 413.
    /// Default 1 MiB (1048576).
    pub max_body: usize,
    /// Operation of pushes made through the v1 API when the request names
    /// none (goim v1.2 always used 5, `OP_SEND_SMS_REPLY`). Default 5.
    pub v1_operation: i32,
    /// An online report older than this is ignored: its comet is presumed
    /// gone (goim: 5 minutes). Default `5m`.
    #[serde(with = "humantime_serde")]
    pub online_stale: Duration,
    /// A comet whose online report is older than this is no longer offered
    /// to clients (`/goim/nodes/weighted`, `/goim/nodes/instances`, the
    /// `Nodes` call): three missed reports. Its room counts still count until
    /// `online_stale`. (goim offers what its discovery service lists, which
    /// evicts an instance about 90 s after its last renewal.) Default `30s`.
    #[serde(with = "humantime_serde")]
    pub node_stale: Duration,
    /// The cluster online aggregate is rebuilt when an online or nodes
    /// request finds it older than this (goim refreshes every 10 s). Default `10s`.
    #[serde(with = "humantime_serde")]
    pub online_refresh: Duration,
    /// What clients are told about comet nodes (goim `[node]`).
    pub node: NodeConfig,
    /// Client reconnect backoff advertised by the nodes API (goim `[backoff]`).
    pub backoff: BackoffConfig,
    /// How the op 7 token of a client is verified (goim: not at all).
    pub auth: AuthConfig,
    /// Who may call the HTTP push API (goim: anyone).
    pub api: ApiConfig,
    /// Messages clients send (op 4 of IM sessions) and groups.
    pub chat: ChatConfig,
    /// HTTP calls to the business backend (`[logic.hooks]`): none by default.
    pub hooks: HooksConfig,
}

/// `[logic.chat]`: messages clients send, groups.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Largest `body` of a sent message, in bytes of its JSON text; larger
    /// answers op 5 code 413. Default 2048 (below the comet's frame limit,
    /// 4096, so that the client is told rather than disconnected).
    pub max_body: usize,
    /// Messages one user may send per second (op 4), per logic instance.
    /// Over it op 5 answers 429. Default 10.
    pub rate: u32,
    /// Messages a user may send at once above `rate`. Default 20.
    pub burst: u32,
    /// Most members of a group: messages are written to each member's
    /// mailbox (write diffusion), so a group's size is what one message
    /// costs. Adding members past it, or sending to a group over it,
    /// answers 413. Default 500.
    pub group_max_members: usize,
    /// The word filter (`[logic.chat.filter]`).
    pub filter: crate::FilterConfig,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_body: 2048,
            rate: 10,
            burst: 20,
            group_max_members: 500,
            filter: crate::FilterConfig::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_bind: "0.0.0.0:3111".to_owned(),
            max_body: 1024 * 1024,
            v1_operation: 5,
            online_stale: Duration::from_secs(5 * 60),
            node_stale: Duration::from_secs(30),
            online_refresh: Duration::from_secs(10),
            node: NodeConfig::default(),
            backoff: BackoffConfig::default(),
            auth: AuthConfig::default(),
            api: ApiConfig::default(),
            chat: ChatConfig::default(),
            hooks: HooksConfig::default(),
        }
    }
}

/// `[logic.hooks]`: HTTP calls to the business backend. Each hook is off
/// unless its section is given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// `[logic.hooks.upstream]`: each client message is posted to the
    /// backend before it is accepted. Default off.
    pub upstream: Option<UpstreamHookConfig>,
    /// `[logic.hooks.offline]`: stored messages no device of their user
    /// acknowledged in time are posted to the backend in batches. Default off.
    pub offline: Option<OfflineHookConfig>,
}

/// What the upstream hook's failure (timeout, non-2xx, unreadable answer,
/// no connection) does to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Fail open: the message goes on as if the backend had accepted it.
    Accept,
    /// Fail closed: op 5 answers 503.
    #[default]
    Reject,
}

/// `[logic.hooks.upstream]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamHookConfig {
    /// The backend endpoint, `http://host:port/path` (plain HTTP only: the
    /// client is built without TLS). Required.
    pub url: String,
    /// Longest wait for the backend's answer, connecting included. Default `2s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// `reject` (fail closed, op 5 503) or `accept` (fail open). Default `reject`.
    pub on_failure: OnFailure,
}

impl Default for UpstreamHookConfig {
    fn default() -> Self {
        UpstreamHookConfig {
            url: String::new(),
            timeout: Duration::from_secs(2),
            on_failure: OnFailure::Reject,
        }
    }
}

/// `[logic.hooks.offline]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineHookConfig {
    /// The backend endpoint, `http://host:port/path` (plain HTTP only).
    /// Required.
    pub url: String,
    /// A stored message is listed when no device of its user acknowledged
    /// it this long after it was stored. Default `15s`.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// Most messages in one POST. Default 100.
    pub batch: usize,
    /// How often due messages are checked and their batches sent. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Longest wait for the backend's answer to one POST. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A failed POST is tried again this many times (with backoff), then
    /// its batch is dropped and counted. Default 3.
    pub retries: u32,
}

impl Default for OfflineHookConfig {
    fn default() -> Self {
        OfflineHookConfig {
            url: String::new(),
            after: Duration::from_secs(15),
            batch: 100,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            retries: 3,
        }
    }
}

/// `Ok` when `url` is an absolute `http://` URL.
fn check_hook_url(field: &'static str, url: &str) -> Result<(), LogicConfigError> {
    if url.is_empty() {
        return Err(invalid(field, "required when the hook's section is given"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(field, format!("{url:?}: {e}")))?;
    if parsed.scheme() != "http" || !parsed.has_host() {
        return Err(invalid(
            field,
            format!("{url:?}: an http:// URL is required (hooks are built without TLS)"),
        ));
    }
    Ok(())
}

impl HooksConfig {
    fn validate(&self) -> Result<(), LogicConfigError> {
        if let Some(upstream) = &self.upstream {
            check_hook_url("hooks.upstream.url", &upstream.url)?;
            if upstream.timeout.is_zero() {
                return Err(invalid("hooks.upstream.timeout", "must be greater than 0"));
            }
        }
        if let Some(offline) = &self.offline {
            check_hook_url("hooks.offline.url", &offline.url)?;
            if offline.after.is_zero() {
                return Err(invalid("hooks.offline.after", "must be greater than 0"));
            }
            if offline.batch == 0 {
                return Err(invalid("hooks.offline.batch", "must be at least 1"));
            }
            if offline.interval.is_zero() {
                return Err(invalid("hooks.offline.interval", "must be greater than 0"));
            }
            if offline.timeout.is_zero() {
                return Err(invalid("hooks.offline.timeout", "must be greater than 0"));
            }
        }
        Ok(())
    }
}

/// Comet node settings handed to clients (goim `[node]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Domain clients fall back to when no comet is known. Default `conn.goim.io`.
    pub default_domain: String,
    /// Suffix appended to a comet's hostname for web clients. Default `.goim.io`.
    pub host_domain: String,
    /// Comet TCP port. Default 3101.
    pub tcp_port: u16,
    /// Comet WebSocket port. Default 3102.
    pub ws_port: u16,
    /// Comet secure WebSocket port. Default 3103.
    pub wss_port: u16,
    /// Client heartbeat interval. Default `4m`.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Missed heartbeats after which comet closes a connection; the server
    /// side timeout is `heartbeat × heartbeat_max`. Default 2.
    pub heartbeat_max: i32,
    /// Weight gain of comets in the client's region (goim `regionWeight`).
    /// Accepted for compatibility but unused: goim's IP → region lookup is a
    /// stub, so its region boost never applies. Default 1.6.
    pub region_weight: f64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            default_domain: "conn.goim.io".to_owned(),
            host_domain: ".goim.io".to_owned(),
            tcp_port: 3101,
            ws_port: 3102,
            wss_port: 3103,
            heartbeat: Duration::from_secs(4 * 60),
            heartbeat_max: 2,
            region_weight: 1.6,
        }
    }
}

/// Reconnect backoff advertised to clients (goim `[backoff]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// Longest delay between reconnects, in seconds. Default 300.
    pub max_delay: i32,
    /// First delay, in seconds. Default 3.
    pub base_delay: i32,
    /// Growth factor per attempt. Default 1.8.
    pub factor: f32,
    /// Random jitter factor. Default 1.3 (goim's code default).
    pub jitter: f32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            max_delay: 300,
            base_delay: 3,
            factor: 1.8,
            jitter: 1.3,
        }
    }
}

/// How client tokens are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// goim's behaviour: the client's JSON token is believed as it is (any
    /// mid, any room). Only for trusted networks and goim compatibility.
    #[default]
    Trust,
    /// The token is a JWT signed by the business backend; the mid, and the
    /// room and accepts when present, come from its claims.
    Jwt,
}

/// JWT signature algorithms accepted in `jwt` mode; exactly one is configured,
/// every other (`none` included) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with the shared `secret`.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 SHA-256, verified with `public_key_file`.
    RS256,
    /// ECDSA P-256 SHA-256, verified with `public_key_file`.
    ES256,
}

/// Client token verification (`[logic.auth]`).
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `trust` (goim: no verification) or `jwt`. Unset: `trust` in
    /// `rim standalone`, `jwt` in `rim logic` (see [`Config::secure_defaults`]).
    pub mode: Option<AuthMode>,
    /// jwt: the signature algorithm, `HS256`, `RS256` or `ES256`. Default `HS256`.
    pub algorithm: JwtAlgorithm,
    /// jwt, HS256: the shared secret (its UTF-8 bytes). Default empty.
    /// Serialized (`rim check-config`) as `<redacted>` when set.
    #[serde(serialize_with = "serialize_redacted")]
    pub secret: String,
    /// jwt, RS256/ES256: the PEM file of the public key. Default none.
    pub public_key_file: Option<PathBuf>,
    /// jwt: when set, the `iss` claim must equal it. Default none.
    pub issuer: Option<String>,
    /// jwt: when set, the `aud` claim must contain it. Default none.
    pub audience: Option<String>,
    /// jwt: clock skew allowed on `exp` and `nbf`. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: None,
            algorithm: JwtAlgorithm::HS256,
            secret: String::new(),
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }
}

/// Shows whether a secret is set, never the secret.
fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

fn serialize_redacted<S: serde::Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(redacted(secret))
}

fn serialize_redacted_list<S: serde::Serializer>(
    secrets: &[String],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(secrets.iter().map(|secret| redacted(secret)))
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("mode", &self.mode)
            .field("algorithm", &self.algorithm)
            .field("secret", &redacted(&self.secret))
            .field("public_key_file", &self.public_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Push API access (`[logic.api]`).
#[derive(Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer tokens accepted in `Authorization: Bearer <token>`. When any is
    /// set, every push endpoint (v1 and v2) and `/1/server/del` requires one.
    /// Serialized (`rim check-config`) as `<redacted>` each.
    #[serde(serialize_with = "serialize_redacted_list")]
    pub tokens: Vec<String>,
    /// `true`: serve the push API without tokens to anyone, as goim does.
    /// `false`: require a token from everyone. Unset: `rim standalone`
    /// without tokens serves clients on loopback addresses (127.0.0.0/8,
    /// ::1) without a token and refuses every other address (401), so a
    /// standalone server on a public interface is not an open relay; `rim
    /// logic` requires tokens and refuses to start without any unless
    /// `open = true` is given explicitly.
    pub open: Option<bool>,
    /// Also require a token on the read endpoints (`/goim/online/*`,
    /// `/goim/nodes/instances`, `/1/count`). `/goim/nodes/weighted`, which
    /// clients call to find comets, stays open. Default false.
    pub protect_reads: bool,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tokens: Vec<&str> = self.tokens.iter().map(|t| redacted(t)).collect();
        f.debug_struct("ApiConfig")
            .field("tokens", &tokens)
            .field("protect_reads", &self.protect_reads)
            .field("open", &self.open)
            .finish()
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> LogicConfigError {
    LogicConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl AuthConfig {
    /// The verification key of a `jwt` config, or the field at fault and why.
    pub(crate) fn decoding_key(&self) -> Result<DecodingKey, (&'static str, String)> {
        match self.algorithm {
            JwtAlgorithm::HS256 => {
                if self.secret.is_empty() {
                    return Err(("auth.secret", "required for HS256".into()));
                }
                Ok(DecodingKey::from_secret(self.secret.as_bytes()))
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                let Some(path) = &self.public_key_file else {
                    return Err((
                        "auth.public_key_file",
                        format!("required for {:?}", self.algorithm),
                    ));
                };
                let pem = std::fs::read(path).map_err(|err| {
                    (
                        "auth.public_key_file",
                        format!("cannot read {}: {err}", path.display()),
                    )
                })?;
                let key = if self.algorithm == JwtAlgorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                key.map_err(|err| {
                    (
                        "auth.public_key_file",
                        format!(
                            "{} is not a {:?} public key in PEM: {err}",
                            path.display(),
                            self.algorithm
                        ),
                    )
                })
            }
        }
    }

    /// The mode in force: `trust` when unset.
    pub fn mode(&self) -> AuthMode {
        self.mode.unwrap_or(AuthMode::Trust)
    }
}

/// Who may call the push and admin endpoints without a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAccess {
    /// Anyone (`open = true`).
    Open,
    /// Clients on loopback addresses; others are refused (unset `open`, no tokens).
    Loopback,
    /// Nobody: a configured token is required.
    Tokens,
}

impl ApiConfig {
    /// The access rule in force.
    pub fn access(&self) -> ApiAccess {
        match self.open {
            Some(true) => ApiAccess::Open,
            Some(false) => ApiAccess::Tokens,
            None if self.tokens.is_empty() => ApiAccess::Loopback,
            None => ApiAccess::Tokens,
        }
    }
}

impl Config {
    /// The defaults of a logic exposed on its own (`rim logic`): client
    /// tokens verified as JWTs and the push API closed unless the config says
    /// otherwise explicitly. `validate` then refuses a config that gives no
    /// key or no bearer token.
    pub fn secure_defaults(mut self) -> Config {
        self.auth.mode.get_or_insert(AuthMode::Jwt);
        self.api.open.get_or_insert(false);
        self
    }

    /// Checks the values that deserialization cannot: run it before binding.
    pub fn validate(&self) -> Result<(), LogicConfigError> {
        if self.http_bind.is_empty() {
            return Err(invalid("http_bind", "must not be empty"));
        }
        if self.max_body == 0 {
            return Err(invalid("max_body", "must be at least 1 byte"));
        }
        if self.chat.max_body == 0 {
            return Err(invalid("chat.max_body", "must be at least 1 byte"));
        }
        if self.chat.rate == 0 || self.chat.burst == 0 {
            return Err(invalid("chat.rate", "rate and burst must be at least 1"));
        }
        if self.chat.group_max_members == 0 {
            return Err(invalid("chat.group_max_members", "must be at least 1"));
        }
        self.chat.filter.validate()?;
        self.hooks.validate()?;
        if self.online_stale.is_zero() {
            return Err(invalid("online_stale", "must be greater than 0"));
        }
        if self.node_stale.is_zero() {
            return Err(invalid("node_stale", "must be greater than 0"));
        }
        let node = &self.node;
        if node.heartbeat < Duration::from_secs(1) {
            return Err(invalid("node.heartbeat", "must be at least 1s"));
        }
        if i32::try_from(node.heartbeat.as_secs()).is_err() {
            return Err(invalid("node.heartbeat", "too large"));
        }
        if node.heartbeat_max < 1 {
            return Err(invalid("node.heartbeat_max", "must be at least 1"));
        }
        if node.default_domain.is_empty() {
            return Err(invalid("node.default_domain", "must not be empty"));
        }
        if !(node.region_weight.is_finite() && node.region_weight > 0.0) {
            return Err(invalid("node.region_weight", "must be a positive number"));
        }
        let backoff = &self.backoff;
        if backoff.base_delay < 0 || backoff.max_delay < backoff.base_delay {
            return Err(invalid("backoff", "need 0 <= base_delay <= max_delay"));
        }
        if !(backoff.factor.is_finite() && backoff.factor >= 1.0) {
            return Err(invalid("backoff.factor", "must be at least 1"));
        }
        if !(backoff.jitter.is_finite() && backoff.jitter >= 0.0) {
            return Err(invalid("backoff.jitter", "must not be negative"));
        }
        if self.auth.mode() == AuthMode::Jwt {
            // Loads the key file too, so that a bad key stops start-up.
            self.auth
                .decoding_key()
                .map_err(|(field, reason)| invalid(field, reason))?;
        }
        if self.api.tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid("api.tokens", "a token must not be empty"));
        }
        if self.api.open == Some(false) && self.api.tokens.is_empty() {
            return Err(invalid(
                "api.tokens",
                "no bearer token configured: give tokens, or set open = true to serve the push API without one",
            ));
        }
        Ok(())
    }

    /// The server-side heartbeat timeout handed to comets in `ConnectReply`,
    /// in nanoseconds: `node.heartbeat × node.heartbeat_max`.
    pub fn heartbeat_timeout_nanos(&self) -> i64 {
        let max = u128::from(self.node.heartbeat_max.max(1).unsigned_abs());
        i64::try_from(self.node.heartbeat.as_nanos().saturating_mul(max)).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_toml_is_the_default_and_valid() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config, Config::default());
        config.validate().unwrap();
        assert_eq!(config.http_bind, "0.0.0.0:3111");
        assert_eq!(config.max_body, 1 << 20);
        assert_eq!(config.heartbeat_timeout_nanos(), 8 * 60 * 1_000_000_000);
    }

    #[test]
    fn fields_parse_with_human_durations() {
        let config: Config = toml::from_str(
            r#"
            http_bind = "127.0.0.1:9000"
            online_stale = "1m"
            [node]
            heartbeat = "30s"
            heartbeat_max = 3
            [backoff]
            jitter = 0.3
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.online_stale, Duration::from_secs(60));
        assert_eq!(config.heartbeat_timeout_nanos(), 90_000_000_000);
        assert_eq!(config.backoff.jitter, 0.3);
        assert_eq!(config.node.tcp_port, 3101);
    }

    #[test]
    fn auth_and_api_parse_and_validate() {
        let config: Config = toml::from_str(
            r#"
            [auth]
            mode = "jwt"
            algorithm = "HS256"
            secret = "s3cret"
            issuer = "backend"
            leeway = "5s"
            [api]
            tokens = ["abc"]
            protect_reads = true
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.auth.mode, Some(AuthMode::Jwt));
        assert_eq!(config.auth.leeway, Duration::from_secs(5));
        assert_eq!(config.auth.issuer.as_deref(), Some("backend"));
        assert!(config.api.protect_reads);
        // Secrets never reach logs through Debug.
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("abc"),
            "{debug}"
        );

        assert!(toml::from_str::<Config>("[auth]\nmode = \"open\"").is_err());
        assert!(toml::from_str::<Config>("[auth]\nalgorithm = \"none\"").is_err());
        assert!(toml::from_str::<Config>("[auth]\nalgorithm = \"HS384\"").is_err());
        let refused = |text: &str| toml::from_str::<Config>(text).unwrap().validate();
        assert!(matches!(
            refused("[auth]\nmode = \"jwt\""),
            Err(LogicConfigError::Invalid {
                field: "auth.secret",
                ..
            })
        ));
        assert!(matches!(
            refused("[auth]\nmode = \"jwt\"\nalgorithm = \"RS256\"\npublic_key_file = \"/nonexistent.pem\""),
            Err(LogicConfigError::Invalid { field: "auth.public_key_file", .. })
        ));
        assert!(matches!(
            refused("[api]\ntokens = [\"\"]"),
            Err(LogicConfigError::Invalid {
                field: "api.tokens",
                ..
            })
        ));
        // Trust mode ignores the jwt settings.
        refused("[auth]\nalgorithm = \"ES256\"").unwrap();
    }

    #[test]
    fn hooks_parse_and_validate() {
        let config: Config = toml::from_str(
            r#"
            [hooks.upstream]
            url = "http://127.0.0.1:8080/rim/upstream"
            timeout = "500ms"
            on_failure = "accept"
            [hooks.offline]
            url = "http://backend/offline"
            after = "30s"
            "#,
        )
        .unwrap();
        config.validate().unwrap();
        let upstream = config.hooks.upstream.as_ref().unwrap();
        assert_eq!(upstream.timeout, Duration::from_millis(500));
        assert_eq!(upstream.on_failure, OnFailure::Accept);
        let offline = config.hooks.offline.as_ref().unwrap();
        assert_eq!(offline.after, Duration::from_secs(30));
        assert_eq!((offline.batch, offline.retries), (100, 3));
        assert_eq!(offline.interval, Duration::from_secs(1));

        let parsed: Config = toml::from_str("[hooks.upstream]\nurl = \"http://b/\"").unwrap();
        let upstream = parsed.hooks.upstream.unwrap();
        assert_eq!(
            upstream.on_failure,
            OnFailure::Reject,
            "fail closed by default"
        );
        assert_eq!(upstream.timeout, Duration::from_secs(2));
        assert!(Config::default().hooks.upstream.is_none());

        assert!(toml::from_str::<Config>("[hooks.upstream]\non_failure = \"maybe\"").is_err());
        assert!(
            toml::from_str::<Config>("[hooks.offline]\nurl = \"http://b/\"\nnope = 1").is_err()
        );
        let field = |text: &str| match toml::from_str::<Config>(text).unwrap().validate() {
            Err(LogicConfigError::Invalid { field, .. }) => field,
            Ok(()) => "valid",
        };
        assert_eq!(field("[hooks.upstream]"), "hooks.upstream.url");
        assert_eq!(
            field("[hooks.upstream]\nurl = \"https://b/\""),
            "hooks.upstream.url"
        );
        assert_eq!(
            field("[hooks.offline]\nurl = \"not a url\""),
            "hooks.offline.url"
        );
        assert_eq!(
            field("[hooks.offline]\nurl = \"http://b/\"\nbatch = 0"),
            "hooks.offline.batch"
        );
        assert_eq!(
            field("[hooks.offline]\nurl = \"http://b/\"\ninterval = \"0s\""),
            "hooks.offline.interval"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(toml::from_str::<Config>("nope = 1").is_err());
        assert!(toml::from_str::<Config>("[node]\nnope = 1").is_err());
    }

    #[test]
    fn validate_catches_bad_values() {
        let mut config = Config::default();
        config.node.heartbeat_max = 0;
        assert!(matches!(
            config.validate(),
            Err(LogicConfigError::Invalid {
                field: "node.heartbeat_max",
                ..
            })
        ));
        let mut config = Config::default();
        config.node.heartbeat = Duration::ZERO;
        assert!(config.validate().is_err());
        let config = Config {
            max_body: 0,
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
