//! The native-test shim: the filter's proxy-wasm root and HTTP contexts,
//! driven under `cargo test` against `certbound::FakeHost`, which holds the
//! plugin configuration, environment, request headers, connection
//! properties, a fixed clock (the vectors' `now`), and records local
//! responses, header changes, metrics and HTTP calls.

// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use certbound::{CertboundRoot, FakeHost, HttpCall};
use common::*;
use proxy_wasm::traits::RootContext;
use proxy_wasm::types::Action;
use serde_json::{Value, json};
use std::time::Duration;

/// The fake host at the vectors' fixed `now`.
fn host() -> FakeHost {
    FakeHost::new().at_unix(now() as u64)
}

/// Builders that need the vectors.
trait Fixtures {
    /// The plugin configuration, as JSON.
    fn with_json(self, cfg: Value) -> Self;
    /// The vectors' certificate `name` as the connection's peer certificate.
    fn with_peer_cert(self, name: &str) -> Self;
    fn with_bearer(self, t: &str) -> Self;
}

impl Fixtures for FakeHost {
    fn with_json(self, cfg: Value) -> Self {
        self.with_config(cfg.to_string())
    }
    fn with_peer_cert(self, name: &str) -> Self {
        let pem = cert_pem(name);
        self.with_property(&["connection", "peer_certificate"], pem.as_bytes())
    }
    fn with_bearer(self, t: &str) -> Self {
        self.with_header("authorization", &format!("Bearer {t}"))
    }
}

/// No stream got two local responses (Envoy sends one).
fn assert_one_response_per_stream(h: &FakeHost) {
    assert_eq!(h.double_responses(), 0, "two local responses on a stream");
}

fn config() -> Value {
    json!({"providers": {"idp": provider(json!({}))}})
}

/// Configures a root on `host` and runs one request through an HTTP context.
fn request(host: &FakeHost) -> Action {
    let mut root = CertboundRoot::new(host.clone());
    assert!(root.on_configure(0), "config refused: {}", host.logs());
    let mut http = root.create_http_context(1).expect("http context");
    let action = http.on_http_request_headers(0, true);
    assert_one_response_per_stream(host);
    action
}

fn base() -> FakeHost {
    host()
        .with_json(config())
        .with_header(":path", "/api")
        .with_header(":method", "GET")
}

#[test]
fn accepts_a_bound_token_with_its_certificate() {
    let h = base()
        .with_peer_cert("client_a")
        .with_bearer(&token("good_ES256"));
    assert_eq!(request(&h), Action::Continue);
    assert_eq!(h.response(), None);
    assert_eq!(h.counter("certbound.allowed"), 1);
    assert_eq!(h.counter("certbound.provider.idp.allowed"), 1);
    // forward defaults to false: the token does not go upstream.
    assert_eq!(h.header("authorization"), None);
}

#[test]
fn accepts_url_encoded_pem_and_the_older_digest_property() {
    let pem = cert_pem("client_a");
    let encoded: String = pem
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let h = base()
        .with_property(&["connection", "peer_certificate"], encoded.as_bytes())
        .with_bearer(&token("good_ES256"));
    assert_eq!(request(&h), Action::Continue);

    let hex = vectors()["sha256_hex"]["client_a"].as_str().unwrap();
    let h = base()
        .with_property(
            &["connection", "sha256_peer_certificate_digest"],
            hex.as_bytes(),
        )
        .with_bearer(&token("good_ES256"));
    assert_eq!(request(&h), Action::Continue);
}

#[test]
fn envoys_digest_is_read_first_and_the_pem_is_the_fallback() {
    let digest = |name: &str| {
        vectors()["sha256_hex"][name]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec()
    };
    // Both properties: the digest decides (here they name different
    // certificates, which a real Envoy never reports for one connection).
    let h = base()
        .with_peer_cert("client_b")
        .with_property(
            &["connection", "sha256_peer_certificate_digest"],
            &digest("client_a"),
        )
        .with_bearer(&token("good_ES256"));
    assert_eq!(request(&h), Action::Continue);
    let h = base()
        .with_peer_cert("client_a")
        .with_property(
            &["connection", "sha256_peer_certificate_digest"],
            "00".repeat(32).as_bytes(),
        )
        .with_bearer(&token("good_ES256"));
    assert_invalid_token(&h, request(&h), "binding_mismatch");
    // A digest that is not 64 hex digits (or an empty one: no client
    // certificate) falls back to the PEM.
    for bad in [&b""[..], b"zz", &[b'a'; 63]] {
        let h = base()
            .with_peer_cert("client_a")
            .with_property(&["connection", "sha256_peer_certificate_digest"], bad)
            .with_bearer(&token("good_ES256"));
        assert_eq!(request(&h), Action::Continue, "{bad:?}");
    }
}

fn assert_invalid_token(h: &FakeHost, action: Action, reason: &str) {
    assert_eq!(action, Action::Pause);
    assert_eq!(h.status(), Some(401));
    let c = h.challenge().unwrap();
    assert!(c.starts_with("Bearer error=\"invalid_token\""), "{c}");
    assert_eq!(h.counter("certbound.denied"), 1);
    assert_eq!(
        h.counter(&format!("certbound.denied.{reason}")),
        1,
        "{reason}"
    );
}

#[test]
fn rejects_every_way_a_token_can_fail() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("good_ES256", Some("client_b"), "binding_mismatch"),
        ("good_ES256", None, "no_client_certificate"),
        ("unbound", Some("client_a"), "missing_binding"),
        ("expired", Some("client_a"), "expired"),
        ("nbf_future", Some("client_a"), "not_yet_valid"),
        ("wrong_iss", Some("client_a"), "wrong_issuer"),
        ("wrong_aud", Some("client_a"), "wrong_audience"),
        ("tampered_payload", Some("client_a"), "bad_signature"),
        ("unknown_kid", Some("client_a"), "unknown_kid"),
        ("alg_none", Some("client_a"), "malformed"),
        (
            "hs256_with_public_key",
            Some("client_a"),
            "disallowed_algorithm",
        ),
        ("jwe_shaped", Some("client_a"), "malformed"),
    ];
    for (name, cert, reason) in cases {
        let mut h = base().with_bearer(&token(name));
        if let Some(c) = cert {
            h = h.with_peer_cert(c);
        }
        let action = request(&h);
        assert_invalid_token(&h, action, reason);
        // The token never reaches the logs.
        assert!(!h.logs().contains(&token(name)), "{name} logged");
    }
}

