//! The RSA signatures of JWS, both schemes of PKCS #1 v2.2 (RFC 8017):
//! RS256/RS384/RS512 (RFC 7518 §3.3) are RSASSA-PKCS1-v1_5 (RFC 8017
//! §8.2.2), PS256/PS384/PS512 (RFC 7518 §3.5) are RSASSA-PSS (RFC 8017
//! §8.1.2) with MGF1 over the same hash and a salt as long as the hash.
//! The modulus's Montgomery parameters are computed once per key, and the
//! public exponent 65537 is applied as 16 squarings and one multiplication.
//!
//! The generic path (jwt-simple over the `rsa` crate) spends ~2.4 million
//! instructions per RSA-2048 verification in `num-bigint-dig`'s `modpow`;
//! `crypto-bigint`'s Montgomery arithmetic does the same work in a fraction.
//! The PKCS1-v1_5 check is the RFC's encode-and-compare: the expected
//! encoded message is built from the hash and compared whole, so no parser
//! of the padding or the DigestInfo exists to be fooled (the
//! Bleichenbacher-2006 family of forgeries). PSS has no such form (the
//! salt is only in the signature); its decoding follows §9.1.2 step by
//! step, each step a check that fails closed.

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, Odd};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The hash of an RSASSA-PKCS1-v1_5 JWS algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The DER of `DigestInfo` up to the digest (RFC 8017 §9.2, note 1),
    /// with the `NULL` parameters the RFC specifies.
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    fn digest(self, message: &[u8]) -> Vec<u8> {
        self.digest_parts(&[message])
    }

    /// The hash of the concatenation of `parts`.
    fn digest_parts(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }

    /// `hLen`, the digest's length in octets.
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// An RSA public key with exponent 65537, ready for verification.
#[derive(Clone)]
pub struct RsaKey {
    params: BoxedMontyParams,
    /// `k`: the length of the modulus in octets.
    modulus_bytes: usize,
    /// `modBits`: the length of the modulus in bits.
    modulus_bits: usize,
}

impl core::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RsaKey")
            .field("bits", &self.modulus_bits)
            .finish_non_exhaustive()
    }
}

/// The only public exponent accepted (jwt-simple's JWK import enforces it
/// too): 65537 = 2^16 + 1.
const EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

/// The modulus sizes accepted, in bits: at least 2048 (RFC 7518 §3.3 and
/// §3.5 require it), at most 4096, which bounds the work one signature can
/// cost (a JWKS is attacker-influenced input for whoever controls its URL).
pub const MODULUS_BITS: core::ops::RangeInclusive<usize> = 2048..=4096;

impl RsaKey {
    /// From the big-endian modulus and exponent of a JWK (`n`, `e`;
    /// leading zero octets ignored). `None` unless the exponent is 65537
    /// and the modulus is odd and [`MODULUS_BITS`] long, so that no caller
    /// can build a key the verifiers are not meant for.
    pub fn new(n: &[u8], e: &[u8]) -> Option<RsaKey> {
        let e = strip_leading_zeros(e);
        let n = strip_leading_zeros(n);
        if e != EXPONENT {
            return None;
        }
        let top = n.first().map_or(0, |b| 8 - b.leading_zeros() as usize);
        let modulus_bits = n.len().checked_sub(1)? * 8 + top;
        if !MODULUS_BITS.contains(&modulus_bits) {
            return None;
        }
        let modulus =
            Option::<Odd<BoxedUint>>::from(Odd::new(BoxedUint::from_be_slice_vartime(n)))?;
        Some(RsaKey {
            params: BoxedMontyParams::new_vartime(modulus),
            modulus_bytes: n.len(),
            modulus_bits,
        })
    }

    /// The modulus's length in bits.
    pub fn bits(&self) -> usize {
        self.modulus_bits
    }

