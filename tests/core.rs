//! Unit tests of the pure core (config, JWKS, JWT, binding, decision)
//! against the committed vectors and a fixed clock.

// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use certbound::AuthError;
use certbound::IntrospectionCache;
use certbound::TokenCache;
use certbound::{Allowed, Decision, HeaderOp, Request, Verifier, decide};
use certbound::{JwksError, KeyRing, KeySet};
use certbound::{Thumbprint, peer_certificate_der, thumbprint_of_pem};
use common::*;
use serde_json::json;

fn verify(name: &str) -> Result<(), AuthError> {
    let p = simple_policy(json!({}));
    verify_with(&p, &token(name), now()).map(|_| ())
}

fn bearer(t: &str) -> Vec<(String, String)> {
    vec![
        (":path".into(), "/api/orders".into()),
        ("authorization".into(), format!("Bearer {t}")),
    ]
}

fn run(
    policy: &certbound::Policy,
    headers: &[(String, String)],
    cert: Option<Thumbprint>,
) -> Decision {
    let keys = KeyRing::for_policy(policy);
    run_cached(policy, &keys, &mut TokenCache::new(0), headers, cert)
}

/// [`run`] with the given keys and token cache.
fn run_cached(
    policy: &certbound::Policy,
    keys: &KeyRing,
    cache: &mut TokenCache,
    headers: &[(String, String)],
    cert: Option<Thumbprint>,
) -> Decision {
    let path = headers
        .iter()
        .find(|(n, _)| n == ":path")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/");
    let mut cert = cert;
    decide(
        policy,
        Verifier {
            keys,
            cache,
            introspection: &IntrospectionCache::new(1),
        },
        Request {
            path,
            headers: &headers.iter().cloned().collect(),
        },
        &mut cert,
        now(),
    )
}

fn denied(d: &Decision) -> Option<&AuthError> {
    match d {
        Decision::Deny { error, .. } => Some(error),
        Decision::Allow(_) | Decision::Introspect { .. } | Decision::Metadata => None,
    }
}

fn allowed(d: Decision) -> Allowed {
    match d {
        Decision::Allow(a) => a,
        Decision::Deny { error, .. } => panic!("denied: {error:?}"),
        Decision::Introspect { .. } => panic!("wants introspection"),
        Decision::Metadata => panic!("answered with the metadata"),
    }
}

// ------------------------------------------------------------------ JWT

#[test]
fn every_supported_algorithm_verifies() {
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "Ed25519",
    ] {
        assert_eq!(verify(&format!("good_{alg}")), Ok(()), "{alg}");
    }
}

#[test]
fn time_claims_use_the_bounded_skew() {
    assert_eq!(verify("expired"), Err(AuthError::Expired));
    assert_eq!(verify("expired_within_skew"), Ok(()));
    // RFC 7519 §4.1.4: on or after exp (+ skew) is expired.
    assert_eq!(verify("expired_at_skew_edge"), Err(AuthError::Expired));
    assert_eq!(verify("nbf_future"), Err(AuthError::NotYetValid));
    assert_eq!(verify("nbf_within_skew"), Ok(()));
    assert_eq!(verify("iat_future"), Err(AuthError::NotYetValid));
    assert_eq!(verify("float_exp"), Ok(()));
    assert!(matches!(verify("string_exp"), Err(AuthError::Malformed(_))));
    // RFC 7519 sets no upper bound: a far-off `exp` is a valid one.
    assert_eq!(verify("exp_after_2106"), Ok(()));
    // Out of the NumericDate range this filter accepts: malformed, not a
    // signature failure, and never wrapped into a small number.
    for name in ["negative_iat", "negative_exp", "exp_huge_float"] {
        assert!(
            matches!(verify(name), Err(AuthError::Malformed(_))),
            "{name}"
        );
    }
}

#[test]
fn skew_is_configurable_and_not_jwt_simple_default() {
    // jwt-simple's default tolerance is 900 s; ours is what the config says.
    let p = simple_policy(json!({"clock_skew_seconds": 0}));
    assert_eq!(
        verify_with(&p, &token("expired_within_skew"), now()).map(|_| ()),
        Err(AuthError::Expired)
    );
    let p = simple_policy(json!({"clock_skew_seconds": 120}));
    assert!(verify_with(&p, &token("expired"), now()).is_ok());
    // An hour later, nothing of the default 60 s skew saves it.
    let p = simple_policy(json!({}));
    assert_eq!(
        verify_with(&p, &token("good_ES256"), now() + 400).map(|_| ()),
        Err(AuthError::Expired)
    );
}

#[test]
fn expiration_is_required_by_default() {
    assert_eq!(verify("no_exp"), Err(AuthError::MissingExpiration));
    let p = simple_policy(json!({"require_expiration": false}));
    assert!(verify_with(&p, &token("no_exp"), now()).is_ok());
}

#[test]
fn issuer_and_audience() {
    assert_eq!(verify("wrong_iss"), Err(AuthError::WrongIssuer));
    assert_eq!(verify("no_iss"), Err(AuthError::WrongIssuer));
    assert_eq!(verify("wrong_aud"), Err(AuthError::WrongAudience));
    assert_eq!(verify("no_aud"), Err(AuthError::WrongAudience));
    assert_eq!(verify("aud_array"), Ok(()));
    // Without configured audiences, aud is not checked.
    let p = simple_policy(json!({"audiences": null}));
    assert!(verify_with(&p, &token("wrong_aud"), now()).is_ok());
}

#[test]
fn key_selection_by_kid() {
    assert_eq!(verify("unknown_kid"), Err(AuthError::UnknownKid));
    // Several keys and no kid: never try them in turn.
    assert_eq!(verify("no_kid"), Err(AuthError::UnknownKid));
    assert_eq!(
        verify("kid_wrong_alg"),
        Err(AuthError::KeyAlgorithmMismatch)
    );
    // One key and no kid: that key.
    let p = simple_policy(json!({"local_jwks": {"inline_string": jwks("single_jwks")}}));
    assert!(verify_with(&p, &token("single_no_kid"), now()).is_ok());
}

#[test]
fn signatures() {
    assert_eq!(verify("wrong_key"), Err(AuthError::BadSignature));
    assert_eq!(verify("tampered_payload"), Err(AuthError::BadSignature));
    // Wycheproof-style ECDSA edge cases: DER instead of raw, r or s of 0 or n.
    assert_eq!(verify("der_signature"), Err(AuthError::BadSignature));
    assert_eq!(verify("sig_r_zero"), Err(AuthError::BadSignature));
    assert_eq!(verify("sig_s_zero"), Err(AuthError::BadSignature));
    assert_eq!(verify("sig_r_n"), Err(AuthError::BadSignature));
    // Embedded keys are never trusted (RFC 8725 §3.10).
    assert_eq!(verify("embedded_jwk"), Err(AuthError::UnknownKid));
    assert_eq!(verify("jku"), Err(AuthError::BadSignature));
}

#[test]
fn algorithm_confusion_is_refused() {
    for name in ["alg_none", "alg_None", "alg_NONE", "alg_nOnE"] {
        assert!(verify(name).is_err(), "{name}");
    }
    assert_eq!(
        verify("hs256_with_public_key"),
        Err(AuthError::UnsupportedAlgorithm)
    );
    let p = simple_policy(json!({"algorithms": ["RS256"]}));
    assert_eq!(
        verify_with(&p, &token("good_ES256"), now()).map(|_| ()),
        Err(AuthError::AlgorithmNotAllowed)
    );
    assert!(verify_with(&p, &token("good_RS256"), now()).is_ok());
}

#[test]
fn structure() {
    assert_eq!(verify("jwe_shaped"), Err(AuthError::EncryptedToken));
    for name in [
        "two_segments",
        "four_segments",
        "padded_signature",
        "noncanonical_signature",
        "dup_iss",
    ] {
        assert!(
            matches!(verify(name), Err(AuthError::Malformed(_))),
            "{name}"
        );
    }
    assert_eq!(verify("crit"), Err(AuthError::UnknownCriticalHeader));
    let p = simple_policy(json!({}));
    let huge = format!("{}{}", token("good_ES256"), "A".repeat(9000));
    assert!(matches!(
        verify_with(&p, &huge, now()),
        Err(AuthError::TokenTooLarge { .. })
    ));
    assert!(verify_with(&p, "", now()).is_err());
    assert!(verify_with(&p, "....", now()).is_err());
}

#[test]
fn token_types() {
    assert_eq!(verify("typ_jose"), Err(AuthError::WrongTokenType));
    assert_eq!(verify("no_typ"), Ok(()));
    let p = simple_policy(json!({"token_types": ["application/at+jwt"]}));
    let v = |n: &str| verify_with(&p, &token(n), now()).map(|_| ());
    assert_eq!(v("typ_at_jwt"), Ok(()));
    assert_eq!(v("typ_app_at_jwt"), Ok(()));
    assert_eq!(v("good_ES256"), Err(AuthError::WrongTokenType));
    assert_eq!(v("no_typ"), Err(AuthError::WrongTokenType));
}

