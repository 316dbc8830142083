//! What the core asks of a proxy ([`Host`]), and the host-generic runtime
//! that drives the decision through it: the runtime ([`Vm`]), the client
//! certificate as the host presents it, key fetching and the stats.

#[cfg(not(target_arch = "wasm32"))]
pub mod fake;
pub mod jwks_fetch;
pub mod peer;
pub mod replay;
pub mod runtime;
pub mod stats;

pub use runtime::{Step, Vm};

use std::time::Duration;

use crate::headers::RequestHeaders;

/// Everything the filter asks of its host. Failures fold into `None` or
/// `false`, and every caller fails closed on them.
pub trait Host {
    fn plugin_configuration(&self) -> Option<Vec<u8>>;
    /// An environment variable of the VM (`vm_config.environment_variables`).
    fn env_var(&self, name: &str) -> Option<String>;
    fn now(&self) -> Option<std::time::SystemTime>;
    /// The request headers of the effective stream.
    fn request_headers(&self) -> RequestHeaders;
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// [`Host::property`], lent to `read` instead of copied where the host
    /// can: every request reads the connection's certificate digest.
    fn read_property(&self, path: &[&str], read: &mut dyn FnMut(&[u8])) {
        if let Some(value) = self.property(path) {
            read(&value);
        }
    }
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Adds a header to the response of the effective stream, from its
    /// response-headers callback.
    fn add_response_header(&self, name: &str, value: &str);
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Resumes the effective stream, paused earlier.
    fn resume_request(&self);
    /// Makes `context_id` the stream later calls act on; `false` if it is gone.
    fn set_effective_context(&self, context_id: u32) -> bool;
    fn shared_data(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Compare-and-swap write; `false` on a CAS mismatch or any failure.
    fn set_shared_data(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Option<u32>;
    /// `:status` and body of the HTTP call response being delivered.
    fn http_call_response(&self, body_size: usize) -> (Option<String>, Option<Vec<u8>>);
    /// Ticks of the root context; zero stops them.
    fn set_tick_period(&self, period: Duration);
    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment_metric(&self, id: u32, by: i64);
    fn record_metric(&self, id: u32, value: u64);
    fn log(&self, level: log::Level, message: &str);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}
