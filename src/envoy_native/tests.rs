//! The hooks driven as Envoy would drive them, against [`fake_envoy`]:
//! in order, out of order, twice, aborted, and with a panic inside.

use std::ffi::CStr;
use std::sync::OnceLock;

use super::abi::{
    self, Callbacks, EnvoyBuffer, EnvoyHttpHeader, HttpFilterConfigModulePtr, HttpFilterModulePtr,
};
use super::fake_envoy::{self, FakeConfig, FakeStream};
use super::*;

fn buf(b: &[u8]) -> EnvoyBuffer {
    EnvoyBuffer {
        ptr: b.as_ptr().cast(),
        length: b.len(),
    }
}

/// A configuration made through the hook, as Envoy makes it.
fn config(cfg: &FakeConfig, json: &str) -> HttpFilterConfigModulePtr {
    fake_envoy::install();
    envoy_dynamic_module_on_http_filter_config_new(
        cfg.ptr(),
        buf(b"certbound"),
        buf(json.as_bytes()),
    )
}

/// The test vectors (tests/vectors/vectors.json).
fn vectors() -> &'static serde_json::Value {
    static V: OnceLock<serde_json::Value> = OnceLock::new();
    V.get_or_init(|| {
        serde_json::from_str(include_str!("../../tests/vectors/vectors.json")).unwrap_or_default()
    })
}

fn token(name: &str) -> String {
    vectors()["tokens"][name]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The vectors' provider "idp", with `extra` fields merged in.
fn provider(extra: serde_json::Value) -> serde_json::Value {
    let mut p = serde_json::json!({
        "issuer": vectors()["issuer"],
        "audiences": [vectors()["audience"]],
        "local_jwks": {"inline_string": vectors()["jwks"].to_string()},
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

/// Every path public: a valid policy that decides without a token.
fn open() -> String {
    serde_json::json!({
        "providers": {"idp": provider(serde_json::json!({}))},
        "rules": [{"match": {"prefix": "/"}}]
    })
    .to_string()
}

/// Every path needs a bound token of "idp".
fn guarded_cfg() -> String {
    serde_json::json!({"providers": {"idp": provider(serde_json::json!({}))}}).to_string()
}

/// This thread's clock at the vectors' `now`.
fn at_vectors_now() {
    after_vectors_now(0);
}

fn phase(filter: HttpFilterModulePtr) -> Phase {
    // SAFETY: a live filter from on_http_filter_new.
    unsafe { filter_mut(filter) }.map_or(Phase::Complete, |f| f.phase)
}

#[test]
fn program_init_returns_the_abi_version_envoy_1_40_matches() {
    fake_envoy::install();
    let v = envoy_dynamic_module_on_program_init();
    assert!(!v.is_null());
    // SAFETY: a NUL-terminated static string.
    assert_eq!(unsafe { CStr::from_ptr(v) }, c"v0.2.0");
}

#[test]
fn every_callback_resolves_by_its_abi_name() {
    // SAFETY: the fake lookup returns each fake callback by its name.
    let cb = unsafe { Callbacks::resolve(fake_envoy::lookup) };
    assert!(cb.is_ok());
    assert_eq!(Callbacks::NAMES.len(), 28);
    let mut names = Callbacks::NAMES.to_vec();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 28, "a callback name is listed twice");
    for name in Callbacks::NAMES {
        assert!(
            name.to_bytes()
                .starts_with(b"envoy_dynamic_module_callback_"),
            "{name:?}"
        );
    }
}

#[test]
fn one_missing_callback_is_named_and_refuses_the_module() {
    let missing = c"envoy_dynamic_module_callback_http_filter_scheduler_delete";
    let lookup = |name: &CStr| {
        if name == missing {
            core::ptr::null_mut()
        } else {
            fake_envoy::lookup(name)
        }
    };
    // SAFETY: as above.
    let r = unsafe { Callbacks::resolve(lookup) };
    assert_eq!(r.err(), Some(missing));
}

#[test]
fn outside_envoy_no_callback_is_found() {
    // The test binary exports no Envoy symbols: dlsym finds none, which is
    // what on_program_init turns into a refusal.
    assert!(dlsym_default(c"envoy_dynamic_module_callback_log").is_null());
    // SAFETY: dlsym_default returns only null here.
    let r = unsafe { Callbacks::resolve(dlsym_default) };
    assert_eq!(r.err(), Some(c"envoy_dynamic_module_callback_log"));
}

#[test]
fn configuration_is_accepted_logged_and_destroyed() {
    let cfg = FakeConfig::default();
    fake_envoy::take_log();
    let json = open();
    let c = config(&cfg, &json);
    assert!(!c.is_null());
    let log = fake_envoy::take_log();
    let accepted = format!("accepted ({} bytes)", json.len());
    assert!(
        log.iter()
            .any(|(l, m)| *l == abi::LOG_INFO && m.contains(&accepted)),
        "{log:?}"
    );
    envoy_dynamic_module_on_http_filter_config_destroy(c);
    // Destroying null is a no-op.
    envoy_dynamic_module_on_http_filter_config_destroy(core::ptr::null());
}

#[test]
fn configuration_from_null_buffers_is_refused_not_a_crash() {
    fake_envoy::install();
    let null = EnvoyBuffer {
        ptr: core::ptr::null(),
        length: 5,
    };
    let c = envoy_dynamic_module_on_http_filter_config_new(core::ptr::null_mut(), null, null);
    assert!(c.is_null());
}

#[test]
fn a_panic_in_configuration_refuses_it() {
    fake_envoy::install();
    fake_envoy::take_log();
    let c = config_guarded(|| panic!("boom"));
    assert!(c.is_null());
    let log = fake_envoy::take_log();
    assert!(log.iter().any(|(l, _)| *l == abi::LOG_CRITICAL), "{log:?}");
}

#[test]
fn a_stream_in_order_continues_and_calls_nothing_else() {
    let cfg = FakeConfig::default();
    let c = config(&cfg, &open());
    let s = FakeStream::with_request_headers(&[(":path", "/"), ("host", "x")]);
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    assert!(!f.is_null());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), f, false),
        abi::HEADERS_CONTINUE
    );
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_body(s.ptr(), f, false),
        abi::BODY_CONTINUE
    );
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_trailers(s.ptr(), f),
        abi::TRAILERS_CONTINUE
    );
    assert_eq!(
        envoy_dynamic_module_on_http_filter_response_headers(s.ptr(), f, false),
        abi::HEADERS_CONTINUE
    );
    assert_eq!(
        envoy_dynamic_module_on_http_filter_response_body(s.ptr(), f, true),
        abi::BODY_CONTINUE
    );
    assert_eq!(
        envoy_dynamic_module_on_http_filter_response_trailers(s.ptr(), f),
        abi::TRAILERS_CONTINUE
    );
    envoy_dynamic_module_on_http_filter_stream_complete(s.ptr(), f);
    assert_eq!(phase(f), Phase::Complete);
    envoy_dynamic_module_on_http_filter_destroy(f);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
    // The request headers were read and the decision counted; nothing
    // else was asked.
    assert_eq!(
        *s.calls.borrow(),
        [
            "http_get_headers_size",
            "http_get_headers",
            "http_filter_increment_counter"
        ],
    );
    assert!(s.replies.borrow().is_empty());
}

