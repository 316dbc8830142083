//! An introspection endpoint's answer (RFC 7662 §2.2): any status, any body.
//!
//! Oracles: no panic; certbound says "active" only for a 200 whose body a
//! generic JSON parser also reads as an object with `"active": true`, and
//! "inactive" only for one with `"active": false`; an active answer's `cnf`
//! (RFC 8705 §3.2) reads as a confirmation without panicking, and an
//! `x5t#S256` it accepts is 43 base64url characters of a SHA-256 value.
#![no_main]

use certbound::Confirmation;
use certbound::{Introspected, parse_introspection as parse_response};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const STATUSES: [Option<&str>; 6] = [
    Some("200"),
    Some("200 "),
    Some("201"),
    Some("500"),
    Some(""),
    None,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let status = STATUSES[usize::from(pick) % STATUSES.len()];
    let body = (pick & 0x80 == 0).then_some(body);
    let generic = body.and_then(|b| serde_json::from_slice::<Value>(b).ok());
    let active = generic.as_ref().and_then(|v| v.get("active"));
    match parse_response(status, body) {
        None => {}
        Some(Introspected::Active(claims)) => {
            assert_eq!(status, Some("200"));
            assert_eq!(
                active,
                Some(&Value::Bool(true)),
                "active without `active: true`"
            );
            assert_eq!(claims.get("active"), Some(&Value::Bool(true)));
            if let Confirmation::X5tS256(t) = Confirmation::of_claims(&claims) {
                let x5t = claims["cnf"]["x5t#S256"].as_str().unwrap();
                assert_eq!(x5t.len(), 43);
                assert_eq!(t.to_base64url(), x5t, "x5t#S256 not canonical");
            }
        }
        Some(Introspected::Inactive) => {
            assert_eq!(status, Some("200"));
            assert_eq!(
                active,
                Some(&Value::Bool(false)),
                "inactive without `active: false`"
            );
        }
    }
});
