//! The compact JWS serialization (RFC 7515 §7.1): three base64url
//! segments, the header and payload strict JSON objects.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::error::AuthError;
use crate::jose::json::parse_object;

/// The `iss` of a JWS, unverified: for routing only.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let (_, payload) = split_compact(token).ok()?;
    let claims = decode_json(payload, "malformed token payload").ok()?;
    claims
        .get("iss")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// RFC 7515 §7.1 compact serialization: exactly three segments. Five are a
/// JWE (RFC 7516 §7.1), which this filter does not decrypt.
pub fn split_compact(token: &str) -> Result<(&str, &str), AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed("not a JWS compact serialization"));
    };
    match parts.count() {
        0 => {
            // The signature must be canonical base64url too (RFC 7515 §2).
            if sig.is_empty() || URL_SAFE_NO_PAD.decode(sig).is_err() {
                return Err(AuthError::Malformed("malformed token signature"));
            }
            Ok((h, p))
        }
        2 => Err(AuthError::EncryptedToken),
        _ => Err(AuthError::Malformed("not a JWS compact serialization")),
    }
}

/// base64url without padding (RFC 7515 §2), then a strict JSON object.
pub fn decode_json(segment: &str, what: &'static str) -> Result<Map<String, Value>, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthError::Malformed(what))?;
    parse_object(&bytes).ok_or(AuthError::Malformed(what))
}
