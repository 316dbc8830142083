//! Filter configuration: JSON in Envoy `jwt_authn` vocabulary, parsed with
//! unknown fields denied, then validated into the typed [`Policy`] that the
//! request path uses. Every error names the field path it is about.

mod error;
mod raw;
pub mod route;
mod types;

pub use error::ConfigError;
pub use types::{
    BindingMode, ClaimToHeader, DEFAULT_CACHE_DURATION_MS, DEFAULT_CLOCK_SKEW,
    DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_JWT_CACHE_SIZE, DEFAULT_MAX_TOKEN_BYTES,
    DEFAULT_MIN_REFETCH_INTERVAL_MS, Environment, Introspection, JwksSource, MAX_CLOCK_SKEW,
    MAX_CONFIG_BYTES, MAX_JWT_CACHE_SIZE, MAX_MAX_TOKEN_BYTES, Policy, Provider, RemoteJwks,
    Requirement, Rule, RuleMatch, TokenFormat, TokenSource, normalize_media_type,
};

use std::collections::HashMap;
use std::sync::Arc;

use crate::binding::forwarded::{CertificateSource, Cidr, Encoding, Source};
use crate::jose::jwk::{Alg, KeySet, SkippedKey};
use error::{err, header_name};
use raw::{
    RawCertificateSource, RawConfig, RawDataSource, RawHttpUri, RawIntrospection, RawProvider,
    RawRemoteJwks, RawRequirement, RawRequirementList, RawRule, RawSecret,
};

/// Parses and validates the filter configuration.
pub fn parse(bytes: &[u8], env: &dyn Environment) -> Result<Policy, ConfigError> {
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(err(
            "",
            format!("configuration is over {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        err(field, strip_position(&e.inner().to_string()))
    })?;
    validate(raw, env)
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_string(),
        None => msg.to_string(),
    }
}

fn validate(raw: RawConfig, env: &dyn Environment) -> Result<Policy, ConfigError> {
    if raw.providers.is_empty() {
        return Err(err("providers", "at least one provider is required"));
    }
    let max_token_bytes = match raw.max_token_bytes {
        None => DEFAULT_MAX_TOKEN_BYTES,
        Some(n) if (256..=MAX_MAX_TOKEN_BYTES).contains(&n) => n,
        Some(_) => {
            return Err(err(
                "max_token_bytes",
                format!("must be between 256 and {MAX_MAX_TOKEN_BYTES}"),
            ));
        }
    };
    let jwt_cache_size = jwt_cache_size(&raw)?;
    let client_certificate = match raw.client_certificate {
        None => CertificateSource::default(),
        Some(c) => validate_certificate_source("client_certificate", c)?,
    };
    let mut providers = Vec::new();
    let mut by_issuer = HashMap::new();
    let mut names = HashMap::new();
    for (name, rp) in raw.providers {
        let at = format!("providers.{name}");
        if name.is_empty() {
            return Err(err("providers", "provider names must not be empty"));
        }
        let p = validate_provider(&at, name.clone(), rp, env)?;
        if let Some(other) = by_issuer.insert(p.issuer.clone(), providers.len()) {
            let other = providers
                .get(other)
                .map_or("?", |o: &Provider| o.name.as_str());
            return Err(err(
                format!("{at}.issuer"),
                format!("issuer is also used by provider \"{other}\""),
            ));
        }
        names.insert(name, providers.len());
        providers.push(p);
    }
    let mut rules = Vec::new();
    for (i, rr) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        rules.push(validate_rule(&format!("rules[{i}]"), rr, &names)?);
    }
    let mut output_headers: Vec<String> = providers
        .iter()
        .flat_map(|p| p.output_headers().map(str::to_string))
        .collect();
    if !client_certificate.forward_header
        && let Some(h) = client_certificate.source.header()
    {
        output_headers.push(h.to_string());
    }
    output_headers.sort();
    output_headers.dedup();
    // Rules are chosen before anything is stripped: a rule keyed on a header
    // certbound writes (or strips) would let a client choose it by sending
    // that header.
    for (i, rule) in rules.iter().enumerate() {
        for (j, h) in rule.matcher.headers.iter().enumerate() {
            if output_headers.binary_search(&h.name).is_ok() {
                return Err(err(
                    format!("rules[{i}].match.headers[{j}].name"),
                    format!(
                        "\"{}\" is a header certbound writes or strips: a client could send it to choose this rule",
                        h.name
                    ),
                ));
            }
        }
    }
    let introspects = providers.iter().any(|p| p.introspection.is_some());
    let stats_root = match raw.stat_prefix {
        None => "certbound".to_string(),
        Some(p) => format!("certbound.{}", stat_prefix(&p)?),
    };
    Ok(Policy {
        providers,
        rules,
        max_token_bytes,
        jwt_cache_size,
        client_certificate,
        introspects,
        by_issuer,
        output_headers,
        bypass_cors_preflight: raw.bypass_cors_preflight.unwrap_or(false),
        stats_root,
    })
}