#[test]
fn request_headers_twice_decide_once() {
    let cfg = FakeConfig::default();
    let c = config(&cfg, &open());
    let s = FakeStream::default();
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    for _ in 0..2 {
        assert_eq!(
            envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), f, true),
            abi::HEADERS_CONTINUE
        );
    }
    assert_eq!(phase(f), Phase::Request);
    envoy_dynamic_module_on_http_filter_destroy(f);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}

#[test]
fn a_stream_aborted_before_its_headers_is_freed_quietly() {
    let cfg = FakeConfig::default();
    let c = config(&cfg, &open());
    let s = FakeStream::default();
    // Created and destroyed, nothing between.
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    envoy_dynamic_module_on_http_filter_destroy(f);
    // Completed (reset) before any headers, then destroyed.
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    envoy_dynamic_module_on_http_filter_stream_complete(s.ptr(), f);
    envoy_dynamic_module_on_http_filter_destroy(f);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
    assert!(s.replies.borrow().is_empty());
    assert!(s.calls.borrow().is_empty());
}

#[test]
fn headers_after_completion_stop_without_a_reply() {
    let cfg = FakeConfig::default();
    let c = config(&cfg, &open());
    let s = FakeStream::default();
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    envoy_dynamic_module_on_http_filter_stream_complete(s.ptr(), f);
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), f, false),
        abi::HEADERS_STOP_ITERATION
    );
    assert!(s.replies.borrow().is_empty());
    envoy_dynamic_module_on_http_filter_destroy(f);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}

#[test]
fn streams_outlive_a_configuration_destroyed_first() {
    let cfg = FakeConfig::default();
    let json = open();
    let c = config(&cfg, &json);
    let s = FakeStream::default();
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    envoy_dynamic_module_on_http_filter_config_destroy(c);
    // The stream still holds the configuration.
    // SAFETY: a live filter.
    let raw = unsafe { filter_mut(f) }.map(|f| f.config.raw.clone());
    assert_eq!(raw.as_deref(), Some(json.as_bytes()));
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), f, true),
        abi::HEADERS_CONTINUE
    );
    envoy_dynamic_module_on_http_filter_destroy(f);
}