#[test]
fn a_bypassed_cors_preflight_counts_as_that_alone() {
    let mut cfg = config();
    cfg["bypass_cors_preflight"] = json!(true);
    let h = host()
        .with_json(cfg)
        .with_header(":path", "/api")
        .with_header(":method", "OPTIONS")
        .with_header("origin", "https://app.example.com")
        .with_header("access-control-request-method", "PUT");
    assert_eq!(request(&h), Action::Continue);
    assert_eq!(h.response(), None);
    assert_eq!(h.counter("certbound.cors_preflight_bypassed"), 1);
    assert_eq!(h.counter("certbound.allowed"), 0);
    assert_eq!(h.counter("certbound.denied"), 0);
}

/// jwt_authn's `stat_prefix`: every stat under `certbound.<prefix>.`.
#[test]
fn stat_prefix_moves_every_stat() {
    let mut cfg = config();
    cfg["stat_prefix"] = json!("edge.eu-1");
    let h = base()
        .with_json(cfg)
        .with_peer_cert("client_a")
        .with_bearer(&token("good_ES256"));
    assert_eq!(request(&h), Action::Continue);
    assert_eq!(h.counter("certbound.edge.eu-1.allowed"), 1);
    assert_eq!(h.counter("certbound.edge.eu-1.provider.idp.allowed"), 1);
    assert_eq!(h.counter("certbound.allowed"), 0);
    let names = h.metric_names();
    assert!(!names.is_empty());
    assert!(
        names.iter().all(|n| n.starts_with("certbound.edge.eu-1.")),
        "{names:?}"
    );
    for bad in ["", "a..b", ".a", "a b", "a/b"] {
        let mut cfg = config();
        cfg["stat_prefix"] = json!(bad);
        let h = base().with_json(cfg);
        let mut root = CertboundRoot::new(h.clone());
        assert!(!root.on_configure(0), "{bad:?} accepted");
        assert!(h.logs().contains("stat_prefix"), "{}", h.logs());
    }
}

#[test]
fn no_token_gets_a_bare_challenge() {
    let h = base().with_peer_cert("client_a");
    assert_eq!(request(&h), Action::Pause);
    assert_eq!(h.status(), Some(401));
    assert_eq!(h.challenge().as_deref(), Some("Bearer"));
    assert_eq!(h.counter("certbound.denied.missing_token"), 1);
}

#[test]
fn unreadable_certificate_fails_closed() {
    let h = base()
        .with_property(&["connection", "peer_certificate"], b"garbage")
        .with_bearer(&token("good_ES256"));
    let action = request(&h);
    assert_invalid_token(&h, action, "no_client_certificate");
}

#[test]
fn no_clock_fails_closed() {
    let h = base()
        .with_peer_cert("client_a")
        .with_bearer(&token("good_ES256"))
        .without_clock();
    let action = request(&h);
    assert_eq!(action, Action::Pause);
    // Refused, as a failure of the filter: not a verdict on the token.
    assert_eq!(h.status(), Some(500));
    assert_eq!(h.challenge(), None);
}

#[test]
fn when_present_accepts_plain_bearer_tokens() {
    let h = host()
        .with_json(
            json!({"providers": {"idp": provider(json!({"certificate_binding": "when_present"}))}}),
        )
        .with_header(":path", "/")
        .with_bearer(&token("unbound"));
    assert_eq!(request(&h), Action::Continue);
}

#[test]
fn anti_spoofing_strip_and_claim_headers() {
    let cfg = json!({"providers": {"idp": provider(json!({
        "forward": true,
        "claim_to_headers": [{"claim_name": "sub", "header_name": "x-jwt-sub"}],
        "thumbprint_header": "x-client-thumbprint"
    }))}, "rules": [
        {"match": {"prefix": "/public"}},
        {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}
    ]});
    // Spoofed headers on a public route are removed.
    let h = host()
        .with_json(cfg.clone())
        .with_header(":path", "/public/x")
        .with_header("x-jwt-sub", "admin")
        .with_header("x-client-thumbprint", "forged");
    assert_eq!(request(&h), Action::Continue);
    assert_eq!(h.header("x-jwt-sub"), None);
    assert_eq!(h.header("x-client-thumbprint"), None);
    // On a protected route they are replaced by the verified values.
    let t = token("good_ES256");
    let h = host()
        .with_json(cfg)
        .with_header(":path", "/api")
        .with_header("x-jwt-sub", "admin")
        .with_peer_cert("client_a")
        .with_bearer(&t);
    assert_eq!(request(&h), Action::Continue);
    assert_eq!(h.header("x-jwt-sub").as_deref(), Some("client-a"));
    assert_eq!(
        h.header("x-client-thumbprint").as_deref(),
        vectors()["x5t"]["client_a"].as_str()
    );
    assert_eq!(h.header("authorization"), Some(format!("Bearer {t}")));
}

#[test]
fn insufficient_scope_is_403() {
    let cfg = json!({"providers": {"idp": provider(json!({}))}, "rules": [
        {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}, "required_scopes": ["orders:write", "admin"]}
    ]});
    let h = host()
        .with_json(cfg)
        .with_header(":path", "/orders")
        .with_peer_cert("client_a")
        .with_bearer(&token("scoped"));
    assert_eq!(request(&h), Action::Pause);
    assert_eq!(h.status(), Some(403));
    assert_eq!(
        h.challenge().as_deref(),
        Some(
            "Bearer error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"orders:write admin\""
        )
    );
    assert_eq!(h.counter("certbound.denied.insufficient_scope"), 1);
}

#[test]
fn two_tokens_is_400() {
    let h = base()
        .with_bearer(&token("good_ES256"))
        .with_bearer(&token("good_ES384"));
    assert_eq!(request(&h), Action::Pause);
    assert_eq!(h.status(), Some(400));
    assert!(h.challenge().unwrap().contains("invalid_request"));
}