/// The per-VM token cache's size: top-level `jwt_cache_size`, or the sum
/// of the providers' jwt_authn-style `jwt_cache_config.jwt_cache_size`
/// (100 each when not given, as in jwt_authn), or the default.
fn jwt_cache_size(raw: &RawConfig) -> Result<usize, ConfigError> {
    let too_big = |field: String| err(field, format!("must be at most {MAX_JWT_CACHE_SIZE}"));
    let per_provider: Vec<(&String, usize)> = raw
        .providers
        .iter()
        .filter_map(|(name, p)| {
            let c = p.jwt_cache_config.as_ref()?;
            Some((name, c.jwt_cache_size.unwrap_or(100)))
        })
        .collect();
    match (raw.jwt_cache_size, per_provider.as_slice()) {
        (Some(n), []) if n <= MAX_JWT_CACHE_SIZE => Ok(n),
        (Some(_), []) => Err(too_big("jwt_cache_size".into())),
        (Some(_), [(name, _), ..]) => Err(err(
            format!("providers.{name}.jwt_cache_config"),
            "give jwt_cache_size at the top level or jwt_cache_config in providers, not both",
        )),
        (None, []) => Ok(DEFAULT_JWT_CACHE_SIZE),
        (None, sizes) => {
            let mut total = 0usize;
            for (name, n) in sizes {
                total = total.saturating_add(*n);
                if total > MAX_JWT_CACHE_SIZE {
                    return Err(too_big(format!(
                        "providers.{name}.jwt_cache_config.jwt_cache_size"
                    )));
                }
            }
            Ok(total)
        }
    }
}

/// jwt_authn's `stat_prefix`: one or more dot-separated segments of
/// `[A-Za-z0-9_-]`, so two filters (say a gateway's and a sidecar's
/// listeners) keep their counts apart.
fn stat_prefix(p: &str) -> Result<&str, ConfigError> {
    let segment_ok = |seg: &str| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if p.len() <= 64 && p.split('.').all(segment_ok) {
        Ok(p)
    } else {
        Err(err(
            "stat_prefix",
            "must be dot-separated segments of letters, digits, _ and - (at most 64 bytes)",
        ))
    }
}