#[test]
fn max_lifetime() {
    let p = simple_policy(json!({"max_lifetime_seconds": 3600}));
    assert!(verify_with(&p, &token("good_ES256"), now()).is_ok());
    assert_eq!(
        verify_with(&p, &token("long_lifetime"), now()).map(|_| ()),
        Err(AuthError::LifetimeTooLong)
    );
}

// ------------------------------------------------------------------ JWKS

#[test]
fn jwks_skips_bad_keys_and_keeps_good_ones() {
    let (set, skipped) = KeySet::parse(&jwks("messy_jwks")).unwrap();
    assert_eq!(set.len(), 4, "{skipped:?}");
    let reasons: Vec<_> = skipped.iter().map(|s| s.reason.as_str()).collect();
    assert!(reasons.iter().any(|r| r.contains("2048")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("use")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("kty")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("crv")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("duplicate kid")),
        "{reasons:?}"
    );
}

#[test]
fn jwks_alg_member_restricts_the_key() {
    let (set, _) = KeySet::parse(&jwks("messy_jwks")).unwrap();
    use certbound::Alg;
    assert!(set.select(Some("rs256-only"), Alg::RS256, false).is_ok());
    assert_eq!(
        set.select(Some("rs256-only"), Alg::PS256, false).err(),
        Some(AuthError::KeyAlgorithmMismatch)
    );
    // RFC 9864: "EdDSA" and "Ed25519" are distinct names for a JWK's `alg`,
    // though the signature is the same; a key without `alg` serves both.
    assert!(set.select(Some("eddsa-only"), Alg::EdDSA, false).is_ok());
    assert_eq!(
        set.select(Some("eddsa-only"), Alg::Ed25519, false).err(),
        Some(AuthError::KeyAlgorithmMismatch)
    );
    assert!(
        set.select(Some("ed25519-only"), Alg::Ed25519, false)
            .is_ok()
    );
    assert_eq!(
        set.select(Some("ed25519-only"), Alg::EdDSA, false).err(),
        Some(AuthError::KeyAlgorithmMismatch)
    );
}

#[test]
fn jwks_errors() {
    assert!(matches!(KeySet::parse("nope"), Err(JwksError::NotJson(_))));
    assert!(matches!(KeySet::parse("{}"), Err(JwksError::NoKeysMember)));
    assert!(matches!(
        KeySet::parse(r#"{"keys":[]}"#),
        Err(JwksError::NoUsableKey(_))
    ));
    assert!(matches!(
        KeySet::parse(&" ".repeat(600 * 1024)),
        Err(JwksError::TooLarge(_))
    ));
}

// ------------------------------------------------------------------ certificates

#[test]
fn thumbprint_of_plain_and_url_encoded_pem() {
    let pem = cert_pem("client_a");
    let expected = vectors()["x5t"]["client_a"].as_str().unwrap();
    assert_eq!(
        thumbprint_of_pem(pem.as_bytes()).unwrap().to_base64url(),
        expected
    );
    let encoded: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    assert!(encoded.contains("%0A"));
    assert_eq!(
        thumbprint_of_pem(encoded.as_bytes())
            .unwrap()
            .to_base64url(),
        expected
    );
    let hex = vectors()["sha256_hex"]["client_a"].as_str().unwrap();
    assert_eq!(Thumbprint::from_hex(hex).unwrap().to_base64url(), expected);
    assert!(peer_certificate_der(cert_pem("ca").as_bytes()).is_ok());
}

// ------------------------------------------------------------------ binding

#[test]
fn bound_token_with_its_certificate_is_allowed() {
    let p = simple_policy(json!({}));
    let a = allowed(run(
        &p,
        &bearer(&token("good_ES256")),
        Some(thumb("client_a")),
    ));
    assert_eq!(a.provider, Some(first_id(&p)));
}

#[test]
fn binding_failures() {
    let p = simple_policy(json!({}));
    let t = token("good_ES256");
    assert_eq!(
        denied(&run(&p, &bearer(&t), Some(thumb("client_b")))),
        Some(&AuthError::BindingMismatch)
    );
    assert_eq!(
        denied(&run(&p, &bearer(&t), None)),
        Some(&AuthError::NoClientCertificate)
    );
    assert_eq!(
        denied(&run(
            &p,
            &bearer(&token("unbound")),
            Some(thumb("client_a"))
        )),
        Some(&AuthError::MissingBinding)
    );
    // Wrongly encoded thumbprints never match (RFC 8705 §3.1: base64url, no padding).
    for name in ["cnf_hex", "cnf_padded", "cnf_std_b64", "cnf_not_object"] {
        assert_eq!(
            denied(&run(&p, &bearer(&token(name)), Some(thumb("client_a")))),
            Some(&AuthError::MalformedBinding),
            "{name}"
        );
    }
    // Well-formed but over the wrong bytes: the PEM text, the CA certificate.
    for name in ["cnf_over_pem", "cnf_ca"] {
        assert_eq!(
            denied(&run(&p, &bearer(&token(name)), Some(thumb("client_a")))),
            Some(&AuthError::BindingMismatch),
            "{name}"
        );
    }
    // A confirmation method we cannot check is not a bearer token.
    assert_eq!(
        denied(&run(
            &p,
            &bearer(&token("cnf_jkt_only")),
            Some(thumb("client_a"))
        )),
        Some(&AuthError::MissingBinding)
    );
}

#[test]
fn when_present_binding() {
    let p = simple_policy(json!({"certificate_binding": "when_present"}));
    allowed(run(&p, &bearer(&token("unbound")), None));
    allowed(run(
        &p,
        &bearer(&token("good_ES256")),
        Some(thumb("client_a")),
    ));
    assert_eq!(
        denied(&run(
            &p,
            &bearer(&token("good_ES256")),
            Some(thumb("client_b"))
        )),
        Some(&AuthError::BindingMismatch)
    );
    assert_eq!(
        denied(&run(&p, &bearer(&token("good_ES256")), None)),
        Some(&AuthError::NoClientCertificate)
    );
    assert_eq!(
        denied(&run(&p, &bearer(&token("cnf_jkt_only")), None)),
        Some(&AuthError::MissingBinding)
    );
}

// ------------------------------------------------------------------ extraction

#[test]
fn missing_and_malformed_tokens() {
    let p = simple_policy(json!({}));
    let none = vec![(":path".to_string(), "/".to_string())];
    assert_eq!(
        denied(&run(&p, &none, None)),
        Some(&AuthError::MissingToken)
    );
    let basic = vec![(
        "authorization".to_string(),
        "Basic Zm9vOmJhcg==".to_string(),
    )];
    assert_eq!(
        denied(&run(&p, &basic, None)),
        Some(&AuthError::MissingToken)
    );
    let junk = vec![("authorization".to_string(), "Bearer a b\"c".to_string())];
    assert!(matches!(
        denied(&run(&p, &junk, None)),
        Some(AuthError::Malformed(_))
    ));
}

#[test]
fn auth_scheme_is_case_insensitive() {
    let p = simple_policy(json!({}));
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let h = vec![(
            "authorization".to_string(),
            format!("{scheme} {}", token("good_ES256")),
        )];
        allowed(run(&p, &h, Some(thumb("client_a"))));
    }
}

#[test]
fn two_different_tokens_are_invalid_request() {
    let p = simple_policy(json!({
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        "from_params": ["access_token"]
    }));
    let mut h = bearer(&token("good_ES256"));
    h[0].1 = format!("/api?access_token={}", token("good_ES384"));
    assert_eq!(
        denied(&run(&p, &h, Some(thumb("client_a")))),
        Some(&AuthError::MultipleTokens)
    );
    // The same token twice is one token.
    h[0].1 = format!("/api?access_token={}", token("good_ES256"));
    allowed(run(&p, &h, Some(thumb("client_a"))));
    // Two Authorization headers with different tokens.
    let mut h = bearer(&token("good_ES256"));
    h.push((
        "authorization".into(),
        format!("Bearer {}", token("good_ES384")),
    ));
    assert_eq!(denied(&run(&p, &h, None)), Some(&AuthError::MultipleTokens));
}