    /// RSASSA-PKCS1-v1_5-VERIFY (RFC 8017 §8.2.2) of `signature` over
    /// `message`.
    pub fn verify(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        // Steps 1-2: RSAVP1, EM = I2OSP(m, k).
        let Some(em) = self.public_op(signature, self.modulus_bytes) else {
            return false;
        };
        // Steps 3-4: encode the expected EM and compare it whole.
        expected_encoding(hash, message, self.modulus_bytes).is_some_and(|expected| expected == em)
    }

    /// RSASSA-PSS-VERIFY (RFC 8017 §8.1.2) of `signature` over `message`,
    /// with MGF1 over `hash` and a salt of `hLen` octets (RFC 7518 §3.5).
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        // Step 2c: EM = I2OSP(m, emLen), emLen = ceil((modBits - 1) / 8).
        let em_bits = self.modulus_bits - 1;
        let Some(em) = self.public_op(signature, em_bits.div_ceil(8)) else {
            return false;
        };
        // Step 3: EMSA-PSS-VERIFY(M, EM, modBits - 1).
        emsa_pss_verify(hash, message, &em, em_bits)
    }

    /// Steps 1-2 of both verifications: the signature is exactly `k`
    /// octets (§8.1.2/§8.2.2 step 1), `s = OS2IP(S)` with `0 <= s < n`
    /// (RSAVP1, §5.2.2), `m = s^65537 mod n`, returned as `I2OSP(m, len)`:
    /// `None` if `m` does not fit in `len` octets ("integer too large").
    fn public_op(&self, signature: &[u8], len: usize) -> Option<Vec<u8>> {
        if signature.len() != self.modulus_bytes {
            return None;
        }
        let precision = self.params.bits_precision();
        let s = BoxedUint::from_be_slice(signature, precision).ok()?;
        if s.cmp_vartime(self.params.modulus().as_ref()) != core::cmp::Ordering::Less {
            return None;
        }
        let base = BoxedMontyForm::new(s, &self.params);
        let mut m = base.clone();
        for _ in 0..16 {
            m = m.square();
        }
        let mut m = (m * &base).retrieve().to_be_bytes().into_vec();
        // The big-endian bytes are at least `len` long (the precision
        // covers n); anything above the low `len` octets must be zero.
        let split = m.len().checked_sub(len)?;
        if m.get(..split)?.iter().any(|&b| b != 0) {
            return None;
        }
        m.drain(..split);
        Some(m)
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2), with `sLen = hLen` and MGF1 over the
/// same hash. Each numbered step is the RFC's.
fn emsa_pss_verify(hash: Hash, message: &[u8], em: &[u8], em_bits: usize) -> bool {
    let h_len = hash.len();
    let s_len = h_len;
    let em_len = em.len();
    // Step 2 (step 1, the message length limit, cannot be reached).
    let m_hash = hash.digest(message);
    // Step 3.
    if em_len < h_len + s_len + 2 {
        return false;
    }
    // Step 4: the rightmost octet is 0xbc.
    if em.last() != Some(&0xbc) {
        return false;
    }
    // Step 5: maskedDB || H || 0xbc.
    let db_len = em_len - h_len - 1;
    let (Some(masked_db), Some(h)) = (em.get(..db_len), em.get(db_len..em_len - 1)) else {
        return false;
    };
    // Step 6: the leftmost 8*emLen - emBits bits of maskedDB are zero.
    let unused_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
    if masked_db.first().is_none_or(|&b| b & !top_mask != 0) {
        return false;
    }
    // Steps 7-9: DB = maskedDB XOR MGF1(H, emLen - hLen - 1), its unused
    // leftmost bits cleared.
    let mut db = mgf1(hash, h, db_len);
    for (d, m) in db.iter_mut().zip(masked_db) {
        *d ^= m;
    }
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    // Step 10: DB = PS (zeros) || 0x01 || salt.
    let ps_len = em_len - h_len - s_len - 2;
    let (Some(ps), Some(&separator)) = (db.get(..ps_len), db.get(ps_len)) else {
        return false;
    };
    if ps.iter().any(|&b| b != 0) || separator != 0x01 {
        return false;
    }
    // Step 11: the salt is the last sLen octets of DB.
    let Some(salt) = db.get(db_len - s_len..) else {
        return false;
    };
    // Steps 12-14: H' = Hash(0x00 x 8 || mHash || salt), equal to H.
    hash.digest_parts(&[&[0u8; 8], &m_hash, salt]) == h
}

