//! The signature verifiers: ECDSA (P-256, P-384), RSA (PKCS #1 v1.5 and
//! PSS) and EdDSA (Ed25519).

pub mod ecdsa;
pub mod eddsa;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod rsa;
