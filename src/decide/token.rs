//! What verification yields: a token whose signature (or introspection)
//! and claims were checked, or why it was refused.

use serde_json::{Map, Value};

use crate::binding::Confirmation;
use crate::binding::dpop::TokenJkt;
use crate::error::AuthError;
use crate::policy::ProviderId;

/// A token whose signature and claims verified for one provider. The
/// certificate binding is checked separately, against the request's client
/// certificate (see [`crate::decide`]).
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub provider: ProviderId,
    pub claims: Map<String, Value>,
    /// The base64url payload segment, as sent.
    pub payload_b64: String,
    /// `exp`, `nbf` and `iat`, read when the token was verified.
    pub times: Times,
    /// The `cnf` claim's `x5t#S256`, read when the token was verified.
    pub confirmation: Confirmation,
    /// The `cnf` claim's `jkt` (RFC 9449 §6), read when it was verified.
    pub jkt: TokenJkt,
}

impl VerifiedToken {
    /// A token whose signature (or introspection) and claims were checked.
    pub fn new(
        provider: ProviderId,
        claims: Map<String, Value>,
        payload_b64: String,
        times: Times,
    ) -> VerifiedToken {
        VerifiedToken {
            provider,
            confirmation: Confirmation::of_claims(&claims),
            jkt: TokenJkt::of_claims(&claims),
            claims,
            payload_b64,
            times,
        }
    }

    /// `exp`, when present (Unix seconds).
    pub fn expires_at(&self) -> Option<i64> {
        self.times.exp
    }
}

/// Why a token was refused, and the provider it was routed to (by `iss`)
/// when it got that far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub error: AuthError,
    pub provider: Option<ProviderId>,
}

impl Rejection {
    /// Tags errors with the provider the token was routed to.
    pub fn routed(provider: ProviderId) -> impl Fn(AuthError) -> Rejection + Copy {
        move |error| Rejection {
            error,
            provider: Some(provider),
        }
    }
}

impl From<AuthError> for Rejection {
    fn from(error: AuthError) -> Rejection {
        Rejection {
            error,
            provider: None,
        }
    }
}

/// A token's registered time claims (RFC 7519 §4.1.4–4.1.6), Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}
