//! Arbitrary bytes as the filter configuration, with a VM environment in
//! which every variable holds the vectors' JWKS.
//!
//! Oracles: no panic; an accepted configuration is internally consistent
//! (providers found by their issuer, rules point at existing providers,
//! bounded settings within their bounds, output headers sorted, unique and
//! lowercase); a refusal names a message; and the accepted policy can decide
//! a few fixed requests without panicking.
#![no_main]

use certbound::{
    IntrospectionCache, JwksSource, KeyRing, MAX_CLOCK_SKEW, MAX_JWT_CACHE_SIZE,
    MAX_MAX_TOKEN_BYTES, Request, Requirement, TokenCache, TokenSource, Verifier, decide,
};
use certbound_fuzz::{env, fixtures};
use libfuzzer_sys::fuzz_target;

fn providers_exist(r: &Requirement, n: usize) -> bool {
    match r {
        Requirement::Provider(i) => i.index() < n,
        Requirement::ProviderAudiences(i, audiences) => i.index() < n && !audiences.is_empty(),
        Requirement::Any(l) | Requirement::All(l) => {
            !l.is_empty() && l.iter().all(|r| providers_exist(r, n))
        }
        Requirement::AllowMissing | Requirement::AllowMissingOrFailed => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let policy = match certbound::parse(data, &env()) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.message.is_empty());
            let _ = e.to_string();
            return;
        }
    };
    let n = policy.providers.len();
    assert!(n > 0);
    assert!((256..=MAX_MAX_TOKEN_BYTES).contains(&policy.max_token_bytes));
    assert!(policy.jwt_cache_size <= MAX_JWT_CACHE_SIZE);
    for (i, p) in policy.each_provider() {
        assert_eq!(policy.provider_by_issuer(&p.issuer), Some(i));
        assert!(!p.issuer.is_empty() && !p.name.is_empty());
        if let JwksSource::Local { keys, .. } = &p.jwks {
            assert!(!keys.is_empty());
        }
        assert!(!p.sources.is_empty());
        assert!(!p.algorithms.is_empty());
        assert!(p.clock_skew <= MAX_CLOCK_SKEW);
        assert!(p.max_lifetime.is_none_or(|m| m > 0));
        for s in &p.sources {
            match s {
                TokenSource::Header { name, .. } => {
                    assert!(!name.is_empty() && *name == name.to_ascii_lowercase());
                    assert!(
                        !p.output_headers().any(|h| h == name),
                        "token source {name} is also an output header"
                    );
                }
                TokenSource::Param(x) | TokenSource::Cookie(x) => assert!(!x.is_empty()),
            }
        }
        for h in p.output_headers() {
            assert!(policy.output_headers.iter().any(|o| o == h));
        }
    }
    assert!(policy.output_headers.windows(2).all(|w| w[0] < w[1]));
    for h in &policy.output_headers {
        assert!(!h.is_empty() && *h == h.to_ascii_lowercase());
    }
    for r in &policy.rules {
        if let Some(req) = &r.requires {
            assert!(providers_exist(req, n));
        } else {
            assert!(r.required_scopes.is_empty());
        }
    }

    // Drive the accepted policy once with and once without a good token.
    let f = fixtures();
    let good = f
        .tokens
        .iter()
        .find(|t| t.name == "good_ES256")
        .map(|t| t.token.as_str())
        .unwrap_or("");
    let path = "/api/orders?access_token=x";
    let with = [
        ("authorization".to_string(), format!("Bearer {good}")),
        ("cookie".to_string(), format!("at={good}")),
    ];
    let keys = KeyRing::for_policy(&policy);
    let mut cache = TokenCache::new(policy.jwt_cache_size.min(4));
    let introspection = IntrospectionCache::new(1);
    for headers in [&with[..], &with[..], &[][..]] {
        let mut cert = Some(f.client_a);
        let verifier = Verifier {
            keys: &keys,
            cache: &mut cache,
            introspection: &introspection,
        };
        let _ = decide(
            &policy,
            verifier,
            Request {
                path,
                headers: &headers.iter().cloned().collect(),
            },
            &mut cert,
            f.now,
        );
    }
});
