//! JSON Web Key Sets (RFC 7517) parsed into verification keys.
//!
//! Each key is imported with jwt-simple's strict JWK import, which enforces
//! the member rules of RFC 7517/7518 (RSA 2048–4096 bits with e = 65537,
//! points on the named curve, `use`/`key_ops` fit for verification). Keys
//! this filter cannot or must not use are skipped with a reason, so that one
//! bad key does not take down a key set; a set with no usable key is an
//! error.

use jwt_simple::JWTError;
use jwt_simple::prelude::*;
use std::collections::HashSet;

use crate::error::AuthError;
pub use crate::jose::alg::Alg;
use crate::jose::crypto::ecdsa::{Es256Key, Es384Key};
use crate::jose::crypto::eddsa::Ed25519Key;
#[cfg(not(target_arch = "wasm32"))]
use crate::jose::crypto::native::NativeKey;
use crate::jose::crypto::rsa::{Hash, RsaKey};

/// Upper bound on the JWKS document, in bytes.
pub const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Upper bound on the number of keys read from one JWKS.
pub const MAX_KEYS: usize = 64;
/// Upper bound on a `kid`, in bytes.
pub const MAX_KID_BYTES: usize = 256;

/// The key material of a [`VerifyingKey`], one kind per verifier.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PublicKey {
    Rsa(RsaKey),
    P256(Es256Key),
    P384(Es384Key),
    Ed25519(Ed25519Key),
}

/// A public key bound to exactly one algorithm (RFC 8725 §3.1).
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    alg: Alg,
    key: PublicKey,
    /// The native build verifies with AWS-LC, from the JWK's material.
    #[cfg(not(target_arch = "wasm32"))]
    native: Option<NativeKey>,
}

impl VerifyingKey {
    /// `key` for `alg`, or `None` when the key cannot make that signature.
    fn new(alg: Alg, key: PublicKey) -> Option<VerifyingKey> {
        let fits = matches!(
            (alg, &key),
            (
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512,
                PublicKey::Rsa(_)
            ) | (Alg::ES256, PublicKey::P256(_))
                | (Alg::ES384, PublicKey::P384(_))
                | (Alg::EdDSA | Alg::Ed25519, PublicKey::Ed25519(_))
        );
        fits.then_some(VerifyingKey {
            alg,
            key,
            #[cfg(not(target_arch = "wasm32"))]
            native: None,
        })
    }

