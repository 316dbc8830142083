//! The public key of a DPoP proof's `jwk` header (RFC 9449 §4.2), imported
//! for exactly the proof's `alg`, and its RFC 7638 SHA-256 thumbprint, the
//! value a bound token carries as `cnf.jkt` (RFC 9449 §6.1).
//!
//! Only public keys certbound can verify with are accepted: EC P-256 and
//! P-384 (RFC 7518 §6.2.1), RSA of 2048 to 4096 bits with e = 65537
//! (RFC 7518 §6.3.1), OKP Ed25519 (RFC 8037 §2). A key with any private
//! member (RFC 7518 §6.2.2, §6.3.2, §7.1; `k` of §6.4) is refused, since it
//! means the client published its private key. Every base64url member is
//! decoded strictly (no padding, canonical trailing bits), so the
//! thumbprint, computed from the members as sent, is the thumbprint of the
//! key itself.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::FromSec1Point;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::DpopError;
use crate::binding::Thumbprint;
use crate::jose::alg::Alg;
use crate::jose::crypto::ecdsa::{Es256Key, Es384Key};
use crate::jose::crypto::eddsa::Ed25519Key;
#[cfg(not(target_arch = "wasm32"))]
use crate::jose::crypto::native::NativeKey;
use crate::jose::crypto::rsa::{Hash, RsaKey};

/// JWK members that only a private or symmetric key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// RSA modulus bounds, in bits (the same as for the providers' keys).
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 4096;

/// A proof's public key, ready to verify with its one algorithm.
#[derive(Debug, Clone)]
enum Key {
    Es256(Es256Key),
    Es384(Es384Key),
    Rsa(RsaKey),
    Ed25519(Ed25519Key),
}

/// The imported `jwk` of a proof: the key, the algorithm it was imported
/// for, and its thumbprint.
#[derive(Debug, Clone)]
pub struct PublicJwk {
    key: Key,
    alg: Alg,
    thumbprint: Thumbprint,
    /// The native build verifies proofs with AWS-LC.
    #[cfg(not(target_arch = "wasm32"))]
    native: Option<NativeKey>,
}

impl PublicJwk {
    /// The RFC 7638 SHA-256 thumbprint of the key (`cnf.jkt`).
    pub fn thumbprint(&self) -> Thumbprint {
        self.thumbprint
    }

    /// Whether `signature` (the decoded JWS signature) is valid for
    /// `signing_input` under this key and its algorithm: by AWS-LC in the
    /// native build, by certbound's own verifiers in the wasm build.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.native
                .as_ref()
                .is_some_and(|k| k.verify(self.alg, signing_input, signature))
        }
        #[cfg(target_arch = "wasm32")]
        self.verify_own(signing_input, signature)
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn verify_own(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        match (&self.key, self.alg) {
            // A proof key is used once: no precomputed table for it.
            (Key::Es256(k), _) => k.verify_once(signing_input, signature),
            (Key::Es384(k), _) => k.verify_once(signing_input, signature),
            (Key::Ed25519(k), _) => k.verify(signing_input, signature),
            (Key::Rsa(k), Alg::RS256) => k.verify(Hash::Sha256, signing_input, signature),
            (Key::Rsa(k), Alg::RS384) => k.verify(Hash::Sha384, signing_input, signature),
            (Key::Rsa(k), Alg::RS512) => k.verify(Hash::Sha512, signing_input, signature),
            (Key::Rsa(k), Alg::PS256) => k.verify_pss(Hash::Sha256, signing_input, signature),
            (Key::Rsa(k), Alg::PS384) => k.verify_pss(Hash::Sha384, signing_input, signature),
            (Key::Rsa(k), Alg::PS512) => k.verify_pss(Hash::Sha512, signing_input, signature),
            (Key::Rsa(_), _) => false,
        }
    }
}

