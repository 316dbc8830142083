//! Requirements (jwt_authn's `requires`): which providers' tokens a route
//! accepts, each token verified once and its binding checked (RFC 8705 §3).

use serde_json::Value;
use std::sync::Arc;

use crate::decide::binding::{Bound, Sender, check_binding};
use crate::decide::cache::{token_digest, verify_cached};
use crate::decide::claims::{Audiences, check_claims};
use crate::decide::extract::Found;
use crate::decide::introspect::{self, Introspected, IntrospectionCache};
use crate::decide::request::{ClientCertificate, Request, Verifier};
use crate::decide::token::{Rejection, VerifiedToken};
use crate::decide::verify;
use crate::error::AuthError;
use crate::jose::jws;
use crate::policy::{Policy, Provider, ProviderId, Requirement, TokenFormat};

/// Why a requirement is not met: an error to answer with, or a token that
/// must be introspected (RFC 7662) before anything can be said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    Error(AuthError),
    IntrospectionPending(ProviderId),
}

impl From<AuthError> for Unmet {
    fn from(e: AuthError) -> Unmet {
        Unmet::Error(e)
    }
}

/// A check of the token that failed, and the provider it was routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub unmet: Unmet,
    pub provider: Option<ProviderId>,
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Failure {
        Failure {
            unmet: Unmet::Error(r.error),
            provider: r.provider,
        }
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Failure {
        Rejection::from(e).into()
    }
}

/// Whether `r` is met whatever the token: `allow_missing_or_failed`, alone,
/// as one alternative of `requires_any`, or as every part of `requires_all`.
pub fn tolerates_failure(r: &Requirement) -> bool {
    match r {
        Requirement::AllowMissingOrFailed => true,
        Requirement::Any(list) => list.iter().any(tolerates_failure),
        Requirement::All(list) => list.iter().all(tolerates_failure),
        Requirement::Provider(_)
        | Requirement::ProviderAudiences(..)
        | Requirement::AllowMissing => false,
    }
}

/// A token that verified and, where it is bound, matched the certificate.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub token: Arc<VerifiedToken>,
    pub bound: Bound,
}

pub struct Checker<'p, 'r, 'c> {
    pub policy: &'p Policy,
    pub verifier: Verifier<'p>,
    pub found: Option<&'r Found<'r>>,
    pub req: Request<'r>,
    pub cert: &'c mut dyn ClientCertificate,
    pub now: i64,
    /// The token is verified at most once against its providers' own
    /// audiences; requirements share the result.
    result: Option<Result<Accepted, Failure>>,
    /// What the decision reports of the last verification made, with or
    /// without a rule's audiences: the token's provider, or the failure
    /// (its provider, a pending introspection).
    pub last: Option<Result<ProviderId, Failure>>,
}

impl<'p, 'r, 'c> Checker<'p, 'r, 'c> {
    pub fn new(
        policy: &'p Policy,
        verifier: Verifier<'p>,
        found: Option<&'r Found<'r>>,
        req: Request<'r>,
        cert: &'c mut dyn ClientCertificate,
        now: i64,
    ) -> Self {
        Checker {
            policy,
            verifier,
            found,
            req,
            cert,
            now,
            result: None,
            last: None,
        }
    }

    /// The token checked against its providers' own audiences: made once,
    /// shared by every requirement.
    fn check(&mut self) -> Option<Result<Accepted, Unmet>> {
        self.check_for(Audiences::OfProvider)
    }

    /// The token checked against `audiences`. The providers' own is made
    /// once and shared; a rule's own list is checked afresh each time (a
    /// cached token makes that cheap).
    fn check_for(&mut self, audiences: Audiences<'_>) -> Option<Result<Accepted, Unmet>> {
        let found = self.found?;
        let result = match (&self.result, audiences) {
            (Some(shared), Audiences::OfProvider) => shared.clone(),
            _ => {
                let made = self.check_token(found, audiences);
                if let Audiences::OfProvider = audiences {
                    self.result = Some(made.clone());
                }
                made
            }
        };
        self.last = Some(match &result {
            Ok(accepted) => Ok(accepted.token.provider),
            Err(rejection) => Err(rejection.clone()),
        });
        Some(result.map_err(|failure| failure.unmet))
    }

    /// No rules: a valid token from any provider.
    pub fn any_provider(&mut self) -> Result<Option<Accepted>, Unmet> {
        match self.check() {
            None => Err(AuthError::MissingToken.into()),
            Some(r) => r.map(Some),
        }
    }

    pub fn evaluate(&mut self, req: &Requirement) -> Result<Option<Accepted>, Unmet> {
        match req {
            Requirement::Provider(i) => self.provider(*i, None),
            Requirement::ProviderAudiences(i, audiences) => self.provider(*i, Some(audiences)),
            Requirement::Any(list) => {
                let mut best: Option<Unmet> = None;
                for r in list {
                    match self.evaluate(r) {
                        Ok(v) => return Ok(v),
                        Err(e) => {
                            // Report a problem with the token over its absence.
                            if best.is_none() || best == Some(Unmet::Error(AuthError::MissingToken))
                            {
                                best = Some(e);
                            }
                        }
                    }
                }
                Err(best.unwrap_or(Unmet::Error(AuthError::MissingToken)))
            }
            Requirement::All(list) => {
                let mut last = None;
                for r in list {
                    last = self.evaluate(r)?;
                }
                Ok(last)
            }
            Requirement::AllowMissing => match self.check() {
                None => Ok(None),
                Some(r) => r.map(Some),
            },
            Requirement::AllowMissingOrFailed => Ok(self.check().and_then(Result::ok)),
        }
    }

