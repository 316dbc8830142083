//! The proxy-wasm contexts: the only place that knows about the host.
//!
//! The root context owns the validated [`Policy`] and hands each HTTP
//! context an `Arc` of it. Both contexts reach the host only through the
//! [`Host`] trait: [`ProxyHost`] calls Envoy, and the native tests supply a
//! fake, so the contexts themselves run under `cargo test`.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::binding::{Thumbprint, thumbprint_of_pem};
use crate::config::{self, Policy};
use crate::decision::{self, ClientCertificate, Decision, HeaderOp, Request};
use crate::error::AuthError;

/// Everything the filter asks of its host. Failures are folded into
/// `None`/`false`: the decision fails closed on a missing fact.
pub trait Host {
    fn plugin_configuration(&self) -> Option<Vec<u8>>;
    /// An environment variable of the VM (`vm_config.environment_variables`).
    fn env_var(&self, name: &str) -> Option<String>;
    fn now(&self) -> Option<SystemTime>;
    fn request_headers(&self) -> Vec<(String, String)>;
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    fn define_counter(&self, name: &str) -> Option<u32>;
    fn increment_counter(&self, id: u32);
    fn log(&self, level: log::Level, message: &str);
}

/// The counters of `/stats`, defined once per VM at configure time.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    denied: Option<u32>,
    reasons: HashMap<&'static str, u32>,
    /// Per provider: (allowed, denied).
    providers: Vec<(Option<u32>, Option<u32>)>,
}

impl Metrics {
    fn define(host: &dyn Host, policy: &Policy) -> Metrics {
        let mut reasons = HashMap::new();
        for r in AuthError::REASONS {
            if let Some(id) = host.define_counter(&format!("certbound.denied.{r}")) {
                reasons.insert(r, id);
            }
        }
        let providers = policy
            .providers
            .iter()
            .map(|p| {
                let name = metric_safe(&p.name);
                (
                    host.define_counter(&format!("certbound.provider.{name}.allowed")),
                    host.define_counter(&format!("certbound.provider.{name}.denied")),
                )
            })
            .collect();
        Metrics {
            allowed: host.define_counter("certbound.allowed"),
            denied: host.define_counter("certbound.denied"),
            reasons,
            providers,
        }
    }

    fn record(&self, host: &dyn Host, decision: &Decision) {
        let bump = |id: Option<u32>| {
            if let Some(id) = id {
                host.increment_counter(id);
            }
        };
        match decision {
            Decision::Allow(a) => {
                bump(self.allowed);
                bump(
                    a.provider
                        .and_then(|p| self.providers.get(p))
                        .and_then(|p| p.0),
                );
            }
            Decision::Deny { error, provider } => {
                bump(self.denied);
                bump(self.reasons.get(error.reason()).copied());
                bump(
                    provider
                        .and_then(|p| self.providers.get(p))
                        .and_then(|p| p.1),
                );
            }
        }
    }
}

/// Stat names allow `[A-Za-z0-9_-]`; anything else becomes `_`.
fn metric_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The validated configuration and its metrics, shared by every stream.
#[derive(Debug)]
pub struct Runtime {
    pub policy: Policy,
    pub metrics: Metrics,
}

/// The root context: parses and validates the configuration.
pub struct CertboundRoot<H: Host> {
    host: Rc<H>,
    runtime: Option<Arc<Runtime>>,
}

impl<H: Host> CertboundRoot<H> {
    pub fn new(host: H) -> Self {
        CertboundRoot {
            host: Rc::new(host),
            runtime: None,
        }
    }

    pub fn runtime(&self) -> Option<&Arc<Runtime>> {
        self.runtime.as_ref()
    }

    /// The HTTP context for one stream. `None` before a good configuration.
    pub fn http_context(&self) -> Option<CertboundHttp<H>> {
        Some(CertboundHttp {
            host: Rc::clone(&self.host),
            runtime: Arc::clone(self.runtime.as_ref()?),
        })
    }
}

