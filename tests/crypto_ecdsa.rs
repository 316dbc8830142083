//! certbound's table-based ES256/ES384 verifiers (`jose::crypto::ecdsa`)
//! against the generic `p256`/`p384` arithmetic and AWS-LC (`aws-lc-rs`):
//!
//! * the window tables multiply edge scalars right (2^i, 2^i ± 1 for every
//!   bit, all-ones windows and runs that carry, digits at the recoding's
//!   boundaries, 0, 1, n − 1, n − 2, (n ± 1)/2) for the bases G, −G, 2G and
//!   a random point;
//! * signatures with chosen `u1`, `u2` (the public key recovered from
//!   r, s and the digest) verify exactly when AWS-LC says so, through both
//!   of certbound's paths (a key without and with its table), including
//!   `R` = identity, `u1·G = u2·Q` and `x(R) ≥ n`.
#![cfg(not(target_arch = "wasm32"))]
// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{self, EcdsaVerificationAlgorithm, UnparsedPublicKey};
use certbound::crypto::ecdsa::{EcdsaKey, Table, TableCurve};
use p256::elliptic_curve::ff::{Field, PrimeField};
use p256::elliptic_curve::group::{Curve, Group};
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::sec1::{FromSec1Point, ToSec1Point};
use p256::elliptic_curve::{CurveArithmetic, FieldBytes};

/// What the tests need of a curve besides certbound's `TableCurve`.
trait TestCurve: TableCurve {
    const NAME: &'static str;
    fn oracle() -> &'static EcdsaVerificationAlgorithm;
    fn digest_algorithm() -> &'static digest::Algorithm;
    /// Uncompressed SEC1 encoding.
    fn sec1(point: &Self::AffinePoint) -> Vec<u8>;
    /// The point with x-coordinate `x` and even y, if any.
    fn lift_x(x: &[u8]) -> Option<Self::AffinePoint>;
}

impl TestCurve for p256::NistP256 {
    const NAME: &'static str = "P-256";
    fn oracle() -> &'static EcdsaVerificationAlgorithm {
        &signature::ECDSA_P256_SHA256_FIXED
    }
    fn digest_algorithm() -> &'static digest::Algorithm {
        &digest::SHA256
    }
    fn sec1(point: &p256::AffinePoint) -> Vec<u8> {
        point.to_sec1_point(false).as_bytes().to_vec()
    }
    fn lift_x(x: &[u8]) -> Option<p256::AffinePoint> {
        let point = p256::Sec1Point::from_bytes([&[2u8][..], x].concat()).ok()?;
        p256::AffinePoint::from_sec1_point(&point).into()
    }
}

impl TestCurve for p384::NistP384 {
    const NAME: &'static str = "P-384";
    fn oracle() -> &'static EcdsaVerificationAlgorithm {
        &signature::ECDSA_P384_SHA384_FIXED
    }
    fn digest_algorithm() -> &'static digest::Algorithm {
        &digest::SHA384
    }
    fn sec1(point: &p384::AffinePoint) -> Vec<u8> {
        point.to_sec1_point(false).as_bytes().to_vec()
    }
    fn lift_x(x: &[u8]) -> Option<p384::AffinePoint> {
        let point = p384::Sec1Point::from_bytes([&[2u8][..], x].concat()).ok()?;
        p384::AffinePoint::from_sec1_point(&point).into()
    }
}

type Scalar<C> = <C as CurveArithmetic>::Scalar;
type Point<C> = <C as CurveArithmetic>::ProjectivePoint;

/// Deterministic xorshift, so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn scalar<C: TestCurve>(&mut self) -> Scalar<C> {
        let mut bytes = FieldBytes::<C>::default();
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_be_bytes()[..chunk.len()]);
        }
        <Scalar<C> as Reduce<FieldBytes<C>>>::reduce(&bytes)
    }
}

fn bytes<C: TestCurve>(x: &Scalar<C>) -> Vec<u8> {
    let repr = x.to_repr();
    let slice: &[u8] = repr.as_ref();
    slice.to_vec()
}

fn inverse<C: TestCurve>(x: &Scalar<C>) -> Scalar<C> {
    Option::from(Field::invert(x)).expect("nonzero")
}

/// `(n + 1) / 2`, the inverse of 2.
fn half<C: TestCurve>() -> Scalar<C> {
    inverse::<C>(&Scalar::<C>::from(2u64))
}

