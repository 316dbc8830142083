//! JOSE: JSON Web Keys (RFC 7517), the compact JWS (RFC 7515) and the
//! signature verifiers.

pub mod alg;
pub mod crypto;
pub mod json;
pub mod jwk;
pub mod jws;