/// Imports the `jwk` header of a proof signed with `alg`.
///
/// Refused, in this order: a `jwk` that is no object; `kty` "oct"
/// ([`DpopError::SymmetricKey`]); any private member
/// ([`DpopError::PrivateKeyInJwk`]); an unknown `kty` or `crv`, a bad
/// coordinate, modulus or exponent ([`DpopError::KeyInvalid`]); a key of
/// another type than `alg` needs, or a `jwk` whose own `alg` differs
/// ([`DpopError::KeyAlgorithmMismatch`]).
pub fn public_jwk(jwk: &Value, alg: Alg) -> Result<PublicJwk, DpopError> {
    let jwk = jwk
        .as_object()
        .ok_or(DpopError::KeyInvalid("DPoP proof jwk is not an object"))?;
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or(DpopError::KeyInvalid("DPoP proof jwk has no kty"))?;
    if kty == "oct" {
        return Err(DpopError::SymmetricKey);
    }
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(DpopError::PrivateKeyInJwk);
    }
    if let Some(own) = jwk.get("alg")
        && own.as_str() != Some(alg.name())
    {
        return Err(DpopError::KeyAlgorithmMismatch);
    }
    if let Some(u) = jwk.get("use")
        && u.as_str() != Some("sig")
    {
        return Err(DpopError::KeyInvalid("DPoP proof jwk use is not sig"));
    }
    let (key, thumbprint_input) = match kty {
        "EC" => import_ec(jwk, alg)?,
        "RSA" => import_rsa(jwk, alg)?,
        "OKP" => import_okp(jwk, alg)?,
        _ => return Err(DpopError::KeyInvalid("DPoP proof jwk kty not supported")),
    };
    Ok(PublicJwk {
        key,
        alg,
        thumbprint: Thumbprint(Sha256::digest(thumbprint_input.as_bytes()).into()),
        #[cfg(not(target_arch = "wasm32"))]
        native: NativeKey::from_jwk(jwk),
    })
}

/// A member that must be a strict base64url string; returns the text and
/// the bytes.
fn b64_member<'a>(
    jwk: &'a Map<String, Value>,
    name: &str,
    what: &'static str,
) -> Result<(&'a str, Vec<u8>), DpopError> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or(DpopError::KeyInvalid(what))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| DpopError::KeyInvalid(what))?;
    Ok((text, bytes))
}

fn import_ec(jwk: &Map<String, Value>, alg: Alg) -> Result<(Key, String), DpopError> {
    let crv = jwk
        .get("crv")
        .and_then(Value::as_str)
        .ok_or(DpopError::KeyInvalid("DPoP proof jwk has no crv"))?;
    let (crv, len) = match (crv, alg) {
        ("P-256", Alg::ES256) => ("P-256", 32),
        ("P-384", Alg::ES384) => ("P-384", 48),
        ("P-256" | "P-384", _) => return Err(DpopError::KeyAlgorithmMismatch),
        _ => return Err(DpopError::KeyInvalid("DPoP proof jwk crv not supported")),
    };
    const BAD: &str = "DPoP proof jwk has a bad EC coordinate";
    let (x_text, x) = b64_member(jwk, "x", BAD)?;
    let (y_text, y) = b64_member(jwk, "y", BAD)?;
    // RFC 7518 §6.2.1.2-3: each coordinate is exactly the field's length.
    if x.len() != len || y.len() != len {
        return Err(DpopError::KeyInvalid(BAD));
    }
    let mut sec1 = Vec::with_capacity(1 + 2 * len);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    // An uncompressed SEC1 point is never the identity; decoding checks
    // that it lies on the curve.
    let key = if len == 32 {
        let point = p256::AffinePoint::from_sec1_bytes(&sec1)
            .map_err(|_| DpopError::KeyInvalid("DPoP proof jwk point is not on P-256"))?;
        Key::Es256(Es256Key::new(point))
    } else {
        let point = p384::AffinePoint::from_sec1_bytes(&sec1)
            .map_err(|_| DpopError::KeyInvalid("DPoP proof jwk point is not on P-384"))?;
        Key::Es384(Es384Key::new(point))
    };
    // RFC 7638 §3.2: the required members in lexicographic order.
    let input = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x_text}","y":"{y_text}"}}"#);
    Ok((key, input))
}

