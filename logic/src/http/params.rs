//! Query-string parameters, parsed by hand so that every problem becomes a
//! clear message in the API's envelope (instead of an extractor rejection).
//!
//! Repeated parameters are lists (`keys=a&keys=b`), as in goim; a scalar
//! parameter given twice takes its first value; unknown parameters are
//! ignored; an empty value (`operation=`) counts as absent.

use std::convert::Infallible;
use std::fmt::Display;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;

/// The decoded query parameters of one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Params::parse(parts.uri.query().unwrap_or("")))
    }
}

fn parse_value<T>(name: &str, value: &str) -> Result<T, ApiError>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .parse()
        .map_err(|err| ApiError::BadRequest(format!("{name}: {err} {}", quoted(value))))
}

/// The longest prefix of a refused value an error message repeats.
const QUOTE_MAX: usize = 64;

/// `value` quoted for an error message, cut after [`QUOTE_MAX`] bytes: a
/// caller's 60 KB parameter must not come back in the answer and the logs.
pub(crate) fn quoted(value: &str) -> String {
    if value.len() <= QUOTE_MAX {
        return format!("{value:?}");
    }
    let mut end = QUOTE_MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &value[..end], value.len())
}

impl Params {
    /// Decodes a raw query string (`a=1&b=x%20y`).
    pub(crate) fn parse(query: &str) -> Params {
        Params {
            pairs: form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        }
    }

    /// The first non-empty value of `name`.
    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, which must be present and non-empty.
    pub(crate) fn required_str(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name)
            .ok_or_else(|| ApiError::BadRequest(format!("{name}: required")))
    }

    /// The value of `name` parsed as `T`, `None` when absent.
    pub(crate) fn optional<T>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.str(name).map(|v| parse_value(name, v)).transpose()
    }

    /// The value of `name` parsed as `T`; absent is an error.
    pub(crate) fn required<T>(&self, name: &str) -> Result<T, ApiError>
    where
        T: FromStr,
        T::Err: Display,
    {
        parse_value(name, self.required_str(name)?)
    }

    /// A required integer that must not be 0 (goim's `binding:"required"`).
    pub(crate) fn required_nonzero<T>(&self, name: &str) -> Result<T, ApiError>
    where
        T: FromStr + Default + PartialEq,
        T::Err: Display,
    {
        let value: T = self.required(name)?;
        if value == T::default() {
            return Err(ApiError::BadRequest(format!(
                "{name}: required, must not be 0"
            )));
        }
        Ok(value)
    }

    /// Every non-empty value of the repeated parameter `name`.
    /// rim's `store` flag: absent or `0` is false, `1` is true.
    pub(crate) fn store(&self) -> Result<bool, ApiError> {
        match self.str("store") {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "store: must be 0 or 1, got {}",
                quoted(other)
            ))),
        }
    }

    /// Refuses `store=1` (and `id=`) on a push that addresses connections,
    /// rooms or everyone: only users have mailboxes.
    pub(crate) fn refuse_store(&self, what: &str) -> Result<(), ApiError> {
        if self.store()? {
            return Err(ApiError::BadRequest(format!(
                "store=1: only pushes to users (mids) are stored; {what}"
            )));
        }
        if self.str("id").is_some() {
            return Err(ApiError::BadRequest("id: only with store=1".into()));
        }
        Ok(())
    }

    /// The `id` of a stored push; refused without `store=1`.
    pub(crate) fn stored_id(&self, store: bool) -> Result<Option<&str>, ApiError> {
        match self.str("id") {
            Some(_) if !store => Err(ApiError::BadRequest("id: only with store=1".into())),
            id => Ok(id),
        }
    }

    pub(crate) fn list_str(&self, name: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Every non-empty value of `name`, each parsed as `T`.
    pub(crate) fn list<T>(&self, name: &str) -> Result<Vec<T>, ApiError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| parse_value(name, v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(err: ApiError) -> String {
        match err {
            ApiError::BadRequest(m) => m,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn scalars_lists_and_messages() {
        let params = Params::parse(
            "operation=abc&keys=a&keys=b%20c&keys=&mids=1&mids=x&empty=&speed=3&speed=4",
        );
        assert_eq!(
            message(params.optional::<i32>("operation").unwrap_err()),
            "operation: invalid digit found in string \"abc\""
        );
        assert_eq!(
            params.list_str("keys"),
            vec!["a".to_string(), "b c".to_string()]
        );
        assert_eq!(
            message(params.list::<i64>("mids").unwrap_err()),
            "mids: invalid digit found in string \"x\""
        );
        assert_eq!(params.optional::<i32>("empty").unwrap(), None);
        assert_eq!(params.optional::<i32>("speed").unwrap(), Some(3));
        assert_eq!(
            message(params.required_str("type").unwrap_err()),
            "type: required"
        );
        assert_eq!(
            message(params.required::<i32>("empty").unwrap_err()),
            "empty: required"
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = format!("{}x", "\u{e9}".repeat(40));
        let params = Params::parse(&format!("a={long}"));
        let message = message(params.required::<i32>("a").unwrap_err());
        assert!(message.ends_with("... (81 bytes)"), "{message}");
        assert!(message.len() < 150, "{message}");
        assert_eq!(quoted("short"), "\"short\"");
    }

    #[test]
    fn nonzero_and_ranges() {
        let params = Params::parse("a=0&b=7&c=99999999999&uid=1.5");
        assert_eq!(
            message(params.required_nonzero::<i32>("a").unwrap_err()),
            "a: required, must not be 0"
        );
        assert_eq!(params.required_nonzero::<i32>("b").unwrap(), 7);
        assert_eq!(
            message(params.required::<i32>("c").unwrap_err()),
            "c: number too large to fit in target type \"99999999999\""
        );
        assert_eq!(
            message(params.required::<i64>("uid").unwrap_err()),
            "uid: invalid digit found in string \"1.5\""
        );
    }
}
