//! Structured requests through `decide`, against a policy with rules of
//! every kind (public, provider_name, requires_any, requires_all,
//! allow_missing, allow_missing_or_failed, required_scopes), two providers
//! reading headers, a query parameter and a cookie, claim_to_headers,
//! payload and thumbprint forwarding; or against the same providers with no
//! rules. Tokens are picked from the vectors, mutated, concatenated or made
//! up; the client certificate is one of the vectors' or 32 arbitrary bytes;
//! the clock is the vectors' `now` plus an offset. One input is a short
//! sequence of requests sharing one verified-token cache, with key
//! rotations (a provider's key set replaced by another of the vectors')
//! in between, so that cache hits meet later clocks, other certificates,
//! other routes and other keys.
//!
//! Oracles (no panic, and):
//! * An `Allow` on a route that needs a token (no rules, a rule whose
//!   requirement cannot be met without one, or one with required scopes)
//!   names the provider whose token was accepted.
//! * Whenever an `Allow` names a provider, the request carries, whole and
//!   at a place that provider reads tokens from (its headers with their
//!   prefixes, query parameters, cookies), a vector token that an
//!   independent model (`why_not_acceptable`:
//!   genuine signature, key by kid, typ, iss, aud, exp/nbf/iat with skew,
//!   lifetime, RFC 8705 binding to the presented certificate, scopes)
//!   accepts for that provider at that time, with the key set in force.
//! * No wrong deny where the answer is fully determined: a route needing
//!   exactly provider `idp` (or no rules), no query, a single
//!   `Authorization` header carrying a vector token the model accepts for
//!   `idp`: the decision is `Allow` by `idp`.
//! * Every `Allow` first removes every header certbound writes upstream
//!   (anti-spoofing), and only sets output headers, `:path` or `cookie`; a
//!   forwarded thumbprint is the presented certificate's.
#![no_main]

use arbitrary::Arbitrary;
use std::sync::Arc;

use certbound::IntrospectionCache;
use certbound::KeyRing;
use certbound::Thumbprint;
use certbound::TokenCache;
use certbound::{Decision, HeaderOp, Request, Verifier, decide};
use certbound::{Policy, Requirement, RuleMatch};
use certbound_fuzz::{Fixtures, fixtures, needs_token, values_read_by, why_not_acceptable};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const MAX_HEADERS: usize = 6;
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

