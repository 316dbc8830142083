//! ES256 signature verification (RFC 7518 §3.4) with precomputed tables.
//!
//! ECDSA verification (FIPS 186-5 §6.4.2, SEC 1 v2 §4.1.4) computes
//! `R = u1·G + u2·Q` and compares `x(R) mod n` with `r`. A generic
//! implementation spends most of its time on the 256 point doublings of that
//! double-scalar multiplication. Both bases are fixed here: `G` for ever,
//! `Q` for as long as the key is in the key set. So each gets a table of
//! `j · 2^(6i) · P` for every 6-bit window position `i` and `j` in 1..=32,
//! in affine form, and a scalar multiplication becomes at most 44 mixed
//! additions of table entries (signed digits in -31..=32), with no doubling.
//!
//! Verification handles only public data, so it may run in variable time.
//! The point and field arithmetic is the `p256` crate's; this module only
//! chooses which points to add.

use std::sync::{Arc, OnceLock};

use p256::elliptic_curve::CurveGroup;
use p256::elliptic_curve::ff::Field;
use p256::elliptic_curve::ff::PrimeField;
use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};

/// Window width, in bits, of the signed-digit recoding.
const WINDOW: usize = 6;
/// Entries per window position: multiples 1..=2^(WINDOW-1).
const HALF: usize = 1 << (WINDOW - 1);
/// Window positions: a 256-bit scalar plus the recoding's final carry.
const POSITIONS: usize = 257_usize.div_ceil(WINDOW);
/// Bytes of an ES256 signature: `r || s`, 32 bytes each (RFC 7518 §3.4).
const SIGNATURE_BYTES: usize = 64;

/// Multiples of one base point, one row per window position.
struct Table {
    /// `entries[i * HALF + (j - 1)] = j · 2^(WINDOW·i) · P`.
    entries: Vec<AffinePoint>,
}

impl Table {
    fn new(base: ProjectivePoint) -> Table {
        let mut projective = Vec::with_capacity(POSITIONS * HALF);
        let mut row_base = base;
        for _ in 0..POSITIONS {
            let mut multiple = row_base;
            projective.push(multiple);
            for _ in 1..HALF {
                multiple += row_base;
                projective.push(multiple);
            }
            // HALF · 2^(WINDOW·i) · P, doubled: the next row's base.
            row_base = multiple.double();
        }
        let mut entries = vec![AffinePoint::IDENTITY; projective.len()];
        ProjectivePoint::batch_normalize(&projective, &mut entries);
        Table { entries }
    }

    /// `k · P`, in variable time.
    fn mul(&self, k: &Scalar) -> ProjectivePoint {
        let mut acc = ProjectivePoint::IDENTITY;
        for (position, digit) in recode(k).into_iter().enumerate() {
            let index = usize::from(digit.unsigned_abs());
            if index == 0 {
                continue;
            }
            let Some(entry) = self.entries.get(position * HALF + index - 1) else {
                continue; // unreachable: |digit| <= HALF and position < POSITIONS
            };
            if digit > 0 {
                acc += entry;
            } else {
                acc += -*entry;
            }
        }
        acc
    }
}

/// Signed-window recoding: `k = Σ d_i · 2^(WINDOW·i)` with `d_i` in
/// `-(HALF-1)..=HALF`.
fn recode(k: &Scalar) -> [i8; POSITIONS] {
    let bytes = k.to_repr();
    // Little-endian 64-bit limbs, plus a zero limb for the top windows.
    let mut limbs = [0u64; 5];
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
    let mut digits = [0i8; POSITIONS];
    let mut carry = 0i16;
    for (i, digit) in digits.iter_mut().enumerate() {
        // At most 63 + 1: fits i16, and the digit fits i8.
        let mut value = bits_at(i * WINDOW) as i16 + carry;
        carry = 0;
        if value > HALF as i16 {
            value -= 1 << WINDOW;
            carry = 1;
        }
        *digit = value as i8;
    }
    digits
}

fn generator_table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::new(ProjectivePoint::GENERATOR))
}

/// A P-256 public key ready for ES256 verification. The key's table is
/// built on its first verification (about 1,400 point additions and ~100 KB,
/// once per key and key set), not at import: a JWKS may list many keys that
/// no token uses. G's table is built once per VM.
#[derive(Clone)]
pub struct Es256Key {
    point: AffinePoint,
    table: Arc<OnceLock<Table>>,
}

