//! The validated policy: what the request path reads, with the bounds and
//! defaults of the configuration it comes from.

use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

use crate::binding::dpop::DpopConfig;
use crate::binding::forwarded::CertificateSource;
use crate::headers::RequestHeaders;
use crate::jose::jwk::{Alg, KeySet, SkippedKey};
use crate::policy::id::ProviderId;
use crate::policy::route::{RouteMatch, StringMatcher};

/// Upper bound on the configuration document, in bytes.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;
/// Default and bounds of `clock_skew_seconds`.
pub const DEFAULT_CLOCK_SKEW: u64 = 60;
pub const MAX_CLOCK_SKEW: u64 = 600;
/// Default and bounds of `max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
pub const MAX_MAX_TOKEN_BYTES: usize = 64 * 1024;

/// How a provider treats the `cnf` claim (RFC 8705 §3); written
/// `required` or `when_present`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingMode {
    /// Every token must carry `cnf.x5t#S256` matching the client certificate.
    Required,
    /// A token without `cnf` is a plain bearer token; one with `cnf` must match.
    WhenPresent,
}

/// Where a provider looks for its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A request header (lowercase name) and the prefix before the token.
    Header { name: String, prefix: String },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

impl TokenSource {
    /// `Authorization: DPoP <token>` (RFC 9449 §7.1).
    pub fn dpop_authorization() -> TokenSource {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: "DPoP ".into(),
        }
    }

    /// Whether a token found here was sent with the DPoP scheme.
    pub fn is_dpop_scheme(&self) -> bool {
        matches!(self, TokenSource::Header { name, prefix }
            if name == "authorization" && prefix.eq_ignore_ascii_case("dpop "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    /// `claim_name` as written. A top-level claim of exactly this name is
    /// taken first, so namespaced claims (`https://example.com/roles`) work.
    pub name: String,
    /// The claim path, split at dots: `a.b` is `{"a": {"b": …}}`.
    pub claim: Vec<String>,
    pub header: String,
}

/// Where a provider's signing keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// `local_jwks`: fixed at configure time.
    Local {
        keys: Arc<KeySet>,
        skipped: Vec<SkippedKey>,
    },
    /// `remote_jwks`: fetched by the filter with `dispatch_http_call`.
    Remote(RemoteJwks),
    /// No keys: an introspection-only provider.
    None,
}

/// An RFC 7662 introspection endpoint, for opaque tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct Introspection {
    pub uri: String,
    pub cluster: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub client_id: String,
    /// Never logged: [`Introspection`]'s `Debug` redacts it.
    pub client_secret: String,
    pub cache_duration_s: i64,
}

impl core::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Introspection")
            .field("uri", &self.uri)
            .field("cluster", &self.cluster)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("cache_duration_s", &self.cache_duration_s)
            .finish()
    }
}

/// How a provider's tokens are checked; written `jwt` or `opaque`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormat {
    /// Signed JWTs, verified locally; non-JWT tokens go to introspection
    /// when the provider has it.
    Jwt,
    /// Every token is introspected.
    Opaque,
}

/// A `remote_jwks` source (jwt_authn's `RemoteJwks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub uri: String,
    pub cluster: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub cache_duration_ms: u64,
    pub min_refetch_interval_ms: u64,
}

pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_CACHE_DURATION_MS: u64 = 600_000;
pub const DEFAULT_MIN_REFETCH_INTERVAL_MS: u64 = 30_000;
pub const DEFAULT_JWT_CACHE_SIZE: usize = 1000;
pub const MAX_JWT_CACHE_SIZE: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    pub sources: Vec<TokenSource>,
    pub clock_skew: u64,
    pub binding: BindingMode,
    pub forward: bool,
    pub claim_to_headers: Vec<ClaimToHeader>,
    pub forward_payload_header: Option<String>,
    /// Pad the forwarded payload to a multiple of 4 with `=` (jwt_authn's
    /// `pad_forward_payload_header`, for base64 decoders that need it).
    pub pad_forward_payload_header: bool,
    pub thumbprint_header: Option<String>,
    pub require_expiration: bool,
    pub max_lifetime: Option<u64>,
    /// jwt_authn's `subjects`: the `sub` claim must match.
    pub subjects: Option<StringMatcher>,
    /// Lowercase media types without the `application/` prefix.
    pub token_types: Vec<String>,
    pub algorithms: Vec<Alg>,
    /// Overrides the top-level `client_certificate` for this provider.
    pub client_certificate: Option<CertificateSource>,
    pub introspection: Option<Introspection>,
    pub token_format: TokenFormat,
    /// Only keys whose JWK names its `alg` verify tokens (RFC 8725 §3.1:
    /// one algorithm per key).
    pub require_key_alg: bool,
    /// DPoP (RFC 9449): accepted, or required, when configured.
    pub dpop: Option<Dpop>,
}

