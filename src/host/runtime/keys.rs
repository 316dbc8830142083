//! Keeping `remote_jwks` key sets fetched, shared between the instances of
//! one Envoy, and fresh: one fetch at a time per provider (a lease taken
//! with compare-and-swap), the result published for every instance.

use std::sync::Arc;
use std::time::Duration;

use crate::host::Host;
use crate::host::jwks_fetch::{self, FetchState, SharedJwks};
use crate::host::runtime::{Vm, log_skipped_keys, now_ms};
use crate::host::stats::Metrics;
use crate::jose::jwk::KeySet;
use crate::policy::ProviderId;

impl Vm {
    pub(super) fn request_refetch(
        &mut self,
        host: &dyn Host,
        provider: ProviderId,
        now_ms: u64,
    ) -> bool {
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
    pub(super) fn sync(&mut self, host: &dyn Host, provider: ProviderId) -> bool {
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

    pub(super) fn install(
        &mut self,
        host: &dyn Host,
        provider: ProviderId,
        keys: KeySet,
        seq: u64,
    ) {
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
    pub(super) fn maybe_fetch(&mut self, host: &dyn Host, provider: ProviderId, now_ms: u64) {
        let Some(slot) = self.slot(provider) else {
            return;
        };
        let (bytes, cas) = host.shared_data(&slot.state_key);
        let mut state = FetchState::decode(bytes.as_deref());
        let scheduled =
            self.scheduled_fetches && state.scheduled_due(&slot.cfg, slot.fetched_at_ms, now_ms);
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

    pub(super) fn update_state(
        &self,
        host: &dyn Host,
        provider: ProviderId,
        f: impl Fn(&mut FetchState),
    ) {
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

    pub(super) fn fetch_failed(
        &mut self,
        host: &dyn Host,
        provider: ProviderId,
        now_ms: u64,
        why: &str,
    ) {
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
    pub(super) fn publish(
        &mut self,
        host: &dyn Host,
        provider: ProviderId,
        text: String,
        now_ms: u64,
    ) -> u64 {
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
}