/// MGF1 (RFC 8017 §B.2.1): `Hash(seed || C)` for C = 0, 1, ..., truncated
/// to `len` octets.
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.len());
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend_from_slice(&hash.digest_parts(&[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// EMSA-PKCS1-v1_5-ENCODE (RFC 8017 §9.2):
/// `0x00 || 0x01 || PS (0xff, at least 8) || 0x00 || DigestInfo`.
fn expected_encoding(hash: Hash, message: &[u8], k: usize) -> Option<Vec<u8>> {
    let prefix = hash.digest_info_prefix();
    let digest = hash.digest(message);
    let t_len = prefix.len() + digest.len();
    let ps_len = k.checked_sub(t_len + 3)?;
    if ps_len < 8 {
        return None;
    }
    let mut em = Vec::with_capacity(k);
    em.extend_from_slice(&[0x00, 0x01]);
    em.resize(2 + ps_len, 0xff);
    em.push(0x00);
    em.extend_from_slice(prefix);
    em.extend_from_slice(&digest);
    Some(em)
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An odd modulus of exactly `bits` bits (top bit set, low bit set).
    fn modulus(bits: usize) -> Vec<u8> {
        let mut n = vec![0x5a; bits.div_ceil(8)];
        n[0] = 1 << ((bits - 1) % 8);
        if let Some(last) = n.last_mut() {
            *last |= 1;
        }
        n
    }

    const E: [u8; 3] = [1, 0, 1];

    #[test]
    fn modulus_sizes_2048_to_4096_bits_load() {
        for bits in [2048, 2049, 2057, 3072, 3073, 4095, 4096] {
            let key = RsaKey::new(&modulus(bits), &E);
            assert_eq!(key.map(|k| k.bits()), Some(bits), "{bits}");
        }
    }

    #[test]
    fn moduli_outside_2048_to_4096_bits_are_refused() {
        for bits in [1, 8, 512, 1024, 2040, 2047, 4097, 4104, 8192] {
            assert!(RsaKey::new(&modulus(bits), &E).is_none(), "{bits}");
        }
        assert!(RsaKey::new(&[], &E).is_none());
        assert!(RsaKey::new(&[0; 256], &E).is_none());
    }

    #[test]
    fn leading_zero_octets_do_not_count() {
        let mut n = vec![0, 0];
        n.extend(modulus(2048));
        assert_eq!(RsaKey::new(&n, &[0, 1, 0, 1]).map(|k| k.bits()), Some(2048));
        // 2047 bits padded to 256 octets is still 2047 bits.
        let mut short = vec![0];
        short.extend(modulus(2047));
        assert!(RsaKey::new(&short, &E).is_none());
    }

    #[test]
    fn even_moduli_are_refused() {
        for bits in [2048, 3073, 4096] {
            let mut n = modulus(bits);
            if let Some(last) = n.last_mut() {
                *last &= 0xfe;
            }
            assert!(RsaKey::new(&n, &E).is_none(), "{bits}");
        }
    }

    #[test]
    fn only_exponent_65537_is_accepted() {
        let n = modulus(2048);
        for e in [
            &[][..],
            &[0],
            &[1],
            &[3],
            &[1, 0, 0],
            &[1, 0, 3],
            &[1, 0, 1, 0],
            &[1, 1, 0, 1],
            &[0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(RsaKey::new(&n, e).is_none(), "{e:?}");
        }
        assert!(RsaKey::new(&n, &[0, 0, 1, 0, 1]).is_some());
    }
}
