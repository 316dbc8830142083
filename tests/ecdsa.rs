//! The table-based ES256 and ES384 verifiers (`certbound::crypto::ecdsa`)
//! differentially against the generic verifiers (the `p256` crate's ECDSA;
//! jwt-simple's ES384 over `p384`) on random keys, messages and corruptions.
//! (Wycheproof's vectors: tests/crypto_wycheproof.rs.)

#[cfg(test)]
mod differential;

use certbound::{Es256Key, Es384Key};
use differential::{Flips, split};
use jwt_simple::prelude::*;

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
