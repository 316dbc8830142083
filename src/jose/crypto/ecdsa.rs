//! ES256 and ES384 signature verification (RFC 7518 §3.4) with precomputed
//! tables.
//!
//! ECDSA verification (FIPS 186-5 §6.4.2, SEC 1 v2 §4.1.4) computes
//! `R = u1·G + u2·Q` and compares `x(R) mod n` with `r`. A generic
//! implementation spends most of its time on the point doublings of that
//! double-scalar multiplication (256 for P-256, 384 for P-384). Both bases
//! are fixed here: `G` for ever, `Q` for as long as the key is in the key
//! set. So each gets a table of `j · 2^(7i) · P` for every 7-bit window
//! position `i` and `j` in 1..=64, in affine form, and a scalar
//! multiplication becomes at most one mixed addition of a table entry per
//! window (signed digits in -63..=64), with no doubling: 37 per scalar for
//! P-256. (7 bits, not 6: 14% fewer additions for 70% more table, measured
//! 11% fewer instructions per cache-off ES256 request in Envoy. 8 bits
//! would need digits wider than `i8`.)
//!
//! A key's table costs thousands of point additions, so it is built only
//! for a key that has proven to be in use: after a signature under it has
//! verified through the plain path (`u2·Q` by the `p256`/`p384` crates'
//! variable-time wNAF multiplication). Forged signatures under a key, however many, cost one
//! plain verification each and never build its table.
//!
//! Verification handles only public data, so it may run in variable time.
//! The point and field arithmetic is the `p256` and `p384` crates'; this
//! module only chooses which points to add, the same way for both curves.

use std::sync::{Arc, OnceLock};

use p256::elliptic_curve::ff::{Field, PrimeField};
use p256::elliptic_curve::group::{Curve, CurveAffine, Group};
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::{CurveArithmetic, FieldBytes};
use sha2::{Digest, Sha256, Sha384};

/// Window width, in bits, of the signed-digit recoding.
const WINDOW: usize = 7;
/// Entries per window position: multiples 1..=2^(WINDOW-1).
const HALF: usize = 1 << (WINDOW - 1);
// Recoded digits lie in -(HALF-1)..=HALF and are stored as i8.
const _: () = assert!(HALF <= i8::MAX as usize);
/// Window positions for the largest scalar (P-384: 384 bits plus the
/// recoding's final carry).
const MAX_POSITIONS: usize = 385_usize.div_ceil(WINDOW);

/// A curve with a table-based verifier: its generator's table (one per VM)
/// and the hash JWS pairs it with (RFC 7518 §3.4).
pub trait TableCurve: CurveArithmetic + Sized + 'static {
    /// Bits of the group order `n`.
    const BITS: usize;
    fn generator_table() -> &'static Table<Self>;
    /// The message digest, as long as the field (so `bits2int` is the
    /// identity, FIPS 186-5 §6.4.2 step 3).
    fn digest(message: &[u8]) -> Vec<u8>;
    /// `k · P` without a table, in variable time (the `primeorder`
    /// crate's width-5 wNAF): the plain path for a key without a table.
    fn mul_vartime(point: &Self::ProjectivePoint, k: &Self::Scalar) -> Self::ProjectivePoint;
}

impl TableCurve for p256::NistP256 {
    const BITS: usize = 256;
    fn generator_table() -> &'static Table<Self> {
        static TABLE: OnceLock<Table<p256::NistP256>> = OnceLock::new();
        TABLE.get_or_init(|| Table::new(p256::ProjectivePoint::GENERATOR))
    }
    fn digest(message: &[u8]) -> Vec<u8> {
        Sha256::digest(message).to_vec()
    }
    fn mul_vartime(point: &p256::ProjectivePoint, k: &p256::Scalar) -> p256::ProjectivePoint {
        point.mul_vartime(k)
    }
}

impl TableCurve for p384::NistP384 {
    const BITS: usize = 384;
    fn generator_table() -> &'static Table<Self> {
        static TABLE: OnceLock<Table<p384::NistP384>> = OnceLock::new();
        TABLE.get_or_init(|| Table::new(p384::ProjectivePoint::GENERATOR))
    }
    fn digest(message: &[u8]) -> Vec<u8> {
        Sha384::digest(message).to_vec()
    }
    fn mul_vartime(point: &p384::ProjectivePoint, k: &p384::Scalar) -> p384::ProjectivePoint {
        point.mul_vartime(k)
    }
}

/// Window positions of a scalar of `C`.
fn positions<C: TableCurve>() -> usize {
    (C::BITS + 1).div_ceil(WINDOW)
}

/// Multiples of one base point, one row per window position.
#[doc(hidden)] // public for the differential tests (tests/crypto_ecdsa.rs)
pub struct Table<C: CurveArithmetic> {
    /// `entries[i * HALF + (j - 1)] = j · 2^(WINDOW·i) · P`.
    entries: Vec<C::AffinePoint>,
}