fn validate_provider(
    at: &str,
    name: String,
    rp: RawProvider,
    env: &dyn Environment,
) -> Result<Provider, ConfigError> {
    if rp.issuer.is_empty() {
        return Err(err(format!("{at}.issuer"), "must not be empty"));
    }
    let audiences = rp.audiences.unwrap_or_default();
    for (i, a) in audiences.iter().enumerate() {
        if a.is_empty() {
            return Err(err(format!("{at}.audiences[{i}]"), "must not be empty"));
        }
    }
    let introspection = rp
        .introspection
        .map(|i| validate_introspection(&format!("{at}.introspection"), i, env))
        .transpose()?;
    let token_format = match rp.token_format.as_deref() {
        None | Some("jwt") => TokenFormat::Jwt,
        Some("opaque") => TokenFormat::Opaque,
        Some(other) => {
            return Err(err(
                format!("{at}.token_format"),
                format!("unknown value \"{other}\": expected \"jwt\" or \"opaque\""),
            ));
        }
    };
    if token_format == TokenFormat::Opaque && introspection.is_none() {
        return Err(err(
            format!("{at}.introspection"),
            "required with token_format \"opaque\"",
        ));
    }
    let jwks = match (rp.local_jwks, rp.remote_jwks) {
        (Some(local), None) => {
            let (keys, skipped) = validate_jwks(&format!("{at}.local_jwks"), local, env)?;
            JwksSource::Local {
                keys: Arc::new(keys),
                skipped,
            }
        }
        (None, Some(remote)) => {
            JwksSource::Remote(validate_remote(&format!("{at}.remote_jwks"), remote)?)
        }
        (None, None) if introspection.is_some() => JwksSource::None,
        _ => {
            return Err(err(
                at,
                "exactly one of local_jwks or remote_jwks is required (or introspection alone)",
            ));
        }
    };

    let mut sources = Vec::new();
    let headers_given = rp.from_headers.is_some();
    for (i, h) in rp.from_headers.unwrap_or_default().into_iter().enumerate() {
        let name = header_name(&format!("{at}.from_headers[{i}].name"), &h.name)?;
        sources.push(TokenSource::Header {
            name,
            prefix: h.value_prefix.unwrap_or_default(),
        });
    }
    for (i, p) in rp.from_params.unwrap_or_default().into_iter().enumerate() {
        if p.is_empty() {
            return Err(err(format!("{at}.from_params[{i}]"), "must not be empty"));
        }
        sources.push(TokenSource::Param(p));
    }
    for (i, c) in rp.from_cookies.unwrap_or_default().into_iter().enumerate() {
        if c.is_empty() || c.contains([';', '=', ' ']) {
            return Err(err(
                format!("{at}.from_cookies[{i}]"),
                "must be a cookie name",
            ));
        }
        sources.push(TokenSource::Cookie(c));
    }
    if sources.is_empty() {
        if headers_given {
            return Err(err(
                format!("{at}.from_headers"),
                "no token location: give from_headers, from_params or from_cookies",
            ));
        }
        // `Authorization: Bearer <token>` (RFC 6750 §2.1). jwt_authn also
        // reads the `access_token` query parameter by default; certbound
        // does not: a URL is logged and cached along the way (RFC 6750
        // §2.3, §5.3), and FAPI 2.0 forbids it. `from_params` opts in.
        sources.push(TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        });
    }

    let clock_skew = match rp.clock_skew_seconds {
        None => DEFAULT_CLOCK_SKEW,
        Some(s) if s < 0 => {
            return Err(err(
                format!("{at}.clock_skew_seconds"),
                "must not be negative",
            ));
        }
        Some(s) if s as u64 > MAX_CLOCK_SKEW => {
            return Err(err(
                format!("{at}.clock_skew_seconds"),
                format!("must be at most {MAX_CLOCK_SKEW}"),
            ));
        }
        Some(s) => s as u64,
    };
    let binding = match rp.certificate_binding.as_deref() {
        None | Some("required") => BindingMode::Required,
        Some("when_present") => BindingMode::WhenPresent,
        Some(other) => {
            return Err(err(
                format!("{at}.certificate_binding"),
                format!("unknown value \"{other}\": expected \"required\" or \"when_present\""),
            ));
        }
    };
    let mut claim_to_headers = Vec::new();
    for (i, c) in rp
        .claim_to_headers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let field = format!("{at}.claim_to_headers[{i}]");
        if c.claim_name.is_empty() || c.claim_name.split('.').any(str::is_empty) {
            return Err(err(format!("{field}.claim_name"), "must be a claim path"));
        }
        let header = header_name(&format!("{field}.header_name"), &c.header_name)?;
        claim_to_headers.push(ClaimToHeader {
            claim: c.claim_name.split('.').map(str::to_string).collect(),
            name: c.claim_name,
            header,
        });
    }
    let forward_payload_header = rp
        .forward_payload_header
        .map(|h| header_name(&format!("{at}.forward_payload_header"), &h))
        .transpose()?;
    if rp.pad_forward_payload_header == Some(true) && forward_payload_header.is_none() {
        return Err(err(
            format!("{at}.pad_forward_payload_header"),
            "needs forward_payload_header",
        ));
    }
    let thumbprint_header = rp
        .thumbprint_header
        .map(|h| header_name(&format!("{at}.thumbprint_header"), &h))
        .transpose()?;
    for s in &sources {
        if let TokenSource::Header { name, .. } = s {
            let clash = claim_to_headers.iter().any(|c| &c.header == name)
                || forward_payload_header.as_ref() == Some(name)
                || thumbprint_header.as_ref() == Some(name);
            if clash {
                return Err(err(
                    format!("{at}.from_headers"),
                    format!("header \"{name}\" is both a token source and an output header"),
                ));
            }
        }
    }
    let max_lifetime = match (rp.max_lifetime_seconds, rp.max_lifetime) {
        (Some(_), Some(_)) => {
            return Err(err(
                format!("{at}.max_lifetime"),
                "give max_lifetime or max_lifetime_seconds, not both",
            ));
        }
        (None, Some(d)) => {
            // Whole seconds up (a token's times are whole seconds).
            let field = format!("{at}.max_lifetime");
            let ms = duration_ms(&field, Some(&d), 0, (1, 100 * 365 * 86_400_000))?;
            Some(ms.div_ceil(1000) as i64)
        }
        (s, None) => s,
    };
    let max_lifetime = match max_lifetime {
        None => None,
        Some(s) if s <= 0 => {
            return Err(err(
                format!("{at}.max_lifetime_seconds"),
                "must be positive",
            ));
        }
        Some(s) => Some(s as u64),
    };
    if rp.clear_route_cache == Some(false) {
        return Err(err(
            format!("{at}.clear_route_cache"),
            "cannot be false: Envoy picks the route again whenever a wasm filter changes request headers",
        ));
    }
    let subjects = rp
        .subjects
        .map(|m| route::string_matcher(&format!("{at}.subjects"), m))
        .transpose()?;
    let mut token_types = Vec::new();
    for (i, t) in rp.token_types.unwrap_or_default().into_iter().enumerate() {
        let t = normalize_media_type(&t);
        if t.is_empty() {
            return Err(err(format!("{at}.token_types[{i}]"), "must not be empty"));
        }
        token_types.push(t);
    }
    let algorithms = match rp.algorithms {
        None => Alg::ALL.to_vec(),
        Some(list) => {
            if list.is_empty() {
                return Err(err(format!("{at}.algorithms"), "must not be empty"));
            }
            let mut algs = Vec::new();
            for (i, a) in list.iter().enumerate() {
                let alg = Alg::from_name(a).ok_or_else(|| {
                    err(
                        format!("{at}.algorithms[{i}]"),
                        format!("unknown or unsupported algorithm \"{a}\""),
                    )
                })?;
                algs.push(alg);
            }
            algs
        }
    };
    let client_certificate = rp
        .client_certificate
        .map(|c| validate_certificate_source(&format!("{at}.client_certificate"), c))
        .transpose()?;
    Ok(Provider {
        introspection,
        token_format,
        client_certificate,
        name,
        issuer: rp.issuer,
        audiences,
        jwks,
        sources,
        clock_skew,
        binding,
        forward: rp.forward.unwrap_or(false),
        claim_to_headers,
        forward_payload_header,
        pad_forward_payload_header: rp.pad_forward_payload_header.unwrap_or(false),
        thumbprint_header,
        require_expiration: rp.require_expiration.unwrap_or(true),
        max_lifetime,
        subjects,
        token_types,
        algorithms,
    })
}

