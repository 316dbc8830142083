//! The whole configuration, validated: its providers, rules and top-level
//! settings, and the checks that span providers and rules.

use std::collections::HashMap;

use crate::binding::forwarded::CertificateSource;
use crate::policy::certificate::certificate_source;
use crate::policy::error::{ConfigError, err};
use crate::policy::id::ProviderId;
use crate::policy::metadata;
use crate::policy::provider::provider;
use crate::policy::raw::{RawConfig, RawProvider};
use crate::policy::requirement::rule;
use crate::policy::types::{
    DEFAULT_JWT_CACHE_SIZE, DEFAULT_MAX_TOKEN_BYTES, Environment, MAX_JWT_CACHE_SIZE,
    MAX_MAX_TOKEN_BYTES, Policy, Provider, Rule,
};

/// jwt_authn's default `jwt_cache_config.jwt_cache_size`.
const DEFAULT_PROVIDER_CACHE_SIZE: usize = 100;

/// Validated providers, with their indices by issuer and by name.
struct Providers {
    list: Vec<Provider>,
    by_issuer: HashMap<String, ProviderId>,
    by_name: HashMap<String, ProviderId>,
}

pub(crate) fn policy(raw: RawConfig, env: &dyn Environment) -> Result<Policy, ConfigError> {
    if raw.providers.is_empty() {
        return Err(err("providers", "at least one provider is required"));
    }
    let max_token_bytes = max_token_bytes(raw.max_token_bytes)?;
    let jwt_cache_size = jwt_cache_size(&raw)?;
    let client_certificate = match raw.client_certificate {
        None => CertificateSource::default(),
        Some(c) => certificate_source("client_certificate", c)?,
    };
    let providers = providers(raw.providers, env)?;
    let mut rules = Vec::new();
    for (i, rr) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        rules.push(rule(&format!("rules[{i}]"), rr, &providers.by_name)?);
    }
    let output_headers = output_headers(&providers.list, &client_certificate);
    no_rule_on_output_headers(&rules, &output_headers)?;
    let introspects = providers.list.iter().any(|p| p.introspection.is_some());
    let scopes: Vec<String> = {
        let mut s: Vec<String> = rules
            .iter()
            .flat_map(|r| r.required_scopes.iter().cloned())
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let resource_metadata = raw
        .resource_metadata
        .map(|m| metadata::resource_metadata(m, &providers.list, &scopes))
        .transpose()?;
    let stats_root = match raw.stat_prefix {
        None => "certbound".to_string(),
        Some(p) => format!("certbound.{}", stat_prefix(&p)?),
    };
    Ok(Policy {
        providers: providers.list,
        rules,
        max_token_bytes,
        jwt_cache_size,
        client_certificate,
        introspects,
        by_issuer: providers.by_issuer,
        output_headers,
        bypass_cors_preflight: raw.bypass_cors_preflight.unwrap_or(false),
        stats_root,
        resource_metadata,
    })
}

fn max_token_bytes(n: Option<usize>) -> Result<usize, ConfigError> {
    match n {
        None => Ok(DEFAULT_MAX_TOKEN_BYTES),
        Some(n) if (256..=MAX_MAX_TOKEN_BYTES).contains(&n) => Ok(n),
        Some(_) => Err(err(
            "max_token_bytes",
            format!("must be between 256 and {MAX_MAX_TOKEN_BYTES}"),
        )),
    }
}

/// Each provider, in name order; no two may share an issuer.
fn providers(
    raw: impl IntoIterator<Item = (String, RawProvider)>,
    env: &dyn Environment,
) -> Result<Providers, ConfigError> {
    let mut list: Vec<Provider> = Vec::new();
    let mut by_issuer = HashMap::new();
    let mut by_name = HashMap::new();
    for (name, rp) in raw {
        let at = format!("providers.{name}");
        if name.is_empty() {
            return Err(err("providers", "provider names must not be empty"));
        }
        let p = provider(&at, name.clone(), rp, env)?;
        if let Some(other) = by_issuer.insert(p.issuer.clone(), ProviderId::new(list.len())) {
            let other = list.get(other.index()).map_or("?", |o| o.name.as_str());
            return Err(err(
                format!("{at}.issuer"),
                format!("issuer is also used by provider \"{other}\""),
            ));
        }
        by_name.insert(name, ProviderId::new(list.len()));
        list.push(p);
    }
    Ok(Providers {
        list,
        by_issuer,
        by_name,
    })
}

/// Every header name any provider (or the top-level certificate source)
/// writes upstream or strips, sorted and without duplicates.
fn output_headers(providers: &[Provider], client_certificate: &CertificateSource) -> Vec<String> {
    let mut out: Vec<String> = providers
        .iter()
        .flat_map(|p| p.output_headers().map(str::to_string))
        .collect();
    if !client_certificate.forward_header
        && let Some(h) = client_certificate.source.header()
    {
        out.push(h.to_string());
    }
    out.sort();
    out.dedup();
    out
}

/// Rules are chosen before anything is stripped: a rule keyed on a header
/// certbound writes (or strips) would let a client choose it by sending
/// that header.
fn no_rule_on_output_headers(rules: &[Rule], output_headers: &[String]) -> Result<(), ConfigError> {
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
    Ok(())
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
            Some((
                name,
                c.jwt_cache_size.unwrap_or(DEFAULT_PROVIDER_CACHE_SIZE),
            ))
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
