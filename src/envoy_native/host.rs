//! [`NativeHost`]: the [`Host`] the runtime ([`Vm`](crate::host::Vm))
//! sees inside a dynamic module, for the duration of one hook.
//!
//! A `NativeHost` is built by a hook and dropped before it returns: it
//! holds the stream pointer Envoy lent to that hook (or none, at
//! configuration time and when a filter is destroyed), and records what
//! the runtime asked for that must happen on other streams (resuming them)
//! so that the hook does it through their schedulers afterwards.
//!
//! Shared data is process memory ([`shared_get`], [`shared_set`]), with
//! the compare-and-swap rule of Envoy's proxy-wasm shared data, so that
//! the runtimes of all workers share key sets, fetch leases and the DPoP
//! replay store.

use core::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::abi::{self, HttpFilterConfigEnvoyPtr, HttpFilterEnvoyPtr, ModuleBuffer};
use super::{callbacks, log};
use crate::headers::RequestHeaders;
use crate::host::{Host, MetricKind};

// ------------------------------------------------------------ shared data

/// One value of the shared data and its CAS number.
type Entry = (Vec<u8>, u32);

static SHARED: Mutex<Option<HashMap<String, Entry>>> = Mutex::new(None);
static NEXT_CAS: AtomicU32 = AtomicU32::new(1);

fn next_cas() -> u32 {
    // Never 0: 0 means "no CAS" on writes.
    loop {
        let c = NEXT_CAS.fetch_add(1, Ordering::Relaxed);
        if c != 0 {
            return c;
        }
    }
}

/// The value under `key` and its CAS number.
pub fn shared_get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    let Ok(guard) = SHARED.lock() else {
        return (None, None);
    };
    match guard.as_ref().and_then(|m| m.get(key)) {
        Some((v, cas)) => (Some(v.clone()), Some(*cas)),
        None => (None, None),
    }
}

/// Writes `value` under `key`. With a CAS number (not 0) the write
/// succeeds only if the entry still has it, or does not exist: Envoy's
/// rule for proxy-wasm shared data.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> bool {
    let Ok(mut guard) = SHARED.lock() else {
        return false;
    };
    let map = guard.get_or_insert_with(HashMap::new);
    match map.get_mut(key) {
        Some(entry) => {
            if let Some(c) = cas.filter(|c| *c != 0)
                && c != entry.1
            {
                return false;
            }
            *entry = (value.to_vec(), next_cas());
        }
        None => {
            map.insert(key.to_string(), (value.to_vec(), next_cas()));
        }
    }
    true
}

// ---------------------------------------------------------------- metrics

/// A metric defined at configuration time: its name, kind and Envoy's id.
#[derive(Debug, Clone)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub envoy_id: usize,
}

// ------------------------------------------------------------------ clock

#[cfg(test)]
thread_local! {
    /// The tests' clock (the vectors' fixed `now`); `None` is the real one.
    pub static TEST_NOW: Cell<Option<SystemTime>> = const { Cell::new(None) };
}

pub fn now() -> SystemTime {
    #[cfg(test)]
    if let Some(t) = TEST_NOW.with(Cell::get) {
        return t;
    }
    SystemTime::now()
}

pub fn now_ms() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

// ----------------------------------------------------------------- ticks

/// The tick period the runtime asked for, and when the next tick is due.
/// Envoy 1.40's HTTP filter has no timer: ticks run when a hook sees one
/// due, a stream's on a worker or a scheduled event on the main thread
/// (see `mod.rs` and `keeper.rs`).
#[derive(Debug, Default)]
pub struct Ticks {
    period_ms: Cell<u64>,
    next_ms: Cell<Option<u64>>,
}

