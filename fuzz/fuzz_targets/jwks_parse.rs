//! Arbitrary text as a JWKS document.
//!
//! Oracles: no panic; a parsed set has between 1 and MAX_KEYS keys; every
//! skipped key has an index into the document's keys and a reason; key
//! selection on the result never panics.
#![no_main]

use certbound::{Alg, JwksError, KeySet, MAX_KEYS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match KeySet::parse(&text) {
        Ok((set, skipped)) => {
            assert!(
                !set.is_empty() && set.len() <= MAX_KEYS,
                "{} keys",
                set.len()
            );
            for s in &skipped {
                assert!(!s.reason.is_empty());
            }
            let mut seen = std::collections::BTreeSet::new();
            for s in &skipped {
                assert!(seen.insert(s.index), "key {} skipped twice", s.index);
            }
            for alg in Alg::ALL {
                for require_alg in [false, true] {
                    let _ = set.select(None, alg, require_alg);
                    let _ = set.select(Some(""), alg, require_alg);
                    for s in &skipped {
                        let _ = set.select(s.kid.as_deref(), alg, require_alg);
                    }
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            if let JwksError::NoUsableKey(skipped) = &e {
                for s in skipped {
                    assert!(!s.reason.is_empty());
                }
            }
        }
    }
});
