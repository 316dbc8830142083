//! DPoP proof verification (RFC 9449 §4.3) against the committed vectors
//! of tests/vectors/dpop (made by make_dpop_vectors.py with Python
//! `cryptography`), with the vectors' fixed clock.

// Test code: panicking on a broken fixture is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use certbound::Alg;
use certbound::Thumbprint;
use certbound::{
    DpopConfig, DpopError, Nonce, NonceConfig, ProofInput, ReplayStore, VerifiedProof, verify_proof,
};

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/dpop/dpop.json")).unwrap()
}

fn nonce_secret(doc: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(doc["nonce_secret"].as_str().unwrap())
        .unwrap()
}

fn config_of(doc: &Value, case: &Value) -> DpopConfig {
    let c = &case["config"];
    DpopConfig {
        required: c["required"].as_bool().unwrap(),
        algorithms: c["algorithms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| Alg::from_name(a.as_str().unwrap()).unwrap())
            .collect(),
        nonce: c["nonce"].as_bool().unwrap().then(|| NonceConfig {
            current: b"a newer secret, after a rotation".to_vec(),
            previous: Some(nonce_secret(doc)),
            lifetime_secs: doc["nonce_lifetime_secs"].as_u64().unwrap(),
        }),
        ..DpopConfig::default()
    }
}

fn run(doc: &Value, case: &Value, now: i64) -> Result<VerifiedProof, DpopError> {
    let proofs: Vec<&str> = case["proofs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let config = config_of(doc, case);
    let token_jkt = case["token_jkt"]
        .as_str()
        .map(|j| Thumbprint::from_x5t_s256(j).unwrap());
    verify_proof(&ProofInput {
        proofs: &proofs,
        method: case["method"].as_str().unwrap(),
        origin: case["origin"].as_str().unwrap(),
        path: case["path"].as_str().unwrap(),
        access_token: case["access_token"].as_str(),
        token_jkt,
        config: &config,
        now,
    })
}

fn case<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn every_vector_yields_its_outcome() {
    let doc = vectors();
    let now = doc["now"].as_i64().unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let expect = case["expect"].as_str().unwrap();
        match run(&doc, case, now) {
            Ok(proof) => {
                assert_eq!(expect, "ok", "{name}: accepted");
                let jkt = case["jkt"].as_str().unwrap();
                assert_eq!(proof.jkt.to_base64url(), jkt, "{name}: thumbprint");
                assert!(proof.jti.starts_with("vector-jti-"), "{name}");
                assert!(proof.iat <= now && proof.iat >= now - 2, "{name}");
                assert!(!proof.refresh_nonce, "{name}");
            }
            Err(e) => {
                assert_eq!(e.reason(), expect, "{name}: {e}");
                assert!(DpopError::REASONS.contains(&e.reason()));
            }
        }
    }
}

#[test]
fn the_time_window_is_max_age_plus_skew() {
    let doc = vectors();
    let now = doc["now"].as_i64().unwrap();
    let valid = case(&doc, "valid_es256");
    let iat = now - 2;
    let config = DpopConfig::default();
    let edge = iat + config.max_age_secs as i64 + config.clock_skew_secs as i64;
    assert!(run(&doc, valid, edge).is_ok());
    assert_eq!(run(&doc, valid, edge + 1).unwrap_err(), DpopError::Stale);
    let early = iat - config.clock_skew_secs as i64;
    assert!(run(&doc, valid, early).is_ok());
    assert_eq!(
        run(&doc, valid, early - 1).unwrap_err(),
        DpopError::IssuedInFuture
    );
}

#[test]
fn a_verified_proof_is_accepted_once() {
    let doc = vectors();
    let now = doc["now"].as_i64().unwrap();
    let config = DpopConfig::default();
    let mut store = ReplayStore::new(1024, config.window_secs());
    for name in ["valid_es256", "valid_ps256", "valid_eddsa"] {
        let proof = run(&doc, case(&doc, name), now).unwrap();
        assert_eq!(
            store.check_and_insert(proof.replay_key, proof.iat, now),
            Ok(())
        );
        let again = run(&doc, case(&doc, name), now + 3).unwrap();
        assert_eq!(
            store.check_and_insert(again.replay_key, again.iat, now + 3),
            Err(DpopError::Replayed),
            "{name}"
        );
    }
    // The store survives the trip through shared data.
    let bytes = store.encode();
    let mut shared = ReplayStore::decode(&bytes, 1024, config.window_secs(), now + 4).unwrap();
    let proof = run(&doc, case(&doc, "valid_es256"), now + 4).unwrap();
    assert_eq!(
        shared.check_and_insert(proof.replay_key, proof.iat, now + 4),
        Err(DpopError::Replayed)
    );
}

#[test]
fn nonces_from_python_and_rust_agree() {
    let doc = vectors();
    let now = doc["now"].as_i64().unwrap();
    let secret = nonce_secret(&doc);
    // The vector's nonce was made by the generator at now - 20.
    let valid = case(&doc, "valid_nonce");
    let proof = valid["proofs"][0].as_str().unwrap();
    let claims = proof.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!(
        claims["nonce"].as_str().unwrap(),
        Nonce::issue(&secret, now - 20)
    );
    // The generator's secret is the previous one in the case's config.
    assert!(run(&doc, valid, now).is_ok());
    let current_only = NonceConfig {
        current: secret,
        previous: None,
        lifetime_secs: 300,
    };
    assert_eq!(
        current_only.verify(claims["nonce"].as_str().unwrap(), now),
        Ok(())
    );
}

#[test]
fn an_old_nonce_asks_for_a_refresh() {
    let doc = vectors();
    let now = doc["now"].as_i64().unwrap();
    let secret = nonce_secret(&doc);
    let config = NonceConfig {
        current: secret.clone(),
        previous: None,
        lifetime_secs: 300,
    };
    let n = Nonce::issue(&secret, now - 200);
    assert_eq!(config.verify(&n, now), Ok(()));
    assert!(config.needs_refresh(&n, now));
    let fresh = config.issue(now);
    assert!(!config.needs_refresh(&fresh, now));
    assert_ne!(fresh, n);
}
