//! Token extraction: every location a provider reads (RFC 6750 §2: the
//! `Authorization` header, other headers, query parameters, cookies).

use crate::decide::request::{MAX_HEADER_VALUE_BYTES, Request};
use crate::error::AuthError;
use crate::policy::{Policy, TokenSource};

/// A token found in the request, and where.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub source: &'a TokenSource,
    pub token: &'a str,
}

/// Finds the request's token in every location a provider reads. Two
/// different tokens are an `invalid_request` (RFC 6750 §2), unless one is
/// malformed, which is reported first. The caller checks the token found
/// with [`check_b64token`].
pub fn find_token<'a>(
    policy: &'a Policy,
    req: Request<'a>,
) -> Result<Option<Found<'a>>, AuthError> {
    let mut found: Option<Found<'a>> = None;
    for provider in &policy.providers {
        for source in &provider.sources {
            visit_tokens(source, req, &mut |token| {
                match found {
                    None => found = Some(Found { source, token }),
                    Some(first) if first.token == token => {}
                    Some(first) => {
                        check_b64token(first.token)?;
                        check_b64token(token)?;
                        return Err(AuthError::MultipleTokens);
                    }
                }
                Ok(())
            })?;
        }
    }
    Ok(found)
}

/// Hands each candidate token at one source to `visit`, stopping at its
/// first error. A value that is there but is no token (a different auth
/// scheme, say) is skipped. (A visitor, not a boxed iterator: no
/// allocation per request.)
pub fn visit_tokens<'a>(
    source: &TokenSource,
    req: Request<'a>,
    visit: &mut dyn FnMut(&'a str) -> Result<(), AuthError>,
) -> Result<(), AuthError> {
    match source {
        // Envoy folds repeated headers into one value joined by ",", and a
        // JWT never holds a comma: each part is a candidate token.
        TokenSource::Header { name, prefix } => {
            for value in req.headers.values(name) {
                for part in comma_parts(value) {
                    if let Some(token) = strip_prefix(name, prefix, part.trim_start()) {
                        visit(token)?;
                    }
                }
            }
        }
        TokenSource::Param(param) => {
            for kv in query(req.path).split('&') {
                if let Some((k, v)) = kv.split_once('=')
                    && k == param
                    && !v.is_empty()
                {
                    visit(v)?;
                }
            }
        }
        TokenSource::Cookie(cookie) => {
            for value in req.headers.values("cookie") {
                for kv in value.split(';') {
                    if let Some((k, v)) = kv.trim().split_once('=') {
                        let v = v.trim_matches('"');
                        if k == cookie && !v.is_empty() {
                            visit(v)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// `value.split(',')`, the commas found by `memchr`, which is vectorised
/// where `str::split` reads a word at a time: every request splits its
/// whole token header.
fn comma_parts(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    core::iter::from_fn(move || {
        let v = rest?;
        match memchr::memchr(b',', v.as_bytes()) {
            // A comma is one byte: both sides are on character boundaries.
            Some(i) => {
                rest = v.get(i + 1..);
                v.get(..i)
            }
            None => rest.take(),
        }
    })
}

/// `Authorization` carries an auth scheme, which is case-insensitive
/// (RFC 9110 §11.1); other headers' prefixes match exactly, as in jwt_authn.
fn strip_prefix<'a>(header: &str, prefix: &str, value: &'a str) -> Option<&'a str> {
    if value.len() > MAX_HEADER_VALUE_BYTES {
        return Some(value);
    }
    let rest = if header == "authorization" {
        let head = value.get(..prefix.len())?;
        if !head.eq_ignore_ascii_case(prefix) {
            return None;
        }
        value.get(prefix.len()..)?
    } else {
        value.strip_prefix(prefix)?
    };
    let rest = rest.trim_matches(|c| c == ' ' || c == '\t');
    (!rest.is_empty()).then_some(rest)
}

/// The bytes of RFC 6750 §2.1's b64token, as a table: one load per byte
/// on the path of every request.
#[allow(clippy::indexing_slicing)] // b < 256, checked at compile time
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// RFC 6750 §2.1 b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub fn check_b64token(t: &str) -> Result<&str, AuthError> {
    if t.len() > MAX_HEADER_VALUE_BYTES {
        return Err(AuthError::TokenTooLarge {
            len: t.len(),
            max: MAX_HEADER_VALUE_BYTES,
        });
    }
    let body = t.trim_end_matches('=');
    if !body.is_empty() && all_b64token(body.as_bytes()) {
        Ok(t)
    } else {
        Err(AuthError::Malformed("token has invalid characters"))
    }
}

/// Whether every byte is a b64token byte. Eight table loads per step,
/// without a branch per byte: this runs over the whole of every token that
/// is not in the token cache.
#[allow(clippy::indexing_slicing)] // a u8 indexes a 256-entry table
fn all_b64token(bytes: &[u8]) -> bool {
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder().iter().all(|&b| B64TOKEN[usize::from(b)]);
    tail && chunks.fold(true, |ok, c| {
        c.iter().fold(ok, |ok, &b| ok & B64TOKEN[usize::from(b)])
    })
}

fn query(path: &str) -> &str {
    let q = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('#').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::{check_b64token, comma_parts};

    #[test]
    fn comma_parts_are_those_of_split() {
        for value in [
            "",
            ",",
            ",,",
            "a",
            "a,",
            ",a",
            "a,b",
            "Bearer x, Bearer y",
            "é,ü,",
        ] {
            let parts: Vec<&str> = comma_parts(value).collect();
            assert_eq!(parts, value.split(',').collect::<Vec<_>>(), "{value:?}");
        }
    }

    /// RFC 6750 §2.1: every byte at every position of a chunk or of the
    /// tail is checked, and `=` only at the end.
    #[test]
    fn b64token_checks_every_byte() {
        let alphabet = "ABCXYZabcxyz0189-._~+/";
        for len in 1..=40usize {
            let good: String = alphabet.chars().cycle().take(len).collect();
            assert_eq!(check_b64token(&good), Ok(good.as_str()));
            let padded = format!("{good}==");
            assert_eq!(check_b64token(&padded), Ok(padded.as_str()));
            for i in 0..len {
                for bad in [",", " ", "=", "\"", "\u{7f}", "\u{e9}", "\0", "%", "*"] {
                    let mut t = good.clone();
                    t.replace_range(i..=i, bad);
                    if bad == "=" && i == len - 1 {
                        continue; // trailing padding is allowed
                    }
                    assert!(check_b64token(&t).is_err(), "{t:?}");
                }
            }
        }
        assert!(check_b64token("").is_err());
        assert!(check_b64token("==").is_err());
    }
}