impl Ticks {
    fn set(&self, period: Duration) {
        let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            self.period_ms.set(0);
            self.next_ms.set(None);
            return;
        }
        // Ticks starting are due at once (the first hook that looks takes
        // one); the same period again keeps its due time, so that requests
        // asking for it do not push the tick away for ever.
        if self.next_ms.get().is_none() {
            self.period_ms.set(ms);
            self.next_ms.set(Some(now_ms()));
        } else if ms != self.period_ms.get() {
            self.period_ms.set(ms);
            self.next_ms.set(Some(now_ms().saturating_add(ms)));
        }
    }

    /// Whether a tick is due at `now_ms`; if so, the next one is scheduled.
    pub fn due(&self, now_ms: u64) -> bool {
        match self.next_ms.get() {
            Some(next) if next <= now_ms => {
                self.next_ms
                    .set(Some(now_ms.saturating_add(self.period_ms.get().max(1))));
                true
            }
            _ => false,
        }
    }

    /// Whether ticks are wanted at all.
    pub fn active(&self) -> bool {
        self.next_ms.get().is_some()
    }

    /// When the next tick is due (ms since the epoch), if ticks are wanted.
    pub fn next_due(&self) -> Option<u64> {
        self.next_ms.get()
    }
}

// ------------------------------------------------------------------- host

/// The answer to a callout, as the runtime reads it.
pub type CalloutAnswer = (Option<String>, Option<Vec<u8>>);

static NEXT_TOKEN: AtomicU32 = AtomicU32::new(1);

/// Envoy, as one hook of one stream (or of a configuration) presents it.
pub struct NativeHost<'a> {
    /// `filter_config` bytes.
    pub raw: &'a [u8],
    /// Envoy's configuration object, for metrics outside a stream.
    pub config_envoy: HttpFilterConfigEnvoyPtr,
    /// The stream of the current hook; null at configuration time and when
    /// a filter is destroyed.
    pub envoy: HttpFilterEnvoyPtr,
    /// The current stream's id (0 outside a stream).
    pub context_id: u32,
    /// A hook of the configuration on the main thread: callouts are the
    /// configuration's (there is no stream).
    pub main_thread: bool,
    /// Metrics defined so far (read-only on streams).
    pub metrics: &'a [Metric],
    /// At configuration time: where new metrics are defined.
    pub defining: Option<&'a RefCell<Vec<Metric>>>,
    pub ticks: &'a Ticks,
    /// The answer of the callout being delivered.
    pub callout: Option<CalloutAnswer>,
    /// The runtime resumed the current stream.
    pub resumed: Cell<bool>,
    /// The runtime answered the current stream with a local reply.
    pub responded: Cell<bool>,
    /// The runtime changed the current stream's request headers.
    pub headers_changed: Cell<bool>,
    /// Other streams the runtime took up: they are woken on their workers.
    pub deferred: RefCell<Vec<u32>>,
    /// Callouts started in this hook: (Envoy's id, our token).
    pub callouts: RefCell<Vec<(u64, u32)>>,
}

impl<'a> NativeHost<'a> {
    pub fn new(raw: &'a [u8], config_envoy: HttpFilterConfigEnvoyPtr, ticks: &'a Ticks) -> Self {
        NativeHost {
            raw,
            config_envoy,
            envoy: core::ptr::null_mut(),
            context_id: 0,
            main_thread: false,
            metrics: &[],
            defining: None,
            ticks,
            callout: None,
            resumed: Cell::new(false),
            responded: Cell::new(false),
            headers_changed: Cell::new(false),
            deferred: RefCell::new(Vec::new()),
            callouts: RefCell::new(Vec::new()),
        }
    }

    /// Envoy's id of the metric the runtime knows as `id`.
    fn envoy_metric(&self, id: u32) -> Option<usize> {
        let i = usize::try_from(id).ok()?;
        match self.defining {
            Some(d) => d.borrow().get(i).map(|m| m.envoy_id),
            None => self.metrics.get(i).map(|m| m.envoy_id),
        }
    }

    /// Attribute `id` of the current stream, lent to `read` for the call
    /// (empty is Envoy 1.40's "no certificate": not read).
    fn read_attribute(&self, id: abi::AttributeId, read: &mut dyn FnMut(&[u8])) {
        let Some(cb) = callbacks() else { return };
        if self.envoy.is_null() {
            return;
        }
        let mut out = abi::EnvoyBuffer {
            ptr: core::ptr::null(),
            length: 0,
        };
        // SAFETY: the current hook's stream; `out` lives for the hook and
        // is only read during the call.
        unsafe {
            if (cb.get_attribute_string)(self.envoy, id, &mut out) && out.length > 0 {
                read(out.bytes());
            }
        }
    }
}

