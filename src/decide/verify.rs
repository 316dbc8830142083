//! JWT verification (RFC 7515, RFC 7519, RFC 8725), in the order
//! jwt-simple's `token.rs` uses: size cap, header, algorithm allow-list,
//! key by `kid`, signature, and only then claims. The provider is chosen by
//! the token's `iss` before any key is tried; keys are never tried in turn.
//!
//! Time is an input (`now`, Unix seconds from Envoy's clock), never read.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::JWTError;
use serde_json::{Map, Value};

use std::sync::Arc;

use crate::binding::Confirmation;
use crate::decide::cache::{Probe, TokenCache};
use crate::error::AuthError;
use crate::jose::json::parse_object;
use crate::jose::jwk::{Alg, KeyRing};
use crate::policy::{Policy, Provider, normalize_media_type};

/// A token whose signature and claims verified for one provider. The
/// certificate binding is checked separately, against the request's client
/// certificate (see [`crate::decide`]).
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Index into [`Policy::providers`].
    pub provider: usize,
    pub claims: Map<String, Value>,
    /// The base64url payload segment, as sent.
    pub payload_b64: String,
    /// `exp`, `nbf` and `iat`, read when the token was verified.
    pub times: Times,
    /// The `cnf` claim, read when the token was verified.
    pub confirmation: Confirmation,
}

impl VerifiedToken {
    /// A token whose signature (or introspection) and claims were checked.
    pub fn new(
        provider: usize,
        claims: Map<String, Value>,
        payload_b64: String,
        times: Times,
    ) -> VerifiedToken {
        VerifiedToken {
            provider,
            confirmation: Confirmation::of_claims(&claims),
            claims,
            payload_b64,
            times,
        }
    }

    /// `exp`, when present (Unix seconds).
    pub fn expires_at(&self) -> Option<i64> {
        self.times.exp
    }
}

/// The protected header members this filter reads (RFC 7515 §4.1).
struct Header {
    alg: Alg,
    kid: Option<String>,
}

/// Why a token was refused, and the provider it was routed to (by `iss`)
/// when it got that far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub error: AuthError,
    pub provider: Option<usize>,
}

impl Rejection {
    /// Tags errors with the provider the token was routed to.
    pub fn routed(provider: usize) -> impl Fn(AuthError) -> Rejection + Copy {
        move |error| Rejection {
            error,
            provider: Some(provider),
        }
    }
}

/// The audiences a token must name (RFC 7519 §4.1.3): its provider's own,
/// or, for a rule's `provider_and_audiences`, the rule's for that provider.
#[derive(Debug, Clone, Copy)]
pub enum Audiences<'a> {
    OfProvider,
    Override {
        provider: usize,
        audiences: &'a [String],
    },
}

impl<'a> Audiences<'a> {
    /// The list for provider number `index`: empty means `aud` is not checked.
    pub fn of<'p>(self, index: usize, provider: &'p Provider) -> &'p [String]
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

impl From<AuthError> for Rejection {
    fn from(error: AuthError) -> Rejection {
        Rejection {
            error,
            provider: None,
        }
    }
}

/// Verifies `token` against the provider whose `issuer` equals its `iss`,
/// with that provider's keys in `keys`. A verification cached in `cache`
/// for the same key generation skips the signature; the claims are always
/// checked against `now`.
pub fn verify(
    policy: &Policy,
    keys: &KeyRing,
    cache: &mut TokenCache,
    token: &str,
    now: i64,
) -> Result<Arc<VerifiedToken>, Rejection> {
    let probe = cache.probe(token);
    verify_probed(policy, keys, cache, &probe, now, Audiences::OfProvider)
}

