//! The runtime of one filter instance (a wasm VM, or a native worker):
//! deciding a request, pausing it while its provider's keys are missing or
//! being refetched, introspecting opaque tokens, and keeping `remote_jwks`
//! key sets fetched, shared and fresh.
//!
//! It talks to the proxy only through [`Host`], so native tests drive it
//! with a fake host.

mod introspection;
mod keys;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::binding::ThumbprintCache;
use crate::decide::cache::{SharedTokenCache, TokenCache, TokenDigest};
use crate::decide::introspect::IntrospectionCache;
use crate::decide::keys::KeyRing;
use crate::decide::{self, Decision, HeaderOp, Request, Verifier};
use crate::error::{AuthError, Schemes};
use crate::headers::RequestHeaders;
use crate::host::Host;
use crate::host::jwks_fetch::{self, FetchState, RemoteSlot};
use crate::host::peer::PeerCertificate;
use crate::host::replay;
use crate::host::stats::Metrics;
use crate::jose::alg::Alg;
use crate::jose::jwk::SkippedKey;
use crate::policy::{JwksSource, Policy, ProviderId};

/// How often a VM looks at shared state while something is pending.
pub const POLL_MS: u64 = 100;
/// The longest idle tick: key refresh is checked at least this often.
pub const IDLE_TICK_MS: u64 = 60_000;

