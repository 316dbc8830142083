//! certbound's verifiers against an independent implementation, AWS-LC
//! (`aws-lc-rs`), on keys, messages and signatures made from the input.
//!
//! ES256/ES384: the private key and the nonce come from the input, the
//! signature is made here (FIPS 186-5 §6.4.1), then edited; the key is
//! fresh (certbound's plain path) or has its table already (the table
//! path). RS256/384/512 and PS256/384/512: five fixed test keys of 2048,
//! 2049, 3072, 4095 and 4096 bits (tests/vectors/rsa/fuzz_*.pk8), signed
//! by AWS-LC (PKCS1-v1_5 is deterministic; PSS draws a random salt, which
//! changes no verdict). EdDSA: the key's seed comes from the input.
//!
//! Edits: none, a bit flipped, bytes set, truncated, extended, the first
//! octet dropped, replaced by the input's bytes, r or s set to an edge
//! value (0, 1, n − 1, n, n + 1, all ones, 2^(bits−1)), s negated, or the
//! signature checked against another message.
//!
//! Oracle: certbound accepts exactly when AWS-LC does; an unedited
//! signature (and ECDSA's negated s) verifies in both.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use certbound::crypto::ecdsa::{EcdsaKey, TableCurve};
use certbound::crypto::eddsa::Ed25519Key;
use certbound::crypto::rsa::{Hash, RsaKey};
use libfuzzer_sys::fuzz_target;
use p256::elliptic_curve::FieldBytes;
use p256::elliptic_curve::ff::{Field, PrimeField};
use p256::elliptic_curve::group::{Curve, Group};
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::sec1::ToSec1Point;

#[derive(Arbitrary, Debug)]
struct Input {
    alg: u8,
    key: [u8; 48],
    nonce: [u8; 48],
    message: Vec<u8>,
    table: bool,
    edit: Edit,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    None,
    Flip(u16),
    Set(Vec<(u16, u8)>),
    Truncate(u16),
    Extend(Vec<u8>),
    DropFirst,
    Raw(Vec<u8>),
    Scalar { s: bool, edge: u8 },
    NegateS,
    OtherMessage(Vec<u8>),
}

/// The edited signature and the message to verify it against; `None` for
/// an edit that does not apply.
fn edit(input: &Input, sig: &[u8], edge: impl Fn(u8) -> Vec<u8>) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut sig = sig.to_vec();
    let mut message = input.message.clone();
    match &input.edit {
        Edit::None | Edit::NegateS => {}
        Edit::Flip(bit) => {
            let bit = usize::from(*bit) % (sig.len() * 8);
            sig[bit / 8] ^= 1 << (bit % 8);
        }
        Edit::Set(edits) => {
            for &(at, byte) in edits {
                let at = usize::from(at) % sig.len();
                sig[at] = byte;
            }
        }
        Edit::Truncate(len) => sig.truncate(usize::from(*len) % sig.len()),
        Edit::Extend(more) => sig.extend_from_slice(more),
        Edit::DropFirst => {
            sig.remove(0);
        }
        Edit::Raw(bytes) => sig = bytes.clone(),
        Edit::Scalar { s, edge: which } => {
            let value = edge(*which);
            if value.is_empty() {
                return None;
            }
            let half = sig.len() / 2;
            let at = if *s { half } else { 0 };
            sig[at..at + half].copy_from_slice(&value);
        }
        Edit::OtherMessage(other) => message = other.clone(),
    }
    Some((sig, message))
}

fn expects_valid(input: &Input) -> bool {
    matches!(input.edit, Edit::None | Edit::NegateS)
}

// --- ECDSA ---------------------------------------------------------------

fn scalar<C: TableCurve>(bytes: &[u8]) -> C::Scalar {
    let mut repr = FieldBytes::<C>::default();
    let len = repr.len();
    repr.copy_from_slice(&bytes[..len]);
    let k = <C::Scalar as Reduce<FieldBytes<C>>>::reduce(&repr);
    if bool::from(k.is_zero()) {
        C::Scalar::ONE
    } else {
        k
    }
}

