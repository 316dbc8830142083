//! The hooks driven as Envoy would drive them, against [`fake_envoy`]:
//! in order, out of order, twice, aborted, and with a panic inside.

use std::ffi::CStr;

use super::abi::{self, Callbacks, EnvoyBuffer, HttpFilterConfigModulePtr, HttpFilterModulePtr};
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
    assert_eq!(Callbacks::NAMES.len(), 20);
    let mut names = Callbacks::NAMES.to_vec();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 20, "a callback name is listed twice");
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
    let c = config(&cfg, r#"{"providers": []}"#);
    assert!(!c.is_null());
    let log = fake_envoy::take_log();
    assert!(
        log.iter()
            .any(|(l, m)| *l == abi::LOG_INFO && m.contains("accepted (17 bytes)")),
        "{log:?}"
    );
    envoy_dynamic_module_on_http_filter_config_destroy(c);
    // Destroying null is a no-op.
    envoy_dynamic_module_on_http_filter_config_destroy(core::ptr::null());
}

#[test]
fn configuration_from_null_buffers_is_empty_not_a_crash() {
    fake_envoy::install();
    let null = EnvoyBuffer {
        ptr: core::ptr::null(),
        length: 5,
    };
    let c = envoy_dynamic_module_on_http_filter_config_new(core::ptr::null_mut(), null, null);
    assert!(!c.is_null());
    let cfg = config_ref(c).map(|c| (c.name.clone(), c.raw.len()));
    assert_eq!(cfg, Some((String::new(), 0)));
    envoy_dynamic_module_on_http_filter_config_destroy(c);
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
    let c = config(&cfg, "{}");
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
    assert!(s.calls.borrow().is_empty(), "{:?}", s.calls.borrow());
    assert!(s.replies.borrow().is_empty());
}

#[test]
fn request_headers_twice_decide_once() {
    let cfg = FakeConfig::default();
    let c = config(&cfg, "{}");
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
    let c = config(&cfg, "{}");
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
    let c = config(&cfg, "{}");
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
    let c = config(&cfg, r#"{"a": 1}"#);
    let s = FakeStream::default();
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    envoy_dynamic_module_on_http_filter_config_destroy(c);
    // The stream still holds the configuration.
    // SAFETY: a live filter.
    let raw = unsafe { filter_mut(f) }.map(|f| f.config.raw.clone());
    assert_eq!(raw.as_deref(), Some(&br#"{"a": 1}"#[..]));
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
    let c = config(&cfg, "{}");
    let s = FakeStream::default();
    let f = envoy_dynamic_module_on_http_filter_new(c, s.ptr());
    fake_envoy::take_log();
    let status = guarded(s.ptr(), f, abi::HEADERS_STOP_ITERATION, |_| -> u32 {
        panic!("boom")
    });
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
    let _ = guarded(s.ptr(), f, abi::BODY_STOP_ITERATION_NO_BUFFER, |_| -> u32 {
        panic!("again")
    });
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