#[test]
fn bad_config_is_refused_and_named() {
    for (cfg, field) in [
        (b"{".to_vec(), ""),
        (br#"{"providers":{"idp":{"issuer":"x","local_jwks":{"inline_string":"{}"},"bogus":1}}}"#.to_vec(), "providers.idp"),
        (br#"{"providers":{"idp":{"issuer":"","local_jwks":{"inline_string":"{}"}}}}"#.to_vec(), "providers.idp.issuer"),
    ] {
        let h = host().with_config(cfg);
        let mut root = CertboundRoot::new(h.clone());
        assert!(!root.on_configure(0));
        assert!(root.create_http_context(1).is_none());
        assert!(h.logs().contains(field), "{}", h.logs());
    }
    // No configuration at all, or an empty one: refused as empty.
    for h in [host(), host().with_config("")] {
        let mut root = CertboundRoot::new(h.clone());
        assert!(!root.on_configure(0), "no configuration at all");
        assert!(
            h.logs().contains("the configuration is empty"),
            "{}",
            h.logs()
        );
    }
}

#[test]
fn jwks_from_the_vm_environment() {
    let cfg = json!({"providers": {"idp": provider(json!({"local_jwks": {"environment_variable": "CERTBOUND_JWKS"}}))}});
    let h = host()
        .with_json(cfg.clone())
        .with_env("CERTBOUND_JWKS", &jwks("jwks"))
        .with_header(":path", "/")
        .with_peer_cert("client_a")
        .with_bearer(&token("good_EdDSA"));
    assert_eq!(request(&h), Action::Continue);
    let h = host().with_json(cfg);
    assert!(!CertboundRoot::new(h.clone()).on_configure(0));
    assert!(h.logs().contains("CERTBOUND_JWKS"));
}

#[test]
fn skipped_keys_are_logged() {
    let cfg = json!({"providers": {"idp": provider(json!({"local_jwks": {"inline_string": jwks("messy_jwks")}}))}});
    let h = host().with_json(cfg);
    assert!(CertboundRoot::new(h.clone()).on_configure(0));
    let logs = h.logs();
    assert!(logs.contains("RSA modulus under 2048 bits"), "{logs}");
    assert!(logs.contains("duplicate kid"), "{logs}");
}

// ------------------------------------------------------------------ remote JWKS

fn remote_config() -> Value {
    json!({"providers": {"idp": provider(json!({
        "local_jwks": null,
        "remote_jwks": {
            "http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp_jwks", "timeout": "2s"},
            "cache_duration": "600s",
            "min_refetch_interval": "30s"
        }
    }))}})
}

/// The vectors' JWKS without the keys whose kid is in `without`.
fn jwks_without(without: &[&str]) -> String {
    let keys: Vec<Value> = vectors()["jwks"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| !without.contains(&k["kid"].as_str().unwrap()))
        .cloned()
        .collect();
    json!({ "keys": keys }).to_string()
}

fn configured_root(h: &FakeHost) -> CertboundRoot<FakeHost> {
    let mut root = CertboundRoot::new(h.clone());
    assert!(root.on_configure(0), "{}", h.logs());
    root
}

/// Starts a request on stream `id`, returning its action.
fn start(root: &CertboundRoot<FakeHost>, h: &FakeHost, id: u32, t: &str) -> Action {
    let h = h.clone().on_stream(id);
    let h = h
        .with_header(":path", "/api")
        .with_peer_cert("client_a")
        .with_bearer(t);
    let mut http = root.create_http_context(id).unwrap();
    let action = http.on_http_request_headers(0, true);
    assert_one_response_per_stream(&h);
    action
}

fn deliver(
    root: &mut CertboundRoot<FakeHost>,
    h: &FakeHost,
    token: u32,
    status: Option<&str>,
    body: &str,
) {
    use proxy_wasm::traits::Context;
    h.answer_with(status, body.as_bytes());
    root.on_http_call_response(token, 0, body.len(), 0);
    assert_one_response_per_stream(h);
}

#[test]
fn remote_keys_are_fetched_and_paused_requests_resumed() {
    let h = host().with_json(remote_config());
    let mut root = configured_root(&h);
    assert_eq!(h.tick(), Some(Duration::from_millis(1)), "first tick soon");
    // A request before any keys: paused, not failed.
    assert_eq!(start(&root, &h, 7, &token("good_ES256")), Action::Pause);
    assert_eq!(h.response_of(7), None);
    root.on_tick();
    let calls = h.http_calls();
    assert_eq!(calls.len(), 1);
    let HttpCall {
        token: tok,
        cluster,
        headers,
        ..
    } = &calls[0];
    assert_eq!(cluster, "idp_jwks");
    assert!(headers.contains(&(":path".into(), "/jwks".into())));
    assert!(headers.contains(&(":authority".into(), "idp.example.com".into())));
    // Ticks keep running while the request waits.
    root.on_tick();
    assert_eq!(
        h.http_calls().len(),
        1,
        "no second fetch while one is in flight"
    );
    deliver(&mut root, &h, *tok, Some("200"), &jwks("jwks"));
    assert!(h.resumed(7), "{}", h.logs());
    assert_eq!(h.response_of(7), None);
    assert_eq!(h.counter("certbound.provider.idp.jwks_fetch_success"), 1);
    assert_eq!(h.counter("certbound.provider.idp.keys_loaded"), 4);
    // Idle: the next tick is the refresh, not a poll.
    assert!(
        h.tick().unwrap() >= Duration::from_secs(60),
        "{:?}",
        h.tick()
    );
    // Later requests go straight through.
    assert_eq!(start(&root, &h, 8, &token("good_EdDSA")), Action::Continue);
    assert_one_response_per_stream(&h);
}

#[test]
fn one_fetch_per_envoy_not_per_worker() {
    let h = host().with_json(remote_config());
    let mut a = configured_root(&h);
    let mut b = configured_root(&h);
    a.on_tick();
    b.on_tick();
    a.on_tick();
    b.on_tick();
    assert_eq!(h.http_calls().len(), 1, "one fetch for two VMs");
    let tok = h.http_calls()[0].token;
    deliver(&mut a, &h, tok, Some("200"), &jwks("jwks"));
    // The other VM picks the shared keys up on its next tick, without fetching.
    b.on_tick();
    assert_eq!(h.http_calls().len(), 1);
    assert_eq!(start(&b, &h, 9, &token("good_ES256")), Action::Continue);
    assert_one_response_per_stream(&h);
}

#[test]
fn keys_unavailable_after_the_timeout() {
    let h = host().with_json(remote_config());
    let mut root = configured_root(&h);
    assert_eq!(start(&root, &h, 7, &token("good_ES256")), Action::Pause);
    root.on_tick();
    let tok = h.http_calls()[0].token;
    // The JWKS endpoint is down: the waiting request gets a clear 401 at once.
    deliver(&mut root, &h, tok, None, "");
    let r = h.response_of(7).expect("answered");
    assert_eq!(r.status, 401);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v.contains("signing keys unavailable")),
        "{r:?}"
    );
    assert_eq!(h.counter("certbound.provider.idp.jwks_fetch_failed"), 1);
    // A request that waits while nothing answers is failed at the deadline.
    assert_eq!(start(&root, &h, 8, &token("good_ES256")), Action::Pause);
    h.advance(Duration::from_millis(2_001));
    root.on_tick();
    assert_eq!(h.response_of(8).map(|r| r.status), Some(401));
    // Recovery once the endpoint answers: that tick also retried (the
    // 0.5 s backoff had passed), and the retry loads the keys.
    assert_eq!(h.http_calls().len(), 2, "retried after backoff");
    let tok = h.http_calls().last().unwrap().token;
    deliver(&mut root, &h, tok, Some("200"), &jwks("jwks"));
    assert_eq!(start(&root, &h, 9, &token("good_ES256")), Action::Continue);
    assert_one_response_per_stream(&h);
}

