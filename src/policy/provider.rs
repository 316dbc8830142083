//! One entry of `providers` (jwt_authn's `JwtProvider`): who issues the
//! tokens, where the keys come from, where the token is read, how it is
//! bound to the client certificate, and what is written upstream.

use std::sync::Arc;

use crate::jose::jwk::Alg;
use crate::policy::certificate::certificate_source;
use crate::policy::dpop;
use crate::policy::endpoints::{self, duration_ms};
use crate::policy::error::{ConfigError, err, header_name};
use crate::policy::raw::{
    Named, RawClaimToHeader, RawDataSource, RawHeader, RawProvider, RawRemoteJwks,
};
use crate::policy::route;
use crate::policy::types::{
    BindingMode, ClaimToHeader, DEFAULT_CLOCK_SKEW, Environment, JwksSource, MAX_CLOCK_SKEW,
    Provider, TokenFormat, TokenSource, normalize_media_type,
};

/// Upper bound on `max_lifetime`, in ms: a hundred years.
const MAX_LIFETIME_MS: u64 = 100 * 365 * 86_400_000;

/// The headers a provider writes upstream, validated.
struct Outputs {
    claim_to_headers: Vec<ClaimToHeader>,
    forward_payload_header: Option<String>,
    thumbprint_header: Option<String>,
}

pub(crate) fn provider(
    at: &str,
    name: String,
    rp: RawProvider,
    env: &dyn Environment,
) -> Result<Provider, ConfigError> {
    if rp.issuer.is_empty() {
        return Err(err(format!("{at}.issuer"), "must not be empty"));
    }
    let audiences = rp.audiences.unwrap_or_default();
    if let Some(i) = audiences.iter().position(String::is_empty) {
        return Err(err(format!("{at}.audiences[{i}]"), "must not be empty"));
    }
    let introspection = rp
        .introspection
        .map(|i| endpoints::introspection(&format!("{at}.introspection"), i, env))
        .transpose()?;
    let token_format = rp.token_format.map_or(TokenFormat::Jwt, |Named(f)| f);
    if token_format == TokenFormat::Opaque && introspection.is_none() {
        return Err(err(
            format!("{at}.introspection"),
            "required with token_format \"opaque\"",
        ));
    }
    let introspects = introspection.is_some();
    let jwks = jwks_source(at, rp.local_jwks, rp.remote_jwks, introspects, env)?;
    let clock_skew = clock_skew(at, rp.clock_skew_seconds)?;
    let dpop = rp
        .dpop
        .map(|d| dpop::dpop(&format!("{at}.dpop"), d, clock_skew, env))
        .transpose()?;
    let mut sources = token_sources(at, rp.from_headers, rp.from_params, rp.from_cookies)?;
    if dpop.is_some() {
        // RFC 9449 §7.1: `Authorization: DPoP <token>`.
        let dpop_scheme = TokenSource::dpop_authorization();
        if !sources.contains(&dpop_scheme) {
            sources.push(dpop_scheme);
        }
    }
    let binding = rp
        .certificate_binding
        .map_or(BindingMode::Required, |Named(b)| b);
    let outputs = outputs(
        at,
        rp.claim_to_headers.unwrap_or_default(),
        rp.forward_payload_header,
        rp.pad_forward_payload_header,
        rp.thumbprint_header,
    )?;
    no_output_as_source(at, &sources, &outputs)?;
    let max_lifetime = max_lifetime(at, rp.max_lifetime_seconds, rp.max_lifetime)?;
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
    let token_types = token_types(at, rp.token_types.unwrap_or_default())?;
    let algorithms = algorithms(at, rp.algorithms)?;
    let client_certificate = rp
        .client_certificate
        .map(|c| certificate_source(&format!("{at}.client_certificate"), c))
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
        claim_to_headers: outputs.claim_to_headers,
        forward_payload_header: outputs.forward_payload_header,
        pad_forward_payload_header: rp.pad_forward_payload_header.unwrap_or(false),
        thumbprint_header: outputs.thumbprint_header,
        require_expiration: rp.require_expiration.unwrap_or(true),
        max_lifetime,
        subjects,
        token_types,
        algorithms,
        dpop,
        require_key_alg: rp.require_key_alg.unwrap_or(false),
    })
}

/// Exactly one of `local_jwks` or `remote_jwks`, or neither for a provider
/// that only introspects.
fn jwks_source(
    at: &str,
    local: Option<RawDataSource>,
    remote: Option<RawRemoteJwks>,
    introspects: bool,
    env: &dyn Environment,
) -> Result<JwksSource, ConfigError> {
    match (local, remote) {
        (Some(local), None) => {
            let (keys, skipped) = endpoints::local_jwks(&format!("{at}.local_jwks"), local, env)?;
            Ok(JwksSource::Local {
                keys: Arc::new(keys),
                skipped,
            })
        }
        (None, Some(remote)) => Ok(JwksSource::Remote(endpoints::remote_jwks(
            &format!("{at}.remote_jwks"),
            remote,
        )?)),
        (None, None) if introspects => Ok(JwksSource::None),
        _ => Err(err(
            at,
            "exactly one of local_jwks or remote_jwks is required (or introspection alone)",
        )),
    }
}

