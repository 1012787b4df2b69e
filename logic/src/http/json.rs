//! Integers in JSON request bodies, read the way JSON Schema counts them:
//! `44`, and also any spelling of a number that is exactly an integer
//! (`44.0`, `4.4e1`), as some encoders write integral numbers. A float is
//! taken only up to 2^53 in magnitude, where every integer has an exact
//! float; beyond that (or with a fraction) it is refused with a message,
//! never rounded.

use serde::de::Error;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Largest magnitude up to which a float spells an integer exactly.
const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53

/// The integer a JSON value is, if it is one (in `i64`). Works on the
/// value's text: serde_json's own float parsing may be off by one unit in
/// the last place, which would turn `…946.0` into `…945.5`; the standard
/// library's is exact.
fn integer(raw: &RawValue) -> Result<i64, String> {
    let text = raw.get().trim();
    if let Ok(int) = text.parse::<i64>() {
        return Ok(int);
    }
    let is_number = text.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    let float = if is_number {
        text.parse::<f64>().ok()
    } else {
        None
    };
    match float {
        None => Err(format!("expected an integer, got {}", super::params::quoted(text))),
        Some(_) if !text.contains(['.', 'e', 'E']) => Err(format!("{text} is out of range for int64")),
        Some(float) if float.fract() == 0.0 && float.abs() <= EXACT => Ok(float as i64),
        Some(float) if float.fract() == 0.0 => Err(format!(
            "{text} is not an exact integer (write integers above 2^53 without a fraction or exponent)"
        )),
        Some(_) => Err(format!("{text} is not an integer")),
    }
}

/// `#[serde(deserialize_with = "json::int")]` on an integer field.
pub(crate) fn int<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    let int = integer(&raw).map_err(D::Error::custom)?;
    T::try_from(int).map_err(|_| {
        D::Error::custom(format!(
            "{int} is out of range for {}",
            std::any::type_name::<T>()
        ))
    })
}

/// `#[serde(deserialize_with = "json::ints")]` on a `Vec` of `i64`.
pub(crate) fn ints<'de, D>(deserializer: D) -> Result<Vec<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    Vec::<Box<RawValue>>::deserialize(deserializer)?
        .iter()
        .map(|raw| integer(raw).map_err(D::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "super::int")]
        op: i32,
        #[serde(deserialize_with = "super::ints")]
        mids: Vec<i64>,
    }

    fn parse(text: &str) -> Result<Body, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_floats_are_integers_and_others_are_refused() {
        let body = parse(
            r#"{"op": 1000.0, "mids": [1, -273.0, 4.4e1, 9007199254740992.0, -3937664481886946.0]}"#,
        )
        .unwrap();
        assert_eq!(body.op, 1000);
        assert_eq!(
            body.mids,
            [1, -273, 44, 9_007_199_254_740_992, -3_937_664_481_886_946]
        );
        let big =
            parse(r#"{"op": 1, "mids": [9223372036854775807, -9223372036854775808]}"#).unwrap();
        assert_eq!(big.mids, [i64::MAX, i64::MIN]);
        for (text, expect) in [
            (r#"{"op": 1.5, "mids": []}"#, "1.5 is not an integer"),
            (r#"{"op": 3000000000, "mids": []}"#, "out of range for i32"),
            (
                r#"{"op": 1, "mids": [9223372036854775808]}"#,
                "out of range for int64",
            ),
            (r#"{"op": 1, "mids": [1e19]}"#, "not an exact integer"),
            (
                r#"{"op": 1, "mids": [9007199254740994.0]}"#,
                "not an exact integer",
            ),
            (
                r#"{"op": "1", "mids": []}"#,
                "expected an integer, got \"\\\"1\\\"\"",
            ),
            (
                r#"{"op": 1, "mids": [null]}"#,
                "expected an integer, got \"null\"",
            ),
            (r#"{"op": 1, "mids": 5}"#, "invalid type"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }
}