impl<C: TableCurve> Table<C> {
    /// The table of `base`.
    pub fn new(base: C::ProjectivePoint) -> Table<C> {
        let rows = positions::<C>();
        let mut projective = Vec::with_capacity(rows * HALF);
        let mut row_base = base;
        for _ in 0..rows {
            let mut multiple = row_base;
            projective.push(multiple);
            for _ in 1..HALF {
                multiple += row_base;
                projective.push(multiple);
            }
            // HALF · 2^(WINDOW·i) · P, doubled: the next row's base.
            row_base = multiple.double();
        }
        let mut entries = vec![C::AffinePoint::default(); projective.len()];
        C::ProjectivePoint::batch_normalize(&projective, &mut entries);
        Table { entries }
    }

    /// `k · P`, in variable time.
    pub fn mul(&self, k: &C::Scalar) -> C::ProjectivePoint {
        let mut acc = C::ProjectivePoint::identity();
        let (digits, used) = recode::<C>(k);
        for (position, &digit) in digits.iter().take(used).enumerate() {
            let index = usize::from(digit.unsigned_abs());
            if index == 0 {
                continue;
            }
            let Some(entry) = self.entries.get(position * HALF + index - 1) else {
                continue; // unreachable: |digit| <= HALF and position < positions
            };
            if digit > 0 {
                acc += *entry;
            } else {
                acc -= *entry;
            }
        }
        acc
    }
}

/// Signed-window recoding: `k = Σ d_i · 2^(WINDOW·i)` with `d_i` in
/// `-(HALF-1)..=HALF`; the first `positions::<C>()` digits are used.
#[doc(hidden)] // public for the differential tests
pub fn recode<C: TableCurve>(k: &C::Scalar) -> ([i8; MAX_POSITIONS], usize) {
    let bytes = k.to_repr();
    // Little-endian 64-bit limbs of the big-endian encoding, plus a zero
    // limb for the top windows.
    let mut limbs = [0u64; 7];
    let bytes: &[u8] = bytes.as_ref();
    for (i, chunk) in bytes.rchunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if let Some(limb) = limbs.get_mut(i) {
            *limb = u64::from_be_bytes(word);
        }
    }
    let bits_at = |bit: usize| -> u64 {
        let (limb, offset) = (bit / 64, bit % 64);
        let low = limbs.get(limb).copied().unwrap_or(0) >> offset;
        let high = match offset {
            0 => 0,
            _ => limbs.get(limb + 1).copied().unwrap_or(0) << (64 - offset),
        };
        (low | high) & ((1 << WINDOW) - 1)
    };
    let used = positions::<C>();
    let mut digits = [0i8; MAX_POSITIONS];
    let mut carry = 0i16;
    for (i, digit) in digits.iter_mut().take(used).enumerate() {
        // At most 63 + 1: fits i16, and the digit fits i8.
        let mut value = bits_at(i * WINDOW) as i16 + carry;
        carry = 0;
        if value > HALF as i16 {
            value -= 1 << WINDOW;
            carry = 1;
        }
        *digit = value as i8;
    }
    (digits, used)
}

/// A public key ready for ES256 (P-256) or ES384 (P-384) verification. The
/// key's table (about 2,400 point additions and ~170 KB for P-256, ~3,500
/// and ~370 KB for P-384, once per key and key set) is built right after
/// the first signature under the key verifies, not at import (a JWKS may
/// list many keys that no token uses) nor on a first verification that
/// fails (anyone can send signatures under a public `kid`). G's table is
/// built once per VM.
pub struct EcdsaKey<C: TableCurve> {
    point: C::AffinePoint,
    table: Arc<OnceLock<Table<C>>>,
}

/// An ES256 key.
pub type Es256Key = EcdsaKey<p256::NistP256>;
/// An ES384 key.
pub type Es384Key = EcdsaKey<p384::NistP384>;

impl<C: TableCurve> Clone for EcdsaKey<C> {
    fn clone(&self) -> Self {
        EcdsaKey {
            point: self.point,
            table: Arc::clone(&self.table),
        }
    }
}

impl<C: TableCurve> core::fmt::Debug for EcdsaKey<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EcdsaKey")
            .field("bits", &C::BITS)
            .finish_non_exhaustive()
    }
}

impl<C: TableCurve> EcdsaKey<C> {
    /// `point` must be a valid public key: on the curve, not the identity
    /// (jwt-simple's JWK import checks both; `verify` checks the identity
    /// again).
    pub fn new(point: C::AffinePoint) -> EcdsaKey<C> {
        EcdsaKey {
            point,
            table: Arc::new(OnceLock::new()),
        }
    }

