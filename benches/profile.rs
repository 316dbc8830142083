//! Per-request cost accounting of the filter, natively: host calls and heap
//! allocations of one `on_http_request_headers`, driven through the
//! filter's public `Host` trait with [`FakeHost`], which counts host calls
//! and the bytes copied in (the fake host the native tests use).
//! Deterministic counts, not times.
//!
//!     cargo bench --bench profile                 # the table
//!     cargo bench --bench profile -- --loop 2000  # N requests, for callgrind
//!
//! `make bench-profile` runs the table and a callgrind profile of `--loop`.
//! Host calls counted here are the ones certbound makes through `Host`;
//! the proxy-wasm SDK's own calls around a context (create, done, log,
//! delete) are the same for every filter and are in the (w) floor.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use certbound::IntrospectionCache;
use certbound::KeyRing;
use certbound::Request;
use certbound::RequestHeaders;
use certbound::TokenCache;
use certbound::Verifier;
use certbound::{CertboundRoot, FakeHost};
use certbound::{ThumbprintCache, thumbprint_of_pem};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::Action;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Counting allocator.
// ---------------------------------------------------------------------------

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> (u64, u64) {
    (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// Allocations and bytes requested by `f`, averaged over `n` runs.
fn per_call<R>(n: u64, mut f: impl FnMut() -> R) -> (f64, f64) {
    std::hint::black_box(f()); // warm: lazies, first-use growth
    let (a0, b0) = allocs();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    let (a1, b1) = allocs();
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

// ---------------------------------------------------------------------------
// Fixtures: the committed vectors.
// ---------------------------------------------------------------------------

fn vectors() -> Value {
    serde_json::from_str(include_str!("../tests/vectors/vectors.json")).unwrap()
}

fn config_json(v: &Value, jwt_cache_size: usize) -> String {
    json!({
        "providers": {
            "idp": {
                "issuer": v["issuer"],
                "audiences": [v["audience"]],
                "local_jwks": {"inline_string": v["jwks"].to_string()},
                "forward": true,
            }
        },
        "jwt_cache_size": jwt_cache_size,
    })
    .to_string()
}

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

fn headers(token: &str) -> Vec<(String, String)> {
    [
        (":authority", "127.0.0.1:10443"),
        (":path", "/"),
        (":method", "GET"),
        (":scheme", "https"),
        ("user-agent", "oha/1"),
        ("accept", "*/*"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "6f1c2e4a-0000-4000-8000-000000000000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("authorization".to_string(), format!("Bearer {token}"))])
    .collect()
}

/// A configured root context on its own fake host.
fn root(v: &Value, jwt_cache_size: usize) -> (CertboundRoot<FakeHost>, FakeHost) {
    let host = FakeHost::new()
        .at_unix(v["now"].as_u64().unwrap())
        .with_config(config_json(v, jwt_cache_size));
    let mut root = CertboundRoot::new(host.clone());
    assert!(root.on_configure(0), "configuration refused");
    (root, host)
}

/// Makes stream `id` the one host calls act on: client_a's connection
/// (`cert` and Envoy's digest of it) and a request bearing `token`.
fn stream(host: &FakeHost, id: u32, v: &Value, cert: &[u8], token: &str) {
    let digest = v["sha256_hex"]["client_a"].as_str().unwrap();
    let _ = host
        .clone()
        .on_stream(id)
        .with_property(&["connection", "peer_certificate"], cert)
        .with_property(
            &["connection", "sha256_peer_certificate_digest"],
            digest.as_bytes(),
        )
        .with_headers(headers(token));
}

/// One request through the filter, as Envoy drives it: a new HTTP context,
/// its request headers, then done.
fn request(root: &CertboundRoot<FakeHost>, id: &mut u32) {
    *id += 1;
    let mut http = root.http_context(*id).unwrap();
    let action = http.on_http_request_headers(0, true);
    assert!(matches!(action, Action::Continue), "request denied");
    http.on_done();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let loop_n: Option<u64> = flag("--loop").and_then(|n| n.parse().ok());
    let alg = flag("--alg").unwrap_or_else(|| "ES256".to_string());
    let cache_size: usize = flag("--jwt-cache-size")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);

    let v = vectors();
    let pem = v["certs"]["client_a"].as_str().unwrap();
    let encoded = url_encode(pem);
    let token_of = |alg: &str| -> String {
        v["tokens"][format!("good_{alg}")]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut id = 0u32;

    if let Some(n) = loop_n {
        // For callgrind: configure once, then N requests.
        let (root, host) = root(&v, cache_size);
        stream(&host, 1, &v, encoded.as_bytes(), &token_of(&alg));
        for _ in 0..n {
            request(&root, &mut id);
        }
        println!("ran {n} {alg} requests, jwt_cache_size {cache_size}");
        return;
    }

    println!("certbound per-request accounting (native, counting host; not wasm/V8)");
    println!("Host calls are certbound's own; allocations include the copies a host");
    println!("hands over (headers, certificate), as the proxy-wasm SDK makes them.");
    println!();
    for cache_size in [0usize, 1000] {
        let (root, host) = root(&v, cache_size);
        for (n, alg) in (1..).zip(["ES256", "RS256", "EdDSA"]) {
            stream(&host, n, &v, encoded.as_bytes(), &token_of(alg));
            request(&root, &mut id); // warm: certificate and token caches
            host.reset_counts();
            request(&root, &mut id);
            let (calls, bytes_in) = (host.calls(), host.bytes_in());
            let total: u64 = calls.values().sum();
            let listed: Vec<String> = calls.iter().map(|(k, n)| format!("{n}× {k}")).collect();
            let (a, b) = per_call(200, || request(&root, &mut id));
            println!(
                "jwt_cache_size {cache_size:>4}, {alg:5}: {total} host calls ({}), {bytes_in} bytes in; {a:.1} allocations ({b:.0} bytes) per request",
                listed.join(", ")
            );
        }
    }
    println!();

    // Allocations by stage, ES256.
    let policy = certbound::parse(config_json(&v, 1000).as_bytes(), &|_: &str| None).unwrap();
    let keys = KeyRing::for_policy(&policy);
    let introspection = IntrospectionCache::new(0);
    let mut off = TokenCache::new(0);
    let mut on = TokenCache::new(1000);
    let token = token_of("ES256");
    let hs: RequestHeaders = headers(&token).into_iter().collect();
    let thumb = thumbprint_of_pem(encoded.as_bytes()).unwrap();
    let mut certs = ThumbprintCache::default();
    let now = v["now"].as_i64().unwrap();
    let decide = |cache: &mut TokenCache| {
        let mut c = Some(thumb);
        certbound::decide(
            &policy,
            Verifier {
                keys: &keys,
                cache,
                introspection: &introspection,
            },
            Request {
                path: "/",
                headers: &hs,
            },
            &mut c,
            now,
        )
    };
    let rows: Vec<(&str, (f64, f64))> = vec![
        (
            "decide, ES256, cache off, thumbprint known",
            per_call(200, || decide(&mut off)),
        ),
        (
            "decide, ES256, cache hit, thumbprint known",
            per_call(200, || decide(&mut on)),
        ),
        (
            "verify::verify, ES256, cache off",
            per_call(200, || {
                certbound::verify_cached(
                    &policy,
                    &keys,
                    &mut TokenCache::new(0),
                    &token,
                    now,
                    certbound::Audiences::OfProvider,
                )
                .unwrap()
            }),
        ),
        (
            "thumbprint_of_pem (URL-encoded PEM), uncached",
            per_call(200, || thumbprint_of_pem(encoded.as_bytes()).unwrap()),
        ),
        (
            "ThumbprintCache hit (URL-encoded PEM)",
            per_call(200, || certs.thumbprint_of_pem(encoded.as_bytes()).unwrap()),
        ),
        (
            "certbound::parse (4-key JWKS), once per on_configure",
            per_call(20, || {
                certbound::parse(config_json(&v, 1000).as_bytes(), &|_: &str| None).unwrap()
            }),
        ),
    ];
    println!("allocations by stage (native):");
    for (name, (a, b)) in rows {
        println!("    {a:>8.1} allocs {b:>9.0} bytes  {name}");
    }
}
