//! Operator tooling: `rim check-config` (validate a configuration file and
//! show every effective setting next to its default) and `rim token` (sign a
//! client JWT with the key a configuration names, for trying `jwt` mode).
//!
//! Both only read files and print; neither binds or connects.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{
    self, CometProcessConfig, ConfigError, JobProcessConfig, LogicProcessConfig,
    RouterProcessConfig, StandaloneConfig, Validate,
};

/// Which process a configuration file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// `rim standalone --config FILE`.
    Standalone,
    /// `rim logic -c FILE`.
    Logic,
    /// `rim job -c FILE`.
    Job,
    /// `rim comet -c FILE`.
    Comet,
    /// `rim router -c FILE`.
    Router,
}

/// Reads, parses and validates `path` as `role`'s configuration, checks the
/// files it names can be used (word filter, TLS certificate and key), and
/// renders every effective setting as TOML (dotted keys, sorted), each one
/// that differs from its default followed by `# default: ...`. Secrets show
/// as `<redacted>`. The error names the file and the bad key.
pub fn check_config(path: &Path, role: Role) -> Result<String, ConfigError> {
    // Read and parse errors name the file already; validation errors do not.
    checked(path, role).map_err(|e| match e {
        ConfigError::Invalid(m) => ConfigError::Invalid(format!("{}: {m}", path.display())),
        other => other,
    })
}

fn checked(path: &Path, role: Role) -> Result<String, ConfigError> {
    match role {
        Role::Standalone => {
            let mut config: StandaloneConfig = config::load(path)?;
            check_files(&config.logic, Some(&config.comet))?;
            // Unset means trust in standalone: show what applies.
            config.logic.auth.mode = Some(config.logic.auth.mode());
            let mut default = StandaloneConfig::default();
            default.logic.auth.mode = Some(default.logic.auth.mode());
            render(&config, &default)
        }
        Role::Logic => {
            let mut config: LogicProcessConfig = config::load(path)?;
            config.logic = config.effective_logic();
            check_files(&config.logic, None)?;
            let mut default = LogicProcessConfig::default();
            default.logic = default.effective_logic();
            render(&config, &default)
        }
        Role::Job => loaded::<JobProcessConfig>(path),
        Role::Comet => {
            let config: CometProcessConfig = config::load(path)?;
            check_tls(&config.comet)?;
            render(&config, &CometProcessConfig::default())
        }
        Role::Router => loaded::<RouterProcessConfig>(path),
    }
}

fn loaded<T: DeserializeOwned + Validate + Serialize + Default>(
    path: &Path,
) -> Result<String, ConfigError> {
    let config: T = config::load(path)?;
    render(&config, &T::default())
}

/// What `validate` does not open: the words file and the TLS files.
fn check_files(
    logic: &rim_logic::Config,
    comet: Option<&rim_comet::Config>,
) -> Result<(), ConfigError> {
    rim_logic::WordFilter::load(&logic.chat.filter)
        .map_err(|e| ConfigError::Invalid(format!("[logic.chat.filter] {e}")))?;
    if let Some(comet) = comet {
        check_tls(comet)?;
    }
    Ok(())
}

fn check_tls(comet: &rim_comet::Config) -> Result<(), ConfigError> {
    for (key, file) in [("tls_cert", &comet.tls_cert), ("tls_key", &comet.tls_key)] {
        if let Some(file) = file {
            std::fs::File::open(file).map_err(|e| {
                ConfigError::Invalid(format!(
                    "[comet] {key}: cannot read {}: {e}",
                    file.display()
                ))
            })?;
        }
    }
    Ok(())
}

/// `config` as sorted `dotted.key = value` lines, with the default after
/// each value that differs from it.
fn render<T: Serialize>(config: &T, default: &T) -> Result<String, ConfigError> {
    let settings = flatten(config)?;
    let defaults = flatten(default)?;
    let mut out = String::from(
        "# Every effective setting (unset optional ones are left out); `# default:` marks a changed one.\n",
    );
    for (key, value) in &settings {
        out.push_str(&format!("{key} = {value}"));
        match defaults.get(key) {
            Some(default) if default != value => out.push_str(&format!("  # default: {default}")),
            None => out.push_str("  # default: unset"),
            Some(_) => {}
        }
        out.push('\n');
    }
    for (key, default) in &defaults {
        if !settings.contains_key(key) {
            out.push_str(&format!("# {key} is unset (default: {default})\n"));
        }
    }
    Ok(out)
}

/// Every leaf of `config` by its dotted key, rendered as a TOML value.
/// Arrays (of tables too) stay one inline value.
fn flatten<T: Serialize>(config: &T) -> Result<BTreeMap<String, String>, ConfigError> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
        for (key, value) in table {
            let key = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) if !inner.is_empty() => walk(&key, inner, out),
                other => {
                    out.insert(key, other.to_string());
                }
            }
        }
    }
    let table = toml::Table::try_from(config)
        .map_err(|e| ConfigError::Invalid(format!("cannot render the configuration: {e}")))?;
    let mut out = BTreeMap::new();
    walk("", &table, &mut out);
    Ok(out)
}

