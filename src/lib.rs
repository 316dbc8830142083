//! certbound: an Envoy HTTP filter that enforces sender-constrained OAuth 2.0
//! access tokens: certificate-bound tokens (RFC 8705).
//!
//! The core is plain Rust and knows no proxy: `policy` (configuration),
//! `jose` (JWS, JWK and the signature verifiers), `binding` (thumbprints
//! and certificate sources) and `decide` (the request decision) take their
//! inputs, `now` included, and return typed results. `host` states what the
//! core asks of a proxy and drives the decision through it; `wasm` adapts
//! it to proxy-wasm.
//!
//! The items below are the surface that tests, benchmarks, fuzzers and
//! hosts use.

mod binding;
mod decide;
#[cfg(not(target_arch = "wasm32"))]
mod envoy_native;
mod error;
mod headers;
mod host;
mod jose;
mod policy;
mod wasm;

pub use error::{AuthError, Denial, Schemes};
pub use headers::{RequestHeaders, encode_abi};

pub use policy::route::{HeaderMatcher, HeaderTest, StringMatch, StringMatcher};
/// Configuration: parsed, validated, and matched against requests.
pub use policy::{
    BindingMode, ConfigError, Environment, JwksSource, MAX_CLOCK_SKEW, MAX_JWT_CACHE_SIZE,
    MAX_MAX_TOKEN_BYTES, Policy, Provider, ProviderId, Requirement, RuleMatch, TokenSource, parse,
};

/// The request decision and what it consults.
pub use decide::cache::{SharedTokenCache, TokenCache, verify_cached};
pub use decide::claims::Audiences;
pub use decide::introspect::{
    Introspected, IntrospectionCache, looks_like_jwt, parse_response as parse_introspection,
};
pub use decide::keys::KeyRing;
pub use decide::token::{Rejection, VerifiedToken};
pub use decide::verify::verify;
pub use decide::{
    Allowed, ClientCertificate, Decision, HeaderOp, MAX_HEADER_VALUE_BYTES, Request, Verifier,
    decide,
};

/// JOSE: key sets and the signature verifiers (`crypto`, whole, for the
/// differential tests and fuzzers that check them).
pub use jose::crypto;
pub use jose::crypto::ecdsa::{Es256Key, Es384Key};
pub use jose::crypto::eddsa::Ed25519Key;
pub use jose::crypto::rsa::{Hash, RsaKey};
pub use jose::json::parse_object;
pub use jose::jwk::{Alg, JwksError, KeySet, MAX_KEYS, SkippedKey};

/// DPoP (RFC 9449): proofs, server nonces and the replay store.
pub use binding::dpop::{
    DpopConfig, DpopError, ErrorCode, Nonce, NonceConfig, ProofInput, ReplayKey, ReplayStore,
    TokenJkt, VerifiedProof, public_jwk, verify_proof,
};

/// Sender binding: certificate thumbprints and where certificates come from.
pub use binding::forwarded::{
    CertificateSource, Cidr, Encoding, Source, der_of_pem, from_header as thumbprint_from_header,
    from_xfcc as thumbprint_from_xfcc, hash_any, parse_socket_ip,
};
pub use binding::{
    Confirmation, MAX_CERT_BYTES, Thumbprint, ThumbprintCache, peer_certificate_der,
    percent_decode, thumbprint_of_pem,
};

#[cfg(not(target_arch = "wasm32"))]
pub use host::fake::{FakeHost, HttpCall, LocalResponse};
/// Hosts: what the core asks of a proxy, and the proxy-wasm filter.
pub use host::{Host, MetricKind, Step, Vm};
pub use wasm::filter::CertboundRoot;