/// The table product of `k` and `base` against a reference computed
/// without the table: by doublings and additions of `base` for the
/// structured scalars, by the generic multiplication for the others.
fn table_matches<C: TestCurve>(base: Point<C>, table: &Table<C>, rng: &mut Rng) -> usize {
    let mut checked = 0;
    let mut check = |k: Scalar<C>, expected: Point<C>, what: &str| {
        assert!(table.mul(&k) == expected, "{} {what}", C::NAME);
        checked += 1;
    };
    // powers[i] = 2^i · base, i in 0..=BITS.
    let mut powers = vec![base];
    for _ in 0..C::BITS {
        let last = *powers.last().expect("one");
        powers.push(last.double());
    }
    let mut k = Scalar::<C>::ONE;
    for (i, &p) in powers.iter().take(C::BITS).enumerate() {
        check(k, p, &format!("2^{i}"));
        check(k + Scalar::<C>::ONE, p + base, &format!("2^{i} + 1"));
        // All ones below bit i: a run that carries through every window.
        check(k - Scalar::<C>::ONE, p - base, &format!("2^{i} - 1"));
        k = k.double();
    }
    // One window position at a time: digits 63, 64 (the largest), 65
    // (recoded -63 with a carry), 127 (all ones: -1 and a carry).
    let w = 7;
    for j in 0..C::BITS.div_ceil(w) {
        let low = j * w;
        let (Some(&at), Some(&six), Some(&seven)) =
            (powers.get(low), powers.get(low + 6), powers.get(low + 7))
        else {
            continue;
        };
        let unit = Scalar::<C>::from(2u64).pow_vartime([low as u64]);
        check(
            unit * Scalar::<C>::from(63u64),
            six - at,
            &format!("63·2^{low}"),
        );
        check(unit * Scalar::<C>::from(64u64), six, &format!("64·2^{low}"));
        check(
            unit * Scalar::<C>::from(65u64),
            six + at,
            &format!("65·2^{low}"),
        );
        check(
            unit * Scalar::<C>::from(127u64),
            seven - at,
            &format!("127·2^{low}"),
        );
    }
    // Around the group order and its half: h = 1/2, so 2·(h·P) = P.
    let h = half::<C>();
    check(Scalar::<C>::ZERO, Point::<C>::identity(), "0");
    check(Scalar::<C>::ONE, base, "1");
    check(-Scalar::<C>::ONE, -base, "n - 1");
    check(-Scalar::<C>::from(2u64), -base.double(), "n - 2");
    assert!(table.mul(&h).double() == base, "(n + 1)/2");
    assert!(
        table.mul(&(h - Scalar::<C>::ONE)).double() == -base,
        "(n - 1)/2"
    );
    // n - 2^i: the top windows all ones, then a carry out of the top.
    for i in (0..C::BITS).step_by(5) {
        check(
            -Scalar::<C>::from(2u64).pow_vartime([i as u64]),
            -powers[i],
            &format!("n - 2^{i}"),
        );
    }
    // Random scalars, and random ones with a run of ones spliced in.
    for round in 0..6 {
        let mut k = rng.scalar::<C>();
        if round % 2 == 1 {
            let mut b = bytes::<C>(&k);
            let start = (rng.next() as usize) % (b.len() - 8);
            b[start..start + 8].fill(0xff);
            let mut repr = FieldBytes::<C>::default();
            repr.copy_from_slice(&b);
            k = <Scalar<C> as Reduce<FieldBytes<C>>>::reduce(&repr);
        }
        check(k, base * k, "random");
    }
    checked
}

fn tables_for_every_base<C: TestCurve>(seed: u64) -> usize {
    let mut rng = Rng(seed);
    let g = Point::<C>::generator();
    let random = g * rng.scalar::<C>();
    let mut checked = table_matches::<C>(g, C::generator_table(), &mut rng);
    for base in [-g, g.double(), random] {
        checked += table_matches::<C>(base, &Table::<C>::new(base), &mut rng);
    }
    checked
}

#[test]
fn p256_tables_multiply_edge_scalars_right() {
    let checked = tables_for_every_base::<p256::NistP256>(0x9e37_79b9_7f4a_7c15);
    assert!(checked > 4 * 3 * 256, "{checked}");
}

#[test]
fn p384_tables_multiply_edge_scalars_right() {
    let checked = tables_for_every_base::<p384::NistP384>(0x2545_f491_4f6c_dd1d);
    assert!(checked > 4 * 3 * 384, "{checked}");
}

