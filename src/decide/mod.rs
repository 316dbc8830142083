//! The request decision: which rule applies, where the token is, whether it
//! verifies and is bound to the client certificate (RFC 8705 §3), whether
//! it grants the route's scopes, and what goes upstream.
//!
//! Pure: the request facts, the client certificate and `now` come in; a
//! [`Decision`] comes out. The proxy-wasm glue applies it.

pub mod cache;
pub mod introspect;
pub mod verify;

use serde_json::Value;

use std::cell::Cell;
use std::sync::Arc;

use crate::binding::forwarded::CertificateSource;
use crate::binding::{Confirmation, Thumbprint};
use crate::error::AuthError;
use crate::headers::RequestHeaders;
use crate::jose::jwk::KeyRing;
use crate::policy::{
    BindingMode, Policy, Provider, Requirement, RuleMatch, TokenFormat, TokenSource,
};
use cache::{Probe, TokenCache, token_digest};
use introspect::{Introspected, IntrospectionCache};
use verify::{Audiences, Rejection, VerifiedToken};

/// Upper bound on a header value or `:path` the decision will read.
pub const MAX_HEADER_VALUE_BYTES: usize = 64 * 1024;

/// The client certificate of the request, read lazily: a public route never
/// pays for it.
pub trait ClientCertificate {
    /// The SHA-256 thumbprint of the client's leaf certificate per `source`
    /// (the connection, or a header from a trusted hop), or `None` when
    /// there is none to believe.
    fn thumbprint(&mut self, source: &CertificateSource) -> Option<Thumbprint>;
}

/// A fixed thumbprint, whatever the source (for tests and tools).
impl ClientCertificate for Option<Thumbprint> {
    fn thumbprint(&mut self, _source: &CertificateSource) -> Option<Thumbprint> {
        *self
    }
}

/// What the decision reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `:path`, query string included.
    pub path: &'a str,
    /// Request headers; names lowercase as Envoy gives them.
    pub headers: &'a RequestHeaders,
}

/// A change to the request before it goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    Remove(String),
    Set(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The provider whose token was verified, if any.
    pub provider: Option<usize>,
    /// A CORS preflight let through by `bypass_cors_preflight`.
    pub cors_preflight: bool,
    /// Applied in order.
    pub ops: Vec<HeaderOp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The token must be introspected (RFC 7662) before a decision: ask
    /// `provider`'s endpoint, cache the answer, and decide again.
    Introspect {
        provider: usize,
        token: String,
    },
    Allow(Allowed),
    Deny {
        error: AuthError,
        /// The provider the token was routed to, when known.
        provider: Option<usize>,
    },
}

/// A token found in the request, and where.
#[derive(Debug, Clone)]
struct Found<'a> {
    source: &'a TokenSource,
    /// The token, and the token cache's view of it, taken once.
    probe: Probe<'a>,
}

impl<'a> Found<'a> {
    fn token(&self) -> &'a str {
        self.probe.token()
    }
}

/// The keys in force, and the verified-token and introspection caches of the VM.
pub struct Verifier<'a> {
    pub keys: &'a KeyRing,
    pub cache: &'a mut TokenCache,
    pub introspection: &'a IntrospectionCache,
}

