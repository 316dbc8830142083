//! The claim rules of RFC 7519 and jwt_authn, one function each. Time is
//! an input (`now`, Unix seconds), never read.

use serde_json::{Map, Value};

use crate::decide::token::{Times, VerifiedToken};
use crate::error::AuthError;
use crate::jose::json::numeric_date;
use crate::policy::{Provider, ProviderId};

/// The audiences a token must name (RFC 7519 §4.1.3): its provider's own,
/// or, for a rule's `provider_and_audiences`, the rule's for that provider.
#[derive(Debug, Clone, Copy)]
pub enum Audiences<'a> {
    OfProvider,
    Override {
        provider: ProviderId,
        audiences: &'a [String],
    },
}

impl<'a> Audiences<'a> {
    /// The list for provider number `index`: empty means `aud` is not checked.
    pub fn of<'p>(self, index: ProviderId, provider: &'p Provider) -> &'p [String]
    where
        'a: 'p,
    {
        match self {
            Audiences::Override {
                provider: p,
                audiences,
            } if p == index => audiences,
            _ => &provider.audiences,
        }
    }
}

/// The claim rules, one at a time, `aud` against `audiences`. Returns the
/// times read.
pub fn check_claims(
    provider: &Provider,
    audiences: &[String],
    claims: &Map<String, Value>,
    now: i64,
) -> Result<Times, AuthError> {
    let times = Times::read(claims)?;
    check_times(provider, &times, now)?;
    check_audience(audiences, claims)?;
    check_subject(provider, claims)?;
    Ok(times)
}

/// The checks a cached token still gets on every request: time and
/// audience, on the times read when it was verified.
pub fn check_cached_claims(
    provider: &Provider,
    audiences: &[String],
    token: &VerifiedToken,
    now: i64,
) -> Result<(), AuthError> {
    check_times(provider, &token.times, now)?;
    check_audience(audiences, &token.claims)
}

fn check_times(provider: &Provider, times: &Times, now: i64) -> Result<(), AuthError> {
    check_expiration(provider, times, now)?;
    check_not_before(provider, times, now)?;
    check_issued_at(provider, times, now)?;
    check_lifetime(provider, times, now)
}

/// Registered claims must have their registered types (RFC 7519 §4.1), so
/// that a type confusion is reported as such rather than as a signature failure.
pub fn check_claim_types(c: &Map<String, Value>) -> Result<(), AuthError> {
    for name in ["iss", "sub", "jti"] {
        if c.get(name).is_some_and(|v| !v.is_string()) {
            return Err(AuthError::Malformed("registered claim has the wrong type"));
        }
    }
    for name in ["exp", "nbf", "iat"] {
        if c.get(name).is_some_and(|v| numeric_date(v).is_none()) {
            return Err(AuthError::Malformed("registered claim has the wrong type"));
        }
    }
    match c.get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => return Err(AuthError::Malformed("registered claim has the wrong type")),
    }
    Ok(())
}

impl Times {
    pub fn read(c: &Map<String, Value>) -> Result<Times, AuthError> {
        let get = |name: &str| -> Result<Option<i64>, AuthError> {
            match c.get(name) {
                None => Ok(None),
                Some(v) => numeric_date(v)
                    .map(Some)
                    .ok_or(AuthError::Malformed("registered claim has the wrong type")),
            }
        };
        Ok(Times {
            exp: get("exp")?,
            nbf: get("nbf")?,
            iat: get("iat")?,
        })
    }
}

/// RFC 7519 §4.1.4: the token must not be accepted on or after `exp`,
/// allowing `clock_skew_seconds` of leeway.
fn check_expiration(p: &Provider, t: &Times, now: i64) -> Result<(), AuthError> {
    match t.exp {
        None if p.require_expiration || p.max_lifetime.is_some() => {
            Err(AuthError::MissingExpiration)
        }
        None => Ok(()),
        Some(exp) if i128::from(now) >= i128::from(exp) + i128::from(p.clock_skew) => {
            Err(AuthError::Expired)
        }
        Some(_) => Ok(()),
    }
}