/// `from_headers`, `from_params` and `from_cookies`, in that order;
/// `Authorization: Bearer` when none is given.
fn token_sources(
    at: &str,
    headers: Option<Vec<RawHeader>>,
    params: Option<Vec<String>>,
    cookies: Option<Vec<String>>,
) -> Result<Vec<TokenSource>, ConfigError> {
    let mut sources = Vec::new();
    let headers_given = headers.is_some();
    for (i, h) in headers.unwrap_or_default().into_iter().enumerate() {
        let name = header_name(&format!("{at}.from_headers[{i}].name"), &h.name)?;
        sources.push(TokenSource::Header {
            name,
            prefix: h.value_prefix.unwrap_or_default(),
        });
    }
    for (i, p) in params.unwrap_or_default().into_iter().enumerate() {
        if p.is_empty() {
            return Err(err(format!("{at}.from_params[{i}]"), "must not be empty"));
        }
        sources.push(TokenSource::Param(p));
    }
    for (i, c) in cookies.unwrap_or_default().into_iter().enumerate() {
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
    Ok(sources)
}

fn clock_skew(at: &str, seconds: Option<i64>) -> Result<u64, ConfigError> {
    match seconds {
        None => Ok(DEFAULT_CLOCK_SKEW),
        Some(s) if s < 0 => Err(err(
            format!("{at}.clock_skew_seconds"),
            "must not be negative",
        )),
        Some(s) if s as u64 > MAX_CLOCK_SKEW => Err(err(
            format!("{at}.clock_skew_seconds"),
            format!("must be at most {MAX_CLOCK_SKEW}"),
        )),
        Some(s) => Ok(s as u64),
    }
}

/// `claim_to_headers`, `forward_payload_header` (and its padding) and
/// `thumbprint_header`.
fn outputs(
    at: &str,
    claims: Vec<RawClaimToHeader>,
    forward_payload_header: Option<String>,
    pad_forward_payload_header: Option<bool>,
    thumbprint_header: Option<String>,
) -> Result<Outputs, ConfigError> {
    let mut claim_to_headers = Vec::new();
    for (i, c) in claims.into_iter().enumerate() {
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
    let forward_payload_header = forward_payload_header
        .map(|h| header_name(&format!("{at}.forward_payload_header"), &h))
        .transpose()?;
    if pad_forward_payload_header == Some(true) && forward_payload_header.is_none() {
        return Err(err(
            format!("{at}.pad_forward_payload_header"),
            "needs forward_payload_header",
        ));
    }
    let thumbprint_header = thumbprint_header
        .map(|h| header_name(&format!("{at}.thumbprint_header"), &h))
        .transpose()?;
    Ok(Outputs {
        claim_to_headers,
        forward_payload_header,
        thumbprint_header,
    })
}

/// A header the provider writes cannot also be where it reads the token.
fn no_output_as_source(
    at: &str,
    sources: &[TokenSource],
    outputs: &Outputs,
) -> Result<(), ConfigError> {
    for s in sources {
        if let TokenSource::Header { name, .. } = s {
            let clash = outputs.claim_to_headers.iter().any(|c| &c.header == name)
                || outputs.forward_payload_header.as_ref() == Some(name)
                || outputs.thumbprint_header.as_ref() == Some(name);
            if clash {
                return Err(err(
                    format!("{at}.from_headers"),
                    format!("header \"{name}\" is both a token source and an output header"),
                ));
            }
        }
    }
    Ok(())
}

/// `max_lifetime_seconds`, or jwt_authn's `max_lifetime` (a `Duration`),
/// in whole seconds.
fn max_lifetime(
    at: &str,
    seconds: Option<i64>,
    duration: Option<String>,
) -> Result<Option<u64>, ConfigError> {
    let seconds = match (seconds, duration) {
        (Some(_), Some(_)) => {
            return Err(err(
                format!("{at}.max_lifetime"),
                "give max_lifetime or max_lifetime_seconds, not both",
            ));
        }
        (None, Some(d)) => {
            // Whole seconds up (a token's times are whole seconds).
            let field = format!("{at}.max_lifetime");
            let ms = duration_ms(&field, Some(&d), 0, (1, MAX_LIFETIME_MS))?;
            Some(ms.div_ceil(1000) as i64)
        }
        (s, None) => s,
    };
    match seconds {
        None => Ok(None),
        Some(s) if s <= 0 => Err(err(
            format!("{at}.max_lifetime_seconds"),
            "must be positive",
        )),
        Some(s) => Ok(Some(s as u64)),
    }
}

/// `token_types`: media types, normalized as `typ` is.
fn token_types(at: &str, types: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for (i, t) in types.into_iter().enumerate() {
        let t = normalize_media_type(&t);
        if t.is_empty() {
            return Err(err(format!("{at}.token_types[{i}]"), "must not be empty"));
        }
        out.push(t);
    }
    Ok(out)
}

/// `algorithms`: every supported one when not given.
fn algorithms(at: &str, list: Option<Vec<Named<Alg>>>) -> Result<Vec<Alg>, ConfigError> {
    match list {
        None => Ok(Alg::ALL.to_vec()),
        Some(list) if list.is_empty() => Err(err(format!("{at}.algorithms"), "must not be empty")),
        Some(list) => Ok(list.into_iter().map(|Named(a)| a).collect()),
    }
}