fn import_rsa(jwk: &Map<String, Value>, alg: Alg) -> Result<(Key, String), DpopError> {
    if !matches!(
        alg,
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
    ) {
        return Err(DpopError::KeyAlgorithmMismatch);
    }
    const BAD_N: &str = "DPoP proof jwk has a bad RSA modulus";
    let (n_text, n) = b64_member(jwk, "n", BAD_N)?;
    let (e_text, e) = b64_member(jwk, "e", "DPoP proof jwk has a bad RSA exponent")?;
    // RFC 7518 §6.3.1.1: no leading zero octet; 2048 to 4096 bits.
    let top = match n.first() {
        Some(&b) if b != 0 => 8 - b.leading_zeros() as usize,
        _ => return Err(DpopError::KeyInvalid(BAD_N)),
    };
    let bits = (n.len() - 1) * 8 + top;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(DpopError::KeyInvalid(
            "DPoP proof jwk RSA modulus is not 2048 to 4096 bits",
        ));
    }
    // 65537, without a leading zero (RFC 7518 §6.3.1.2).
    if e_text != "AQAB" {
        return Err(DpopError::KeyInvalid(
            "DPoP proof jwk RSA exponent is not 65537",
        ));
    }
    let key = RsaKey::new(&n, &e).ok_or(DpopError::KeyInvalid(BAD_N))?;
    let input = format!(r#"{{"e":"{e_text}","kty":"RSA","n":"{n_text}"}}"#);
    Ok((Key::Rsa(key), input))
}

fn import_okp(jwk: &Map<String, Value>, alg: Alg) -> Result<(Key, String), DpopError> {
    let crv = jwk
        .get("crv")
        .and_then(Value::as_str)
        .ok_or(DpopError::KeyInvalid("DPoP proof jwk has no crv"))?;
    if crv != "Ed25519" {
        return Err(DpopError::KeyInvalid("DPoP proof jwk crv not supported"));
    }
    if !matches!(alg, Alg::EdDSA | Alg::Ed25519) {
        return Err(DpopError::KeyAlgorithmMismatch);
    }
    const BAD: &str = "DPoP proof jwk has a bad Ed25519 key";
    let (x_text, x) = b64_member(jwk, "x", BAD)?;
    let key = Ed25519Key::new(&x).ok_or(DpopError::KeyInvalid(BAD))?;
    // RFC 8037 §2: crv, kty, x.
    let input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x_text}"}}"#);
    Ok((Key::Ed25519(key), input))
}

/// What a token's `cnf` says about DPoP (RFC 9449 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenJkt {
    /// No `cnf`, or a `cnf` without `jkt`.
    Absent,
    /// `cnf.jkt`: the thumbprint the proof's key must have.
    Jkt(Thumbprint),
    /// `cnf` is no object, or `jkt` is not base64url of 32 bytes.
    Malformed,
}