/// A cached token skips the b64token check (it passed it when first
/// verified): the decision must be the one an empty cache gives, malformed
/// tokens and their order included.
#[test]
fn a_cached_token_changes_no_decision() {
    let p = simple_policy(json!({
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        "from_params": ["access_token"]
    }));
    let keys = KeyRing::for_policy(&p);
    let good = token("good_ES256");
    let decide_with = |cache: &mut TokenCache, h: &[(String, String)]| {
        run_cached(&p, &keys, cache, h, Some(thumb("client_a")))
    };
    let mut warm = TokenCache::new(10);
    allowed(decide_with(&mut warm, &bearer(&good)));
    let with_param = |header: &str, param: &str| {
        let mut h = bearer(header);
        h[0].1 = format!("/api?access_token={param}");
        h
    };
    let bad = format!("{good}\"");
    // The cached token's length and tail, a character outside b64token.
    let same_slot = format!("\"{}", &good[1..]);
    let cases = [
        bearer(&same_slot),
        with_param(&good, &same_slot),
        bearer(&good),
        bearer(&bad),
        bearer(&format!("{good}, Bearer {bad}")),
        bearer(&format!("{bad}, Bearer {good}")),
        with_param(&good, &bad),
        with_param(&bad, &good),
        with_param(&good, &good),
        with_param(&good, &token("good_ES384")),
        with_param(&format!("{good}=="), &good),
        bearer(&"A".repeat(70_000)),
        // Folded values: the cached token whole skips the comma scan,
        // and must decide as the scan does.
        bearer(&format!("{good}, Bearer {good}")),
        bearer(&format!("{good},Bearer {}", token("good_ES384"))),
        bearer(&format!("{good},")),
        bearer(&format!(",{good}")),
        bearer(&format!("{good}\t ")),
        {
            let mut h = bearer(&good);
            h.push(("authorization".into(), format!("bearer  {good}")));
            h
        },
        {
            let mut h = bearer(&good);
            h.push(("authorization".into(), format!("Bearer {bad}")));
            h
        },
    ];
    for h in &cases {
        let cold = decide_with(&mut TokenCache::new(0), h);
        assert_eq!(decide_with(&mut warm, h), cold, "{:?}", &h[1].1[..40]);
    }
    assert!(matches!(
        denied(&decide_with(&mut warm, &with_param(&good, &bad))),
        Some(AuthError::Malformed(_))
    ));
}

/// Rules match as Envoy's RouteMatch does: one path specifier, then every
/// header and query parameter matcher.
#[test]
fn rules_match_regex_headers_and_query_parameters() {
    let cfg = json!({
        "providers": {"idp": provider(json!({}))},
        "rules": [
            // Public: GETs of a version's health, whatever its case.
            {"match": {"safe_regex": {"google_re2": {}, "regex": "/v[0-9]+/health"},
                       "headers": [{"name": ":method", "string_match": {"exact": "get", "ignore_case": true}}]}},
            // Public: a debug query on /status, unless an x-deny header is there.
            {"match": {"path": "/STATUS", "case_sensitive": false,
                       "query_parameters": [{"name": "debug", "present_match": true}],
                       "headers": [{"name": "x-deny", "present_match": true, "invert_match": true}]}},
            // Public: small uploads.
            {"match": {"prefix": "/upload",
                       "headers": [{"name": "content-length", "range_match": {"start": "0", "end": 1024}}]}},
            // Public: gRPC health checks.
            {"match": {"prefix": "/grpc.health.v1.Health/", "grpc": {}}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}
        ]
    });
    let p2 = policy(cfg);
    let req = |method: &str, path: &str, extra: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut h = vec![
            (":path".to_string(), path.to_string()),
            (":method".to_string(), method.to_string()),
        ];
        h.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        h
    };
    let public = |h: &[(String, String)]| matches!(run(&p2, h, None), Decision::Allow(_));
    assert!(public(&req("GET", "/v1/health", &[])));
    assert!(public(&req("Get", "/v12/health?x=1", &[])));
    // The regex must match the whole path, and the method must match.
    assert!(!public(&req("GET", "/v1/health/x", &[])));
    assert!(!public(&req("GET", "/x/v1/health", &[])));
    assert!(!public(&req("POST", "/v1/health", &[])));
    assert!(public(&req("POST", "/status?a=1&debug", &[])));
    assert!(public(&req("POST", "/Status?debug=0", &[])));
    assert!(!public(&req("POST", "/status?debugx=1", &[])));
    assert!(!public(&req("POST", "/status?debug=1", &[("x-deny", "")])));
    assert!(public(&req(
        "PUT",
        "/upload/a",
        &[("content-length", "1023")]
    )));
    assert!(!public(&req(
        "PUT",
        "/upload/a",
        &[("content-length", "1024")]
    )));
    assert!(!public(&req(
        "PUT",
        "/upload/a",
        &[("content-length", "12x")]
    )));
    assert!(!public(&req("PUT", "/upload/a", &[])));
    let health = "/grpc.health.v1.Health/Check";
    for ct in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc;x=1",
    ] {
        assert!(
            public(&req("POST", health, &[("content-type", ct)])),
            "{ct}"
        );
    }
    for ct in [
        "application/grpc-web",
        "application/json",
        "text/application/grpc",
    ] {
        assert!(
            !public(&req("POST", health, &[("content-type", ct)])),
            "{ct}"
        );
    }
    assert!(!public(&req("POST", health, &[])));
    // Everything else needs a token.
    assert_eq!(
        denied(&run(&p2, &req("GET", "/v1/other", &[]), None)),
        Some(&AuthError::MissingToken)
    );
}