#[test]
fn no_configuration_no_filter() {
    fake_envoy::install();
    let s = FakeStream::default();
    let f = envoy_dynamic_module_on_http_filter_new(core::ptr::null(), s.ptr());
    assert!(f.is_null());
}

#[test]
fn a_hook_without_a_filter_fails_closed_with_a_500() {
    fake_envoy::install();
    let s = FakeStream::default();
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), core::ptr::null(), false),
        abi::HEADERS_STOP_ITERATION
    );
    let replies = s.replies.borrow();
    assert_eq!(replies.len(), 1);
    assert_eq!(replies.first().map(|r| r.status), Some(500));
    // Destroy and complete with null are no-ops.
    envoy_dynamic_module_on_http_filter_stream_complete(s.ptr(), core::ptr::null());
    envoy_dynamic_module_on_http_filter_destroy(core::ptr::null());
}

#[test]
fn a_panic_in_a_stream_hook_sends_one_500_and_stops() {
    let cfg = FakeConfig::default();
    let c = config(&cfg, &open());
    let s = FakeStream::default();
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    fake_envoy::take_log();
    let status = guarded(
        s.ptr(),
        f,
        abi::HEADERS_STOP_ITERATION,
        |_| -> Option<u32> { panic!("boom") },
    );
    assert_eq!(status, abi::HEADERS_STOP_ITERATION);
    assert_eq!(phase(f), Phase::Replied);
    {
        let replies = s.replies.borrow();
        assert_eq!(replies.len(), 1);
        let r = replies.first().map(|r| {
            (
                r.status,
                r.body.clone(),
                r.details.clone(),
                r.headers.clone(),
            )
        });
        assert_eq!(
            r,
            Some((
                500,
                b"certbound: internal error\n".to_vec(),
                b"certbound_internal_error".to_vec(),
                vec![(b"content-type".to_vec(), b"text/plain".to_vec())],
            ))
        );
    }
    let log = fake_envoy::take_log();
    assert!(
        log.iter()
            .any(|(l, m)| *l == abi::LOG_CRITICAL && m.contains("panic"))
    );

    // A second panic on the same stream: no second reply.
    let _ = guarded(
        s.ptr(),
        f,
        abi::BODY_STOP_ITERATION_NO_BUFFER,
        |_| -> Option<u32> { panic!("again") },
    );
    assert_eq!(s.replies.borrow().len(), 1);
    // And the stream stays stopped.
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), f, false),
        abi::HEADERS_STOP_ITERATION
    );
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_body(s.ptr(), f, true),
        abi::BODY_STOP_ITERATION_NO_BUFFER
    );
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_trailers(s.ptr(), f),
        abi::TRAILERS_STOP_ITERATION
    );
    envoy_dynamic_module_on_http_filter_destroy(f);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}

#[test]
fn the_fake_envoy_records_what_the_callbacks_do() {
    // The fake itself, through the table the module would use: headers,
    // attributes, callouts, counters, schedulers.
    fake_envoy::install();
    let Some(cb) = callbacks() else {
        panic!("callbacks not installed")
    };
    let s = FakeStream::with_request_headers(&[("a", "1"), ("a", "2"), ("b", "3")]);
    s.string_attributes.borrow_mut().insert(
        abi::ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST,
        b"00ff".to_vec(),
    );
    let cfg = FakeConfig::default();
    // SAFETY: the fake's own pointers, buffers living across each call.
    unsafe {
        let mut out = EnvoyBuffer {
            ptr: core::ptr::null(),
            length: 0,
        };
        let mut count = 0usize;
        assert!((cb.get_header)(
            s.ptr(),
            abi::REQUEST_HEADER,
            ModuleBuffer::of(b"a"),
            &mut out,
            1,
            &mut count
        ));
        assert_eq!((out.bytes(), count), (&b"2"[..], 2));
        assert_eq!((cb.get_headers_size)(s.ptr(), abi::REQUEST_HEADER), 3);
        assert!((cb.set_header)(
            s.ptr(),
            abi::REQUEST_HEADER,
            ModuleBuffer::of(b"a"),
            ModuleBuffer::NULL
        ));
        assert_eq!((cb.get_headers_size)(s.ptr(), abi::REQUEST_HEADER), 1);

        assert!((cb.get_attribute_string)(
            s.ptr(),
            abi::ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST,
            &mut out
        ));
        assert_eq!(out.bytes(), b"00ff");
        let mut mtls = true;
        assert!(!(cb.get_attribute_bool)(
            s.ptr(),
            abi::ATTR_CONNECTION_MTLS,
            &mut mtls
        ));

        let mut id = 0u64;
        let mut hs = [abi::ModuleHttpHeader {
            key_ptr: b":path".as_ptr().cast(),
            key_length: 5,
            value_ptr: b"/jwks".as_ptr().cast(),
            value_length: 5,
        }];
        let r = (cb.http_callout)(
            s.ptr(),
            &mut id,
            ModuleBuffer::of(b"idp"),
            hs.as_mut_ptr(),
            hs.len(),
            ModuleBuffer::of(b""),
            1500,
        );
        assert_eq!((r, id), (abi::CALLOUT_INIT_SUCCESS, 1));
        assert_eq!(
            s.callouts
                .borrow()
                .first()
                .map(|c| (c.cluster.clone(), c.timeout_ms)),
            Some((b"idp".to_vec(), 1500))
        );

        let mut counter = usize::MAX;
        assert_eq!(
            (cb.define_counter)(
                cfg.ptr(),
                ModuleBuffer::of(b"allowed"),
                core::ptr::null_mut(),
                0,
                &mut counter
            ),
            abi::METRICS_SUCCESS
        );
        (cb.increment_counter)(s.ptr(), counter, core::ptr::null_mut(), 0, 2);
        assert_eq!(s.counters.borrow().get(&counter), Some(&2));

        let sched = (cb.scheduler_new)(s.ptr());
        (cb.scheduler_commit)(sched, 7);
        (cb.scheduler_delete)(sched);
        assert_eq!(*s.committed.borrow(), vec![7]);
        assert_eq!(s.live_schedulers.get(), 0);
    }
}

