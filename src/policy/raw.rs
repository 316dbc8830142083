//! The configuration as written: serde structs in `jwt_authn` vocabulary,
//! unknown fields denied, validated into the typed policy elsewhere.

use serde::de::IntoDeserializer;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

use crate::binding::forwarded::Encoding;
use crate::jose::jwk::Alg;
use crate::policy::route::{RawMatch, RawStringMatcher};
use crate::policy::types::{BindingMode, TokenFormat};

/// One of the names of the enum `T`, written as a JSON string. (serde's
/// derived enums would also take `{"name": null}`.) An unknown name is
/// refused with the names `T` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Named<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Named<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        T::deserialize(IntoDeserializer::<D::Error>::into_deserializer(name)).map(Named)
    }
}

/// `client_certificate.source`: where the certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawSource {
    Connection,
    Xfcc,
    Header,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub(crate) rules: Option<Vec<RawRule>>,
    #[serde(default)]
    pub(crate) max_token_bytes: Option<usize>,
    #[serde(default)]
    pub(crate) jwt_cache_size: Option<usize>,
    #[serde(default)]
    pub(crate) client_certificate: Option<RawCertificateSource>,
    #[serde(default)]
    pub(crate) bypass_cors_preflight: Option<bool>,
    #[serde(default)]
    pub(crate) stat_prefix: Option<String>,
    #[serde(default)]
    pub(crate) resource_metadata: Option<RawResourceMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificateSource {
    pub(crate) source: Named<RawSource>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) encoding: Option<Named<Encoding>>,
    #[serde(default)]
    pub(crate) trusted_proxies: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) trusted_peer_uri_sans: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) forward_certificate_header: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub(crate) issuer: String,
    #[serde(default)]
    pub(crate) audiences: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) local_jwks: Option<RawDataSource>,
    #[serde(default)]
    pub(crate) remote_jwks: Option<RawRemoteJwks>,
    #[serde(default)]
    pub(crate) from_headers: Option<Vec<RawHeader>>,
    #[serde(default)]
    pub(crate) from_params: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) from_cookies: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) clock_skew_seconds: Option<i64>,
    #[serde(default)]
    pub(crate) certificate_binding: Option<Named<BindingMode>>,
    #[serde(default)]
    pub(crate) forward: Option<bool>,
    #[serde(default)]
    pub(crate) claim_to_headers: Option<Vec<RawClaimToHeader>>,
    #[serde(default)]
    pub(crate) forward_payload_header: Option<String>,
    #[serde(default)]
    pub(crate) pad_forward_payload_header: Option<bool>,
    #[serde(default)]
    pub(crate) thumbprint_header: Option<String>,
    #[serde(default)]
    pub(crate) require_expiration: Option<bool>,
    #[serde(default)]
    pub(crate) max_lifetime_seconds: Option<i64>,
    /// jwt_authn's spelling: a Duration such as `"3600s"`.
    #[serde(default)]
    pub(crate) max_lifetime: Option<String>,
    #[serde(default)]
    pub(crate) subjects: Option<RawStringMatcher>,
    /// jwt_authn's: Envoy already picks the route after a wasm filter
    /// changes request headers, so only `true` can be honoured.
    #[serde(default)]
    pub(crate) clear_route_cache: Option<bool>,
    /// jwt_authn's per-provider cache; here its sizes add up to the one
    /// per-VM cache (`jwt_cache_size`).
    #[serde(default)]
    pub(crate) jwt_cache_config: Option<RawJwtCacheConfig>,
    #[serde(default)]
    pub(crate) token_types: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) algorithms: Option<Vec<Named<Alg>>>,
    #[serde(default)]
    pub(crate) client_certificate: Option<RawCertificateSource>,
    #[serde(default)]
    pub(crate) introspection: Option<RawIntrospection>,
    #[serde(default)]
    pub(crate) token_format: Option<Named<TokenFormat>>,
    #[serde(default)]
    pub(crate) dpop: Option<RawDpop>,
    #[serde(default)]
    pub(crate) require_key_alg: Option<bool>,
}

/// A provider's `dpop` block (RFC 9449).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDpop {
    #[serde(default)]
    pub(crate) required: Option<bool>,
    #[serde(default)]
    pub(crate) max_age: Option<String>,
    #[serde(default)]
    pub(crate) algorithms: Option<Vec<Named<Alg>>>,
    #[serde(default)]
    pub(crate) nonce: Option<RawDpopNonce>,
    #[serde(default)]
    pub(crate) origin: Option<String>,
}

/// Server nonces: the secret that makes them (and the one before it, during
/// a rotation), and how long a nonce is accepted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDpopNonce {
    pub(crate) secret: RawSecret,
    #[serde(default)]
    pub(crate) previous_secret: Option<RawSecret>,
    #[serde(default)]
    pub(crate) lifetime: Option<String>,
}

impl core::fmt::Debug for RawDpopNonce {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RawDpopNonce { .. }")
    }
}

/// The top-level `resource_metadata` block (RFC 9728).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResourceMetadata {
    pub(crate) resource: String,
    #[serde(default)]
    pub(crate) authorization_servers: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) scopes_supported: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) resource_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIntrospection {
    pub(crate) http_uri: RawHttpUri,
    pub(crate) client_id: String,
    pub(crate) client_secret: RawSecret,
    #[serde(default)]
    pub(crate) cache_duration: Option<String>,
}

impl core::fmt::Debug for RawIntrospection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RawIntrospection { .. }")
    }
}

/// A secret: a plain string, or a data source (`environment_variable`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSecret {
    Inline(String),
    Source(RawDataSource),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDataSource {
    #[serde(default)]
    pub(crate) inline_string: Option<String>,
    #[serde(default)]
    pub(crate) environment_variable: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRemoteJwks {
    pub(crate) http_uri: RawHttpUri,
    #[serde(default)]
    pub(crate) cache_duration: Option<String>,
    #[serde(default)]
    pub(crate) min_refetch_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpUri {
    pub(crate) uri: String,
    pub(crate) cluster: String,
    #[serde(default)]
    pub(crate) timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeader {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) value_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClaimToHeader {
    pub(crate) claim_name: String,
    pub(crate) header_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwtCacheConfig {
    /// jwt_authn's default when the block is there: 100.
    #[serde(default)]
    pub(crate) jwt_cache_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    #[serde(rename = "match")]
    pub(crate) matcher: RawMatch,
    #[serde(default)]
    pub(crate) requires: Option<RawRequirement>,
    #[serde(default)]
    pub(crate) required_scopes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequirement {
    #[serde(default)]
    pub(crate) provider_name: Option<String>,
    #[serde(default)]
    pub(crate) provider_and_audiences: Option<RawProviderAndAudiences>,
    #[serde(default)]
    pub(crate) requires_any: Option<RawRequirementList>,
    #[serde(default)]
    pub(crate) requires_all: Option<RawRequirementList>,
    #[serde(default)]
    pub(crate) allow_missing: Option<Empty>,
    #[serde(default)]
    pub(crate) allow_missing_or_failed: Option<Empty>,
}

/// `{"requirements": [...]}` as in jwt_authn, or a bare list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawRequirementList {
    Wrapped(RawRequirementsWrapper),
    Bare(Vec<RawRequirement>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProviderAndAudiences {
    pub(crate) provider_name: String,
    pub(crate) audiences: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRequirementsWrapper {
    pub(crate) requirements: Vec<RawRequirement>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}