#[test]
fn garbage_and_errors_keep_the_last_good_keys() {
    let mut cfg = remote_config();
    cfg["providers"]["idp"]["remote_jwks"]["cache_duration"] = json!("10s");
    let h = host().with_json(cfg);
    let mut root = configured_root(&h);
    root.on_tick();
    deliver(
        &mut root,
        &h,
        h.http_calls()[0].token,
        Some("200"),
        &jwks("jwks"),
    );
    for (status, body) in [
        (Some("200"), "<html>not json</html>"),
        (Some("503"), "busy"),
        (Some("200"), r#"{"keys":[]}"#),
        (None, ""),
    ] {
        // Move past the cache duration (and any backoff): a refresh is due.
        h.advance(Duration::from_secs(10));
        root.on_tick();
        let tok = h.http_calls().last().unwrap().token;
        deliver(&mut root, &h, tok, status, body);
        let id = 100 + h.http_calls().len() as u32;
        assert_eq!(
            start(&root, &h, id, &token("good_ES256")),
            Action::Continue,
            "{body}"
        );
    }
    assert_eq!(h.counter("certbound.provider.idp.jwks_fetch_failed"), 4);
    assert!(h.logs().contains("keeping the last good keys"));
    assert_one_response_per_stream(&h);
}

#[test]
fn unknown_kid_triggers_one_rate_limited_refetch() {
    let h = host().with_json(remote_config());
    let mut root = configured_root(&h);
    root.on_tick();
    deliver(
        &mut root,
        &h,
        h.http_calls()[0].token,
        Some("200"),
        &jwks_without(&["es384"]),
    );
    h.advance(Duration::from_secs(31));
    // A token signed with a key the IdP has just rotated in.
    assert_eq!(start(&root, &h, 20, &token("good_ES384")), Action::Pause);
    root.on_tick();
    assert_eq!(h.http_calls().len(), 2, "refetch");
    deliver(
        &mut root,
        &h,
        h.http_calls()[1].token,
        Some("200"),
        &jwks("jwks"),
    );
    assert!(
        h.resumed(20),
        "new key accepted without restart: {:?}",
        h.response_of(20)
    );
    // A kid that is still unknown is refused, and does not refetch again soon.
    let t = token("unknown_kid");
    assert_eq!(start(&root, &h, 21, &t), Action::Pause);
    assert_eq!(h.response_of(21).map(|r| r.status), Some(401));
    root.on_tick();
    assert_eq!(
        h.http_calls().len(),
        2,
        "rate limited by min_refetch_interval"
    );
    assert_one_response_per_stream(&h);
}

#[test]
fn another_workers_rotation_is_picked_up_on_unknown_kid() {
    let h = host().with_json(remote_config());
    let mut a = configured_root(&h);
    let b = configured_root(&h);
    a.on_tick();
    deliver(
        &mut a,
        &h,
        h.http_calls()[0].token,
        Some("200"),
        &jwks_without(&["es384"]),
    );
    h.advance(Duration::from_secs(31));
    assert_eq!(start(&a, &h, 30, &token("good_ES384")), Action::Pause);
    a.on_tick();
    deliver(
        &mut a,
        &h,
        h.http_calls()[1].token,
        Some("200"),
        &jwks("jwks"),
    );
    // VM b has not ticked since; it syncs from shared data on the unknown kid.
    assert_eq!(start(&b, &h, 31, &token("good_ES384")), Action::Continue);
    assert_eq!(h.http_calls().len(), 2);
    assert_one_response_per_stream(&h);
}

#[test]
fn cache_hits_still_check_the_binding() {
    let h = host().with_json(config());
    let root = configured_root(&h);
    let t = token("good_ES256");
    assert_eq!(start(&root, &h, 40, &t), Action::Continue);
    assert_eq!(start(&root, &h, 41, &t), Action::Continue);
    assert_eq!(h.counter("certbound.cache_hit"), 1);
    assert_eq!(h.counter("certbound.cache_miss"), 1);
    // Same token from another client certificate: a cache hit, still refused.
    let other = h
        .clone()
        .on_stream(42)
        .with_header(":path", "/")
        .with_peer_cert("client_b")
        .with_bearer(&t);
    let mut http = root.create_http_context(42).unwrap();
    assert_eq!(http.on_http_request_headers(0, true), Action::Pause);
    assert_eq!(other.status(), Some(401));
    assert_eq!(h.counter("certbound.cache_hit"), 2);
    assert_eq!(h.counter("certbound.denied.binding_mismatch"), 1);
    assert_one_response_per_stream(&h);
}

#[test]
fn cache_can_be_disabled() {
    let mut cfg = config();
    cfg["jwt_cache_size"] = json!(0);
    let h = host().with_json(cfg);
    let root = configured_root(&h);
    let t = token("good_ES256");
    assert_eq!(start(&root, &h, 40, &t), Action::Continue);
    assert_eq!(start(&root, &h, 41, &t), Action::Continue);
    assert_eq!(h.counter("certbound.cache_hit"), 0);
}

#[test]
fn local_keys_never_tick() {
    let h = host().with_json(config());
    let _root = configured_root(&h);
    assert_eq!(h.tick(), None);
}

// ------------------------------------------------------------------ forwarded certificates

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn forwarded_config(source: Value) -> Value {
    json!({"providers": {"idp": provider(json!({}))}, "client_certificate": source})
}

/// A request whose connection comes from `addr` with `header: value`.
fn forwarded_request(cfg: Value, addr: &str, header: &str, value: &str, t: &str) -> FakeHost {
    let h = host()
        .with_json(cfg)
        .with_header(":path", "/api")
        .with_header(header, value)
        .with_property(&["source", "address"], addr.as_bytes())
        .with_bearer(t);
    let _ = request(&h);
    h
}

fn xfcc_for(cert: &str) -> String {
    let hex = thumb(cert)
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    format!(
        "By=spiffe://cluster.local/ns/default/sa/api;Hash={hex};Cert=\"{}\";Subject=\"CN={cert},O=Test, Inc.\";URI=",
        url_encode(&cert_pem(cert))
    )
}

#[test]
fn xfcc_from_a_trusted_hop() {
    let cfg = forwarded_config(json!({"source": "xfcc", "trusted_proxies": ["127.0.0.0/8"]}));
    let t = token("good_ES256");
    let h = forwarded_request(
        cfg.clone(),
        "127.0.0.1:40000",
        "x-forwarded-client-cert",
        &xfcc_for("client_a"),
        &t,
    );
    assert_eq!(h.status(), None, "{:?}", h.response());
    // The header does not go upstream by default.
    assert_eq!(h.header("x-forwarded-client-cert"), None);
    // Bound to another certificate.
    let h = forwarded_request(
        cfg.clone(),
        "127.0.0.1:40000",
        "x-forwarded-client-cert",
        &xfcc_for("client_b"),
        &t,
    );
    assert_eq!(h.status(), Some(401));
    // Several hops: the last one is ours.
    let two = format!("{},{}", xfcc_for("client_b"), xfcc_for("client_a"));
    let h = forwarded_request(
        cfg.clone(),
        "127.0.0.1:1",
        "x-forwarded-client-cert",
        &two,
        &t,
    );
    assert_eq!(h.status(), None);
    // Only a hash.
    let hex = thumb("client_a")
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let h = forwarded_request(
        cfg,
        "127.0.0.1:1",
        "x-forwarded-client-cert",
        &format!("By=x;Hash={hex}"),
        &t,
    );
    assert_eq!(h.status(), None);
}

#[test]
fn forged_headers_from_untrusted_clients_are_ignored() {
    let t = token("good_ES256");
    for (source, header, value) in [
        (
            json!({"source": "xfcc", "trusted_proxies": ["10.0.0.0/8"]}),
            "x-forwarded-client-cert",
            xfcc_for("client_a"),
        ),
        (
            json!({"source": "header", "name": "x-ssl-cert", "encoding": "url_encoded_pem", "trusted_proxies": ["10.0.0.0/8"]}),
            "x-ssl-cert",
            url_encode(&cert_pem("client_a")),
        ),
    ] {
        let h = forwarded_request(
            forwarded_config(source),
            "192.0.2.7:5555",
            header,
            &value,
            &t,
        );
        assert_eq!(h.status(), Some(401), "{header}");
        assert!(h.challenge().unwrap().contains("invalid_token"));
        assert_eq!(h.counter("certbound.untrusted_certificate_header"), 1);
        assert_eq!(h.counter("certbound.denied.no_client_certificate"), 1);
    }
}

#[test]
fn peer_uri_san_trust_as_in_a_mesh() {
    let cfg = forwarded_config(
        json!({"source": "xfcc", "trusted_peer_uri_sans": ["spiffe://cluster.local/ns/edge/sa/gateway"]}),
    );
    let t = token("good_ES256");
    let ok = host()
        .with_json(cfg.clone())
        .with_header(":path", "/")
        .with_header("x-forwarded-client-cert", &xfcc_for("client_a"))
        .with_property(
            &["connection", "uri_san_peer_certificate"],
            b"spiffe://cluster.local/ns/edge/sa/gateway",
        )
        .with_bearer(&t);
    assert_eq!(request(&ok), Action::Continue);
    let bad = host()
        .with_json(cfg)
        .with_header(":path", "/")
        .with_header("x-forwarded-client-cert", &xfcc_for("client_a"))
        .with_property(
            &["connection", "uri_san_peer_certificate"],
            b"spiffe://cluster.local/ns/x/sa/y",
        )
        .with_bearer(&t);
    assert_eq!(request(&bad), Action::Pause);
}

#[test]
fn header_encodings() {
    use base64::Engine as _;
    let t = token("good_ES256");
    let pem = cert_pem("client_a");
    let der_b64 = {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        body
    };
    let hex_colons = thumb("client_a")
        .0
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let cases = [
        ("url_encoded_pem", url_encode(&pem)),
        ("pem", pem.replace('\n', " ")),
        ("base64_der", der_b64.clone()),
        ("rfc9440", format!(":{der_b64}:")),
        ("sha256", hex_colons),
        (
            "sha256",
            base64::engine::general_purpose::STANDARD.encode(thumb("client_a").0),
        ),
    ];
    for (encoding, value) in cases {
        let cfg = forwarded_config(json!({
            "source": "header", "name": "client-cert", "encoding": encoding,
            "trusted_proxies": ["127.0.0.1"], "forward_certificate_header": true
        }));
        let h = forwarded_request(cfg, "127.0.0.1:9", "client-cert", &value, &t);
        assert_eq!(h.status(), None, "{encoding}: {:?}", h.response());
        assert_eq!(h.header("client-cert"), Some(value), "forwarded when asked");
    }
}

#[test]
fn duplicate_forwarded_headers_are_not_believed() {
    let cfg = forwarded_config(json!({"source": "xfcc", "trusted_proxies": ["127.0.0.0/8"]}));
    let h = host()
        .with_json(cfg)
        .with_header(":path", "/")
        .with_header("x-forwarded-client-cert", &xfcc_for("client_a"))
        .with_header("x-forwarded-client-cert", &xfcc_for("client_a"))
        .with_property(&["source", "address"], b"127.0.0.1:1")
        .with_bearer(&token("good_ES256"));
    assert_eq!(request(&h), Action::Pause);
    assert_eq!(h.status(), Some(401));
}

#[test]
fn per_provider_certificate_source_overrides() {
    let mut p = provider(json!({}));
    p["client_certificate"] = json!({"source": "xfcc", "trusted_proxies": ["127.0.0.0/8"]});
    let cfg = json!({"providers": {"idp": p}});
    let h = forwarded_request(
        cfg,
        "127.0.0.1:2",
        "x-forwarded-client-cert",
        &xfcc_for("client_a"),
        &token("good_ES256"),
    );
    assert_eq!(h.status(), None);
    assert_eq!(h.header("x-forwarded-client-cert"), None, "stripped");
}

#[test]
fn forwarded_config_errors() {
    for (src, field) in [
        (json!({"source": "xfcc"}), "client_certificate"),
        (
            json!({"source": "header", "encoding": "pem", "trusted_proxies": ["1.2.3.4"]}),
            "client_certificate.name",
        ),
        (
            json!({"source": "header", "name": "x", "trusted_proxies": ["1.2.3.4"]}),
            "client_certificate.encoding",
        ),
        (
            json!({"source": "header", "name": "x", "encoding": "der", "trusted_proxies": ["1.2.3.4"]}),
            "client_certificate.encoding",
        ),
        (
            json!({"source": "xfcc", "trusted_proxies": ["10.0.0.0/99"]}),
            "client_certificate.trusted_proxies[0]",
        ),
        (
            json!({"source": "connection", "trusted_proxies": ["10.0.0.0/8"]}),
            "client_certificate",
        ),
        (json!({"source": "tls"}), "client_certificate.source"),
    ] {
        let e =
            certbound::parse(forwarded_config(src).to_string().as_bytes(), &no_env).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}

// ------------------------------------------------------------------ introspection (RFC 7662)

const OPAQUE: &str = "2YotnFZFEjr1zCsicMWpAA";

fn introspection_config(extra: Value) -> Value {
    let mut p = provider(json!({
        "introspection": {
            "http_uri": {"uri": "https://as.example.com/introspect", "cluster": "as", "timeout": "1s"},
            "client_id": "resource-server",
            "client_secret": {"environment_variable": "INTROSPECTION_SECRET"},
            "cache_duration": "60s"
        }
    }));
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    json!({"providers": {"idp": p}})
}

fn introspection_host(extra: Value) -> FakeHost {
    host()
        .with_json(introspection_config(extra))
        .with_env("INTROSPECTION_SECRET", "s3cr3t:pw")
}

fn active_response(cert: &str, extra: Value) -> String {
    let mut r = json!({
        "active": true,
        "iss": vectors()["issuer"],
        "aud": vectors()["audience"],
        "sub": "client-a",
        "exp": now() + 300,
        "cnf": {"x5t#S256": vectors()["x5t"][cert]}
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            r.as_object_mut().unwrap().remove(k);
        } else {
            r[k] = v.clone();
        }
    }
    r.to_string()
}

/// Starts `token` on stream `id` from client_a, then answers the introspection.
fn introspect_once(
    h: &FakeHost,
    root: &CertboundRoot<FakeHost>,
    id: u32,
    token: &str,
    status: Option<&str>,
    body: &str,
) -> Action {
    let action = start(root, h, id, token);
    if action == Action::Pause && h.response_of(id).is_none() {
        let call = h.http_calls().last().unwrap().token;
        h.answer_with(status, body.as_bytes());
        let mut http = root.create_http_context(id).unwrap();
        let _ = h.clone().on_stream(id);
        http.on_http_call_response(call, 0, body.len(), 0);
    }
    assert_one_response_per_stream(h);
    action
}

#[test]
fn opaque_token_is_introspected_and_bound() {
    let h = introspection_host(json!({}));
    let root = configured_root(&h);
    let action = introspect_once(
        &h,
        &root,
        50,
        OPAQUE,
        Some("200"),
        &active_response("client_a", json!({})),
    );
    assert_eq!(action, Action::Pause);
    assert!(h.resumed(50), "{:?}", h.response_of(50));
    // The request: POST, form body, client_secret_basic.
    let HttpCall {
        cluster, headers, ..
    } = h.http_calls()[0].clone();
    assert_eq!(cluster, "as");
    assert!(headers.contains(&(":method".into(), "POST".into())));
    assert!(headers.contains(&(":path".into(), "/introspect".into())));
    assert!(headers.contains(&(
        "content-type".into(),
        "application/x-www-form-urlencoded".into()
    )));
    let auth = headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .unwrap()
        .1
        .clone();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(decoded, b"resource-server:s3cr3t%3Apw");
    let body = h.http_calls()[0].body.clone().unwrap();
    assert_eq!(
        body,
        format!("token={OPAQUE}&token_type_hint=access_token").into_bytes()
    );
    // Cached: the same token again needs no call.
    assert_eq!(start(&root, &h, 51, OPAQUE), Action::Continue);
    assert_eq!(h.http_calls().len(), 1);
    // The secret is never logged.
    assert!(!h.logs().contains("s3cr3t"));
}

#[test]
fn introspected_binding_and_claims_are_checked() {
    for (extra, cert, reason) in [
        (json!({}), "client_b", "binding_mismatch"),
        (json!({"cnf": null}), "client_a", "missing_binding"),
        (
            json!({"iss": "https://evil.example.com"}),
            "client_a",
            "wrong_issuer",
        ),
        (
            json!({"aud": "https://other.example.com"}),
            "client_a",
            "wrong_audience",
        ),
        (json!({"exp": now() - 120}), "client_a", "expired"),
    ] {
        let h = introspection_host(json!({}));
        let root = configured_root(&h);
        introspect_once(
            &h,
            &root,
            60,
            OPAQUE,
            Some("200"),
            &active_response(cert, extra.clone()),
        );
        let r = h
            .response_of(60)
            .unwrap_or_else(|| panic!("{extra}: allowed"));
        assert_eq!(r.status, 401, "{extra}");
        assert_eq!(
            h.counter(&format!("certbound.denied.{reason}")),
            1,
            "{extra}"
        );
    }
}

#[test]
fn inactive_tokens_are_refused_and_cached() {
    let h = introspection_host(json!({}));
    let root = configured_root(&h);
    introspect_once(&h, &root, 70, OPAQUE, Some("200"), r#"{"active":false}"#);
    let r = h.response_of(70).unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "www-authenticate" && v.contains("token is not active"))
    );
    assert_eq!(start(&root, &h, 71, OPAQUE), Action::Pause);
    assert_eq!(h.response_of(71).map(|r| r.status), Some(401));
    assert_eq!(h.http_calls().len(), 1, "inactive result cached");
}

#[test]
fn introspection_failures_are_401_never_5xx() {
    for (status, body) in [
        (None, ""),
        (Some("500"), "oops"),
        (Some("200"), "<html>"),
        (Some("200"), r#"{"active":"yes"}"#),
    ] {
        let h = introspection_host(json!({}));
        let root = configured_root(&h);
        introspect_once(&h, &root, 80, OPAQUE, status, body);
        let r = h.response_of(80).unwrap();
        assert_eq!(r.status, 401, "{body}");
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "www-authenticate" && v.contains("token introspection failed"))
        );
        assert_eq!(h.counter("certbound.denied.introspection_failed"), 1);
    }
}