#[test]
fn header_matchers_follow_envoy_on_missing_repeated_and_inverted_headers() {
    use certbound::{HeaderMatcher, HeaderTest, StringMatch, StringMatcher};
    let headers = |pairs: &[(&str, &str)]| -> certbound::RequestHeaders {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let m = |test: HeaderTest, invert: bool, missing_as_empty: bool| HeaderMatcher {
        name: "x-a".into(),
        test,
        invert,
        missing_as_empty,
    };
    let exact = |s: &str| {
        HeaderTest::String(StringMatcher {
            kind: StringMatch::Exact(s.into()),
            ignore_case: false,
        })
    };
    let none = headers(&[]);
    let one = headers(&[("x-a", "1")]);
    let two = headers(&[("x-a", "1"), ("X-A", "2")]);
    // Missing: only a presence test can match, inverted or not.
    assert!(!m(HeaderTest::Present(true), false, false).matches(&none));
    assert!(m(HeaderTest::Present(false), false, false).matches(&none));
    assert!(m(HeaderTest::Present(true), true, false).matches(&none));
    assert!(!m(HeaderTest::Present(false), true, false).matches(&none));
    assert!(!m(exact("1"), false, false).matches(&none));
    assert!(!m(exact("1"), true, false).matches(&none));
    // ... unless it is read as empty.
    assert!(m(exact(""), false, true).matches(&none));
    assert!(m(exact("1"), true, true).matches(&none));
    // Present.
    assert!(m(HeaderTest::Present(true), false, false).matches(&one));
    assert!(!m(HeaderTest::Present(false), false, false).matches(&one));
    assert!(m(exact("1"), false, false).matches(&one));
    assert!(!m(exact("1"), true, false).matches(&one));
    // Repeated: one value joined by ",".
    assert!(m(exact("1,2"), false, false).matches(&two));
    assert!(!m(exact("1"), false, false).matches(&two));
    // The deprecated exact_match: empty matches any value.
    assert!(m(HeaderTest::Exact(String::new()), false, false).matches(&one));
    assert!(!m(HeaderTest::Exact("2".into()), false, false).matches(&one));
    // Ranges are [start, end).
    assert!(m(HeaderTest::Range(1, 2), false, false).matches(&one));
    assert!(!m(HeaderTest::Range(2, 3), false, false).matches(&one));
}

#[test]
fn string_matchers() {
    use certbound::{StringMatch, StringMatcher};
    let sm = |kind: StringMatch, ignore_case: bool| StringMatcher { kind, ignore_case };
    assert!(sm(StringMatch::Prefix("Ab".into()), true).matches("aBc"));
    assert!(!sm(StringMatch::Prefix("Ab".into()), false).matches("aBc"));
    assert!(sm(StringMatch::Suffix("BC".into()), true).matches("abc"));
    assert!(!sm(StringMatch::Suffix("abcd".into()), true).matches("abc"));
    assert!(sm(StringMatch::Contains("B".into()), true).matches("abc"));
    assert!(!sm(StringMatch::Contains("B".into()), false).matches("abc"));
    assert!(sm(StringMatch::Exact("é".into()), false).matches("é"));
    // A multi-byte character straddling the suffix length is no panic.
    assert!(!sm(StringMatch::Suffix("x".into()), false).matches("é"));
}

/// jwt_authn's `subjects`: `sub` must match, else 401 `invalid_token`
/// (counted as `wrong_subject`); a cached token was checked when verified.
#[test]
fn subjects_must_match_the_sub_claim() {
    let good = token("good_ES256"); // sub "client-a"
    let a = Some(thumb("client_a"));
    for (m, ok) in [
        (json!({"exact": "client-a"}), true),
        (json!({"prefix": "CLIENT-", "ignore_case": true}), true),
        (json!({"safe_regex": {"regex": "client-[a-z]"}}), true),
        (json!({"exact": "client-b"}), false),
        (json!({"suffix": "-b"}), false),
        (json!({"safe_regex": {"regex": "client"}}), false),
    ] {
        let p = simple_policy(json!({"subjects": m}));
        let keys = KeyRing::for_policy(&p);
        let mut cache = TokenCache::new(4);
        for _ in 0..2 {
            let d = run_cached(&p, &keys, &mut cache, &bearer(&good), a);
            if ok {
                allowed(d);
            } else {
                assert_eq!(denied(&d), Some(&AuthError::WrongSubject), "{m}");
                assert_eq!(
                    AuthError::WrongSubject
                        .response(&certbound::Schemes::BEARER)
                        .status,
                    401
                );
                assert_eq!(AuthError::WrongSubject.reason(), "wrong_subject");
            }
        }
    }
}

/// jwt_authn's `max_lifetime` (a Duration) is `max_lifetime_seconds`.
#[test]
fn max_lifetime_as_a_duration() {
    let secs = |extra| simple_policy(extra).providers[0].max_lifetime;
    assert_eq!(secs(json!({"max_lifetime": "300s"})), Some(300));
    assert_eq!(secs(json!({"max_lifetime": "1.5s"})), Some(2));
    assert_eq!(secs(json!({"max_lifetime_seconds": 300})), Some(300));
    assert_eq!(secs(json!({})), None);
    let e = config_error(json!({"providers": {"idp": provider(json!({
        "max_lifetime": "300s", "max_lifetime_seconds": 300}))}}));
    assert_eq!(e.field, "providers.idp.max_lifetime");
    let e = config_error(json!({"providers": {"idp": provider(json!({"max_lifetime": "5m"}))}}));
    assert_eq!(e.field, "providers.idp.max_lifetime");
}

/// jwt_authn's per-provider `jwt_cache_config`: the sizes add up to the
/// one per-VM cache.
#[test]
fn per_provider_jwt_cache_config_sizes_the_vm_cache() {
    let size = |cfg: serde_json::Value| policy(cfg).jwt_cache_size;
    let two = |a: serde_json::Value, b: serde_json::Value| {
        let mut b_provider = provider(b);
        b_provider["issuer"] = json!("https://other.example.com");
        json!({"providers": {"idp": provider(a), "other": b_provider}})
    };
    assert_eq!(size(two(json!({}), json!({}))), 1000);
    assert_eq!(
        size(two(
            json!({"jwt_cache_config": {"jwt_cache_size": 300}}),
            json!({"jwt_cache_config": {}})
        )),
        400
    );
    assert_eq!(
        size(two(
            json!({"jwt_cache_config": {"jwt_cache_size": 0}}),
            json!({})
        )),
        0
    );
    let mut both = two(json!({"jwt_cache_config": {}}), json!({}));
    both["jwt_cache_size"] = json!(10);
    assert_eq!(config_error(both).field, "providers.idp.jwt_cache_config");
    let e = config_error(two(
        json!({"jwt_cache_config": {"jwt_cache_size": 60000}}),
        json!({"jwt_cache_config": {"jwt_cache_size": 60000}}),
    ));
    assert_eq!(e.field, "providers.other.jwt_cache_config.jwt_cache_size");
    let e = config_error(two(
        json!({"jwt_cache_config": {"jwt_max_token_size": 4096}}),
        json!({}),
    ));
    assert!(e.to_string().contains("unknown field"), "{e}");
}

/// A header prefix with a comma in it: splitting folded values cuts it, so
/// such a header never yields a token, cached or not.
#[test]
fn a_prefix_with_a_comma_is_cut_by_folding_even_for_a_cached_token() {
    let p = simple_policy(json!({
        "from_headers": [
            {"name": "authorization", "value_prefix": "Bearer "},
            {"name": "x-token", "value_prefix": "t,"}
        ]
    }));
    let keys = KeyRing::for_policy(&p);
    let good = token("good_ES256");
    let mut warm = TokenCache::new(4);
    let a = Some(thumb("client_a"));
    allowed(run_cached(&p, &keys, &mut warm, &bearer(&good), a));
    let mut h = bearer(&good);
    h.remove(1);
    h.push(("x-token".into(), format!("t,{good}")));
    let cold = run_cached(&p, &keys, &mut TokenCache::new(0), &h, a);
    assert_eq!(denied(&cold), Some(&AuthError::MissingToken));
    assert_eq!(run_cached(&p, &keys, &mut warm, &h, a), cold);
}

#[test]
fn params_and_cookies_and_forwarding() {
    let p = simple_policy(json!({
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "from_params": ["access_token"],
        "from_cookies": ["at"]
    }));
    let t = token("good_ES256");
    let h = vec![(
        ":path".to_string(),
        format!("/api?x=1&access_token={t}&y=2"),
    )];
    let a = allowed(run(&p, &h, Some(thumb("client_a"))));
    assert_eq!(
        a.ops,
        vec![HeaderOp::Set(":path".into(), "/api?x=1&y=2".into())]
    );

    let h = vec![
        (":path".to_string(), "/api".to_string()),
        ("cookie".to_string(), format!("a=1; at={t}; b=2")),
    ];
    let a = allowed(run(&p, &h, Some(thumb("client_a"))));
    assert_eq!(
        a.ops,
        vec![HeaderOp::Set("cookie".into(), "a=1; b=2".into())]
    );

    let a = allowed(run(&p, &bearer(&t), Some(thumb("client_a"))));
    assert_eq!(a.ops, vec![HeaderOp::Remove("authorization".into())]);

    // Naming a location replaces the default Authorization header, as in jwt_authn.
    let only_params = simple_policy(json!({"from_params": ["access_token"]}));
    assert_eq!(
        denied(&run(&only_params, &bearer(&t), Some(thumb("client_a")))),
        Some(&AuthError::MissingToken)
    );

    let p = simple_policy(json!({"forward": true}));
    let a = allowed(run(&p, &bearer(&t), Some(thumb("client_a"))));
    assert!(a.ops.is_empty());
}

#[test]
fn claims_and_thumbprint_go_upstream_after_strip() {
    let p = simple_policy(json!({
        "forward": true,
        "claim_to_headers": [
            {"claim_name": "sub", "header_name": "x-jwt-sub"},
            {"claim_name": "org.id", "header_name": "X-Org"},
            {"claim_name": "missing", "header_name": "x-missing"}
        ],
        "forward_payload_header": "x-jwt-payload",
        "thumbprint_header": "x-client-thumbprint"
    }));
    let t = token("scoped");
    let a = allowed(run(&p, &bearer(&t), Some(thumb("client_a"))));
    let payload = t.split('.').nth(1).unwrap().to_string();
    assert_eq!(
        a.ops,
        vec![
            HeaderOp::Remove("x-client-thumbprint".into()),
            HeaderOp::Remove("x-jwt-payload".into()),
            HeaderOp::Remove("x-jwt-sub".into()),
            HeaderOp::Remove("x-missing".into()),
            HeaderOp::Remove("x-org".into()),
            HeaderOp::Set("x-jwt-sub".into(), "client-a".into()),
            HeaderOp::Set("x-org".into(), "acme".into()),
            HeaderOp::Set("x-jwt-payload".into(), payload),
            HeaderOp::Set(
                "x-client-thumbprint".into(),
                vectors()["x5t"]["client_a"].as_str().unwrap().into()
            ),
        ]
    );
}

#[test]
fn the_forwarded_payload_is_padded_when_asked() {
    let pad = |on: bool| {
        simple_policy(json!({
            "forward": true,
            "forward_payload_header": "x-jwt-payload",
            "pad_forward_payload_header": on
        }))
    };
    // Payload lengths with each remainder mod 4 (0, 2, 3; 1 is no base64url).
    for name in ["good_ES256", "scoped", "aud_array"] {
        let t = token(name);
        let raw = t.split('.').nth(1).unwrap();
        let set = |p: &certbound::Policy| {
            allowed(run(p, &bearer(&t), Some(thumb("client_a"))))
                .ops
                .into_iter()
                .find_map(|op| match op {
                    HeaderOp::Set(h, v) if h == "x-jwt-payload" => Some(v),
                    _ => None,
                })
                .unwrap()
        };
        assert_eq!(set(&pad(false)), raw, "{name}");
        let padded = set(&pad(true));
        assert_eq!(padded.len() % 4, 0, "{name}");
        assert_eq!(padded.trim_end_matches('='), raw, "{name}");
        assert!(padded.len() - raw.len() < 3, "{name}");
    }
}

// ------------------------------------------------------------------ rules

fn rules_policy() -> certbound::Policy {
    let mut other = provider(json!({"issuer": "https://other.example.com"}));
    other["local_jwks"] = json!({"inline_string": jwks("single_jwks")});
    policy(json!({
        "providers": {"idp": provider(json!({})), "other": other},
        "rules": [
            {"match": {"path": "/health"}},
            {"match": {"prefix": "/orders"}, "requires": {"provider_name": "idp"},
             "required_scopes": ["orders:read"]},
            {"match": {"prefix": "/any"}, "requires": {"requires_any": [
                {"provider_name": "other"}, {"provider_name": "idp"}]}},
            {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
            {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}},
            {"match": {"prefix": "/other"}, "requires": {"provider_name": "other"}}
        ]
    }))
}

fn at(path: &str, t: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![(":path".to_string(), path.to_string())];
    if let Some(t) = t {
        h.push(("authorization".into(), format!("Bearer {t}")));
    }
    h
}

#[test]
fn rules_first_match_wins() {
    let p = rules_policy();
    let a = Some(thumb("client_a"));
    // Public and unmatched routes are not checked.
    allowed(run(&p, &at("/health", None), None));
    allowed(run(&p, &at("/unmatched", Some("garbage")), None));
    // provider_name
    assert_eq!(
        denied(&run(&p, &at("/other/x", Some(&token("good_ES256"))), a)),
        Some(&AuthError::WrongIssuer)
    );
    // requires_any
    allowed(run(&p, &at("/any", Some(&token("good_ES256"))), a));
    assert_eq!(
        denied(&run(&p, &at("/any", None), a)),
        Some(&AuthError::MissingToken)
    );
    assert_eq!(
        denied(&run(&p, &at("/any", Some(&token("bound_to_b"))), a)),
        Some(&AuthError::BindingMismatch)
    );
    // allow_missing
    allowed(run(&p, &at("/optional", None), None));
    assert_eq!(
        denied(&run(&p, &at("/optional", Some(&token("expired"))), a)),
        Some(&AuthError::Expired)
    );
    // allow_missing_or_failed
    allowed(run(&p, &at("/lenient", None), None));
    let lenient = allowed(run(&p, &at("/lenient", Some(&token("expired"))), a));
    assert_eq!(lenient.provider, None);
    // ... and a token that cannot be read, as jwt_authn: characters outside
    // b64token, two different tokens. allow_missing still refuses them.
    let two = format!("{}, Bearer {}", token("good_ES256"), token("good_ES384"));
    for t in ["a\"b", two.as_str()] {
        assert_eq!(allowed(run(&p, &at("/lenient", Some(t)), a)).provider, None);
        assert!(
            denied(&run(&p, &at("/optional", Some(t)), a)).is_some(),
            "{t}"
        );
    }
}

#[test]
fn path_separated_prefix_matches_whole_segments() {
    let p = policy(json!({
        "providers": {"idp": provider(json!({}))},
        "rules": [
            {"match": {"path_separated_prefix": "/api"}, "requires": {"provider_name": "idp"}},
            {"match": {"prefix": "/"}}
        ]
    }));
    let a = Some(thumb("client_a"));
    for path in [
        "/api",
        "/api/",
        "/api/orders",
        "/api?x=1",
        "/api#f",
        "/api/x?y=/z",
    ] {
        assert_eq!(
            denied(&run(&p, &at(path, None), a)),
            Some(&AuthError::MissingToken),
            "{path}"
        );
    }
    for path in ["/apix", "/api-v2/orders", "/ap", "/", "/API"] {
        allowed(run(&p, &at(path, None), a));
    }
    allowed(run(&p, &at("/api/orders", Some(&token("good_ES256"))), a));
}

/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn preflight(path: &str) -> Vec<(String, String)> {
    vec![
        (":method".into(), "OPTIONS".into()),
        (":path".into(), path.into()),
        ("origin".into(), "https://app.example.com".into()),
        ("access-control-request-method".into(), "POST".into()),
    ]
}

#[test]
fn cors_preflight_is_let_through_only_when_asked() {
    let on = policy(json!({
        "providers": {"idp": provider(json!({"claim_to_headers": [
            {"claim_name": "sub", "header_name": "x-jwt-sub"}]}))},
        "bypass_cors_preflight": true
    }));
    let off = simple_policy(json!({}));
    // Off (the default): a preflight needs a token like any request.
    assert_eq!(
        denied(&run(&off, &preflight("/api/orders"), None)),
        Some(&AuthError::MissingToken)
    );
    // On: let through without a token or certificate, still stripped of
    // the headers certbound writes (anti-spoofing).
    let mut spoofed = preflight("/api/orders");
    spoofed.push(("x-jwt-sub".into(), "admin".into()));
    let a = allowed(run(&on, &spoofed, None));
    assert!(a.cors_preflight);
    assert_eq!(a.provider, None);
    assert_eq!(a.ops, vec![HeaderOp::Remove("x-jwt-sub".into())]);
    // Only a real preflight: every one of the three parts is needed.
    for (drop, replace) in [
        (":method", Some("GET")),
        (":method", Some("options")),
        ("origin", None),
        ("origin", Some(" ")),
        ("access-control-request-method", None),
    ] {
        let mut h: Vec<(String, String)> = preflight("/api/orders")
            .into_iter()
            .filter(|(n, _)| n != drop)
            .collect();
        if let Some(v) = replace {
            h.push((drop.into(), v.into()));
        }
        assert_eq!(
            denied(&run(&on, &h, None)),
            Some(&AuthError::MissingToken),
            "{drop} {replace:?}"
        );
    }
    // An ordinary request with a token is decided as always.
    let a = allowed(run(
        &on,
        &bearer(&token("good_ES256")),
        Some(thumb("client_a")),
    ));
    assert!(!a.cors_preflight);
}

#[test]
fn provider_and_audiences_replaces_the_providers_audiences_on_its_route() {
    let other = "https://other.example.com";
    let p = policy(json!({
        "providers": {"idp": provider(json!({}))},
        "rules": [
            {"match": {"prefix": "/partner"}, "requires": {"provider_and_audiences": {
                "provider_name": "idp", "audiences": [other]}}},
            {"match": {"prefix": "/either"}, "requires": {"requires_any": [
                {"provider_and_audiences": {"provider_name": "idp", "audiences": [other]}},
                {"provider_name": "idp"}]}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}
        ]
    }));
    let a = Some(thumb("client_a"));
    let (ours, theirs) = (token("good_ES256"), token("wrong_aud"));
    // One cache for every request: a token verified on one route is
    // checked against the other route's audiences on a hit.
    let keys = KeyRing::for_policy(&p);
    let mut cache = TokenCache::new(16);
    let mut decide_at =
        |path: &str, t: &str| run_cached(&p, &keys, &mut cache, &at(path, Some(t)), a);
    for _ in 0..2 {
        allowed(decide_at("/partner/x", &theirs));
        assert_eq!(
            denied(&decide_at("/partner/x", &ours)),
            Some(&AuthError::WrongAudience)
        );
        allowed(decide_at("/api", &ours));
        assert_eq!(
            denied(&decide_at("/api", &theirs)),
            Some(&AuthError::WrongAudience)
        );
        allowed(decide_at("/either", &ours));
        allowed(decide_at("/either", &theirs));
    }
}

#[test]
fn tolerating_failure_is_read_through_requires_any_and_all() {
    let p = policy(json!({
        "providers": {"idp": provider(json!({}))},
        "rules": [
            {"match": {"prefix": "/any"}, "requires": {"requires_any": [
                {"provider_name": "idp"}, {"allow_missing_or_failed": {}}]}},
            {"match": {"prefix": "/all"}, "requires": {"requires_all": [
                {"provider_name": "idp"}, {"allow_missing_or_failed": {}}]}}
        ]
    }));
    let a = Some(thumb("client_a"));
    allowed(run(&p, &at("/any", Some("a\"b")), a));
    assert!(matches!(
        denied(&run(&p, &at("/all", Some("a\"b")), a)),
        Some(AuthError::Malformed(_))
    ));
}

#[test]
fn the_size_cap_comes_before_introspection() {
    let p = simple_policy(json!({
        "introspection": {
            "http_uri": {"uri": "https://as.example.com/introspect", "cluster": "as", "timeout": "1s"},
            "client_id": "rs",
            "client_secret": "s"
        }
    }));
    let mut p = p;
    p.max_token_bytes = 256;
    let a = Some(thumb("client_a"));
    assert!(matches!(
        run(&p, &bearer(&"A".repeat(200)), a),
        Decision::Introspect { .. }
    ));
    // Neither an opaque token nor a JWS (whose payload routing would decode).
    let big_jws = format!("{}.{}.AAAA", "A".repeat(40), "A".repeat(300));
    for t in ["A".repeat(300), big_jws] {
        assert!(matches!(
            denied(&run(&p, &bearer(&t), a)),
            Some(AuthError::TokenTooLarge { .. })
        ));
    }
}

#[test]
fn scopes() {
    let p = rules_policy();
    let a = Some(thumb("client_a"));
    allowed(run(&p, &at("/orders", Some(&token("scoped"))), a));
    allowed(run(&p, &at("/orders", Some(&token("scp_array"))), a));
    assert_eq!(
        denied(&run(&p, &at("/orders", Some(&token("good_ES256"))), a)),
        Some(&AuthError::InsufficientScope {
            required: "orders:read".into()
        })
    );
    // Binding is checked before scopes: a stolen token gets 401, not 403.
    assert_eq!(
        denied(&run(
            &p,
            &at("/orders", Some(&token("scoped"))),
            Some(thumb("client_b"))
        )),
        Some(&AuthError::BindingMismatch)
    );
}

// ------------------------------------------------------------------ config

fn config_error(cfg: serde_json::Value) -> certbound::ConfigError {
    match certbound::parse(cfg.to_string().as_bytes(), &no_env) {
        Ok(_) => panic!("accepted: {cfg}"),
        Err(e) => e,
    }
}

#[test]
fn config_defaults() {
    let p = simple_policy(json!({}));
    let idp = &p.providers[0];
    assert_eq!(idp.clock_skew, 60);
    assert_eq!(idp.binding, certbound::BindingMode::Required);
    assert_eq!(
        idp.sources,
        vec![certbound::TokenSource::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into()
        }]
    );
    assert!(!idp.forward);
    assert!(idp.require_expiration);
}

