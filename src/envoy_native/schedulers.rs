//! Schedulers of the streams the runtime holds: the way back onto a
//! stream's worker thread, in a hook of its own, from another stream's
//! hook or from the tick thread.
//!
//! A stream gets a scheduler when it first waits (made in its own hook,
//! as the ABI requires) and loses it when Envoy destroys it. While it
//! waits, a thread commits [`EVENT_TICK`] to it every
//! [`POLL_MS`](crate::host::runtime::POLL_MS), so that key fetches are
//! started and wait deadlines are kept without other traffic.

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