#[test]
fn opaque_token_format_introspects_jwts_too() {
    let h = introspection_host(json!({"token_format": "opaque"}));
    let root = configured_root(&h);
    let t = token("good_ES256");
    introspect_once(
        &h,
        &root,
        90,
        &t,
        Some("200"),
        &active_response("client_a", json!({})),
    );
    assert!(h.resumed(90));
    assert_eq!(h.http_calls().len(), 1);
    // Without it, JWTs are verified locally and never introspected.
    let h = introspection_host(json!({}));
    let root = configured_root(&h);
    assert_eq!(start(&root, &h, 91, &t), Action::Continue);
    assert!(h.http_calls().is_empty());
}

#[test]
fn introspection_config_errors() {
    let h = host().with_json(introspection_config(json!({})));
    assert!(!CertboundRoot::new(h.clone()).on_configure(0));
    assert!(
        h.logs()
            .contains("providers.idp.introspection.client_secret.environment_variable")
    );
    let cfg = json!({"providers": {"idp": provider(json!({"token_format": "opaque"}))}});
    let e = certbound::parse(cfg.to_string().as_bytes(), &no_env).unwrap_err();
    assert_eq!(e.field, "providers.idp.introspection");
}

// ------------------------------------------------------------------ bodies of undecided requests

#[test]
fn body_of_a_paused_request_does_not_resume_it() {
    // Envoy continues a stream whose data callback says Continue: while the
    // request waits for keys, its body must be held, or it would go upstream
    // undecided.
    let h = host().with_json(remote_config());
    let mut root = configured_root(&h);
    let h7 = h
        .clone()
        .on_stream(7)
        .with_header(":path", "/upload")
        .with_peer_cert("client_a");
    let h7 = h7.with_bearer(&token("good_ES256"));
    let mut http = root.create_http_context(7).unwrap();
    assert_eq!(http.on_http_request_headers(0, false), Action::Pause);
    assert_eq!(http.on_http_request_body(1024, false), Action::Pause);
    assert_eq!(http.on_http_request_trailers(1), Action::Pause);
    root.on_tick();
    deliver(
        &mut root,
        &h,
        h.http_calls()[0].token,
        Some("200"),
        &jwks("jwks"),
    );
    assert!(h.resumed(7));
    assert_eq!(http.on_http_request_body(1024, true), Action::Continue);
    let _ = h7;
    assert_one_response_per_stream(&h);
}