/// certbound and AWS-LC must say `expected` for `signature` over `digest`
/// under `key`; `key` may or may not have its table yet.
fn judge<C: TestCurve>(
    key: &EcdsaKey<C>,
    q: &C::AffinePoint,
    digest: &[u8],
    signature: &[u8],
    expected: bool,
    what: &str,
) {
    let what = format!("{} {what}", C::NAME);
    let path = if key.has_table() { "table" } else { "plain" };
    assert_eq!(
        key.verify_digest(digest, signature),
        expected,
        "{path} path, {what}"
    );
    let imported = Digest::import_less_safe(digest, C::digest_algorithm()).expect("length");
    let oracle = UnparsedPublicKey::new(C::oracle(), C::sec1(q))
        .verify_digest(&imported, signature)
        .is_ok();
    assert_eq!(oracle, expected, "aws-lc-rs, {what}");
}

/// A key's cases through both of certbound's paths: first on a fresh key
/// (the plain path; only a valid signature may build the table), then, if
/// `with_table`, again with the key's table.
fn judge_all<C: TestCurve>(
    q: &C::AffinePoint,
    digest: &[u8],
    cases: &[(Vec<u8>, bool, String)],
    with_table: bool,
) {
    let key = EcdsaKey::<C>::new(*q);
    // Invalid ones first: they must leave the key without a table.
    for (signature, expected, what) in cases.iter().filter(|c| !c.1) {
        judge::<C>(&key, q, digest, signature, *expected, what);
    }
    assert!(
        !key.has_table(),
        "{}: a table after invalid signatures",
        C::NAME
    );
    for (signature, expected, what) in cases.iter().filter(|c| c.1) {
        judge::<C>(&key, q, digest, signature, *expected, what);
        assert!(
            key.has_table(),
            "{}: no table after a valid signature",
            C::NAME
        );
    }
    if with_table {
        key.build_table();
        for (signature, expected, what) in cases {
            judge::<C>(&key, q, digest, signature, *expected, what);
        }
    }
}

/// The key `Q` and digest for which `(r, s)` makes the verifier compute
/// `R = u1·G + u2·Q` with the given `u1`, `u2` and `R`: `s = r/u2`,
/// `e = u1·s`, `Q = (R − u1·G)/u2`. Returns `Q`, the digest and `r || s`.
/// `r_minus_u1_g` is `R − u1·G`.
fn recover<C: TestCurve>(
    u1: Scalar<C>,
    u2: Scalar<C>,
    r_minus_u1_g: Point<C>,
    r: Scalar<C>,
) -> Option<(C::AffinePoint, Vec<u8>, Vec<u8>)> {
    let s = r * inverse::<C>(&u2);
    let e = u1 * s;
    let q = r_minus_u1_g * inverse::<C>(&u2);
    if bool::from(q.is_identity()) || bool::from(s.is_zero()) {
        return None;
    }
    let signature = [bytes::<C>(&r), bytes::<C>(&s)].concat();
    Some((q.to_affine(), bytes::<C>(&e), signature))
}

fn x_mod_n<C: TestCurve>(point: &Point<C>) -> Scalar<C> {
    <Scalar<C> as Reduce<FieldBytes<C>>>::reduce(&point.to_affine().x())
}

/// `r || s` with `r` replaced.
fn with_r(signature: &[u8], r: &[u8]) -> Vec<u8> {
    let mut out = signature.to_vec();
    out[..r.len()].copy_from_slice(r);
    out
}

fn chosen_u1_u2<C: TestCurve>(seed: u64) -> usize {
    let mut rng = Rng(seed);
    let g = Point::<C>::generator();
    let h = half::<C>();
    let one = Scalar::<C>::ONE;
    let two = Scalar::<C>::from(2u64);
    let edges = [
        ("0", Scalar::<C>::ZERO),
        ("1", one),
        ("2", two),
        ("n-1", -one),
        ("n-2", -two),
        ("(n+1)/2", h),
        ("(n-1)/2", h - one),
        ("2^7", two.pow_vartime([7])),
        ("2^(bits-1)", two.pow_vartime([C::BITS as u64 - 1])),
        ("random", rng.scalar::<C>()),
    ];
    let mut checked = 0;
    for (i, (n1, u1)) in edges.iter().enumerate() {
        // R = t·G for a random t, one per row: valid signatures with these
        // u1 and every u2.
        let big_r = g * rng.scalar::<C>();
        let r = x_mod_n::<C>(&big_r);
        let r_minus_u1_g = big_r - g * *u1;
        for (j, (n2, u2)) in edges.iter().enumerate() {
            if bool::from(u2.is_zero()) {
                continue; // u2 = r/s is never zero
            }
            // Every u2 with u1 in 0, n-1, (n-1)/2, random and the reverse;
            // each pair costs a table (the valid signature builds it).
            if i % 3 != 0 && j % 3 != 0 {
                continue;
            }
            let Some((q, digest, signature)) = recover::<C>(*u1, *u2, r_minus_u1_g, r) else {
                continue;
            };
            let what = format!("u1 = {n1}, u2 = {n2}");
            let mut cases = vec![(signature.clone(), true, what.clone())];
            if (i + j) % 3 == 0 {
                // R is the same point, but x(R) ≠ r + 1.
                let wrong = with_r(&signature, &bytes::<C>(&(r + one)));
                cases.push((wrong, false, format!("{what}, r + 1")));
            }
            // The table path for a sixth of the pairs: its multiplication
            // is checked on its own above, and each verification on a
            // fresh key or table costs thousands of additions in a debug
            // build.
            judge_all::<C>(&q, &digest, &cases, (i + j) % 6 == 0);
            checked += cases.len();
        }
    }
    checked
}