/// What `rim token` puts in a client JWT.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The user.
    pub mid: i64,
    /// The room claim, when given.
    pub room: Option<String>,
    /// The accepts claim, when given.
    pub accepts: Option<Vec<i32>>,
    /// The im claim, when given.
    pub im: Option<bool>,
    /// How long the token is valid.
    pub ttl: Duration,
}

/// Why `rim token` could not make a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The configuration could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The key could not sign.
    #[error("{0}")]
    Sign(String),
}

/// Signs a client JWT for `request` with the key of `[logic.auth]` in the
/// configuration file `path` (a standalone or a `rim logic` file: both keep
/// it there). RS256 and ES256 need `private_key`, the PEM file of the
/// private half of `public_key_file`. Also gives a note for stderr when the
/// file does not put logic in `jwt` mode.
pub fn token(
    path: &Path,
    private_key: Option<&Path>,
    request: &TokenRequest,
) -> Result<(String, Option<String>), TokenError> {
    /// Only `[logic.auth]` of the file matters; the rest is not checked here.
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct File {
        logic: Logic,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Logic {
        auth: rim_logic::AuthConfig,
    }
    let file: File = config::read(path)?;
    let auth = file.logic.auth;
    let note = match auth.mode {
        Some(rim_logic::AuthMode::Jwt) => None,
        Some(rim_logic::AuthMode::Trust) => Some(format!(
            "note: {} sets logic.auth.mode = \"trust\": rim does not verify tokens in that mode",
            path.display()
        )),
        None => Some(format!(
            "note: {} leaves logic.auth.mode unset: `rim logic` verifies JWTs, `rim standalone` does not (set mode = \"jwt\")",
            path.display()
        )),
    };
    let pem = private_key
        .map(|key| {
            std::fs::read(key).map_err(|e| {
                TokenError::Sign(format!("reading the private key {}: {e}", key.display()))
            })
        })
        .transpose()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let ttl = i64::try_from(request.ttl.as_secs()).unwrap_or(i64::MAX);
    let claims = rim_logic::ClientClaims {
        mid: request.mid,
        issued_at: now,
        expires_at: now.saturating_add(ttl),
        room: request.room.clone(),
        accepts: request.accepts.clone(),
        im: request.im,
    };
    let jwt =
        rim_logic::sign_client_token(&auth, &claims, pem.as_deref()).map_err(TokenError::Sign)?;
    Ok((jwt, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn defaults_render_without_marks_and_changes_are_marked() {
        let report = check_config(file("").path(), Role::Standalone).unwrap();
        assert!(report.contains("\nlogic.max_body = 1048576\n"), "{report}");
        assert!(report.contains("\nqueue.timeout = \"5s\"\n"), "{report}");
        assert!(
            report.contains("\nlogic.auth.mode = \"trust\"\n"),
            "{report}"
        );
        assert!(!report.contains("# default: 1048576"), "{report}");
        let report = check_config(
            file("[logic]\nmax_body = 10\n[logic.auth]\nsecret = \"s3cret\"\n").path(),
            Role::Standalone,
        )
        .unwrap();
        assert!(
            report.contains("\nlogic.max_body = 10  # default: 1048576\n"),
            "{report}"
        );
        assert!(
            report.contains("logic.auth.secret = \"<redacted>\""),
            "{report}"
        );
        assert!(!report.contains("s3cret"), "{report}");
    }

    #[test]
    fn the_report_is_toml_that_parses_back() {
        let report = check_config(
            file("[logic.api]\nopen = true\n[logic.auth]\nmode = \"trust\"\n").path(),
            Role::Logic,
        )
        .unwrap();
        let parsed: LogicProcessConfig = toml::from_str(&report).unwrap();
        assert_eq!(parsed.routers.len(), 1);
        assert_eq!(parsed.logic.api.open, Some(true));
        for role in [Role::Job, Role::Comet, Role::Router] {
            check_config(file("").path(), role).unwrap();
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = check_config(file("[logic]\nmax_bdy = 1\n").path(), Role::Standalone)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `max_bdy`"), "{err}");
        let err = check_config(
            file("[logic.node]\nheartbeat = \"soon\"\n").path(),
            Role::Standalone,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("heartbeat"), "{err}");
        let err = check_config(file("store = \"etcd\"\n").path(), Role::Router)
            .unwrap_err()
            .to_string();
        assert!(err.contains("store"), "{err}");
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            config::redact_url("redis://u:pw@h:6379/"),
            "redis://u:<redacted>@h:6379/"
        );
        assert_eq!(config::redact_url("redis://h:6379/"), "redis://h:6379/");
        assert_eq!(
            config::redact_url("redis://:pw@h/"),
            "redis://:<redacted>@h/"
        );
    }
}
