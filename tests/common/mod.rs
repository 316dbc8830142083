//! Shared fixtures of the native tests: the committed vectors
//! (tests/vectors/vectors.json, made by tests/vectors/make_vectors.py) and
//! config builders. Time is always the vectors' fixed `now`.
#![allow(dead_code)]

use certbound::AuthError;
use certbound::KeyRing;
use certbound::Policy;
use certbound::TokenCache;
use certbound::VerifiedToken;
use certbound::{Thumbprint, thumbprint_of_pem};
use serde_json::{Value, json};
use std::sync::OnceLock;

pub fn vectors() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| serde_json::from_str(include_str!("../vectors/vectors.json")).unwrap())
}

pub fn now() -> i64 {
    vectors()["now"].as_i64().unwrap()
}

pub fn token(name: &str) -> String {
    vectors()["tokens"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no token {name}"))
        .to_string()
}

pub fn cert_pem(name: &str) -> String {
    vectors()["certs"][name].as_str().unwrap().to_string()
}

pub fn thumb(name: &str) -> Thumbprint {
    thumbprint_of_pem(cert_pem(name).as_bytes()).unwrap()
}

pub fn jwks(name: &str) -> String {
    vectors()[name].to_string()
}

/// The provider "idp" of the vectors, with `extra` fields merged in.
pub fn provider(extra: Value) -> Value {
    let mut p = json!({
        "issuer": vectors()["issuer"],
        "audiences": [vectors()["audience"]],
        "local_jwks": {"inline_string": jwks("jwks")},
    });
    if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                p.remove(k);
            } else {
                p.insert(k.clone(), v.clone());
            }
        }
    }
    p
}

pub fn no_env(_: &str) -> Option<String> {
    None
}

pub fn policy(cfg: Value) -> Policy {
    certbound::parse(cfg.to_string().as_bytes(), &no_env).unwrap()
}

pub fn simple_policy(extra: Value) -> Policy {
    policy(json!({"providers": {"idp": provider(extra)}}))
}

/// Verifies with the policy's local keys and no cache.
pub fn verify_with(
    p: &Policy,
    t: &str,
    now: i64,
) -> Result<std::sync::Arc<VerifiedToken>, AuthError> {
    let keys = KeyRing::for_policy(p);
    let mut cache = TokenCache::new(0);
    certbound::verify_cached(
        p,
        &keys,
        &mut cache,
        t,
        now,
        certbound::Audiences::OfProvider,
    )
    .map_err(|r| r.error)
}

/// The id of the policy's first provider.
pub fn first_id(p: &Policy) -> certbound::ProviderId {
    p.each_provider().next().unwrap().0
}