fn to_bytes<C: TableCurve>(x: &C::Scalar) -> Vec<u8> {
    let repr = x.to_repr();
    let slice: &[u8] = repr.as_ref();
    slice.to_vec()
}

/// `n`, `n ± 1`, 0, 1, all ones and 2^(bits−1) as big-endian field-length
/// octets (n itself is not a scalar: n − 1 plus one, carried by hand).
fn ecdsa_edge<C: TableCurve>(which: u8) -> Vec<u8> {
    let minus_one = to_bytes::<C>(&-C::Scalar::ONE);
    let add = |mut bytes: Vec<u8>, mut carry: u16| {
        for byte in bytes.iter_mut().rev() {
            let sum = u16::from(*byte) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        bytes
    };
    let len = minus_one.len();
    match which % 8 {
        0 => vec![0; len],
        1 => add(vec![0; len], 1),
        2 => minus_one,
        3 => add(minus_one, 1),
        4 => add(minus_one, 2),
        5 => vec![0xff; len],
        6 => {
            let mut top = vec![0; len];
            top[0] = 0x80;
            top
        }
        _ => vec![],
    }
}

fn ecdsa<C: TableCurve>(
    input: &Input,
    oracle: &'static signature::EcdsaVerificationAlgorithm,
    sec1: impl Fn(&C::AffinePoint) -> Vec<u8>,
) {
    let g = C::ProjectivePoint::generator();
    let d = scalar::<C>(&input.key);
    let k = scalar::<C>(&input.nonce);
    let q = (g * d).to_affine();
    let e = {
        let digest = C::digest(&input.message);
        let mut repr = FieldBytes::<C>::default();
        repr.copy_from_slice(&digest);
        <C::Scalar as Reduce<FieldBytes<C>>>::reduce(&repr)
    };
    let r = <C::Scalar as Reduce<FieldBytes<C>>>::reduce(&(g * k).to_affine().x());
    let Some(k_inv) = Option::<C::Scalar>::from(k.invert()) else {
        return;
    };
    let mut s = k_inv * (e + r * d);
    if bool::from(r.is_zero()) || bool::from(s.is_zero()) {
        return;
    }
    if matches!(input.edit, Edit::NegateS) {
        s = -s;
    }
    let sig = [to_bytes::<C>(&r), to_bytes::<C>(&s)].concat();
    let Some((sig, message)) = edit(input, &sig, ecdsa_edge::<C>) else {
        return;
    };
    let key = EcdsaKey::<C>::new(q);
    if input.table {
        key.build_table();
    }
    let ours = key.verify(&message, &sig);
    let theirs = UnparsedPublicKey::new(oracle, sec1(&q))
        .verify(&message, &sig)
        .is_ok();
    assert_eq!(ours, theirs, "certbound {ours}, aws-lc-rs {theirs}");
    if expects_valid(input) {
        assert!(ours, "an unedited signature was refused");
    }
}

// --- RSA -------------------------------------------------------------------

struct Rsa {
    pair: RsaKeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
    ours: RsaKey,
}

fn rsa_keys() -> &'static [Rsa] {
    static KEYS: OnceLock<Vec<Rsa>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ders: [&[u8]; 5] = [
            include_bytes!("../../tests/vectors/rsa/fuzz_2048.pk8"),
            include_bytes!("../../tests/vectors/rsa/fuzz_2049.pk8"),
            include_bytes!("../../tests/vectors/rsa/fuzz_3072.pk8"),
            include_bytes!("../../tests/vectors/rsa/fuzz_4095.pk8"),
            include_bytes!("../../tests/vectors/rsa/fuzz_4096.pk8"),
        ];
        ders.iter()
            .map(|der| {
                let pair = RsaKeyPair::from_pkcs8(der).expect("a test key");
                let c = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                let ours = RsaKey::new(&c.n, &c.e).expect("certbound accepts it");
                Rsa {
                    pair,
                    n: c.n,
                    e: c.e,
                    ours,
                }
            })
            .collect()
    })
}