#[test]
fn body_of_a_denied_request_is_held() {
    let h = base()
        .with_bearer(&token("expired"))
        .with_peer_cert("client_a");
    let mut root = CertboundRoot::new(h.clone());
    assert!(root.on_configure(0));
    let mut http = root.create_http_context(1).unwrap();
    assert_eq!(http.on_http_request_headers(0, false), Action::Pause);
    assert_eq!(h.status(), Some(401));
    assert_eq!(http.on_http_request_body(10, true), Action::Pause);
    assert_one_response_per_stream(&h);
    // An allowed request's body flows.
    let h = base()
        .with_bearer(&token("good_ES256"))
        .with_peer_cert("client_a");
    let mut root = CertboundRoot::new(h.clone());
    assert!(root.on_configure(0));
    let mut http = root.create_http_context(1).unwrap();
    assert_eq!(http.on_http_request_headers(0, false), Action::Continue);
    assert_eq!(http.on_http_request_body(10, true), Action::Continue);
    assert_one_response_per_stream(&h);
}

// ------------------------------------------------------------------ DPoP

/// tests/vectors/dpop/decision.json: DPoP-bound tokens under its own IdP
/// key, and proofs of a GET of its `origin + path` at the vectors' `now`.
fn dpop_vectors() -> &'static Value {
    static V: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    V.get_or_init(|| serde_json::from_str(include_str!("vectors/dpop/decision.json")).unwrap())
}