#[test]
fn config_errors_name_their_field() {
    let cases = [
        (
            json!({"providers": {"idp": provider(json!({"isuer": "x"}))}}),
            "providers.idp",
            "unknown field",
        ),
        (
            json!({"providers": {}, "extra": 1}),
            "extra",
            "unknown field",
        ),
        (
            json!({"providers": {"idp": provider(json!({"issuer": ""}))}}),
            "providers.idp.issuer",
            "empty",
        ),
        (
            json!({"providers": {"idp": provider(json!({"local_jwks": {"inline_string": "{}"}}))}}),
            "providers.idp.local_jwks",
            "keys",
        ),
        (
            json!({"providers": {"idp": provider(json!({"clock_skew_seconds": -1}))}}),
            "providers.idp.clock_skew_seconds",
            "negative",
        ),
        (
            json!({"providers": {"idp": provider(json!({"algorithms": ["HS256"]}))}}),
            "providers.idp.algorithms[0]",
            "HS256",
        ),
        (
            json!({"providers": {"idp": provider(json!({"certificate_binding": "maybe"}))}}),
            "providers.idp.certificate_binding",
            "maybe",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "nope"}}]}),
            "rules[0].requires.provider_name",
            "unknown provider",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/", "path": "/"}}]}),
            "rules[0].match",
            "exactly one",
        ),
        (
            json!({"providers": {"idp": provider(json!({"local_jwks": {"environment_variable": "NOPE"}}))}}),
            "providers.idp.local_jwks.environment_variable",
            "NOPE",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/", "path_separated_prefix": "/api"}}]}),
            "rules[0].match",
            "exactly one",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"path_separated_prefix": "/api/"}}]}),
            "rules[0].match.path_separated_prefix",
            "end with /",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"path_separated_prefix": "api"}}]}),
            "rules[0].match.path_separated_prefix",
            "start with /",
        ),
        (
            json!({"providers": {"idp": provider(json!({"pad_forward_payload_header": true}))}}),
            "providers.idp.pad_forward_payload_header",
            "forward_payload_header",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))}, "bypass_cors_preflight": "yes"}),
            "bypass_cors_preflight",
            "boolean",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/"}, "requires": {"provider_and_audiences": {
                       "provider_name": "idp", "audiences": []}}}]}),
            "rules[0].requires.provider_and_audiences.audiences",
            "must not be empty",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/"}, "requires": {"provider_and_audiences": {
                       "provider_name": "nope", "audiences": ["a"]}}}]}),
            "rules[0].requires.provider_and_audiences.provider_name",
            "unknown provider",
        ),
        (json!({"providers": {}}), "providers", "at least one"),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"safe_regex": {"regex": "/api/(v1"}}}]}),
            "rules[0].match.safe_regex.regex",
            "regular expression",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/", "safe_regex": {"regex": "/.*"}}}]}),
            "rules[0].match",
            "exactly one",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/", "headers": [
                       {"name": ":method", "exact_match": "GET", "prefix_match": "G"}]}}]}),
            "rules[0].match.headers[0]",
            "at most one",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/", "headers": [
                       {"name": "x-a", "string_match": {"exact": "a", "prefix": "b"}}]}}]}),
            "rules[0].match.headers[0].string_match",
            "exactly one",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/", "headers": [{"name": "bad name"}]}}]}),
            "rules[0].match.headers[0].name",
            "header name",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/", "headers": [
                       {"name": "x-n", "range_match": {"start": "1", "end": "ten"}}]}}]}),
            "rules[0].match.headers[0].range_match.end",
            "integer",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/", "query_parameters": [
                       {"name": "v", "present_match": true, "string_match": {"exact": "1"}}]}}]}),
            "rules[0].match.query_parameters[0]",
            "exclusive",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"prefix": "/", "tls_context": {"presented": true}}}]}),
            "rules[0].match",
            "unknown field",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"safe_regex": {"regex": "(a{1,100}){1,100}"}}}]}),
            "rules[0].match.safe_regex.regex",
            "regular expression",
        ),
        (
            json!({"providers": {"idp": provider(json!({
                       "claim_to_headers": [{"claim_name": "sub", "header_name": "X-Jwt-Sub"}]}))},
                   "rules": [{"match": {"prefix": "/", "headers": [
                       {"name": "x-jwt-sub", "present_match": true}]}}]}),
            "rules[0].match.headers[0].name",
            "choose this rule",
        ),
        (
            json!({"providers": {"idp": provider(json!({"clear_route_cache": false}))}}),
            "providers.idp.clear_route_cache",
            "cannot be false",
        ),
        (
            json!({"providers": {"idp": provider(json!({"subjects": {"exact": "a", "suffix": "b"}}))}}),
            "providers.idp.subjects",
            "exactly one",
        ),
        (
            json!({"providers": {"idp": provider(json!({}))},
                   "rules": [{"match": {"safe_regex": {"regex": "\\p{Greek}+"}}}]}),
            "rules[0].match.safe_regex.regex",
            "regular expression",
        ),
    ];
    for (cfg, field, needle) in cases {
        let e = config_error(cfg);
        assert!(e.field.starts_with(field), "{e} (wanted field {field})");
        assert!(e.to_string().contains(needle), "{e} (wanted {needle})");
    }
    let e = certbound::parse(b"not json", &no_env).unwrap_err();
    assert!(!e.message.is_empty());
}