impl core::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Es256Key").finish_non_exhaustive()
    }
}

impl Es256Key {
    /// `point` must be a valid public key: on the curve, not the identity
    /// (jwt-simple's JWK import checks both).
    pub fn new(point: AffinePoint) -> Es256Key {
        Es256Key {
            point,
            table: Arc::new(OnceLock::new()),
        }
    }

    fn table(&self) -> &Table {
        self.table
            .get_or_init(|| Table::new(ProjectivePoint::from(self.point)))
    }

    /// Whether `signature` (the JWS signature bytes, `r || s`) is a valid
    /// ES256 signature of `signing_input` under this key.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        if self.point.is_identity().into() {
            return false;
        }
        let Some((r, s)) = signature_scalars(signature) else {
            return false;
        };
        // e = bits2int(SHA-256(M)) mod n; for P-256 the digest is exactly
        // as long as n (FIPS 186-5 §6.4.2 steps 2-3).
        let digest = Sha256::digest(signing_input);
        let mut e_bytes = FieldBytes::default();
        e_bytes.copy_from_slice(&digest);
        let e = <Scalar as Reduce<FieldBytes>>::reduce(&e_bytes);
        // Steps 4-6: w = s^-1, u1 = e·w, u2 = r·w, R = u1·G + u2·Q.
        let Some(w) = Option::<Scalar>::from(s.invert_vartime()) else {
            return false;
        };
        let point = generator_table().mul(&(e * w)) + self.table().mul(&(r * w));
        // Step 7: R must not be the identity; step 8: x(R) mod n == r.
        let affine = point.to_affine();
        if affine.is_identity().into() {
            return false;
        }
        <Scalar as Reduce<FieldBytes>>::reduce(&affine.x()) == r
    }
}

/// `r` and `s`, each an integer in `1..n` (FIPS 186-5 §6.4.2 step 1).
fn signature_scalars(signature: &[u8]) -> Option<(Scalar, Scalar)> {
    if signature.len() != SIGNATURE_BYTES {
        return None;
    }
    let (r_bytes, s_bytes) = signature.split_at(SIGNATURE_BYTES / 2);
    let scalar = |bytes: &[u8]| -> Option<Scalar> {
        let mut repr = FieldBytes::default();
        repr.copy_from_slice(bytes);
        let value = Option::<Scalar>::from(Scalar::from_repr(repr))?;
        (!bool::from(value.is_zero())).then_some(value)
    };
    Some((scalar(r_bytes)?, scalar(s_bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_from_u64s(words: [u64; 4]) -> Scalar {
        let mut bytes = FieldBytes::default();
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        <Scalar as Reduce<FieldBytes>>::reduce(&bytes)
    }

    #[test]
    fn recoding_sums_back_to_the_scalar() {
        let cases = [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            scalar_from_u64s([u64::MAX; 4]),
            scalar_from_u64s([0x8000_0000_0000_0000, 0, 0, 0x20]),
            scalar_from_u64s([0x0123_4567_89ab_cdef; 4]),
        ];
        for k in cases {
            let mut sum = Scalar::ZERO;
            let mut weight = Scalar::ONE;
            let step = Scalar::from(1u64 << WINDOW);
            for d in recode(&k) {
                assert!((-(HALF as i8) < d) && (d <= HALF as i8), "{d}");
                let term = Scalar::from(u64::from(d.unsigned_abs())) * weight;
                sum = if d < 0 { sum - term } else { sum + term };
                weight *= step;
            }
            assert_eq!(sum, k);
        }
    }

    #[test]
    fn table_multiplication_matches_the_generic_one() {
        let mut k = scalar_from_u64s([7, 0x1111, 0xdead_beef, 0xffff_ffff_0000_0001]);
        for _ in 0..8 {
            assert_eq!(generator_table().mul(&k), ProjectivePoint::GENERATOR * k);
            k = k.square() + Scalar::ONE;
        }
        assert_eq!(
            generator_table().mul(&Scalar::ZERO),
            ProjectivePoint::IDENTITY
        );
        assert_eq!(
            generator_table().mul(&-Scalar::ONE),
            -ProjectivePoint::GENERATOR
        );
    }
}
