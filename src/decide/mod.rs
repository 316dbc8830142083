//! The request decision: which rule applies, where the token is, whether it
//! verifies and is bound to the client certificate (RFC 8705 §3), whether
//! it grants the route's scopes, and what goes upstream.
//!
//! Pure: the request facts, the client certificate and `now` come in; a
//! [`Decision`] comes out. A host applies it.

pub mod binding;
pub mod cache;
pub mod claims;
pub mod extract;
pub mod introspect;
pub mod keys;
pub mod request;
pub mod requirement;
pub mod token;
pub mod upstream;
pub mod verify;

pub use request::{ClientCertificate, HeaderOp, MAX_HEADER_VALUE_BYTES, Request, Verifier};

use crate::error::AuthError;
use crate::policy::{Policy, ProviderId, RuleMatch};
use binding::ProofUse;
use extract::{check_b64token, find_token};
use requirement::{Checker, Unmet, check_scopes, tolerates_failure};
use upstream::{strip_output_headers, upstream_ops};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The provider whose token was verified, if any.
    pub provider: Option<ProviderId>,
    /// A CORS preflight let through by `bypass_cors_preflight`.
    pub cors_preflight: bool,
    /// Applied in order.
    pub ops: Vec<HeaderOp>,
    /// The DPoP proof the token was accepted with: the host checks it was
    /// not seen before.
    pub dpop: Option<ProofUse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The token must be introspected (RFC 7662) before a decision: ask
    /// `provider`'s endpoint, cache the answer, and decide again.
    Introspect {
        provider: ProviderId,
        token: String,
    },
    Allow(Allowed),
    /// A request for the RFC 9728 protected-resource metadata: answered
    /// with the policy's document.
    Metadata,
    Deny {
        error: AuthError,
        /// The provider the token was routed to, when known.
        provider: Option<ProviderId>,
    },
}

/// Decides one request.
pub fn decide(
    policy: &Policy,
    verifier: Verifier<'_>,
    req: Request<'_>,
    cert: &mut dyn ClientCertificate,
    now: i64,
) -> Decision {
    if let Some(m) = &policy.resource_metadata
        && is_metadata_request(req, &m.path)
    {
        return Decision::Metadata;
    }
    if policy.bypass_cors_preflight && is_cors_preflight(req) {
        return Decision::Allow(Allowed {
            provider: None,
            cors_preflight: true,
            ops: strip_output_headers(policy),
            dpop: None,
        });
    }
    let (requirement, scopes) = match policy.rule_for(req.path, req.headers) {
        RuleMatch::NoMatch => return allow_unchecked(policy),
        RuleMatch::Rule(rule) => match &rule.requires {
            None => return allow_unchecked(policy),
            Some(r) => (Some(r), rule.required_scopes.as_slice()),
        },
        RuleMatch::Default => (None, &[][..]),
    };

    // RFC 6750 §2.1: the token is a b64token. One this VM verified and
    // filed passed that check before it was filed.
    let found = find_token(policy, req).and_then(|found| match found {
        Some(f) if !verifier.cache.contains(f.token) => check_b64token(f.token).map(|_| found),
        _ => Ok(found),
    });
    let found = match found {
        Ok(f) => f,
        // A route that tolerates a failed token tolerates one that cannot
        // even be read (two different tokens, characters outside
        // b64token), as jwt_authn's `allow_missing_or_failed` does.
        Err(_) if requirement.is_some_and(tolerates_failure) => return allow_unchecked(policy),
        Err(error) => {
            return Decision::Deny {
                error,
                provider: None,
            };
        }
    };

    let mut checker = Checker::new(policy, verifier, found.as_ref(), req, cert, now);
    let outcome = match requirement {
        None => checker.any_provider(),
        Some(r) => checker.evaluate(r),
    };
    let provider = checker.last.as_ref().and_then(|r| match r {
        Ok(provider) => Some(*provider),
        Err(failure) => failure.provider,
    });
    // Whatever the requirement made of it, an unanswered introspection
    // comes first: ask, then decide again with the answer.
    let pending = match (&checker.last, &outcome) {
        (Some(Err(f)), _) => match f.unmet {
            Unmet::IntrospectionPending(p) => Some(p),
            Unmet::Error(_) => None,
        },
        (_, Err(Unmet::IntrospectionPending(p))) => Some(*p),
        _ => None,
    };
    if let (Some(p), Some(f)) = (pending, &found) {
        return Decision::Introspect {
            provider: p,
            token: f.token.to_string(),
        };
    }
    let verified = match outcome {
        Ok(v) => v,
        Err(Unmet::Error(error)) => return Decision::Deny { error, provider },
        Err(Unmet::IntrospectionPending(_)) => {
            return Decision::Deny {
                error: AuthError::IntrospectionFailed,
                provider,
            };
        }
    };
    if !scopes.is_empty() {
        match &verified {
            Some(v) => {
                if let Err(error) = check_scopes(&v.token, scopes) {
                    return Decision::Deny { error, provider };
                }
            }
            None => {
                return Decision::Deny {
                    error: AuthError::MissingToken,
                    provider,
                };
            }
        }
    }
    let mut ops = strip_output_headers(policy);
    if let (Some(v), Some(f)) = (&verified, &found) {
        let p = policy.provider(v.token.provider);
        upstream_ops(policy, p, &v.token, v.bound.thumbprint, f, req, &mut ops);
    }
    let dpop = verified.as_ref().and_then(|v| v.bound.proof);
    Decision::Allow(Allowed {
        provider: verified.map(|v| v.token.provider),
        cors_preflight: false,
        ops,
        dpop,
    })
}

fn allow_unchecked(policy: &Policy) -> Decision {
    Decision::Allow(Allowed {
        provider: None,
        cors_preflight: false,
        ops: strip_output_headers(policy),
        dpop: None,
    })
}

/// RFC 9728 §3.1: a `GET` (or `HEAD`) of the metadata path, whatever the
/// query.
fn is_metadata_request(req: Request<'_>, path: &str) -> bool {
    let method = req.headers.values(":method").next().unwrap_or("");
    let request_path = req.path.split(['?', '#']).next().unwrap_or("");
    matches!(method, "GET" | "HEAD") && request_path == path
}

/// A CORS preflight (Fetch standard, "CORS-preflight request"): `OPTIONS`
/// with a non-empty `Origin` and `Access-Control-Request-Method`, the test
/// jwt_authn's `bypass_cors_preflight` uses. Browsers send it without
/// credentials, so it can carry no token.
fn is_cors_preflight(req: Request<'_>) -> bool {
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|(n, v)| n == name && !v.trim().is_empty())
    };
    req.headers
        .iter()
        .any(|(n, v)| n == ":method" && v == "OPTIONS")
        && has("origin")
        && has("access-control-request-method")
}
