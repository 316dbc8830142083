//! Strict JSON for JOSE headers and claim sets: an object whose member
//! names are unique at every level. RFC 7515 §5.2 and RFC 7519 §4 let a
//! parser reject duplicate names, and RFC 8725 §3.9 explains why it should:
//! two parsers that pick different duplicates disagree on the claims.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom("duplicate member name"));
            }
        }
        Ok(Value::Object(out))
    }
}

/// Parses `bytes` as a JSON object with unique member names at every level.
/// Nesting depth is bounded by serde_json's recursion limit (128).
pub fn parse_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(map))) => Some(map),
        _ => None,
    }
}

/// The largest NumericDate accepted: 2^53 − 1 s, the largest integer every
/// JSON producer writes exactly (a JavaScript number's safe range). RFC 7519
/// sets no bound, and issuers do write far-off `exp` values such as
/// 9999999999 (jwt_authn reads them as 64-bit integers).
pub const MAX_NUMERIC_DATE: i64 = (1 << 53) - 1;

/// RFC 7519 §2 NumericDate: seconds since the epoch, possibly fractional
/// (truncated here). Values before the epoch or after
/// [`MAX_NUMERIC_DATE`] are refused as malformed, never saturated or
/// wrapped.
pub fn numeric_date(v: &Value) -> Option<i64> {
    let secs = match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.trunc() as i64)
        })?,
        _ => return None,
    };
    (0..=MAX_NUMERIC_DATE).contains(&secs).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_objects() {
        let m = parse_object(br#"{"a":1,"b":{"c":[1,2,{"d":null}]}}"#).unwrap();
        assert_eq!(m["a"], 1);
    }

    #[test]
    fn rejects_duplicates_at_any_level() {
        assert!(parse_object(br#"{"a":1,"a":2}"#).is_none());
        assert!(parse_object(br#"{"cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#).is_none());
        assert!(parse_object(br#"{"a":[{"b":1,"b":1}]}"#).is_none());
        // escaped spelling of the same name is the same name
        assert!(parse_object(br#"{"alg":"ES256","al\u0067":"none"}"#).is_none());
    }

    #[test]
    fn rejects_non_objects_and_deep_nesting() {
        assert!(parse_object(b"[]").is_none());
        assert!(parse_object(b"1").is_none());
        assert!(parse_object(b"{").is_none());
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_object(deep.as_bytes()).is_none());
    }
}
