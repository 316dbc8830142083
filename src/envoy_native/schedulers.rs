//! Schedulers: the way back onto a stream's worker thread, in a hook of its
//! own, from another stream's hook or from the tick thread; and onto the
//! main thread for a configuration's key keeper.
//!
//! A stream gets a scheduler when it first waits (made in its own hook,
//! as the ABI requires) and loses it when Envoy destroys it. While it
//! waits, a thread commits [`EVENT_TICK`] to it every
//! [`POLL_MS`](crate::host::runtime::POLL_MS), so that wait deadlines are
//! kept and keys fetched elsewhere are taken up without other traffic.
//!
//! A configuration with `remote_jwks` gets a scheduler of its own: the same
//! thread commits [`EVENT_TICK`] to it when its keeper's next tick is due
//! (to within `POLL_MS`), so that key sets are fetched and refreshed on the
//! main thread whether requests come or not.

use std::collections::HashMap;
use std::sync::{Mutex, Once};
use std::time::Duration;

use super::abi::HttpFilterEnvoyPtr;
use super::callbacks;

/// Decide the stream again: what it waited for arrived.
pub const EVENT_WAKE: u64 = 1;
/// A tick of the runtime.
pub const EVENT_TICK: u64 = 2;

struct Scheduler {
    /// Envoy's handle (usable from any thread until deleted).
    handle: usize,
    waiting: bool,
}

static SCHEDULERS: Mutex<Option<HashMap<u32, Scheduler>>> = Mutex::new(None);
static TICKER: Once = Once::new();

/// A configuration's scheduler and when its keeper wants the next tick.
struct ConfigTimer {
    /// Envoy's handle (usable from any thread until deleted).
    handle: usize,
    /// Milliseconds since the epoch; `None`: no tick wanted.
    due_ms: Option<u64>,
}

static CONFIG_TIMERS: Mutex<Vec<ConfigTimer>> = Mutex::new(Vec::new());

/// Gives the current hook's stream `id` a scheduler (once) and marks it
/// waiting.
pub fn register(envoy: HttpFilterEnvoyPtr, id: u32) {
    let Some(cb) = callbacks() else { return };
    let Ok(mut guard) = SCHEDULERS.lock() else {
        return;
    };
    let map = guard.get_or_insert_with(HashMap::new);
    if let Some(s) = map.get_mut(&id) {
        s.waiting = true;
    } else if !envoy.is_null() {
        // SAFETY: the current hook's stream.
        let handle = unsafe { (cb.scheduler_new)(envoy) };
        if handle.is_null() {
            return;
        }
        map.insert(
            id,
            Scheduler {
                handle: handle as usize,
                waiting: true,
            },
        );
    }
    drop(guard);
    start_ticker();
}

pub fn set_waiting(id: u32, waiting: bool) {
    if let Ok(mut guard) = SCHEDULERS.lock()
        && let Some(s) = guard.as_mut().and_then(|m| m.get_mut(&id))
    {
        s.waiting = waiting;
    }
}

/// Queues `event` on stream `id`'s worker, if it has a scheduler.
pub fn commit(id: u32, event: u64) {
    let Some(cb) = callbacks() else { return };
    if let Ok(guard) = SCHEDULERS.lock()
        && let Some(s) = guard.as_ref().and_then(|m| m.get(&id))
    {
        // SAFETY: a live handle (deleted only under this lock).
        unsafe { (cb.scheduler_commit)(s.handle as *mut core::ffi::c_void, event) };
    }
}

/// Frees stream `id`'s scheduler (the stream is destroyed).
pub fn unregister(id: u32) {
    let Some(cb) = callbacks() else { return };
    if let Ok(mut guard) = SCHEDULERS.lock()
        && let Some(s) = guard.as_mut().and_then(|m| m.remove(&id))
    {
        // SAFETY: from scheduler_new, deleted once, under the lock.
        unsafe { (cb.scheduler_delete)(s.handle as *mut core::ffi::c_void) };
    }
}

/// Keeps the configuration scheduler `handle` (from
/// `config_scheduler_new`), ticked from `due_ms` on.
pub fn register_config(handle: usize, due_ms: Option<u64>) {
    if let Ok(mut timers) = CONFIG_TIMERS.lock() {
        timers.push(ConfigTimer { handle, due_ms });
    }
    start_ticker();
}

/// When the keeper behind `handle` wants its next tick.
pub fn config_due(handle: usize, due_ms: Option<u64>) {
    if let Ok(mut timers) = CONFIG_TIMERS.lock()
        && let Some(t) = timers.iter_mut().find(|t| t.handle == handle)
    {
        t.due_ms = due_ms;
    }
}

/// Frees the configuration scheduler `handle` (its configuration is gone).
pub fn unregister_config(handle: usize) {
    let Some(cb) = callbacks() else { return };
    if let Ok(mut timers) = CONFIG_TIMERS.lock()
        && let Some(i) = timers.iter().position(|t| t.handle == handle)
    {
        timers.swap_remove(i);
        // SAFETY: from config_scheduler_new, deleted once, under the lock.
        unsafe { (cb.config_scheduler_delete)(handle as *mut core::ffi::c_void) };
    }
}

/// Commits a tick to every configuration whose keeper's tick is due at
/// `now_ms`.
fn tick_configs(now_ms: u64) {
    if let Ok(mut timers) = CONFIG_TIMERS.lock() {
        for t in timers.iter_mut() {
            tick_if_due(t, now_ms);
        }
    }
}

/// [`tick_configs`] for the configuration scheduler `handle` alone (the
/// unit tests' tick thread: each test has its own fake Envoy).
#[cfg(test)]
pub(super) fn tick_config(handle: usize, now_ms: u64) {
    if let Ok(mut timers) = CONFIG_TIMERS.lock()
        && let Some(t) = timers.iter_mut().find(|t| t.handle == handle)
    {
        tick_if_due(t, now_ms);
    }
}

/// Until the keeper says when its next tick is, it is asked again every
/// `POLL_MS` (an event may be dropped while Envoy drains).
fn tick_if_due(t: &mut ConfigTimer, now_ms: u64) {
    let Some(cb) = callbacks() else { return };
    if t.due_ms.is_some_and(|due| due <= now_ms) {
        t.due_ms = Some(now_ms.saturating_add(crate::host::runtime::POLL_MS));
        // SAFETY: a live handle (deleted only under the lock).
        unsafe { (cb.config_scheduler_commit)(t.handle as *mut core::ffi::c_void, EVENT_TICK) };
    }
}

fn start_ticker() {
    // The unit tests drive events themselves (their fake Envoy is not
    // thread-safe).
    if cfg!(test) {
        return;
    }
    TICKER.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("certbound-tick".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(Duration::from_millis(crate::host::runtime::POLL_MS));
                    tick_configs(super::host::now_ms());
                    let Some(cb) = callbacks() else { continue };
                    if let Ok(guard) = SCHEDULERS.lock() {
                        for s in guard.iter().flat_map(|m| m.values()).filter(|s| s.waiting) {
                            // SAFETY: a live handle (deleted only under the lock).
                            unsafe {
                                (cb.scheduler_commit)(
                                    s.handle as *mut core::ffi::c_void,
                                    EVENT_TICK,
                                );
                            }
                        }
                    }
                }
            });
    });
}