impl<H: Host> Context for CertboundRoot<H> {}

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
        match config::parse(&bytes, &env) {
            Ok(policy) => {
                for p in &policy.providers {
                    for s in &p.skipped_keys {
                        host.log(
                            log::Level::Warn,
                            &format!(
                                "certbound: provider \"{}\": skipped JWKS key {} (kid {:?}): {}",
                                p.name, s.index, s.kid, s.reason
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
                let metrics = Metrics::define(host, &policy);
                self.runtime = Some(Arc::new(Runtime { policy, metrics }));
                true
            }
            Err(e) => {
                host.log(log::Level::Error, &format!("certbound: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.http_context()
            .map(|c| Box::new(c) as Box<dyn HttpContext>)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One HTTP stream.
pub struct CertboundHttp<H: Host> {
    host: Rc<H>,
    runtime: Arc<Runtime>,
}

/// The connection's client certificate, read from the host on first use.
struct PeerCertificate<'a> {
    host: &'a dyn Host,
    read: Option<Option<Thumbprint>>,
}

impl ClientCertificate for PeerCertificate<'_> {
    fn thumbprint(&mut self) -> Option<Thumbprint> {
        if let Some(t) = self.read {
            return t;
        }
        let t = read_peer_thumbprint(self.host);
        self.read = Some(t);
        t
    }
}

/// `connection.peer_certificate` (PEM, or URL-encoded PEM), else the
/// hex `connection.sha256_peer_certificate_digest` of older Envoys.
fn read_peer_thumbprint(host: &dyn Host) -> Option<Thumbprint> {
    if let Some(pem) = host
        .property(&["connection", "peer_certificate"])
        .filter(|p| !p.is_empty())
    {
        return match thumbprint_of_pem(&pem) {
            Ok(t) => Some(t),
            Err(e) => {
                host.log(
                    log::Level::Warn,
                    &format!("certbound: unreadable peer certificate: {e:?}"),
                );
                None
            }
        };
    }
    let digest = host.property(&["connection", "sha256_peer_certificate_digest"])?;
    let digest = core::str::from_utf8(&digest).ok()?;
    Thumbprint::from_hex(digest)
}

impl<H: Host> CertboundHttp<H> {
    /// Decides the request and applies the decision.
    fn handle_request_headers(&mut self) -> Action {
        let host: &dyn Host = &*self.host;
        let headers = host.request_headers();
        let path = headers
            .iter()
            .find(|(n, _)| n == ":path")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/");
        let now = host
            .now()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let mut cert = PeerCertificate { host, read: None };
        let decision = match now {
            Some(now) => decision::decide(
                &self.runtime.policy,
                Request {
                    path,
                    headers: &headers,
                },
                &mut cert,
                now,
            ),
            None => Decision::Deny {
                error: AuthError::Internal,
                provider: None,
            },
        };
        self.runtime.metrics.record(host, &decision);
        match decision {
            Decision::Allow(allowed) => {
                for op in &allowed.ops {
                    match op {
                        HeaderOp::Remove(name) => host.set_request_header(name, None),
                        HeaderOp::Set(name, value) => host.set_request_header(name, Some(value)),
                    }
                }
                Action::Continue
            }
            Decision::Deny { error, provider } => {
                let provider = provider
                    .and_then(|p| self.runtime.policy.providers.get(p))
                    .map(|p| p.name.as_str())
                    .unwrap_or("-");
                host.log(
                    log::Level::Debug,
                    &format!(
                        "certbound: denied {path_only} provider={provider} reason={} ({error})",
                        error.reason(),
                        path_only = path.split('?').next().unwrap_or(""),
                    ),
                );
                let denial = error.response();
                host.send_response(
                    denial.status,
                    &[
                        ("www-authenticate", denial.www_authenticate.as_str()),
                        ("content-type", "text/plain"),
                        ("cache-control", "no-store"),
                    ],
                    format!("{}\n", error.description()).as_bytes(),
                );
                Action::Pause
            }
        }
    }
}

impl<H: Host> Context for CertboundHttp<H> {}

impl<H: Host> HttpContext for CertboundHttp<H> {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.handle_request_headers()
    }
}

/// The real host: Envoy, through the proxy-wasm ABI.
#[cfg(target_arch = "wasm32")]
pub struct ProxyHost;

#[cfg(target_arch = "wasm32")]
impl Host for ProxyHost {
    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        use proxy_wasm::types::BufferType;
        proxy_wasm::hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            config::MAX_CONFIG_BYTES + 1,
        )
        .ok()
        .flatten()
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn now(&self) -> Option<SystemTime> {
        proxy_wasm::hostcalls::get_current_time().ok()
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        use proxy_wasm::types::MapType;
        // Bytes, not `get_map`: header values may hold non-UTF-8 octets
        // (obs-text), on which the SDK's string variant would panic.
        proxy_wasm::hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
            .map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        proxy_wasm::hostcalls::get_property(path.to_vec())
            .ok()
            .flatten()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        use proxy_wasm::types::MapType;
        let _ = proxy_wasm::hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn send_response(&self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let _ = proxy_wasm::hostcalls::send_http_response(status, headers.to_vec(), Some(body));
    }

    fn define_counter(&self, name: &str) -> Option<u32> {
        proxy_wasm::hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok()
    }

    fn increment_counter(&self, id: u32) {
        let _ = proxy_wasm::hostcalls::increment_metric(id, 1);
    }

    fn log(&self, level: log::Level, message: &str) {
        use proxy_wasm::types::LogLevel;
        let level = match level {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        };
        let _ = proxy_wasm::hostcalls::log(level, message);
    }
}