#[test]
fn logging_goes_through_envoy_at_enabled_levels_only() {
    fake_envoy::install();
    fake_envoy::take_log();
    log(abi::LOG_TRACE, "hidden");
    log(abi::LOG_WARN, "shown");
    assert_eq!(
        fake_envoy::take_log(),
        vec![(abi::LOG_WARN, "shown".to_string())]
    );
}

#[test]
fn send_local_reply_ignores_a_null_stream() {
    fake_envoy::install();
    send_local_reply(core::ptr::null_mut(), 500, b"x", "y");
}

// ------------------------------------------------- the runtime, natively

const CLIENT_A_SHA256: &str = "14bd05d269769ea25a7bbaf2643d9f89171daf01a295c49b1f30d608454f94bf";
const OTHER_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// A stream with a bearer token and a client-certificate digest.
fn bound_stream(t: &str, digest: &str) -> FakeStream {
    let s = FakeStream::with_request_headers(&[
        (":path", "/api"),
        (":method", "GET"),
        (":authority", "api.example.com"),
        ("authorization", &format!("Bearer {t}")),
    ]);
    s.string_attributes.borrow_mut().insert(
        abi::ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST,
        digest.as_bytes().to_vec(),
    );
    s
}

/// A counter's value on `s`, by name.
fn counter(cfg: &FakeConfig, s: &FakeStream, name: &str) -> u64 {
    let defined = cfg.counters_defined.borrow();
    defined
        .iter()
        .position(|n| n == name.as_bytes())
        .and_then(|id| s.counters.borrow().get(&id).copied())
        .unwrap_or(0)
}

/// The same request through the runtime as the wasm build's filter
/// drives it, over the fake proxy-wasm host: its local response, if any.
fn wasm_response(json: &str, t: &str, digest: &str) -> Option<crate::host::fake::LocalResponse> {
    let now = vectors()["now"].as_u64().unwrap_or(0);
    let h = crate::host::fake::FakeHost::new()
        .at_unix(now)
        .with_config(json)
        .with_header(":path", "/api")
        .with_header(":method", "GET")
        .with_header(":authority", "api.example.com")
        .with_header("authorization", &format!("Bearer {t}"))
        .with_property(
            &["connection", "sha256_peer_certificate_digest"],
            digest.as_bytes(),
        );
    let env = |_: &str| None;
    let policy = crate::policy::parse(json.as_bytes(), &env).ok()?;
    let mut vm = Vm::new(&h, policy);
    let _ = vm.process(&h, 1, true);
    h.response()
}

#[test]
fn a_bound_token_with_its_certificate_continues() {
    at_vectors_now();
    let cfg = FakeConfig::default();
    let c = config(&cfg, &guarded_cfg());
    assert!(!c.is_null());
    let s = bound_stream(&token("good_ES256"), CLIENT_A_SHA256);
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), f, true),
        abi::HEADERS_CONTINUE
    );
    assert!(s.replies.borrow().is_empty());
    assert_eq!(counter(&cfg, &s, "certbound.allowed"), 1);
    assert_eq!(counter(&cfg, &s, "certbound.provider.idp.allowed"), 1);
    // forward defaults to false: the token does not go upstream.
    assert!(
        !s.request_headers
            .borrow()
            .iter()
            .any(|(k, _)| k == b"authorization")
    );
    // The keys_loaded gauge, set at configuration.
    let gauges = cfg.gauges_defined.borrow();
    let id = gauges
        .iter()
        .position(|n| n == b"certbound.provider.idp.keys_loaded");
    assert!(id.is_some_and(|id| cfg.gauges.borrow().get(&id).is_some_and(|v| *v > 0)));
    envoy_dynamic_module_on_http_filter_stream_complete(s.ptr(), f);
    envoy_dynamic_module_on_http_filter_destroy(f);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}