/// Decides one request.
pub fn decide(
    policy: &Policy,
    verifier: Verifier<'_>,
    req: Request<'_>,
    cert: &mut dyn ClientCertificate,
    now: i64,
) -> Decision {
    if policy.bypass_cors_preflight && is_cors_preflight(req) {
        return Decision::Allow(Allowed {
            provider: None,
            cors_preflight: true,
            ops: strip_output_headers(policy),
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

    // The cache's view of the last token probed while looking: `checked`
    // takes it rather than probing the same token again.
    let probed: Cell<Option<Probe<'_>>> = Cell::new(None);
    let filed = |token| {
        let probe = verifier.cache.probe(token);
        probed.set(Some(probe));
        probe.filed()
    };
    let found = find_token(policy, req, &filed)
        .and_then(|f| f.map(|f| checked(f, &verifier, probed.get())).transpose());
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

    let mut checker = Checker {
        policy,
        verifier,
        found: found.as_ref(),
        cert,
        now,
        result: None,
        last: None,
    };
    let outcome = match requirement {
        None => checker.any_provider(),
        Some(r) => checker.evaluate(r),
    };
    let provider = checker.last.as_ref().and_then(|r| match r {
        Ok(provider) => Some(*provider),
        Err(rejection) => rejection.provider,
    });
    // Whatever the requirement made of it, an unanswered introspection
    // comes first: ask, then decide again with the answer.
    if let (Some(Err(r)), Some(f)) = (&checker.last, &found)
        && r.error == AuthError::IntrospectionPending
        && let Some(p) = r.provider
    {
        return Decision::Introspect {
            provider: p,
            token: f.token().to_string(),
        };
    }
    let verified = match outcome {
        Ok(v) => v,
        Err(error) => return Decision::Deny { error, provider },
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
    if let (Some(v), Some(f)) = (&verified, &found)
        && let Some(p) = policy.providers.get(v.token.provider)
    {
        upstream_ops(policy, p, v, f, req, &mut ops);
    }
    Decision::Allow(Allowed {
        provider: verified.map(|v| v.token.provider),
        cors_preflight: false,
        ops,
    })
}

/// Whether `r` is met whatever the token: `allow_missing_or_failed`, alone,
/// as one alternative of `requires_any`, or as every part of `requires_all`.
fn tolerates_failure(r: &Requirement) -> bool {
    match r {
        Requirement::AllowMissingOrFailed => true,
        Requirement::Any(list) => list.iter().any(tolerates_failure),
        Requirement::All(list) => list.iter().all(tolerates_failure),
        Requirement::Provider(_)
        | Requirement::ProviderAudiences(..)
        | Requirement::AllowMissing => false,
    }
}

fn allow_unchecked(policy: &Policy) -> Decision {
    Decision::Allow(Allowed {
        provider: None,
        cors_preflight: false,
        ops: strip_output_headers(policy),
    })
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

/// Anti-spoofing: every header certbound may write upstream is first
/// removed from the incoming request, whatever the outcome.
fn strip_output_headers(policy: &Policy) -> Vec<HeaderOp> {
    policy
        .output_headers
        .iter()
        .map(|h| HeaderOp::Remove(h.clone()))
        .collect()
}

/// A token that verified and, where it is bound, matched the certificate.
#[derive(Debug, Clone)]
struct Accepted {
    token: Arc<VerifiedToken>,
    thumbprint: Option<Thumbprint>,
}

struct Checker<'p, 'r, 'c> {
    policy: &'p Policy,
    verifier: Verifier<'p>,
    found: Option<&'r Found<'r>>,
    cert: &'c mut dyn ClientCertificate,
    now: i64,
    /// The token is verified at most once against its providers' own
    /// audiences; requirements share the result.
    result: Option<Result<Accepted, Rejection>>,
    /// What the decision reports of the last verification made, with or
    /// without a rule's audiences: the token's provider, or the rejection
    /// (its provider, a pending introspection).
    last: Option<Result<usize, Rejection>>,
}

impl Checker<'_, '_, '_> {
    /// The token checked against its providers' own audiences: made once,
    /// shared by every requirement.
    fn check(&mut self) -> Option<Result<Accepted, AuthError>> {
        self.check_for(Audiences::OfProvider)
    }

    /// The token checked against `audiences`. The providers' own is made
    /// once and shared; a rule's own list is checked afresh each time (a
    /// cached token makes that cheap).
    fn check_for(&mut self, audiences: Audiences<'_>) -> Option<Result<Accepted, AuthError>> {
        let found = self.found?;
        let result = match (&self.result, audiences) {
            (Some(shared), Audiences::OfProvider) => shared.clone(),
            _ => {
                let made = check_token(
                    self.policy,
                    &mut self.verifier,
                    found,
                    &mut *self.cert,
                    self.now,
                    audiences,
                );
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
        Some(result.map_err(|rejection| rejection.error))
    }

    /// No rules: a valid token from any provider.
    fn any_provider(&mut self) -> Result<Option<Accepted>, AuthError> {
        match self.check() {
            None => Err(AuthError::MissingToken),
            Some(r) => r.map(Some),
        }
    }

    fn evaluate(&mut self, req: &Requirement) -> Result<Option<Accepted>, AuthError> {
        match req {
            Requirement::Provider(i) => self.provider(*i, None),
            Requirement::ProviderAudiences(i, audiences) => self.provider(*i, Some(audiences)),
            Requirement::Any(list) => {
                let mut best: Option<AuthError> = None;
                for r in list {
                    match self.evaluate(r) {
                        Ok(v) => return Ok(v),
                        Err(e) => {
                            // Report a problem with the token over its absence.
                            if best.is_none() || best == Some(AuthError::MissingToken) {
                                best = Some(e);
                            }
                        }
                    }
                }
                Err(best.unwrap_or(AuthError::MissingToken))
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
        i: usize,
        audiences: Option<&[String]>,
    ) -> Result<Option<Accepted>, AuthError> {
        let Some(found) = self.found else {
            return Err(AuthError::MissingToken);
        };
        let Some(p) = self.policy.providers.get(i) else {
            return Err(AuthError::WrongIssuer);
        };
        if !p.sources.contains(found.source) {
            // The token sits where this provider does not look.
            return Err(AuthError::MissingToken);
        }
        let audiences = audiences.map_or(Audiences::OfProvider, |audiences| Audiences::Override {
            provider: i,
            audiences,
        });
        let accepted = self.check_for(audiences).ok_or(AuthError::MissingToken)??;
        if accepted.token.provider != i {
            return Err(AuthError::WrongIssuer);
        }
        Ok(Some(accepted))
    }
}

/// Signature and claims, then the certificate binding.
fn check_token(
    policy: &Policy,
    verifier: &mut Verifier<'_>,
    found: &Found<'_>,
    cert: &mut dyn ClientCertificate,
    now: i64,
    audiences: Audiences<'_>,
) -> Result<Accepted, Rejection> {
    // The size cap comes before anything reads the token, on every path:
    // routing to introspection decodes a JWS's payload.
    verify::check_size(policy, found.token())?;
    let token = match introspection_route(policy, found.token()) {
        Some(p) => introspected(
            policy,
            verifier.introspection,
            p,
            found.token(),
            now,
            audiences,
        )?,
        None => verify::verify_probed(
            policy,
            verifier.keys,
            verifier.cache,
            &found.probe,
            now,
            audiences,
        )?,
    };
    let index = token.provider;
    let routed = Rejection::routed(index);
    let provider = policy
        .providers
        .get(index)
        .ok_or(AuthError::WrongIssuer)
        .map_err(routed)?;
    if !provider.sources.contains(found.source) {
        // The issuer's provider does not read tokens from where this one was.
        return Err(routed(AuthError::MissingToken));
    }
    let source = policy.certificate_source(index);
    let thumbprint = check_binding(provider, &token, source, cert).map_err(routed)?;
    Ok(Accepted { token, thumbprint })
}

/// Which provider introspects this token, if any: a token that is not a
/// JWS goes to the first provider with `introspection`; a JWS goes to
/// introspection when the provider its `iss` names has `token_format: opaque`.
fn introspection_route(policy: &Policy, token: &str) -> Option<usize> {
    if !policy.introspects {
        return None;
    }
    let has = |p: &Provider| p.introspection.is_some();
    if !introspect::looks_like_jwt(token) {
        return policy.providers.iter().position(has);
    }
    if !policy
        .providers
        .iter()
        .any(|p| p.token_format == TokenFormat::Opaque)
    {
        return None;
    }
    let iss = verify::unverified_issuer(token)?;
    let p = policy.provider_by_issuer(&iss)?;
    policy
        .providers
        .get(p)
        .filter(|p| p.token_format == TokenFormat::Opaque && has(p))
        .map(|_| p)
}

/// The cached introspection answer for a token, checked like JWT claims
/// (RFC 8705 §3.2: the binding is in the response's `cnf`).
fn introspected(
    policy: &Policy,
    cache: &IntrospectionCache,
    index: usize,
    token: &str,
    now: i64,
    audiences: Audiences<'_>,
) -> Result<Arc<VerifiedToken>, Rejection> {
    let routed = Rejection::routed(index);
    let provider = policy
        .providers
        .get(index)
        .ok_or(AuthError::WrongIssuer)
        .map_err(routed)?;
    let digest = token_digest(token);
    match cache.get(&digest, index, now) {
        None => Err(routed(AuthError::IntrospectionPending)),
        Some(Introspected::Inactive) => Err(routed(AuthError::InactiveToken)),
        Some(Introspected::Active(claims)) => {
            // RFC 7662 §2.2: `iss` is optional; when given it must be ours.
            match claims.get("iss") {
                None => {}
                Some(Value::String(iss)) if *iss == provider.issuer => {}
                Some(_) => return Err(routed(AuthError::WrongIssuer)),
            }
            let audiences = audiences.of(index, provider);
            let times = verify::check_claims(provider, audiences, claims, now).map_err(routed)?;
            Ok(Arc::new(VerifiedToken::new(
                index,
                claims.clone(),
                String::new(),
                times,
            )))
        }
    }
}

/// RFC 8705 §3: a token with `cnf.x5t#S256` is accepted only from a client
/// whose certificate has that SHA-256 thumbprint. Under `required`, a token
/// without it is refused. A `cnf` with only other confirmation methods
/// (for example DPoP's `jkt`, RFC 9449) cannot be checked here and is refused.
fn check_binding(
    provider: &Provider,
    token: &VerifiedToken,
    source: &CertificateSource,
    cert: &mut dyn ClientCertificate,
) -> Result<Option<Thumbprint>, AuthError> {
    let expected = match token.confirmation {
        Confirmation::Absent => {
            return match provider.binding {
                BindingMode::Required => Err(AuthError::MissingBinding),
                BindingMode::WhenPresent => Ok(None),
            };
        }
        Confirmation::X5tS256(t) => t,
        Confirmation::OtherMethod => return Err(AuthError::MissingBinding),
        Confirmation::Malformed => return Err(AuthError::MalformedBinding),
    };
    let presented = cert
        .thumbprint(source)
        .ok_or(AuthError::NoClientCertificate)?;
    if presented.ct_eq(&expected) {
        Ok(Some(presented))
    } else {
        Err(AuthError::BindingMismatch)
    }
}

/// RFC 6750 §3.1 / RFC 8693 §4.2: scopes come from a space-separated `scope`
/// string, or from an `scp` array (or string) as some servers issue it.
fn check_scopes(token: &VerifiedToken, required: &[String]) -> Result<(), AuthError> {
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

// ---------------------------------------------------------------------------
// Token extraction.
// ---------------------------------------------------------------------------

/// Finds the request's token in every location a provider reads. Two
/// different tokens are an `invalid_request` (RFC 6750 §2). Each token
/// is checked as if when found ([`checked`] does the first): a malformed
/// one is reported before a second token.
fn find_token<'a>(
    policy: &'a Policy,
    req: Request<'a>,
    filed: &dyn Fn(&'a str) -> bool,
) -> Result<Option<(&'a str, &'a TokenSource)>, AuthError> {
    let mut found: Option<(&'a str, &'a TokenSource)> = None;
    for provider in &policy.providers {
        for source in &provider.sources {
            visit_tokens(source, req, filed, &mut |token| {
                match found {
                    None => found = Some((token, source)),
                    Some((first, _)) if first == token => {}
                    Some((first, _)) => {
                        check_b64token(first)?;
                        check_b64token(token)?;
                        return Err(AuthError::MultipleTokens);
                    }
                }
                Ok(())
            })?;
        }
    }
    Ok(found)
}

/// The found token, probed in the token cache and checked against RFC 6750
/// §2.1's b64token. A token filed in the cache is one this VM verified,
/// which passed this check before: these exact bytes need no second look,
/// and a cached request reads the token once, to compare it.
fn checked<'a>(
    (token, source): (&'a str, &'a TokenSource),
    verifier: &Verifier<'_>,
    probed: Option<Probe<'a>>,
) -> Result<Found<'a>, AuthError> {
    let probe = match probed {
        // The very same bytes at the same place: the same token.
        Some(p) if std::ptr::eq(p.token(), token) => p,
        _ => verifier.cache.probe(token),
    };
    if !probe.filed() {
        check_b64token(token)?;
    }
    Ok(Found { source, probe })
}

/// Hands each candidate token at one source to `visit`, stopping at its
/// first error. A value that is there but is no token (a different auth
/// scheme, say) is skipped. (A visitor, not a boxed iterator: no
/// allocation per request.)
fn visit_tokens<'a>(
    source: &TokenSource,
    req: Request<'a>,
    filed: &dyn Fn(&'a str) -> bool,
    visit: &mut dyn FnMut(&'a str) -> Result<(), AuthError>,
) -> Result<(), AuthError> {
    match source {
        // Envoy folds repeated headers into one value joined by ",", and a
        // JWT never holds a comma: each part is a candidate token.
        TokenSource::Header { name, prefix } => {
            for value in req.headers.values(name) {
                // A value that, whole, is a token this VM verified and filed
                // holds no comma (a filed token passed the b64token check),
                // so it is one part: the cached path skips the scan for
                // folded values. (Not with a prefix that has a comma, which
                // splitting would cut.)
                if !prefix.contains(',')
                    && let Some(token) = strip_prefix(name, prefix, value.trim_start())
                    && filed(token)
                {
                    visit(token)?;
                    continue;
                }
                for part in value.split(',') {
                    if let Some(token) = strip_prefix(name, prefix, part.trim_start()) {
                        visit(token)?;
                    }
                }
            }
        }
        TokenSource::Param(param) => {
            for kv in query(req.path).split('&') {
                if let Some((k, v)) = kv.split_once('=')
                    && k == param
                    && !v.is_empty()
                {
                    visit(v)?;
                }
            }
        }
        TokenSource::Cookie(cookie) => {
            for value in req.headers.values("cookie") {
                for kv in value.split(';') {
                    if let Some((k, v)) = kv.trim().split_once('=') {
                        let v = v.trim_matches('"');
                        if k == cookie && !v.is_empty() {
                            visit(v)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// `Authorization` carries an auth scheme, which is case-insensitive
/// (RFC 9110 §11.1); other headers' prefixes match exactly, as in jwt_authn.
fn strip_prefix<'a>(header: &str, prefix: &str, value: &'a str) -> Option<&'a str> {
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Some(value);
    }
    let rest = if header == "authorization" {
        let head = value.get(..prefix.len())?;
        if !head.eq_ignore_ascii_case(prefix) {
            return None;
        }
        value.get(prefix.len()..)?
    } else {
        value.strip_prefix(prefix)?
    };
    let rest = rest.trim_matches(|c| c == ' ' || c == '\t');
    (!rest.is_empty()).then_some(rest)
}

/// The bytes of RFC 6750 §2.1's b64token, as a table: one load per byte
/// on the path of every request.
#[allow(clippy::indexing_slicing)] // b < 256, checked at compile time
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// RFC 6750 §2.1 b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn check_b64token(t: &str) -> Result<&str, AuthError> {
    if t.len() > MAX_HEADER_VALUE_BYTES {
        return Err(AuthError::TokenTooLarge {
            len: t.len(),
            max: MAX_HEADER_VALUE_BYTES,
        });
    }
    let body = t.trim_end_matches('=');
    if !body.is_empty() && all_b64token(body.as_bytes()) {
        Ok(t)
    } else {
        Err(AuthError::Malformed("token has invalid characters"))
    }
}

/// Whether every byte is a b64token byte. Eight table loads per step,
/// without a branch per byte: this runs over the whole token on every
/// request, cached or not.
#[allow(clippy::indexing_slicing)] // a u8 indexes a 256-entry table
fn all_b64token(bytes: &[u8]) -> bool {
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder().iter().all(|&b| B64TOKEN[usize::from(b)]);
    tail && chunks.fold(true, |ok, c| {
        c.iter().fold(ok, |ok, &b| ok & B64TOKEN[usize::from(b)])
    })
}

fn query(path: &str) -> &str {
    let q = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('#').next().unwrap_or("")
}

// ---------------------------------------------------------------------------
// What goes upstream.
// ---------------------------------------------------------------------------

fn upstream_ops(
    policy: &Policy,
    p: &Provider,
    v: &Accepted,
    found: &Found<'_>,
    req: Request<'_>,
    ops: &mut Vec<HeaderOp>,
) {
    for c in &p.claim_to_headers {
        if let Some(value) = claim_value(&v.token.claims, &c.name, &c.claim) {
            ops.push(HeaderOp::Set(c.header.clone(), value));
        }
    }
    if let Some(h) = &p.forward_payload_header
        && !v.token.payload_b64.is_empty()
    {
        let mut payload = v.token.payload_b64.clone();
        if p.pad_forward_payload_header {
            // base64 (RFC 4648 §3.2) padding: a multiple of 4 characters.
            let pad = (4 - payload.len() % 4) % 4;
            payload.extend(core::iter::repeat_n('=', pad));
        }
        ops.push(HeaderOp::Set(h.clone(), payload));
    }
    if let (Some(h), Some(t)) = (&p.thumbprint_header, &v.thumbprint) {
        ops.push(HeaderOp::Set(h.clone(), t.to_base64url()));
    }
    if !p.forward {
        remove_token(policy, found, req, ops);
    }
}

/// A claim as a header value: strings as they are, numbers and booleans in
/// JSON form, arrays of those joined with commas. Objects, and values with
/// characters a header cannot carry, are not forwarded. The claim is the
/// top-level one named `name` if there is one (a namespaced claim such as
/// `https://example.com/roles` holds dots), else `path` through objects.
fn claim_value(
    claims: &serde_json::Map<String, Value>,
    name: &str,
    path: &[String],
) -> Option<String> {
    let v = match claims.get(name) {
        Some(v) => v,
        None => {
            let (first, rest) = path.split_first()?;
            let mut v = claims.get(first)?;
            for seg in rest {
                v = v.as_object()?.get(seg)?;
            }
            v
        }
    };
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let s = match v {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        other => scalar(other)?,
    };
    let safe = s.len() <= MAX_HEADER_VALUE_BYTES
        && s.bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80);
    safe.then_some(s)
}

/// `forward: false`: the token does not go upstream, from any location it
/// was sent in (a client may repeat it in a header, the query and a cookie).
fn remove_token(policy: &Policy, found: &Found<'_>, req: Request<'_>, ops: &mut Vec<HeaderOp>) {
    let token = found.token();
    let holds = |source: &TokenSource| {
        let mut holds = false;
        let _ = visit_tokens(source, req, &|_| false, &mut |t| {
            holds |= t == token;
            Ok(())
        });
        holds
    };
    let mut headers: Vec<&str> = Vec::new();
    let mut params: Vec<&str> = Vec::new();
    let mut cookies: Vec<&str> = Vec::new();
    for source in policy.providers.iter().flat_map(|p| p.sources.iter()) {
        if !holds(source) {
            continue;
        }
        match source {
            TokenSource::Header { name, .. } => headers.push(name),
            TokenSource::Param(p) => params.push(p),
            TokenSource::Cookie(c) => cookies.push(c),
        }
    }
    headers.sort_unstable();
    headers.dedup();
    for h in headers {
        ops.push(HeaderOp::Remove(h.to_string()));
    }
    if !params.is_empty()
        && let Some((base, q)) = req.path.split_once('?')
    {
        let (q, frag) = match q.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (q, None),
        };
        let kept: Vec<&str> = q
            .split('&')
            .filter(|kv| {
                !kv.split_once('=')
                    .is_some_and(|(k, v)| params.contains(&k) && v == token)
            })
            .collect();
        let mut path = base.to_string();
        if !kept.is_empty() {
            path.push('?');
            path.push_str(&kept.join("&"));
        }
        if let Some(f) = frag {
            path.push('#');
            path.push_str(f);
        }
        ops.push(HeaderOp::Set(":path".into(), path));
    }
    if !cookies.is_empty() {
        let kept: Vec<&str> = req
            .headers
            .values("cookie")
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|kv| !kv.is_empty())
            .filter(|kv| {
                !kv.split_once('=')
                    .is_some_and(|(k, v)| cookies.contains(&k) && v.trim_matches('"') == token)
            })
            .collect();
        if kept.is_empty() {
            ops.push(HeaderOp::Remove("cookie".into()));
        } else {
            ops.push(HeaderOp::Set("cookie".into(), kept.join("; ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{check_b64token, claim_value};

    #[test]
    fn claims_by_whole_name_then_by_path() {
        let claims = serde_json::json!({
            "sub": "client-a",
            "org": {"id": 42, "name": "acme", "deep": {"ok": true}},
            "https://example.com/roles": ["admin", "ops"],
            "a.b": "top-level",
            "a": {"b": "nested"},
            "obj": {"x": 1},
            "mixed": ["x", {"y": 1}],
            "crlf": "evil\r\nx-admin: 1"
        });
        let claims = claims.as_object().cloned().unwrap_or_default();
        let get = |name: &str| {
            let path: Vec<String> = name.split('.').map(str::to_string).collect();
            claim_value(&claims, name, &path)
        };
        assert_eq!(get("sub").as_deref(), Some("client-a"));
        assert_eq!(get("org.id").as_deref(), Some("42"));
        assert_eq!(get("org.deep.ok").as_deref(), Some("true"));
        // A namespaced claim (Auth0 and others) holds dots in its name.
        assert_eq!(
            get("https://example.com/roles").as_deref(),
            Some("admin,ops")
        );
        // The whole name wins over the path when both exist.
        assert_eq!(get("a.b").as_deref(), Some("top-level"));
        // Not forwarded: absent, objects, arrays holding objects, and values
        // a header cannot carry.
        for name in ["nope", "org.nope", "sub.x", "obj", "mixed", "crlf"] {
            assert_eq!(get(name), None, "{name}");
        }
    }

    /// RFC 6750 §2.1: every byte at every position of a chunk or of the
    /// tail is checked, and `=` only at the end.
    #[test]
    fn b64token_checks_every_byte() {
        let alphabet = "ABCXYZabcxyz0189-._~+/";
        for len in 1..=40usize {
            let good: String = alphabet.chars().cycle().take(len).collect();
            assert_eq!(check_b64token(&good), Ok(good.as_str()));
            let padded = format!("{good}==");
            assert_eq!(check_b64token(&padded), Ok(padded.as_str()));
            for i in 0..len {
                for bad in [",", " ", "=", "\"", "\u{7f}", "\u{e9}", "\0", "%", "*"] {
                    let mut t = good.clone();
                    t.replace_range(i..=i, bad);
                    if bad == "=" && i == len - 1 {
                        continue; // trailing padding is allowed
                    }
                    assert!(check_b64token(&t).is_err(), "{t:?}");
                }
            }
        }
        assert!(check_b64token("").is_err());
        assert!(check_b64token("==").is_err());
    }
}