    /// A valid token of provider `i`, read where that provider reads
    /// tokens; `aud` checked against `audiences` if given, else the provider's.
    fn provider(
        &mut self,
        i: ProviderId,
        audiences: Option<&[String]>,
    ) -> Result<Option<Accepted>, Unmet> {
        let Some(found) = self.found else {
            return Err(AuthError::MissingToken.into());
        };
        if !self.policy.provider(i).sources.contains(found.source) {
            // The token sits where this provider does not look.
            return Err(AuthError::MissingToken.into());
        }
        let audiences = audiences.map_or(Audiences::OfProvider, |audiences| Audiences::Override {
            provider: i,
            audiences,
        });
        let accepted = self.check_for(audiences).ok_or(AuthError::MissingToken)??;
        if accepted.token.provider != i {
            return Err(AuthError::WrongIssuer.into());
        }
        Ok(Some(accepted))
    }

    /// Signature and claims, then the certificate binding.
    fn check_token(
        &mut self,
        found: &Found<'_>,
        audiences: Audiences<'_>,
    ) -> Result<Accepted, Failure> {
        let policy = self.policy;
        // The size cap comes before anything reads the token, on every path:
        // routing to introspection decodes a JWS's payload.
        verify::check_size(policy, found.token)?;
        let token = match introspection_route(policy, found.token) {
            Some(p) => introspected(
                policy,
                self.verifier.introspection,
                p,
                found.token,
                self.now,
                audiences,
            )?,
            None => verify_cached(
                policy,
                self.verifier.keys,
                self.verifier.cache,
                found.token,
                self.now,
                audiences,
            )?,
        };
        let id = token.provider;
        let routed = Rejection::routed(id);
        let provider = policy.provider(id);
        if !provider.sources.contains(found.source) {
            // The issuer's provider does not read tokens from where this one was.
            return Err(routed(AuthError::MissingToken).into());
        }
        let source = policy.certificate_source(id);
        let sender = Sender {
            req: self.req,
            found,
            source,
            cert: &mut *self.cert,
            now: self.now,
        };
        let bound = check_binding(provider, &token, sender).map_err(routed)?;
        Ok(Accepted { token, bound })
    }
}

/// Which provider introspects this token, if any: a token that is not a
/// JWS goes to the first provider with `introspection`; a JWS goes to
/// introspection when the provider its `iss` names has `token_format: opaque`.
fn introspection_route(policy: &Policy, token: &str) -> Option<ProviderId> {
    if !policy.introspects {
        return None;
    }
    let has = |p: &Provider| p.introspection.is_some();
    if !introspect::looks_like_jwt(token) {
        return policy
            .each_provider()
            .find(|(_, p)| has(p))
            .map(|(id, _)| id);
    }
    if !policy
        .providers
        .iter()
        .any(|p| p.token_format == TokenFormat::Opaque)
    {
        return None;
    }
    let iss = jws::unverified_issuer(token)?;
    let id = policy.provider_by_issuer(&iss)?;
    let p = policy.provider(id);
    (p.token_format == TokenFormat::Opaque && has(p)).then_some(id)
}

/// The cached introspection answer for a token, checked like JWT claims
/// (RFC 8705 §3.2: the binding is in the response's `cnf`).
fn introspected(
    policy: &Policy,
    cache: &IntrospectionCache,
    index: ProviderId,
    token: &str,
    now: i64,
    audiences: Audiences<'_>,
) -> Result<Arc<VerifiedToken>, Failure> {
    let routed = Rejection::routed(index);
    let provider = policy.provider(index);
    let digest = token_digest(token);
    match cache.get(&digest, index, now) {
        None => Err(Failure {
            unmet: Unmet::IntrospectionPending(index),
            provider: Some(index),
        }),
        Some(Introspected::Inactive) => Err(routed(AuthError::InactiveToken).into()),
        Some(Introspected::Active(claims)) => {
            // RFC 7662 §2.2: `iss` is optional; when given it must be ours.
            match claims.get("iss") {
                None => {}
                Some(Value::String(iss)) if *iss == provider.issuer => {}
                Some(_) => return Err(routed(AuthError::WrongIssuer).into()),
            }
            let audiences = audiences.of(index, provider);
            let times = check_claims(provider, audiences, claims, now).map_err(routed)?;
            Ok(Arc::new(VerifiedToken::new(
                index,
                claims.clone(),
                String::new(),
                times,
            )))
        }
    }
}

/// RFC 6750 §3.1 / RFC 8693 §4.2: scopes come from a space-separated `scope`
/// string, or from an `scp` array (or string) as some servers issue it.
pub fn check_scopes(token: &VerifiedToken, required: &[String]) -> Result<(), AuthError> {
    let mut granted: Vec<&str> = Vec::new();
    if let Some(Value::String(s)) = token.claims.get("scope") {
        granted.extend(s.split(' ').filter(|x| !x.is_empty()));
    }
    match token.claims.get("scp") {
        Some(Value::String(s)) => granted.extend(s.split(' ').filter(|x| !x.is_empty())),
        Some(Value::Array(items)) => granted.extend(items.iter().filter_map(Value::as_str)),
        _ => {}
    }
    if required.iter().all(|r| granted.contains(&r.as_str())) {
        Ok(())
    } else {
        Err(AuthError::InsufficientScope {
            required: required.join(" "),
        })
    }
}
