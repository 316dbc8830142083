//! RFC 8705 certificate binding: the client certificate's SHA-256
//! thumbprint, and its comparison with the token's `cnf.x5t#S256`.

pub mod dpop;
pub mod forwarded;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// What a token's `cnf` claim asks of the client (RFC 8705 §3.1), read
/// once when the token is verified, so a cached token is not parsed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// No `cnf` claim.
    Absent,
    /// `cnf` with `x5t#S256`: the certificate thumbprint to match.
    X5tS256(Thumbprint),
    /// `cnf` without `x5t#S256` (only other methods, such as DPoP's `jkt`).
    OtherMethod,
    /// `cnf` that is no object, or an `x5t#S256` that is not a strict
    /// base64url SHA-256 value.
    Malformed,
}

impl Confirmation {
    pub fn of_claims(claims: &serde_json::Map<String, serde_json::Value>) -> Confirmation {
        use serde_json::Value;
        let cnf = match claims.get("cnf") {
            None => return Confirmation::Absent,
            Some(Value::Object(cnf)) => cnf,
            Some(_) => return Confirmation::Malformed,
        };
        match cnf.get("x5t#S256") {
            None => Confirmation::OtherMethod,
            Some(Value::String(s)) => {
                Thumbprint::from_x5t_s256(s).map_or(Confirmation::Malformed, Confirmation::X5tS256)
            }
            Some(_) => Confirmation::Malformed,
        }
    }
}

/// Upper bound on the certificate text read from the host, in bytes.
pub const MAX_CERT_BYTES: usize = 64 * 1024;

/// A SHA-256 certificate thumbprint (RFC 8705 §3.1).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Thumbprint(pub [u8; 32]);

impl core::fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Thumbprint({})", self.to_base64url())
    }
}

impl Thumbprint {
    /// SHA-256 over the DER encoding of the certificate (RFC 8705 §3.1).
    pub fn of_der(der: &[u8]) -> Thumbprint {
        Thumbprint(Sha256::digest(der).into())
    }

    /// The `x5t#S256` form: base64url without padding (RFC 8705 §3.1, RFC 7515 §2).
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses a `cnf.x5t#S256` value strictly: base64url, no padding, no
    /// whitespace, canonical trailing bits, exactly 32 bytes (RFC 8705 §3.1).
    pub fn from_x5t_s256(value: &str) -> Option<Thumbprint> {
        if value.len() != 43 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Thumbprint(arr))
    }

    /// Parses Envoy's `connection.sha256_peer_certificate_digest`: 64 hex digits.
    pub fn from_hex(value: &str) -> Option<Thumbprint> {
        let value = value.trim();
        if value.len() != 64 {
            return None;
        }
        // Every request reads it: a table load per digit, one check at the end.
        let mut out = [0u8; 32];
        let mut invalid = 0u8;
        for (o, pair) in out.iter_mut().zip(value.as_bytes().chunks_exact(2)) {
            if let [hi, lo] = pair {
                let (hi, lo) = (hex_value(*hi), hex_value(*lo));
                invalid |= hi | lo;
                *o = (hi << 4) | (lo & 0x0f);
            }
        }
        (invalid & 0xf0 == 0).then_some(Thumbprint(out))
    }

    /// Constant-time equality, so a mismatch position leaks nothing.
    pub fn ct_eq(&self, other: &Thumbprint) -> bool {
        let mut diff = 0u8;
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            diff |= a ^ b;
        }
        diff == 0
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    let v = hex_value(c);
    (v < 16).then_some(v)
}

/// A hex digit's value, 0xff for any other byte.
fn hex_value(c: u8) -> u8 {
    #[allow(clippy::indexing_slicing)] // c < 256, checked at compile time
    static HEX: [u8; 256] = {
        let mut table = [0xff; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => 0xff,
            };
            b += 1;
        }
        table
    };
    #[allow(clippy::indexing_slicing)] // a u8 indexes a 256-entry table
    HEX[usize::from(c)]
}

/// Why a presented certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    TooLarge,
    NotPem,
    NotCertificate,
}