/// The attribute of a property path.
fn attribute_id(path: &[&str]) -> Option<abi::AttributeId> {
    Some(match path {
        ["connection", "sha256_peer_certificate_digest"] => {
            abi::ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST
        }
        ["source", "address"] => abi::ATTR_SOURCE_ADDRESS,
        ["connection", "uri_san_peer_certificate"] => abi::ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE,
        // No attribute has the whole certificate.
        _ => return None,
    })
}

fn level(l: log::Level) -> abi::LogLevel {
    match l {
        log::Level::Error => abi::LOG_ERROR,
        log::Level::Warn => abi::LOG_WARN,
        log::Level::Info => abi::LOG_INFO,
        log::Level::Debug => abi::LOG_DEBUG,
        log::Level::Trace => abi::LOG_TRACE,
    }
}

/// Module-owned header pairs for one call.
fn module_headers(headers: &[(&str, &str)]) -> Vec<abi::ModuleHttpHeader> {
    headers
        .iter()
        .map(|(k, v)| abi::ModuleHttpHeader {
            key_ptr: k.as_ptr().cast(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast(),
            value_length: v.len(),
        })
        .collect()
}

/// Every request header of the stream, as the runtime reads them.
pub fn request_headers(envoy: HttpFilterEnvoyPtr) -> RequestHeaders {
    let Some(cb) = callbacks() else {
        return RequestHeaders::default();
    };
    if envoy.is_null() {
        return RequestHeaders::default();
    }
    // SAFETY: the current hook's stream; Envoy fills `n` entries whose
    // buffers live for the hook, and they are copied before returning.
    unsafe {
        let n = (cb.get_headers_size)(envoy, abi::REQUEST_HEADER);
        let empty = abi::EnvoyHttpHeader {
            key_ptr: core::ptr::null(),
            key_length: 0,
            value_ptr: core::ptr::null(),
            value_length: 0,
        };
        // Envoy's array of pointers: on the stack for up to 32 headers.
        let mut stack = [empty; 32];
        let mut heap = Vec::new();
        let raw = match stack.get_mut(..n) {
            Some(raw) => raw,
            None => {
                heap.resize(n, empty);
                heap.as_mut_slice()
            }
        };
        if n > 0 && !(cb.get_headers)(envoy, abi::REQUEST_HEADER, raw.as_mut_ptr()) {
            return RequestHeaders::default();
        }
        // The same decoding as the wasm build's, without its encoding.
        RequestHeaders::from_pairs(raw.iter().map(|h| {
            let k = abi::EnvoyBuffer {
                ptr: h.key_ptr,
                length: h.key_length,
            };
            let v = abi::EnvoyBuffer {
                ptr: h.value_ptr,
                length: h.value_length,
            };
            (k.bytes(), v.bytes())
        }))
    }
}

impl Host for NativeHost<'_> {
    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        Some(self.raw.to_vec())
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn now(&self) -> Option<SystemTime> {
        Some(now())
    }

    fn request_headers(&self) -> RequestHeaders {
        request_headers(self.envoy)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let mut value = None;
        self.read_property(path, &mut |v| value = Some(v.to_vec()));
        value
    }

    fn read_property(&self, path: &[&str], read: &mut dyn FnMut(&[u8])) {
        if let Some(id) = attribute_id(path) {
            self.read_attribute(id, read);
        }
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let Some(cb) = callbacks() else { return };
        if self.envoy.is_null() {
            return;
        }
        self.headers_changed.set(true);
        let value = value.map_or(ModuleBuffer::NULL, |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: the current hook's stream; the buffers outlive the call.
        unsafe {
            (cb.set_header)(
                self.envoy,
                abi::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                value,
            );
        }
    }

    fn add_response_header(&self, name: &str, value: &str) {
        let Some(cb) = callbacks() else { return };
        if self.envoy.is_null() {
            return;
        }
        // SAFETY: the current hook's stream; the buffers outlive the call.
        unsafe {
            (cb.add_header)(
                self.envoy,
                abi::RESPONSE_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let Some(cb) = callbacks() else { return };
        if self.envoy.is_null() || self.responded.replace(true) {
            return;
        }
        let mut hs = module_headers(headers);
        // SAFETY: the current hook's stream; every buffer outlives the call.
        unsafe {
            (cb.send_response)(
                self.envoy,
                status,
                hs.as_mut_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"certbound"),
            );
        }
    }

    fn resume_request(&self) {
        // Done by the hook once the runtime returns (the stream is the
        // current one: `set_effective_context` refuses any other).
        self.resumed.set(true);
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        if context_id == self.context_id && !self.envoy.is_null() {
            return true;
        }
        // Another stream: its pointer is not ours to use here. It is
        // taken up on its worker, in its own hook.
        self.deferred.borrow_mut().push(context_id);
        false
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        shared_get(key)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        shared_set(key, value, cas)
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Option<u32> {
        let cb = callbacks()?;
        let mut hs = module_headers(headers);
        let mut id = 0u64;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let (cluster, body) = (
            ModuleBuffer::of(cluster.as_bytes()),
            body.map_or(ModuleBuffer::NULL, ModuleBuffer::of),
        );
        let (hs_ptr, hs_len) = (hs.as_mut_ptr(), hs.len());
        // SAFETY: the current hook's stream, or (on the main thread) Envoy's
        // configuration object; every buffer outlives the call.
        let result = unsafe {
            if !self.envoy.is_null() {
                (cb.http_callout)(
                    self.envoy, &mut id, cluster, hs_ptr, hs_len, body, timeout_ms,
                )
            } else if self.main_thread && !self.config_envoy.is_null() {
                (cb.config_http_callout)(
                    self.config_envoy,
                    &mut id,
                    cluster,
                    hs_ptr,
                    hs_len,
                    body,
                    timeout_ms,
                )
            } else {
                return None;
            }
        };
        if result != abi::CALLOUT_INIT_SUCCESS {
            return None;
        }
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed).max(1);
        self.callouts.borrow_mut().push((id, token));
        Some(token)
    }

    fn http_call_response(&self, _body_size: usize) -> (Option<String>, Option<Vec<u8>>) {
        self.callout.clone().unwrap_or((None, None))
    }

    fn set_tick_period(&self, period: Duration) {
        self.ticks.set(period);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        if let Some(d) = self.defining {
            if let Some(i) = d.borrow().iter().position(|m| m.name == name) {
                return u32::try_from(i).ok();
            }
            let cb = callbacks()?;
            let define = match kind {
                MetricKind::Counter => cb.define_counter,
                MetricKind::Gauge => cb.define_gauge,
            };
            let mut envoy_id = 0usize;
            // SAFETY: Envoy's configuration object during config_new; the
            // name outlives the call.
            let r = unsafe {
                define(
                    self.config_envoy,
                    ModuleBuffer::of(name.as_bytes()),
                    core::ptr::null_mut(),
                    0,
                    &mut envoy_id,
                )
            };
            if r != abi::METRICS_SUCCESS {
                return None;
            }
            let mut d = d.borrow_mut();
            d.push(Metric {
                name: name.to_string(),
                kind,
                envoy_id,
            });
            return u32::try_from(d.len() - 1).ok();
        }
        // On a worker: the metric defined under that name at configuration.
        self.metrics
            .iter()
            .position(|m| m.name == name && m.kind == kind)
            .and_then(|i| u32::try_from(i).ok())
    }

    fn increment_metric(&self, id: u32, by: i64) {
        let (Some(cb), Some(envoy_id), Ok(by)) =
            (callbacks(), self.envoy_metric(id), u64::try_from(by))
        else {
            return;
        };
        // SAFETY: the current hook's stream, or Envoy's configuration
        // object (which outlives its streams).
        unsafe {
            if !self.envoy.is_null() {
                (cb.increment_counter)(self.envoy, envoy_id, core::ptr::null_mut(), 0, by);
            } else if !self.config_envoy.is_null() {
                (cb.config_increment_counter)(
                    self.config_envoy,
                    envoy_id,
                    core::ptr::null_mut(),
                    0,
                    by,
                );
            }
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        let (Some(cb), Some(envoy_id)) = (callbacks(), self.envoy_metric(id)) else {
            return;
        };
        // SAFETY: as for counters.
        unsafe {
            if !self.envoy.is_null() {
                (cb.set_gauge)(self.envoy, envoy_id, core::ptr::null_mut(), 0, value);
            } else if !self.config_envoy.is_null() {
                (cb.config_set_gauge)(self.config_envoy, envoy_id, core::ptr::null_mut(), 0, value);
            }
        }
    }

    fn log(&self, l: log::Level, message: &str) {
        log(level(l), message);
    }
}
