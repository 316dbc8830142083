//! A fake Envoy for the unit tests: every callback in [`Callbacks`],
//! written in Rust, recording what the module asks for.
//!
//! Envoy passes the module opaque pointers and takes them back in each
//! callback. Here the stream pointer is the address of a test's
//! [`FakeStream`] and the configuration pointer that of a [`FakeConfig`],
//! so every test has its own state and tests run in parallel. Only the log
//! (which carries no pointer) is per thread.

use core::ffi::c_void;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;

use super::abi::{
    self, AttributeId, Callbacks, EnvoyBuffer, EnvoyHttpHeader, HeaderType,
    HttpFilterConfigEnvoyPtr, HttpFilterConfigSchedulerPtr, HttpFilterEnvoyPtr,
    HttpFilterSchedulerPtr, LogLevel, ModuleBuffer, ModuleHttpHeader,
};

pub type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// A local reply the module sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub details: Vec<u8>,
}

/// A callout the module started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callout {
    pub id: u64,
    pub cluster: Vec<u8>,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// One stream as Envoy would hold it.
#[derive(Default)]
pub struct FakeStream {
    /// Callback names, in call order.
    pub calls: RefCell<Vec<&'static str>>,
    pub request_headers: RefCell<Headers>,
    pub response_headers: RefCell<Headers>,
    pub replies: RefCell<Vec<Reply>>,
    pub continued_decoding: Cell<u32>,
    pub continued_encoding: Cell<u32>,
    pub string_attributes: RefCell<HashMap<AttributeId, Vec<u8>>>,
    pub bool_attributes: RefCell<HashMap<AttributeId, bool>>,
    pub int_attributes: RefCell<HashMap<AttributeId, u64>>,
    pub callouts: RefCell<Vec<Callout>>,
    /// What the next callout returns (`CALLOUT_INIT_SUCCESS` by default).
    pub callout_init_result: Cell<abi::CalloutInitResult>,
    pub counters: RefCell<HashMap<usize, u64>>,
    pub gauges: RefCell<HashMap<usize, u64>>,
    /// Schedulers created and not yet deleted.
    pub live_schedulers: Cell<u32>,
    /// Event ids committed, in order.
    pub committed: RefCell<Vec<u64>>,
}

impl FakeStream {
    pub fn with_request_headers(headers: &[(&str, &str)]) -> FakeStream {
        let s = FakeStream::default();
        *s.request_headers.borrow_mut() = headers
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        s
    }

    /// The pointer Envoy would pass as `filter_envoy_ptr`.
    pub fn ptr(&self) -> HttpFilterEnvoyPtr {
        (self as *const FakeStream).cast_mut().cast()
    }

    fn record(&self, name: &'static str) {
        self.calls.borrow_mut().push(name);
    }

    fn map(&self, header_type: HeaderType) -> Option<&RefCell<Headers>> {
        match header_type {
            abi::REQUEST_HEADER => Some(&self.request_headers),
            abi::RESPONSE_HEADER => Some(&self.response_headers),
            _ => None,
        }
    }
}

/// A filter configuration as Envoy would hold it.
#[derive(Default)]
pub struct FakeConfig {
    pub counters_defined: RefCell<Vec<Vec<u8>>>,
    pub counters: RefCell<HashMap<usize, u64>>,
    pub gauges_defined: RefCell<Vec<Vec<u8>>>,
    pub gauges: RefCell<HashMap<usize, u64>>,
    /// Callouts the configuration started (on the main thread).
    pub callouts: RefCell<Vec<Callout>>,
    /// Schedulers created and not yet deleted.
    pub live_schedulers: Cell<u32>,
    /// Event ids committed, in order.
    pub committed: RefCell<Vec<u64>>,
    /// `config_scheduler_new` returns null (an Envoy without it).
    pub no_scheduler: Cell<bool>,
}

impl FakeConfig {
    /// The pointer Envoy would pass as `filter_config_envoy_ptr`.
    pub fn ptr(&self) -> HttpFilterConfigEnvoyPtr {
        (self as *const FakeConfig).cast_mut().cast()
    }
}

/// A scheduler handle: the stream it was made for.
struct FakeScheduler {
    stream: *const FakeStream,
}

/// A configuration's scheduler handle: the configuration it was made for.
struct FakeConfigScheduler {
    config: *const FakeConfig,
}

thread_local! {
    /// Log lines of this thread, with their level.
    pub static LOG: RefCell<Vec<(LogLevel, String)>> = const { RefCell::new(Vec::new()) };
}

