//! Client certificates forwarded by a TLS-terminating proxy, and the trust
//! boundary that decides whether to believe them.
//!
//! Sources: Envoy's `x-forwarded-client-cert` (XFCC), RFC 9440's
//! `Client-Cert`, and the headers load balancers and nginx write (PEM,
//! URL-encoded PEM, base64 DER, or a SHA-256 hash). Everything is
//! normalised to the certificate's SHA-256 thumbprint (RFC 8705 §3.1)
//! before it is compared.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use std::net::IpAddr;

use crate::binding::{MAX_CERT_BYTES, Thumbprint, percent_decode};

/// How a forwarded header encodes the client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// nginx `$ssl_client_escaped_cert`, AWS ALB `X-Amzn-Mtls-Clientcert`.
    UrlEncodedPem,
    /// PEM, with its line breaks possibly folded to spaces or tabs.
    Pem,
    /// base64 (standard or URL-safe, padded or not) of the DER.
    Base64Der,
    /// RFC 9440 §2.2: a Structured Field byte sequence, `:base64:`.
    Rfc9440,
    /// Only a SHA-256 hash: hex, hex with colons, or base64.
    Sha256,
}

impl Encoding {
    pub fn from_name(name: &str) -> Option<Encoding> {
        Some(match name {
            "url_encoded_pem" => Encoding::UrlEncodedPem,
            "pem" => Encoding::Pem,
            "base64_der" => Encoding::Base64Der,
            "rfc9440" => Encoding::Rfc9440,
            "sha256" => Encoding::Sha256,
            _ => return None,
        })
    }
}

/// Where the client certificate of a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The TLS connection to this Envoy (`connection.peer_certificate`).
    Connection,
    /// `x-forwarded-client-cert`, as Envoy writes it.
    Xfcc,
    Header {
        name: String,
        encoding: Encoding,
    },
}

impl Source {
    /// The request header the certificate arrives in, if any.
    pub fn header(&self) -> Option<&str> {
        match self {
            Source::Connection => None,
            Source::Xfcc => Some("x-forwarded-client-cert"),
            Source::Header { name, .. } => Some(name),
        }
    }
}

/// A validated `client_certificate` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSource {
    pub source: Source,
    pub trusted_proxies: Vec<Cidr>,
    pub trusted_peer_uri_sans: Vec<String>,
    /// Keep the forwarded header upstream (default: removed).
    pub forward_header: bool,
}

impl Default for CertificateSource {
    fn default() -> Self {
        CertificateSource {
            source: Source::Connection,
            trusted_proxies: Vec::new(),
            trusted_peer_uri_sans: Vec::new(),
            forward_header: false,
        }
    }
}

impl CertificateSource {
    /// A forwarded header is believed only from a trusted hop: every trust
    /// check that is configured must pass (the peer address is in
    /// `trusted_proxies`; the connection's own client certificate has a URI
    /// SAN in `trusted_peer_uri_sans`). With none configured, nothing is
    /// trusted; validation refuses that configuration anyway.
    pub fn trusts(&self, source_address: Option<&str>, peer_uri_san: Option<&str>) -> bool {
        let checks = !self.trusted_proxies.is_empty() || !self.trusted_peer_uri_sans.is_empty();
        let by_address = self.trusted_proxies.is_empty()
            || source_address
                .and_then(parse_socket_ip)
                .is_some_and(|ip| self.trusted_proxies.iter().any(|c| c.contains(ip)));
        let by_san = self.trusted_peer_uri_sans.is_empty()
            || peer_uri_san.is_some_and(|san| self.trusted_peer_uri_sans.iter().any(|t| t == san));
        checks && by_address && by_san
    }
}

/// An IP prefix, `10.0.0.0/8` or `fd00::/8`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
            None => max,
        };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            // A prefix written in IPv6 (`::ffff:10.0.0.0/104`, `::/0`) also
            // covers the IPv4 addresses it maps.
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.to_ipv6_mapped().octets(), self.prefix)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

/// `::ffff:a.b.c.d` is the IPv4 address a.b.c.d.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a.get(..full) != b.get(..full) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (a.get(full), b.get(full)) {
        (Some(x), Some(y)) => x & mask == y & mask,
        _ => false,
    }
}