#[derive(Debug, Clone, Copy)]
struct Waiter {
    context_id: u32,
    provider: ProviderId,
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
    provider: ProviderId,
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
    thumbprints: ThumbprintCache,
    waiters: Vec<Waiter>,
    /// Our own JWKS fetches in flight: call token → provider.
    calls: HashMap<u32, ProviderId>,
    /// The proof algorithms of every provider with DPoP, for challenges
    /// that name no provider.
    dpop_algs: Vec<Alg>,
    /// The longest DPoP window of any provider: how long proofs are kept.
    dpop_window: u64,
    /// Fresh `DPoP-Nonce`s for the responses of allowed streams whose proof
    /// carried an ageing nonce (RFC 9449 §8.2).
    nonces: HashMap<u32, String>,
    /// Whether this instance starts the scheduled fetches of key sets (the
    /// first, and each refresh), or leaves them to another that shares its
    /// key sets; it refetches for an unknown `kid` either way.
    scheduled_fetches: bool,
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
        for (i, p) in policy.each_provider() {
            if let (JwksSource::Local { keys, .. }, Some(id)) =
                (&p.jwks, metrics.provider(Some(i)).keys_loaded)
            {
                host.record_metric(id, keys.len() as u64);
            }
        }
        let mut dpop_algs: Vec<Alg> = Vec::new();
        for d in policy.providers.iter().filter_map(|p| p.dpop.as_ref()) {
            for alg in &d.config.algorithms {
                if !dpop_algs.contains(alg) {
                    dpop_algs.push(*alg);
                }
            }
        }
        let dpop_window = policy
            .providers
            .iter()
            .filter_map(|p| p.dpop.as_ref())
            .map(|d| d.config.window_secs())
            .max()
            .unwrap_or(0);
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
            thumbprints: ThumbprintCache::default(),
            waiters: Vec::new(),
            calls: HashMap::new(),
            dpop_algs,
            dpop_window,
            nonces: HashMap::new(),
            scheduled_fetches: true,
        };
        if vm.has_remote() {
            // Fetch on the first tick: clusters are not usable during configure.
            host.set_tick_period(Duration::from_millis(1));
        }
        vm
    }

    /// Puts `shared` behind this runtime's token cache: the runtimes of one
    /// configuration on several threads verify each token once between them.
    pub fn share_token_cache(&mut self, shared: Arc<SharedTokenCache>) {
        self.cache.share(shared);
    }

    /// Leaves the scheduled fetches of key sets to another instance (one
    /// that keeps them on a timer of its own): this one installs what that
    /// one publishes, and refetches only for an unknown `kid`.
    pub fn leave_scheduled_fetches(&mut self) {
        self.scheduled_fetches = false;
    }

    /// A provider's name, for logs.
    fn provider_name(&self, provider: ProviderId) -> &str {
        &self.policy.provider(provider).name
    }

    fn has_remote(&self) -> bool {
        self.remote.iter().any(Option::is_some)
    }

    fn slot(&self, provider: ProviderId) -> Option<&RemoteSlot> {
        self.remote.get(provider.index()).and_then(Option::as_ref)
    }

    fn slot_mut(&mut self, provider: ProviderId) -> Option<&mut RemoteSlot> {
        self.remote
            .get_mut(provider.index())
            .and_then(Option::as_mut)
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
        // Lent out for the decision, which may call back into `self`.
        let mut thumbprints = std::mem::take(&mut self.thumbprints);
        let step = self.decide_with(host, context_id, first, &mut thumbprints);
        self.thumbprints = thumbprints;
        step
    }

    fn decide_with(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        first: bool,
        thumbprints: &mut ThumbprintCache,
    ) -> Step {
        let headers = host.request_headers();
        let path = request_path(&headers);
        let Some(now_ms) = now_ms(host) else {
            let denial = Decision::Deny {
                error: AuthError::Internal,
                provider: None,
            };
            return self.apply(host, context_id, &headers, denial, 0);
        };
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let mut cert = PeerCertificate {
            host,
            headers: &headers,
            connection: None,
            read: Vec::new(),
            untrusted: false,
            thumbprints,
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
                return self.apply(host, context_id, &headers, failed, now);
            }
            return self.apply(host, context_id, &headers, decision, now);
        }
    }

    /// Carries out a decision taken at `now` (Unix seconds).
    fn apply(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        headers: &RequestHeaders,
        decision: Decision,
        now: i64,
    ) -> Step {
        // A DPoP proof counts once (RFC 9449 §11.1): recorded before the
        // request goes on, refused if it was seen.
        let decision = match decision {
            Decision::Allow(allowed) if allowed.dpop.is_some() => {
                let seen = allowed
                    .dpop
                    .map(|p| replay::check_and_record(host, &p, self.dpop_window, now));
                match seen {
                    Some(Err(error)) => Decision::Deny {
                        error,
                        provider: allowed.provider,
                    },
                    _ => Decision::Allow(allowed),
                }
            }
            other => other,
        };
        self.metrics.record(host, &decision);
        match decision {
            Decision::Introspect { .. } => {
                // `process` never applies this; fail closed if it ever did.
                host.send_response(500, &[], b"certbound: internal error\n");
                Step::Responded
            }
            Decision::Metadata => {
                let body = self
                    .policy
                    .resource_metadata
                    .as_ref()
                    .map_or("", |m| m.document.as_str());
                host.send_response(
                    200,
                    &[
                        ("content-type", "application/json"),
                        ("cache-control", "max-age=300"),
                    ],
                    body.as_bytes(),
                );
                Step::Responded
            }
            Decision::Allow(allowed) => {
                // RFC 9449 §8.2: a proof whose nonce ages gets the next one
                // with the response.
                let refresh = allowed
                    .dpop
                    .filter(|p| p.refresh_nonce)
                    .and(allowed.provider)
                    .and_then(|p| self.policy.provider(p).dpop.as_ref())
                    .and_then(|d| d.config.nonce.as_ref())
                    .map(|n| n.issue(now));
                if let Some(nonce) = refresh {
                    Metrics::bump(host, self.metrics.dpop_nonce_issued, 1);
                    self.nonces.insert(context_id, nonce);
                }
                for op in &allowed.ops {
                    match op {
                        HeaderOp::Remove(name) => host.set_request_header(name, None),
                        HeaderOp::Set(name, value) => host.set_request_header(name, Some(value)),
                    }
                }
                Step::Continue
            }
            Decision::Deny { error, provider } => {
                self.deny(host, headers, &error, provider, now);
                Step::Responded
            }
        }
    }

    /// Answers a denied request: its status, the challenge of each scheme
    /// it could have used, and, when a DPoP proof lacked a valid nonce, a
    /// fresh `DPoP-Nonce` (RFC 9449 §9).
    fn deny(
        &self,
        host: &dyn Host,
        headers: &RequestHeaders,
        error: &AuthError,
        provider: Option<ProviderId>,
        now: i64,
    ) {
        let path = request_path(headers);
        let name = provider.map_or("-", |p| self.provider_name(p));
        host.log(
            log::Level::Debug,
            &format!(
                "certbound: denied {} provider={name} reason={} ({error})",
                path.split('?').next().unwrap_or(""),
                error.reason(),
            ),
        );
        let dpop_used = headers
            .values("authorization")
            .any(|v| v.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("dpop ")));
        let denial = error.response(&self.schemes(provider, dpop_used));
        let nonce = match error {
            AuthError::Dpop(e) if e.wants_nonce() => provider
                .and_then(|p| self.policy.provider(p).dpop.as_ref())
                .and_then(|d| d.config.nonce.as_ref())
                .map(|n| n.issue(now)),
            _ => None,
        };
        if nonce.is_some() {
            Metrics::bump(host, self.metrics.dpop_nonce_issued, 1);
        }
        let mut out: Vec<(&str, &str)> = denial
            .www_authenticate
            .iter()
            .map(|c| ("www-authenticate", c.as_str()))
            .collect();
        if let Some(n) = &nonce {
            out.push(("dpop-nonce", n));
        }
        out.push(("content-type", "text/plain"));
        out.push(("cache-control", "no-store"));
        host.send_response(
            denial.status,
            &out,
            format!("{}\n", error.description()).as_bytes(),
        );
    }

    /// The schemes a denial challenges: those of the provider the token was
    /// routed to, or, when none is known, of every provider.
    fn schemes(&self, provider: Option<ProviderId>, dpop_used: bool) -> Schemes<'_> {
        let resource_metadata = self
            .policy
            .resource_metadata
            .as_ref()
            .map(|m| m.url.as_str());
        let (bearer, dpop) = match provider.map(|p| self.policy.provider(p)) {
            Some(p) => (
                !p.dpop.as_ref().is_some_and(|d| d.config.required),
                p.dpop.as_ref().map(|d| d.config.algorithms.as_slice()),
            ),
            None => (
                self.policy
                    .providers
                    .iter()
                    .any(|p| !p.dpop.as_ref().is_some_and(|d| d.config.required)),
                (!self.dpop_algs.is_empty()).then_some(self.dpop_algs.as_slice()),
            ),
        };
        Schemes {
            bearer,
            dpop,
            dpop_used,
            resource_metadata,
        }
    }

    fn wait(&mut self, host: &dyn Host, context_id: u32, provider: ProviderId, now_ms: u64) {
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
        if !self.nonces.is_empty() {
            self.nonces.remove(&context_id);
        }
        self.waiters.retain(|w| w.context_id != context_id);
        self.introspections
            .retain(|_, p| p.context_id != context_id);
    }

    /// The upstream's response to an allowed stream: it carries the fresh
    /// `DPoP-Nonce` the stream earned, if any.
    pub fn on_response_headers(&mut self, host: &dyn Host, context_id: u32) {
        if self.nonces.is_empty() {
            return;
        }
        if let Some(nonce) = self.nonces.remove(&context_id) {
            host.add_response_header("dpop-nonce", &nonce);
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

    // -- ticks ---------------------------------------------------------------

    pub fn on_tick(&mut self, host: &dyn Host) {
        let Some(now_ms) = now_ms(host) else {
            return;
        };
        for p in self
            .policy
            .each_provider()
            .map(|(id, _)| id)
            .collect::<Vec<_>>()
        {
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
            || self.policy.each_provider().any(|(p, _)| {
                self.slot(p)
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

/// What a host logs once a configuration is accepted: the keys of local
/// key sets that cannot be used, the providers that check no audience (as
/// jwt_authn: no `audiences`, no `aud` check, so a token meant for another
/// API of the same issuer is accepted, RFC 7519 §4.1.3), and a summary.
pub fn log_configured(host: &dyn Host, policy: &Policy) {
    for p in &policy.providers {
        if let JwksSource::Local { skipped, .. } = &p.jwks {
            log_skipped_keys(host, &p.name, skipped);
        }
        if p.audiences.is_empty() {
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
