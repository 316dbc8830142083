//! What a provider fetches or reads from outside the JSON: `local_jwks`
//! (inline or from a VM environment variable), `remote_jwks` and
//! `introspection` with their `http_uri`, and protobuf `Duration`s.

use crate::jose::jwk::{KeySet, SkippedKey};
use crate::policy::error::{ConfigError, err};
use crate::policy::raw::{RawDataSource, RawHttpUri, RawIntrospection, RawRemoteJwks, RawSecret};
use crate::policy::types::{
    DEFAULT_CACHE_DURATION_MS, DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_MIN_REFETCH_INTERVAL_MS,
    Environment, Introspection, RemoteJwks,
};

/// Bounds of `remote_jwks.cache_duration` and `min_refetch_interval`, in ms.
const CACHE_DURATION_MS: (u64, u64) = (1_000, 7 * 24 * 3_600_000);
const MIN_REFETCH_INTERVAL_MS: (u64, u64) = (0, 24 * 3_600_000);
/// Bounds of `http_uri.timeout`, in ms.
const HTTP_TIMEOUT_MS: (u64, u64) = (1, 60_000);
/// Default and bounds of `introspection.cache_duration`, in ms.
const DEFAULT_INTROSPECTION_CACHE_MS: u64 = 60_000;
const INTROSPECTION_CACHE_MS: (u64, u64) = (0, 24 * 3_600_000);

/// A validated `http_uri`.
struct HttpUri {
    scheme: String,
    authority: String,
    path: String,
    timeout_ms: u64,
}

/// The text of a data source: exactly one of `inline_string` or
/// `environment_variable` (read from the VM).
fn data_source(at: &str, src: RawDataSource, env: &dyn Environment) -> Result<String, ConfigError> {
    match (src.inline_string, src.environment_variable) {
        (Some(s), None) => Ok(s),
        (None, Some(var)) => env.var(&var).ok_or_else(|| {
            err(
                format!("{at}.environment_variable"),
                format!("environment variable \"{var}\" is not set in the VM"),
            )
        }),
        _ => Err(err(
            at,
            "exactly one of inline_string or environment_variable is required",
        )),
    }
}

/// `local_jwks`: the key set, and the keys in it that certbound skips.
pub(crate) fn local_jwks(
    at: &str,
    src: RawDataSource,
    env: &dyn Environment,
) -> Result<(KeySet, Vec<SkippedKey>), ConfigError> {
    let text = data_source(at, src, env)?;
    KeySet::parse(&text).map_err(|e| err(at, e.to_string()))
}

fn http_uri(at: &str, h: &RawHttpUri) -> Result<HttpUri, ConfigError> {
    let uri_at = format!("{at}.uri");
    let (scheme, rest) = h
        .uri
        .split_once("://")
        .filter(|(s, _)| *s == "http" || *s == "https")
        .ok_or_else(|| err(&uri_at, "must be an http:// or https:// URI"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '#';
    if authority.is_empty() || authority.contains(['@', '/']) || authority.contains(bad) {
        return Err(err(&uri_at, "has no valid host"));
    }
    if path.contains(bad) {
        return Err(err(&uri_at, "has an invalid path"));
    }
    if h.cluster.is_empty() {
        return Err(err(format!("{at}.cluster"), "must not be empty"));
    }
    let timeout_ms = duration_ms(
        &format!("{at}.timeout"),
        h.timeout.as_deref(),
        DEFAULT_HTTP_TIMEOUT_MS,
        HTTP_TIMEOUT_MS,
    )?;
    Ok(HttpUri {
        scheme: scheme.to_string(),
        authority: authority.to_string(),
        path: path.to_string(),
        timeout_ms,
    })
}

pub(crate) fn remote_jwks(at: &str, r: RawRemoteJwks) -> Result<RemoteJwks, ConfigError> {
    let HttpUri {
        scheme,
        authority,
        path,
        timeout_ms,
    } = http_uri(&format!("{at}.http_uri"), &r.http_uri)?;
    let cache_duration_ms = duration_ms(
        &format!("{at}.cache_duration"),
        r.cache_duration.as_deref(),
        DEFAULT_CACHE_DURATION_MS,
        CACHE_DURATION_MS,
    )?;
    let min_refetch_interval_ms = duration_ms(
        &format!("{at}.min_refetch_interval"),
        r.min_refetch_interval.as_deref(),
        DEFAULT_MIN_REFETCH_INTERVAL_MS,
        MIN_REFETCH_INTERVAL_MS,
    )?;
    Ok(RemoteJwks {
        uri: r.http_uri.uri,
        cluster: r.http_uri.cluster,
        scheme,
        authority,
        path,
        timeout_ms,
        cache_duration_ms,
        min_refetch_interval_ms,
    })
}

pub(crate) fn introspection(
    at: &str,
    r: RawIntrospection,
    env: &dyn Environment,
) -> Result<Introspection, ConfigError> {
    let HttpUri {
        scheme,
        authority,
        path,
        timeout_ms,
    } = http_uri(&format!("{at}.http_uri"), &r.http_uri)?;
    if r.client_id.is_empty() {
        return Err(err(format!("{at}.client_id"), "must not be empty"));
    }
    let client_secret = secret(&format!("{at}.client_secret"), r.client_secret, env)?;
    let cache_ms = duration_ms(
        &format!("{at}.cache_duration"),
        r.cache_duration.as_deref(),
        DEFAULT_INTROSPECTION_CACHE_MS,
        INTROSPECTION_CACHE_MS,
    )?;
    Ok(Introspection {
        uri: r.http_uri.uri,
        cluster: r.http_uri.cluster,
        scheme,
        authority,
        path,
        timeout_ms,
        client_id: r.client_id,
        client_secret,
        cache_duration_s: i64::try_from(cache_ms / 1000).unwrap_or(i64::MAX),
    })
}

/// A secret (`client_secret`, a DPoP nonce secret): a plain string or a
/// data source, not empty.
pub(crate) fn secret(at: &str, s: RawSecret, env: &dyn Environment) -> Result<String, ConfigError> {
    let secret = match s {
        RawSecret::Inline(s) => s,
        RawSecret::Source(src) => data_source(at, src, env)?,
    };
    if secret.is_empty() {
        return Err(err(at, "must not be empty"));
    }
    Ok(secret)
}

/// A protobuf JSON `Duration`: decimal seconds with an `s` suffix ("2s", "0.5s").
pub(crate) fn duration_ms(
    field: &str,
    value: Option<&str>,
    default: u64,
    (min, max): (u64, u64),
) -> Result<u64, ConfigError> {
    let Some(v) = value else {
        return Ok(default);
    };
    let parsed = v
        .strip_suffix('s')
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e9)
        .map(|f| (f * 1000.0).round() as u64)
        .ok_or_else(|| err(field, format!("\"{v}\" is not a duration like \"2s\"")))?;
    if parsed < min || parsed > max {
        return Err(err(
            field,
            format!(
                "must be between {}s and {}s",
                min as f64 / 1000.0,
                max / 1000
            ),
        ));
    }
    Ok(parsed)
}