/// Envoy's `source.address`: `1.2.3.4:5678`, `[::1]:5678`, or a bare address.
pub fn parse_socket_ip(s: &str) -> Option<IpAddr> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    s.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// The thumbprint in a forwarded header value, per its encoding.
pub fn from_header(value: &str, encoding: Encoding) -> Option<Thumbprint> {
    if value.len() > MAX_CERT_BYTES {
        return None;
    }
    let value = value.trim();
    match encoding {
        Encoding::UrlEncodedPem => {
            let pem = percent_decode(value.as_bytes())?;
            der_of_pem(core::str::from_utf8(&pem).ok()?).map(|d| Thumbprint::of_der(&d))
        }
        Encoding::Pem => der_of_pem(value).map(|d| Thumbprint::of_der(&d)),
        Encoding::Base64Der => decode_base64_any(value)
            .filter(|d| is_certificate(d))
            .map(|d| Thumbprint::of_der(&d)),
        Encoding::Rfc9440 => {
            let inner = value.strip_prefix(':')?.strip_suffix(':')?;
            // RFC 8941 §3.3.5: sf-binary is standard base64, padding allowed.
            let der = STANDARD
                .decode(inner)
                .or_else(|_| STANDARD_NO_PAD.decode(inner))
                .ok()?;
            is_certificate(&der).then(|| Thumbprint::of_der(&der))
        }
        Encoding::Sha256 => hash_any(value),
    }
}

/// A SHA-256 hash as forwarders write it: hex, hex with `:`, or base64(url).
pub fn hash_any(value: &str) -> Option<Thumbprint> {
    let v = value.trim();
    let hex: String = v.chars().filter(|c| *c != ':').collect();
    if let Some(t) = Thumbprint::from_hex(&hex) {
        return Some(t);
    }
    let bytes = decode_base64_any(v)?;
    let arr: [u8; 32] = bytes.try_into().ok()?;
    Some(Thumbprint(arr))
}

fn decode_base64_any(v: &str) -> Option<Vec<u8>> {
    let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD
        .decode(&v)
        .or_else(|_| STANDARD_NO_PAD.decode(&v))
        .or_else(|_| URL_SAFE.decode(&v))
        .or_else(|_| URL_SAFE_NO_PAD.decode(&v))
        .ok()
}

/// The DER of the first certificate in PEM text whose line breaks may have
/// been folded into spaces or tabs by a header-writing proxy.
pub fn der_of_pem(text: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = text.find(BEGIN)? + BEGIN.len();
    let len = text.get(start..)?.find(END)?;
    let body: String = text
        .get(start..start + len)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(body).ok()?;
    is_certificate(&der).then_some(der)
}

fn is_certificate(der: &[u8]) -> bool {
    matches!(x509_parser::parse_x509_certificate(der), Ok((&[], _)))
}

/// The client certificate in an `x-forwarded-client-cert` value: the last
/// element is the hop nearest to us; its `Cert` (URL-encoded PEM) wins,
/// else its `Hash` (hex SHA-256 of the DER).
pub fn from_xfcc(value: &str) -> Option<Thumbprint> {
    if value.len() > MAX_CERT_BYTES {
        return None;
    }
    let elements = split_unquoted(value, ',');
    let last = elements.last()?;
    let mut cert = None;
    let mut hash = None;
    for pair in split_unquoted(last, ';') {
        let Some((k, v)) = pair.split_once('=') else {
            continue;
        };
        let v = unquote(v.trim());
        if k.trim().eq_ignore_ascii_case("cert") {
            cert = Some(v);
        } else if k.trim().eq_ignore_ascii_case("hash") {
            hash = Some(v);
        }
    }
    if let Some(c) = cert {
        return from_header(&c, Encoding::UrlEncodedPem);
    }
    Thumbprint::from_hex(&hash?)
}

