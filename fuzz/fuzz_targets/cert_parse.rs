//! Arbitrary bytes through everything that reads a client certificate or a
//! thumbprint: `peer_certificate_der`, `thumbprint_of_pem`, `percent_decode`,
//! `Thumbprint::from_hex`, `Thumbprint::from_x5t_s256` and the
//! `ThumbprintCache`; and what reads certificates forwarded by a proxy
//! (`certbound::thumbprint_from_header` in every encoding, `from_xfcc`, `hash_any`,
//! `der_of_pem`) and its trust boundary (`Cidr`, `parse_socket_ip`,
//! `CertificateSource::trusts`). The bytes are also tried as DER wrapped in
//! a PEM envelope, so that the fuzzer mutates certificates directly rather
//! than their base64.
//!
//! Oracles: no panic; the strict parsers round-trip (an accepted
//! `x5t#S256` re-encodes to exactly its input, an accepted hex digest to its
//! trimmed input); `thumbprint_of_pem` is SHA-256 of `peer_certificate_der`;
//! percent-decoding never grows the input and is the identity without `%`;
//! the thumbprint cache answers as the uncached function; a forwarded PEM's
//! thumbprint is SHA-256 of `der_of_pem`; a trusted proxy address really
//! lies in a configured prefix (checked with independent mask arithmetic).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::net::IpAddr;
use std::sync::OnceLock;

use certbound::{
    CertificateSource, Cidr, Encoding, Source, der_of_pem, hash_any, parse_socket_ip,
    thumbprint_from_header as from_header, thumbprint_from_xfcc as from_xfcc,
};
use certbound::{
    Thumbprint, ThumbprintCache, peer_certificate_der, percent_decode, thumbprint_of_pem,
};
use libfuzzer_sys::fuzz_target;

/// The trusted prefixes, and an independent membership test for each.
const TRUSTED: [&str; 4] = ["10.0.0.0/8", "192.168.1.0/24", "fd00::/8", "127.0.0.1"];

fn trusted_source() -> &'static CertificateSource {
    static S: OnceLock<CertificateSource> = OnceLock::new();
    S.get_or_init(|| CertificateSource {
        source: Source::Xfcc,
        trusted_proxies: TRUSTED
            .iter()
            .map(|c| Cidr::parse(c).expect("fixture CIDR"))
            .collect(),
        ..CertificateSource::default()
    })
}

fn really_trusted(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let n = u32::from(v4);
            n >> 24 == 10 || n >> 8 == 0xc0a801 || n == 0x7f000001
        }
        IpAddr::V6(v6) => u128::from(v6) >> 120 == 0xfd,
    }
}

fuzz_target!(|data: &[u8]| {
    // As Envoy would hand it over: PEM text, maybe percent-encoded.
    let der = peer_certificate_der(data);
    let thumb = thumbprint_of_pem(data);
    match (&der, &thumb) {
        (Ok(d), Ok(t)) => assert_eq!(*t, Thumbprint::of_der(d)),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("peer_certificate_der and thumbprint_of_pem disagree: {der:?} {thumb:?}"),
    }

    // As DER in a well-formed PEM envelope.
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    let b64 = STANDARD.encode(data);
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    if let Ok(d) = peer_certificate_der(pem.as_bytes()) {
        assert_eq!(d, data, "the PEM's DER is not the DER that was wrapped");
    }

    match percent_decode(data) {
        Some(out) => {
            assert!(out.len() <= data.len());
            if !data.contains(&b'%') {
                assert_eq!(out, data);
            }
        }
        None => assert!(data.contains(&b'%')),
    }

    // The per-VM cache answers as the function, on a miss and on a hit.
    let mut cache = ThumbprintCache::default();
    assert_eq!(cache.thumbprint_of_pem(data), thumb);
    assert_eq!(cache.thumbprint_of_pem(data), thumb);

    let text = String::from_utf8_lossy(data);
    if let Some(t) = Thumbprint::from_x5t_s256(&text) {
        assert_eq!(t.to_base64url(), text, "x5t#S256 parsing is not strict");
    }
    if let Some(t) = Thumbprint::from_hex(&text) {
        let hex: String = t.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, text.trim().to_ascii_lowercase(), "hex digest parsing");
    }

    // Forwarded certificates.
    let pem_der = der_of_pem(&text);
    let forwarded_pem = from_header(&text, Encoding::Pem);
    let in_bounds = text.len() <= certbound::MAX_CERT_BYTES;
    if in_bounds {
        assert_eq!(forwarded_pem, pem_der.as_deref().map(Thumbprint::of_der));
    }
    for enc in [
        Encoding::UrlEncodedPem,
        Encoding::Base64Der,
        Encoding::Rfc9440,
        Encoding::Sha256,
    ] {
        let _ = from_header(&text, enc);
    }
    if let Some(t) = hash_any(&text).filter(|_| in_bounds) {
        assert_eq!(from_header(&text, Encoding::Sha256), Some(t));
    }
    let _ = from_xfcc(&text);

    // The trust boundary.
    if let Some(c) = Cidr::parse(&text) {
        let _ = c.contains(IpAddr::from([10, 0, 0, 1]));
    }
    if let Some(ip) = parse_socket_ip(&text) {
        let trusted = trusted_source().trusts(Some(&text), None);
        assert_eq!(
            trusted,
            really_trusted(ip),
            "trusts({text:?}) for {ip} is not prefix membership"
        );
        // A bare address is its own /32 or /128, IPv4-mapped IPv6 included.
        let own = Cidr::parse(&ip.to_string()).expect("an address is a CIDR");
        assert!(own.contains(ip), "{ip} is not in its own prefix");
    }
    assert!(!trusted_source().trusts(None, None));
});