const METADATA_URL: &str = "https://api.example.com/.well-known/oauth-protected-resource";
const DPOP_ALGS: &str = "ES256 PS256 EdDSA Ed25519";

/// The DPoP vectors' provider with `dpop` as its dpop block, and the API's
/// RFC 9728 metadata.
fn dpop_config(dpop: Value) -> Value {
    json!({
        "providers": {"idp": provider(json!({
            "local_jwks": {"inline_string": dpop_vectors()["jwks"].to_string()},
            "dpop": dpop,
        }))},
        "resource_metadata": {
            "resource": "https://api.example.com",
            "scopes_supported": ["orders:read"],
        },
    })
}

/// A GET of the vectors' URI on stream `id`: `DPoP <token>` and the proof
/// named `proof`, if any.
fn dpop_host(h: &FakeHost, id: u32, token: &str, proof: Option<&str>) -> FakeHost {
    let v = dpop_vectors();
    let mut h = h
        .clone()
        .on_stream(id)
        .with_header(":method", "GET")
        .with_header(":scheme", "https")
        .with_header(":authority", "api.example.com")
        .with_header(":path", v["path"].as_str().unwrap())
        .with_header(
            "authorization",
            &format!("DPoP {}", v["tokens"][token].as_str().unwrap()),
        );
    if let Some(p) = proof {
        h = h.with_header("dpop", v["proofs"][p].as_str().unwrap());
    }
    h
}

