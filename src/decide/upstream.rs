//! What goes upstream: the headers certbound writes from a verified token
//! (`claim_to_headers`, `forward_payload_header`, `thumbprint_header`), and
//! the token's removal when it is not forwarded. Every header certbound may
//! write is first removed from the incoming request, whatever the outcome.

use serde_json::Value;

use crate::binding::Thumbprint;
use crate::decide::extract::{Found, visit_tokens};
use crate::decide::request::{HeaderOp, MAX_HEADER_VALUE_BYTES, Request};
use crate::decide::token::VerifiedToken;
use crate::policy::{Policy, Provider, TokenSource};

/// Anti-spoofing: every header certbound may write upstream is first
/// removed from the incoming request, whatever the outcome.
pub fn strip_output_headers(policy: &Policy) -> Vec<HeaderOp> {
    policy
        .output_headers
        .iter()
        .map(|h| HeaderOp::Remove(h.clone()))
        .collect()
}

pub fn upstream_ops(
    policy: &Policy,
    p: &Provider,
    token: &VerifiedToken,
    thumbprint: Option<Thumbprint>,
    found: &Found<'_>,
    req: Request<'_>,
    ops: &mut Vec<HeaderOp>,
) {
    for c in &p.claim_to_headers {
        if let Some(value) = claim_value(&token.claims, &c.name, &c.claim) {
            ops.push(HeaderOp::Set(c.header.clone(), value));
        }
    }
    if let Some(h) = &p.forward_payload_header
        && !token.payload_b64.is_empty()
    {
        let mut payload = token.payload_b64.clone();
        if p.pad_forward_payload_header {
            // base64 (RFC 4648 §3.2) padding: a multiple of 4 characters.
            let pad = (4 - payload.len() % 4) % 4;
            payload.extend(core::iter::repeat_n('=', pad));
        }
        ops.push(HeaderOp::Set(h.clone(), payload));
    }
    if let (Some(h), Some(t)) = (&p.thumbprint_header, thumbprint) {
        ops.push(HeaderOp::Set(h.clone(), t.to_base64url()));
    }
    if !p.forward {
        remove_token(policy, found, req, ops);
    }
}

/// A claim as a header value: strings as they are, numbers and booleans in
/// JSON form, arrays of those joined with commas. Objects, and values with
/// characters a header cannot carry, are not forwarded. The claim is the
/// top-level one named `name` if there is one (a namespaced claim such as
/// `https://example.com/roles` holds dots), else `path` through objects.
fn claim_value(
    claims: &serde_json::Map<String, Value>,
    name: &str,
    path: &[String],
) -> Option<String> {
    let v = match claims.get(name) {
        Some(v) => v,
        None => {
            let (first, rest) = path.split_first()?;
            let mut v = claims.get(first)?;
            for seg in rest {
                v = v.as_object()?.get(seg)?;
            }
            v
        }
    };
    let scalar = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    };
    let s = match v {
        Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        other => scalar(other)?,
    };
    let safe = s.len() <= MAX_HEADER_VALUE_BYTES
        && s.bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80);
    safe.then_some(s)
}

/// `forward: false`: the token does not go upstream, from any location it
/// was sent in (a client may repeat it in a header, the query and a cookie).
fn remove_token(policy: &Policy, found: &Found<'_>, req: Request<'_>, ops: &mut Vec<HeaderOp>) {
    let token = found.token;
    let holds = |source: &TokenSource| {
        let mut holds = false;
        let _ = visit_tokens(source, req, &mut |t| {
            holds |= t == token;
            Ok(())
        });
        holds
    };
    let mut headers: Vec<&str> = Vec::new();
    let mut params: Vec<&str> = Vec::new();
    let mut cookies: Vec<&str> = Vec::new();
    for source in policy.providers.iter().flat_map(|p| p.sources.iter()) {
        if !holds(source) {
            continue;
        }
        match source {
            TokenSource::Header { name, .. } => headers.push(name),
            TokenSource::Param(p) => params.push(p),
            TokenSource::Cookie(c) => cookies.push(c),
        }
    }
    headers.sort_unstable();
    headers.dedup();
    for h in headers {
        ops.push(HeaderOp::Remove(h.to_string()));
    }
    if !params.is_empty()
        && let Some((base, q)) = req.path.split_once('?')
    {
        let (q, frag) = match q.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (q, None),
        };
        let kept: Vec<&str> = q
            .split('&')
            .filter(|kv| {
                !kv.split_once('=')
                    .is_some_and(|(k, v)| params.contains(&k) && v == token)
            })
            .collect();
        let mut path = base.to_string();
        if !kept.is_empty() {
            path.push('?');
            path.push_str(&kept.join("&"));
        }
        if let Some(f) = frag {
            path.push('#');
            path.push_str(f);
        }
        ops.push(HeaderOp::Set(":path".into(), path));
    }
    if !cookies.is_empty() {
        let kept: Vec<&str> = req
            .headers
            .values("cookie")
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|kv| !kv.is_empty())
            .filter(|kv| {
                !kv.split_once('=')
                    .is_some_and(|(k, v)| cookies.contains(&k) && v.trim_matches('"') == token)
            })
            .collect();
        if kept.is_empty() {
            ops.push(HeaderOp::Remove("cookie".into()));
        } else {
            ops.push(HeaderOp::Set("cookie".into(), kept.join("; ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::claim_value;

    #[test]
    fn claims_by_whole_name_then_by_path() {
        let claims = serde_json::json!({
            "sub": "client-a",
            "org": {"id": 42, "name": "acme", "deep": {"ok": true}},
            "https://example.com/roles": ["admin", "ops"],
            "a.b": "top-level",
            "a": {"b": "nested"},
            "obj": {"x": 1},
            "mixed": ["x", {"y": 1}],
            "crlf": "evil\r\nx-admin: 1"
        });
        let claims = claims.as_object().cloned().unwrap_or_default();
        let get = |name: &str| {
            let path: Vec<String> = name.split('.').map(str::to_string).collect();
            claim_value(&claims, name, &path)
        };
        assert_eq!(get("sub").as_deref(), Some("client-a"));
        assert_eq!(get("org.id").as_deref(), Some("42"));
        assert_eq!(get("org.deep.ok").as_deref(), Some("true"));
        // A namespaced claim (Auth0 and others) holds dots in its name.
        assert_eq!(
            get("https://example.com/roles").as_deref(),
            Some("admin,ops")
        );
        // The whole name wins over the path when both exist.
        assert_eq!(get("a.b").as_deref(), Some("top-level"));
        // Not forwarded: absent, objects, arrays holding objects, and values
        // a header cannot carry.
        for name in ["nope", "org.nope", "sub.x", "obj", "mixed", "crlf"] {
            assert_eq!(get(name), None, "{name}");
        }
    }
}