#[test]
fn config_reads_jwks_from_the_vm_environment() {
    let env = |name: &str| (name == "JWKS").then(|| jwks("jwks"));
    let cfg = json!({"providers": {"idp": provider(json!({"local_jwks": {"environment_variable": "JWKS"}}))}});
    let p = certbound::parse(cfg.to_string().as_bytes(), &env).unwrap();
    assert_eq!(
        KeyRing::for_policy(&p).get(first_id(&p)).map(|k| k.len()),
        Some(4)
    );
}

#[test]
fn remote_jwks_config() {
    let cfg = json!({"providers": {"idp": provider(json!({
        "local_jwks": null,
        "remote_jwks": {
            "http_uri": {"uri": "https://idp.example.com:8443/.well-known/jwks.json", "cluster": "idp", "timeout": "2.5s"},
            "cache_duration": "300s"
        }
    }))}, "jwt_cache_size": 10});
    let p = policy(cfg);
    let certbound::JwksSource::Remote(r) = &p.providers[0].jwks else {
        panic!("not remote")
    };
    assert_eq!(r.authority, "idp.example.com:8443");
    assert_eq!(r.path, "/.well-known/jwks.json");
    assert_eq!(r.timeout_ms, 2500);
    assert_eq!(r.cache_duration_ms, 300_000);
    assert_eq!(r.min_refetch_interval_ms, 30_000);
    assert_eq!(p.jwt_cache_size, 10);
    // No keys until fetched.
    assert!(KeyRing::for_policy(&p).get(first_id(&p)).is_none());
    assert_eq!(
        verify_with(&p, &token("good_ES256"), now()).err(),
        Some(AuthError::KeysUnavailable)
    );

    for (remote, field) in [
        (
            json!({"http_uri": {"uri": "ftp://x/jwks", "cluster": "c"}}),
            "remote_jwks.http_uri.uri",
        ),
        (
            json!({"http_uri": {"uri": "https:///jwks", "cluster": "c"}}),
            "remote_jwks.http_uri.uri",
        ),
        (
            json!({"http_uri": {"uri": "https://x/jwks", "cluster": ""}}),
            "remote_jwks.http_uri.cluster",
        ),
        (
            json!({"http_uri": {"uri": "https://x/jwks", "cluster": "c", "timeout": "2"}}),
            "remote_jwks.http_uri.timeout",
        ),
        (
            json!({"http_uri": {"uri": "https://x/jwks", "cluster": "c"}, "cache_duration": "-1s"}),
            "remote_jwks.cache_duration",
        ),
    ] {
        let e = config_error(
            json!({"providers": {"idp": provider(json!({"local_jwks": null, "remote_jwks": remote}))}}),
        );
        assert_eq!(e.field, format!("providers.idp.{field}"), "{e}");
    }
    let both = config_error(json!({"providers": {"idp": provider(json!({
        "remote_jwks": {"http_uri": {"uri": "https://x/jwks", "cluster": "c"}}
    }))}}));
    assert!(both.message.contains("exactly one"), "{both}");
}

