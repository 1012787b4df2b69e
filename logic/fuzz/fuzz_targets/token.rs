//! The client auth token (op 7 body) through rim-logic's public
//! `Authenticator`, the one `Logic` uses: `trust` mode (goim's JSON token)
//! and `jwt` mode, HS256 with a fixed secret.
//!
//! Input: a mode byte, then the payload.
//! - 0: trust mode, the payload is the op 7 body.
//! - 1: jwt mode, the payload is the op 7 body (a forged or garbage JWT).
//! - 2: jwt mode, the payload is the claims of a JWT correctly signed with
//!   the secret (so everything after the signature check is reached).
//! - 3: as 2, wrapped in goim's JSON token (`{"mid":..,"token":"<jwt>"}`).
//!
//! Asserts: nothing panics; trust mode accepts only JSON objects; jwt mode
//! never accepts an unsigned payload and accepts signed claims only when
//! they are a JSON object with an unexpired `exp` naming the returned mid.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::Value;

use rim_logic::{AuthConfig, AuthMode, Authenticator, JwtAlgorithm, Token};

const NOW: i64 = 1_700_000_000;
const LEEWAY: i64 = 30;
const SECRET: &str = "fuzz-secret-of-some-length";

fn authenticators() -> &'static (Authenticator, Authenticator) {
    static AUTH: OnceLock<(Authenticator, Authenticator)> = OnceLock::new();
    AUTH.get_or_init(|| {
        let trust = Authenticator::from_config(&AuthConfig::default());
        let jwt = Authenticator::from_config(&AuthConfig {
            mode: Some(AuthMode::Jwt),
            algorithm: JwtAlgorithm::HS256,
            secret: SECRET.to_owned(),
            leeway: Duration::from_secs(LEEWAY as u64),
            ..AuthConfig::default()
        });
        // A jwt authenticator whose key failed to load would refuse
        // everything and make the checks below vacuous.
        let live = format!(r#"{{"sub":1,"exp":{}}}"#, NOW + 60);
        let token = jwt.authenticate(sign(live.as_bytes()).as_bytes(), NOW);
        assert_eq!(token.map(|t| t.mid), Ok(1), "{jwt:?}");
        (trust, jwt)
    })
}

/// A compact HS256 JWT over arbitrary claim bytes, signed with `SECRET`.
fn sign(claims: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256)
        .expect("HS256 signing cannot fail");
    format!("{message}.{signature}")
}

/// The user id a claim value names, as `auth` reads it.
fn claim_mid(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Accepted signed claims must be an object with a live `exp` and a mid.
///
/// Read as rim reads them: the claims rim uses are parsed, the others only
/// checked for syntax (as serde skips them), so a claim rim ignores may hold
/// a number no `f64` can (`1e999`) in an accepted token.
fn check_signed(claims: &[u8], accepted: Option<&Token>) {
    let Some(token) = accepted else { return };
    // serde skips ignored claims without checking their UTF-8, so an
    // accepted payload may hold invalid bytes in a claim rim does not read.
    let text = String::from_utf8_lossy(claims);
    let fields: HashMap<String, Box<RawValue>> =
        serde_json::from_str(&text).expect("accepted claims are a JSON object");
    let claim = |name: &str| -> Option<Value> {
        let raw = fields.get(name)?;
        Some(serde_json::from_str(raw.get()).expect("a claim rim reads is plain JSON"))
    };
    let exp = claim("exp")
        .and_then(|exp| exp.as_f64())
        .expect("accepted claims have a numeric exp");
    assert!(
        (exp.ceil() as i64).saturating_add(LEEWAY) >= NOW,
        "expired jwt accepted"
    );
    let mid = claim_mid(claim("sub").as_ref()).or_else(|| claim_mid(claim("mid").as_ref()));
    assert_eq!(Some(token.mid), mid, "mid not taken from the jwt");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let (trust, jwt) = authenticators();
    match mode % 4 {
        0 => {
            if let Ok(token) = trust.authenticate(payload, NOW) {
                // A JSON object, or goim v1's bare decimal user id (an
                // optional sign, digits), which is the mid.
                let v1 = std::str::from_utf8(payload)
                    .ok()
                    .and_then(|text| text.parse::<i64>().ok());
                match v1 {
                    Some(mid) => assert_eq!(token.mid, mid, "v1 token's mid"),
                    None => assert_eq!(payload.trim_ascii_start().first(), Some(&b'{')),
                }
            }
        }
        1 => {
            // Without the secret nothing can be signed: nothing is accepted.
            // (A payload could only pass by forging HMAC-SHA256.)
            assert!(
                jwt.authenticate(payload, NOW).is_err(),
                "unsigned token accepted"
            );
        }
        2 => {
            let signed = sign(payload);
            check_signed(
                payload,
                jwt.authenticate(signed.as_bytes(), NOW).ok().as_ref(),
            );
        }
        _ => {
            let body = serde_json::json!({"mid": 7, "key": "k", "token": sign(payload)});
            let body = serde_json::to_vec(&body).expect("JSON encodes");
            check_signed(payload, jwt.authenticate(&body, NOW).ok().as_ref());
        }
    }
});
