//! certbound: an Envoy proxy-wasm filter that enforces OAuth 2.0
//! certificate-bound access tokens (RFC 8705).
//!
//! The core (`config`, `jwks`, `jwt`, `binding`, `decision`, `error`) is plain
//! Rust: it takes its inputs, `now` included, and returns typed results. All
//! proxy-wasm glue lives in [`filter`].

pub mod binding;
pub mod cache;
pub mod config;
pub mod decision;
pub mod ecdsa;
pub mod eddsa;
#[cfg(not(target_arch = "wasm32"))]
mod envoy_native;
pub mod error;
pub mod filter;
pub mod forwarded;
pub mod headers;
pub mod introspect;
pub mod json;
pub mod jwks;
pub mod jwt;
#[cfg(not(target_arch = "wasm32"))]
pub mod native_shim;
pub mod remote;
pub mod route;
pub mod rsa_pkcs1;
pub mod vm;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(filter::CertboundRoot::new(filter::ProxyHost))
    });
}}
