//! The sender constraint of a verified token: its `cnf` claim checked
//! against the request. `x5t#S256` must be the client certificate's
//! thumbprint (RFC 8705 §3); `jkt` must be the thumbprint of the key that
//! signed the request's DPoP proof (RFC 9449 §6-7).

use crate::binding::dpop::{self, DpopError, ProofInput, ReplayKey, TokenJkt};
use crate::binding::forwarded::CertificateSource;
use crate::binding::{Confirmation, Thumbprint};
use crate::decide::extract::Found;
use crate::decide::request::{ClientCertificate, Request};
use crate::decide::token::VerifiedToken;
use crate::error::AuthError;
use crate::policy::{BindingMode, Dpop, Provider};

/// How a token was bound to its sender.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    /// The client certificate's thumbprint, when the token names one.
    pub thumbprint: Option<Thumbprint>,
    /// The DPoP proof, when the token is DPoP-bound.
    pub proof: Option<ProofUse>,
}

/// A DPoP proof that passed every check but the replay check, which the
/// host makes against the proofs it has seen (RFC 9449 §11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofUse {
    pub replay_key: ReplayKey,
    pub iat: i64,
    /// The response should carry a fresh `DPoP-Nonce`.
    pub refresh_nonce: bool,
}

/// What the binding check reads of the request.
pub struct Sender<'a, 'r> {
    pub req: Request<'r>,
    pub found: &'a Found<'r>,
    pub source: &'a CertificateSource,
    pub cert: &'a mut dyn ClientCertificate,
    pub now: i64,
}

/// The token's binding, checked: by certificate, by DPoP, or both when the
/// token names both. Under `certificate_binding: required`, a token bound
/// by neither method is refused; with a `dpop` block that is `required`,
/// only DPoP-bound tokens are accepted.
pub fn check_binding(
    provider: &Provider,
    token: &VerifiedToken,
    sender: Sender<'_, '_>,
) -> Result<Bound, AuthError> {
    let dpop_scheme = sender.found.source.is_dpop_scheme();
    let jkt = match (&provider.dpop, token.jkt) {
        // Without a `dpop` block a `jkt` cannot be checked, whatever it
        // holds: a token bound only that way has no binding this provider
        // accepts, one with `x5t#S256` too is judged by that alone.
        (None, _) => None,
        (Some(_), TokenJkt::Malformed) => return Err(AuthError::MalformedBinding),
        (Some(_), TokenJkt::Jkt(j)) => Some(j),
        (Some(_), TokenJkt::Absent) => None,
    };
    let mut bound = Bound::default();
    match (&provider.dpop, jkt) {
        (Some(dpop), Some(jkt)) => {
            // RFC 9449 §7.2: a DPoP-bound token is refused as a bearer token.
            if !dpop_scheme {
                return Err(AuthError::Dpop(DpopError::BearerScheme));
            }
            bound.proof = Some(proof(dpop, jkt, &sender)?);
        }
        (Some(dpop), None) => {
            if dpop_scheme || dpop.config.required {
                return Err(AuthError::Dpop(DpopError::UnboundToken));
            }
        }
        (None, _) => {}
    }
    let x5t = match token.confirmation {
        Confirmation::X5tS256(t) => Some(t),
        Confirmation::Malformed => return Err(AuthError::MalformedBinding),
        Confirmation::Absent | Confirmation::OtherMethod => None,
    };
    match x5t {
        Some(expected) => bound.thumbprint = Some(certificate(expected, sender)?),
        None if bound.proof.is_some() => {}
        None => match (provider.binding, token.confirmation) {
            (BindingMode::WhenPresent, Confirmation::Absent) => {}
            // `required`, or a `cnf` whose only methods cannot be checked.
            _ => return Err(AuthError::MissingBinding),
        },
    }
    Ok(bound)
}

/// RFC 8705 §3: the client certificate's SHA-256 thumbprint is the
/// token's `cnf.x5t#S256`.
fn certificate(expected: Thumbprint, sender: Sender<'_, '_>) -> Result<Thumbprint, AuthError> {
    let presented = sender
        .cert
        .thumbprint(sender.source)
        .ok_or(AuthError::NoClientCertificate)?;
    if presented.ct_eq(&expected) {
        Ok(presented)
    } else {
        Err(AuthError::BindingMismatch)
    }
}

/// RFC 9449 §4.3: the request's DPoP proof, checked against the request,
/// the token (`ath`) and its `cnf.jkt`.
fn proof(dpop: &Dpop, jkt: Thumbprint, sender: &Sender<'_, '_>) -> Result<ProofUse, AuthError> {
    let headers = sender.req.headers;
    let proofs: Vec<&str> = headers.values("dpop").collect();
    let pseudo = |name: &str| headers.values(name).next().unwrap_or("");
    let origin = match &dpop.origin {
        Some(o) => o.clone(),
        None => format!("{}://{}", pseudo(":scheme"), pseudo(":authority")),
    };
    let verified = dpop::verify_proof(&ProofInput {
        proofs: &proofs,
        method: pseudo(":method"),
        origin: &origin,
        path: sender.req.path,
        access_token: Some(sender.found.token),
        token_jkt: Some(jkt),
        config: &dpop.config,
        now: sender.now,
    })
    .map_err(AuthError::Dpop)?;
    Ok(ProofUse {
        replay_key: verified.replay_key,
        iat: verified.iat,
        refresh_nonce: verified.refresh_nonce,
    })
}
