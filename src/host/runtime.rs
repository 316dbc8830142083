//! One wasm VM's state and the steps the contexts take on it: deciding a
//! request, pausing it while its provider's keys are missing or being
//! refetched, and keeping `remote_jwks` key sets fetched, shared and fresh.
//!
//! It talks to Envoy only through [`Host`], never through proxy-wasm, so
//! the native tests drive it with a fake host.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::binding::forwarded::{self, CertificateSource, Source};
use crate::binding::{Thumbprint, ThumbprintCache, thumbprint_of_pem};
use crate::decide::cache::{TokenCache, TokenDigest, token_digest};
use crate::decide::introspect::{self, IntrospectionCache};
use crate::decide::{self, ClientCertificate, Decision, HeaderOp, Request, Verifier};
use crate::error::AuthError;
use crate::headers::RequestHeaders;
use crate::host::jwks_fetch::{self, FetchState, SharedJwks};
use crate::jose::jwk::{KeyRing, KeySet, SkippedKey};
use crate::policy::{JwksSource, Policy, RemoteJwks};
use std::cell::RefCell;
use std::rc::Rc;

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
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
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

/// How often a VM looks at shared state while something is pending.
pub const POLL_MS: u64 = 100;
/// The longest idle tick: key refresh is checked at least this often.
pub const IDLE_TICK_MS: u64 = 60_000;

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

#[derive(Debug, Default, Clone, Copy)]
struct ProviderMetrics {
    allowed: Option<u32>,
    denied: Option<u32>,
    fetch_success: Option<u32>,
    fetch_failed: Option<u32>,
    keys_loaded: Option<u32>,
}

/// The stats of `/stats`, defined once per VM at configure time.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    denied: Option<u32>,
    cache_hit: Option<u32>,
    cache_miss: Option<u32>,
    untrusted_header: Option<u32>,
    cors_preflight_bypassed: Option<u32>,
    reasons: HashMap<&'static str, u32>,
    providers: Vec<ProviderMetrics>,
}

impl Metrics {
    pub fn define(host: &dyn Host, policy: &Policy) -> Metrics {
        let root = &policy.stats_root;
        let counter =
            |name: &str| host.define_metric(MetricKind::Counter, &format!("{root}.{name}"));
        let mut reasons = HashMap::new();
        for r in AuthError::REASONS {
            if let Some(id) = counter(&format!("denied.{r}")) {
                reasons.insert(r, id);
            }
        }
        let providers = policy
            .providers
            .iter()
            .map(|p| {
                let n = metric_safe(&p.name);
                let remote = matches!(p.jwks, JwksSource::Remote(_));
                let per = |what: &str| counter(&format!("provider.{n}.{what}"));
                ProviderMetrics {
                    allowed: per("allowed"),
                    denied: per("denied"),
                    fetch_success: remote.then(|| per("jwks_fetch_success")).flatten(),
                    fetch_failed: remote.then(|| per("jwks_fetch_failed")).flatten(),
                    keys_loaded: host.define_metric(
                        MetricKind::Gauge,
                        &format!("{root}.provider.{n}.keys_loaded"),
                    ),
                }
            })
            .collect();
        Metrics {
            allowed: counter("allowed"),
            denied: counter("denied"),
            cache_hit: counter("cache_hit"),
            cache_miss: counter("cache_miss"),
            untrusted_header: counter("untrusted_certificate_header"),
            cors_preflight_bypassed: counter("cors_preflight_bypassed"),
            reasons,
            providers,
        }
    }