    /// The key of JWK `obj` (also given as text) for `alg`, checked by
    /// jwt-simple's import and certbound's key constructors.
    fn from_jwk(
        alg: Alg,
        jwk: &str,
        obj: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<VerifyingKey, jwt_simple::Error> {
        let rsa = |c: RSAPublicKeyComponents| {
            RsaKey::new(&c.n, &c.e)
                .map(PublicKey::Rsa)
                .ok_or(JWTError::InvalidPublicKey)
        };
        let key = match alg {
            Alg::RS256 => rsa(RS256PublicKey::from_jwk(jwk)?.to_components())?,
            Alg::RS384 => rsa(RS384PublicKey::from_jwk(jwk)?.to_components())?,
            Alg::RS512 => rsa(RS512PublicKey::from_jwk(jwk)?.to_components())?,
            Alg::PS256 => rsa(PS256PublicKey::from_jwk(jwk)?.to_components())?,
            Alg::PS384 => rsa(PS384PublicKey::from_jwk(jwk)?.to_components())?,
            Alg::PS512 => rsa(PS512PublicKey::from_jwk(jwk)?.to_components())?,
            Alg::ES256 => {
                let key = ES256PublicKey::from_jwk(jwk)?;
                PublicKey::P256(Es256Key::new(*key.public_key().as_ref().as_affine()))
            }
            Alg::ES384 => {
                let key = ES384PublicKey::from_jwk(jwk)?;
                PublicKey::P384(Es384Key::new(*key.public_key().as_ref().as_affine()))
            }
            Alg::EdDSA | Alg::Ed25519 => {
                let key = Ed25519PublicKey::from_jwk(jwk)?;
                PublicKey::Ed25519(
                    Ed25519Key::new(&key.to_bytes()).ok_or(JWTError::InvalidPublicKey)?,
                )
            }
        };
        #[allow(unused_mut)] // set below in the native build only
        let mut key = VerifyingKey::new(alg, key).ok_or(JWTError::InvalidPublicKey)?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            key.native = Some(NativeKey::from_jwk(obj).ok_or(JWTError::InvalidPublicKey)?);
        }
        #[cfg(target_arch = "wasm32")]
        let _ = obj;
        Ok(key)
    }

    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// Whether `signature` is this key's signature of `message` under its
    /// algorithm: by AWS-LC in the native build, by one of certbound's own
    /// verifiers in the wasm build.
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.native
                .as_ref()
                .is_some_and(|k| k.verify(self.alg, message, signature))
        }
        #[cfg(target_arch = "wasm32")]
        self.verify_own(message, signature)
    }

    /// certbound's own verifiers (the wasm build's; checked against AWS-LC
    /// by the differential tests).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn verify_own(&self, message: &[u8], signature: &[u8]) -> bool {
        match (&self.key, self.alg) {
            (PublicKey::Rsa(k), Alg::RS256) => k.verify(Hash::Sha256, message, signature),
            (PublicKey::Rsa(k), Alg::RS384) => k.verify(Hash::Sha384, message, signature),
            (PublicKey::Rsa(k), Alg::RS512) => k.verify(Hash::Sha512, message, signature),
            (PublicKey::Rsa(k), Alg::PS256) => k.verify_pss(Hash::Sha256, message, signature),
            (PublicKey::Rsa(k), Alg::PS384) => k.verify_pss(Hash::Sha384, message, signature),
            (PublicKey::Rsa(k), Alg::PS512) => k.verify_pss(Hash::Sha512, message, signature),
            (PublicKey::P256(k), _) => k.verify(message, signature),
            (PublicKey::P384(k), _) => k.verify(message, signature),
            (PublicKey::Ed25519(k), _) => k.verify(message, signature),
            // `new` pairs every key with an algorithm it can verify.
            (PublicKey::Rsa(_), _) => false,
        }
    }

    /// Verifies the signature of the compact JWS `token` (RFC 7515 §5.2):
    /// the signing input is everything before the last `.`. The caller has
    /// checked the compact form, the header and the size; claims come after.
    pub fn verify(&self, token: &str) -> Result<(), AuthError> {
        use base64::Engine as _;
        let (signing_input, signature_b64) = token
            .rsplit_once('.')
            .ok_or(AuthError::Malformed("not a JWS compact serialization"))?;
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| AuthError::BadSignature)?;
        if self.verify_signature(signing_input.as_bytes(), &signature) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

/// One JWK: its `kid` and the key for each algorithm it may be used with.
#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// The JWK names its algorithm (`alg`, RFC 7517 §4.4).
    pub alg_declared: bool,
    variants: Vec<VerifyingKey>,
}

impl Key {
    pub fn for_alg(&self, alg: Alg) -> Option<&VerifyingKey> {
        self.variants.iter().find(|k| k.alg() == alg)
    }
}

/// A usable key set: at least one key, `kid`s unique.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// Why a key of an otherwise good JWKS was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub kid: Option<String>,
    pub reason: String,
}

/// Why a whole JWKS was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    TooLarge(usize),
    NotJson(String),
    NoKeysMember,
    NoUsableKey(Vec<SkippedKey>),
}

impl core::fmt::Display for JwksError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            JwksError::TooLarge(n) => write!(f, "JWKS is {n} bytes, over {MAX_JWKS_BYTES}"),
            JwksError::NotJson(e) => write!(f, "JWKS is not valid JSON: {e}"),
            JwksError::NoKeysMember => f.write_str("JWKS has no \"keys\" array"),
            JwksError::NoUsableKey(skipped) => {
                f.write_str("JWKS has no usable key")?;
                for s in skipped {
                    write!(f, "; key {}: {}", s.index, s.reason)?;
                }
                Ok(())
            }
        }
    }
}

