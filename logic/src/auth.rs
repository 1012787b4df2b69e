//! Client authentication: turns the op 7 token into the identity a
//! connection gets (mid, key, room, accepts), per `[logic.auth]`.
//!
//! - `trust` mode is goim's: the JSON token is believed as it is.
//! - `jwt` mode verifies a JWT signed by the business backend (HS256, RS256 or
//!   ES256, exactly the configured one). The body is the compact JWT, or
//!   goim's JSON token with the JWT in `"token"`. The mid always comes from
//!   the JWT (`sub`, else `mid`); its `room` and `accepts` claims, when
//!   present, win over what the client asks for; `exp` is required.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{AuthConfig, AuthMode, JwtAlgorithm};
use crate::token::Token;

/// Verifies the auth token a client sends with op 7 (its connect request)
/// and gives the identity the connection gets, per [`AuthConfig`].
///
/// Build it once from the config with [`Authenticator::from_config`] (in
/// `jwt` mode this loads the key), then call [`Authenticator::authenticate`]
/// for each connect. [`Logic`](crate::Logic) holds one; a library user needs
/// its own only to check tokens outside logic (a gateway, a test, a fuzzer).
///
/// ```
/// use rim_logic::{AuthConfig, Authenticator};
///
/// // `trust` mode (goim's): the JSON token is believed as it is.
/// let auth = Authenticator::from_config(&AuthConfig::default());
/// let token = auth
///     .authenticate(br#"{"mid":123,"room_id":"live://1000"}"#, 1_700_000_000)
///     .unwrap();
/// assert_eq!((token.mid, token.room_id.as_str()), (123, "live://1000"));
/// assert!(auth.authenticate(b"[1]", 1_700_000_000).is_err());
/// ```
pub struct Authenticator(Mode);

/// How an [`Authenticator`] checks tokens.
enum Mode {
    /// Believe the client (goim).
    Trust,
    /// Verify a JWT.
    Jwt(Box<JwtVerifier>),
    /// `jwt` mode whose key could not be loaded: every client is refused
    /// (start-up validation normally catches this first).
    Broken(String),
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Mode::Trust => f.write_str("Trust"),
            Mode::Jwt(v) => write!(f, "Jwt({:?})", v.algorithm),
            Mode::Broken(reason) => write!(f, "Broken({reason})"),
        }
    }
}

/// The key and rules a JWT is checked with.
struct JwtVerifier {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
    leeway: i64,
}

/// The claims rim reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    /// Expiry, Unix seconds (RFC 7519 NumericDate: may be fractional).
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    mid: Option<Value>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    accepts: Option<Vec<i32>>,
    #[serde(default)]
    im: Option<bool>,
}

impl Authenticator {
    /// The authenticator of a config (its mode, unset meaning `trust`; see
    /// [`AuthConfig::mode`]). A `jwt` config whose key cannot be loaded
    /// gives one that refuses everyone, and logs why once;
    /// [`Config::validate`](crate::Config::validate) reports that
    /// misconfiguration as an error instead.
    pub fn from_config(config: &AuthConfig) -> Authenticator {
        Authenticator(match config.mode() {
            AuthMode::Trust => {
                tracing::warn!(
                    "client tokens are not verified (logic.auth.mode = \"trust\"): \
                     any client can claim any user and room"
                );
                Mode::Trust
            }
            AuthMode::Jwt => match config.decoding_key() {
                Ok(key) => Mode::Jwt(Box::new(JwtVerifier::new(config, key))),
                Err((field, reason)) => {
                    let reason = format!("logic.{field}: {reason}");
                    tracing::error!(%reason, "jwt auth misconfigured: every client will be refused");
                    Mode::Broken(reason)
                }
            },
        })
    }