fn validate_jwks(
    at: &str,
    src: RawDataSource,
    env: &dyn Environment,
) -> Result<(KeySet, Vec<SkippedKey>), ConfigError> {
    let text = match (src.inline_string, src.environment_variable) {
        (Some(s), None) => s,
        (None, Some(var)) => env.var(&var).ok_or_else(|| {
            err(
                format!("{at}.environment_variable"),
                format!("environment variable \"{var}\" is not set in the VM"),
            )
        })?,
        _ => {
            return Err(err(
                at,
                "exactly one of inline_string or environment_variable is required",
            ));
        }
    };
    KeySet::parse(&text).map_err(|e| err(at, e.to_string()))
}

fn validate_certificate_source(
    at: &str,
    c: RawCertificateSource,
) -> Result<CertificateSource, ConfigError> {
    let source = match c.source.as_str() {
        "connection" => Source::Connection,
        "xfcc" => Source::Xfcc,
        "header" => {
            let name = c
                .name
                .as_deref()
                .ok_or_else(|| err(format!("{at}.name"), "required with source \"header\""))?;
            let name = header_name(&format!("{at}.name"), name)?;
            let encoding = c
                .encoding
                .as_deref()
                .ok_or_else(|| err(format!("{at}.encoding"), "required with source \"header\""))?;
            let encoding = Encoding::from_name(encoding).ok_or_else(|| {
                err(
                    format!("{at}.encoding"),
                    format!(
                        "unknown encoding \"{encoding}\": expected url_encoded_pem, pem, base64_der, rfc9440 or sha256"
                    ),
                )
            })?;
            Source::Header { name, encoding }
        }
        other => {
            return Err(err(
                format!("{at}.source"),
                format!("unknown source \"{other}\": expected connection, xfcc or header"),
            ));
        }
    };
    if !matches!(source, Source::Header { .. }) {
        if c.name.is_some() {
            return Err(err(format!("{at}.name"), "only with source \"header\""));
        }
        if c.encoding.is_some() {
            return Err(err(format!("{at}.encoding"), "only with source \"header\""));
        }
    }
    let mut trusted_proxies = Vec::new();
    for (i, cidr) in c.trusted_proxies.unwrap_or_default().iter().enumerate() {
        trusted_proxies.push(Cidr::parse(cidr).ok_or_else(|| {
            err(
                format!("{at}.trusted_proxies[{i}]"),
                format!("\"{cidr}\" is not an IP prefix like 10.0.0.0/8"),
            )
        })?);
    }
    let trusted_peer_uri_sans = c.trusted_peer_uri_sans.unwrap_or_default();
    for (i, san) in trusted_peer_uri_sans.iter().enumerate() {
        if san.is_empty() {
            return Err(err(
                format!("{at}.trusted_peer_uri_sans[{i}]"),
                "must not be empty",
            ));
        }
    }
    let forwarded = source != Source::Connection;
    if forwarded && trusted_proxies.is_empty() && trusted_peer_uri_sans.is_empty() {
        return Err(err(
            at,
            "a forwarded certificate needs trusted_proxies or trusted_peer_uri_sans: \
             believing it from anyone would make the binding worthless",
        ));
    }
    if !forwarded
        && (!trusted_proxies.is_empty()
            || !trusted_peer_uri_sans.is_empty()
            || c.forward_certificate_header.is_some())
    {
        return Err(err(
            at,
            "trusted_proxies, trusted_peer_uri_sans and forward_certificate_header apply to forwarded sources only",
        ));
    }
    Ok(CertificateSource {
        source,
        trusted_proxies,
        trusted_peer_uri_sans,
        forward_header: c.forward_certificate_header.unwrap_or(false),
    })
}