/// Decodes Envoy's `connection.peer_certificate`: PEM, or URL-encoded PEM
/// as Envoy documents it, to the DER of the first certificate. The DER is
/// checked to be an X.509 certificate.
pub fn peer_certificate_der(raw: &[u8]) -> Result<Vec<u8>, CertError> {
    if raw.len() > MAX_CERT_BYTES {
        return Err(CertError::TooLarge);
    }
    let decoded;
    let text: &[u8] = if raw.contains(&b'%') {
        decoded = percent_decode(raw).ok_or(CertError::NotPem)?;
        &decoded
    } else {
        raw
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(text).map_err(|_| CertError::NotPem)?;
    if pem.label != "CERTIFICATE" {
        return Err(CertError::NotPem);
    }
    match x509_parser::parse_x509_certificate(&pem.contents) {
        Ok((&[], _)) => Ok(pem.contents),
        _ => Err(CertError::NotCertificate),
    }
}

/// Thumbprint of the PEM (or URL-encoded PEM) certificate.
pub fn thumbprint_of_pem(raw: &[u8]) -> Result<Thumbprint, CertError> {
    peer_certificate_der(raw).map(|der| Thumbprint::of_der(&der))
}

/// Thumbprints of the certificates seen recently, keyed by the PEM text
/// Envoy gave us, so the PEM is decoded and parsed once per client, not once
/// per request. Bounded: it starts over when full.
#[derive(Debug, Default)]
pub struct ThumbprintCache {
    map: std::collections::HashMap<Vec<u8>, Thumbprint>,
}

impl ThumbprintCache {
    pub const CAPACITY: usize = 256;

    pub fn thumbprint_of_pem(&mut self, raw: &[u8]) -> Result<Thumbprint, CertError> {
        if let Some(t) = self.map.get(raw) {
            return Ok(*t);
        }
        let t = thumbprint_of_pem(raw)?;
        if self.map.len() >= Self::CAPACITY {
            self.map.clear();
        }
        self.map.insert(raw.to_vec(), t);
        Ok(t)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// RFC 3986 percent-decoding. `+` is left alone: Envoy's encoding uses `%20`.
pub fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            let hi = hex_digit(*input.get(i + 1)?)?;
            let lo = hex_digit(*input.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x5t_is_strict() {
        let t = Thumbprint([7u8; 32]);
        let s = t.to_base64url();
        assert_eq!(Thumbprint::from_x5t_s256(&s), Some(t));
        // padded
        assert_eq!(Thumbprint::from_x5t_s256(&format!("{s}=")), None);
        // standard alphabet
        let std = s.replace('-', "+").replace('_', "/");
        if std != s {
            assert_eq!(Thumbprint::from_x5t_s256(&std), None);
        }
        // hex of the same digest
        let hex: String = t.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Thumbprint::from_x5t_s256(&hex), None);
        // whitespace
        assert_eq!(Thumbprint::from_x5t_s256(&format!(" {}", &s[1..])), None);
    }

    #[test]
    fn x5t_rejects_non_canonical_trailing_bits() {
        // 32 bytes -> 43 chars; the last char carries 2 unused bits that must be 0.
        let s = Thumbprint([0u8; 32]).to_base64url();
        assert!(s.ends_with('A'));
        let mut bad = s.clone();
        bad.pop();
        bad.push('B');
        assert_eq!(Thumbprint::from_x5t_s256(&bad), None);
    }

    #[test]
    fn hex_digest() {
        let t = Thumbprint::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(t.0, [0xab; 32]);
        assert!(Thumbprint::from_hex(&"ab".repeat(31)).is_none());
        assert!(Thumbprint::from_hex(&"zz".repeat(32)).is_none());
        // Every byte value, upper and lower case digits.
        let bytes: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let lower: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Thumbprint::from_hex(&lower).unwrap().0.to_vec(), bytes);
        assert_eq!(
            Thumbprint::from_hex(&lower.to_uppercase())
                .unwrap()
                .0
                .to_vec(),
            bytes
        );
        // Any byte that is no hex digit, at any position, refuses it.
        for c in 0..=255u8 {
            if c.is_ascii_hexdigit() || c >= 0x80 {
                continue;
            }
            for at in [0, 1, 31, 62, 63] {
                let mut v = lower.clone().into_bytes();
                v[at] = c;
                let v = String::from_utf8(v).unwrap();
                if v.trim().len() == 64 {
                    assert!(Thumbprint::from_hex(&v).is_none(), "{c:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn ct_eq_works() {
        let a = Thumbprint([1; 32]);
        let mut b = a;
        assert!(a.ct_eq(&b));
        b.0[31] = 2;
        assert!(!a.ct_eq(&b));
    }

    #[test]
    fn thumbprint_cache_is_bounded_and_only_keeps_certificates() {
        let mut c = ThumbprintCache::default();
        assert!(c.thumbprint_of_pem(b"garbage").is_err());
        assert!(c.is_empty());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"a%20b%0A").unwrap(), b"a b\n");
        assert!(percent_decode(b"%2").is_none());
        assert!(percent_decode(b"%zz").is_none());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(peer_certificate_der(b""), Err(CertError::NotPem));
        assert_eq!(peer_certificate_der(b"hello"), Err(CertError::NotPem));
        assert_eq!(
            peer_certificate_der(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(CertError::NotCertificate)
        );
        assert_eq!(
            peer_certificate_der(&vec![b'a'; MAX_CERT_BYTES + 1]),
            Err(CertError::TooLarge)
        );
    }
}
