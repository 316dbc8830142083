//! A fake [`Host`] for native tests and benchmarks: an in-memory proxy that
//! the filter's root and HTTP contexts run against under `cargo test` and
//! `cargo bench`.
//!
//! It holds what a proxy would hand the filter (the plugin configuration,
//! VM environment variables, a fixed clock, per-stream request headers and
//! properties, shared data, the response of the next HTTP call) and records
//! what the filter does with it (local responses, header changes, resumed
//! streams, metrics, logs, dispatched HTTP calls, the tick period). It also
//! counts every host call by name and the bytes copied from the host into
//! the filter, for per-request cost accounting.
//!
//! Builders set it up:
//!
//! ```
//! use certbound::FakeHost;
//!
//! let host = FakeHost::new()
//!     .at_unix(1_700_000_000)
//!     .with_config(r#"{"providers": {}}"#)
//!     .with_header(":path", "/api")
//!     .with_property(&["source", "address"], b"10.0.0.1:443");
//! # let _ = host;
//! ```
//!
//! Clones share their state: several roots made from clones of one host
//! share its shared data and metrics, as Envoy's workers do. Request
//! headers reach the filter in the proxy-wasm ABI's map encoding
//! ([`encode_abi`], read back with [`RequestHeaders::from_abi`]), as Envoy
//! hands them over. A second local response on one stream, which Envoy
//! refuses, does not replace the first: it is counted in
//! [`FakeHost::double_responses`] for tests to assert on.
//!
//! Only compiled off wasm: it is no part of the filter module.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::headers::{RequestHeaders, encode_abi};
use crate::host::{Host, MetricKind};

