//! DPoP (RFC 9449): proof-of-possession of a key, per request, for access
//! tokens bound to that key's thumbprint (`cnf.jkt`).

pub mod challenge;
pub mod error;
pub mod htu;
pub mod jwk;
pub mod nonce;
pub mod replay;

pub use challenge::{challenge, challenge_for};
pub use error::{DpopError, ErrorCode};
pub use jwk::{PublicJwk, TokenJkt, public_jwk};
pub use nonce::Nonce;
pub use replay::{ReplayKey, ReplayStore};