/// A validated `http_uri`: (scheme, authority, path, timeout in ms).
fn validate_http_uri(
    at: &str,
    h: &RawHttpUri,
) -> Result<(String, String, String, u64), ConfigError> {
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
        (1, 60_000),
    )?;
    Ok((
        scheme.to_string(),
        authority.to_string(),
        path.to_string(),
        timeout_ms,
    ))
}

fn validate_remote(at: &str, r: RawRemoteJwks) -> Result<RemoteJwks, ConfigError> {
    let (scheme, authority, path, timeout_ms) =
        validate_http_uri(&format!("{at}.http_uri"), &r.http_uri)?;
    let cache_duration_ms = duration_ms(
        &format!("{at}.cache_duration"),
        r.cache_duration.as_deref(),
        DEFAULT_CACHE_DURATION_MS,
        (1_000, 7 * 24 * 3_600_000),
    )?;
    let min_refetch_interval_ms = duration_ms(
        &format!("{at}.min_refetch_interval"),
        r.min_refetch_interval.as_deref(),
        DEFAULT_MIN_REFETCH_INTERVAL_MS,
        (0, 24 * 3_600_000),
    )?;
    Ok(RemoteJwks {
        uri: r.http_uri.uri.clone(),
        cluster: r.http_uri.cluster,
        scheme,
        authority,
        path,
        timeout_ms,
        cache_duration_ms,
        min_refetch_interval_ms,
    })
}

