//! Signature verification in the native build: AWS-LC (`aws-lc-rs`), a
//! maintained, audited implementation with a FIPS-validated module. The
//! native build never uses certbound's own verifiers, which exist for the
//! wasm build (where AWS-LC cannot run) and are checked against this one by
//! the differential tests.
//!
//! A key is kept as the public material its JWK carries, already checked by
//! the JWK import (sizes, exponent, point on the curve).

use aws_lc_rs::signature::{self, RsaParameters, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::jose::alg::Alg;

/// The public material of a JWK, as AWS-LC takes it.
#[derive(Clone, PartialEq, Eq)]
pub enum NativeKey {
    /// Modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// The uncompressed SEC1 point `04 || x || y`.
    Ec(Vec<u8>),
    /// The 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
}

impl core::fmt::Debug for NativeKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            NativeKey::Rsa { .. } => "NativeKey::Rsa",
            NativeKey::Ec(_) => "NativeKey::Ec",
            NativeKey::Ed25519(_) => "NativeKey::Ed25519",
        })
    }
}

impl NativeKey {
    /// The key material of a JWK object (`n`/`e`, `x`/`y` or `x`), or `None`
    /// if a member is missing or not base64url.
    pub fn from_jwk(jwk: &Map<String, Value>) -> Option<NativeKey> {
        let member = |name: &str| {
            jwk.get(name)
                .and_then(Value::as_str)
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        };
        match jwk.get("kty").and_then(Value::as_str)? {
            "RSA" => Some(NativeKey::Rsa {
                n: member("n")?,
                e: member("e")?,
            }),
            "EC" => {
                let mut point = vec![0x04];
                point.extend(member("x")?);
                point.extend(member("y")?);
                Some(NativeKey::Ec(point))
            }
            "OKP" => Some(NativeKey::Ed25519(member("x")?)),
            _ => None,
        }
    }

    /// Whether `signature` is this key's signature of `message` under
    /// `alg`; a key of another kind than `alg` needs verifies nothing.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match self {
            NativeKey::Rsa { n, e } => {
                let Some(params) = rsa_params(alg) else {
                    return false;
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            NativeKey::Ec(point) => {
                let params: &'static dyn signature::VerificationAlgorithm = match alg {
                    Alg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Alg::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(params, point)
                    .verify(message, signature)
                    .is_ok()
            }
            NativeKey::Ed25519(key) => {
                matches!(alg, Alg::EdDSA | Alg::Ed25519)
                    && UnparsedPublicKey::new(&signature::ED25519, key)
                        .verify(message, signature)
                        .is_ok()
            }
        }
    }
}

/// RSASSA-PKCS1-v1_5 or RSASSA-PSS with the salt as long as the hash
/// (RFC 7518 §3.3, §3.5).
fn rsa_params(alg: Alg) -> Option<&'static RsaParameters> {
    Some(match alg {
        Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::jose::alg::Alg;
    use crate::jose::jwk::KeySet;
    use serde_json::Value;

    /// Every algorithm of the committed vectors verifies through AWS-LC, and
    /// one flipped signature bit fails it.
    #[test]
    fn vectors_verify_through_aws_lc() {
        let v: Value =
            serde_json::from_str(include_str!("../../../tests/vectors/vectors.json")).unwrap();
        let (set, _) = KeySet::parse(&v["jwks"].to_string()).unwrap();
        for alg in Alg::ALL {
            let token = v["tokens"][format!("good_{}", alg.name())]
                .as_str()
                .unwrap();
            let header: Value = {
                use base64::Engine as _;
                let h = token.split('.').next().unwrap();
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .unwrap();
                serde_json::from_slice(&bytes).unwrap()
            };
            let key = set.select(header["kid"].as_str(), alg, false).unwrap();
            assert_eq!(key.verify(token), Ok(()), "{}", alg.name());
            let (input, sig) = token.rsplit_once('.').unwrap();
            let mut sig = {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(sig)
                    .unwrap()
            };
            sig[0] ^= 1;
            assert!(
                !key.verify_signature(input.as_bytes(), &sig),
                "{}",
                alg.name()
            );
        }
    }
}