fn rsa(input: &Input, alg: u8) {
    let key = &rsa_keys()[usize::from(input.key[0]) % 5];
    let (hash, sign, verify): (
        _,
        &'static dyn signature::RsaEncoding,
        &'static signature::RsaParameters,
    ) = match alg {
        0 => (
            Hash::Sha256,
            &signature::RSA_PKCS1_SHA256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        1 => (
            Hash::Sha384,
            &signature::RSA_PKCS1_SHA384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
        ),
        2 => (
            Hash::Sha512,
            &signature::RSA_PKCS1_SHA512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
        ),
        3 => (
            Hash::Sha256,
            &signature::RSA_PSS_SHA256,
            &signature::RSA_PSS_2048_8192_SHA256,
        ),
        4 => (
            Hash::Sha384,
            &signature::RSA_PSS_SHA384,
            &signature::RSA_PSS_2048_8192_SHA384,
        ),
        _ => (
            Hash::Sha512,
            &signature::RSA_PSS_SHA512,
            &signature::RSA_PSS_2048_8192_SHA512,
        ),
    };
    let mut sig = vec![0; key.pair.public_modulus_len()];
    key.pair
        .sign(sign, &SystemRandom::new(), &input.message, &mut sig)
        .expect("sign");
    // Edge values of RSA: s = 0, 1, n − 1, n, all ones.
    let n = &key.n;
    let edge = |which: u8| -> Vec<u8> {
        let len = n.len();
        let mut out = match which % 5 {
            0 => vec![0; len],
            1 => {
                let mut one = vec![0; len];
                one[len - 1] = 1;
                one
            }
            2 => {
                let mut m = n.clone();
                m[len - 1] -= 1; // n is odd
                m
            }
            3 => n.clone(),
            _ => vec![0xff; len],
        };
        // Two halves of a whole: the Scalar edit writes one half.
        out.truncate(len / 2);
        out
    };
    let Some((sig, message)) = edit(input, &sig, edge) else {
        return;
    };
    let ours = if alg < 3 {
        key.ours.verify(hash, &message, &sig)
    } else {
        key.ours.verify_pss(hash, &message, &sig)
    };
    let theirs = PublicKeyComponents {
        n: &key.n[..],
        e: &key.e[..],
    }
    .verify(verify, &message, &sig)
    .is_ok();
    assert_eq!(ours, theirs, "certbound {ours}, aws-lc-rs {theirs}");
    if matches!(input.edit, Edit::None) {
        assert!(ours, "an unedited signature was refused");
    }
}

// --- EdDSA -----------------------------------------------------------------

fn eddsa(input: &Input) {
    let pair = Ed25519KeyPair::from_seed_unchecked(&input.key[..32]).expect("any seed");
    let public = pair.public_key().as_ref().to_vec();
    let sig = pair.sign(&input.message).as_ref().to_vec();
    let edge = |_| vec![];
    let Some((sig, message)) = edit(input, &sig, edge) else {
        return;
    };
    let ours = Ed25519Key::new(&public).is_some_and(|k| k.verify(&message, &sig));
    let theirs = UnparsedPublicKey::new(&signature::ED25519, &public)
        .verify(&message, &sig)
        .is_ok();
    assert_eq!(ours, theirs, "certbound {ours}, aws-lc-rs {theirs}");
    if matches!(input.edit, Edit::None) {
        assert!(ours, "an unedited signature was refused");
    }
}

fuzz_target!(|input: Input| {
    match input.alg % 9 {
        0 => ecdsa::<p256::NistP256>(&input, &signature::ECDSA_P256_SHA256_FIXED, |q| {
            q.to_sec1_point(false).as_bytes().to_vec()
        }),
        1 => ecdsa::<p384::NistP384>(&input, &signature::ECDSA_P384_SHA384_FIXED, |q| {
            q.to_sec1_point(false).as_bytes().to_vec()
        }),
        8 => eddsa(&input),
        alg => rsa(&input, alg - 2),
    }
});
