//! EdDSA signature verification for JWS (RFC 8037 §3.1: `alg` "EdDSA" with
//! an Ed25519 `OKP` key), by `ed25519-dalek`.
//!
//! RFC 8032 §5.1.7: the signature is `R || S`; decoding `A` or `R` fails,
//! or `S` is not below the group order `L`: invalid. Then `[S]B = R + [k]A`
//! with `k = SHA-512(R || A || M)`. The strict check is used: the equation
//! without the cofactor (RFC 8032 allows either form; a signer following
//! §5.1.6 satisfies both), and `A` or `R` of small order refused, so no
//! signature is accepted that only a weak or crafted key could produce.
//!
//! Why not jwt-simple's ed25519-compact: it multiplies 51-bit limbs into
//! 128-bit products, which wasm32 emulates; dalek's 32-bit backend and
//! precomputed basepoint table verify 2–3× faster in V8 (BENCHMARKS.md).

/// An Ed25519 public key, decoded once.
#[derive(Debug, Clone, Copy)]
pub struct Ed25519Key(ed25519_dalek::VerifyingKey);

impl Ed25519Key {
    /// From the 32-byte encoding of `A` (a JWK's `x`). `None` if it is not
    /// the encoding of a curve point.
    pub fn new(public: &[u8]) -> Option<Ed25519Key> {
        let bytes = <[u8; 32]>::try_from(public).ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .ok()
            .map(Ed25519Key)
    }

    /// Whether `signature` (64 bytes, `R || S`) is valid for `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        self.0.verify_strict(message, &signature).is_ok()
    }
}