    /// Whether the key's table exists, i.e. a signature under the key has
    /// verified (or [`EcdsaKey::build_table`] was called).
    #[doc(hidden)] // for tests
    pub fn has_table(&self) -> bool {
        self.table.get().is_some()
    }

    /// Builds the key's table now, so that the next verification takes the
    /// table path whatever its outcome.
    #[doc(hidden)] // for tests
    pub fn build_table(&self) {
        self.table
            .get_or_init(|| Table::new(C::ProjectivePoint::from(self.point)));
    }

    /// Whether `signature` (the JWS signature bytes, `r || s`) is a valid
    /// signature of `signing_input` under this key, with the curve's JWS
    /// hash (SHA-256 for P-256, SHA-384 for P-384).
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.verify_digest(&C::digest(signing_input), signature)
    }

    /// [`EcdsaKey::verify`] for a key that is used once, such as a DPoP
    /// proof's: the plain path, and no table is ever built for it.
    pub fn verify_once(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.check(&C::digest(signing_input), signature, false)
    }

    /// [`EcdsaKey::verify`] from the message's digest, which must be as
    /// long as the field (a chosen digest lets tests choose `u1`).
    #[doc(hidden)] // for tests
    pub fn verify_digest(&self, digest: &[u8], signature: &[u8]) -> bool {
        self.check(digest, signature, true)
    }

    /// The verification; a key without a table earns one from a valid
    /// signature when `learn` is set.
    fn check(&self, digest: &[u8], signature: &[u8], learn: bool) -> bool {
        if self.point.is_identity().into() {
            return false;
        }
        let Some((r, s)) = signature_scalars::<C>(signature) else {
            return false;
        };
        // e = bits2int(Hash(M)) mod n; the digest is exactly as long as n
        // for both curves (FIPS 186-5 §6.4.2 steps 2-3).
        let mut e_bytes = FieldBytes::<C>::default();
        if e_bytes.len() != digest.len() {
            return false;
        }
        e_bytes.copy_from_slice(digest);
        let e = <C::Scalar as Reduce<FieldBytes<C>>>::reduce(&e_bytes);
        // Steps 4-6: w = s^-1, u1 = e·w, u2 = r·w, R = u1·G + u2·Q.
        let Some(w) = Option::<C::Scalar>::from(s.invert_vartime()) else {
            return false;
        };
        let (u1, u2) = (e * w, r * w);
        let u1_g = C::generator_table().mul(&u1);
        if let Some(table) = self.table.get() {
            return x_matches::<C>(u1_g + table.mul(&u2), &r);
        }
        // No table yet: the plain path. Only a signature that verifies
        // proves the key in use and earns it a table.
        let q = C::ProjectivePoint::from(self.point);
        let valid = x_matches::<C>(u1_g + C::mul_vartime(&q, &u2), &r);
        if valid && learn {
            self.build_table();
        }
        valid
    }
}

/// Steps 7-8 of FIPS 186-5 §6.4.2: `R` is not the identity and
/// `x(R) mod n == r`.
fn x_matches<C: TableCurve>(point: C::ProjectivePoint, r: &C::Scalar) -> bool {
    if point.is_identity().into() {
        return false;
    }
    let affine = point.to_affine();
    <C::Scalar as Reduce<FieldBytes<C>>>::reduce(&affine.x()) == *r
}