fn on_stream(root: &CertboundRoot<FakeHost>, h: &FakeHost, id: u32) -> Action {
    let mut http = root.create_http_context(id).unwrap();
    let action = http.on_http_request_headers(0, true);
    assert_one_response_per_stream(h);
    action
}

fn challenges(r: &certbound::LocalResponse) -> Vec<&str> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn missing_token_challenges_bearer_and_dpop() {
    let h = host()
        .with_json(dpop_config(json!({})))
        .with_header(":method", "GET")
        .with_header(":path", "/api");
    assert_eq!(request(&h), Action::Pause);
    let r = h.response().unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        challenges(&r),
        [
            format!("Bearer resource_metadata=\"{METADATA_URL}\""),
            format!("DPoP algs=\"{DPOP_ALGS}\", resource_metadata=\"{METADATA_URL}\""),
        ]
    );
    assert_eq!(r.header("dpop-nonce"), None);
    assert_eq!(h.counter("certbound.denied.missing_token"), 1);
    // required: only the DPoP challenge.
    let h = host()
        .with_json(dpop_config(
            json!({"required": true, "algorithms": ["ES256"]}),
        ))
        .with_header(":method", "GET")
        .with_header(":path", "/api");
    assert_eq!(request(&h), Action::Pause);
    assert_eq!(
        challenges(&h.response().unwrap()),
        [format!(
            "DPoP algs=\"ES256\", resource_metadata=\"{METADATA_URL}\""
        )]
    );
}

#[test]
fn dpop_proof_is_accepted_once_across_workers() {
    let h = host().with_json(dpop_config(json!({})));
    let a = configured_root(&h);
    let b = configured_root(&h);
    let s1 = dpop_host(&h, 1, "jkt", Some("jkt"));
    assert_eq!(on_stream(&a, &s1, 1), Action::Continue, "{}", h.logs());
    assert_eq!(h.counter("certbound.dpop.accepted"), 1);
    // The same proof on another worker: the shared replay store has it.
    let s2 = dpop_host(&h, 2, "jkt", Some("jkt"));
    assert_eq!(on_stream(&b, &s2, 2), Action::Pause);
    let r = h.response_of(2).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        challenges(&r),
        [
            format!("Bearer resource_metadata=\"{METADATA_URL}\""),
            format!(
                "DPoP algs=\"{DPOP_ALGS}\", error=\"invalid_dpop_proof\", \
                 error_description=\"DPoP proof replayed\", resource_metadata=\"{METADATA_URL}\""
            ),
        ]
    );
    assert_eq!(h.counter("certbound.denied.dpop_replayed"), 1);
    // A new proof of the same key is fine.
    let s3 = dpop_host(&h, 3, "jkt", Some("jkt_again"));
    assert_eq!(on_stream(&b, &s3, 3), Action::Continue);
    assert_eq!(h.counter("certbound.dpop.accepted"), 2);
}

#[test]
fn use_dpop_nonce_answer_carries_a_dpop_nonce() {
    let v = dpop_vectors();
    let secret = v["nonce_secret"].as_str().unwrap();
    let h = host().with_json(dpop_config(json!({"nonce": {"secret": secret}})));
    let root = configured_root(&h);
    let s1 = dpop_host(&h, 1, "jkt", Some("jkt"));
    assert_eq!(on_stream(&root, &s1, 1), Action::Pause);
    let r = h.response_of(1).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        challenges(&r)[1],
        format!(
            "DPoP algs=\"{DPOP_ALGS}\", error=\"use_dpop_nonce\", \
             error_description=\"DPoP proof nonce required\", resource_metadata=\"{METADATA_URL}\""
        )
    );
    let issued = r.header("dpop-nonce").unwrap();
    assert_eq!(issued, v["nonce_now"].as_str().unwrap());
    assert_eq!(issued, certbound::Nonce::issue(secret.as_bytes(), now()));
    assert_eq!(
        r.headers.iter().filter(|(k, _)| k == "dpop-nonce").count(),
        1
    );
    assert_eq!(h.counter("certbound.dpop.nonce_issued"), 1);
    assert_eq!(h.counter("certbound.denied.dpop_nonce_required"), 1);
    // The retry with that nonce.
    let s2 = dpop_host(&h, 2, "jkt", Some("jkt_nonce"));
    assert_eq!(on_stream(&root, &s2, 2), Action::Continue);
    assert_eq!(h.counter("certbound.dpop.accepted"), 1);
    // Other refusals carry no nonce (here: the DPoP scheme, no cnf.jkt).
    let s3 = dpop_host(&h, 3, "unbound", Some("unbound"));
    assert_eq!(on_stream(&root, &s3, 3), Action::Pause);
    assert_eq!(h.response_of(3).unwrap().header("dpop-nonce"), None);
    assert_eq!(h.counter("certbound.dpop.nonce_issued"), 1);
}

#[test]
fn metadata_is_answered_by_the_filter() {
    for method in ["GET", "HEAD"] {
        let h = host()
            .with_json(dpop_config(json!({"required": true})))
            .with_header(":method", method)
            .with_header(":path", "/.well-known/oauth-protected-resource?x=1");
        assert_eq!(request(&h), Action::Pause);
        let r = h.response().unwrap();
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let doc: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            doc,
            json!({
                "resource": "https://api.example.com",
                "authorization_servers": [vectors()["issuer"]],
                "bearer_methods_supported": ["header"],
                "tls_client_certificate_bound_access_tokens": false,
                "dpop_bound_access_tokens_required": true,
                "dpop_signing_alg_values_supported": ["ES256", "PS256", "EdDSA", "Ed25519"],
                "scopes_supported": ["orders:read"],
            })
        );
        assert_eq!(h.counter("certbound.denied"), 0);
        assert_eq!(h.counter("certbound.allowed"), 0);
    }
    // Another method is a request like any other.
    let h = host()
        .with_json(dpop_config(json!({})))
        .with_header(":method", "POST")
        .with_header(":path", "/.well-known/oauth-protected-resource");
    assert_eq!(request(&h), Action::Pause);
    assert_eq!(h.status(), Some(401));
}
