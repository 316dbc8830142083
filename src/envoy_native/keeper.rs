//! The key keeper: a configuration's runtime on Envoy's main thread that
//! fetches its `remote_jwks` key sets and refreshes them on a schedule,
//! whether requests come or not.
//!
//! Envoy 1.40's HTTP filter has no timer, but a configuration has a
//! scheduler (events run on the main thread, `on_http_filter_config_scheduled`)
//! and callouts of its own (`on_http_filter_config_http_callout_done`). The
//! tick thread (`schedulers.rs`) commits an event when the keeper's next
//! tick is due; the keeper ticks its runtime, which starts the fetches that
//! are due through the configuration's callouts and publishes what they
//! bring in the shared data. The workers install it from there, as wasm
//! VMs install what one of them fetched: one fetch per Envoy, one key set
//! for every worker. Workers leave the scheduled fetches to the keeper and
//! refetch only for an unknown `kid`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::host::Vm;

use super::abi::{
    self, EnvoyBuffer, EnvoyHttpHeader, HttpFilterConfigEnvoyPtr, HttpFilterConfigModulePtr,
};
use super::host::{CalloutAnswer, NativeHost, Ticks};
use super::{NativeConfig, callout_answer, config_ref, log, schedulers, tick_if_due};

/// A configuration's runtime on the main thread (only configurations with
/// `remote_jwks` have one).
pub struct Keeper {
    vm: Vm,
    ticks: Ticks,
    /// Callouts in flight: (Envoy's id, the runtime's token).
    callouts: Vec<(u64, u32)>,
}

// The keeper lives in its configuration, which every worker holds; it is
// only used on the main thread, under the configuration's lock.
const _: () = {
    const fn send<T: Send>() {}
    send::<Keeper>();
};

impl core::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Keeper")
            .field("callouts", &self.callouts.len())
            .finish_non_exhaustive()
    }
}

impl Keeper {
    pub fn new(vm: Vm, ticks: Ticks) -> Keeper {
        Keeper {
            vm,
            ticks,
            callouts: Vec::new(),
        }
    }

    /// When the runtime wants its next tick.
    pub fn next_due(&self) -> Option<u64> {
        self.ticks.next_due()
    }
}

impl NativeConfig {
    /// Runs `body` with the keeper's runtime, a main-thread host and the
    /// callouts in flight, keeps the callouts it started, and tells the
    /// tick thread when the next tick is due. Nothing if there is no keeper
    /// or it is busy.
    fn keep(
        &self,
        callout: Option<CalloutAnswer>,
        body: impl FnOnce(&mut Vm, &NativeHost<'_>, &mut Vec<(u64, u32)>),
    ) {
        let Some(lock) = self.keeper.as_ref() else {
            return;
        };
        let Ok(mut guard) = lock.try_lock() else {
            return;
        };
        let Keeper {
            vm,
            ticks,
            callouts,
        } = &mut *guard;
        let mut host = NativeHost::new(&self.raw, self.config_envoy(), ticks);
        host.main_thread = true;
        host.metrics = &self.metrics;
        host.callout = callout;
        body(vm, &host, callouts);
        callouts.extend(host.callouts.take());
        drop(host);
        schedulers::config_due(self.scheduler, ticks.next_due());
    }

    /// The tick thread's event: a tick, if one is due.
    fn keeper_tick(&self) {
        self.keep(None, |vm, host, _| tick_if_due(vm, host));
    }

    /// The answer to (or failure of) one of the keeper's callouts.
    fn keeper_callout_done(&self, callout_id: u64, answer: CalloutAnswer) {
        let size = answer.1.as_ref().map_or(0, Vec::len);
        self.keep(Some(answer), |vm, host, callouts| {
            let Some(i) = callouts.iter().position(|(id, _)| *id == callout_id) else {
                return;
            };
            let (_, token) = callouts.swap_remove(i);
            vm.on_fetch_response(host, token, size);
            tick_if_due(vm, host);
        });
    }
}

/// A panic in the keeper stops it (its lock is poisoned): the workers keep
/// the keys they have and still refetch for an unknown `kid`.
fn guarded_config_hook(body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        log(
            abi::LOG_CRITICAL,
            "certbound: panic in the key keeper; key sets are no longer refreshed on schedule",
        );
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: HttpFilterConfigEnvoyPtr,
    config: HttpFilterConfigModulePtr,
    _event_id: u64,
) {
    guarded_config_hook(|| {
        if let Some(cfg) = config_ref(config) {
            cfg.keeper_tick();
        }
    });
}
const _: abi::OnHttpFilterConfigScheduled = envoy_dynamic_module_on_http_filter_config_scheduled;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: HttpFilterConfigEnvoyPtr,
    config: HttpFilterConfigModulePtr,
    callout_id: u64,
    result: abi::CalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) {
    guarded_config_hook(|| {
        let Some(cfg) = config_ref(config) else {
            return;
        };
        // SAFETY: Envoy's pointers for this call.
        let answer =
            unsafe { callout_answer(result, headers, headers_size, body_chunks, body_chunks_size) };
        cfg.keeper_callout_done(callout_id, answer);
    });
}
const _: abi::OnHttpFilterConfigHttpCalloutDone =
    envoy_dynamic_module_on_http_filter_config_http_callout_done;
