//! certbound's RSA verifiers against AWS-LC (`aws-lc-rs`) and committed
//! vectors at odd modulus sizes (tests/vectors/rsa/, made by generate.py
//! there with OpenSSL): 2049, 2057, 2065, 2113, 3073 and 4095 bits, both
//! schemes, all three hashes, valid signatures and encodings malformed one
//! place at a time. Each case's expected outcome is in the file; certbound
//! and AWS-LC must both reach it. PSS: only a salt of hLen octets verifies
//! (RFC 7518 §3.5).
#![cfg(not(target_arch = "wasm32"))]
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use aws_lc_rs::signature::{self, RsaParameters, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certbound::crypto::rsa::{Hash, RsaKey};
use serde_json::Value;

const ALGS: [&str; 6] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

fn ours(key: &RsaKey, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    let hash = match &alg[2..] {
        "256" => Hash::Sha256,
        "384" => Hash::Sha384,
        _ => Hash::Sha512,
    };
    if alg.starts_with("PS") {
        key.verify_pss(hash, msg, sig)
    } else {
        key.verify(hash, msg, sig)
    }
}

fn oracle(n: &[u8], e: &[u8], alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    let params: &RsaParameters = match alg {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
        _ => &signature::RSA_PSS_2048_8192_SHA512,
    };
    RsaPublicKeyComponents { n, e }
        .verify(params, msg, sig)
        .is_ok()
}

fn b64(v: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(v.as_str().expect("string"))
        .expect("base64url")
}

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/rsa/rsa_vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors")).expect("json")
}

#[test]
fn odd_modulus_sizes_agree_with_aws_lc_and_the_vectors() {
    let vectors = vectors();
    let mut seen_bits = vec![];
    let (mut checked, mut valid) = (0, 0);
    for key in vectors["keys"].as_array().expect("keys") {
        let (n, e) = (b64(&key["n"]), b64(&key["e"]));
        let bits = key["bits"].as_u64().expect("bits") as usize;
        let ours_key = RsaKey::new(&n, &e).expect("an accepted size");
        assert_eq!(ours_key.bits(), bits);
        seen_bits.push(bits);
        let mut comments = std::collections::BTreeSet::new();
        for case in key["cases"].as_array().expect("cases") {
            let alg = case["alg"].as_str().expect("alg");
            let (msg, sig) = (b64(&case["msg"]), b64(&case["sig"]));
            let expected = case["valid"].as_bool().expect("valid");
            let what = format!("{bits} bits {alg}: {}", case["comment"]);
            assert_eq!(
                ours(&ours_key, alg, &msg, &sig),
                expected,
                "certbound, {what}"
            );
            assert_eq!(
                oracle(&n, &e, alg, &msg, &sig),
                expected,
                "aws-lc-rs, {what}"
            );
            checked += 1;
            comments.insert(format!("{}:{}", &alg[..2], case["comment"]));
            if expected {
                valid += 1;
                // A signature valid under one algorithm is valid under no other.
                for other in ALGS.iter().filter(|&&a| a != alg) {
                    assert!(!ours(&ours_key, other, &msg, &sig), "{what} as {other}");
                    assert!(!oracle(&n, &e, other, &msg, &sig), "{what} as {other}");
                }
            }
        }
        // Every malformation appears for every key (the leading-zero pair
        // only when the generator found such a signature).
        assert!(comments.len() >= 50, "{bits}: {}", comments.len());
    }
    assert_eq!(seen_bits, [2049, 2057, 2065, 2113, 3073, 4095]);
    assert!(checked > 1000 && valid > 100, "{checked} {valid}");
}

/// Keys outside 2048..=4096 bits or with e != 65537 are refused at import,
/// even though their signatures are genuine (AWS-LC accepts 2048..=8192
/// bits and small exponents, so it verifies the 4097-bit and e = 3 ones).
#[test]
fn keys_outside_the_accepted_range_are_refused() {
    let vectors = vectors();
    let refused = vectors["refused_keys"].as_array().expect("refused");
    assert_eq!(refused.len(), 3);
    for key in refused {
        let (n, e) = (b64(&key["n"]), b64(&key["e"]));
        assert!(RsaKey::new(&n, &e).is_none(), "{}", key["bits"]);
        let bits = key["bits"].as_u64().expect("bits");
        for case in key["cases"].as_array().expect("cases") {
            let alg = case["alg"].as_str().expect("alg");
            let genuine = oracle(&n, &e, alg, &b64(&case["msg"]), &b64(&case["sig"]));
            assert_eq!(genuine, bits >= 2048, "{bits} {alg}");
        }
    }
}
