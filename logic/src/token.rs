//! The v2 auth token a client sends with op 7 (docs/protocol.md,
//! "Session"), parsed the way goim's `json.Unmarshal` does: every field
//! optional, `null` as absent, unknown fields ignored, wrong types refused;
//! and goim v1's token, a bare decimal user id.
//!
//! This module only parses; verification is `auth`'s (in `trust` mode,
//! none: goim trusts the token).

use serde::{Deserialize, Deserializer};

/// Why a token could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// The token is not a JSON object.
    #[error("expected a JSON object")]
    NotAnObject,
    /// The token is not valid JSON or a field has the wrong type.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The identity a client's auth token gives its connection: goim's JSON
/// token (`{"mid":..,"key":..,"room_id":..,"platform":..,"accepts":[..]}`),
/// as [`Authenticator::authenticate`](crate::Authenticator::authenticate)
/// returns it (in `jwt` mode, with the JWT's claims applied).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Token {
    /// User id; 0 is an anonymous connection.
    #[serde(deserialize_with = "null_as_default")]
    pub mid: i64,
    /// Connection key; empty means "logic picks one".
    #[serde(deserialize_with = "null_as_default")]
    pub key: String,
    /// Room to join, conventionally `type://id`; empty is no room.
    #[serde(deserialize_with = "null_as_default")]
    pub room_id: String,
    /// Client platform (`web`, `ios`, ...); unused by connect.
    #[serde(deserialize_with = "null_as_default")]
    pub platform: String,
    /// Ops the connection accepts for keyed and broadcast pushes.
    #[serde(deserialize_with = "null_as_default")]
    pub accepts: Vec<i32>,
    /// rim, `jwt` auth mode: the signed JWT carrying the identity. Empty in
    /// what `jwt` mode returns (the JWT is consumed); in `trust` mode, as the
    /// client sent it, and meaningless.
    #[serde(deserialize_with = "null_as_default")]
    pub token: String,
    /// rim: the session opts into durable messaging (an IM session:
    /// stored frames, ops 18 to 23). In `jwt` mode the `im` claim, when
    /// present, decides.
    #[serde(deserialize_with = "null_as_default")]
    pub im: bool,
    /// rim: where the client's copy of its mailbox ends; the comet syncs
    /// from there right after op 8 (IM sessions only).
    #[serde(deserialize_with = "null_as_default")]
    pub since: Option<Since>,
}

/// A client's position in its mailbox: the last seq it holds without a gap,
/// and the epoch that seq belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Since {
    /// The last seq held (0: none).
    #[serde(deserialize_with = "null_as_default")]
    pub seq: u32,
    /// The epoch of `seq`; absent when the client has none.
    pub epoch: Option<String>,
}

/// Go leaves a field at its zero value when the JSON says `null`.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The room goim v1's logic put every client with a decimal token in
/// (its `DefaultAuther`: room 1, "only for debug"), so that v1's
/// `/1/push/room?rid=1` reaches them.
pub(crate) const V1_ROOM: &str = "1";

impl Token {
    /// goim v1's token: the whole body is a decimal user id (`4242`, as Go's
    /// `strconv.ParseInt(s, 10, 64)` reads it: an optional sign, digits, no
    /// spaces). The client gets that mid, room [`V1_ROOM`], a key chosen by
    /// logic and no accepts (v1 had none: its pushes skip the filter).
    /// `None` for any other body.
    pub(crate) fn parse_v1(raw: &[u8]) -> Option<Token> {
        let mid = std::str::from_utf8(raw).ok()?.parse::<i64>().ok()?;
        Some(Token {
            mid,
            room_id: V1_ROOM.to_owned(),
            ..Token::default()
        })
    }

    /// Parses the token bytes of a connect request. The token must be a
    /// JSON object: serde would also read a struct from an array (`[1]`),
    /// which goim refuses.
    pub(crate) fn parse(raw: &[u8]) -> Result<Token, TokenError> {
        if raw.trim_ascii_start().first() != Some(&b'{') {
            return Err(TokenError::NotAnObject);
        }
        Ok(serde_json::from_slice(raw)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goim_example_token() {
        let token = Token::parse(
            br#"{"mid":123, "room_id":"live://1000", "platform":"web", "accepts":[1000,1001,1002]}"#,
        )
        .unwrap();
        assert_eq!(
            token,
            Token {
                mid: 123,
                key: String::new(),
                room_id: "live://1000".into(),
                platform: "web".into(),
                accepts: vec![1000, 1001, 1002],
                token: String::new(),
                im: false,
                since: None,
            }
        );
    }

    #[test]
    fn im_token_with_since() {
        let token =
            Token::parse(br#"{"mid":1,"im":true,"since":{"seq":120,"epoch":"k3Jd9aQz"}}"#).unwrap();
        assert!(token.im);
        assert_eq!(
            token.since,
            Some(Since {
                seq: 120,
                epoch: Some("k3Jd9aQz".into())
            })
        );
        let token = Token::parse(br#"{"im":true,"since":{"seq":0}}"#).unwrap();
        assert_eq!(token.since.unwrap().epoch, None);
        for raw in [
            &br#"{"im":1}"#[..],
            br#"{"since":{"seq":-1}}"#,
            br#"{"since":{"seq":"1"}}"#,
            br#"{"since":{"epoch":5}}"#,
            br#"{"since":7}"#,
        ] {
            assert!(Token::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn goim_v1_decimal_token() {
        let token = Token::parse_v1(b"4242").unwrap();
        assert_eq!(
            token,
            Token {
                mid: 4242,
                room_id: "1".into(),
                ..Token::default()
            }
        );
        assert_eq!(Token::parse_v1(b"+7").unwrap().mid, 7);
        assert_eq!(Token::parse_v1(b"0").unwrap().mid, 0);
        assert_eq!(Token::parse_v1(b"-3").unwrap().mid, -3);
        for raw in [
            &b""[..],
            b" 4242",
            b"4242\n",
            b"42.0",
            b"1e3",
            b"0x10",
            b"99999999999999999999",
            b"\"4242\"",
            br#"{"mid":4242}"#,
            b"\xff",
        ] {
            assert_eq!(Token::parse_v1(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn missing_null_and_unknown_fields() {
        assert_eq!(Token::parse(b"{}").unwrap(), Token::default());
        let token = Token::parse(br#"{"mid":null,"key":"k","extra":{"a":[1]}}"#).unwrap();
        assert_eq!(token.mid, 0);
        assert_eq!(token.key, "k");
    }

    #[test]
    fn wrong_types_and_bad_json_are_errors() {
        for raw in [
            &br#"{"mid":"12"}"#[..],
            br#"{"mid":1.5}"#,
            br#"{"accepts":["a"]}"#,
            br#"{"accepts":[3000000000]}"#,
            br#"{"key":5}"#,
            b"123",
            b"[1]",
            b"null",
            br#""{}""#,
            b"",
            b"{",
            b"\xff",
        ] {
            assert!(Token::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }
}