/// The log lines recorded on this thread so far (and forgets them).
pub fn take_log() -> Vec<(LogLevel, String)> {
    LOG.with(|l| core::mem::take(&mut *l.borrow_mut()))
}

// The pointers the module passes are valid for the call (the module's
// side of the contract); these helpers turn them into Rust values.

unsafe fn stream<'a>(p: HttpFilterEnvoyPtr) -> &'a FakeStream {
    // SAFETY: every stream pointer in the tests is a live FakeStream.
    unsafe { &*p.cast::<FakeStream>() }
}

unsafe fn config<'a>(p: HttpFilterConfigEnvoyPtr) -> &'a FakeConfig {
    // SAFETY: every configuration pointer in the tests is a live FakeConfig.
    unsafe { &*p.cast::<FakeConfig>() }
}

unsafe fn bytes(b: ModuleBuffer) -> Vec<u8> {
    if b.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the module's buffer for this call.
    unsafe { core::slice::from_raw_parts(b.ptr.cast::<u8>(), b.length) }.to_vec()
}

unsafe fn headers(p: *const ModuleHttpHeader, n: usize) -> Headers {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: the module's array for this call.
    let hs = unsafe { core::slice::from_raw_parts(p, n) };
    hs.iter()
        .map(|h| unsafe {
            (
                bytes(ModuleBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                }),
                bytes(ModuleBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                }),
            )
        })
        .collect()
}

fn envoy_buffer(v: &[u8]) -> EnvoyBuffer {
    EnvoyBuffer {
        ptr: v.as_ptr().cast(),
        length: v.len(),
    }
}

unsafe extern "C" fn log(level: LogLevel, message: ModuleBuffer) {
    // SAFETY: the module's buffer for this call.
    let m = String::from_utf8_lossy(&unsafe { bytes(message) }).into_owned();
    LOG.with(|l| l.borrow_mut().push((level, m)));
}

unsafe extern "C" fn log_enabled(level: LogLevel) -> bool {
    level >= abi::LOG_DEBUG
}

unsafe extern "C" fn get_header(
    s: HttpFilterEnvoyPtr,
    header_type: HeaderType,
    key: ModuleBuffer,
    result: *mut EnvoyBuffer,
    index: usize,
    optional_size: *mut usize,
) -> bool {
    // SAFETY: a FakeStream, the module's buffers.
    let (s, key) = unsafe { (stream(s), bytes(key)) };
    s.record("http_get_header");
    let Some(map) = s.map(header_type) else {
        return false;
    };
    let map = map.borrow();
    let values: Vec<&Vec<u8>> = map
        .iter()
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .collect();
    let found = values.get(index).map_or(
        EnvoyBuffer {
            ptr: core::ptr::null(),
            length: 0,
        },
        |v| envoy_buffer(v),
    );
    // SAFETY: the module's out-pointers (optional_size may be null).
    unsafe {
        *result = found;
        if let Some(n) = optional_size.as_mut() {
            *n = values.len();
        }
    }
    true
}

unsafe extern "C" fn get_headers_size(s: HttpFilterEnvoyPtr, header_type: HeaderType) -> usize {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_get_headers_size");
    s.map(header_type).map_or(0, |m| m.borrow().len())
}

unsafe extern "C" fn get_headers(
    s: HttpFilterEnvoyPtr,
    header_type: HeaderType,
    out: *mut EnvoyHttpHeader,
) -> bool {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_get_headers");
    let Some(map) = s.map(header_type) else {
        return false;
    };
    for (i, (k, v)) in map.borrow().iter().enumerate() {
        // SAFETY: the module sized `out` with get_headers_size.
        unsafe {
            *out.add(i) = EnvoyHttpHeader {
                key_ptr: k.as_ptr().cast(),
                key_length: k.len(),
                value_ptr: v.as_ptr().cast(),
                value_length: v.len(),
            };
        }
    }
    true
}

unsafe extern "C" fn set_header(
    s: HttpFilterEnvoyPtr,
    header_type: HeaderType,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    // SAFETY: a FakeStream, the module's buffers.
    let (s, k, remove, v) = unsafe { (stream(s), bytes(key), value.ptr.is_null(), bytes(value)) };
    s.record("http_set_header");
    let Some(map) = s.map(header_type) else {
        return false;
    };
    let mut map = map.borrow_mut();
    map.retain(|(name, _)| *name != k);
    if !remove {
        map.push((k, v));
    }
    true
}

