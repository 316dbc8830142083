//! certbound's own signature verifiers (`ecdsa`, `rsa_pkcs1`, `eddsa`)
//! against the generic ones they replace, on the vectors' keys and tokens:
//! the good signature of each of ES256/ES384/RS256/RS384/RS512/PS256/PS384/
//! PS512/EdDSA, edited byte by byte,
//! truncated, extended or replaced by fuzz bytes, and (ES256) the signed
//! message edited too.
//!
//! Oracle: certbound accepts exactly when the generic verifier does (the
//! `p256` crate's ECDSA for ES256; jwt-simple over `p384` for ES384, over
//! the `rsa` crate for RSA and over ed25519-compact for EdDSA, whose message is left unedited so
//! that only the signature decides).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use certbound::Ed25519Key;
use certbound::{Es256Key, Es384Key};
use certbound::{Hash, RsaKey};
use certbound_fuzz::{fixtures, vectors};
use jwt_simple::prelude::*;
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Verifier as _;

#[derive(Arbitrary, Debug)]
struct Input {
    alg: u8,
    sig_edits: Vec<(u16, u8)>,
    truncate: Option<u16>,
    extend: Vec<u8>,
    replace: Option<Vec<u8>>,
    msg_edits: Vec<(u16, u8)>,
}

struct Keys {
    es256: (Es256Key, p256::ecdsa::VerifyingKey),
    rsa: (RsaKey, RS256PublicKey, RS384PublicKey, RS512PublicKey),
    pss: (PS256PublicKey, PS384PublicKey, PS512PublicKey),
    eddsa: (Ed25519Key, Ed25519PublicKey),
    es384: (Es384Key, ES384PublicKey),
}

fn jwk(kid: &str) -> String {
    vectors()["jwks"]["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .map(|k| k.to_string())
        .expect("vectors.json has the key")
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let es = ES256PublicKey::from_jwk(&jwk("es256")).expect("es256 jwk");
        let generic: p256::ecdsa::VerifyingKey = *es.public_key().as_ref();
        let rs256 = RS256PublicKey::from_jwk(&jwk("rsa")).expect("rsa jwk");
        let c = rs256.to_components();
        Keys {
            es256: (Es256Key::new(*generic.as_affine()), generic),
            rsa: (
                RsaKey::new(&c.n, &c.e).expect("rsa key"),
                rs256,
                RS384PublicKey::from_jwk(&jwk("rsa")).expect("rsa jwk"),
                RS512PublicKey::from_jwk(&jwk("rsa")).expect("rsa jwk"),
            ),
            pss: (
                PS256PublicKey::from_jwk(&jwk("rsa")).expect("rsa jwk"),
                PS384PublicKey::from_jwk(&jwk("rsa")).expect("rsa jwk"),
                PS512PublicKey::from_jwk(&jwk("rsa")).expect("rsa jwk"),
            ),
            es384: {
                let generic = ES384PublicKey::from_jwk(&jwk("es384")).expect("es384 jwk");
                let ours = Es384Key::new(*generic.public_key().as_ref().as_affine());
                (ours, generic)
            },
            eddsa: {
                let generic = Ed25519PublicKey::from_jwk(&jwk("ed25519")).expect("ed25519 jwk");
                let ours = Ed25519Key::new(&generic.to_bytes()).expect("ed25519 key");
                (ours, generic)
            },
        }
    })
}

fn edit(bytes: &mut Vec<u8>, edits: &[(u16, u8)]) {
    let len = bytes.len().max(1);
    for &(at, x) in edits {
        if let Some(b) = bytes.get_mut(usize::from(at) % len) {
            *b ^= x;
        }
    }
}

fuzz_target!(|input: Input| {
    let f = fixtures();
    let name = match input.alg % 9 {
        0 => "good_ES256",
        1 => "good_RS256",
        2 => "good_RS384",
        3 => "good_RS512",
        4 => "good_PS256",
        5 => "good_PS384",
        6 => "good_PS512",
        7 => "good_EdDSA",
        _ => "good_ES384",
    };
    let token = vectors()["tokens"][name].as_str().expect("vector token");
    let (signing_input, sig_b64) = token.rsplit_once('.').expect("compact");
    let mut sig = URL_SAFE_NO_PAD.decode(sig_b64).expect("base64url");
    edit(&mut sig, &input.sig_edits);
    if let Some(n) = input.truncate {
        sig.truncate(usize::from(n));
    }
    sig.extend_from_slice(&input.extend);
    if let Some(r) = input.replace {
        sig = r;
    }
    let k = keys();
    if name == "good_ES256" {
        let mut message = signing_input.as_bytes().to_vec();
        edit(&mut message, &input.msg_edits);
        let ours = k.es256.0.verify(&message, &sig);
        let generic = p256::ecdsa::Signature::from_slice(&sig)
            .is_ok_and(|s| k.es256.1.verify(&message, &s).is_ok());
        assert_eq!(ours, generic, "ES256 verifiers disagree");
        return;
    }
    let options = VerificationOptions {
        accept_future: true,
        artificial_time: Some(UnixTimeStamp::from_secs(f.now.max(0) as u64)),
        time_tolerance: Some(Duration::from_days(3650)),
        ..VerificationOptions::default()
    };
    let forged = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    let m = signing_input.as_bytes();
    let generic = |ok: Result<JWTClaims<NoCustomClaims>, jwt_simple::Error>| ok.is_ok();
    let (ours, generic) = match name {
        "good_ES384" => (
            k.es384.0.verify(m, &sig),
            generic(k.es384.1.verify_token(&forged, Some(options))),
        ),
        "good_EdDSA" => (
            k.eddsa.0.verify(m, &sig),
            generic(k.eddsa.1.verify_token(&forged, Some(options))),
        ),
        "good_PS256" => (
            k.rsa.0.verify_pss(Hash::Sha256, m, &sig),
            generic(k.pss.0.verify_token(&forged, Some(options))),
        ),
        "good_PS384" => (
            k.rsa.0.verify_pss(Hash::Sha384, m, &sig),
            generic(k.pss.1.verify_token(&forged, Some(options))),
        ),
        "good_PS512" => (
            k.rsa.0.verify_pss(Hash::Sha512, m, &sig),
            generic(k.pss.2.verify_token(&forged, Some(options))),
        ),
        "good_RS256" => (
            k.rsa.0.verify(Hash::Sha256, signing_input.as_bytes(), &sig),
            k.rsa
                .1
                .verify_token::<NoCustomClaims>(&forged, Some(options))
                .is_ok(),
        ),
        "good_RS384" => (
            k.rsa.0.verify(Hash::Sha384, signing_input.as_bytes(), &sig),
            k.rsa
                .2
                .verify_token::<NoCustomClaims>(&forged, Some(options))
                .is_ok(),
        ),
        _ => (
            k.rsa.0.verify(Hash::Sha512, signing_input.as_bytes(), &sig),
            k.rsa
                .3
                .verify_token::<NoCustomClaims>(&forged, Some(options))
                .is_ok(),
        ),
    };
    assert_eq!(ours, generic, "{name} verifiers disagree");
});
