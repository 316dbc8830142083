//! JWT verification (RFC 7515, RFC 7519, RFC 8725), in the order
//! jwt-simple's `token.rs` uses: size cap, header, algorithm allow-list,
//! key by `kid`, signature, and only then claims. The provider is chosen by
//! the token's `iss` before any key is tried; keys are never tried in turn.
//!
//! Time is an input (`now`, Unix seconds from Envoy's clock), never read.

use serde_json::{Map, Value};

use crate::decide::claims::{Audiences, check_claim_types, check_claims};
use crate::decide::keys::KeyRing;
use crate::decide::token::{Rejection, VerifiedToken};
use crate::error::AuthError;
use crate::jose::jwk::Alg;
use crate::jose::jws::{decode_json, split_compact};
use crate::policy::{Policy, Provider, normalize_media_type};

/// The protected header members this filter reads (RFC 7515 §4.1).
struct Header {
    alg: Alg,
    kid: Option<String>,
}

/// `max_token_bytes`, before anything decodes the token.
pub fn check_size(policy: &Policy, token: &str) -> Result<(), AuthError> {
    if token.len() > policy.max_token_bytes {
        return Err(AuthError::TokenTooLarge {
            len: token.len(),
            max: policy.max_token_bytes,
        });
    }
    Ok(())
}

/// Verifies `token` against the provider whose `issuer` equals its `iss`,
/// with that provider's keys in `keys`, and its claims against `now` and
/// `audiences`.
pub fn verify(
    policy: &Policy,
    keys: &KeyRing,
    token: &str,
    now: i64,
    audiences: Audiences<'_>,
) -> Result<VerifiedToken, Rejection> {
    check_size(policy, token)?;
    let (header_b64, payload_b64) = split_compact(token)?;
    let header_obj = decode_json(header_b64, "malformed token header")?;
    let claims = decode_json(payload_b64, "malformed token payload")?;

    // Provider by `iss`: routing only; the claim is trusted after the signature.
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(AuthError::WrongIssuer)?;
    let id = policy
        .provider_by_issuer(iss)
        .ok_or(AuthError::WrongIssuer)?;
    let provider = policy.provider(id);

    let routed = Rejection::routed(id);
    let header = check_header(provider, &header_obj).map_err(routed)?;
    check_claim_types(&claims).map_err(routed)?;

    // Key by `kid`, fit for `alg`, then the signature.
    let key_set = keys
        .get(id)
        .ok_or(AuthError::KeysUnavailable)
        .map_err(routed)?;
    let key = key_set
        .select(header.kid.as_deref(), header.alg, provider.require_key_alg)
        .map_err(routed)?;
    key.verify(token).map_err(routed)?;

    let audiences = audiences.of(id, provider);
    let times = check_claims(provider, audiences, &claims, now).map_err(routed)?;
    Ok(VerifiedToken::new(
        id,
        claims,
        payload_b64.to_string(),
        times,
    ))
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