unsafe extern "C" fn add_header(
    s: HttpFilterEnvoyPtr,
    header_type: HeaderType,
    key: ModuleBuffer,
    value: ModuleBuffer,
) -> bool {
    // SAFETY: a FakeStream, the module's buffers.
    let (s, k, v) = unsafe { (stream(s), bytes(key), bytes(value)) };
    s.record("http_add_header");
    match s.map(header_type) {
        Some(map) => {
            map.borrow_mut().push((k, v));
            true
        }
        None => false,
    }
}

unsafe extern "C" fn send_response(
    s: HttpFilterEnvoyPtr,
    status: u32,
    hs: *mut ModuleHttpHeader,
    n: usize,
    body: ModuleBuffer,
    details: ModuleBuffer,
) {
    // SAFETY: a FakeStream, the module's buffers.
    let (s, reply) = unsafe {
        (
            stream(s),
            Reply {
                status,
                headers: headers(hs, n),
                body: bytes(body),
                details: bytes(details),
            },
        )
    };
    s.record("http_send_response");
    s.replies.borrow_mut().push(reply);
}

unsafe extern "C" fn continue_decoding(s: HttpFilterEnvoyPtr) {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_filter_continue_decoding");
    s.continued_decoding.set(s.continued_decoding.get() + 1);
}

unsafe extern "C" fn continue_encoding(s: HttpFilterEnvoyPtr) {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_filter_continue_encoding");
    s.continued_encoding.set(s.continued_encoding.get() + 1);
}

unsafe extern "C" fn clear_route_cache(s: HttpFilterEnvoyPtr) {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_clear_route_cache");
}

unsafe extern "C" fn get_attribute_string(
    s: HttpFilterEnvoyPtr,
    id: AttributeId,
    result: *mut EnvoyBuffer,
) -> bool {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_filter_get_attribute_string");
    let attrs = s.string_attributes.borrow();
    match attrs.get(&id) {
        Some(v) => {
            // SAFETY: the module's out-pointer; the bytes stay in the map.
            unsafe { *result = envoy_buffer(v) };
            true
        }
        None => false,
    }
}

unsafe extern "C" fn get_attribute_bool(
    s: HttpFilterEnvoyPtr,
    id: AttributeId,
    result: *mut bool,
) -> bool {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_filter_get_attribute_bool");
    match s.bool_attributes.borrow().get(&id) {
        // SAFETY: the module's out-pointer.
        Some(v) => unsafe {
            *result = *v;
            true
        },
        None => false,
    }
}

unsafe extern "C" fn get_attribute_int(
    s: HttpFilterEnvoyPtr,
    id: AttributeId,
    result: *mut u64,
) -> bool {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_filter_get_attribute_int");
    match s.int_attributes.borrow().get(&id) {
        // SAFETY: the module's out-pointer.
        Some(v) => unsafe {
            *result = *v;
            true
        },
        None => false,
    }
}

unsafe extern "C" fn http_callout(
    s: HttpFilterEnvoyPtr,
    id_out: *mut u64,
    cluster: ModuleBuffer,
    hs: *mut ModuleHttpHeader,
    n: usize,
    body: ModuleBuffer,
    timeout_ms: u64,
) -> abi::CalloutInitResult {
    // SAFETY: a FakeStream, the module's buffers.
    let s = unsafe { stream(s) };
    s.record("http_filter_http_callout");
    let result = s.callout_init_result.get();
    if result != abi::CALLOUT_INIT_SUCCESS {
        return result;
    }
    // SAFETY: the module's buffers and out-pointer.
    unsafe { record_callout(&s.callouts, id_out, cluster, hs, n, body, timeout_ms) };
    result
}

/// Records a callout in `callouts` and hands its id (1, 2, ...) out.
///
/// # Safety
/// The module's buffers and out-pointer for the current call.
unsafe fn record_callout(
    callouts: &RefCell<Vec<Callout>>,
    id_out: *mut u64,
    cluster: ModuleBuffer,
    hs: *mut ModuleHttpHeader,
    n: usize,
    body: ModuleBuffer,
    timeout_ms: u64,
) {
    let mut callouts = callouts.borrow_mut();
    let id = callouts.len() as u64 + 1;
    // SAFETY: the caller's contract.
    unsafe {
        callouts.push(Callout {
            id,
            cluster: bytes(cluster),
            headers: headers(hs, n),
            body: bytes(body),
            timeout_ms,
        });
        *id_out = id;
    }
}

