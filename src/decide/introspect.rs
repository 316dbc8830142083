//! OAuth 2.0 Token Introspection (RFC 7662) for opaque access tokens, with
//! the certificate binding carried in the response's `cnf` (RFC 8705 §3.2).
//!
//! Pure: the request to send, the judgement of the response, and the cache
//! of results (active and inactive) keyed by SHA-256 of the token.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::decide::cache::{BoundedMap, TokenDigest};
use crate::jose::json::parse_object;
use crate::policy::{Introspection, ProviderId};

/// Upper bound on an introspection response body, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// RFC 3986 unreserved characters pass; everything else is %-encoded. Used
/// for the form body (RFC 7662 §2.1) and client credentials (RFC 6749 §2.3.1).
pub fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Authorization: Basic …` for client_secret_basic (RFC 6749 §2.3.1:
/// client id and secret are form-urlencoded first).
pub fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let pair = format!(
        "{}:{}",
        form_urlencode(client_id),
        form_urlencode(client_secret)
    );
    format!("Basic {}", STANDARD.encode(pair))
}

/// The body of the introspection request (RFC 7662 §2.1).
pub fn request_body(token: &str) -> String {
    format!(
        "token={}&token_type_hint=access_token",
        form_urlencode(token)
    )
}

/// The request headers. The secret is only ever in this header value.
pub fn request_headers<'a>(cfg: &'a Introspection, auth: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "POST"),
        (":path", cfg.path.as_str()),
        (":authority", cfg.authority.as_str()),
        (":scheme", cfg.scheme.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/json"),
        ("authorization", auth),
        ("user-agent", "certbound"),
    ]
}

/// What the introspection endpoint said.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspected {
    /// `active: true`, with the response members as claims.
    Active(Map<String, Value>),
    /// `active: false` (RFC 7662 §2.2: nothing else may be relied on).
    Inactive,
}

/// Judges a response: 200 with a JSON object whose `active` is a boolean.
pub fn parse_response(status: Option<&str>, body: Option<&[u8]>) -> Option<Introspected> {
    if status != Some("200") {
        return None;
    }
    let body = body?;
    if body.len() > MAX_RESPONSE_BYTES {
        return None;
    }
    let obj = parse_object(body)?;
    match obj.get("active") {
        Some(Value::Bool(true)) => Some(Introspected::Active(obj)),
        Some(Value::Bool(false)) => Some(Introspected::Inactive),
        _ => None,
    }
}

/// A token "looks like" a JWS when it has three segments and its first is
/// a base64url JSON object with an `alg`.
pub fn looks_like_jwt(token: &str) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| parse_object(&b))
        .is_some_and(|o| o.contains_key("alg"))
}

#[derive(Debug, Clone)]
struct Entry {
    provider: ProviderId,
    result: Introspected,
    /// Unix seconds, inclusive.
    valid_until: i64,
}

/// Introspection results by token digest, each kept no longer than the
/// provider's `cache_duration` nor past the token's `exp`.
#[derive(Debug)]
pub struct IntrospectionCache {
    entries: BoundedMap<TokenDigest, Entry>,
}

impl IntrospectionCache {
    /// At least one entry: the answer must outlive the call that fetched it.
    pub fn new(capacity: usize) -> IntrospectionCache {
        IntrospectionCache {
            entries: BoundedMap::new(capacity.max(1)),
        }
    }

    pub fn get(
        &self,
        digest: &TokenDigest,
        provider: ProviderId,
        now: i64,
    ) -> Option<&Introspected> {
        self.entries
            .get(digest)
            .filter(|e| e.provider == provider && now <= e.valid_until)
            .map(|e| &e.result)
    }

    pub fn insert(
        &mut self,
        digest: TokenDigest,
        provider: ProviderId,
        result: Introspected,
        cache_duration_s: i64,
        now: i64,
    ) {
        let mut valid_until = now.saturating_add(cache_duration_s);
        if let Introspected::Active(claims) = &result
            && let Some(exp) = claims.get("exp").and_then(Value::as_i64)
        {
            valid_until = valid_until.min(exp);
        }
        // Always usable for the decision that asked for it, this second.
        valid_until = valid_until.max(now);
        self.entries.insert(
            digest,
            Entry {
                provider,
                result,
                valid_until,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ProviderId;

    #[test]
    fn client_secret_basic_encodes_first() {
        // RFC 6749 §2.3.1: "a:b" as an id must not split at ':'.
        assert_eq!(
            basic_auth("a:b", "p w"),
            format!("Basic {}", STANDARD.encode("a%3Ab:p%20w"))
        );
    }

    #[test]
    fn responses() {
        assert_eq!(parse_response(Some("500"), Some(b"{}")), None);
        assert_eq!(parse_response(None, None), None);
        assert_eq!(parse_response(Some("200"), Some(b"<html>")), None);
        assert_eq!(
            parse_response(Some("200"), Some(br#"{"active":"true"}"#)),
            None
        );
        assert_eq!(
            parse_response(Some("200"), Some(br#"{"active":false,"sub":"x"}"#)),
            Some(Introspected::Inactive)
        );
        assert!(matches!(
            parse_response(Some("200"), Some(br#"{"active":true,"sub":"x"}"#)),
            Some(Introspected::Active(_))
        ));
        assert_eq!(
            parse_response(Some("200"), Some(br#"{"active":true,"active":false}"#)),
            None,
            "duplicate members"
        );
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJFUzI1NiJ9.e30.AAAA"));
        assert!(!looks_like_jwt("2YotnFZFEjr1zCsicMWpAA"));
        assert!(!looks_like_jwt("a.b.c"));
    }

    #[test]
    fn cache_bounds_by_duration_and_exp() {
        let mut c = IntrospectionCache::new(2);
        let active = |exp: i64| {
            let mut m = Map::new();
            m.insert("exp".into(), Value::from(exp));
            Introspected::Active(m)
        };
        c.insert([1; 32], ProviderId::new(0), active(1_000), 60, 900);
        assert!(c.get(&[1; 32], ProviderId::new(0), 960).is_some());
        assert!(
            c.get(&[1; 32], ProviderId::new(0), 961).is_none(),
            "cache_duration"
        );
        assert!(
            c.get(&[1; 32], ProviderId::new(1), 900).is_none(),
            "other provider"
        );
        c.insert([2; 32], ProviderId::new(0), active(905), 60, 900);
        assert!(c.get(&[2; 32], ProviderId::new(0), 906).is_none(), "exp");
        c.insert([4; 32], ProviderId::new(0), active(800), 60, 900);
        assert!(
            c.get(&[4; 32], ProviderId::new(0), 900).is_some(),
            "usable by the decision that asked"
        );
        assert!(c.get(&[4; 32], ProviderId::new(0), 901).is_none());
        c.insert([3; 32], ProviderId::new(0), Introspected::Inactive, 60, 900);
        assert_eq!(c.len(), 2);
        assert!(
            c.get(&[2; 32], ProviderId::new(0), 900).is_none(),
            "evicted"
        );
        assert_eq!(
            c.get(&[3; 32], ProviderId::new(0), 900),
            Some(&Introspected::Inactive)
        );
    }
}
