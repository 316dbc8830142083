//! certbound: an Envoy HTTP filter that enforces sender-constrained OAuth 2.0
//! access tokens: certificate-bound tokens (RFC 8705).
//!
//! The core is plain Rust and knows no proxy: [`policy`] (configuration),
//! [`jose`] (JWS, JWK and the signature verifiers), [`binding`] (thumbprints
//! and certificate sources) and [`decide`] (the request decision) take their
//! inputs, `now` included, and return typed results. [`host`] states what the
//! core asks of a proxy and drives it; `wasm` adapts it to proxy-wasm.

pub mod binding;
pub mod decide;
pub mod error;
pub mod headers;
pub mod host;
pub mod jose;
pub mod policy;
pub mod wasm;
