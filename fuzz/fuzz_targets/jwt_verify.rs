//! Arbitrary bytes as a token, verified at the vectors' fixed `now` against
//! two policies built from the vectors' key sets.
//!
//! Oracles: no panic; `Ok` only for a token byte-identical to a vector
//! token that the same policy accepts (a fuzzer cannot forge a signature,
//! so any other `Ok` is a wrong accept); an accepted token's claims are the
//! ones it carries; and the verified-token cache changes nothing: a
//! verification through a cache, first a miss and then a hit, gives the
//! same answer as one without.
#![no_main]

use std::sync::Arc;

use certbound::TokenCache;
use certbound::{Rejection, VerifiedToken};
use certbound_fuzz::{fixtures, verify_uncached};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn same(
    a: &Result<Arc<VerifiedToken>, Rejection>,
    b: &Result<Arc<VerifiedToken>, Rejection>,
) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => {
            x.provider == y.provider
                && x.claims == y.claims
                && x.payload_b64 == y.payload_b64
                && x.times == y.times
        }
        (Err(x), Err(y)) => x == y,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    let token = String::from_utf8_lossy(data);
    for vp in &f.verify_policies {
        let plain = verify_uncached(&vp.policy, &vp.keys, &token, f.now);
        let mut cache = TokenCache::new(4);
        let miss = certbound::verify_cached(
            &vp.policy,
            &vp.keys,
            &mut cache,
            &token,
            f.now,
            certbound::Audiences::OfProvider,
        );
        let hit = certbound::verify_cached(
            &vp.policy,
            &vp.keys,
            &mut cache,
            &token,
            f.now,
            certbound::Audiences::OfProvider,
        );
        assert!(
            same(&plain, &miss),
            "cache miss differs: {plain:?} {miss:?}"
        );
        assert!(same(&plain, &hit), "cache hit differs: {plain:?} {hit:?}");
        let Ok(v) = plain else {
            continue;
        };
        assert!(
            vp.accepted.contains(token.as_ref()),
            "WRONG ACCEPT: policy {} accepted a token that is not a vector token: {token:?}",
            vp.name
        );
        let provider = vp.policy.provider(v.provider);
        assert_eq!(
            v.claims.get("iss").and_then(Value::as_str),
            Some(provider.issuer.as_str())
        );
        assert_eq!(token.split('.').nth(1), Some(v.payload_b64.as_str()));
    }
});