/// [`verify`], with the token's [`Probe`] of `cache` already taken and the
/// audiences to check given.
pub fn verify_probed(
    policy: &Policy,
    keys: &KeyRing,
    cache: &mut TokenCache,
    probe: &Probe<'_>,
    now: i64,
    audiences: Audiences<'_>,
) -> Result<Arc<VerifiedToken>, Rejection> {
    let token = probe.token();
    check_size(policy, token)?;
    if let Some(hit) = cache.get(probe, |p| keys.generation(p), now) {
        let provider = policy
            .providers
            .get(hit.provider)
            .ok_or(AuthError::WrongIssuer)?;
        let audiences = audiences.of(hit.provider, provider);
        check_cached_claims(provider, audiences, &hit, now).map_err(|error| Rejection {
            error,
            provider: Some(hit.provider),
        })?;
        return Ok(hit);
    }
    let verified = verify_uncached(policy, keys, token, now, audiences)?;
    let verified = Arc::new(verified);
    cache.insert(
        probe,
        Arc::clone(&verified),
        keys.generation(verified.provider),
    );
    Ok(verified)
}

/// `max_token_bytes`, before anything decodes the token.
pub(crate) fn check_size(policy: &Policy, token: &str) -> Result<(), AuthError> {
    if token.len() > policy.max_token_bytes {
        return Err(AuthError::TokenTooLarge {
            len: token.len(),
            max: policy.max_token_bytes,
        });
    }
    Ok(())
}

fn verify_uncached(
    policy: &Policy,
    keys: &KeyRing,
    token: &str,
    now: i64,
    audiences: Audiences<'_>,
) -> Result<VerifiedToken, Rejection> {
    let (header_b64, payload_b64) = split_compact(token)?;
    let header_obj = decode_json(header_b64, "malformed token header")?;
    let claims = decode_json(payload_b64, "malformed token payload")?;

    // Provider by `iss`: routing only; the claim is trusted after the signature.
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(AuthError::WrongIssuer)?;
    let provider_index = policy
        .provider_by_issuer(iss)
        .ok_or(AuthError::WrongIssuer)?;
    let provider = policy
        .providers
        .get(provider_index)
        .ok_or(AuthError::WrongIssuer)?;

    let routed = Rejection::routed(provider_index);
    let header = check_header(provider, &header_obj).map_err(routed)?;
    check_claim_types(&claims).map_err(routed)?;

    // Key by `kid`, fit for `alg`, then the signature.
    let key_set = keys
        .get(provider_index)
        .ok_or(AuthError::KeysUnavailable)
        .map_err(routed)?;
    let key = key_set
        .select(header.kid.as_deref(), header.alg)
        .map_err(routed)?;
    key.verify(token).map_err(|e| routed(map_jwt_error(&e)))?;

    let audiences = audiences.of(provider_index, provider);
    let times = check_claims(provider, audiences, &claims, now).map_err(routed)?;
    Ok(VerifiedToken::new(
        provider_index,
        claims,
        payload_b64.to_string(),
        times,
    ))
}

/// The claim rules, one at a time, `aud` against `audiences`. Returns the
/// times read.
pub(crate) fn check_claims(
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
fn check_cached_claims(
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

/// The `iss` of a JWS, unverified: for routing only.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let (_, payload) = split_compact(token).ok()?;
    let claims = decode_json(payload, "malformed token payload").ok()?;
    claims
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// RFC 7515 §7.1 compact serialization: exactly three segments. Five are a
/// JWE (RFC 7516 §7.1), which this filter does not decrypt.
fn split_compact(token: &str) -> Result<(&str, &str), AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed("not a JWS compact serialization"));
    };
    match parts.count() {
        0 => {
            // The signature must be canonical base64url too (RFC 7515 §2).
            if sig.is_empty() || URL_SAFE_NO_PAD.decode(sig).is_err() {
                return Err(AuthError::Malformed("malformed token signature"));
            }
            Ok((h, p))
        }
        2 => Err(AuthError::EncryptedToken),
        _ => Err(AuthError::Malformed("not a JWS compact serialization")),
    }
}

/// base64url without padding (RFC 7515 §2), then a strict JSON object.
fn decode_json(segment: &str, what: &'static str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed(what))?;
    parse_object(&bytes).ok_or(AuthError::Malformed(what))
}