/// [`certbound::verify_cached`] with each provider's own audiences.
fn cached(
    p: &certbound::Policy,
    keys: &KeyRing,
    cache: &mut TokenCache,
    token: &str,
    now: i64,
) -> Result<std::sync::Arc<certbound::VerifiedToken>, certbound::Rejection> {
    certbound::verify_cached(p, keys, cache, token, now, certbound::Audiences::OfProvider)
}

#[test]
fn token_cache_hits_only_the_exact_token() {
    let p = simple_policy(json!({}));
    let keys = KeyRing::for_policy(&p);
    let mut cache = TokenCache::new(10);
    let t = token("good_ES256");
    assert!(cached(&p, &keys, &mut cache, &t, now()).is_ok());
    // The cached token with one character of its signature changed, with a
    // byte appended, or cut short: each is verified on its own and fails.
    let last = t.chars().last().unwrap();
    let edited = format!(
        "{}{}",
        &t[..t.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    for other in [edited, format!("{t}A"), t[..t.len() - 1].to_string()] {
        let hits = cache.hits;
        assert!(
            cached(&p, &keys, &mut cache, &other, now()).is_err(),
            "{other}"
        );
        assert_eq!(cache.hits, hits, "{other} was answered from the cache");
    }
    assert!(cached(&p, &keys, &mut cache, &t, now()).is_ok());
    assert_eq!(cache.hits, 1);
}

#[test]
fn a_token_verified_on_one_worker_is_a_hit_on_another() {
    let p = simple_policy(json!({}));
    let keys = KeyRing::for_policy(&p);
    let shared = std::sync::Arc::new(certbound::SharedTokenCache::new(10));
    let (mut a, mut b) = (TokenCache::new(10), TokenCache::new(10));
    a.share(std::sync::Arc::clone(&shared));
    b.share(std::sync::Arc::clone(&shared));
    let t = token("good_ES256");
    assert!(cached(&p, &keys, &mut a, &t, now()).is_ok());
    assert_eq!((a.hits, a.misses), (0, 1));
    // The other worker finds it behind its own cache, and keeps it.
    assert!(cached(&p, &keys, &mut b, &t, now()).is_ok());
    assert_eq!((b.hits, b.misses), (1, 0));
    assert!(b.contains(&t));
    // Only the exact token: a forged signature is verified, and fails.
    let forged = format!("{}A", &t[..t.len() - 1]);
    if forged != t {
        assert!(cached(&p, &keys, &mut b, &forged, now()).is_err());
        assert_eq!(b.hits, 1);
    }
    // New keys for the provider: the shared entry no longer counts.
    let mut rotated = KeyRing::for_policy(&p);
    let idp = p.provider_id("idp").unwrap();
    rotated.install(idp, keys.get(idp).cloned().unwrap(), 7);
    let mut c = TokenCache::new(10);
    c.share(std::sync::Arc::clone(&shared));
    assert!(c.get(&t, |p| rotated.generation(p), now()).is_none());
    // Nor does an expired token.
    let mut d = TokenCache::new(10);
    d.share(std::sync::Arc::clone(&shared));
    assert!(cached(&p, &keys, &mut a, &t, now()).is_ok());
    assert!(
        d.get(&t, |p| keys.generation(p), now() + 10 * 365 * 86_400)
            .is_none()
    );
}

#[test]
fn a_cache_of_size_zero_shares_nothing() {
    let p = simple_policy(json!({}));
    let keys = KeyRing::for_policy(&p);
    let shared = std::sync::Arc::new(certbound::SharedTokenCache::new(0));
    let (mut a, mut b) = (TokenCache::new(0), TokenCache::new(0));
    a.share(std::sync::Arc::clone(&shared));
    b.share(shared);
    let t = token("good_ES256");
    for cache in [&mut a, &mut b] {
        assert!(cached(&p, &keys, cache, &t, now()).is_ok());
        assert_eq!((cache.hits, cache.misses), (0, 0));
    }
}

#[test]
fn a_one_entry_cache_keeps_the_latest_token() {
    let p = simple_policy(json!({}));
    let keys = KeyRing::for_policy(&p);
    let mut cache = TokenCache::new(1);
    let (t, u) = (token("good_ES256"), token("good_ES384"));
    assert!(cached(&p, &keys, &mut cache, &t, now()).is_ok());
    assert!(cache.get(&t, |p| keys.generation(p), now()).is_some());
    // `u` takes the only entry.
    assert!(cached(&p, &keys, &mut cache, &u, now()).is_ok());
    assert!(cache.get(&t, |p| keys.generation(p), now()).is_none());
    assert!(cache.get(&u, |p| keys.generation(p), now()).is_some());
}

#[test]
fn token_cache_skips_only_the_signature() {
    let p = simple_policy(json!({}));
    let keys = KeyRing::for_policy(&p);
    let mut cache = TokenCache::new(2);
    let t = token("good_ES256");
    assert!(cached(&p, &keys, &mut cache, &t, now()).is_ok());
    assert_eq!((cache.hits, cache.misses), (0, 1));
    assert!(cached(&p, &keys, &mut cache, &t, now()).is_ok());
    assert_eq!((cache.hits, cache.misses), (1, 1));
    // Time is checked on a hit.
    assert_eq!(
        cached(&p, &keys, &mut cache, &t, now() + 400)
            .map_err(|r| r.error)
            .err(),
        Some(AuthError::Expired)
    );
    // Bounded: the oldest entry goes.
    for n in ["good_ES384", "good_EdDSA", "good_RS256"] {
        assert!(cached(&p, &keys, &mut cache, &token(n), now()).is_ok());
    }
    assert_eq!(cache.len(), 2);
    // A new key generation invalidates cached verifications.
    let mut rotated = keys.clone();
    let idp = p.provider_id("idp").unwrap();
    rotated.install(idp, keys.get(idp).unwrap().clone(), 7);
    let misses = cache.misses;
    assert!(cached(&p, &rotated, &mut cache, &token("good_RS256"), now()).is_ok());
    assert_eq!(cache.misses, misses + 1);
    // The binding is still checked on a hit: same token, other certificate.
    let h = bearer(&t);
    let mut cache = TokenCache::new(10);
    for (cert, ok) in [("client_a", true), ("client_b", false), ("client_a", true)] {
        let d = run_cached(&p, &keys, &mut cache, &h, Some(thumb(cert)));
        assert_eq!(matches!(d, Decision::Allow(_)), ok, "{cert}");
    }
    assert_eq!(cache.hits, 2);
}

#[test]
fn forward_false_removes_the_token_from_every_location() {
    let p = simple_policy(json!({
        "from_headers": [
            {"name": "authorization", "value_prefix": "Bearer "},
            {"name": "x-api-token", "value_prefix": "Token "}
        ],
        "from_params": ["access_token"],
        "from_cookies": ["at"]
    }));
    let t = token("good_ES256");
    let h = vec![
        (":path".to_string(), format!("/api?access_token={t}&keep=1")),
        ("authorization".to_string(), format!("Bearer {t}")),
        ("cookie".to_string(), format!("at={t}; theme=dark")),
        ("x-api-token".to_string(), format!("Token {t}")),
    ];
    let a = allowed(run(&p, &h, Some(thumb("client_a"))));
    assert_eq!(
        a.ops,
        vec![
            HeaderOp::Remove("authorization".into()),
            HeaderOp::Remove("x-api-token".into()),
            HeaderOp::Set(":path".into(), "/api?keep=1".into()),
            HeaderOp::Set("cookie".into(), "theme=dark".into()),
        ]
    );
}

#[test]
fn folded_authorization_headers_are_two_tokens() {
    // Envoy joins repeated headers with ",": two different tokens, one header.
    let p = simple_policy(json!({}));
    let h = vec![(
        "authorization".to_string(),
        format!(
            "Bearer {},Bearer {}",
            token("good_ES256"),
            token("good_ES384")
        ),
    )];
    assert_eq!(
        denied(&run(&p, &h, Some(thumb("client_a")))),
        Some(&AuthError::MultipleTokens)
    );
    let same = vec![(
        "authorization".to_string(),
        format!("Bearer {t}, Bearer {t}", t = token("good_ES256")),
    )];
    allowed(run(&p, &same, Some(thumb("client_a"))));
}

// ------------------------------------------------------------------ DPoP

/// tests/vectors/dpop/decision.json (make_dpop_decision_vectors.py): its
/// own IdP key and DPoP-bound tokens, proofs of a GET of `origin + path`
/// at the vectors' `now`.
fn dpop_vectors() -> &'static serde_json::Value {
    static V: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    V.get_or_init(|| serde_json::from_str(include_str!("vectors/dpop/decision.json")).unwrap())
}

fn dpop_token(name: &str) -> String {
    dpop_vectors()["tokens"][name].as_str().unwrap().to_string()
}

fn dpop_proof(name: &str) -> String {
    dpop_vectors()["proofs"][name].as_str().unwrap().to_string()
}

/// The provider of the DPoP vectors, `extra` merged in (`"dpop": null`:
/// no dpop block).
fn dpop_policy(extra: serde_json::Value) -> certbound::Policy {
    let mut merged = json!({
        "local_jwks": {"inline_string": dpop_vectors()["jwks"].to_string()},
        "dpop": {},
    });
    for (k, v) in extra.as_object().unwrap() {
        merged[k] = v.clone();
    }
    simple_policy(merged)
}

/// A GET of the vectors' URI with `scheme token` and the given proofs.
fn dpop_request(scheme: &str, t: &str, proofs: &[&str]) -> Vec<(String, String)> {
    let v = dpop_vectors();
    let origin = v["origin"].as_str().unwrap();
    let mut h = vec![
        (":method".to_string(), "GET".to_string()),
        (":scheme".to_string(), "https".to_string()),
        (
            ":authority".to_string(),
            origin.trim_start_matches("https://").to_string(),
        ),
        (":path".to_string(), v["path"].as_str().unwrap().to_string()),
        ("authorization".to_string(), format!("{scheme} {t}")),
    ];
    h.extend(proofs.iter().map(|p| ("dpop".to_string(), dpop_proof(p))));
    h
}

fn dpop_denied(p: &certbound::Policy, h: &[(String, String)], cert: Option<&str>) -> AuthError {
    denied(&run(p, h, cert.map(thumb)))
        .unwrap_or_else(|| panic!("allowed"))
        .clone()
}

#[test]
fn dpop_bound_token_needs_the_dpop_scheme_and_its_proof() {
    use certbound::DpopError;
    let p = dpop_policy(json!({}));
    let t = dpop_token("jkt");
    let a = allowed(run(&p, &dpop_request("DPoP", &t, &["jkt"]), None));
    assert!(a.dpop.is_some(), "the proof goes to the replay check");
    // RFC 9110 §11.1: the scheme is case-insensitive.
    allowed(run(&p, &dpop_request("dpop", &t, &["jkt"]), None));
    for (scheme, proofs, error) in [
        ("Bearer", &["jkt"][..], DpopError::BearerScheme),
        ("DPoP", &[][..], DpopError::Missing),
        ("DPoP", &["jkt", "jkt_again"][..], DpopError::Multiple),
        ("DPoP", &["jkt_post"][..], DpopError::MethodMismatch),
        ("DPoP", &["jkt_other_key"][..], DpopError::KeyMismatch),
        // a proof whose ath is another token's
        ("DPoP", &["x5t"][..], DpopError::AccessTokenHashMismatch),
    ] {
        assert_eq!(
            dpop_denied(&p, &dpop_request(scheme, &t, proofs), None),
            AuthError::Dpop(error),
            "{scheme} {proofs:?}"
        );
    }
}

#[test]
fn dpop_scheme_needs_a_dpop_bound_token() {
    use certbound::DpopError;
    let p = dpop_policy(json!({}));
    for name in ["unbound", "x5t"] {
        let h = dpop_request("DPoP", &dpop_token(name), &[name]);
        assert_eq!(
            dpop_denied(&p, &h, Some("client_a")),
            AuthError::Dpop(DpopError::UnboundToken),
            "{name}"
        );
    }
    // With Bearer the certificate-bound token is what it always was.
    let x5t = dpop_token("x5t");
    allowed(run(&p, &bearer(&x5t), Some(thumb("client_a"))));
    // `required`: only DPoP-bound tokens.
    let required = dpop_policy(json!({"dpop": {"required": true}}));
    assert_eq!(
        dpop_denied(&required, &bearer(&x5t), Some("client_a")),
        AuthError::Dpop(DpopError::UnboundToken)
    );
    allowed(run(
        &required,
        &dpop_request("DPoP", &dpop_token("jkt"), &["jkt"]),
        None,
    ));
}

#[test]
fn token_bound_both_ways_needs_certificate_and_proof() {
    let p = dpop_policy(json!({}));
    let h = dpop_request("DPoP", &dpop_token("jkt_and_x5t"), &["jkt_and_x5t"]);
    let a = allowed(run(&p, &h, Some(thumb("client_a"))));
    assert!(a.dpop.is_some());
    assert_eq!(dpop_denied(&p, &h, None), AuthError::NoClientCertificate);
    assert_eq!(
        dpop_denied(&p, &h, Some("client_b")),
        AuthError::BindingMismatch
    );
    let no_proof = dpop_request("DPoP", &dpop_token("jkt_and_x5t"), &[]);
    assert_eq!(
        dpop_denied(&p, &no_proof, Some("client_a")),
        AuthError::Dpop(certbound::DpopError::Missing)
    );
}

#[test]
fn malformed_jkt_fails_closed_with_a_dpop_block() {
    let p = dpop_policy(json!({}));
    for name in ["x5t_and_bad_jkt", "x5t_and_numeric_jkt", "bad_jkt"] {
        assert_eq!(
            dpop_denied(&p, &bearer(&dpop_token(name)), Some("client_a")),
            AuthError::MalformedBinding,
            "{name}"
        );
    }
}

/// Without a `dpop` block `cnf.jkt` is a confirmation method this provider
/// does not check: whatever it holds, a token is judged by its
/// `x5t#S256` alone, as before DPoP was supported.
#[test]
fn jkt_is_ignored_without_a_dpop_block() {
    for mode in ["required", "when_present"] {
        let p = dpop_policy(json!({"dpop": null, "certificate_binding": mode}));
        for name in ["x5t_and_bad_jkt", "x5t_and_numeric_jkt"] {
            let h = bearer(&dpop_token(name));
            allowed(run(&p, &h, Some(thumb("client_a"))));
            assert_eq!(
                dpop_denied(&p, &h, Some("client_b")),
                AuthError::BindingMismatch,
                "{mode} {name}"
            );
        }
        for name in ["bad_jkt", "jkt"] {
            assert_eq!(
                dpop_denied(&p, &bearer(&dpop_token(name)), Some("client_a")),
                AuthError::MissingBinding,
                "{mode} {name}"
            );
        }
    }
}

/// RFC 9728 §2: `authorization_servers` defaults to the providers'
/// issuers, in provider order; the document names DPoP's algorithms of
/// every provider that has a dpop block.
#[test]
fn metadata_defaults_to_the_providers() {
    let jwks = json!({"inline_string": dpop_vectors()["jwks"].to_string()});
    let p = policy(json!({
        "providers": {
            "a": {"issuer": "https://x.example.com", "local_jwks": jwks},
            "b": {"issuer": "https://y.example.com", "local_jwks": jwks},
            "c": {"issuer": "https://z.example.com", "local_jwks": jwks,
                  "dpop": {"algorithms": ["ES256"]}},
        },
        "resource_metadata": {"resource": "https://api.example.com"}
    }));
    let m = p.resource_metadata.as_ref().unwrap();
    let doc: serde_json::Value = serde_json::from_str(&m.document).unwrap();
    assert_eq!(
        doc["authorization_servers"],
        json!([
            "https://x.example.com",
            "https://y.example.com",
            "https://z.example.com"
        ])
    );
    assert_eq!(doc["dpop_signing_alg_values_supported"], json!(["ES256"]));
    assert_eq!(doc["dpop_bound_access_tokens_required"], json!(false));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert_eq!(
        m.url,
        "https://api.example.com/.well-known/oauth-protected-resource"
    );
}

/// RFC 8725 §3.1, one algorithm per key: with `require_key_alg`, a JWK
/// without `alg` verifies nothing, so an RSA key cannot serve both PKCS #1
/// and PSS; a JWK that names its `alg` is used with that one only.
#[test]
fn require_key_alg_refuses_keys_without_alg() {
    // The vectors' JWKS names no `alg`: by default (as jwt_authn) it verifies.
    let lenient = simple_policy(json!({}));
    let strict = simple_policy(json!({"require_key_alg": true}));
    for name in ["good_ES256", "good_RS256", "good_PS256", "good_EdDSA"] {
        let t = token(name);
        assert!(verify_with(&lenient, &t, now()).is_ok(), "{name}");
        assert_eq!(
            verify_with(&strict, &t, now()).err(),
            Some(AuthError::KeyAlgorithmMismatch),
            "{name}"
        );
    }
    let (set, _) = KeySet::parse(&jwks("messy_jwks")).unwrap();
    use certbound::Alg;
    assert!(set.select(Some("rs256-only"), Alg::RS256, true).is_ok());
    assert!(set.select(Some("eddsa-only"), Alg::EdDSA, true).is_ok());
    assert_eq!(
        set.select(Some("es256"), Alg::ES256, true).err(),
        Some(AuthError::KeyAlgorithmMismatch)
    );
    assert!(set.select(Some("es256"), Alg::ES256, false).is_ok());
}
