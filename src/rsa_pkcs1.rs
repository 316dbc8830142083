//! RS256/RS384/RS512 signature verification (RFC 7518 §3.3): RSASSA-PKCS1-v1_5
//! (RFC 8017 §8.2.2) with the modulus's Montgomery parameters computed once
//! per key, and the public exponent 65537 applied as 16 squarings and one
//! multiplication.
//!
//! The generic path (jwt-simple over the `rsa` crate) spends ~2.4 million
//! instructions per RSA-2048 verification in `num-bigint-dig`'s `modpow`;
//! `crypto-bigint`'s Montgomery arithmetic does the same work in a fraction.
//! The check itself is the RFC's encode-and-compare: the expected encoded
//! message is built from the hash and compared whole, so no parser of the
//! padding or the DigestInfo exists to be fooled (the Bleichenbacher-2006
//! family of forgeries).

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
        match self {
            Hash::Sha256 => Sha256::digest(message).to_vec(),
            Hash::Sha384 => Sha384::digest(message).to_vec(),
            Hash::Sha512 => Sha512::digest(message).to_vec(),
        }
    }
}

/// An RSA public key with exponent 65537, ready for verification.
#[derive(Clone)]
pub struct RsaKey {
    params: BoxedMontyParams,
    /// `k`: the length of the modulus in octets.
    modulus_bytes: usize,
}

impl core::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RsaKey")
            .field("bits", &(self.modulus_bytes * 8))
            .finish_non_exhaustive()
    }
}

/// The only public exponent accepted (jwt-simple's JWK import enforces it
/// too): 65537 = 2^16 + 1.
const EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

impl RsaKey {
    /// From the big-endian modulus and exponent of a JWK (`n`, `e`).
    /// `None` for an exponent other than 65537, or an even modulus.
    pub fn new(n: &[u8], e: &[u8]) -> Option<RsaKey> {
        let e = strip_leading_zeros(e);
        let n = strip_leading_zeros(n);
        if e != EXPONENT || n.is_empty() {
            return None;
        }
        let modulus =
            Option::<Odd<BoxedUint>>::from(Odd::new(BoxedUint::from_be_slice_vartime(n)))?;
        Some(RsaKey {
            params: BoxedMontyParams::new_vartime(modulus),
            modulus_bytes: n.len(),
        })
    }

    /// RSASSA-PKCS1-v1_5-VERIFY (RFC 8017 §8.2.2) of `signature` over
    /// `message`.
    pub fn verify(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        // Step 1: the signature is exactly k octets.
        let k = self.modulus_bytes;
        if signature.len() != k {
            return false;
        }
        // Step 2: s = OS2IP(S); RSAVP1 requires 0 <= s < n (§5.2.2).
        let precision = self.params.bits_precision();
        let Ok(s) = BoxedUint::from_be_slice(signature, precision) else {
            return false;
        };
        if s.cmp_vartime(self.params.modulus().as_ref()) != core::cmp::Ordering::Less {
            return false;
        }
        // m = s^65537 mod n.
        let base = BoxedMontyForm::new(s, &self.params);
        let mut m = base.clone();
        for _ in 0..16 {
            m = m.square();
        }
        let m = (m * &base).retrieve().to_be_bytes();
        // EM = I2OSP(m, k): the big-endian bytes are at least k long, and
        // anything above the low k octets must be zero (m < n < 256^k).
        let Some(split) = m.len().checked_sub(k) else {
            return false;
        };
        let (high, em) = m.split_at(split);
        if high.iter().any(|&b| b != 0) {
            return false;
        }
        // Steps 3-4: encode the expected EM and compare it whole.
        expected_encoding(hash, message, k).is_some_and(|expected| expected == em)
    }
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