    /// The identity of a client from its op 7 body `raw` at Unix time `now`
    /// (seconds; `exp` and `nbf` are checked against it), or why it is
    /// refused (a message for logs; the client sees none).
    ///
    /// - `trust`: `raw` must be goim's JSON token, a JSON object, returned
    ///   as it is; or goim v1's token, a bare decimal user id (`4242`): that
    ///   mid, in room `"1"` as goim v1 put it, no accepts.
    /// - `jwt`: `raw` is the compact JWT, or goim's JSON token carrying it in
    ///   `"token"`. The mid always comes from the JWT (`sub`, else `mid`);
    ///   its `room` and `accepts` claims, when present, replace the
    ///   client's. The returned [`Token::token`] is empty.
    pub fn authenticate(&self, raw: &[u8], now: i64) -> Result<Token, String> {
        match &self.0 {
            Mode::Trust => match Token::parse_v1(raw) {
                Some(token) => Ok(token),
                None => Token::parse(raw).map_err(|err| format!("invalid token: {err}")),
            },
            Mode::Jwt(verifier) => verifier.authenticate(raw, now),
            Mode::Broken(reason) => Err(format!("jwt auth misconfigured: {reason}")),
        }
    }
}

impl JwtVerifier {
    fn new(config: &AuthConfig, key: DecodingKey) -> JwtVerifier {
        let algorithm = match config.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
        };
        // Only the configured algorithm; `none` does not parse at all.
        let mut validation = Validation::new(algorithm);
        // exp and nbf are checked against logic's clock below; the presence
        // of exp is still required here and by `Claims`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = ["exp".to_owned()].into();
        match &config.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        JwtVerifier {
            algorithm,
            key,
            validation,
            leeway: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
        }
    }

    fn authenticate(&self, raw: &[u8], now: i64) -> Result<Token, String> {
        let trimmed = raw.trim_ascii();
        // goim's JSON token carrying the JWT in "token", or the bare JWT.
        let (jwt, mut token) = if trimmed.first() == Some(&b'{') {
            let mut token = Token::parse(trimmed).map_err(|err| format!("invalid token: {err}"))?;
            let jwt = std::mem::take(&mut token.token);
            if jwt.is_empty() {
                return Err("invalid token: no \"token\" field with a JWT".into());
            }
            (jwt, token)
        } else {
            let jwt = std::str::from_utf8(trimmed)
                .map_err(|_| "invalid token: not UTF-8".to_owned())?
                .to_owned();
            (jwt, Token::default())
        };
        let claims = jsonwebtoken::decode::<Claims>(&jwt, &self.key, &self.validation)
            .map_err(|err| format!("invalid jwt: {err}"))?
            .claims;
        // Whole seconds: a fractional exp counts until its second ends.
        if (claims.exp.ceil() as i64).saturating_add(self.leeway) < now {
            return Err(format!("jwt expired at {}", claims.exp));
        }
        if let Some(nbf) = claims.nbf {
            if (nbf.floor() as i64).saturating_sub(self.leeway) > now {
                return Err(format!("jwt not valid before {nbf}"));
            }
        }
        let client_mid = token.mid;
        token.mid = mid_of(&claims)?;
        if client_mid != 0 && client_mid != token.mid {
            tracing::debug!(
                client_mid,
                mid = token.mid,
                "client mid ignored: the jwt names the user"
            );
        }
        if let Some(room) = claims.room {
            token.room_id = room;
        }
        if let Some(im) = claims.im {
            token.im = im;
        }
        if let Some(accepts) = claims.accepts {
            token.accepts = accepts;
        }
        Ok(token)
    }
}

/// What a client JWT made by [`sign_client_token`] says (`rim token`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientClaims {
    /// The user (claim `sub`, as a decimal string).
    pub mid: i64,
    /// Issued at, Unix seconds (claim `iat`).
    pub issued_at: i64,
    /// Expires at, Unix seconds (claim `exp`).
    pub expires_at: i64,
    /// The room the connection joins (claim `room`), when given.
    pub room: Option<String>,
    /// The ops the connection accepts (claim `accepts`), when given.
    pub accepts: Option<Vec<i32>>,
    /// Whether the session is an IM session (claim `im`), when given.
    pub im: Option<bool>,
}