#[test]
fn another_certificate_gets_the_wasm_builds_401() {
    at_vectors_now();
    let cfg = FakeConfig::default();
    let json = guarded_cfg();
    let c = config(&cfg, &json);
    let s = bound_stream(&token("good_ES256"), OTHER_SHA256);
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), f, true),
        abi::HEADERS_STOP_ITERATION
    );
    assert_eq!(phase(f), Phase::Replied);
    // Body and trailers of a denied request do not move.
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_body(s.ptr(), f, true),
        abi::BODY_STOP_ITERATION_NO_BUFFER
    );
    let native = s.replies.borrow().first().cloned();
    let wasm = wasm_response(&json, &token("good_ES256"), OTHER_SHA256);
    let native = native.map(|r| {
        (
            r.status,
            r.headers
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect::<Vec<_>>(),
            r.body,
        )
    });
    let wasm = wasm.map(|r| (r.status, r.headers, r.body));
    assert!(native.is_some());
    assert_eq!(native, wasm);
    assert!(native.is_some_and(|(status, headers, _)| {
        status == 401
            && headers
                .iter()
                .any(|(k, v)| k == "www-authenticate" && v.contains("invalid_token"))
    }));
    assert_eq!(counter(&cfg, &s, "certbound.denied"), 1);
    envoy_dynamic_module_on_http_filter_destroy(f);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}

#[test]
fn a_bad_configuration_is_refused_with_the_field_named_error() {
    let cfg = FakeConfig::default();
    fake_envoy::take_log();
    let json = serde_json::json!({
        "providers": {"idp": provider(serde_json::json!({"clock_skew": "forever"}))}
    })
    .to_string();
    let c = config(&cfg, &json);
    assert!(c.is_null());
    let env = |_: &str| None;
    let expected = crate::policy::parse(json.as_bytes(), &env)
        .err()
        .map(|e| format!("certbound: {e}"));
    let log = fake_envoy::take_log();
    assert!(expected.is_some());
    assert!(
        log.iter()
            .any(|(l, m)| *l == abi::LOG_ERROR && Some(m) == expected.as_ref()),
        "{log:?} {expected:?}"
    );
}

#[test]
fn no_filter_config_is_refused_as_empty() {
    let cfg = FakeConfig::default();
    fake_envoy::install();
    fake_envoy::take_log();
    let none = EnvoyBuffer {
        ptr: core::ptr::null(),
        length: 0,
    };
    let c = envoy_dynamic_module_on_http_filter_config_new(cfg.ptr(), buf(b"certbound"), none);
    assert!(c.is_null());
    assert!(config(&cfg, " ").is_null());
    let log = fake_envoy::take_log();
    let empty = log
        .iter()
        .filter(|(l, m)| *l == abi::LOG_ERROR && m.contains("the configuration is empty"))
        .count();
    assert_eq!(empty, 2, "{log:?}");
}

fn remote_cfg(uri: &str) -> String {
    serde_json::json!({"providers": {"idp": provider(serde_json::json!({
        "local_jwks": null,
        "remote_jwks": {
            "http_uri": {"uri": uri, "cluster": "idp_jwks", "timeout": "2s"},
            "cache_duration": "600s",
        }
    }))}})
    .to_string()
}

/// A configuration made through the hook by an Envoy that gives it no
/// scheduler: there is no keeper, and streams fetch keys themselves.
fn config_without_keeper(cfg: &FakeConfig, json: &str) -> HttpFilterConfigModulePtr {
    cfg.no_scheduler.set(true);
    config(cfg, json)
}

/// A configuration-level counter's value, by name.
fn config_counter(cfg: &FakeConfig, name: &str) -> u64 {
    let defined = cfg.counters_defined.borrow();
    defined
        .iter()
        .position(|n| n == name.as_bytes())
        .and_then(|id| cfg.counters.borrow().get(&id).copied())
        .unwrap_or(0)
}

/// This thread's clock, `secs` after the vectors' `now`.
fn after_vectors_now(secs: u64) {
    let now = vectors()["now"].as_u64().unwrap_or(0);
    host::TEST_NOW.with(|t| {
        t.set(Some(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(now + secs),
        ));
    });
}