/// RFC 7519 §4.1.5: the token must not be accepted before `nbf`, with leeway.
fn check_not_before(p: &Provider, t: &Times, now: i64) -> Result<(), AuthError> {
    match t.nbf {
        Some(nbf) if i128::from(nbf) > i128::from(now) + i128::from(p.clock_skew) => {
            Err(AuthError::NotYetValid)
        }
        _ => Ok(()),
    }
}

/// RFC 7519 §4.1.6: a token issued in the future (beyond the leeway) is
/// not yet valid.
fn check_issued_at(p: &Provider, t: &Times, now: i64) -> Result<(), AuthError> {
    match t.iat {
        Some(iat) if i128::from(iat) > i128::from(now) + i128::from(p.clock_skew) => {
            Err(AuthError::NotYetValid)
        }
        _ => Ok(()),
    }
}

/// `max_lifetime_seconds`: neither `exp - iat` nor `exp - now` may exceed it.
fn check_lifetime(p: &Provider, t: &Times, now: i64) -> Result<(), AuthError> {
    let (Some(max), Some(exp)) = (p.max_lifetime, t.exp) else {
        return Ok(());
    };
    let max = i128::from(max);
    let exp = i128::from(exp);
    if exp - i128::from(now) > max {
        return Err(AuthError::LifetimeTooLong);
    }
    if let Some(iat) = t.iat
        && exp - i128::from(iat) > max
    {
        return Err(AuthError::LifetimeTooLong);
    }
    Ok(())
}

/// RFC 7519 §4.1.3: when audiences are configured, `aud` (a string or an
/// array of strings) must contain one of them.
fn check_audience(audiences: &[String], c: &Map<String, Value>) -> Result<(), AuthError> {
    if audiences.is_empty() {
        return Ok(());
    }
    let ok = match c.get("aud") {
        Some(Value::String(a)) => audiences.iter().any(|x| x == a),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(AuthError::WrongAudience)
    }
}

/// jwt_authn's `subjects`: when configured, `sub` (RFC 7519 §4.1.2, a
/// string) must be there and match. Per provider, so a cached token, which
/// passed it when verified, is not checked again.
fn check_subject(provider: &Provider, c: &Map<String, Value>) -> Result<(), AuthError> {
    match (&provider.subjects, c.get("sub")) {
        (None, _) => Ok(()),
        (Some(m), Some(Value::String(sub))) if m.matches(sub) => Ok(()),
        (Some(_), _) => Err(AuthError::WrongSubject),
    }
}

#[cfg(test)]
mod tests {
    use super::check_subject;
    use crate::error::AuthError;
    use crate::jose::json::{MAX_NUMERIC_DATE, numeric_date};
    use serde_json::json;

    /// RFC 7519 §4.1.2: `sub` is a string; with `subjects`, one that is
    /// missing, not a string or not matching is refused.
    #[test]
    fn subjects() {
        let cfg = json!({"providers": {"idp": {
            "issuer": "https://idp.example.com",
            "remote_jwks": {"http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp", "timeout": "1s"}},
            "subjects": {"prefix": "spiffe://example.org/"}
        }}});
        let policy = match crate::policy::parse(cfg.to_string().as_bytes(), &|_: &str| None) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let p = &policy.providers[0];
        let claims = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            check_subject(p, &claims(json!({"sub": "spiffe://example.org/ns/a"}))),
            Ok(())
        );
        for bad in [
            json!({}),
            json!({"sub": "spiffe://other.org/ns/a"}),
            json!({"sub": 7}),
            json!({"sub": ["spiffe://example.org/a"]}),
        ] {
            assert_eq!(check_subject(p, &claims(bad)), Err(AuthError::WrongSubject));
        }
    }

    #[test]
    fn numeric_dates_up_to_two_to_the_53() {
        for (v, want) in [
            (json!(0), Some(0)),
            (json!(9_999_999_999_i64), Some(9_999_999_999)),
            (json!(MAX_NUMERIC_DATE), Some(MAX_NUMERIC_DATE)),
            (json!(MAX_NUMERIC_DATE + 1), None),
            (json!(u64::MAX), None),
            (json!(-1), None),
            (json!(1_700_000_000.75), Some(1_700_000_000)),
            (json!(1e300), None),
            (json!("1700000000"), None),
        ] {
            assert_eq!(numeric_date(&v), want, "{v}");
        }
    }
}
