//! The proxy-wasm contexts, and [`ProxyHost`]: the only code that calls the
//! proxy-wasm ABI.
//!
//! The root context validates the configuration and owns the VM state
//! ([`Vm`]); each HTTP context shares it. Both reach Envoy only through
//! the [`Host`] trait, so the native tests run these very contexts against
//! a fake host.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::cell::RefCell;
use std::rc::Rc;

use crate::host::runtime::log_skipped_keys;
pub use crate::host::runtime::{Host, MetricKind, Step, Vm};

/// The root context: parses and validates the configuration.
pub struct CertboundRoot<H: Host> {
    host: Rc<H>,
    vm: Option<Rc<RefCell<Vm>>>,
}

impl<H: Host> CertboundRoot<H> {
    pub fn new(host: H) -> Self {
        CertboundRoot {
            host: Rc::new(host),
            vm: None,
        }
    }

    /// The HTTP context for one stream. `None` before a good configuration.
    pub fn http_context(&self, context_id: u32) -> Option<CertboundHttp<H>> {
        Some(CertboundHttp {
            host: Rc::clone(&self.host),
            vm: Rc::clone(self.vm.as_ref()?),
            context_id,
        })
    }
}

impl<H: Host> Context for CertboundRoot<H> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(vm) = &self.vm
            && let Ok(mut vm) = vm.try_borrow_mut()
        {
            vm.on_fetch_response(&*self.host, token_id, body_size);
        }
    }
}

impl<H: Host + 'static> RootContext for CertboundRoot<H> {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let host = &*self.host;
        let Some(bytes) = host.plugin_configuration() else {
            host.log(
                log::Level::Error,
                "certbound: no plugin configuration; refusing to start",
            );
            return false;
        };
        let env = |name: &str| host.env_var(name);
        match crate::policy::parse(&bytes, &env) {
            Ok(policy) => {
                for p in &policy.providers {
                    if let crate::policy::JwksSource::Local { skipped, .. } = &p.jwks {
                        log_skipped_keys(host, &p.name, skipped);
                    }
                    if p.audiences.is_empty() {
                        // As jwt_authn: no `audiences`, no `aud` check. Said
                        // at start (once per VM), since a token meant for
                        // another API of the same issuer is then accepted
                        // (RFC 7519 §4.1.3).
                        host.log(
                            log::Level::Warn,
                            &format!(
                                "certbound: provider {:?} has no audiences: tokens for any audience of its issuer are accepted",
                                p.name
                            ),
                        );
                    }
                }
                host.log(
                    log::Level::Info,
                    &format!(
                        "certbound: configured {} provider(s), {} rule(s)",
                        policy.providers.len(),
                        policy.rules.len()
                    ),
                );
                self.vm = Some(Rc::new(RefCell::new(Vm::new(host, policy))));
                true
            }
            Err(e) => {
                host.log(log::Level::Error, &format!("certbound: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(vm) = &self.vm
            && let Ok(mut vm) = vm.try_borrow_mut()
        {
            vm.on_tick(&*self.host);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.http_context(context_id)
            .map(|c| Box::new(c) as Box<dyn HttpContext>)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream.
pub struct CertboundHttp<H: Host> {
    host: Rc<H>,
    vm: Rc<RefCell<Vm>>,
    context_id: u32,
}

impl<H: Host> Context for CertboundHttp<H> {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.on_introspection_response(&*self.host, token_id, body_size);
        }
    }

    fn on_done(&mut self) -> bool {
        if let Ok(mut vm) = self.vm.try_borrow_mut() {
            vm.forget(self.context_id);
        }
        true
    }
}

impl<H: Host> CertboundHttp<H> {
    /// A body or trailers of a request that is still paused (or denied)
    /// stay buffered: answering Continue here would resume the stream.
    fn hold_if_undecided(&self) -> Action {
        match self.vm.try_borrow() {
            Ok(vm) if !vm.is_held(self.context_id) => Action::Continue,
            _ => Action::Pause,
        }
    }
}

impl<H: Host> HttpContext for CertboundHttp<H> {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Ok(mut vm) = self.vm.try_borrow_mut() else {
            // Unreachable in a single-threaded VM; fail closed regardless.
            self.host.send_response(500, &[], b"certbound: busy\n");
            return Action::Pause;
        };
        match vm.process(&*self.host, self.context_id, true) {
            Step::Continue => Action::Continue,
            Step::Responded | Step::Waiting => Action::Pause,
        }
    }

    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        self.hold_if_undecided()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.hold_if_undecided()
    }
}

/// The real host: Envoy, through the proxy-wasm ABI.
#[cfg(target_arch = "wasm32")]
pub struct ProxyHost;

#[cfg(target_arch = "wasm32")]
mod proxy_host {
    use super::ProxyHost;
    use crate::headers::RequestHeaders;
    use crate::host::runtime::{Host, MetricKind};
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
}