/// The `:status` header and one body chunk, as Envoy hands an answer over.
fn answer_parts(body: &[u8]) -> ([EnvoyHttpHeader; 1], [EnvoyBuffer; 1]) {
    (
        [EnvoyHttpHeader {
            key_ptr: b":status".as_ptr().cast(),
            key_length: 7,
            value_ptr: b"200".as_ptr().cast(),
            value_length: 3,
        }],
        [buf(body)],
    )
}

/// Answers the configuration's callout `id` with a 200 and `body`.
fn answer_config(cfg: &FakeConfig, c: HttpFilterConfigModulePtr, id: u64, body: &[u8]) {
    let (mut headers, mut chunks) = answer_parts(body);
    keeper::envoy_dynamic_module_on_http_filter_config_http_callout_done(
        cfg.ptr(),
        c,
        id,
        abi::CALLOUT_SUCCESS,
        headers.as_mut_ptr(),
        1,
        chunks.as_mut_ptr(),
        1,
    );
}

/// The tick thread's round at this thread's clock, then the events it
/// committed to `cfg`, delivered on the "main thread" (this one).
fn run_config_events(cfg: &FakeConfig, c: HttpFilterConfigModulePtr) -> usize {
    let handle = config_ref(c).map_or(0, |c| c.scheduler);
    schedulers::tick_config(handle, host::now_ms());
    let events = core::mem::take(&mut *cfg.committed.borrow_mut());
    for &e in &events {
        keeper::envoy_dynamic_module_on_http_filter_config_scheduled(cfg.ptr(), c, e);
    }
    events.len()
}

#[test]
fn the_keeper_fetches_keys_on_the_main_thread_and_streams_take_them_up() {
    at_vectors_now();
    let cfg = FakeConfig::default();
    let c = config(&cfg, &remote_cfg("https://idp.example.com/native-keeper"));
    assert!(!c.is_null());
    assert_eq!(cfg.live_schedulers.get(), 1);
    // A request before any keys: it waits, and starts no fetch itself.
    let t = token("good_ES256");
    let s1 = bound_stream(&t, CLIENT_A_SHA256);
    let f1 = envoy_dynamic_module_on_http_filter_new(c, s1.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s1.ptr(), f1, true),
        abi::HEADERS_STOP_ITERATION
    );
    assert!(s1.callouts.borrow().is_empty());
    // The keeper's first tick is due at once: one fetch, the
    // configuration's, on the main thread.
    assert_eq!(run_config_events(&cfg, c), 1);
    let callouts = cfg.callouts.borrow().clone();
    assert_eq!(callouts.len(), 1);
    assert_eq!(callouts[0].cluster, b"idp_jwks");
    assert!(
        callouts[0]
            .headers
            .iter()
            .any(|(k, v)| k == b":path" && v == b"/native-keeper")
    );
    // Another event while it is in flight starts no second fetch.
    keeper::envoy_dynamic_module_on_http_filter_config_scheduled(cfg.ptr(), c, 2);
    assert_eq!(cfg.callouts.borrow().len(), 1);
    answer_config(&cfg, c, 1, vectors()["jwks"].to_string().as_bytes());
    assert_eq!(
        config_counter(&cfg, "certbound.provider.idp.jwks_fetch_success"),
        1
    );
    // The waiting stream takes the keys up on its next tick and goes on.
    after_vectors_now(1);
    envoy_dynamic_module_on_http_filter_scheduled(s1.ptr(), f1, schedulers::EVENT_TICK);
    assert_eq!(s1.continued_decoding.get(), 1);
    assert!(s1.replies.borrow().is_empty());
    // A new stream decides at once.
    let s2 = bound_stream(&t, CLIENT_A_SHA256);
    let f2 = envoy_dynamic_module_on_http_filter_new(c, s2.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s2.ptr(), f2, true),
        abi::HEADERS_CONTINUE
    );
    // No traffic: no fetch until 90% of cache_duration (600 s); the
    // keeper looks at least every minute.
    after_vectors_now(500);
    assert_eq!(run_config_events(&cfg, c), 1);
    assert_eq!(cfg.callouts.borrow().len(), 1);
    // Then it refreshes, with no request to carry the fetch.
    after_vectors_now(541);
    assert_eq!(run_config_events(&cfg, c), 1);
    assert_eq!(cfg.callouts.borrow().len(), 2);
    assert!(s2.callouts.borrow().is_empty());
    for (s, f) in [(&s1, f1), (&s2, f2)] {
        envoy_dynamic_module_on_http_filter_stream_complete(s.ptr(), f);
        envoy_dynamic_module_on_http_filter_destroy(f);
    }
    // The configuration's scheduler goes with it; a late answer to its
    // callout (Envoy cancels them) would find no configuration.
    envoy_dynamic_module_on_http_filter_config_destroy(c);
    assert_eq!(cfg.live_schedulers.get(), 0);
}