fn validate_introspection(
    at: &str,
    r: RawIntrospection,
    env: &dyn Environment,
) -> Result<Introspection, ConfigError> {
    let (scheme, authority, path, timeout_ms) =
        validate_http_uri(&format!("{at}.http_uri"), &r.http_uri)?;
    if r.client_id.is_empty() {
        return Err(err(format!("{at}.client_id"), "must not be empty"));
    }
    let secret_at = format!("{at}.client_secret");
    let client_secret = match r.client_secret {
        RawSecret::Inline(s) => s,
        RawSecret::Source(src) => match (src.inline_string, src.environment_variable) {
            (Some(s), None) => s,
            (None, Some(var)) => env.var(&var).ok_or_else(|| {
                err(
                    format!("{secret_at}.environment_variable"),
                    format!("environment variable \"{var}\" is not set in the VM"),
                )
            })?,
            _ => {
                return Err(err(
                    &secret_at,
                    "exactly one of inline_string or environment_variable is required",
                ));
            }
        },
    };
    if client_secret.is_empty() {
        return Err(err(secret_at, "must not be empty"));
    }
    let cache_ms = duration_ms(
        &format!("{at}.cache_duration"),
        r.cache_duration.as_deref(),
        60_000,
        (0, 24 * 3_600_000),
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

/// A protobuf JSON `Duration`: decimal seconds with an `s` suffix ("2s", "0.5s").
fn duration_ms(
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

fn validate_rule(
    at: &str,
    rr: RawRule,
    names: &HashMap<String, usize>,
) -> Result<Rule, ConfigError> {
    let matcher = route::validate(at, rr.matcher)?;
    let requires = rr
        .requires
        .map(|r| validate_requirement(&format!("{at}.requires"), r, names, 0))
        .transpose()?;
    let mut required_scopes = Vec::new();
    for (i, s) in rr
        .required_scopes
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !ok {
            return Err(err(
                format!("{at}.required_scopes[{i}]"),
                "must be a scope token (RFC 6749 §3.3)",
            ));
        }
        required_scopes.push(s);
    }
    if !required_scopes.is_empty() && requires.is_none() {
        return Err(err(
            format!("{at}.required_scopes"),
            "a public route (no requires) cannot require scopes",
        ));
    }
    Ok(Rule {
        matcher,
        requires,
        required_scopes,
    })
}

const MAX_REQUIREMENT_DEPTH: usize = 8;

fn validate_requirement(
    at: &str,
    r: RawRequirement,
    names: &HashMap<String, usize>,
    depth: usize,
) -> Result<Requirement, ConfigError> {
    if depth > MAX_REQUIREMENT_DEPTH {
        return Err(err(at, "requirements nested too deeply"));
    }
    let given = [
        r.provider_name.is_some(),
        r.provider_and_audiences.is_some(),
        r.requires_any.is_some(),
        r.requires_all.is_some(),
        r.allow_missing.is_some(),
        r.allow_missing_or_failed.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err(err(
            at,
            "exactly one of provider_name, provider_and_audiences, requires_any, requires_all, allow_missing, allow_missing_or_failed is required",
        ));
    }
    // A provider named in a requirement, by its index.
    let provider = |at: &str, name: &str| {
        names.get(name).copied().ok_or_else(|| {
            err(
                format!("{at}.provider_name"),
                format!("unknown provider \"{name}\""),
            )
        })
    };
    if let Some(name) = r.provider_name {
        return provider(at, &name).map(Requirement::Provider);
    }
    if let Some(pa) = r.provider_and_audiences {
        let at = format!("{at}.provider_and_audiences");
        let index = provider(&at, &pa.provider_name)?;
        if pa.audiences.is_empty() {
            return Err(err(
                format!("{at}.audiences"),
                "must not be empty (use provider_name for the provider's own audiences)",
            ));
        }
        if let Some(i) = pa.audiences.iter().position(String::is_empty) {
            return Err(err(format!("{at}.audiences[{i}]"), "must not be empty"));
        }
        return Ok(Requirement::ProviderAudiences(index, pa.audiences));
    }
    if r.allow_missing.is_some() {
        return Ok(Requirement::AllowMissing);
    }
    if r.allow_missing_or_failed.is_some() {
        return Ok(Requirement::AllowMissingOrFailed);
    }
    let (kind, list) = match (r.requires_any, r.requires_all) {
        (Some(l), None) => ("requires_any", l),
        (None, Some(l)) => ("requires_all", l),
        _ => return Err(err(at, "internal: requirement kind")),
    };
    let list = match list {
        RawRequirementList::Wrapped(w) => w.requirements,
        RawRequirementList::Bare(v) => v,
    };
    if list.is_empty() {
        return Err(err(format!("{at}.{kind}"), "must not be empty"));
    }
    let mut out = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        out.push(validate_requirement(
            &format!("{at}.{kind}[{i}]"),
            item,
            names,
            depth + 1,
        )?);
    }
    Ok(if kind == "requires_any" {
        Requirement::Any(out)
    } else {
        Requirement::All(out)
    })
}