/// Signs a client JWT that an [`Authenticator`] of `config` accepts: the
/// configured algorithm, `iss` and `aud` when configured. HS256 signs with
/// `config.secret`; RS256 and ES256 need the private key (`private_key_pem`)
/// whose public half is `config.public_key_file`. For trying `jwt` mode
/// (`rim token`); a business backend signs its own.
pub fn sign_client_token(
    config: &AuthConfig,
    claims: &ClientClaims,
    private_key_pem: Option<&[u8]>,
) -> Result<String, String> {
    use jsonwebtoken::{EncodingKey, Header};
    let (algorithm, key) = match (config.algorithm, private_key_pem) {
        (JwtAlgorithm::HS256, _) if config.secret.is_empty() => {
            return Err("logic.auth.secret is empty: HS256 needs the shared secret".into())
        }
        (JwtAlgorithm::HS256, _) => (
            Algorithm::HS256,
            EncodingKey::from_secret(config.secret.as_bytes()),
        ),
        (JwtAlgorithm::RS256 | JwtAlgorithm::ES256, None) => {
            return Err(format!(
                "{:?} signs with a private key: give its PEM file (the config names only the public key)",
                config.algorithm
            ))
        }
        (JwtAlgorithm::RS256, Some(pem)) => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem)
                .map_err(|err| format!("not an RSA private key in PEM: {err}"))?,
        ),
        (JwtAlgorithm::ES256, Some(pem)) => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pem)
                .map_err(|err| format!("not a P-256 private key in PEM (PKCS#8): {err}"))?,
        ),
    };
    let mut body = serde_json::Map::new();
    body.insert("sub".into(), claims.mid.to_string().into());
    body.insert("iat".into(), claims.issued_at.into());
    body.insert("exp".into(), claims.expires_at.into());
    if let Some(issuer) = &config.issuer {
        body.insert("iss".into(), issuer.clone().into());
    }
    if let Some(audience) = &config.audience {
        body.insert("aud".into(), audience.clone().into());
    }
    if let Some(room) = &claims.room {
        body.insert("room".into(), room.clone().into());
    }
    if let Some(accepts) = &claims.accepts {
        body.insert("accepts".into(), accepts.clone().into());
    }
    if let Some(im) = claims.im {
        body.insert("im".into(), im.into());
    }
    jsonwebtoken::encode(&Header::new(algorithm), &Value::Object(body), &key)
        .map_err(|err| format!("signing failed: {err}"))
}

