//! The `htu` comparison of RFC 9449 §4.3 step 9: the proof's `htu` and the
//! request's URI, both without query and fragment, compared after the
//! syntax-based and scheme-based normalisations of RFC 3986 §6.2.2-6.2.3:
//!
//! * scheme and host to lower case (§6.2.2.1);
//! * percent-encodings with upper-case hex digits, and those of unreserved
//!   characters decoded (§6.2.2.1-2);
//! * dot segments removed from the path (§6.2.2.3, §5.2.4);
//! * the scheme's default port (443 for https, 80 for http) and an empty
//!   port removed, an empty path made "/" (§6.2.3).
//!
//! Only `http` and `https` URIs are compared; user information in the
//! authority, characters outside RFC 3986's grammar and malformed
//! percent-encodings make a URI unusable, so it matches nothing.
//!
//! The request's URI is built from the external origin the caller passes
//! (scheme and authority, from `:scheme`/`:authority`, trusted forwarded
//! headers or an operator-pinned origin) and the request path (`:path`, in
//! origin form).

/// `htu` and the request URI, normalised, are equal.
pub fn htu_matches(htu: &str, origin: &str, path: &str) -> bool {
    match (normalize(htu), request_uri(origin, path)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The normalised URI of a request: `origin` (`scheme://authority`, with
/// no path) followed by `path` (origin form, starting with `/`). `None` if
/// either is unusable.
pub fn request_uri(origin: &str, path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let origin = origin.strip_suffix('/').unwrap_or(origin);
    let (_, rest) = origin.split_once("://")?;
    if rest.contains(['/', '?', '#']) {
        return None;
    }
    normalize(&format!("{origin}{path}"))
}

/// The normalised form of an absolute `http` or `https` URI, query and
/// fragment removed. `None` if it is not one.
pub fn normalize(uri: &str) -> Option<String> {
    let uri = uri.split_once('#').map_or(uri, |(u, _)| u);
    let uri = uri.split_once('?').map_or(uri, |(u, _)| u);
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let authority = normalize_authority(authority, default_port)?;
    let path = remove_dot_segments(&normalize_percent(path, is_path_char)?);
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    Some(format!("{scheme}://{authority}{path}"))
}

/// `host[:port]`, host lower-cased, port without leading zeros and
/// removed when it is the default or empty.
fn normalize_authority(authority: &str, default_port: &str) -> Option<String> {
    if authority.contains('@') {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        // IP-literal (RFC 3986 §3.2.2): up to the closing bracket.
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        if !host
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'[' | b']' | b':' | b'.'))
        {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let host = normalize_percent(&host.to_ascii_lowercase(), is_reg_name_char)?;
        (host, port)
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(p) => {
            if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u16 = p.parse().ok()?;
            let n = n.to_string();
            (n != default_port).then_some(n)
        }
    };
    Some(match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// `reg-name` characters other than `%` (RFC 3986 §3.2.2).
fn is_reg_name_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b)
}

/// `path-abempty` characters other than `%`: `pchar` and `/` (§3.3).
fn is_path_char(b: u8) -> bool {
    is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@' | b'/')
}

/// Percent-encodings upper-cased, those of unreserved characters decoded;
/// `None` for a byte `allowed` refuses or a `%` not followed by two hex
/// digits.
fn normalize_percent(input: &str, allowed: fn(u8) -> bool) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            let value = (hi << 4) | lo;
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push(char::from(HEX_UPPER.get(usize::from(hi)).copied()?));
                out.push(char::from(HEX_UPPER.get(usize::from(lo)).copied()?));
            }
            i += 3;
        } else if allowed(b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// RFC 3986 §5.2.4 `remove_dot_segments`.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    let pop = |out: &mut String| {
        let at = out.rfind('/').unwrap_or(0);
        out.truncate(at);
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest; // A
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest; // A
        } else if input.starts_with("/./") {
            input = input.get(2..).unwrap_or(""); // B
        } else if input == "/." {
            input = "/"; // B
        } else if input.starts_with("/../") {
            input = input.get(3..).unwrap_or(""); // C
            pop(&mut out);
        } else if input == "/.." {
            input = "/"; // C
            pop(&mut out);
        } else if input == "." || input == ".." {
            input = ""; // D
        } else {
            // E: the first segment, with its leading "/" if any.
            let from = usize::from(input.starts_with('/'));
            let end = input
                .get(from..)
                .and_then(|s| s.find('/'))
                .map_or(input.len(), |i| i + from);
            let (segment, rest) = input.split_at(end);
            out.push_str(segment);
            input = rest;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        let cases = [
            ("https://api.example.com", "https://api.example.com/"),
            ("HTTPS://API.Example.COM/a", "https://api.example.com/a"),
            ("https://api.example.com:443/a", "https://api.example.com/a"),
            (
                "https://api.example.com:0443/a",
                "https://api.example.com/a",
            ),
            ("https://api.example.com:/a", "https://api.example.com/a"),
            ("http://api.example.com:80/a", "http://api.example.com/a"),
            (
                "http://api.example.com:443/a",
                "http://api.example.com:443/a",
            ),
            (
                "https://api.example.com:8443/a",
                "https://api.example.com:8443/a",
            ),
            (
                "https://api.example.com/a?b=c#d",
                "https://api.example.com/a",
            ),
            ("https://api.example.com/a#d?x", "https://api.example.com/a"),
            ("https://api.example.com?x", "https://api.example.com/"),
            (
                "https://api.example.com/%7euser/%2f",
                "https://api.example.com/~user/%2F",
            ),
            (
                "https://api.example.com/%41%2D",
                "https://api.example.com/A-",
            ),
            (
                "https://api.example.com/a/./b/../c",
                "https://api.example.com/a/c",
            ),
            (
                "https://api.example.com/a/%2E%2E/c",
                "https://api.example.com/c",
            ),
            (
                "https://api.example.com/../../x",
                "https://api.example.com/x",
            ),
            ("https://api.example.com/a/..", "https://api.example.com/"),
            ("https://[2001:DB8::1]:443/a", "https://[2001:db8::1]/a"),
            ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443/"),
            ("https://api.example.com/A/B", "https://api.example.com/A/B"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn unusable_uris() {
        for bad in [
            "ftp://example.com/",
            "/relative",
            "https:/x",
            "https://user@api.example.com/",
            "https:///path",
            "https://api.example.com:99999/",
            "https://api.example.com:8x/",
            "https://api.example.com/a b",
            "https://api.example.com/%zz",
            "https://api.example.com/%4",
            "https://api.example.com/\u{e9}",
            "https://[::1/",
            "https://[::1]x/",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn matching_the_request() {
        let origin = "https://api.example.com";
        assert!(htu_matches(
            "https://api.example.com/orders",
            origin,
            "/orders?id=1"
        ));
        assert!(htu_matches(
            "https://API.example.com:443/orders",
            origin,
            "/orders"
        ));
        assert!(htu_matches("https://api.example.com/", origin, "/"));
        assert!(htu_matches("https://api.example.com", origin, "/?q"));
        assert!(htu_matches(
            "https://api.example.com/a%2fb",
            origin,
            "/a%2Fb"
        ));
        assert!(htu_matches(
            "https://api.example.com/orders",
            "https://api.example.com:443/",
            "/orders"
        ));
        // Different path, path case, scheme, port, host.
        assert!(!htu_matches(
            "https://api.example.com/orders/",
            origin,
            "/orders"
        ));
        assert!(!htu_matches(
            "https://api.example.com/Orders",
            origin,
            "/orders"
        ));
        assert!(!htu_matches(
            "http://api.example.com/orders",
            origin,
            "/orders"
        ));
        assert!(!htu_matches(
            "https://api.example.com:8443/orders",
            origin,
            "/orders"
        ));
        assert!(!htu_matches(
            "https://evil.example.com/orders",
            origin,
            "/orders"
        ));
        // An encoded slash is not a slash.
        assert!(!htu_matches(
            "https://api.example.com/a%2Fb",
            origin,
            "/a/b"
        ));
        // Unusable request side.
        assert!(!htu_matches("https://api.example.com/", origin, "*"));
        assert!(!htu_matches(
            "https://api.example.com/",
            "https://api.example.com/x",
            "/"
        ));
        assert!(!htu_matches(
            "https://api.example.com/",
            "api.example.com",
            "/"
        ));
    }
}
