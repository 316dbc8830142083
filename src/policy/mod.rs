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
//! - `id`: [`ProviderId`], how everything else names a provider;
//! - `error`: [`ConfigError`].

mod certificate;
mod dpop;
mod endpoints;
mod error;
mod id;
mod metadata;
mod provider;
mod raw;
mod requirement;
pub mod route;
mod types;
mod validate;

pub use error::ConfigError;
pub use id::ProviderId;
pub use types::{
    BindingMode, Dpop, Environment, Introspection, JwksSource, MAX_CLOCK_SKEW, MAX_CONFIG_BYTES,
    MAX_JWT_CACHE_SIZE, MAX_MAX_TOKEN_BYTES, Policy, Provider, RemoteJwks, Requirement, RuleMatch,
    TokenFormat, TokenSource, normalize_media_type,
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
    // No configuration at all (none given, or an empty string) is said as
    // such, not as a JSON syntax error.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(err(
            "",
            "the configuration is empty; it needs at least `providers`",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::forwarded::{Encoding, Source};
    use crate::jose::jwk::Alg;
    use serde_json::{Value, json};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// A configuration with one provider `idp`, `extra` merged into it.
    fn config(extra: Value) -> Value {
        let mut p = json!({
            "issuer": "https://idp.example.com",
            "remote_jwks": {"http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}},
            "introspection": {
                "http_uri": {"uri": "https://idp.example.com/introspect", "cluster": "idp"},
                "client_id": "rs",
                "client_secret": "s"
            }
        });
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        json!({"providers": {"idp": p}})
    }

    fn parse_json(cfg: &Value) -> Result<Policy, ConfigError> {
        parse(cfg.to_string().as_bytes(), &no_env)
    }

    fn provider(extra: Value) -> Provider {
        let p = parse_json(&config(extra)).unwrap();
        p.providers.into_iter().next().unwrap()
    }

    fn refused(cfg: Value) -> ConfigError {
        parse_json(&cfg).unwrap_err()
    }

    #[test]
    fn an_empty_configuration_is_refused_as_empty() {
        for bytes in [&b""[..], b" \n\t"] {
            let e = parse(bytes, &no_env).unwrap_err();
            assert_eq!(e.field, "");
            assert_eq!(
                e.to_string(),
                "invalid configuration: the configuration is empty; it needs at least `providers`"
            );
        }
        // `{}` is JSON: the missing field is named.
        assert!(
            parse(b"{}", &no_env)
                .unwrap_err()
                .to_string()
                .contains("providers")
        );
    }

    #[test]
    fn enums_take_their_names() {
        assert_eq!(provider(json!({})).token_format, TokenFormat::Jwt);
        assert_eq!(
            provider(json!({"token_format": "jwt"})).token_format,
            TokenFormat::Jwt
        );
        assert_eq!(
            provider(json!({"token_format": "opaque"})).token_format,
            TokenFormat::Opaque
        );
        assert_eq!(provider(json!({})).binding, BindingMode::Required);
        assert_eq!(
            provider(json!({"certificate_binding": "required"})).binding,
            BindingMode::Required
        );
        assert_eq!(
            provider(json!({"certificate_binding": "when_present"})).binding,
            BindingMode::WhenPresent
        );
        assert_eq!(provider(json!({})).algorithms, Alg::ALL.to_vec());
        let names: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(
            provider(json!({"algorithms": names})).algorithms,
            Alg::ALL.to_vec()
        );
    }

    #[test]
    fn certificate_sources_take_their_names() {
        let source = |c: Value| {
            let p = provider(json!({"client_certificate": c}));
            p.client_certificate.map(|c| c.source)
        };
        assert_eq!(
            source(json!({"source": "connection"})),
            Some(Source::Connection)
        );
        assert_eq!(
            source(json!({"source": "xfcc", "trusted_proxies": ["10.0.0.0/8"]})),
            Some(Source::Xfcc)
        );
        for (name, encoding) in [
            ("url_encoded_pem", Encoding::UrlEncodedPem),
            ("pem", Encoding::Pem),
            ("base64_der", Encoding::Base64Der),
            ("rfc9440", Encoding::Rfc9440),
            ("sha256", Encoding::Sha256),
        ] {
            let c = json!({"source": "header", "name": "X-Cert", "encoding": name,
                           "trusted_proxies": ["10.0.0.0/8"]});
            assert_eq!(
                source(c),
                Some(Source::Header {
                    name: "x-cert".into(),
                    encoding
                })
            );
        }
    }

    #[test]
    fn unknown_names_are_refused_at_their_field() {
        let cert = |c: Value| json!({"client_certificate": c});
        for (extra, field, needle) in [
            (
                json!({"token_format": "JWT"}),
                "providers.idp.token_format",
                "unknown variant `JWT`, expected `jwt` or `opaque`",
            ),
            (
                json!({"certificate_binding": "sometimes"}),
                "providers.idp.certificate_binding",
                "unknown variant `sometimes`, expected `required` or `when_present`",
            ),
            (
                json!({"algorithms": ["ES256", "es256"]}),
                "providers.idp.algorithms[1]",
                "unknown variant `es256`, expected one of `RS256`",
            ),
            (
                json!({"algorithms": ["HS256"]}),
                "providers.idp.algorithms[0]",
                "unknown variant `HS256`",
            ),
            (
                cert(json!({"source": "tls"})),
                "providers.idp.client_certificate.source",
                "unknown variant `tls`, expected one of `connection`, `xfcc`, `header`",
            ),
            (
                cert(json!({"source": "header", "name": "x", "encoding": "der"})),
                "providers.idp.client_certificate.encoding",
                "unknown variant `der`, expected one of `url_encoded_pem`, `pem`, `base64_der`, `rfc9440`, `sha256`",
            ),
            // Only a string names a value: not serde's `{"name": null}`.
            (
                json!({"token_format": {"jwt": null}}),
                "providers.idp.token_format",
                "invalid type: map, expected a string",
            ),
            (
                json!({"certificate_binding": 1}),
                "providers.idp.certificate_binding",
                "invalid type: integer `1`, expected a string",
            ),
            (
                json!({"algorithms": []}),
                "providers.idp.algorithms",
                "must not be empty",
            ),
        ] {
            let e = refused(config(extra));
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.contains(needle), "{e} (wanted {needle})");
        }
    }

    #[test]
    fn header_source_needs_name_and_encoding_and_only_it() {
        let cert = |c: Value| config(json!({"client_certificate": c}));
        for (c, field, message) in [
            (
                json!({"source": "header", "encoding": "pem", "trusted_proxies": ["10.0.0.0/8"]}),
                "providers.idp.client_certificate.name",
                "required with source \"header\"",
            ),
            (
                json!({"source": "header", "name": "x", "trusted_proxies": ["10.0.0.0/8"]}),
                "providers.idp.client_certificate.encoding",
                "required with source \"header\"",
            ),
            (
                json!({"source": "xfcc", "encoding": "pem", "trusted_proxies": ["10.0.0.0/8"]}),
                "providers.idp.client_certificate.encoding",
                "only with source \"header\"",
            ),
            (
                json!({"source": "connection", "name": "x"}),
                "providers.idp.client_certificate.name",
                "only with source \"header\"",
            ),
        ] {
            let e = refused(cert(c));
            assert_eq!((e.field.as_str(), e.message.as_str()), (field, message));
        }
    }
}