/// Splits at `sep` outside double quotes (XFCC quotes values holding `,;=`).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(s.get(start..i).unwrap_or(""));
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(s.get(start..).unwrap_or(""));
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let c = Cidr::parse("fd00::/8").unwrap();
        assert!(c.contains("fd12::1".parse().unwrap()));
        assert!(!c.contains("fe80::1".parse().unwrap()));
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("10.0.0.0/").is_none());
        assert!(Cidr::parse("nope/8").is_none());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        // IPv4-mapped IPv6 prefixes match the IPv4 addresses they map.
        let c = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(c.contains("::ffff:10.0.0.7".parse().unwrap()));
        assert!(c.contains("10.9.9.9".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("::ffff:10.0.0.1")
                .unwrap()
                .contains("::ffff:10.0.0.1".parse().unwrap())
        );
        assert!(
            !Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains("fd00::1".parse().unwrap())
        );
        let c = Cidr::parse("192.168.1.128/25").unwrap();
        assert!(c.contains("192.168.1.200".parse().unwrap()));
        assert!(!c.contains("192.168.1.100".parse().unwrap()));
    }

    #[test]
    fn socket_addresses() {
        assert_eq!(parse_socket_ip("1.2.3.4:80"), "1.2.3.4".parse().ok());
        assert_eq!(parse_socket_ip("[::1]:80"), "::1".parse().ok());
        assert_eq!(parse_socket_ip("::1"), "::1".parse().ok());
        assert_eq!(parse_socket_ip("junk"), None);
    }

    #[test]
    fn trust_requires_every_configured_check() {
        let mut s = CertificateSource {
            source: Source::Xfcc,
            ..CertificateSource::default()
        };
        assert!(!s.trusts(Some("127.0.0.1:1"), None), "nothing configured");
        s.trusted_proxies = vec![Cidr::parse("127.0.0.0/8").unwrap()];
        assert!(s.trusts(Some("127.0.0.1:1"), None));
        assert!(!s.trusts(Some("10.0.0.1:1"), None));
        assert!(!s.trusts(None, None));
        s.trusted_peer_uri_sans = vec!["spiffe://mesh/front".into()];
        assert!(!s.trusts(Some("127.0.0.1:1"), None));
        assert!(s.trusts(Some("127.0.0.1:1"), Some("spiffe://mesh/front")));
        s.trusted_proxies.clear();
        assert!(s.trusts(None, Some("spiffe://mesh/front")));
        assert!(!s.trusts(None, Some("spiffe://mesh/other")));
    }

    #[test]
    fn xfcc_splitting() {
        let v = r#"By=spiffe://a;Hash=aa;Subject="CN=x,O=y;z";URI=,Hash=bb;Cert="x\"y""#;
        let elements = split_unquoted(v, ',');
        assert_eq!(elements.len(), 2);
        assert_eq!(split_unquoted(elements[0], ';').len(), 4);
        assert_eq!(unquote(r#""x\"y""#), "x\"y");
    }

    #[test]
    fn xfcc_hash_of_last_hop() {
        let a = "ab".repeat(32);
        let b = "cd".repeat(32);
        let v = format!("Hash={a};Subject=\"CN=a,O=b\",By=spiffe://x;Hash={b}");
        assert_eq!(from_xfcc(&v).unwrap().0, [0xcd; 32]);
        assert!(from_xfcc("By=spiffe://x").is_none());
        assert!(from_xfcc("").is_none());
    }

    #[test]
    fn hashes_in_any_common_form() {
        let t = Thumbprint([0x5a; 32]);
        let hex: String = t.0.iter().map(|b| format!("{b:02x}")).collect();
        let colons: Vec<String> = t.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hash_any(&hex), Some(t));
        assert_eq!(hash_any(&colons.join(":")), Some(t));
        assert_eq!(hash_any(&STANDARD.encode(t.0)), Some(t));
        assert_eq!(hash_any(&t.to_base64url()), Some(t));
        assert_eq!(hash_any("abcd"), None);
    }

    #[test]
    fn rfc9440_needs_colons() {
        assert!(from_header("AAAA", Encoding::Rfc9440).is_none());
        assert!(
            from_header(":AAAA:", Encoding::Rfc9440).is_none(),
            "not a cert"
        );
    }
}