/// A local response the filter sent on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    /// The first value of the header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP call the filter dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The token the host returned for it.
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl HttpCall {
    /// The first value of the header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP stream as the host sees it.
#[derive(Debug, Clone, Default)]
struct Stream {
    headers: Vec<(String, String)>,
    /// Properties by path, e.g. `["connection", "peer_certificate"]`.
    properties: Vec<(Vec<String>, Vec<u8>)>,
    response: Option<LocalResponse>,
    /// Headers added to the upstream's response.
    response_headers: Vec<(String, String)>,
    resumed: bool,
}

impl Stream {
    fn property(&self, path: &[&str]) -> Option<&[u8]> {
        self.properties
            .iter()
            .find(|(p, _)| p.iter().map(String::as_str).eq(path.iter().copied()))
            .map(|(_, v)| v.as_slice())
    }
}

#[derive(Debug)]
struct State {
    config: Option<Vec<u8>>,
    env: HashMap<String, String>,
    now: Option<SystemTime>,
    /// Streams by context id; `effective` is the one host calls act on.
    streams: HashMap<u32, Stream>,
    effective: u32,
    /// Metrics in the order they were defined; the id is the index.
    metrics: Vec<(String, MetricKind, u64)>,
    logs: Vec<(log::Level, String)>,
    /// Shared data: value and CAS.
    shared: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    http_calls: Vec<HttpCall>,
    /// What `http_call_response` returns.
    call_response: (Option<String>, Option<Vec<u8>>),
    tick: Option<Duration>,
    double_responses: u64,
    /// Host calls by name.
    calls: BTreeMap<String, u64>,
    /// Bytes copied from the host into the filter.
    bytes_in: u64,
    /// Reused to name a call without allocating once the name is known.
    scratch: String,
}

impl Default for State {
    fn default() -> Self {
        let mut streams = HashMap::new();
        streams.insert(1, Stream::default());
        State {
            config: None,
            env: HashMap::new(),
            now: Some(UNIX_EPOCH),
            streams,
            effective: 1,
            metrics: Vec::new(),
            logs: Vec::new(),
            shared: HashMap::new(),
            next_cas: 0,
            http_calls: Vec::new(),
            call_response: (None, None),
            tick: None,
            double_responses: 0,
            calls: BTreeMap::new(),
            bytes_in: 0,
            scratch: String::new(),
        }
    }
}

impl State {
    fn stream(&mut self) -> &mut Stream {
        self.streams.entry(self.effective).or_default()
    }

    fn count(&mut self, name: &str) {
        match self.calls.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                self.calls.insert(name.to_string(), 1);
            }
        }
    }

    /// Counts `get_property(a.b.c)`.
    fn count_property(&mut self, path: &[&str]) {
        let mut name = std::mem::take(&mut self.scratch);
        name.clear();
        name.push_str("get_property(");
        for (i, part) in path.iter().enumerate() {
            if i > 0 {
                name.push('.');
            }
            name.push_str(part);
        }
        name.push(')');
        self.count(&name);
        self.scratch = name;
    }

    fn copied_in(&mut self, n: usize) {
        self.bytes_in = self
            .bytes_in
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// The fake host; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct FakeHost(Rc<RefCell<State>>);

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl FakeHost {
    /// No configuration, no environment, the clock at the Unix epoch, and
    /// one empty stream (context id 1), the effective one.
    pub fn new() -> Self {
        FakeHost::default()
    }

    /// Sets the clock; it stands still until [`FakeHost::advance`].
    pub fn at(self, now: SystemTime) -> Self {
        self.0.borrow_mut().now = Some(now);
        self
    }

    /// Sets the clock to `secs` seconds after the Unix epoch.
    pub fn at_unix(self, secs: u64) -> Self {
        self.at(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// A host whose clock cannot be read.
    pub fn without_clock(self) -> Self {
        self.0.borrow_mut().now = None;
        self
    }

    /// The plugin configuration.
    pub fn with_config(self, config: impl AsRef<[u8]>) -> Self {
        self.0.borrow_mut().config = Some(config.as_ref().to_vec());
        self
    }

    /// A VM environment variable.
    pub fn with_env(self, name: &str, value: &str) -> Self {
        self.0
            .borrow_mut()
            .env
            .insert(name.to_string(), value.to_string());
        self
    }

    /// Appends a request header to the effective stream.
    pub fn with_header(self, name: &str, value: &str) -> Self {
        self.0
            .borrow_mut()
            .stream()
            .headers
            .push((name.to_string(), value.to_string()));
        self
    }

    /// Appends request headers to the effective stream.
    pub fn with_headers<K: AsRef<str>, V: AsRef<str>>(
        self,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        {
            let mut s = self.0.borrow_mut();
            let stream = s.stream();
            for (k, v) in headers {
                stream
                    .headers
                    .push((k.as_ref().to_string(), v.as_ref().to_string()));
            }
        }
        self
    }

    /// Sets a property of the effective stream, e.g.
    /// `&["connection", "peer_certificate"]`.
    pub fn with_property(self, path: &[&str], value: &[u8]) -> Self {
        {
            let mut s = self.0.borrow_mut();
            let stream = s.stream();
            stream
                .properties
                .retain(|(p, _)| !p.iter().map(String::as_str).eq(path.iter().copied()));
            stream
                .properties
                .push((path.iter().map(|p| p.to_string()).collect(), value.to_vec()));
        }
        self
    }

    /// Makes `id` the effective stream, a new empty one if it is unknown.
    /// Later builders and accessors act on it.
    pub fn on_stream(self, id: u32) -> Self {
        {
            let mut s = self.0.borrow_mut();
            s.effective = id;
            s.streams.entry(id).or_default();
        }
        self
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut s = self.0.borrow_mut();
        s.now = s.now.and_then(|t| t.checked_add(by));
    }

    /// Sets what the next `http_call_response` returns: the `:status`
    /// (`None`: no such header, as for a failed call) and the body.
    pub fn answer_with(&self, status: Option<&str>, body: &[u8]) {
        self.0.borrow_mut().call_response = (status.map(str::to_string), Some(body.to_vec()));
    }

    /// The local response on the effective stream.
    pub fn response(&self) -> Option<LocalResponse> {
        self.0.borrow_mut().stream().response.clone()
    }

    /// The local response on stream `id`.
    pub fn response_of(&self, id: u32) -> Option<LocalResponse> {
        self.0
            .borrow()
            .streams
            .get(&id)
            .and_then(|st| st.response.clone())
    }

    /// The status of the local response on the effective stream.
    pub fn status(&self) -> Option<u32> {
        self.response().map(|r| r.status)
    }

    /// The `www-authenticate` header of the local response on the
    /// effective stream.
    pub fn challenge(&self) -> Option<String> {
        self.response()
            .and_then(|r| r.header("www-authenticate").map(str::to_string))
    }

    /// Second local responses on a stream, over all streams: Envoy sends
    /// one; the fake keeps the first.
    pub fn double_responses(&self) -> u64 {
        self.0.borrow().double_responses
    }

    /// Whether stream `id` was resumed.
    pub fn resumed(&self, id: u32) -> bool {
        self.0
            .borrow()
            .streams
            .get(&id)
            .is_some_and(|st| st.resumed)
    }

    /// The headers the filter added to stream `id`'s response.
    pub fn response_headers_of(&self, id: u32) -> Vec<(String, String)> {
        self.0
            .borrow()
            .streams
            .get(&id)
            .map(|st| st.response_headers.clone())
            .unwrap_or_default()
    }

    /// The first value of request header `name` on the effective stream,
    /// after the filter's changes.
    pub fn header(&self, name: &str) -> Option<String> {
        self.0
            .borrow_mut()
            .stream()
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The request headers of the effective stream, after the filter's
    /// changes.
    pub fn headers(&self) -> Vec<(String, String)> {
        self.0.borrow_mut().stream().headers.clone()
    }

    /// The value of metric `name`; zero if it was never defined.
    pub fn counter(&self, name: &str) -> u64 {
        self.0
            .borrow()
            .metrics
            .iter()
            .find(|(n, _, _)| n == name)
            .map_or(0, |(_, _, v)| *v)
    }

    /// The names of the defined metrics, in the order of definition.
    pub fn metric_names(&self) -> Vec<String> {
        self.0
            .borrow()
            .metrics
            .iter()
            .map(|(n, _, _)| n.clone())
            .collect()
    }

    /// The log messages, one a line.
    pub fn logs(&self) -> String {
        self.0
            .borrow()
            .logs
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The log entries: level and message.
    pub fn log_entries(&self) -> Vec<(log::Level, String)> {
        self.0.borrow().logs.clone()
    }

    /// The dispatched HTTP calls, in order.
    pub fn http_calls(&self) -> Vec<HttpCall> {
        self.0.borrow().http_calls.clone()
    }

    /// The tick period last set.
    pub fn tick(&self) -> Option<Duration> {
        self.0.borrow().tick
    }

    /// Host calls by name, e.g. `get_map(request_headers)` or
    /// `get_property(connection.peer_certificate)`, since the last
    /// [`FakeHost::reset_counts`].
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.0.borrow().calls.clone()
    }

    /// Bytes copied from the host into the filter (configuration,
    /// environment, headers, properties, shared data, call responses),
    /// since the last [`FakeHost::reset_counts`].
    pub fn bytes_in(&self) -> u64 {
        self.0.borrow().bytes_in
    }

    /// Zeroes [`FakeHost::calls`] and [`FakeHost::bytes_in`].
    pub fn reset_counts(&self) {
        let mut s = self.0.borrow_mut();
        s.calls.clear();
        s.bytes_in = 0;
    }
}

impl Host for FakeHost {
    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        let mut s = self.0.borrow_mut();
        s.count("get_buffer(plugin_configuration)");
        let config = s.config.clone();
        s.copied_in(config.as_ref().map_or(0, Vec::len));
        config
    }

    fn env_var(&self, name: &str) -> Option<String> {
        let mut s = self.0.borrow_mut();
        s.count("env_var");
        let value = s.env.get(name).cloned();
        s.copied_in(value.as_ref().map_or(0, String::len));
        value
    }

    fn now(&self) -> Option<SystemTime> {
        let mut s = self.0.borrow_mut();
        s.count("get_current_time");
        s.now
    }

    fn request_headers(&self) -> RequestHeaders {
        let mut s = self.0.borrow_mut();
        s.count("get_map(request_headers)");
        // As Envoy hands them over: one buffer in the ABI's map form.
        let bytes = encode_abi(&s.stream().headers);
        s.copied_in(bytes.len());
        RequestHeaders::from_abi(bytes).unwrap_or_default()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let mut s = self.0.borrow_mut();
        s.count_property(path);
        let value = s.stream().property(path).map(<[u8]>::to_vec);
        s.copied_in(value.as_ref().map_or(0, Vec::len));
        value
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut s = self.0.borrow_mut();
        s.count("set_map_value(request_headers)");
        let stream = s.stream();
        stream.headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            stream.headers.push((name.to_string(), v.to_string()));
        }
    }

    fn add_response_header(&self, name: &str, value: &str) {
        let mut s = self.0.borrow_mut();
        s.count("add_map_value(response_headers)");
        s.stream()
            .response_headers
            .push((name.to_string(), value.to_string()));
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let mut s = self.0.borrow_mut();
        s.count("send_http_response");
        if s.stream().response.is_some() {
            s.double_responses = s.double_responses.saturating_add(1);
            return;
        }
        s.stream().response = Some(LocalResponse {
            status,
            headers: owned(headers),
            body: body.to_vec(),
        });
    }

    fn resume_request(&self) {
        let mut s = self.0.borrow_mut();
        s.count("resume_http_request");
        s.stream().resumed = true;
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        let mut s = self.0.borrow_mut();
        s.count("set_effective_context");
        if s.streams.contains_key(&context_id) {
            s.effective = context_id;
            true
        } else {
            false
        }
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let mut s = self.0.borrow_mut();
        s.count("get_shared_data");
        let (value, cas) = match s.shared.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        };
        s.copied_in(value.as_ref().map_or(0, Vec::len));
        (value, cas)
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut s = self.0.borrow_mut();
        s.count("set_shared_data");
        // Envoy's semantics: a CAS is checked only against an existing entry.
        if let (Some(cas), Some((_, current))) = (cas, s.shared.get(key))
            && cas != *current
        {
            return false;
        }
        s.next_cas = s.next_cas.wrapping_add(1);
        let next = s.next_cas;
        s.shared.insert(key.to_string(), (value.to_vec(), next));
        true
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Option<u32> {
        let mut s = self.0.borrow_mut();
        s.count("dispatch_http_call");
        let token = u32::try_from(s.http_calls.len())
            .unwrap_or(u32::MAX)
            .saturating_add(100);
        s.http_calls.push(HttpCall {
            token,
            cluster: cluster.to_string(),
            headers: owned(headers),
            body: body.map(<[u8]>::to_vec),
            timeout,
        });
        Some(token)
    }

    fn http_call_response(&self, _body_size: usize) -> (Option<String>, Option<Vec<u8>>) {
        let mut s = self.0.borrow_mut();
        s.count("get_http_call_response");
        let response = s.call_response.clone();
        s.copied_in(response.1.as_ref().map_or(0, Vec::len));
        response
    }

    fn set_tick_period(&self, period: Duration) {
        let mut s = self.0.borrow_mut();
        s.count("set_tick_period");
        s.tick = Some(period);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut s = self.0.borrow_mut();
        s.count("define_metric");
        let at = match s.metrics.iter().position(|(n, _, _)| n == name) {
            Some(at) => at,
            None => {
                s.metrics.push((name.to_string(), kind, 0));
                s.metrics.len().saturating_sub(1)
            }
        };
        u32::try_from(at).ok()
    }

    fn increment_metric(&self, id: u32, by: i64) {
        let mut s = self.0.borrow_mut();
        s.count("increment_metric");
        if let Some((_, _, v)) = usize::try_from(id).ok().and_then(|i| s.metrics.get_mut(i)) {
            *v = v.wrapping_add_signed(by);
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        let mut s = self.0.borrow_mut();
        s.count("record_metric");
        if let Some((_, _, v)) = usize::try_from(id).ok().and_then(|i| s.metrics.get_mut(i)) {
            *v = value;
        }
    }

    fn log(&self, level: log::Level, message: &str) {
        let mut s = self.0.borrow_mut();
        s.count("log");
        s.logs.push((level, message.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_local_response_is_counted_not_kept() {
        let h = FakeHost::new();
        h.send_response(401, &[("www-authenticate", "Bearer")], b"");
        h.send_response(500, &[], b"");
        assert_eq!(h.status(), Some(401));
        assert_eq!(h.challenge().as_deref(), Some("Bearer"));
        assert_eq!(h.double_responses(), 1);
        assert_eq!(h.calls().get("send_http_response"), Some(&2));
    }

    #[test]
    fn shared_data_cas_as_in_envoy() {
        let h = FakeHost::new();
        assert!(
            h.set_shared_data("k", b"a", Some(7)),
            "no entry: CAS ignored"
        );
        let (value, cas) = h.shared_data("k");
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        assert!(!h.set_shared_data("k", b"b", cas.map(|c| c + 1)));
        assert!(h.set_shared_data("k", b"b", cas));
        assert!(h.clone().set_shared_data("k", b"c", None), "clones share");
        assert_eq!(h.shared_data("k").0.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn headers_and_properties_per_stream_with_counts() {
        let h = FakeHost::new()
            .with_header(":path", "/a")
            .with_property(&["connection", "peer_certificate"], b"pem")
            .on_stream(9)
            .with_header(":path", "/b");
        let pairs = |h: &FakeHost| {
            h.request_headers()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&h), [":path=/b"]);
        assert_eq!(h.property(&["connection", "peer_certificate"]), None);
        assert!(h.set_effective_context(1));
        assert!(!h.set_effective_context(2));
        assert_eq!(pairs(&h), [":path=/a"]);
        assert_eq!(
            h.property(&["connection", "peer_certificate"]).as_deref(),
            Some(&b"pem"[..])
        );
        let calls = h.calls();
        assert_eq!(calls.get("get_map(request_headers)"), Some(&2));
        assert_eq!(
            calls.get("get_property(connection.peer_certificate)"),
            Some(&2)
        );
        assert_eq!(calls.get("set_effective_context"), Some(&2));
        assert!(h.bytes_in() > 3);
        h.reset_counts();
        assert!(h.calls().is_empty());
        assert_eq!(h.bytes_in(), 0);
    }

    #[test]
    fn clock_config_env_and_metrics() {
        let h = FakeHost::new()
            .at_unix(100)
            .with_config("{}")
            .with_env("K", "v");
        assert_eq!(h.now(), Some(UNIX_EPOCH + Duration::from_secs(100)));
        h.advance(Duration::from_secs(5));
        assert_eq!(h.now(), Some(UNIX_EPOCH + Duration::from_secs(105)));
        assert_eq!(h.plugin_configuration().as_deref(), Some(&b"{}"[..]));
        assert_eq!(h.env_var("K").as_deref(), Some("v"));
        assert_eq!(h.clone().without_clock().now(), None);
        let id = h.define_metric(MetricKind::Counter, "c");
        assert_eq!(h.define_metric(MetricKind::Counter, "c"), id);
        h.increment_metric(id.unwrap_or(u32::MAX), 2);
        h.increment_metric(u32::MAX, 1);
        assert_eq!(h.counter("c"), 2);
        assert_eq!(h.metric_names(), ["c"]);
    }
}
