//! The stats certbound keeps in Envoy's `/stats`, under `certbound.` (or
//! `certbound.<stat_prefix>.`): decisions, denial reasons, the token cache,
//! and per provider its decisions and key fetches.

use std::collections::HashMap;

use crate::decide::Decision;
use crate::error::AuthError;
use crate::host::{Host, MetricKind};
use crate::policy::{JwksSource, Policy, ProviderId};

#[derive(Debug, Default, Clone, Copy)]
pub struct ProviderMetrics {
    pub allowed: Option<u32>,
    pub denied: Option<u32>,
    pub fetch_success: Option<u32>,
    pub fetch_failed: Option<u32>,
    pub keys_loaded: Option<u32>,
}

/// The stats of `/stats`, defined once per VM at configure time.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    denied: Option<u32>,
    pub cache_hit: Option<u32>,
    pub cache_miss: Option<u32>,
    pub untrusted_header: Option<u32>,
    cors_preflight_bypassed: Option<u32>,
    /// Requests allowed with a DPoP proof (RFC 9449).
    pub dpop_accepted: Option<u32>,
    /// `DPoP-Nonce` headers sent (RFC 9449 §9).
    pub dpop_nonce_issued: Option<u32>,
    reasons: HashMap<&'static str, u32>,
    providers: Vec<ProviderMetrics>,
}

impl Metrics {
    pub fn define(host: &dyn Host, policy: &Policy) -> Metrics {
        let root = &policy.stats_root;
        let counter =
            |name: &str| host.define_metric(MetricKind::Counter, &format!("{root}.{name}"));
        let mut reasons = HashMap::new();
        // The DPoP reasons only where DPoP is configured.
        let dpop = policy.providers.iter().any(|p| p.dpop.is_some());
        let listed: Vec<&'static str> = if dpop {
            AuthError::reasons().collect()
        } else {
            AuthError::REASONS.to_vec()
        };
        for r in listed {
            if let Some(id) = counter(&format!("denied.{r}")) {
                reasons.insert(r, id);
            }
        }
        let providers = policy
            .providers
            .iter()
            .map(|p| {
                let n = metric_safe(&p.name);
                let remote = matches!(p.jwks, JwksSource::Remote(_));
                let per = |what: &str| counter(&format!("provider.{n}.{what}"));
                ProviderMetrics {
                    allowed: per("allowed"),
                    denied: per("denied"),
                    fetch_success: remote.then(|| per("jwks_fetch_success")).flatten(),
                    fetch_failed: remote.then(|| per("jwks_fetch_failed")).flatten(),
                    keys_loaded: host.define_metric(
                        MetricKind::Gauge,
                        &format!("{root}.provider.{n}.keys_loaded"),
                    ),
                }
            })
            .collect();
        Metrics {
            allowed: counter("allowed"),
            denied: counter("denied"),
            cache_hit: counter("cache_hit"),
            cache_miss: counter("cache_miss"),
            untrusted_header: counter("untrusted_certificate_header"),
            cors_preflight_bypassed: counter("cors_preflight_bypassed"),
            dpop_accepted: dpop.then(|| counter("dpop.accepted")).flatten(),
            dpop_nonce_issued: dpop.then(|| counter("dpop.nonce_issued")).flatten(),
            reasons,
            providers,
        }
    }

    pub fn bump(host: &dyn Host, id: Option<u32>, by: u64) {
        if let (Some(id), true) = (id, by > 0) {
            host.increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    pub fn provider(&self, p: Option<ProviderId>) -> ProviderMetrics {
        p.and_then(|p| self.providers.get(p.index()).copied())
            .unwrap_or_default()
    }

    pub fn record(&self, host: &dyn Host, decision: &Decision) {
        match decision {
            // As jwt_authn: a bypassed preflight counts as that alone.
            Decision::Allow(a) if a.cors_preflight => {
                Self::bump(host, self.cors_preflight_bypassed, 1);
            }
            Decision::Allow(a) => {
                Self::bump(host, self.allowed, 1);
                Self::bump(host, self.provider(a.provider).allowed, 1);
                if a.dpop.is_some() {
                    Self::bump(host, self.dpop_accepted, 1);
                }
            }
            Decision::Deny { error, provider } => {
                Self::bump(host, self.denied, 1);
                Self::bump(host, self.reasons.get(error.reason()).copied(), 1);
                Self::bump(host, self.provider(*provider).denied, 1);
            }
            Decision::Introspect { .. } | Decision::Metadata => {}
        }
    }
}

/// Stat names allow `[A-Za-z0-9_-]`; anything else becomes `_`.
fn metric_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
