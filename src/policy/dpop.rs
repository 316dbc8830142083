//! A provider's `dpop` block (RFC 9449): whether DPoP-bound tokens are
//! accepted or required, how old a proof may be, the algorithms a proof may
//! use, server nonces, and the origin proofs name in `htu`.

use crate::binding::dpop::{DpopConfig, NonceConfig};
use crate::jose::jwk::Alg;
use crate::policy::endpoints::{duration_ms, secret};
use crate::policy::error::{ConfigError, err};
use crate::policy::raw::{Named, RawDpop, RawDpopNonce};
use crate::policy::types::{Dpop, Environment};

/// Defaults and bounds of `max_age`, in ms.
const DEFAULT_MAX_AGE_MS: u64 = 60_000;
const MAX_MAX_AGE_MS: u64 = 3_600_000;
/// Defaults and bounds of `nonce.lifetime`, in ms.
const DEFAULT_NONCE_LIFETIME_MS: u64 = 300_000;
const NONCE_LIFETIME_MS: (u64, u64) = (30_000, 86_400_000);
/// A nonce secret is an HMAC-SHA256 key: at least 32 bytes.
const MIN_SECRET_BYTES: usize = 32;
/// The proof algorithms accepted when `algorithms` is not given.
pub const DEFAULT_ALGORITHMS: [Alg; 4] = [Alg::ES256, Alg::PS256, Alg::EdDSA, Alg::Ed25519];

pub(crate) fn dpop(
    at: &str,
    raw: RawDpop,
    clock_skew: u64,
    env: &dyn Environment,
) -> Result<Dpop, ConfigError> {
    let max_age_ms = duration_ms(
        &format!("{at}.max_age"),
        raw.max_age.as_deref(),
        DEFAULT_MAX_AGE_MS,
        (1_000, MAX_MAX_AGE_MS),
    )?;
    let algorithms = algorithms(at, raw.algorithms)?;
    let nonce = raw
        .nonce
        .map(|n| nonce(&format!("{at}.nonce"), n, env))
        .transpose()?;
    let origin = raw
        .origin
        .map(|o| origin(&format!("{at}.origin"), &o))
        .transpose()?;
    Ok(Dpop {
        config: DpopConfig {
            required: raw.required.unwrap_or(false),
            max_age_secs: max_age_ms.div_ceil(1000),
            clock_skew_secs: clock_skew,
            algorithms,
            nonce,
        },
        origin,
    })
}

/// `algorithms`: not empty; every name an asymmetric algorithm certbound
/// verifies (serde refuses any other name, `none` and HS* included).
fn algorithms(at: &str, list: Option<Vec<Named<Alg>>>) -> Result<Vec<Alg>, ConfigError> {
    let Some(list) = list else {
        return Ok(DEFAULT_ALGORITHMS.to_vec());
    };
    if list.is_empty() {
        return Err(err(format!("{at}.algorithms"), "must not be empty"));
    }
    let mut algs: Vec<Alg> = Vec::with_capacity(list.len());
    for Named(alg) in list {
        if !algs.contains(&alg) {
            algs.push(alg);
        }
    }
    Ok(algs)
}

/// `nonce`: the secret (and the previous one during a rotation), each at
/// least 32 bytes, and the lifetime of a nonce.
fn nonce(at: &str, raw: RawDpopNonce, env: &dyn Environment) -> Result<NonceConfig, ConfigError> {
    let key = |field: &str, s| -> Result<Vec<u8>, ConfigError> {
        let field = format!("{at}.{field}");
        let value = secret(&field, s, env)?;
        if value.len() < MIN_SECRET_BYTES {
            return Err(err(
                field,
                format!("must be at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
        Ok(value.into_bytes())
    };
    let current = key("secret", raw.secret)?;
    let previous = raw
        .previous_secret
        .map(|s| key("previous_secret", s))
        .transpose()?;
    let lifetime_ms = duration_ms(
        &format!("{at}.lifetime"),
        raw.lifetime.as_deref(),
        DEFAULT_NONCE_LIFETIME_MS,
        NONCE_LIFETIME_MS,
    )?;
    Ok(NonceConfig {
        current,
        previous,
        lifetime_secs: lifetime_ms / 1000,
    })
}

/// `origin`: `https://host[:port]` (or `http://`), the scheme and
/// authority clients reach this API at, for `htu` (RFC 9449 §4.3 step 9).
/// Lowercased; no path, query, fragment or userinfo.
pub(crate) fn origin(at: &str, o: &str) -> Result<String, ConfigError> {
    let lower = o.to_ascii_lowercase();
    let authority = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| err(at, "must start with https:// or http://"))?;
    let ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !ok {
        return Err(err(
            at,
            "must be a scheme and host, with an optional port, and nothing else",
        ));
    }
    Ok(lower)
}