impl TokenJkt {
    /// Reads `cnf.jkt` from verified token claims (or an introspection
    /// response, RFC 9449 §6.2).
    pub fn of_claims(claims: &Map<String, Value>) -> TokenJkt {
        let cnf = match claims.get("cnf") {
            None => return TokenJkt::Absent,
            Some(Value::Object(cnf)) => cnf,
            Some(_) => return TokenJkt::Malformed,
        };
        match cnf.get("jkt") {
            None => TokenJkt::Absent,
            Some(Value::String(s)) => {
                Thumbprint::from_x5t_s256(s).map_or(TokenJkt::Malformed, TokenJkt::Jkt)
            }
            Some(_) => TokenJkt::Malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7638 §3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let key = public_jwk(&jwk, Alg::RS256).unwrap();
        assert_eq!(
            key.thumbprint().to_base64url(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        // The member order and extra members of the JWK do not matter.
        let mut reordered = jwk.as_object().unwrap().clone();
        reordered.remove("kid");
        reordered.insert("use".into(), json!("sig"));
        let key2 = public_jwk(&Value::Object(reordered), Alg::RS256).unwrap();
        assert_eq!(key2.thumbprint(), key.thumbprint());
        // ...but the key must fit the algorithm.
        assert_eq!(
            public_jwk(&jwk, Alg::PS256).unwrap_err(),
            DpopError::KeyAlgorithmMismatch
        );
    }

    /// RFC 8037 Appendix A.3: the Ed25519 example key's thumbprint.
    #[test]
    fn rfc8037_example_thumbprint() {
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        });
        let key = public_jwk(&jwk, Alg::EdDSA).unwrap();
        assert_eq!(
            key.thumbprint().to_base64url(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert_eq!(
            public_jwk(&jwk, Alg::ES256).unwrap_err(),
            DpopError::KeyAlgorithmMismatch
        );
    }

    #[test]
    fn refuses_private_and_symmetric_keys() {
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert_eq!(
            public_jwk(&oct, Alg::ES256).unwrap_err(),
            DpopError::SymmetricKey
        );
        for member in PRIVATE_MEMBERS {
            let mut jwk = json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
            });
            jwk[member] = json!("AAAA");
            assert_eq!(
                public_jwk(&jwk, Alg::EdDSA).unwrap_err(),
                DpopError::PrivateKeyInJwk,
                "{member}"
            );
        }
    }

    #[test]
    fn refuses_bad_ec_points() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 32]);
        let y = URL_SAFE_NO_PAD.encode([2u8; 32]);
        let off_curve = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        assert!(matches!(
            public_jwk(&off_curve, Alg::ES256),
            Err(DpopError::KeyInvalid(_))
        ));
        let short = json!({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": y});
        assert!(matches!(
            public_jwk(&short, Alg::ES256),
            Err(DpopError::KeyInvalid(_))
        ));
        let secp256k1 = json!({"kty": "EC", "crv": "secp256k1", "x": x, "y": y});
        assert!(matches!(
            public_jwk(&secp256k1, Alg::ES256),
            Err(DpopError::KeyInvalid(_))
        ));
        let p384_for_es256 = json!({"kty": "EC", "crv": "P-384", "x": x, "y": y});
        assert_eq!(
            public_jwk(&p384_for_es256, Alg::ES256).unwrap_err(),
            DpopError::KeyAlgorithmMismatch
        );
        let unknown = json!({"kty": "XYZ"});
        assert!(matches!(
            public_jwk(&unknown, Alg::ES256),
            Err(DpopError::KeyInvalid(_))
        ));
        assert!(matches!(
            public_jwk(&json!("jwk"), Alg::ES256),
            Err(DpopError::KeyInvalid(_))
        ));
    }

    #[test]
    fn refuses_weak_and_odd_rsa_keys() {
        let n1024 = URL_SAFE_NO_PAD.encode([0xc3u8; 128]);
        let weak = json!({"kty": "RSA", "n": n1024, "e": "AQAB"});
        assert!(matches!(
            public_jwk(&weak, Alg::PS256),
            Err(DpopError::KeyInvalid(_))
        ));
        let n2048 = URL_SAFE_NO_PAD.encode([0xc3u8; 256]);
        let e3 = json!({"kty": "RSA", "n": n2048, "e": "Aw"});
        assert!(matches!(
            public_jwk(&e3, Alg::PS256),
            Err(DpopError::KeyInvalid(_))
        ));
        let mut leading_zero = vec![0u8];
        leading_zero.extend([0xc3u8; 256]);
        let lz = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(leading_zero), "e": "AQAB"});
        assert!(matches!(
            public_jwk(&lz, Alg::PS256),
            Err(DpopError::KeyInvalid(_))
        ));
        let padded = json!({"kty": "RSA", "n": format!("{n2048}="), "e": "AQAB"});
        assert!(matches!(
            public_jwk(&padded, Alg::PS256),
            Err(DpopError::KeyInvalid(_))
        ));
        let ok = json!({"kty": "RSA", "n": n2048, "e": "AQAB"});
        assert!(public_jwk(&ok, Alg::PS256).is_ok());
        assert_eq!(
            public_jwk(&ok, Alg::ES256).unwrap_err(),
            DpopError::KeyAlgorithmMismatch
        );
    }

    #[test]
    fn token_jkt() {
        let t = Thumbprint([9; 32]);
        let claims = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(TokenJkt::of_claims(&claims(json!({}))), TokenJkt::Absent);
        assert_eq!(
            TokenJkt::of_claims(&claims(json!({"cnf": {"x5t#S256": "a"}}))),
            TokenJkt::Absent
        );
        assert_eq!(
            TokenJkt::of_claims(&claims(json!({"cnf": {"jkt": t.to_base64url()}}))),
            TokenJkt::Jkt(t)
        );
        assert_eq!(
            TokenJkt::of_claims(&claims(json!({"cnf": {"jkt": 1}}))),
            TokenJkt::Malformed
        );
        assert_eq!(
            TokenJkt::of_claims(&claims(json!({"cnf": "x"}))),
            TokenJkt::Malformed
        );
    }
}
