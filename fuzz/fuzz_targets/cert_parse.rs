//! Arbitrary bytes through everything that reads a client certificate or a
//! thumbprint: `peer_certificate_der`, `thumbprint_of_pem`, `percent_decode`,
//! `Thumbprint::from_hex` and `Thumbprint::from_x5t_s256`. The bytes are
//! also tried as DER wrapped in a PEM envelope, so that the fuzzer mutates
//! certificates directly rather than their base64.
//!
//! Oracles: no panic; the strict parsers round-trip (an accepted
//! `x5t#S256` re-encodes to exactly its input, an accepted hex digest to its
//! trimmed input); `thumbprint_of_pem` is SHA-256 of `peer_certificate_der`;
//! percent-decoding never grows the input and is the identity without `%`.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certbound::binding::{Thumbprint, peer_certificate_der, percent_decode, thumbprint_of_pem};
use libfuzzer_sys::fuzz_target;

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

    let text = String::from_utf8_lossy(data);
    if let Some(t) = Thumbprint::from_x5t_s256(&text) {
        assert_eq!(t.to_base64url(), text, "x5t#S256 parsing is not strict");
    }
    if let Some(t) = Thumbprint::from_hex(&text) {
        let hex: String = t.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, text.trim().to_ascii_lowercase(), "hex digest parsing");
    }
});