    fn bump(host: &dyn Host, id: Option<u32>, by: u64) {
        if let (Some(id), true) = (id, by > 0) {
            host.increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }

    fn provider(&self, p: Option<usize>) -> ProviderMetrics {
        p.and_then(|p| self.providers.get(p).copied())
            .unwrap_or_default()
    }

    fn record(&self, host: &dyn Host, decision: &Decision) {
        match decision {
            // As jwt_authn: a bypassed preflight counts as that alone.
            Decision::Allow(a) if a.cors_preflight => {
                Self::bump(host, self.cors_preflight_bypassed, 1);
            }
            Decision::Allow(a) => {
                Self::bump(host, self.allowed, 1);
                Self::bump(host, self.provider(a.provider).allowed, 1);
            }
            Decision::Deny { error, provider } => {
                Self::bump(host, self.denied, 1);
                Self::bump(host, self.reasons.get(error.reason()).copied(), 1);
                Self::bump(host, self.provider(*provider).denied, 1);
            }
            Decision::Introspect { .. } => {}
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

// ---------------------------------------------------------------------------
// The VM
// ---------------------------------------------------------------------------

/// A `remote_jwks` provider's view of the shared key set.
#[derive(Debug)]
struct RemoteSlot {
    cfg: RemoteJwks,
    jwks_key: String,
    state_key: String,
    /// The shared sequence number installed in this VM's key ring.
    seq: u64,
    /// CAS of the shared entry last read, to skip re-parsing it.
    seen_cas: Option<u32>,
    fetched_at_ms: Option<u64>,
    refetch_requested: bool,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    context_id: u32,
    provider: usize,
    deadline_ms: u64,
}

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Allowed: the request goes upstream.
    Continue,
    /// Denied: a local response was sent.
    Responded,
    /// Paused until keys arrive (or the wait times out).
    Waiting,
}

/// An introspection call in flight for a paused stream.
#[derive(Debug, Clone, Copy)]
struct PendingIntrospection {
    context_id: u32,
    provider: usize,
    digest: TokenDigest,
}

pub struct Vm {
    policy: Arc<Policy>,
    metrics: Metrics,
    keys: KeyRing,
    remote: Vec<Option<RemoteSlot>>,
    cache: TokenCache,
    introspection: IntrospectionCache,
    introspections: HashMap<u32, PendingIntrospection>,
    /// Streams that must not move on: waiting for a decision, or denied.
    held: HashSet<u32>,
    thumbprints: Rc<RefCell<ThumbprintCache>>,
    waiters: Vec<Waiter>,
    /// Our own JWKS fetches in flight: call token → provider.
    calls: HashMap<u32, usize>,
}

fn now_ms(host: &dyn Host) -> Option<u64> {
    host.now()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
}

impl Vm {
    /// A VM for a validated policy. Remote key sets start empty; the first
    /// tick fetches them.
    pub fn new(host: &dyn Host, policy: Policy) -> Vm {
        let metrics = Metrics::define(host, &policy);
        let keys = KeyRing::for_policy(&policy);
        let remote: Vec<Option<RemoteSlot>> = policy
            .providers
            .iter()
            .map(|p| match &p.jwks {
                JwksSource::Remote(cfg) => {
                    let (jwks_key, state_key) = jwks_fetch::shared_keys(cfg);
                    // Create the fetch-state entry, so that leases are CAS'd.
                    if host.shared_data(&state_key).0.is_none() {
                        host.set_shared_data(&state_key, &FetchState::default().encode(), None);
                    }
                    Some(RemoteSlot {
                        cfg: cfg.clone(),
                        jwks_key,
                        state_key,
                        seq: 0,
                        seen_cas: None,
                        fetched_at_ms: None,
                        refetch_requested: false,
                    })
                }
                JwksSource::Local { .. } | JwksSource::None => None,
            })
            .collect();
        for (i, p) in policy.providers.iter().enumerate() {
            if let (JwksSource::Local { keys, .. }, Some(id)) =
                (&p.jwks, metrics.provider(Some(i)).keys_loaded)
            {
                host.record_metric(id, keys.len() as u64);
            }
        }
        let cache = TokenCache::new(policy.jwt_cache_size);
        let introspection = IntrospectionCache::new(policy.jwt_cache_size.max(64));
        let vm = Vm {
            policy: Arc::new(policy),
            metrics,
            keys,
            remote,
            cache,
            introspection,
            introspections: HashMap::new(),
            held: HashSet::new(),
            thumbprints: Rc::default(),
            waiters: Vec::new(),
            calls: HashMap::new(),
        };
        if vm.has_remote() {
            // Fetch on the first tick: clusters are not usable during configure.
            host.set_tick_period(Duration::from_millis(1));
        }
        vm
    }

    /// A provider's name, for logs.
    fn provider_name(&self, provider: usize) -> &str {
        self.policy
            .providers
            .get(provider)
            .map_or("-", |p| p.name.as_str())
    }

    fn has_remote(&self) -> bool {
        self.remote.iter().any(Option::is_some)
    }

    fn slot(&self, provider: usize) -> Option<&RemoteSlot> {
        self.remote.get(provider).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, provider: usize) -> Option<&mut RemoteSlot> {
        self.remote.get_mut(provider).and_then(Option::as_mut)
    }

    // -- requests ------------------------------------------------------------

    /// Decides the effective stream's request and applies the decision.
    /// `first` is false when a paused request is taken up again: it may no
    /// longer wait.
    pub fn process(&mut self, host: &dyn Host, context_id: u32, first: bool) -> Step {
        let step = self.decide_stream(host, context_id, first);
        if step == Step::Continue {
            self.release(context_id);
        } else {
            self.held.insert(context_id);
        }
        step
    }

    /// The stream may move on. Every stream passes here, so the set is not
    /// hashed while it is empty (its lookups already skip an empty set;
    /// its removal does not).
    fn release(&mut self, context_id: u32) {
        if !self.held.is_empty() {
            self.held.remove(&context_id);
        }
    }

    /// Whether the stream is paused or denied. Its body and trailers must
    /// then be held too: Envoy resumes a stream whose data callback says
    /// continue, which would let an undecided request through.
    pub fn is_held(&self, context_id: u32) -> bool {
        self.held.contains(&context_id)
    }

    fn decide_stream(&mut self, host: &dyn Host, context_id: u32, first: bool) -> Step {
        let headers = host.request_headers();
        let path = request_path(&headers);
        let Some(now_ms) = now_ms(host) else {
            let denial = Decision::Deny {
                error: AuthError::Internal,
                provider: None,
            };
            return self.apply(host, path, denial);
        };
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let mut cert = PeerCertificate {
            host,
            headers: &headers,
            connection: None,
            read: Vec::new(),
            untrusted: false,
            thumbprints: Rc::clone(&self.thumbprints),
        };
        let mut synced = false;
        let (hits, misses) = (self.cache.hits, self.cache.misses);
        loop {
            let decision = decide::decide(
                &self.policy,
                Verifier {
                    keys: &self.keys,
                    cache: &mut self.cache,
                    introspection: &self.introspection,
                },
                Request {
                    path,
                    headers: &headers,
                },
                &mut cert,
                now,
            );
            if first
                && let Decision::Deny {
                    error,
                    provider: Some(p),
                } = &decision
                && self.slot(*p).is_some()
            {
                let p = *p;
                match error {
                    // Before the first keys arrive (from another VM, or
                    // our own fetch), wait for them, up to the fetch timeout.
                    AuthError::KeysUnavailable => {
                        if !synced {
                            synced = true;
                            if self.sync(host, p) {
                                continue;
                            }
                        }
                        self.wait(host, context_id, p, now_ms);
                        return Step::Waiting;
                    }
                    // Rotation: another VM may have fetched newer keys;
                    // else refetch, at most once per min_refetch_interval.
                    AuthError::UnknownKid => {
                        if !synced {
                            synced = true;
                            if self.sync(host, p) {
                                continue;
                            }
                        }
                        if self.request_refetch(host, p, now_ms) {
                            self.wait(host, context_id, p, now_ms);
                            return Step::Waiting;
                        }
                    }
                    _ => {}
                }
            }
            // One request counts once: a hit, else a miss (a decision taken
            // again after new keys arrived looked the cache up twice).
            if self.cache.hits > hits {
                Metrics::bump(host, self.metrics.cache_hit, 1);
            } else if self.cache.misses > misses {
                Metrics::bump(host, self.metrics.cache_miss, 1);
            }
            if cert.untrusted {
                Metrics::bump(host, self.metrics.untrusted_header, 1);
            }
            if let Decision::Introspect { provider, token } = &decision {
                if first && self.introspect(host, context_id, *provider, token) {
                    return Step::Waiting;
                }
                let failed = Decision::Deny {
                    error: AuthError::IntrospectionFailed,
                    provider: Some(*provider),
                };
                return self.apply(host, path, failed);
            }
            return self.apply(host, path, decision);
        }
    }

    fn apply(&self, host: &dyn Host, path: &str, decision: Decision) -> Step {
        self.metrics.record(host, &decision);
        match decision {
            Decision::Introspect { .. } => {
                // `process` never applies this; fail closed if it ever did.
                host.send_response(500, &[], b"certbound: internal error\n");
                Step::Responded
            }
            Decision::Allow(allowed) => {
                for op in &allowed.ops {
                    match op {
                        HeaderOp::Remove(name) => host.set_request_header(name, None),
                        HeaderOp::Set(name, value) => host.set_request_header(name, Some(value)),
                    }
                }
                Step::Continue
            }
            Decision::Deny { error, provider } => {
                let provider = provider.map_or("-", |p| self.provider_name(p));
                host.log(
                    log::Level::Debug,
                    &format!(
                        "certbound: denied {} provider={provider} reason={} ({error})",
                        path.split('?').next().unwrap_or(""),
                        error.reason(),
                    ),
                );
                let denial = error.response();
                let challenge = denial
                    .www_authenticate
                    .as_deref()
                    .map(|c| ("www-authenticate", c));
                let headers: Vec<(&str, &str)> = challenge
                    .into_iter()
                    .chain([
                        ("content-type", "text/plain"),
                        ("cache-control", "no-store"),
                    ])
                    .collect();
                host.send_response(
                    denial.status,
                    &headers,
                    format!("{}\n", error.description()).as_bytes(),
                );
                Step::Responded
            }
        }
    }

    fn wait(&mut self, host: &dyn Host, context_id: u32, provider: usize, now_ms: u64) {
        let timeout = self.slot(provider).map_or(0, |s| s.cfg.timeout_ms);
        self.waiters.push(Waiter {
            context_id,
            provider,
            deadline_ms: now_ms.saturating_add(timeout),
        });
        host.set_tick_period(Duration::from_millis(POLL_MS));
    }

    /// The stream ended (client gone): forget it.
    pub fn forget(&mut self, context_id: u32) {
        self.release(context_id);
        self.waiters.retain(|w| w.context_id != context_id);
        self.introspections
            .retain(|_, p| p.context_id != context_id);
    }

    /// Asks `provider`'s introspection endpoint about `token` on behalf of
    /// the current stream (RFC 7662 §2.1, client_secret_basic).
    fn introspect(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        provider: usize,
        token: &str,
    ) -> bool {
        let Some(cfg) = self
            .policy
            .providers
            .get(provider)
            .and_then(|p| p.introspection.as_ref())
        else {
            return false;
        };
        let auth = introspect::basic_auth(&cfg.client_id, &cfg.client_secret);
        let headers = introspect::request_headers(cfg, &auth);
        let body = introspect::request_body(token);
        match host.dispatch_http_call(
            &cfg.cluster,
            &headers,
            Some(body.as_bytes()),
            Duration::from_millis(cfg.timeout_ms),
        ) {
            Some(call) => {
                self.introspections.insert(
                    call,
                    PendingIntrospection {
                        context_id,
                        provider,
                        digest: token_digest(token),
                    },
                );
                true
            }
            None => false,
        }
    }

    /// The introspection endpoint answered (or failed) for the current stream.
    pub fn on_introspection_response(&mut self, host: &dyn Host, call: u32, body_size: usize) {
        let Some(pending) = self.introspections.remove(&call) else {
            return;
        };
        let now = now_ms(host).map_or(0, |ms| i64::try_from(ms / 1000).unwrap_or(i64::MAX));
        let (status, body) = host.http_call_response(body_size);
        match introspect::parse_response(status.as_deref(), body.as_deref()) {
            Some(result) => {
                let duration = self
                    .policy
                    .providers
                    .get(pending.provider)
                    .and_then(|p| p.introspection.as_ref())
                    .map_or(0, |i| i.cache_duration_s);
                self.introspection
                    .insert(pending.digest, pending.provider, result, duration, now);
                if self.process(host, pending.context_id, false) == Step::Continue {
                    host.resume_request();
                }
            }
            None => {
                self.held.insert(pending.context_id);
                let name = self.provider_name(pending.provider);
                host.log(
                    log::Level::Warn,
                    &format!(
                        "certbound: provider \"{name}\": introspection failed (status {})",
                        status.as_deref().unwrap_or("none")
                    ),
                );
                let headers = host.request_headers();
                let path = request_path(&headers);
                let failed = Decision::Deny {
                    error: AuthError::IntrospectionFailed,
                    provider: Some(pending.provider),
                };
                self.apply(host, path, failed);
            }
        }
    }

    /// Takes up the paused requests that `pick` selects.
    fn wake(&mut self, host: &dyn Host, pick: impl Fn(&Waiter) -> bool) {
        let (ready, keep): (Vec<Waiter>, Vec<Waiter>) = self.waiters.iter().partition(|w| pick(w));
        self.waiters = keep;
        for w in ready {
            if !host.set_effective_context(w.context_id) {
                continue;
            }
            if self.process(host, w.context_id, false) == Step::Continue {
                host.resume_request();
            }
        }
    }

    fn request_refetch(&mut self, host: &dyn Host, provider: usize, now_ms: u64) -> bool {
        let Some(slot) = self.slot(provider) else {
            return false;
        };
        let state = FetchState::decode(host.shared_data(&slot.state_key).0.as_deref());
        let allowed = state.refetch_allowed(&slot.cfg, now_ms) || state.in_flight(now_ms);
        if allowed && let Some(slot) = self.slot_mut(provider) {
            slot.refetch_requested = true;
        }
        allowed
    }

    // -- keys ----------------------------------------------------------------

    /// Installs the shared key set if it is newer than ours. True if it was.
    fn sync(&mut self, host: &dyn Host, provider: usize) -> bool {
        let Some(slot) = self.slot(provider) else {
            return false;
        };
        let (bytes, cas) = host.shared_data(&slot.jwks_key);
        if cas.is_some() && cas == slot.seen_cas {
            return false;
        }
        let Some(shared) = bytes.as_deref().and_then(SharedJwks::decode) else {
            return false;
        };
        let newer = shared.seq > slot.seq;
        let parsed = if newer {
            match KeySet::parse(&shared.jwks) {
                Ok((keys, _)) => Some(keys),
                Err(_) => return false,
            }
        } else {
            None
        };
        if let Some(slot) = self.slot_mut(provider) {
            slot.seen_cas = cas;
            slot.fetched_at_ms = Some(shared.fetched_at_ms);
        }
        match parsed {
            Some(keys) => {
                self.install(host, provider, keys, shared.seq);
                true
            }
            None => false,
        }
    }

    fn install(&mut self, host: &dyn Host, provider: usize, keys: KeySet, seq: u64) {
        if let Some(id) = self.metrics.provider(Some(provider)).keys_loaded {
            host.record_metric(id, keys.len() as u64);
        }
        self.keys.install(provider, Arc::new(keys), seq);
        if let Some(slot) = self.slot_mut(provider) {
            slot.seq = seq;
        }
    }

    /// Starts a fetch of `provider`'s JWKS if one is due and no VM has one
    /// in flight: the lease is taken with compare-and-swap first.
    fn maybe_fetch(&mut self, host: &dyn Host, provider: usize, now_ms: u64) {
        let Some(slot) = self.slot(provider) else {
            return;
        };
        let (bytes, cas) = host.shared_data(&slot.state_key);
        let mut state = FetchState::decode(bytes.as_deref());
        let scheduled = state.scheduled_due(&slot.cfg, slot.fetched_at_ms, now_ms);
        let refetch = slot.refetch_requested && state.refetch_allowed(&slot.cfg, now_ms);
        if !scheduled && !refetch {
            return;
        }
        // Without a CAS value the entry was never created: do not race for it.
        if cas.is_none() {
            host.set_shared_data(&slot.state_key, &FetchState::default().encode(), None);
            return;
        }
        state.begin(&slot.cfg, now_ms);
        if !host.set_shared_data(&slot.state_key, &state.encode(), cas) {
            return; // another VM took the lease
        }
        let cfg = slot.cfg.clone();
        if let Some(slot) = self.slot_mut(provider) {
            slot.refetch_requested = false;
        }
        let headers = jwks_fetch::request_headers(&cfg);
        match host.dispatch_http_call(
            &cfg.cluster,
            &headers,
            None,
            Duration::from_millis(cfg.timeout_ms),
        ) {
            Some(token) => {
                self.calls.insert(token, provider);
            }
            None => self.fetch_failed(host, provider, now_ms, "cannot dispatch (unknown cluster?)"),
        }
    }

    fn update_state(&self, host: &dyn Host, provider: usize, f: impl Fn(&mut FetchState)) {
        let Some(slot) = self.slot(provider) else {
            return;
        };
        for _ in 0..8 {
            let (bytes, cas) = host.shared_data(&slot.state_key);
            let mut state = FetchState::decode(bytes.as_deref());
            f(&mut state);
            if host.set_shared_data(&slot.state_key, &state.encode(), cas) {
                return;
            }
        }
    }

    fn fetch_failed(&mut self, host: &dyn Host, provider: usize, now_ms: u64, why: &str) {
        Metrics::bump(host, self.metrics.provider(Some(provider)).fetch_failed, 1);
        self.update_state(host, provider, |s| s.fail(now_ms));
        let name = self.provider_name(provider);
        let has_keys = self.keys.get(provider).is_some();
        host.log(
            log::Level::Warn,
            &format!(
                "certbound: provider \"{name}\": JWKS fetch failed: {why}; {}",
                if has_keys {
                    "keeping the last good keys"
                } else {
                    "no keys yet"
                }
            ),
        );
    }

    /// The response to one of our JWKS fetches.
    pub fn on_fetch_response(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        let Some(provider) = self.calls.remove(&token) else {
            return;
        };
        let now_ms = now_ms(host).unwrap_or(0);
        let (status, body) = host.http_call_response(body_size);
        match jwks_fetch::parse_response(status.as_deref(), body.as_deref()) {
            Ok((text, keys, skipped)) => {
                let name = self.provider_name(provider).to_string();
                log_skipped_keys(host, &name, &skipped);
                let seq = self.publish(host, provider, text, now_ms);
                self.install(host, provider, keys, seq);
                self.update_state(host, provider, FetchState::succeed);
                Metrics::bump(host, self.metrics.provider(Some(provider)).fetch_success, 1);
                host.log(
                    log::Level::Info,
                    &format!("certbound: provider \"{name}\": JWKS loaded (version {seq})"),
                );
            }
            Err(e) => self.fetch_failed(host, provider, now_ms, &e.to_string()),
        }
        // Paused requests of this provider: decide them now, with what we have.
        self.wake(host, |w| w.provider == provider);
        self.schedule(host, now_ms);
    }

    /// Writes the new key set for every VM; returns its sequence number.
    fn publish(&mut self, host: &dyn Host, provider: usize, text: String, now_ms: u64) -> u64 {
        let Some(slot) = self.slot(provider) else {
            return 0;
        };
        let key = slot.jwks_key.clone();
        let mut seq = slot.seq.saturating_add(1);
        for _ in 0..8 {
            let (bytes, cas) = host.shared_data(&key);
            let old = bytes.as_deref().and_then(SharedJwks::decode);
            // An unchanged document keeps its number, so cached tokens stay valid.
            seq = match &old {
                Some(o) if o.jwks == text => o.seq.max(1),
                Some(o) => o.seq.max(slot.seq).saturating_add(1),
                None => slot.seq.saturating_add(1),
            };
            let entry = SharedJwks {
                seq,
                fetched_at_ms: now_ms,
                jwks: text.clone(),
            };
            if host.set_shared_data(&key, &entry.encode(), cas) {
                break;
            }
        }
        if let Some(slot) = self.slot_mut(provider) {
            slot.fetched_at_ms = Some(now_ms);
            slot.seen_cas = None;
        }
        seq
    }

    // -- ticks ---------------------------------------------------------------

    pub fn on_tick(&mut self, host: &dyn Host) {
        let Some(now_ms) = now_ms(host) else {
            return;
        };
        for p in 0..self.remote.len() {
            if self.slot(p).is_none() {
                continue;
            }
            if self.sync(host, p) {
                self.wake(host, |w| w.provider == p);
            }
            self.maybe_fetch(host, p, now_ms);
            // A refetch nobody may start now (and none in flight): decide with what we have.
            let idle = self.slot(p).is_some_and(|s| {
                let st = FetchState::decode(host.shared_data(&s.state_key).0.as_deref());
                !st.in_flight(now_ms) && !self.calls.values().any(|c| *c == p)
            });
            if idle
                && self.keys.get(p).is_some()
                && let Some(slot) = self.slot_mut(p)
                && slot.refetch_requested
            {
                slot.refetch_requested = false;
                self.wake(host, |w| w.provider == p);
            }
        }
        self.wake(host, |w| w.deadline_ms <= now_ms);
        self.schedule(host, now_ms);
    }

    /// Ticks run only while something is due: fast while requests wait or
    /// keys are missing, else at the next refresh of any key set.
    fn schedule(&self, host: &dyn Host, now_ms: u64) {
        if !self.has_remote() {
            host.set_tick_period(Duration::ZERO);
            return;
        }
        let pending = !self.waiters.is_empty()
            || !self.calls.is_empty()
            || self.remote.iter().enumerate().any(|(p, s)| {
                s.as_ref()
                    .is_some_and(|s| s.refetch_requested || self.keys.get(p).is_none())
            });
        let ms = if pending {
            POLL_MS
        } else {
            self.remote
                .iter()
                .flatten()
                .map(|s| {
                    let st = FetchState::decode(host.shared_data(&s.state_key).0.as_deref());
                    st.next_check_in(&s.cfg, s.fetched_at_ms, now_ms)
                })
                .min()
                .unwrap_or(IDLE_TICK_MS)
                .clamp(POLL_MS, IDLE_TICK_MS)
        };
        host.set_tick_period(Duration::from_millis(ms));
    }
}

/// `:path`, or `/` for a request without one.
fn request_path(headers: &RequestHeaders) -> &str {
    headers
        .iter()
        .find(|(n, _)| *n == ":path")
        .map_or("/", |(_, v)| v)
}

/// Logs the keys a JWKS had that cannot be used, and why.
pub fn log_skipped_keys(host: &dyn Host, provider: &str, skipped: &[SkippedKey]) {
    for s in skipped {
        host.log(
            log::Level::Warn,
            &format!(
                "certbound: provider \"{provider}\": skipped JWKS key {} (kid {:?}): {}",
                s.index, s.kid, s.reason
            ),
        );
    }
}

/// The request's client certificate, read from the host on first use, per
/// source: the connection, or a forwarded header believed only from a
/// trusted hop.
struct PeerCertificate<'a> {
    host: &'a dyn Host,
    headers: &'a RequestHeaders,
    /// The connection's thumbprint, once read (it depends on nothing else
    /// in the source's configuration).
    connection: Option<Option<Thumbprint>>,
    /// Forwarded certificates read so far, by source.
    read: Vec<(CertificateSource, Option<Thumbprint>)>,
    /// A forwarded certificate header came from an untrusted hop.
    untrusted: bool,
    thumbprints: Rc<RefCell<ThumbprintCache>>,
}

impl ClientCertificate for PeerCertificate<'_> {
    fn thumbprint(&mut self, source: &CertificateSource) -> Option<Thumbprint> {
        if source.source == Source::Connection {
            return *self
                .connection
                .get_or_insert_with(|| read_peer_thumbprint(self.host, &self.thumbprints));
        }
        if let Some((_, t)) = self.read.iter().find(|(s, _)| s == source) {
            return *t;
        }
        let t = self.forwarded(source, &source.source);
        self.read.push((source.clone(), t));
        t
    }
}

impl PeerCertificate<'_> {
    fn forwarded(&mut self, cfg: &CertificateSource, source: &Source) -> Option<Thumbprint> {
        let name = source.header()?;
        let mut values = self.headers.values(name);
        let value = values.next()?;
        if values.next().is_some() {
            // Two copies of the header: no way to tell which hop wrote which.
            return None;
        }
        let text = |path: &[&str]| {
            self.host
                .property(path)
                .and_then(|b| String::from_utf8(b).ok())
        };
        let address = text(&["source", "address"]);
        let san = text(&["connection", "uri_san_peer_certificate"]);
        if !cfg.trusts(address.as_deref(), san.as_deref()) {
            self.untrusted = true;
            return None;
        }
        match source {
            Source::Xfcc => forwarded::from_xfcc(value),
            Source::Header { encoding, .. } => forwarded::from_header(value, *encoding),
            Source::Connection => None,
        }
    }
}
/// The connection's client-certificate thumbprint. First Envoy's
/// `connection.sha256_peer_certificate_digest`: the SHA-256 of the leaf
/// certificate's DER, which is exactly the `x5t#S256` input (RFC 8705
/// §3.1), as 64 hex digits that Envoy computes once per connection. That
/// spares every request a copy of the PEM and a lookup keyed by it. Else
/// `connection.peer_certificate` (PEM, or URL-encoded PEM), hashed here.
fn read_peer_thumbprint(host: &dyn Host, cache: &RefCell<ThumbprintCache>) -> Option<Thumbprint> {
    if let Some(t) = host
        .property(&["connection", "sha256_peer_certificate_digest"])
        .and_then(|d| Thumbprint::from_hex(core::str::from_utf8(&d).ok()?))
    {
        return Some(t);
    }
    let pem = host
        .property(&["connection", "peer_certificate"])
        .filter(|p| !p.is_empty())?;
    let computed = match cache.try_borrow_mut() {
        Ok(mut c) => c.thumbprint_of_pem(&pem),
        Err(_) => thumbprint_of_pem(&pem),
    };
    match computed {
        Ok(t) => Some(t),
        Err(e) => {
            host.log(
                log::Level::Warn,
                &format!("certbound: unreadable peer certificate: {e:?}"),
            );
            None
        }
    }
}