unsafe extern "C" fn define_counter(
    c: HttpFilterConfigEnvoyPtr,
    name: ModuleBuffer,
    _labels: *mut ModuleBuffer,
    _n: usize,
    id_out: *mut usize,
) -> abi::MetricsResult {
    // SAFETY: a FakeConfig, the module's buffer and out-pointer.
    unsafe {
        let c = config(c);
        let mut defined = c.counters_defined.borrow_mut();
        defined.push(bytes(name));
        *id_out = defined.len() - 1;
    }
    abi::METRICS_SUCCESS
}

unsafe extern "C" fn increment_counter(
    s: HttpFilterEnvoyPtr,
    id: usize,
    _labels: *mut ModuleBuffer,
    _n: usize,
    value: u64,
) -> abi::MetricsResult {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_filter_increment_counter");
    *s.counters.borrow_mut().entry(id).or_default() += value;
    abi::METRICS_SUCCESS
}

unsafe extern "C" fn config_increment_counter(
    c: HttpFilterConfigEnvoyPtr,
    id: usize,
    _labels: *mut ModuleBuffer,
    _n: usize,
    value: u64,
) -> abi::MetricsResult {
    // SAFETY: a FakeConfig.
    let c = unsafe { config(c) };
    *c.counters.borrow_mut().entry(id).or_default() += value;
    abi::METRICS_SUCCESS
}

unsafe extern "C" fn define_gauge(
    c: HttpFilterConfigEnvoyPtr,
    name: ModuleBuffer,
    _labels: *mut ModuleBuffer,
    _n: usize,
    id_out: *mut usize,
) -> abi::MetricsResult {
    // SAFETY: a FakeConfig, the module's buffer and out-pointer.
    unsafe {
        let c = config(c);
        let mut defined = c.gauges_defined.borrow_mut();
        defined.push(bytes(name));
        *id_out = defined.len() - 1;
    }
    abi::METRICS_SUCCESS
}

unsafe extern "C" fn set_gauge(
    s: HttpFilterEnvoyPtr,
    id: usize,
    _labels: *mut ModuleBuffer,
    _n: usize,
    value: u64,
) -> abi::MetricsResult {
    // SAFETY: a FakeStream.
    let s = unsafe { stream(s) };
    s.record("http_filter_set_gauge");
    s.gauges.borrow_mut().insert(id, value);
    abi::METRICS_SUCCESS
}

unsafe extern "C" fn config_set_gauge(
    c: HttpFilterConfigEnvoyPtr,
    id: usize,
    _labels: *mut ModuleBuffer,
    _n: usize,
    value: u64,
) -> abi::MetricsResult {
    // SAFETY: a FakeConfig.
    let c = unsafe { config(c) };
    c.gauges.borrow_mut().insert(id, value);
    abi::METRICS_SUCCESS
}

unsafe extern "C" fn scheduler_new(s: HttpFilterEnvoyPtr) -> HttpFilterSchedulerPtr {
    // SAFETY: a FakeStream.
    let st = unsafe { stream(s) };
    st.record("http_filter_scheduler_new");
    st.live_schedulers.set(st.live_schedulers.get() + 1);
    Box::into_raw(Box::new(FakeScheduler {
        stream: s.cast::<FakeStream>(),
    }))
    .cast()
}

unsafe extern "C" fn scheduler_commit(p: HttpFilterSchedulerPtr, event_id: u64) {
    // SAFETY: from scheduler_new, not deleted; its stream outlives it.
    let s = unsafe { &*(*p.cast::<FakeScheduler>()).stream };
    s.record("http_filter_scheduler_commit");
    s.committed.borrow_mut().push(event_id);
}

unsafe extern "C" fn scheduler_delete(p: HttpFilterSchedulerPtr) {
    // SAFETY: from scheduler_new, deleted once.
    let sched = unsafe { Box::from_raw(p.cast::<FakeScheduler>()) };
    // SAFETY: its stream outlives it.
    let s = unsafe { &*sched.stream };
    s.record("http_filter_scheduler_delete");
    s.live_schedulers.set(s.live_schedulers.get() - 1);
}

unsafe extern "C" fn config_scheduler_new(
    c: HttpFilterConfigEnvoyPtr,
) -> HttpFilterConfigSchedulerPtr {
    // SAFETY: a FakeConfig.
    let config = unsafe { self::config(c) };
    if config.no_scheduler.get() {
        return core::ptr::null_mut();
    }
    config.live_schedulers.set(config.live_schedulers.get() + 1);
    Box::into_raw(Box::new(FakeConfigScheduler {
        config: c.cast::<FakeConfig>(),
    }))
    .cast()
}