#[test]
fn a_keeper_fetch_that_fails_is_retried_on_the_main_thread() {
    at_vectors_now();
    let cfg = FakeConfig::default();
    let c = config(
        &cfg,
        &remote_cfg("https://idp.example.com/native-keeper-retry"),
    );
    assert_eq!(run_config_events(&cfg, c), 1);
    keeper::envoy_dynamic_module_on_http_filter_config_http_callout_done(
        cfg.ptr(),
        c,
        1,
        abi::CALLOUT_RESET,
        core::ptr::null_mut(),
        0,
        core::ptr::null_mut(),
        0,
    );
    assert_eq!(
        config_counter(&cfg, "certbound.provider.idp.jwks_fetch_failed"),
        1
    );
    // An answer to a callout it does not have is ignored.
    answer_config(&cfg, c, 42, b"{}");
    assert_eq!(
        config_counter(&cfg, "certbound.provider.idp.jwks_fetch_success"),
        0
    );
    // After the backoff the keeper tries again, by itself.
    after_vectors_now(1);
    assert_eq!(run_config_events(&cfg, c), 1);
    assert_eq!(cfg.callouts.borrow().len(), 2);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
    assert_eq!(cfg.live_schedulers.get(), 0);
}

#[test]
fn a_configuration_with_local_keys_has_no_keeper() {
    let cfg = FakeConfig::default();
    let c = config(&cfg, &guarded_cfg());
    assert!(!c.is_null());
    assert_eq!(cfg.live_schedulers.get(), 0);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}

/// Answers the stream's callout `id` with a 200 and `body`.
fn answer(s: &FakeStream, f: HttpFilterModulePtr, id: u64, body: &[u8]) {
    let (mut headers, mut chunks) = answer_parts(body);
    envoy_dynamic_module_on_http_filter_http_callout_done(
        s.ptr(),
        f,
        id,
        abi::CALLOUT_SUCCESS,
        headers.as_mut_ptr(),
        1,
        chunks.as_mut_ptr(),
        1,
    );
}

#[test]
fn without_a_keeper_streams_carry_the_fetch_and_wait_for_it() {
    at_vectors_now();
    let cfg = FakeConfig::default();
    let c = config_without_keeper(&cfg, &remote_cfg("https://idp.example.com/native-pause"));
    assert!(!c.is_null());
    let t = token("good_ES256");
    // The first stream carries the fetch and waits.
    let s1 = bound_stream(&t, CLIENT_A_SHA256);
    let f1 = envoy_dynamic_module_on_http_filter_new(c, s1.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s1.ptr(), f1, true),
        abi::HEADERS_STOP_ITERATION
    );
    let callout = s1.callouts.borrow().first().cloned();
    assert!(callout.as_ref().is_some_and(|c| c.cluster == b"idp_jwks"));
    // Its body is held while it waits.
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_body(s1.ptr(), f1, false),
        abi::BODY_STOP_ITERATION_AND_BUFFER
    );
    // A second stream waits too (the fetch is in flight), with a scheduler.
    let s2 = bound_stream(&t, CLIENT_A_SHA256);
    let f2 = envoy_dynamic_module_on_http_filter_new(c, s2.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s2.ptr(), f2, true),
        abi::HEADERS_STOP_ITERATION
    );
    assert!(s2.callouts.borrow().is_empty());
    assert_eq!(s2.live_schedulers.get(), 1);
    // The keys arrive on the first stream: it resumes there, and the
    // second is woken through its scheduler.
    answer(&s1, f1, 1, vectors()["jwks"].to_string().as_bytes());
    assert_eq!(s1.continued_decoding.get(), 1);
    assert!(s1.replies.borrow().is_empty());
    assert_eq!(*s2.committed.borrow(), [schedulers::EVENT_WAKE]);
    assert_eq!(s2.continued_decoding.get(), 0);
    envoy_dynamic_module_on_http_filter_scheduled(s2.ptr(), f2, schedulers::EVENT_WAKE);
    assert_eq!(s2.continued_decoding.get(), 1);
    assert!(s2.replies.borrow().is_empty());
    // A duplicate event does nothing more.
    envoy_dynamic_module_on_http_filter_scheduled(s2.ptr(), f2, schedulers::EVENT_WAKE);
    assert_eq!(s2.continued_decoding.get(), 1);
    assert_eq!(
        counter(&cfg, &s1, "certbound.provider.idp.jwks_fetch_success"),
        1
    );
    for (s, f) in [(&s1, f1), (&s2, f2)] {
        envoy_dynamic_module_on_http_filter_stream_complete(s.ptr(), f);
        envoy_dynamic_module_on_http_filter_destroy(f);
    }
    assert_eq!(s2.live_schedulers.get(), 0);
    // A third stream decides at once with the keys now shared.
    let s3 = bound_stream(&t, CLIENT_A_SHA256);
    let f3 = envoy_dynamic_module_on_http_filter_new(c, s3.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s3.ptr(), f3, true),
        abi::HEADERS_CONTINUE
    );
    envoy_dynamic_module_on_http_filter_destroy(f3);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}

