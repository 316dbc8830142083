//! The real host: Envoy, through the proxy-wasm ABI.

/// Envoy, as proxy-wasm presents it.
pub struct ProxyHost;

use crate::headers::RequestHeaders;
use crate::host::{Host, MetricKind};
use proxy_wasm::hostcalls as hc;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};
use std::time::{Duration, SystemTime};

impl Host for ProxyHost {
    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        hc::get_buffer(
            BufferType::PluginConfiguration,
            0,
            crate::policy::MAX_CONFIG_BYTES + 1,
        )
        .ok()
        .flatten()
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn now(&self) -> Option<SystemTime> {
        hc::get_current_time().ok()
    }

    fn request_headers(&self) -> RequestHeaders {
        abi::request_headers()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        abi::property(path)
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let _ = hc::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn add_response_header(&self, name: &str, value: &str) {
        let _ = hc::add_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hc::send_http_response(status, headers.to_vec(), Some(body));
    }

    fn resume_request(&self) {
        let _ = hc::resume_http_request();
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        hc::set_effective_context(context_id).is_ok()
    }

    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hc::get_shared_data(key).unwrap_or((None, None))
    }

    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        !matches!(
            hc::set_shared_data(key, Some(value), cas),
            Err(Status::CasMismatch) | Err(_)
        )
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Option<u32> {
        hc::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout).ok()
    }

    fn http_call_response(&self, body_size: usize) -> (Option<String>, Option<Vec<u8>>) {
        let status = hc::get_map_bytes(MapType::HttpCallResponseHeaders)
            .ok()
            .and_then(|h| {
                h.into_iter()
                    .find(|(k, _)| k == ":status")
                    .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
            });
        let max = body_size.min(crate::jose::jwk::MAX_JWKS_BYTES + 1);
        // (introspection responses are bounded further by their parser)
        let body = hc::get_buffer(BufferType::HttpCallResponseBody, 0, max)
            .ok()
            .flatten();
        (status, body)
    }

    fn set_tick_period(&self, period: Duration) {
        let _ = hc::set_tick_period(period);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hc::define_metric(kind, name).ok()
    }

    fn increment_metric(&self, id: u32, by: i64) {
        let _ = hc::increment_metric(id, by);
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = hc::record_metric(id, value);
    }

    fn log(&self, level: log::Level, message: &str) {
        let level = match level {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        };
        let _ = hc::log(level, message);
    }
}

/// The two host calls of every request, straight over the proxy-wasm
/// ABI (v0.2.1). The SDK's wrappers panic on a status they do not
/// expect, which would kill the VM, and its header reader copies every
/// name and value twice; these read into one buffer, map every status
/// to "nothing", and parse what the host returns without trusting it.
mod abi {
    use crate::headers::RequestHeaders;
    use std::ptr::null_mut;

    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
    }

    const STATUS_OK: u32 = 0;
    const HTTP_REQUEST_HEADERS: u32 = 0;

    /// Takes ownership of a buffer the host allocated through the
    /// SDK's `proxy_on_memory_allocate` (a boxed slice of exactly
    /// `size` bytes).
    fn take(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
        if data.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer the host wrote comes from
        // `proxy_on_memory_allocate(size)`, which leaks a `Box<[u8]>`
        // of that length; rebuilding the Vec frees it exactly once.
        let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
        (status == STATUS_OK).then_some(bytes)
    }

    pub(super) fn property(path: &[&str]) -> Option<Vec<u8>> {
        // Path segments joined by NUL (the ABI's property path form),
        // on the stack: every request reads a property.
        let mut buf = [0u8; 128];
        let mut len = 0usize;
        for (i, part) in path.iter().enumerate() {
            let start = len + usize::from(i > 0);
            let end = start.checked_add(part.len())?;
            buf.get_mut(start..end)?.copy_from_slice(part.as_bytes());
            len = end;
        }
        let serialized = buf.get(..len)?;
        let (mut data, mut size) = (null_mut(), 0usize);
        // SAFETY: the path buffer outlives the call; the out-pointers
        // are valid locals.
        let status = unsafe {
            proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size)
        };
        take(status, data, size)
    }

    pub(super) fn request_headers() -> RequestHeaders {
        let (mut data, mut size) = (null_mut(), 0usize);
        // SAFETY: the out-pointers are valid locals.
        let status =
            unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, &mut data, &mut size) };
        take(status, data, size)
            .map(|bytes| RequestHeaders::from_abi(bytes).unwrap_or_default())
            .unwrap_or_default()
    }
}
