//! Filter configuration: JSON in Envoy `jwt_authn` vocabulary, parsed with
//! unknown fields denied, then validated into the typed [`Policy`] that the
//! request path uses. Every error names the field path it is about.
//!
//! - `raw`: the configuration as written (serde structs);
//! - `types`: the validated policy, its defaults and bounds;
//! - `validate`: the whole configuration, and checks across providers and
//!   rules; `provider`, `endpoints` (JWKS, introspection, `http_uri`),
//!   `certificate` (`client_certificate`) and `requirement` (`rules`)
//!   validate their parts;
//! - [`route`]: a rule's `match`;
//! - `error`: [`ConfigError`].

mod certificate;
mod endpoints;
mod error;
mod provider;
mod raw;
mod requirement;
pub mod route;
mod types;
mod validate;

pub use error::ConfigError;
pub use types::{
    BindingMode, ClaimToHeader, DEFAULT_CACHE_DURATION_MS, DEFAULT_CLOCK_SKEW,
    DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_JWT_CACHE_SIZE, DEFAULT_MAX_TOKEN_BYTES,
    DEFAULT_MIN_REFETCH_INTERVAL_MS, Environment, Introspection, JwksSource, MAX_CLOCK_SKEW,
    MAX_CONFIG_BYTES, MAX_JWT_CACHE_SIZE, MAX_MAX_TOKEN_BYTES, Policy, Provider, RemoteJwks,
    Requirement, Rule, RuleMatch, TokenFormat, TokenSource, normalize_media_type,
};

use error::err;
use raw::RawConfig;

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
    validate::policy(raw, env)
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg).to_string(),
        None => msg.to_string(),
    }
}