/// The mid a JWT names: `sub`, else `mid`; a decimal string or a number.
fn mid_of(claims: &Claims) -> Result<i64, String> {
    fn parse(name: &str, value: &Value) -> Result<i64, String> {
        let mid = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        mid.ok_or_else(|| format!("invalid jwt: claim {name} is not a user id (int64): {value}"))
    }
    let sub = claims.sub.as_ref().map(|v| parse("sub", v)).transpose()?;
    let mid = claims.mid.as_ref().map(|v| parse("mid", v)).transpose()?;
    match (sub, mid) {
        (Some(sub), Some(mid)) if sub != mid => Err(format!(
            "invalid jwt: claims sub ({sub}) and mid ({mid}) disagree"
        )),
        (Some(mid), _) | (None, Some(mid)) => Ok(mid),
        (None, None) => Err("invalid jwt: no user id (claim sub or mid)".into()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use std::path::PathBuf;
    use std::time::Duration;

    pub(crate) const NOW: i64 = 1_700_000_000;
    pub(crate) const SECRET: &str = "test-secret-of-some-length";

    pub(crate) fn hs256_config() -> AuthConfig {
        AuthConfig {
            mode: Some(AuthMode::Jwt),
            secret: SECRET.into(),
            ..AuthConfig::default()
        }
    }

    pub(crate) fn hs256(claims: &Value) -> String {
        sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            claims,
        )
    }

    fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
    }

    fn data(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name)
    }

    fn jwt_auth(config: &AuthConfig) -> Authenticator {
        let auth = Authenticator::from_config(config);
        assert!(matches!(auth.0, Mode::Jwt(_)), "{auth:?}");
        auth
    }

    #[track_caller]
    fn refused(auth: &Authenticator, raw: &str, expect: &str) {
        let err = auth.authenticate(raw.as_bytes(), NOW).unwrap_err();
        assert!(
            err.contains(expect),
            "{raw}: {err:?} should contain {expect:?}"
        );
    }

    #[test]
    fn hs256_compact_jwt_gives_the_claimed_identity() {
        let auth = jwt_auth(&hs256_config());
        let jwt =
            hs256(&json!({"sub": "42", "exp": NOW + 60, "room": "live://7", "accepts": [1000]}));
        let token = auth.authenticate(jwt.as_bytes(), NOW).unwrap();
        assert_eq!(
            token,
            Token {
                mid: 42,
                room_id: "live://7".into(),
                accepts: vec![1000],
                ..Token::default()
            }
        );
    }

    #[test]
    fn json_wrapper_claims_win_over_the_client() {
        let auth = jwt_auth(&hs256_config());
        // No room or accepts claim: the client's apply; its mid never does.
        let jwt = hs256(&json!({"mid": 5, "exp": NOW + 60}));
        let body = json!({"token": jwt, "mid": 999, "key": "k", "room_id": "live://1",
                          "platform": "ios", "accepts": [1001]});
        let token = auth.authenticate(body.to_string().as_bytes(), NOW).unwrap();
        assert_eq!(
            token,
            Token {
                mid: 5,
                key: "k".into(),
                room_id: "live://1".into(),
                platform: "ios".into(),
                accepts: vec![1001],
                token: String::new(),
                ..Token::default()
            }
        );
        // Claims present: they win.
        let jwt = hs256(&json!({"sub": 5, "exp": NOW + 60, "room": "", "accepts": []}));
        let body = json!({"token": jwt, "room_id": "live://1", "accepts": [1001]});
        let token = auth.authenticate(body.to_string().as_bytes(), NOW).unwrap();
        assert_eq!((token.room_id.as_str(), token.accepts.len()), ("", 0));
    }

    #[test]
    fn expired_and_immature_tokens_are_refused_beyond_the_leeway() {
        let auth = jwt_auth(&hs256_config());
        refused(
            &auth,
            &hs256(&json!({"sub": "1", "exp": NOW - 31})),
            "expired",
        );
        refused(
            &auth,
            &hs256(&json!({"sub": "1", "exp": NOW - 3600})),
            "expired",
        );
        // Within the 30 s leeway.
        let jwt = hs256(&json!({"sub": "1", "exp": NOW - 29}));
        auth.authenticate(jwt.as_bytes(), NOW).unwrap();
        refused(
            &auth,
            &hs256(&json!({"sub": "1", "exp": NOW + 600, "nbf": NOW + 60})),
            "not valid before",
        );
        let strict = jwt_auth(&AuthConfig {
            leeway: Duration::ZERO,
            ..hs256_config()
        });
        refused(
            &strict,
            &hs256(&json!({"sub": "1", "exp": NOW - 1})),
            "expired",
        );
    }

    #[test]
    fn forged_tokens_are_refused() {
        let auth = jwt_auth(&hs256_config());
        let claims = json!({"sub": "1", "exp": NOW + 60});
        let forged = sign(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"guessed"),
            &claims,
        );
        refused(&auth, &forged, "InvalidSignature");
        // A valid token with its payload swapped for another user's.
        let good = hs256(&claims);
        let parts: Vec<&str> = good.split('.').collect();
        let other = hs256(&json!({"sub": "2", "exp": NOW + 60}));
        let other_payload = other.split('.').nth(1).unwrap();
        refused(
            &auth,
            &format!("{}.{}.{}", parts[0], other_payload, parts[2]),
            "InvalidSignature",
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let auth = jwt_auth(&hs256_config());
        let payload = base64_url(&json!({"sub": "1", "exp": NOW + 60}).to_string());
        let none = format!("{}.{payload}.", base64_url(r#"{"alg":"none","typ":"JWT"}"#));
        refused(&auth, &none, "invalid jwt");
        // HS384 with the right secret is still not the configured algorithm.
        let hs384 = sign(
            Algorithm::HS384,
            &EncodingKey::from_secret(SECRET.as_bytes()),
            &json!({"sub": "1", "exp": NOW + 60}),
        );
        refused(&auth, &hs384, "InvalidAlgorithm");
        // An RS256 token offered to an HS256 verifier.
        let rsa =
            EncodingKey::from_rsa_pem(&std::fs::read(data("rs256_private.pem")).unwrap()).unwrap();
        refused(
            &auth,
            &sign(
                Algorithm::RS256,
                &rsa,
                &json!({"sub": "1", "exp": NOW + 60}),
            ),
            "InvalidAlgorithm",
        );
    }

    /// Unpadded base64url, as JWT segments are written.
    fn base64_url(text: &str) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    #[test]
    fn claims_must_name_a_user_and_expire() {
        let auth = jwt_auth(&hs256_config());
        refused(&auth, &hs256(&json!({"sub": "1"})), "exp");
        refused(&auth, &hs256(&json!({"exp": NOW + 60})), "no user id");
        refused(
            &auth,
            &hs256(&json!({"sub": "alice", "exp": NOW + 60})),
            "not a user id",
        );
        refused(
            &auth,
            &hs256(&json!({"sub": "1", "mid": 2, "exp": NOW + 60})),
            "disagree",
        );
        refused(&auth, "{}", "no \"token\" field");
        refused(&auth, r#"{"mid": 1, "key": "k"}"#, "no \"token\" field");
        refused(&auth, "", "invalid jwt");
        refused(&auth, "not.a.jwt", "invalid jwt");
        refused(&auth, "{", "invalid token");
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let auth = jwt_auth(&AuthConfig {
            issuer: Some("backend".into()),
            audience: Some("rim".into()),
            ..hs256_config()
        });
        let ok = hs256(&json!({"sub": "1", "exp": NOW + 60, "iss": "backend", "aud": "rim"}));
        auth.authenticate(ok.as_bytes(), NOW).unwrap();
        refused(
            &auth,
            &hs256(&json!({"sub": "1", "exp": NOW + 60, "iss": "other", "aud": "rim"})),
            "InvalidIssuer",
        );
        refused(
            &auth,
            &hs256(&json!({"sub": "1", "exp": NOW + 60, "iss": "backend", "aud": "x"})),
            "InvalidAudience",
        );
        // Without configured audience, an aud claim is not held against the token.
        let open = jwt_auth(&hs256_config());
        let jwt = hs256(&json!({"sub": "1", "exp": NOW + 60, "aud": "anything"}));
        open.authenticate(jwt.as_bytes(), NOW).unwrap();
    }

    #[test]
    fn rs256_and_es256_verify_with_the_public_key_file() {
        for (algorithm, config_alg, private, public) in [
            (
                Algorithm::RS256,
                JwtAlgorithm::RS256,
                "rs256_private.pem",
                "rs256_public.pem",
            ),
            (
                Algorithm::ES256,
                JwtAlgorithm::ES256,
                "es256_private.pem",
                "es256_public.pem",
            ),
        ] {
            let auth = jwt_auth(&AuthConfig {
                mode: Some(AuthMode::Jwt),
                algorithm: config_alg,
                public_key_file: Some(data(public)),
                ..AuthConfig::default()
            });
            let pem = std::fs::read(data(private)).unwrap();
            let key = if algorithm == Algorithm::RS256 {
                EncodingKey::from_rsa_pem(&pem)
            } else {
                EncodingKey::from_ec_pem(&pem)
            }
            .unwrap();
            let jwt = sign(algorithm, &key, &json!({"sub": 77, "exp": NOW + 60}));
            assert_eq!(auth.authenticate(jwt.as_bytes(), NOW).unwrap().mid, 77);
            let expired = sign(algorithm, &key, &json!({"sub": 77, "exp": NOW - 3600}));
            refused(&auth, &expired, "expired");
            // An HS256 token "signed" with the public key bytes (the classic
            // algorithm-confusion forgery) is refused.
            let confused = sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(&std::fs::read(data(public)).unwrap()),
                &json!({"sub": 1, "exp": NOW + 60}),
            );
            refused(&auth, &confused, "InvalidAlgorithm");
        }
    }

    #[test]
    fn bad_key_config_refuses_everyone() {
        for config in [
            AuthConfig {
                mode: Some(AuthMode::Jwt),
                ..AuthConfig::default()
            },
            AuthConfig {
                mode: Some(AuthMode::Jwt),
                algorithm: JwtAlgorithm::ES256,
                ..AuthConfig::default()
            },
            AuthConfig {
                mode: Some(AuthMode::Jwt),
                algorithm: JwtAlgorithm::RS256,
                public_key_file: Some(data("no-such-file.pem")),
                ..AuthConfig::default()
            },
            AuthConfig {
                mode: Some(AuthMode::Jwt),
                algorithm: JwtAlgorithm::RS256,
                // An EC key where an RSA one is expected.
                public_key_file: Some(data("es256_public.pem")),
                ..AuthConfig::default()
            },
        ] {
            assert!(config.decoding_key().is_err(), "{config:?}");
            let auth = Authenticator::from_config(&config);
            let jwt = hs256(&json!({"sub": "1", "exp": NOW + 60}));
            refused(&auth, &jwt, "misconfigured");
        }
    }

    #[test]
    fn signed_client_tokens_verify_with_the_same_config() {
        let claims = ClientClaims {
            mid: 123,
            issued_at: NOW,
            expires_at: NOW + 3600,
            room: Some("live://9".into()),
            accepts: Some(vec![1000]),
            im: Some(true),
        };
        let config = AuthConfig {
            issuer: Some("backend".into()),
            audience: Some("rim".into()),
            ..hs256_config()
        };
        let jwt = sign_client_token(&config, &claims, None).unwrap();
        let token = jwt_auth(&config).authenticate(jwt.as_bytes(), NOW).unwrap();
        assert_eq!(
            (token.mid, token.room_id.as_str(), token.accepts, token.im),
            (123, "live://9", vec![1000], true)
        );
        // Past its expiry (and the leeway) it is refused.
        let err = jwt_auth(&config)
            .authenticate(jwt.as_bytes(), NOW + 3600 + 31)
            .unwrap_err();
        assert!(err.contains("expired"), "{err}");
        // RS256/ES256 sign with the private key the config does not hold.
        let es256 = AuthConfig {
            mode: Some(AuthMode::Jwt),
            algorithm: JwtAlgorithm::ES256,
            public_key_file: Some(data("es256_public.pem")),
            ..AuthConfig::default()
        };
        assert!(sign_client_token(&es256, &claims, None).is_err());
        let pem = std::fs::read(data("es256_private.pem")).unwrap();
        let jwt = sign_client_token(&es256, &claims, Some(&pem)).unwrap();
        assert_eq!(
            jwt_auth(&es256)
                .authenticate(jwt.as_bytes(), NOW)
                .unwrap()
                .mid,
            123
        );
        let empty = AuthConfig {
            mode: Some(AuthMode::Jwt),
            ..AuthConfig::default()
        };
        assert!(sign_client_token(&empty, &claims, None)
            .unwrap_err()
            .contains("secret"));
    }

    #[test]
    fn trust_mode_is_goims() {
        let auth = Authenticator::from_config(&AuthConfig::default());
        let token = auth
            .authenticate(br#"{"mid":3,"room_id":"r"}"#, NOW)
            .unwrap();
        assert_eq!((token.mid, token.room_id.as_str()), (3, "r"));
        refused(&auth, "nope", "invalid token");
        // goim v1's bare decimal user id.
        let token = auth.authenticate(b"4242", NOW).unwrap();
        assert_eq!(
            (token.mid, token.room_id.as_str(), token.accepts.len()),
            (4242, "1", 0)
        );
        refused(&auth, "4242x", "invalid token");
    }

    #[test]
    fn jwt_mode_refuses_a_decimal_token() {
        let auth = jwt_auth(&hs256_config());
        refused(&auth, "4242", "");
    }
}