/// RFC 7515 §4.1 and RFC 8725 §3.1: the header's `alg` must be one we
/// implement and the provider allows; `crit` must be understood (we
/// understand none, RFC 7515 §4.1.11); `typ`, when the provider lists token
/// types, must be one of them (RFC 8725 §3.11, RFC 9068 §4). Embedded key
/// material (`jwk`, `jku`, `x5u`, `x5c`) is never used.
fn check_header(provider: &Provider, h: &Map<String, Value>) -> Result<Header, AuthError> {
    let alg_name = h
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthError::Malformed("missing alg"))?;
    let alg = Alg::from_name(alg_name).ok_or(AuthError::UnsupportedAlgorithm)?;
    if !provider.algorithms.contains(&alg) {
        return Err(AuthError::AlgorithmNotAllowed);
    }
    if h.contains_key("crit") {
        return Err(AuthError::UnknownCriticalHeader);
    }
    let kid = match h.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(AuthError::Malformed("kid is not a string")),
    };
    let typ = match h.get("typ") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(AuthError::Malformed("typ is not a string")),
    };
    if !provider.token_types.is_empty() {
        let typ = typ
            .map(normalize_media_type)
            .ok_or(AuthError::WrongTokenType)?;
        if !provider.token_types.contains(&typ) {
            return Err(AuthError::WrongTokenType);
        }
    } else if let Some(t) = typ {
        // Without a configured list, accept what jwt-simple accepts: "JWT" or "*+jwt".
        let t = normalize_media_type(t);
        if t != "jwt" && !t.ends_with("+jwt") {
            return Err(AuthError::WrongTokenType);
        }
    }
    Ok(Header { alg, kid })
}

/// Registered claims must have their registered types (RFC 7519 §4.1), so
/// that a type confusion is reported as such rather than as a signature failure.
fn check_claim_types(c: &Map<String, Value>) -> Result<(), AuthError> {
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

/// The largest NumericDate accepted: 2^53 − 1 s, the largest integer every
/// JSON producer writes exactly (a JavaScript number's safe range). RFC 7519
/// sets no bound, and issuers do write far-off `exp` values such as
/// 9999999999 (jwt_authn reads them as 64-bit integers).
pub const MAX_NUMERIC_DATE: i64 = (1 << 53) - 1;

/// RFC 7519 §2 NumericDate: seconds since the epoch, possibly fractional
/// (truncated here). Values before the epoch or after
/// [`MAX_NUMERIC_DATE`] are refused as malformed, never saturated or
/// wrapped.
fn numeric_date(v: &Value) -> Option<i64> {
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

/// A token's registered time claims (RFC 7519 §4.1.4–4.1.6), Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl Times {
    fn read(c: &Map<String, Value>) -> Result<Times, AuthError> {
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

fn map_jwt_error(e: &jwt_simple::Error) -> AuthError {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => AuthError::Expired,
        Some(JWTError::TokenNotValidYet | JWTError::ClockDrift) => AuthError::NotYetValid,
        Some(JWTError::NotJWT | JWTError::RequiredSignatureTypeMismatch) => {
            AuthError::WrongTokenType
        }
        Some(JWTError::UnknownCriticalExtension) => AuthError::UnknownCriticalHeader,
        Some(JWTError::AlgorithmMismatch) => AuthError::KeyAlgorithmMismatch,
        Some(JWTError::TokenTooLong | JWTError::HeaderTooLarge) => {
            AuthError::Malformed("token too large")
        }
        Some(JWTError::CompactEncodingError) => {
            AuthError::Malformed("not a JWS compact serialization")
        }
        // Everything else jwt-simple reports happens while checking the
        // signature: a wrong length, an invalid encoding, or a mismatch.
        _ => AuthError::BadSignature,
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_NUMERIC_DATE, check_subject, numeric_date};
    use crate::error::AuthError;
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
