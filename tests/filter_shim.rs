//! The native-test shim: the filter's proxy-wasm root and HTTP contexts,
//! driven under `cargo test` against a fake host that holds the plugin
//! configuration, environment, request headers, connection properties, a
//! fixed clock, and records local responses, header changes and metrics.

// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use certbound::filter::{CertboundRoot, Host};
use common::*;
use proxy_wasm::traits::RootContext;
use proxy_wasm::types::Action;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A local response: status, headers, body.
type LocalResponse = (u32, Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
struct State {
    config: Option<Vec<u8>>,
    env: HashMap<String, String>,
    now: Option<SystemTime>,
    headers: Vec<(String, String)>,
    properties: HashMap<String, Vec<u8>>,
    response: Option<LocalResponse>,
    counters: Vec<(String, u64)>,
    logs: Vec<(log::Level, String)>,
}

#[derive(Clone, Default)]
struct FakeHost(Rc<RefCell<State>>);

impl FakeHost {
    fn new() -> Self {
        let h = FakeHost::default();
        h.0.borrow_mut().now = Some(UNIX_EPOCH + Duration::from_secs(now() as u64));
        h
    }
    fn with_config(self, cfg: Value) -> Self {
        self.0.borrow_mut().config = Some(cfg.to_string().into_bytes());
        self
    }
    fn with_env(self, k: &str, v: &str) -> Self {
        self.0.borrow_mut().env.insert(k.into(), v.into());
        self
    }
    fn with_property(self, path: &[&str], value: &[u8]) -> Self {
        self.0
            .borrow_mut()
            .properties
            .insert(path.join("."), value.to_vec());
        self
    }
    fn with_header(self, k: &str, v: &str) -> Self {
        self.0.borrow_mut().headers.push((k.into(), v.into()));
        self
    }
    fn with_peer_cert(self, name: &str) -> Self {
        let pem = cert_pem(name);
        self.with_property(&["connection", "peer_certificate"], pem.as_bytes())
    }
    fn with_bearer(self, t: &str) -> Self {
        self.with_header("authorization", &format!("Bearer {t}"))
    }
    fn response(&self) -> Option<LocalResponse> {
        self.0.borrow().response.clone()
    }
    fn status(&self) -> Option<u32> {
        self.response().map(|r| r.0)
    }
    fn challenge(&self) -> Option<String> {
        self.response().and_then(|r| {
            r.1.iter()
                .find(|(k, _)| k == "www-authenticate")
                .map(|(_, v)| v.clone())
        })
    }
    fn header(&self, name: &str) -> Option<String> {
        self.0
            .borrow()
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn counter(&self, name: &str) -> u64 {
        self.0
            .borrow()
            .counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }
    fn logs(&self) -> String {
        self.0
            .borrow()
            .logs
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Host for FakeHost {
    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        self.0.borrow().config.clone()
    }
    fn env_var(&self, name: &str) -> Option<String> {
        self.0.borrow().env.get(name).cloned()
    }
    fn now(&self) -> Option<SystemTime> {
        self.0.borrow().now
    }
    fn request_headers(&self) -> Vec<(String, String)> {
        self.0.borrow().headers.clone()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.0.borrow().properties.get(&path.join(".")).cloned()
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut s = self.0.borrow_mut();
        s.headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            s.headers.push((name.into(), v.into()));
        }
    }
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let mut s = self.0.borrow_mut();
        assert!(s.response.is_none(), "two local responses");
        s.response = Some((
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body.to_vec(),
        ));
    }
    fn define_counter(&self, name: &str) -> Option<u32> {
        let mut s = self.0.borrow_mut();
        if let Some(i) = s.counters.iter().position(|(n, _)| n == name) {
            return Some(i as u32);
        }
        s.counters.push((name.into(), 0));
        Some(s.counters.len() as u32 - 1)
    }
    fn increment_counter(&self, id: u32) {
        self.0.borrow_mut().counters[id as usize].1 += 1;
    }
    fn log(&self, level: log::Level, message: &str) {
        self.0.borrow_mut().logs.push((level, message.into()));
    }
}

fn config() -> Value {
    json!({"providers": {"idp": provider(json!({}))}})
}

/// Configures a root on `host` and runs one request through an HTTP context.
fn request(host: &FakeHost) -> Action {
    let mut root = CertboundRoot::new(host.clone());
    assert!(root.on_configure(0), "config refused: {}", host.logs());
    let mut http = root.create_http_context(1).expect("http context");
    http.on_http_request_headers(0, true)
}

fn base() -> FakeHost {
    FakeHost::new()
        .with_config(config())
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
        .with_bearer(&token("good_ES256"));
    h.0.borrow_mut().now = None;
    let action = request(&h);
    assert_eq!(action, Action::Pause);
    assert_eq!(h.status(), Some(401));
}

#[test]
fn when_present_accepts_plain_bearer_tokens() {
    let h = FakeHost::new()
        .with_config(
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
    let h = FakeHost::new()
        .with_config(cfg.clone())
        .with_header(":path", "/public/x")
        .with_header("x-jwt-sub", "admin")
        .with_header("x-client-thumbprint", "forged");
    assert_eq!(request(&h), Action::Continue);
    assert_eq!(h.header("x-jwt-sub"), None);
    assert_eq!(h.header("x-client-thumbprint"), None);
    // On a protected route they are replaced by the verified values.
    let t = token("good_ES256");
    let h = FakeHost::new()
        .with_config(cfg)
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
    let h = FakeHost::new()
        .with_config(cfg)
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
        let h = FakeHost::new();
        h.0.borrow_mut().config = Some(cfg);
        let mut root = CertboundRoot::new(h.clone());
        assert!(!root.on_configure(0));
        assert!(root.create_http_context(1).is_none());
        assert!(h.logs().contains(field), "{}", h.logs());
    }
    let h = FakeHost::new();
    let mut root = CertboundRoot::new(h.clone());
    assert!(!root.on_configure(0), "no configuration at all");
}

#[test]
fn jwks_from_the_vm_environment() {
    let cfg = json!({"providers": {"idp": provider(json!({"local_jwks": {"environment_variable": "CERTBOUND_JWKS"}}))}});
    let h = FakeHost::new()
        .with_config(cfg.clone())
        .with_env("CERTBOUND_JWKS", &jwks("jwks"))
        .with_header(":path", "/")
        .with_peer_cert("client_a")
        .with_bearer(&token("good_EdDSA"));
    assert_eq!(request(&h), Action::Continue);
    let h = FakeHost::new().with_config(cfg);
    assert!(!CertboundRoot::new(h.clone()).on_configure(0));
    assert!(h.logs().contains("CERTBOUND_JWKS"));
}

#[test]
fn skipped_keys_are_logged() {
    let cfg = json!({"providers": {"idp": provider(json!({"local_jwks": {"inline_string": jwks("messy_jwks")}}))}});
    let h = FakeHost::new().with_config(cfg);
    assert!(CertboundRoot::new(h.clone()).on_configure(0));
    let logs = h.logs();
    assert!(logs.contains("RSA modulus under 2048 bits"), "{logs}");
    assert!(logs.contains("duplicate kid"), "{logs}");
}