/// `r` and `s`, each an integer in `1..n` (FIPS 186-5 §6.4.2 step 1), from
/// the fixed-length `r || s` of JWS (RFC 7518 §3.4).
fn signature_scalars<C: TableCurve>(signature: &[u8]) -> Option<(C::Scalar, C::Scalar)> {
    let half = FieldBytes::<C>::default().len();
    if signature.len() != 2 * half {
        return None;
    }
    let (r_bytes, s_bytes) = signature.split_at(half);
    let scalar = |bytes: &[u8]| -> Option<C::Scalar> {
        let mut repr = FieldBytes::<C>::default();
        repr.copy_from_slice(bytes);
        let value = Option::<C::Scalar>::from(C::Scalar::from_repr(repr))?;
        (!bool::from(value.is_zero())).then_some(value)
    };
    Some((scalar(r_bytes)?, scalar(s_bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scalar of `C` from 64-bit words, most significant first, reduced.
    fn scalar<C: TableCurve>(words: &[u64]) -> C::Scalar {
        let mut bytes = FieldBytes::<C>::default();
        for (chunk, word) in bytes.rchunks_exact_mut(8).zip(words.iter().rev()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        <C::Scalar as Reduce<FieldBytes<C>>>::reduce(&bytes)
    }

    fn recoding_sums_back<C: TableCurve>() {
        let cases = [
            C::Scalar::ZERO,
            C::Scalar::ONE,
            -C::Scalar::ONE,
            scalar::<C>(&[u64::MAX; 6]),
            scalar::<C>(&[0x8000_0000_0000_0000, 0, 0, 0x20]),
            scalar::<C>(&[0x0123_4567_89ab_cdef; 6]),
        ];
        for k in cases {
            let mut sum = C::Scalar::ZERO;
            let mut weight = C::Scalar::ONE;
            let step = C::Scalar::from(1u64 << WINDOW);
            let (digits, used) = recode::<C>(&k);
            assert_eq!(used, positions::<C>());
            assert!(digits[used..].iter().all(|&d| d == 0));
            for &d in &digits[..used] {
                assert!((-(HALF as i8) < d) && (d <= HALF as i8), "{d}");
                let term = C::Scalar::from(u64::from(d.unsigned_abs())) * weight;
                sum = if d < 0 { sum - term } else { sum + term };
                weight *= step;
            }
            assert!(sum == k);
        }
    }

    #[test]
    fn recoding_sums_back_to_the_scalar() {
        recoding_sums_back::<p256::NistP256>();
        recoding_sums_back::<p384::NistP384>();
    }

    fn table_matches_generic<C: TableCurve>() {
        let g = C::ProjectivePoint::generator();
        let mut k = scalar::<C>(&[7, 0x1111, 0xdead_beef, 0xffff_ffff_0000_0001, 3, 9]);
        for _ in 0..8 {
            assert!(C::generator_table().mul(&k) == g * k);
            k = k.square() + C::Scalar::ONE;
        }
        assert!(C::generator_table().mul(&C::Scalar::ZERO) == C::ProjectivePoint::identity());
        assert!(C::generator_table().mul(&-C::Scalar::ONE) == -g);
    }

    /// An ECDSA signature `r || s` of `digest` by the private key `d`
    /// with the nonce `k` (FIPS 186-5 §6.4.1, the nonce chosen by the test).
    fn sign<C: TableCurve>(d: C::Scalar, k: C::Scalar, digest: &[u8]) -> Vec<u8> {
        let mut e_bytes = FieldBytes::<C>::default();
        e_bytes.copy_from_slice(digest);
        let e = <C::Scalar as Reduce<FieldBytes<C>>>::reduce(&e_bytes);
        let big_r = (C::ProjectivePoint::generator() * k).to_affine();
        let r = <C::Scalar as Reduce<FieldBytes<C>>>::reduce(&big_r.x());
        let s = Option::<C::Scalar>::from(Field::invert(&k)).unwrap() * (e + r * d);
        [bytes::<C>(&r), bytes::<C>(&s)].concat()
    }

    fn bytes<C: TableCurve>(x: &C::Scalar) -> Vec<u8> {
        let repr = x.to_repr();
        let slice: &[u8] = repr.as_ref();
        slice.to_vec()
    }

    fn forgeries_build_no_table<C: TableCurve>() {
        let g = C::ProjectivePoint::generator();
        let message = b"header.payload";
        let digest = C::digest(message);
        let len = FieldBytes::<C>::default().len();
        // r = s = 1, r = s = n - 1, and an honest-looking random pair.
        let mut one = vec![0u8; 2 * len];
        one[len - 1] = 1;
        one[2 * len - 1] = 1;
        let minus_one = bytes::<C>(&-C::Scalar::ONE).repeat(2);
        let forgeries = [
            one,
            minus_one,
            sign::<C>(scalar::<C>(&[5]), scalar::<C>(&[9]), &digest),
        ];
        for i in 1..=4u64 {
            let d = scalar::<C>(&[i, 0x1234_5678, i * 77]);
            let key = EcdsaKey::<C>::new((g * d).to_affine());
            for forged in &forgeries {
                for _ in 0..3 {
                    assert!(!key.verify(message, forged));
                }
            }
            assert!(!key.has_table(), "a forged signature built a table");
            let valid = sign::<C>(d, scalar::<C>(&[i, 42]), &digest);
            // A key used once (a DPoP proof's) verifies without a table.
            assert!(key.verify_once(message, &valid));
            assert!(!key.verify_once(message, &forgeries[0]));
            assert!(!key.has_table(), "verify_once built a table");
            // The first valid signature takes the plain path, then builds it.
            assert!(key.verify(message, &valid));
            assert!(key.has_table());
            // And the table path gives the same answers.
            assert!(key.verify(message, &valid));
            for forged in &forgeries {
                assert!(!key.verify(message, forged));
            }
            // Clones share the table.
            assert!(key.clone().has_table());
        }
    }

    #[test]
    fn forged_signatures_build_no_table() {
        forgeries_build_no_table::<p256::NistP256>();
        forgeries_build_no_table::<p384::NistP384>();
    }

    #[test]
    fn table_multiplication_matches_the_generic_one() {
        table_matches_generic::<p256::NistP256>();
        table_matches_generic::<p384::NistP384>();
    }
}