#[derive(Arbitrary, Debug)]
enum TokenIn {
    Vector(u8),
    /// A vector token with some bytes replaced by base64url characters or `.`.
    Mutated {
        index: u8,
        edits: Vec<(u16, u8)>,
    },
    /// A vector token truncated, or with a suffix.
    Cut {
        index: u8,
        len: u16,
        suffix: String,
    },
    /// Header of one token, payload of another, signature of a third.
    Spliced(u8, u8, u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Route {
    Public,
    PublicSub,
    Orders,
    Any,
    All,
    Optional,
    Lenient,
    Other,
    Mixed,
    Nested,
    Idp,
    Unmatched,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Param {
    AccessToken(TokenIn),
    Raw(String, String),
}

#[derive(Arbitrary, Debug)]
struct PathIn {
    route: Route,
    suffix: String,
    query: Vec<Param>,
    fragment: Option<String>,
}

#[derive(Arbitrary, Debug)]
enum Scheme {
    Bearer,
    Lower,
    Upper,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum CookieIn {
    At { token: TokenIn, quoted: bool },
    Raw(String, String),
}

#[derive(Arbitrary, Debug)]
enum OutHeader {
    Sub,
    Org,
    Scope,
    Aud,
    Payload,
    Thumbprint,
    OtherSub,
    OtherThumbprint,
}

#[derive(Arbitrary, Debug)]
enum HeaderIn {
    Authorization {
        scheme: Scheme,
        token: TokenIn,
        upper_name: bool,
    },
    XToken(TokenIn),
    XOther {
        token: TokenIn,
        prefixed: bool,
    },
    Cookie(Vec<CookieIn>),
    /// A client trying to set what certbound writes upstream.
    Spoof(OutHeader, String),
    Raw(String, String),
}

#[derive(Arbitrary, Debug)]
enum CertIn {
    None,
    ClientA,
    ClientB,
    Ca,
    Raw([u8; 32]),
}

#[derive(Arbitrary, Debug)]
enum TimeIn {
    Now,
    Offset(i16),
    Far(i32),
}

#[derive(Arbitrary, Debug)]
struct RequestIn {
    path: PathIn,
    headers: Vec<HeaderIn>,
    cert: CertIn,
    time: TimeIn,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Request(RequestIn),
    /// Replace provider `provider`'s keys with vectors key set `set`.
    Rotate {
        provider: u8,
        set: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum CacheIn {
    Off,
    One,
    Two,
    Configured,
}

#[derive(Arbitrary, Debug)]
struct Input {
    no_rules: bool,
    cache: CacheIn,
    steps: Vec<Step>,
}

const MAX_STEPS: usize = 6;

fn vector(f: &Fixtures, i: u8) -> &str {
    let n = f.tokens.len().max(1);
    f.tokens
        .get(usize::from(i) % n)
        .map(|t| t.token.as_str())
        .unwrap_or("")
}

fn token(f: &Fixtures, t: &TokenIn) -> String {
    match t {
        TokenIn::Vector(i) => vector(f, *i).to_string(),
        TokenIn::Mutated { index, edits } => {
            let mut b = vector(f, *index).as_bytes().to_vec();
            for (pos, c) in edits.iter().take(8) {
                let n = b.len().max(1);
                if let Some(slot) = b.get_mut(usize::from(*pos) % n) {
                    *slot = B64URL[usize::from(*c) % B64URL.len()];
                }
            }
            String::from_utf8_lossy(&b).into_owned()
        }
        TokenIn::Cut { index, len, suffix } => {
            let v = vector(f, *index);
            let cut = usize::from(*len).min(v.len());
            format!("{}{}", v.get(..cut).unwrap_or(v), suffix)
        }
        TokenIn::Spliced(a, b, c) => {
            let part = |i: u8, k: usize| vector(f, i).split('.').nth(k).unwrap_or("").to_string();
            format!("{}.{}.{}", part(*a, 0), part(*b, 1), part(*c, 2))
        }
        TokenIn::Raw(s) => s.clone(),
    }
}

fn out_header(h: &OutHeader) -> &'static str {
    match h {
        OutHeader::Sub => "x-jwt-sub",
        OutHeader::Org => "x-org",
        OutHeader::Scope => "x-scope",
        OutHeader::Aud => "x-aud",
        OutHeader::Payload => "x-jwt-payload",
        OutHeader::Thumbprint => "x-client-thumbprint",
        OutHeader::OtherSub => "x-other-sub",
        OutHeader::OtherThumbprint => "x-other-thumbprint",
    }
}

fn build_path(f: &Fixtures, p: &PathIn) -> String {
    let route = match &p.route {
        Route::Public => "/public",
        Route::PublicSub => "/public/x",
        Route::Orders => "/orders",
        Route::Any => "/any",
        Route::All => "/all",
        Route::Optional => "/optional",
        Route::Lenient => "/lenient",
        Route::Other => "/other",
        Route::Mixed => "/mixed",
        Route::Nested => "/nested",
        Route::Idp => "/idp",
        Route::Unmatched => "/unmatched",
        Route::Raw(s) => s.as_str(),
    };
    let mut path = format!("{route}{}", p.suffix);
    for (i, q) in p.query.iter().take(4).enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        match q {
            Param::AccessToken(t) => {
                path.push_str("access_token=");
                path.push_str(&token(f, t));
            }
            Param::Raw(k, v) => {
                path.push_str(k);
                path.push('=');
                path.push_str(v);
            }
        }
    }
    if let Some(frag) = &p.fragment {
        path.push('#');
        path.push_str(frag);
    }
    path
}

fn build_header(f: &Fixtures, h: &HeaderIn) -> (String, String) {
    match h {
        HeaderIn::Authorization {
            scheme,
            token: t,
            upper_name,
        } => {
            let name = if *upper_name {
                "Authorization"
            } else {
                "authorization"
            };
            let scheme = match scheme {
                Scheme::Bearer => "Bearer ",
                Scheme::Lower => "bearer ",
                Scheme::Upper => "BEARER  ",
                Scheme::Raw(s) => s.as_str(),
            };
            (name.into(), format!("{scheme}{}", token(f, t)))
        }
        HeaderIn::XToken(t) => ("x-token".into(), token(f, t)),
        HeaderIn::XOther { token: t, prefixed } => {
            let prefix = if *prefixed { "tok=" } else { "" };
            ("x-other-token".into(), format!("{prefix}{}", token(f, t)))
        }
        HeaderIn::Cookie(items) => {
            let parts: Vec<String> = items
                .iter()
                .take(4)
                .map(|c| match c {
                    CookieIn::At { token: t, quoted } => {
                        let t = token(f, t);
                        if *quoted {
                            format!("at=\"{t}\"")
                        } else {
                            format!("at={t}")
                        }
                    }
                    CookieIn::Raw(k, v) => format!("{k}={v}"),
                })
                .collect();
            ("cookie".into(), parts.join("; "))
        }
        HeaderIn::Spoof(h, v) => (out_header(h).into(), v.clone()),
        HeaderIn::Raw(n, v) => (n.clone(), v.clone()),
    }
}

/// The one case where the decision is fully determined, so that a deny is
/// wrong too: a route that needs exactly provider `idp` (or no rules), no
/// query, one `Authorization` header, and in it a vector token the model
/// accepts for `idp` with its keys in force, at `now`, with `cert`.
#[allow(clippy::too_many_arguments)]
fn must_allow(
    f: &Fixtures,
    policy: &Policy,
    in_force: &[usize],
    path: &str,
    headers: &[(String, String)],
    cert: Option<Thumbprint>,
    now: i64,
) -> Option<usize> {
    if path.contains(['?', '#']) {
        return None;
    }
    let others: Vec<&(String, String)> = headers.iter().filter(|(n, _)| n != ":path").collect();
    let [(name, _)] = others.as_slice() else {
        return None;
    };
    if !name.eq_ignore_ascii_case("authorization") {
        return None;
    }
    let idp = policy.providers.iter().position(|p| p.name == "idp")?;
    let only_idp = match policy.rule_for(path, &headers.iter().cloned().collect()) {
        RuleMatch::Default => true,
        RuleMatch::Rule(r) => {
            matches!(&r.requires, Some(Requirement::Provider(p)) if p.index() == idp)
                && r.required_scopes.is_empty()
        }
        RuleMatch::NoMatch => false,
    };
    if !only_idp {
        return None;
    }
    let p = &policy.providers[idp];
    let read = values_read_by(p, path, headers);
    let [value] = read.as_slice() else {
        return None;
    };
    let t = f.tokens.iter().find(|t| t.token == *value)?;
    let jwks = &f.key_sets[in_force[idp]].json;
    why_not_acceptable(t, p, jwks, now, cert, &[])
        .is_none()
        .then_some(idp)
}

#[allow(clippy::too_many_arguments)]
fn check(
    f: &Fixtures,
    policy: &Policy,
    in_force: &[usize],
    path: &str,
    headers: &[(String, String)],
    cert: Option<Thumbprint>,
    now: i64,
    d: &Decision,
) {
    if let Some(idp) = must_allow(f, policy, in_force, path, headers, cert, now) {
        if trace() {
            eprintln!("TRACE must_allow");
        }
        assert!(
            matches!(d, Decision::Allow(a) if a.provider.map(|p| p.index()) == Some(idp)),
            "WRONG DENY: {d:?} for a token the model accepts, on {path:?} at now{:+}, \
             cert {cert:?}, keys {}, headers {headers:?}",
            now - f.now,
            f.key_sets[in_force[idp]].name,
        );
    }
    let Decision::Allow(a) = d else {
        return;
    };
    // Anti-spoofing: the output headers are removed first, in order.
    let strip: Vec<HeaderOp> = policy
        .output_headers
        .iter()
        .map(|h| HeaderOp::Remove(h.clone()))
        .collect();
    assert!(
        a.ops.starts_with(&strip),
        "output headers not stripped first: {:?}",
        a.ops
    );
    for op in a.ops.iter().skip(strip.len()) {
        if let HeaderOp::Set(h, _) = op {
            assert!(
                policy.output_headers.contains(h) || h == ":path" || h == "cookie",
                "sets a header it does not own: {h}"
            );
        }
    }

    let (needs, scopes): (bool, &[String]) =
        match policy.rule_for(path, &headers.iter().cloned().collect()) {
            RuleMatch::Default => (true, &[]),
            RuleMatch::NoMatch => (false, &[]),
            RuleMatch::Rule(r) => match &r.requires {
                None => (false, &[]),
                Some(req) => (
                    needs_token(req) || !r.required_scopes.is_empty(),
                    &r.required_scopes,
                ),
            },
        };
    let Some(pi) = a.provider.map(|p| p.index()) else {
        assert!(
            !needs,
            "ALLOW WITHOUT TOKEN on {path:?} which needs one; headers {headers:?}"
        );
        return;
    };
    let provider = &policy.providers[pi];
    let jwks: &Value = &f.key_sets[in_force[pi]].json;
    // The vector tokens sitting, whole, where this provider reads tokens.
    let read = values_read_by(provider, path, headers);
    let carried: Vec<_> = f
        .tokens
        .iter()
        .filter(|t| read.contains(&t.token.as_str()))
        .collect();
    let ok = carried
        .iter()
        .any(|t| why_not_acceptable(t, provider, jwks, now, cert, scopes).is_none());
    if !ok {
        let why: Vec<String> = carried
            .iter()
            .map(|t| {
                format!(
                    "{}: {}",
                    t.name,
                    why_not_acceptable(t, provider, jwks, now, cert, scopes).unwrap_or_default()
                )
            })
            .collect();
        panic!(
            "WRONG ACCEPT: provider {} (keys {}) on {path:?} at now{:+}, cert {cert:?}, \
             headers {headers:?}; vector tokens carried: {why:?}",
            provider.name,
            f.key_sets[in_force[pi]].name,
            now - f.now
        );
    }
    // A forwarded thumbprint is the presented certificate's.
    for op in &a.ops {
        if let HeaderOp::Set(h, v) = op
            && provider.thumbprint_header.as_deref() == Some(h.as_str())
        {
            assert_eq!(Some(v.clone()), cert.map(|c| c.to_base64url()));
        }
    }
}

fn request(
    f: &Fixtures,
    policy: &Policy,
    keys: &KeyRing,
    in_force: &[usize],
    cache: &mut TokenCache,
    r: &RequestIn,
) {
    let path = build_path(f, &r.path);
    let mut headers = vec![(":path".to_string(), path.clone())];
    headers.extend(
        r.headers
            .iter()
            .take(MAX_HEADERS)
            .map(|h| build_header(f, h)),
    );
    let cert = match r.cert {
        CertIn::None => None,
        CertIn::ClientA => Some(f.client_a),
        CertIn::ClientB => Some(f.client_b),
        CertIn::Ca => Some(f.ca),
        CertIn::Raw(b) => Some(Thumbprint(b)),
    };
    let now = f.now
        + match r.time {
            TimeIn::Now => 0,
            TimeIn::Offset(o) => i64::from(o),
            TimeIn::Far(o) => i64::from(o),
        };
    let mut presented = cert;
    let d = decide(
        policy,
        Verifier {
            keys,
            cache,
            introspection: &IntrospectionCache::new(1),
        },
        Request {
            path: &path,
            headers: &headers.iter().cloned().collect(),
        },
        &mut presented,
        now,
    );
    if trace() {
        // One line per decision, to see what a corpus reaches (README).
        let route = path.split(['?', '#']).next().unwrap_or("");
        match &d {
            Decision::Allow(a) => eprintln!("TRACE allow {:?} {route}", a.provider),
            Decision::Deny { error, .. } => eprintln!("TRACE deny {error:?}"),
            other => eprintln!("TRACE {other:?}"),
        }
    }
    check(f, policy, in_force, &path, &headers, cert, now, &d);
}

/// `CERTBOUND_FUZZ_TRACE=1`: print each decision's outcome to stderr.
fn trace() -> bool {
    static T: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *T.get_or_init(|| std::env::var_os("CERTBOUND_FUZZ_TRACE").is_some())
}

fuzz_target!(|input: Input| {
    let f = fixtures();
    let policy = if input.no_rules {
        &f.default_policy
    } else {
        &f.rules_policy
    };
    let mut keys = KeyRing::for_policy(policy);
    // Every decision provider starts with the vectors' full JWKS (key set 0).
    let mut in_force = vec![0usize; policy.providers.len()];
    let mut generation = 0u64;
    let mut cache = TokenCache::new(match input.cache {
        CacheIn::Off => 0,
        CacheIn::One => 1,
        CacheIn::Two => 2,
        CacheIn::Configured => policy.jwt_cache_size,
    });
    for step in input.steps.iter().take(MAX_STEPS) {
        match step {
            Step::Request(r) => request(f, policy, &keys, &in_force, &mut cache, r),
            Step::Rotate { provider, set } => {
                let p = usize::from(*provider) % policy.providers.len();
                let s = usize::from(*set) % f.key_sets.len();
                generation += 1;
                if let Some((id, _)) = policy.each_provider().nth(p) {
                    keys.install(id, Arc::clone(&f.key_sets[s].keys), generation);
                }
                in_force[p] = s;
            }
        }
    }
});
