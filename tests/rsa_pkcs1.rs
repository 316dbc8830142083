//! certbound's RSA verifiers (`certbound::crypto::rsa`): RSASSA-PKCS1-v1_5
//! (RS256/RS384/RS512) and RSASSA-PSS (PS256/PS384/PS512), differentially
//! against jwt-simple's generic verifiers on real tokens and their
//! corruptions. (Wycheproof's vectors: tests/crypto_wycheproof.rs; odd
//! modulus sizes: tests/crypto_rsa.rs.)

#[cfg(test)]
mod differential;

use certbound::{Hash, RsaKey};
use differential::{Flips, split};
use jwt_simple::prelude::*;

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