unsafe extern "C" fn config_scheduler_commit(p: HttpFilterConfigSchedulerPtr, event_id: u64) {
    // SAFETY: from config_scheduler_new, not deleted; its configuration
    // outlives it.
    let c = unsafe { &*(*p.cast::<FakeConfigScheduler>()).config };
    c.committed.borrow_mut().push(event_id);
}

unsafe extern "C" fn config_scheduler_delete(p: HttpFilterConfigSchedulerPtr) {
    // SAFETY: from config_scheduler_new, deleted once.
    let sched = unsafe { Box::from_raw(p.cast::<FakeConfigScheduler>()) };
    // SAFETY: its configuration outlives it.
    let c = unsafe { &*sched.config };
    c.live_schedulers.set(c.live_schedulers.get() - 1);
}

unsafe extern "C" fn config_http_callout(
    c: HttpFilterConfigEnvoyPtr,
    id_out: *mut u64,
    cluster: ModuleBuffer,
    hs: *mut ModuleHttpHeader,
    n: usize,
    body: ModuleBuffer,
    timeout_ms: u64,
) -> abi::CalloutInitResult {
    // SAFETY: a FakeConfig, the module's buffers and out-pointer.
    unsafe {
        let callouts = &config(c).callouts;
        record_callout(callouts, id_out, cluster, hs, n, body, timeout_ms);
    }
    abi::CALLOUT_INIT_SUCCESS
}

/// The fake Envoy's callbacks.
pub fn callbacks() -> Callbacks {
    Callbacks {
        log,
        log_enabled,
        get_header,
        get_headers_size,
        get_headers,
        set_header,
        add_header,
        send_response,
        continue_decoding,
        continue_encoding,
        clear_route_cache,
        get_attribute_string,
        get_attribute_bool,
        get_attribute_int,
        http_callout,
        define_counter,
        increment_counter,
        config_increment_counter,
        define_gauge,
        set_gauge,
        config_set_gauge,
        scheduler_new,
        scheduler_commit,
        scheduler_delete,
        config_scheduler_new,
        config_scheduler_commit,
        config_scheduler_delete,
        config_http_callout,
    }
}

/// A `dlsym` over the fake: each callback's address by its ABI name.
pub fn lookup(name: &CStr) -> *mut c_void {
    let cb = callbacks();
    let by_name: [(&CStr, *mut c_void); 28] = [
        (c"envoy_dynamic_module_callback_log", cb.log as *mut c_void),
        (
            c"envoy_dynamic_module_callback_log_enabled",
            cb.log_enabled as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_get_header",
            cb.get_header as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_get_headers_size",
            cb.get_headers_size as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_get_headers",
            cb.get_headers as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_set_header",
            cb.set_header as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_add_header",
            cb.add_header as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_send_response",
            cb.send_response as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_continue_decoding",
            cb.continue_decoding as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_continue_encoding",
            cb.continue_encoding as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_clear_route_cache",
            cb.clear_route_cache as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_get_attribute_string",
            cb.get_attribute_string as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_get_attribute_bool",
            cb.get_attribute_bool as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_get_attribute_int",
            cb.get_attribute_int as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_http_callout",
            cb.http_callout as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_config_define_counter",
            cb.define_counter as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_increment_counter",
            cb.increment_counter as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_config_increment_counter",
            cb.config_increment_counter as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_config_define_gauge",
            cb.define_gauge as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_set_gauge",
            cb.set_gauge as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_config_set_gauge",
            cb.config_set_gauge as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_scheduler_new",
            cb.scheduler_new as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_scheduler_commit",
            cb.scheduler_commit as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_scheduler_delete",
            cb.scheduler_delete as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_config_scheduler_new",
            cb.config_scheduler_new as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_config_scheduler_commit",
            cb.config_scheduler_commit as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_config_scheduler_delete",
            cb.config_scheduler_delete as *mut c_void,
        ),
        (
            c"envoy_dynamic_module_callback_http_filter_config_http_callout",
            cb.config_http_callout as *mut c_void,
        ),
    ];
    by_name
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(core::ptr::null_mut(), |(_, p)| *p)
}

/// Installs the fake as Envoy's callbacks (once per test binary; every
/// test calls it first).
pub fn install() {
    super::install(callbacks());
}