#[test]
fn a_stream_aborted_while_it_carries_the_fetch_leaves_no_one_hanging() {
    at_vectors_now();
    let cfg = FakeConfig::default();
    let c = config_without_keeper(&cfg, &remote_cfg("https://idp.example.com/native-abort"));
    let t = token("good_ES256");
    let s1 = bound_stream(&t, CLIENT_A_SHA256);
    let f1 = envoy_dynamic_module_on_http_filter_new(c, s1.ptr());
    let s2 = bound_stream(&t, CLIENT_A_SHA256);
    let f2 = envoy_dynamic_module_on_http_filter_new(c, s2.ptr());
    for (s, f) in [(&s1, f1), (&s2, f2)] {
        assert_eq!(
            envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), f, true),
            abi::HEADERS_STOP_ITERATION
        );
    }
    assert_eq!(s1.callouts.borrow().len(), 1);
    // The client of the first stream goes: Envoy cancels its callout.
    envoy_dynamic_module_on_http_filter_stream_complete(s1.ptr(), f1);
    envoy_dynamic_module_on_http_filter_destroy(f1);
    assert_eq!(s1.live_schedulers.get(), 0);
    assert!(s1.replies.borrow().is_empty());
    // The fetch counts as failed, and the other stream is woken to be
    // decided without keys, as when a fetch fails.
    assert_eq!(*s2.committed.borrow(), [schedulers::EVENT_WAKE]);
    envoy_dynamic_module_on_http_filter_scheduled(s2.ptr(), f2, schedulers::EVENT_WAKE);
    let status = s2.replies.borrow().first().map(|r| r.status);
    assert_eq!(status, Some(401));
    assert_eq!(phase(f2), Phase::Replied);
    // A late answer for a callout the stream no longer has is ignored.
    answer(&s2, f2, 99, b"{}");
    assert_eq!(s2.replies.borrow().len(), 1);
    envoy_dynamic_module_on_http_filter_destroy(f2);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}

#[test]
fn changed_request_headers_clear_the_route_cache() {
    at_vectors_now();
    let cfg = FakeConfig::default();
    let json = serde_json::json!({"providers": {"idp": provider(serde_json::json!({
        "thumbprint_header": "x-client-thumbprint"
    }))}})
    .to_string();
    let c = config(&cfg, &json);
    let s = bound_stream(&token("good_ES256"), CLIENT_A_SHA256);
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(s.ptr(), f, true),
        abi::HEADERS_CONTINUE
    );
    assert!(
        s.request_headers
            .borrow()
            .iter()
            .any(|(k, _)| k == b"x-client-thumbprint")
    );
    assert!(s.calls.borrow().contains(&"http_clear_route_cache"));
    envoy_dynamic_module_on_http_filter_destroy(f);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}

/// More headers than the stack holds: every one is still read, so a token
/// past the 32nd header counts, and so does a second copy.
#[test]
fn every_header_of_a_long_map_is_read() {
    at_vectors_now();
    let cfg = FakeConfig::default();
    let c = config(&cfg, &guarded_cfg());
    // Forty headers ahead of the token, and maybe a second token after it.
    let stream = |second: Option<String>| {
        let s = bound_stream(&token("good_ES256"), CLIENT_A_SHA256);
        let mut headers = s.request_headers.borrow_mut();
        let at = headers
            .iter()
            .position(|(k, _)| k == b"authorization")
            .unwrap_or(0);
        let filler = (0..40).map(|i| (format!("x-filler-{i}").into_bytes(), b"v".to_vec()));
        headers.splice(at..at, filler);
        if let Some(t) = second {
            headers.push((
                b"authorization".to_vec(),
                format!("Bearer {t}").into_bytes(),
            ));
        }
        drop(headers);
        s
    };
    let one = stream(None);
    let f = envoy_dynamic_module_on_http_filter_new(c, one.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(one.ptr(), f, true),
        abi::HEADERS_CONTINUE
    );
    envoy_dynamic_module_on_http_filter_destroy(f);
    let two = stream(Some(token("good_RS256")));
    let f = envoy_dynamic_module_on_http_filter_new(c, two.ptr());
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(two.ptr(), f, true),
        abi::HEADERS_STOP_ITERATION
    );
    assert_eq!(two.replies.borrow().first().map(|r| r.status), Some(400));
    envoy_dynamic_module_on_http_filter_destroy(f);
    envoy_dynamic_module_on_http_filter_config_destroy(c);
}