impl Provider {
    /// Header names this provider writes upstream; stripped from every request.
    pub fn output_headers(&self) -> impl Iterator<Item = &str> {
        self.claim_to_headers
            .iter()
            .map(|c| c.header.as_str())
            .chain(self.forward_payload_header.as_deref())
            .chain(self.thumbprint_header.as_deref())
            .chain(
                self.client_certificate
                    .as_ref()
                    .filter(|c| !c.forward_header)
                    .and_then(|c| c.source.header()),
            )
    }
}

/// What a route requires, in jwt_authn terms. Providers are indices into
/// [`Policy::providers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Provider(ProviderId),
    /// jwt_authn's `provider_and_audiences`: that provider, with these
    /// audiences in place of its own.
    ProviderAudiences(ProviderId, Vec<String>),
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
    AllowMissing,
    AllowMissingOrFailed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub matcher: RouteMatch,
    /// `None`: the route is public.
    pub requires: Option<Requirement>,
    pub required_scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    pub max_token_bytes: usize,
    /// Entries of the per-VM verified-token cache; 0 disables it.
    pub jwt_cache_size: usize,
    /// Where client certificates come from, unless a provider overrides it.
    pub client_certificate: CertificateSource,
    pub(crate) by_issuer: HashMap<String, ProviderId>,
    /// Every header name any provider writes upstream, lowercase.
    pub output_headers: Vec<String>,
    /// Whether any provider introspects tokens: if none does, no token is
    /// inspected for its shape to route it there.
    pub introspects: bool,
    /// Let CORS preflight requests through unchecked (jwt_authn's
    /// `bypass_cors_preflight`; off by default).
    pub bypass_cors_preflight: bool,
    /// Where this filter's stats live: `certbound.` or
    /// `certbound.<stat_prefix>.` (jwt_authn's `stat_prefix`).
    pub stats_root: String,
    /// RFC 9728 protected-resource metadata, served by certbound itself.
    pub resource_metadata: Option<ResourceMetadata>,
}

impl Policy {
    /// The provider `id` names. Infallible: ids come from this policy.
    #[allow(clippy::indexing_slicing)] // ids are made only for this policy's providers
    pub fn provider(&self, id: ProviderId) -> &Provider {
        &self.providers[id.index()]
    }

    /// The id of the provider named `name` in the configuration.
    pub fn provider_id(&self, name: &str) -> Option<ProviderId> {
        self.each_provider()
            .find(|(_, p)| p.name == name)
            .map(|(id, _)| id)
    }

    /// Every provider, with its id, in configuration order.
    pub fn each_provider(&self) -> impl Iterator<Item = (ProviderId, &Provider)> {
        self.providers
            .iter()
            .enumerate()
            .map(|(i, p)| (ProviderId::new(i), p))
    }

    /// The certificate source that applies to tokens of `provider`.
    pub fn certificate_source(&self, provider: ProviderId) -> &CertificateSource {
        self.provider(provider)
            .client_certificate
            .as_ref()
            .unwrap_or(&self.client_certificate)
    }

    pub fn provider_by_issuer(&self, iss: &str) -> Option<ProviderId> {
        self.by_issuer.get(iss).copied()
    }

    /// The first rule that matches the request (its `:path` and headers);
    /// `NoMatch` when rules exist and none matches (the request is not
    /// checked), as in jwt_authn.
    pub fn rule_for(&self, path: &str, headers: &RequestHeaders) -> RuleMatch<'_> {
        if self.rules.is_empty() {
            return RuleMatch::Default;
        }
        match self.rules.iter().find(|r| r.matcher.matches(path, headers)) {
            Some(rule) => RuleMatch::Rule(rule),
            None => RuleMatch::NoMatch,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum RuleMatch<'a> {
    /// No rules configured: a valid token from any provider is required.
    Default,
    Rule(&'a Rule),
    /// Rules are configured and none matches: the request is not checked.
    NoMatch,
}

/// Where the validator reads values that live outside the JSON (the VM's
/// environment variables). Kept as a trait so validation stays pure.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Environment for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// RFC 9068 §4 / RFC 8725 §3.11: `typ` compares case-insensitively, and the
/// `application/` prefix may be left out (RFC 7515 §4.1.9).
pub fn normalize_media_type(t: &str) -> String {
    let lower = t.trim().to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

/// A provider's DPoP settings: how proofs are checked, and the origin they
/// name in `htu` when it is pinned.
#[derive(Debug, Clone)]
pub struct Dpop {
    pub config: DpopConfig,
    /// `scheme://authority` clients reach the API at; `None`: the request's
    /// own `:scheme` and `:authority`.
    pub origin: Option<String>,
}

/// RFC 9728 metadata: where it is served, the URL challenges name, and the
/// JSON document itself (made once, at configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceMetadata {
    pub path: String,
    pub url: String,
    pub document: String,
}