impl KeySet {
    /// Parses a JWKS document. Returns the usable keys and the skipped ones.
    pub fn parse(text: &str) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
        if text.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge(text.len()));
        }
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let entries = doc
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or(JwksError::NoKeysMember)?;
        let mut keys: Vec<Key> = Vec::new();
        let mut skipped = Vec::new();
        let mut kids = HashSet::new();
        for (index, entry) in entries.iter().enumerate() {
            let kid = entry
                .get("kid")
                .and_then(|k| k.as_str())
                .map(str::to_string);
            let mut skip = |reason: String| {
                skipped.push(SkippedKey {
                    index,
                    kid: kid.clone(),
                    reason,
                })
            };
            if index >= MAX_KEYS {
                skip(format!("more than {MAX_KEYS} keys"));
                continue;
            }
            match import_key(entry) {
                Ok(key) => {
                    if let Some(k) = &key.kid
                        && !kids.insert(k.clone())
                    {
                        skip("duplicate kid".to_string());
                        continue;
                    }
                    keys.push(key);
                }
                Err(reason) => skip(reason),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey(skipped));
        }
        Ok((KeySet { keys }, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Chooses the key for a token (RFC 7515 §4.1.4): by `kid`; a token
    /// without `kid` may use the only key of a one-key set. The key must be
    /// usable with the token's `alg` (RFC 8725 §3.1) and, when
    /// `require_alg`, name its algorithm itself: a key without `alg` then
    /// verifies nothing.
    pub fn select(
        &self,
        kid: Option<&str>,
        alg: Alg,
        require_alg: bool,
    ) -> Result<&VerifyingKey, AuthError> {
        let key = match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(AuthError::UnknownKid)?,
            None => match self.keys.as_slice() {
                [only] => only,
                _ => return Err(AuthError::UnknownKid),
            },
        };
        if require_alg && !key.alg_declared {
            return Err(AuthError::KeyAlgorithmMismatch);
        }
        key.for_alg(alg).ok_or(AuthError::KeyAlgorithmMismatch)
    }
}

/// Imports one JWK, or says why it is skipped.
fn import_key(entry: &serde_json::Value) -> Result<Key, String> {
    let obj = entry.as_object().ok_or("not a JSON object")?;
    let kid = match obj.get("kid") {
        None => None,
        Some(serde_json::Value::String(s)) if s.len() <= MAX_KID_BYTES => Some(s.clone()),
        Some(_) => return Err("kid is not a string of at most 256 bytes".into()),
    };
    if let Some(u) = obj.get("use")
        && u.as_str() != Some("sig")
    {
        return Err(format!("use {u} is not \"sig\""));
    }
    let kty = obj.get("kty").and_then(|v| v.as_str()).unwrap_or("");
    let crv = obj.get("crv").and_then(|v| v.as_str());
    let candidates: Vec<Alg> = match (kty, crv) {
        ("RSA", _) => Alg::RSA.to_vec(),
        ("EC", Some("P-256")) => vec![Alg::ES256],
        ("EC", Some("P-384")) => vec![Alg::ES384],
        // RFC 9864 §2.2: "Ed25519" names the same signature as "EdDSA" on this curve.
        ("OKP", Some("Ed25519")) => vec![Alg::EdDSA, Alg::Ed25519],
        ("EC" | "OKP", c) => return Err(format!("unsupported crv {c:?} for kty {kty}")),
        (k, _) => return Err(format!("unsupported kty {k:?}")),
    };
    // RFC 7517 §4.4: when the JWK names its algorithm, it is used with that one only.
    let algs: Vec<Alg> = match obj.get("alg") {
        None => candidates,
        Some(a) => {
            let alg = a
                .as_str()
                .and_then(Alg::from_name)
                .filter(|alg| candidates.contains(alg))
                .ok_or_else(|| format!("alg {a} does not fit kty {kty}"))?;
            vec![alg]
        }
    };
    let text = entry.to_string();
    let mut variants = Vec::with_capacity(algs.len());
    for alg in algs {
        match VerifyingKey::from_jwk(alg, &text, obj) {
            Ok(k) => variants.push(k),
            Err(e) => return Err(describe_import_error(&e)),
        }
    }
    Ok(Key {
        kid,
        alg_declared: obj.contains_key("alg"),
        variants,
    })
}

fn describe_import_error(e: &jwt_simple::Error) -> String {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::WeakKey) => "RSA modulus under 2048 bits".into(),
        Some(JWTError::UnsupportedRSAModulus) => "RSA modulus over 4096 bits".into(),
        _ => format!("invalid key ({e})"),
    }
}
