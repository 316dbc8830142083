//! certbound's EdDSA verifier (`certbound::crypto::eddsa`, ed25519-dalek's strict
//! verification) differentially against jwt-simple's (ed25519-compact),
//! which it replaced, on real tokens and their corruptions. (Wycheproof's
//! vectors: tests/crypto_wycheproof.rs.)

#[cfg(test)]
mod differential;

use certbound::Ed25519Key;
use differential::{Flips, split};
use jwt_simple::prelude::*;

#[test]
fn keys_that_are_no_points_are_refused() {
    assert!(Ed25519Key::new(&[0u8; 31]).is_none());
    assert!(Ed25519Key::new(&[0u8; 33]).is_none());
    // y = 2 is not the y of a curve point.
    let mut y2 = [0u8; 32];
    y2[0] = 2;
    assert!(Ed25519Key::new(&y2).is_none());
}

#[test]
fn small_order_keys_verify_nothing() {
    // The identity (y = 1): every signature with R = identity and S = 0
    // satisfies the cofactorless equation; the strict check refuses it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let key = Ed25519Key::new(&identity).expect("a point");
    let mut sig = [0u8; 64];
    sig[0] = 1;
    assert!(!key.verify(b"anything", &sig));
}

#[test]
fn agrees_with_jwt_simple_on_tokens_and_corruptions() {
    let mut flips = Flips::new(0x517c_c1b7_2722_0a95);
    for round in 0..8 {
        let pair = Ed25519KeyPair::generate();
        let generic = pair.public_key();
        let ours = Ed25519Key::new(&generic.to_bytes()).expect("key");
        let token = pair
            .sign(Claims::create(Duration::from_mins(5)).with_subject(format!("s{round}")))
            .expect("sign");
        let (input, sig) = split(&token);
        assert!(ours.verify(input.as_bytes(), &sig));
        assert!(generic.verify_token::<NoCustomClaims>(&token, None).is_ok());
        assert!(!ours.verify(b"another message", &sig));
        flips.check(
            16,
            input,
            &sig,
            |s| ours.verify(input.as_bytes(), s),
            |t| generic.verify_token::<NoCustomClaims>(t, None).is_ok(),
        );
        // S + L: the same point, a non-canonical scalar (RFC 8032 §5.1.7).
        let mut malleated = sig.clone();
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(malleated[32 + i]) + u16::from(l[i]) + carry;
            malleated[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert!(!ours.verify(input.as_bytes(), &malleated));
        assert!(!ours.verify(input.as_bytes(), &sig[..63]));
        let mut long = sig.clone();
        long.push(0);
        assert!(!ours.verify(input.as_bytes(), &long));
    }
}
