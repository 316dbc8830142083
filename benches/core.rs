//! Micro-benchmarks of certbound's core, natively (x86-64, not wasm/V8):
//! signature verification per algorithm, the thumbprint from PEM, config
//! parsing, the lookups the request path does, and one whole decision.
//!
//!     cargo bench --bench core            # or: make bench-micro
//!
//! Inputs are the committed test vectors (tests/vectors/vectors.json) and
//! their fixed clock `now`, so every run verifies the same tokens.
//!
//! `verify/*` runs with the token cache off (capacity 0): every call checks
//! the signature. `cache/*` times the verified-token cache (`jwt_cache_size`):
//! a hit in a full cache (1000 entries) and `verify::verify` answered from the
//! cache; `thumbprint/cached_hit` the peer-certificate cache keyed by the
//! PEM text. Benchmarks named `proto/...` time an alternative that
//! certbound does not implement: estimates for a design, not its figures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certbound::IntrospectionCache;
use certbound::Policy;
use certbound::RequestHeaders;
use certbound::TokenCache;
use certbound::{Alg, KeyRing};
use certbound::{Decision, Request, Verifier};
use certbound::{Thumbprint, ThumbprintCache, percent_decode, thumbprint_of_pem};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn vectors() -> Value {
    serde_json::from_str(include_str!("../tests/vectors/vectors.json")).unwrap()
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// The config the e2e suite and `make bench` use: one provider, inline JWKS.
fn config_json(v: &Value, jwks_key: &str) -> String {
    json!({
        "providers": {
            "idp": {
                "issuer": v["issuer"],
                "audiences": [v["audience"]],
                "local_jwks": {"inline_string": v[jwks_key].to_string()},
                "forward": true,
            }
        }
    })
    .to_string()
}

fn policy(v: &Value) -> Policy {
    certbound::parse(config_json(v, "jwks").as_bytes(), &no_env).unwrap()
}

/// Envoy hands the certificate URL-encoded (`%0A` for newlines, ...); the
/// e2e suite accepts both. Encode like Envoy's `urlEncodedPemEncodedPeerCertificate`.
fn url_encode(pem: &str) -> String {
    let mut out = String::with_capacity(pem.len() * 2);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bench_verify(c: &mut Criterion) {
    let v = vectors();
    let policy = policy(&v);
    let keys = KeyRing::for_policy(&policy);
    // Capacity 0: the cache never answers, every call checks the signature.
    let mut off = TokenCache::new(0);
    let now = v["now"].as_i64().unwrap();
    let mut g = c.benchmark_group("verify");
    for alg in Alg::ALL {
        let name = format!("good_{}", alg.name());
        let Some(token) = v["tokens"][&name].as_str() else {
            continue;
        };
        // A broken vector must fail the bench, not time an error path.
        certbound::verify_cached(
            &policy,
            &keys,
            &mut off,
            token,
            now,
            certbound::Audiences::OfProvider,
        )
        .unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(alg.name()), token, |b, t| {
            b.iter(|| {
                certbound::verify_cached(
                    &policy,
                    &keys,
                    &mut off,
                    black_box(t),
                    now,
                    certbound::Audiences::OfProvider,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

fn bench_thumbprint(c: &mut Criterion) {
    let v = vectors();
    let pem = v["certs"]["client_a"].as_str().unwrap().to_string();
    let encoded = url_encode(&pem);
    let expected = thumbprint_of_pem(pem.as_bytes()).unwrap();
    assert_eq!(thumbprint_of_pem(encoded.as_bytes()).unwrap(), expected);

    let mut g = c.benchmark_group("thumbprint");
    g.throughput(Throughput::Bytes(pem.len() as u64));
    g.bench_function("of_pem", |b| {
        b.iter(|| thumbprint_of_pem(black_box(pem.as_bytes())).unwrap())
    });
    g.bench_function("of_url_encoded_pem", |b| {
        b.iter(|| thumbprint_of_pem(black_box(encoded.as_bytes())).unwrap())
    });
    // What the filter does per request now: the PEM text is the key.
    let mut certs = ThumbprintCache::default();
    assert_eq!(
        certs.thumbprint_of_pem(encoded.as_bytes()).unwrap(),
        expected
    );
    g.bench_function("cached_hit", |b| {
        b.iter(|| {
            certs
                .thumbprint_of_pem(black_box(encoded.as_bytes()))
                .unwrap()
        })
    });
    g.bench_function("percent_decode_only", |b| {
        b.iter(|| percent_decode(black_box(encoded.as_bytes())).unwrap())
    });
    // The cheaper cache key the issue suggests: SHA-256 of the text Envoy
    // gives, to look the DER thumbprint up instead of re-parsing the PEM.
    g.bench_function("proto/sha256_of_pem_text", |b| {
        b.iter(|| Thumbprint(Sha256::digest(black_box(encoded.as_bytes())).into()))
    });
    // Envoy has validated the chain in the handshake: the DER thumbprint
    // needs only the PEM body decoded, not an X.509 parse.
    assert_eq!(der_thumbprint_without_parse(encoded.as_bytes()), expected);
    g.bench_function("proto/der_sha256_without_x509_parse", |b| {
        b.iter(|| der_thumbprint_without_parse(black_box(encoded.as_bytes())))
    });
    g.finish();
}

/// Prototype: percent-decode, base64-decode the PEM body, SHA-256 the DER.
fn der_thumbprint_without_parse(encoded: &[u8]) -> Thumbprint {
    let text = percent_decode(encoded).unwrap();
    let body: Vec<u8> = text
        .split(|&c| c == b'\n')
        .filter(|line| !line.starts_with(b"-----"))
        .flatten()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    Thumbprint(Sha256::digest(STANDARD.decode(body).unwrap()).into())
}

fn bench_config(c: &mut Criterion) {
    let v = vectors();
    let mut g = c.benchmark_group("config_parse");
    // jwks: RSA-2048 + P-256 + P-384 + Ed25519 (4 keys, RSA imported for 6 algs).
    for (label, jwks_key) in [("4_keys", "jwks"), ("1_es256_key", "single_jwks")] {
        let text = config_json(&v, jwks_key);
        certbound::parse(text.as_bytes(), &no_env).unwrap();
        g.bench_with_input(BenchmarkId::from_parameter(label), &text, |b, t| {
            b.iter(|| certbound::parse(black_box(t.as_bytes()), &no_env).unwrap())
        });
    }
    g.finish();
}

fn bench_cache(c: &mut Criterion) {
    let v = vectors();
    let policy = policy(&v);
    let keys = KeyRing::for_policy(&policy);
    let now = v["now"].as_i64().unwrap();
    let iss = v["issuer"].as_str().unwrap();

    let mut g = c.benchmark_group("lookup");
    g.bench_function("provider_by_issuer", |b| {
        b.iter(|| policy.provider_by_issuer(black_box(iss)).unwrap())
    });
    let id = policy.each_provider().next().unwrap().0;
    let set = keys.get(id).unwrap();
    g.bench_function("key_by_kid/es256", |b| {
        b.iter(|| {
            set.select(black_box(Some("es256")), Alg::ES256, false)
                .unwrap()
        })
    });
    // Run on every request to route opaque tokens to introspection, also
    // when no provider has introspection: base64 + JSON of the JWS header.
    let token = v["tokens"]["good_ES256"].as_str().unwrap();
    assert!(certbound::looks_like_jwt(token));
    g.bench_function("looks_like_jwt/es256", |b| {
        b.iter(|| certbound::looks_like_jwt(black_box(token)))
    });
    g.finish();

    let mut g = c.benchmark_group("cache");
    for alg in [Alg::ES256, Alg::RS256, Alg::EdDSA] {
        let token = v["tokens"][format!("good_{}", alg.name())]
            .as_str()
            .unwrap();
        // A full cache (1000 entries) holding this token.
        let mut cache = TokenCache::new(1000);
        let verified = certbound::verify_cached(
            &policy,
            &keys,
            &mut cache,
            token,
            now,
            certbound::Audiences::OfProvider,
        )
        .unwrap();
        for i in 0..999u32 {
            // 999 other keys of the same length.
            let other = format!("{}{i:04}", &token[..token.len() - 4]);
            cache.insert(&other, verified.clone(), keys.generation(id));
        }
        assert!(cache.get(token, |p| keys.generation(p), now).is_some());
        // A lookup: the slot (hash and compare) and the freshness checks.
        g.bench_function(BenchmarkId::new("get_hit", alg.name()), |b| {
            b.iter(|| {
                cache
                    .get(black_box(token), |p| keys.generation(p), now)
                    .unwrap()
            })
        });
        let hits = cache.hits;
        certbound::verify_cached(
            &policy,
            &keys,
            &mut cache,
            token,
            now,
            certbound::Audiences::OfProvider,
        )
        .unwrap();
        assert_eq!(cache.hits, hits + 1, "verify did not hit the cache");
        g.bench_function(BenchmarkId::new("verify_hit", alg.name()), |b| {
            b.iter(|| {
                certbound::verify_cached(
                    &policy,
                    &keys,
                    &mut cache,
                    black_box(token),
                    now,
                    certbound::Audiences::OfProvider,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

fn bench_decide(c: &mut Criterion) {
    let v = vectors();
    let policy = policy(&v);
    let now = v["now"].as_i64().unwrap();
    let pem = v["certs"]["client_a"].as_str().unwrap();
    let thumb = thumbprint_of_pem(pem.as_bytes()).unwrap();

    let keys = KeyRing::for_policy(&policy);
    let introspection = IntrospectionCache::new(0);
    let mut off = TokenCache::new(0);
    let mut on = TokenCache::new(1000);

    let mut g = c.benchmark_group("decide");
    for alg in [Alg::ES256, Alg::RS256, Alg::EdDSA] {
        let token = v["tokens"][format!("good_{}", alg.name())]
            .as_str()
            .unwrap();
        let headers: RequestHeaders = [
            (":authority".to_string(), "127.0.0.1:10443".to_string()),
            (":path".to_string(), "/".to_string()),
            (":method".to_string(), "GET".to_string()),
            (":scheme".to_string(), "https".to_string()),
            ("user-agent".to_string(), "oha/1".to_string()),
            ("accept".to_string(), "*/*".to_string()),
            ("authorization".to_string(), format!("Bearer {token}")),
            ("x-forwarded-proto".to_string(), "https".to_string()),
            (
                "x-request-id".to_string(),
                "6f1c2e4a-0000-4000-8000-000000000000".to_string(),
            ),
        ]
        .into_iter()
        .collect();
        let req = Request {
            path: "/",
            headers: &headers,
        };
        let allowed = |cache: &mut TokenCache| {
            let mut cert = Some(thumb);
            let verifier = Verifier {
                keys: &keys,
                cache,
                introspection: &introspection,
            };
            matches!(
                certbound::decide(&policy, verifier, req, &mut cert, now),
                Decision::Allow(_)
            )
        };
        assert!(allowed(&mut off));
        assert!(allowed(&mut on)); // now cached
        // Thumbprint already known; the signature checked every time.
        g.bench_function(BenchmarkId::new("cache_off", alg.name()), |b| {
            b.iter(|| {
                let mut cert = Some(thumb);
                let verifier = Verifier {
                    keys: &keys,
                    cache: &mut off,
                    introspection: &introspection,
                };
                certbound::decide(&policy, verifier, black_box(req), &mut cert, now)
            })
        });
        // Thumbprint already known; the verification answered by the cache.
        g.bench_function(BenchmarkId::new("cache_hit", alg.name()), |b| {
            b.iter(|| {
                let mut cert = Some(thumb);
                let verifier = Verifier {
                    keys: &keys,
                    cache: &mut on,
                    introspection: &introspection,
                };
                certbound::decide(&policy, verifier, black_box(req), &mut cert, now)
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    // Short, so `make bench` stays minutes, not tens of minutes, on 2 cores.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_verify, bench_thumbprint, bench_config, bench_cache, bench_decide
}
criterion_main!(benches);