/// `R` = identity (`Q = −(e/r)·G`), `u1·G = u2·Q` (the addition is a
/// doubling), and `x(R) ≥ n` (r is x(R) − n).
fn special_points<C: TestCurve>(seed: u64) -> usize {
    let mut rng = Rng(seed);
    let g = Point::<C>::generator();
    let mut checked = 0;
    for round in 0..3 {
        let (e, r, s) = (rng.scalar::<C>(), rng.scalar::<C>(), rng.scalar::<C>());
        let q = -(g * (e * inverse::<C>(&r))).to_affine();
        let signature = [bytes::<C>(&r), bytes::<C>(&s)].concat();
        let cases = [(signature, false, format!("R = identity, round {round}"))];
        judge_all::<C>(&q, &bytes::<C>(&e), &cases, true);
        // u1·G = u2·Q: Q = (e/r)·G with s = e/t makes R = 2t·G.
        let t = rng.scalar::<C>();
        let r = x_mod_n::<C>(&(g * t.double()));
        let s = e * inverse::<C>(&t);
        let q = (g * (e * inverse::<C>(&r))).to_affine();
        let signature = [bytes::<C>(&r), bytes::<C>(&s)].concat();
        let what = format!("u1·G = u2·Q, round {round}");
        let cases = [
            (
                with_r(&signature, &bytes::<C>(&(r + Scalar::<C>::ONE))),
                false,
                format!("{what}, r + 1"),
            ),
            (signature, true, what),
        ];
        judge_all::<C>(&q, &bytes::<C>(&e), &cases, true);
        checked += 3;
    }
    // x(R) in n..p: r = x(R) − n verifies; r = x(R) itself is out of range.
    let n_minus_1 = bytes::<C>(&-Scalar::<C>::ONE);
    let mut found = 0;
    for small in 1u64..200 {
        // x = n + small, big-endian (no carry out: small < p − n).
        let mut x = n_minus_1.clone();
        let mut carry = u128::from(small) + 1;
        for byte in x.iter_mut().rev() {
            let sum = u128::from(*byte) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        let Some(big_r) = C::lift_x(&x) else { continue };
        let r = Scalar::<C>::from(small);
        let (u1, u2) = (rng.scalar::<C>(), rng.scalar::<C>());
        let r_minus_u1_g = Point::<C>::from(big_r) - g * u1;
        let Some((q, digest, signature)) = recover::<C>(u1, u2, r_minus_u1_g, r) else {
            continue;
        };
        let what = format!("x(R) = n + {small}");
        let cases = [
            (
                with_r(&signature, &x),
                false,
                format!("{what}, r = x(R) >= n"),
            ),
            (signature, true, what),
        ];
        judge_all::<C>(&q, &digest, &cases, found == 0);
        checked += 2;
        found += 1;
        if found == 3 {
            break;
        }
    }
    assert_eq!(found, 3, "{}: points with x >= n", C::NAME);
    checked
}

#[test]
fn p256_chosen_u1_u2_agree_with_aws_lc() {
    let checked = chosen_u1_u2::<p256::NistP256>(0x1234_5678_9abc_def1)
        + special_points::<p256::NistP256>(0x0fed_cba9_8765_4321);
    assert!(checked > 80, "{checked}");
}

#[test]
fn p384_chosen_u1_u2_agree_with_aws_lc() {
    let checked = chosen_u1_u2::<p384::NistP384>(0x5555_aaaa_3333_cccc)
        + special_points::<p384::NistP384>(0x7777_1111_9999_eeee);
    assert!(checked > 80, "{checked}");
}
