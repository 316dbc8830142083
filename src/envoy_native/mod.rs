//! certbound as an Envoy dynamic module (`libcertbound.so`, loaded by
//! `envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter`).
//! README.md next to this file says how it is built and loaded.
//!
//! Rules every hook here keeps:
//! - its body runs under [`std::panic::catch_unwind`]; a panic fails closed:
//!   no configuration (Envoy refuses it), or a 500 local reply and a stopped
//!   stream;
//! - a pointer Envoy lends (the stream's filter, a buffer, a header array)
//!   is used only inside the hook that received it, and what certbound
//!   keeps is copied out first;
//! - Envoy's callbacks are reached only through [`Callbacks`], resolved
//!   once at program init.

pub mod abi;
#[cfg(test)]
mod fake_envoy;
mod host;
mod keeper;
mod schedulers;
#[cfg(test)]
mod tests;

use core::cell::RefCell;
use core::ffi::{c_char, c_void};
use std::ffi::CStr;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::decide::cache::SharedTokenCache;
use crate::host::runtime::log_configured;
use crate::host::{Host, Step, Vm};
use crate::policy::Policy;
use host::{CalloutAnswer, Metric, NativeHost, Ticks};
use keeper::Keeper;

use abi::{
    Callbacks, EnvoyBuffer, EnvoyHttpHeader, HttpFilterConfigEnvoyPtr, HttpFilterConfigModulePtr,
    HttpFilterEnvoyPtr, HttpFilterModulePtr, ModuleBuffer,
};

/// Envoy's callbacks, set once by `on_program_init`.
static CALLBACKS: OnceLock<Callbacks> = OnceLock::new();

fn callbacks() -> Option<&'static Callbacks> {
    CALLBACKS.get()
}

/// Logs through Envoy (`[dynamic_modules]` logger), if the level is on.
fn log(level: abi::LogLevel, message: &str) {
    if let Some(cb) = callbacks() {
        // SAFETY: resolved from Envoy at init; the buffer lives for the call.
        unsafe {
            if (cb.log_enabled)(level) {
                (cb.log)(level, ModuleBuffer::of(message.as_bytes()));
            }
        }
    }
}

/// `dlsym(RTLD_DEFAULT, name)`: the callbacks are Envoy's exported symbols.
fn dlsym_default(name: &CStr) -> *mut c_void {
    unsafe extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    // RTLD_DEFAULT is the null handle on Linux (glibc and musl).
    // SAFETY: `name` is NUL-terminated; dlsym has no other precondition.
    unsafe { dlsym(core::ptr::null_mut(), name.as_ptr()) }
}

/// Keeps this module loaded until Envoy exits. Envoy closes a module once
/// no configuration uses it (unless `do_not_close`), but the module's
/// state lives on: the tick thread, key sets and DPoP proofs shared by all
/// workers, worker-thread runtimes. So it opens itself once more, with
/// `RTLD_NODELETE`, which makes the loader keep it mapped. `false` if the
/// module could not be found.
fn pin_module() -> bool {
    #[repr(C)]
    struct DlInfo {
        dli_fname: *const c_char,
        dli_fbase: *mut c_void,
        dli_sname: *const c_char,
        dli_saddr: *mut c_void,
    }
    unsafe extern "C" {
        fn dladdr(addr: *const c_void, info: *mut DlInfo) -> core::ffi::c_int;
        fn dlopen(filename: *const c_char, flags: core::ffi::c_int) -> *mut c_void;
    }
    // glibc and musl on Linux.
    const RTLD_NOW: core::ffi::c_int = 2;
    const RTLD_NOLOAD: core::ffi::c_int = 4;
    const RTLD_NODELETE: core::ffi::c_int = 0x1000;
    let mut info = DlInfo {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    let here = envoy_dynamic_module_on_program_init as *const c_void;
    // SAFETY: `here` is an address in this module; `info` is written by
    // dladdr, and its file name is NUL-terminated and lives as long as the
    // module. The handle dlopen returns is kept for ever, on purpose.
    unsafe {
        if dladdr(here, &mut info) == 0 || info.dli_fname.is_null() {
            return false;
        }
        !dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE).is_null()
    }
}

/// Installs `cb` as Envoy's callbacks unless some are installed already.
fn install(cb: Callbacks) {
    let _ = CALLBACKS.set(cb);
}

// ------------------------------------------------------------ program init

/// Resolves every callback certbound uses. One missing means this Envoy
/// is not the one the module was built for: null, and Envoy refuses the
/// module instead of failing later in the middle of a request.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    let init = || {
        if callbacks().is_none() {
            if !pin_module() {
                let _ = writeln!(
                    std::io::stderr(),
                    "certbound: cannot keep the module loaded (dladdr/dlopen failed)"
                );
                return core::ptr::null();
            }
            // SAFETY: each name is Envoy's callback of the declared type.
            match unsafe { Callbacks::resolve(dlsym_default) } {
                Ok(cb) => install(cb),
                Err(missing) => {
                    let _ = writeln!(
                        std::io::stderr(),
                        "certbound: this Envoy has no {}; the module is built for Envoy 1.40 \
                         (dynamic modules ABI {})",
                        missing.to_string_lossy(),
                        abi::ABI_VERSION.to_string_lossy()
                    );
                    return core::ptr::null();
                }
            }
        }
        abi::ABI_VERSION.as_ptr()
    };
    catch_unwind(init).unwrap_or(core::ptr::null())
}
const _: abi::OnProgramInit = envoy_dynamic_module_on_program_init;

// ----------------------------------------------------------- configuration

/// A filter configuration: the policy, checked as the wasm build checks
/// it, and the metrics defined for it in Envoy.
pub struct NativeConfig {
    /// `filter_name` from the Envoy configuration.
    pub name: String,
    /// `filter_config` (a `StringValue`'s value: JSON).
    pub raw: Vec<u8>,
    policy: Policy,
    metrics: Vec<Metric>,
    /// Envoy's configuration object (an address: it is only passed back).
    config_envoy: usize,
    /// The runtime that keeps `remote_jwks` key sets on the main thread.
    keeper: Option<Mutex<Keeper>>,
    /// The keeper's scheduler (Envoy's handle; 0 without a keeper).
    scheduler: usize,
    /// Verified tokens, shared by the workers' runtimes.
    token_cache: Arc<SharedTokenCache>,
}

impl core::fmt::Debug for NativeConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NativeConfig")
            .field("name", &self.name)
            .field("bytes", &self.raw.len())
            .field("metrics", &self.metrics.len())
            .finish_non_exhaustive()
    }
}

impl NativeConfig {
    /// Parses and validates the policy (the error text names the field, as
    /// in the wasm build), logs what the wasm build logs at configuration,
    /// and defines the metrics.
    pub fn new(
        config_envoy: HttpFilterConfigEnvoyPtr,
        name: &[u8],
        raw: &[u8],
    ) -> Result<NativeConfig, String> {
        let env = |name: &str| std::env::var(name).ok();
        let policy = crate::policy::parse(raw, &env).map_err(|e| e.to_string())?;
        let ticks = Ticks::default();
        let defining = RefCell::new(Vec::new());
        let mut host = NativeHost::new(raw, config_envoy, &ticks);
        host.defining = Some(&defining);
        log_configured(&host, &policy);
        // The runtime made here defines every metric (and sets the gauges
        // of local key sets) while Envoy allows it. With `remote_jwks` it
        // stays, as the keeper of the key sets on the main thread.
        let vm = Vm::new(&host, policy.clone());
        drop(host);
        let scheduler = match callbacks() {
            // SAFETY: Envoy's configuration object, during config_new.
            Some(cb) if ticks.active() && !config_envoy.is_null() => unsafe {
                (cb.config_scheduler_new)(config_envoy) as usize
            },
            _ => 0,
        };
        let keeper = (scheduler != 0).then(|| Keeper::new(vm, ticks));
        if let Some(k) = &keeper {
            schedulers::register_config(scheduler, k.next_due());
        }
        Ok(NativeConfig {
            name: String::from_utf8_lossy(name).into_owned(),
            raw: raw.to_vec(),
            metrics: defining.into_inner(),
            config_envoy: config_envoy as usize,
            keeper: keeper.map(Mutex::new),
            scheduler,
            token_cache: Arc::new(SharedTokenCache::new(policy.jwt_cache_size)),
            policy,
        })
    }

    fn config_envoy(&self) -> HttpFilterConfigEnvoyPtr {
        self.config_envoy as HttpFilterConfigEnvoyPtr
    }
}

impl Drop for NativeConfig {
    fn drop(&mut self) {
        if self.scheduler != 0 {
            schedulers::unregister_config(self.scheduler);
        }
    }
}

/// A configuration is an `Arc`: each stream's filter holds a clone, so
/// the configuration outlives its streams whatever order Envoy frees them in.
fn config_ref(ptr: HttpFilterConfigModulePtr) -> Option<Arc<NativeConfig>> {
    if ptr.is_null() {
        return None;
    }
    let ptr = ptr.cast::<NativeConfig>();
    // SAFETY: `ptr` came from Arc::into_raw in config_new and has not been
    // destroyed (Envoy destroys a configuration after its last stream).
    unsafe {
        Arc::increment_strong_count(ptr);
        Some(Arc::from_raw(ptr))
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy_ptr: HttpFilterConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> HttpFilterConfigModulePtr {
    let build = || {
        // SAFETY: Envoy's buffers for this call; copied before returning.
        let (name, raw) = unsafe { (name.bytes(), config.bytes()) };
        match NativeConfig::new(config_envoy_ptr, name, raw) {
            Ok(cfg) => {
                log(
                    abi::LOG_INFO,
                    &format!(
                        "certbound: configuration {:?} accepted ({} bytes)",
                        cfg.name,
                        cfg.raw.len()
                    ),
                );
                Arc::into_raw(Arc::new(cfg)).cast::<c_void>()
            }
            Err(e) => {
                log(abi::LOG_ERROR, &format!("certbound: {e}"));
                core::ptr::null()
            }
        }
    };
    config_guarded(build)
}

/// Runs a configuration hook body; a panic refuses the configuration.
fn config_guarded(build: impl FnOnce() -> HttpFilterConfigModulePtr) -> HttpFilterConfigModulePtr {
    catch_unwind(AssertUnwindSafe(build)).unwrap_or_else(|_| {
        log(
            abi::LOG_CRITICAL,
            "certbound: panic in configuration; refused",
        );
        core::ptr::null()
    })
}
const _: abi::OnHttpFilterConfigNew = envoy_dynamic_module_on_http_filter_config_new;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: HttpFilterConfigModulePtr,
) {
    let _ = catch_unwind(|| {
        if !config.is_null() {
            // SAFETY: from Arc::into_raw in config_new; Envoy destroys once.
            drop(unsafe { Arc::from_raw(config.cast::<NativeConfig>()) });
        }
    });
}
const _: abi::OnHttpFilterConfigDestroy = envoy_dynamic_module_on_http_filter_config_destroy;

// ----------------------------------------------------------------- workers

/// The runtime of one configuration on one worker thread, as a wasm VM is:
/// key sets, fetch leases and DPoP proofs are shared between workers
/// through the shared data; its token cache is the worker's, with the
/// configuration's shared one behind it.
struct Worker {
    vm: Vm,
    ticks: Ticks,
}

type WorkerRef = Rc<RefCell<Worker>>;

thread_local! {
    /// This thread's runtimes, by configuration.
    static WORKERS: RefCell<Vec<(Weak<NativeConfig>, WorkerRef)>> =
        const { RefCell::new(Vec::new()) };
}

/// This thread's runtime for `config`, made on its first stream.
fn worker_for(config: &Arc<NativeConfig>) -> Option<WorkerRef> {
    WORKERS.with(|w| {
        let mut w = w.try_borrow_mut().ok()?;
        // Runtimes of configurations Envoy has destroyed go.
        w.retain(|(c, _)| c.strong_count() > 0);
        if let Some((_, vm)) = w
            .iter()
            .find(|(c, _)| core::ptr::eq(c.as_ptr(), Arc::as_ptr(config)))
        {
            return Some(Rc::clone(vm));
        }
        let ticks = Ticks::default();
        let mut host = NativeHost::new(&config.raw, config.config_envoy(), &ticks);
        host.metrics = &config.metrics;
        let mut vm = Vm::new(&host, config.policy.clone());
        drop(host);
        if config.keeper.is_some() {
            vm.leave_scheduled_fetches();
        }
        vm.share_token_cache(Arc::clone(&config.token_cache));
        let worker = Rc::new(RefCell::new(Worker { vm, ticks }));
        w.push((Arc::downgrade(config), Rc::clone(&worker)));
        Some(worker)
    })
}

// ------------------------------------------------------------------ stream

/// Where a stream is, so that hooks out of order or twice do no harm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Created, no request headers yet.
    New,
    /// Request headers seen.
    Request,
    /// A local reply was sent (a refusal or a failure): nothing more to do.
    Replied,
    /// `stream_complete` seen.
    Complete,
}

/// One stream's filter.
pub struct NativeFilter {
    /// Held so the configuration outlives the stream.
    pub config: Arc<NativeConfig>,
    pub phase: Phase,
    /// The stream's id for the runtime.
    pub id: u32,
    worker: WorkerRef,
    /// Stopped in the request headers until the runtime decides.
    pub waiting: bool,
    /// Has a scheduler (it has waited once): only then do the
    /// schedulers, behind their process-wide lock, know of it.
    scheduled: bool,
    /// Callouts in flight on this stream: (Envoy's id, the runtime's token).
    callouts: Vec<(u64, u32)>,
    /// The response waits for this stream's callouts (a stream's callouts
    /// end with it).
    encoding_held: bool,
}

impl core::fmt::Debug for NativeFilter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NativeFilter")
            .field("id", &self.id)
            .field("phase", &self.phase)
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

static NEXT_STREAM: AtomicU32 = AtomicU32::new(1);

/// The filter behind `ptr`, for the duration of one hook. Envoy calls a
/// stream's hooks one at a time, on its worker thread.
///
/// # Safety
/// `ptr` is null or came from `on_http_filter_new` and is not destroyed.
unsafe fn filter_mut<'a>(ptr: HttpFilterModulePtr) -> Option<&'a mut NativeFilter> {
    // SAFETY: the caller's contract; Box::into_raw gave a unique pointer.
    unsafe { ptr.cast::<NativeFilter>().cast_mut().as_mut() }
}

/// Runs `body` with the stream's runtime and a host for the current hook
/// (`envoy` null when there is no stream pointer), then does what the
/// runtime asked: resume or mark this stream, wake others, keep callouts.
/// `None` if the runtime is busy (a hook re-entered from inside it).
fn with_vm<R>(
    f: &mut NativeFilter,
    envoy: HttpFilterEnvoyPtr,
    callout: Option<CalloutAnswer>,
    body: impl FnOnce(&mut Vm, &NativeHost) -> R,
) -> Option<R> {
    let worker = Rc::clone(&f.worker);
    let mut w = worker.try_borrow_mut().ok()?;
    let Worker { vm, ticks } = &mut *w;
    let mut host = NativeHost::new(&f.config.raw, f.config.config_envoy(), ticks);
    host.envoy = envoy;
    host.context_id = f.id;
    host.metrics = &f.config.metrics;
    host.callout = callout;
    let r = body(vm, &host);
    if host.headers_changed.get()
        && !envoy.is_null()
        && let Some(cb) = callbacks()
    {
        // As proxy-wasm does after each change of the request headers:
        // routes that match on them (claim headers) see the new values.
        // SAFETY: the current hook's stream.
        unsafe { (cb.clear_route_cache)(envoy) };
    }
    f.callouts.extend(host.callouts.take());
    let deferred = host.deferred.take();
    if host.responded.get() {
        f.phase = Phase::Replied;
        f.waiting = false;
    } else if host.resumed.get() && f.waiting {
        f.waiting = false;
        if let (Some(cb), false) = (callbacks(), envoy.is_null()) {
            // SAFETY: the current hook's stream, stopped in its headers.
            unsafe { (cb.continue_decoding)(envoy) };
        }
    }
    if f.scheduled && !f.waiting {
        schedulers::set_waiting(f.id, false);
    }
    for id in deferred {
        schedulers::commit(id, schedulers::EVENT_WAKE);
    }
    Some(r)
}

/// A tick, if the runtime wants one now. Envoy 1.40's HTTP filter has no
/// timer: a worker's ticks are taken by its stream hooks (each request,
/// callout answer and scheduled event; while requests wait, a thread
/// commits an event to them every [`POLL_MS`](crate::host::runtime::POLL_MS)),
/// the keeper's by the events that thread commits when one is due.
fn tick_if_due(vm: &mut Vm, host: &NativeHost) {
    if host.ticks.active() && host.ticks.due(host::now_ms()) {
        vm.on_tick(host);
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: HttpFilterConfigModulePtr,
    _filter_envoy_ptr: HttpFilterEnvoyPtr,
) -> HttpFilterModulePtr {
    let make = || {
        let config = config_ref(config)?;
        let worker = worker_for(&config)?;
        let id = loop {
            let id = NEXT_STREAM.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                break id;
            }
        };
        Some(
            Box::into_raw(Box::new(NativeFilter {
                config,
                phase: Phase::New,
                id,
                worker,
                waiting: false,
                scheduled: false,
                callouts: Vec::new(),
                encoding_held: false,
            }))
            .cast_const()
            .cast::<c_void>(),
        )
    };
    // Envoy closes the stream when this is null.
    catch_unwind(AssertUnwindSafe(make))
        .ok()
        .flatten()
        .unwrap_or(core::ptr::null())
}
const _: abi::OnHttpFilterNew = envoy_dynamic_module_on_http_filter_new;

/// Fails a stream closed: a 500 local reply (once) and the phase
/// [`Phase::Replied`]. The caller returns a "stop" status.
fn fail_closed(envoy: HttpFilterEnvoyPtr, filter: HttpFilterModulePtr, why: &str) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        log(
            abi::LOG_CRITICAL,
            &format!("certbound: {why}; failing closed"),
        );
        // SAFETY: the filter pointer of the current hook.
        let already = match unsafe { filter_mut(filter) } {
            Some(f) => {
                f.waiting = false;
                core::mem::replace(&mut f.phase, Phase::Replied) == Phase::Replied
            }
            None => false,
        };
        if !already {
            send_local_reply(
                envoy,
                500,
                b"certbound: internal error\n",
                "certbound_internal_error",
            );
        }
    }));
}

/// A local reply with a text body.
fn send_local_reply(envoy: HttpFilterEnvoyPtr, status: u32, body: &[u8], details: &str) {
    let Some(cb) = callbacks() else { return };
    if envoy.is_null() {
        return;
    }
    let mut headers = [abi::ModuleHttpHeader {
        key_ptr: b"content-type".as_ptr().cast(),
        key_length: b"content-type".len(),
        value_ptr: b"text/plain".as_ptr().cast(),
        value_length: b"text/plain".len(),
    }];
    // SAFETY: `envoy` is the current hook's stream; every buffer outlives
    // the call, and Envoy copies them.
    unsafe {
        (cb.send_response)(
            envoy,
            status,
            headers.as_mut_ptr(),
            headers.len(),
            ModuleBuffer::of(body),
            ModuleBuffer::of(details.as_bytes()),
        );
    }
}

/// Runs a per-stream hook body; a panic, or a missing filter, fails the
/// stream closed and returns `stop`.
fn guarded<T: Copy>(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    stop: T,
    body: impl FnOnce(&mut NativeFilter) -> Option<T>,
) -> T {
    let run = AssertUnwindSafe(|| {
        // SAFETY: the filter pointer Envoy passes to this hook.
        unsafe { filter_mut(filter) }.map(body)
    });
    match catch_unwind(run) {
        Ok(Some(Some(status))) => status,
        Ok(Some(None)) => {
            fail_closed(envoy, filter, "runtime busy");
            stop
        }
        Ok(None) => {
            fail_closed(envoy, filter, "hook without a filter");
            stop
        }
        Err(_) => {
            fail_closed(envoy, filter, "panic in a stream hook");
            stop
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::HeadersStatus {
    guarded(envoy, filter, abi::HEADERS_STOP_ITERATION, |f| {
        match f.phase {
            Phase::New => {
                f.phase = Phase::Request;
                let id = f.id;
                let step = with_vm(f, envoy, None, |vm, host| {
                    tick_if_due(vm, host);
                    vm.process(host, id, true)
                })?;
                Some(match step {
                    Step::Continue => abi::HEADERS_CONTINUE,
                    Step::Responded => {
                        f.phase = Phase::Replied;
                        abi::HEADERS_STOP_ITERATION
                    }
                    Step::Waiting => {
                        f.waiting = true;
                        f.scheduled = true;
                        schedulers::register(envoy, id);
                        abi::HEADERS_STOP_ITERATION
                    }
                })
            }
            // Twice: nothing new to decide.
            Phase::Request if !f.waiting => Some(abi::HEADERS_CONTINUE),
            Phase::Request | Phase::Replied | Phase::Complete => Some(abi::HEADERS_STOP_ITERATION),
        }
    })
}
const _: abi::OnHttpFilterHeaders = envoy_dynamic_module_on_http_filter_request_headers;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::BodyStatus {
    guarded(envoy, filter, abi::BODY_STOP_ITERATION_NO_BUFFER, |f| {
        Some(if f.phase == Phase::Replied {
            abi::BODY_STOP_ITERATION_NO_BUFFER
        } else if f.waiting {
            // Undecided: held, as the wasm build holds it.
            abi::BODY_STOP_ITERATION_AND_BUFFER
        } else {
            abi::BODY_CONTINUE
        })
    })
}
const _: abi::OnHttpFilterBody = envoy_dynamic_module_on_http_filter_request_body;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> abi::TrailersStatus {
    guarded(envoy, filter, abi::TRAILERS_STOP_ITERATION, |f| {
        Some(if f.phase == Phase::Replied || f.waiting {
            abi::TRAILERS_STOP_ITERATION
        } else {
            abi::TRAILERS_CONTINUE
        })
    })
}
const _: abi::OnHttpFilterTrailers = envoy_dynamic_module_on_http_filter_request_trailers;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::HeadersStatus {
    guarded(envoy, filter, abi::HEADERS_STOP_ITERATION, |f| {
        // A fresh DPoP-Nonce the request earned goes with its response.
        let id = f.id;
        let _ = with_vm(f, envoy, None, |vm, host| vm.on_response_headers(host, id));
        // A callout in flight on this stream (a key fetch it carries) ends
        // with the stream: the response waits for it.
        Some(if f.callouts.is_empty() {
            abi::HEADERS_CONTINUE
        } else {
            f.encoding_held = true;
            abi::HEADERS_STOP_ITERATION
        })
    })
}
const _: abi::OnHttpFilterHeaders = envoy_dynamic_module_on_http_filter_response_headers;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::BodyStatus {
    guarded(envoy, filter, abi::BODY_STOP_ITERATION_NO_BUFFER, |f| {
        Some(if f.encoding_held {
            abi::BODY_STOP_ITERATION_AND_BUFFER
        } else {
            abi::BODY_CONTINUE
        })
    })
}
const _: abi::OnHttpFilterBody = envoy_dynamic_module_on_http_filter_response_body;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> abi::TrailersStatus {
    guarded(envoy, filter, abi::TRAILERS_STOP_ITERATION, |f| {
        Some(if f.encoding_held {
            abi::TRAILERS_STOP_ITERATION
        } else {
            abi::TRAILERS_CONTINUE
        })
    })
}
const _: abi::OnHttpFilterTrailers = envoy_dynamic_module_on_http_filter_response_trailers;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the filter pointer Envoy passes to this hook.
        if let Some(f) = unsafe { filter_mut(filter) } {
            f.phase = Phase::Complete;
            f.waiting = false;
            let id = f.id;
            let _ = with_vm(f, envoy, None, |vm, _| vm.forget(id));
        }
    }));
}
const _: abi::OnHttpFilterStreamComplete = envoy_dynamic_module_on_http_filter_stream_complete;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: HttpFilterModulePtr) {
    let _ = catch_unwind(|| {
        if !filter.is_null() {
            // SAFETY: from Box::into_raw in filter_new; Envoy destroys once.
            let mut f = unsafe { Box::from_raw(filter.cast::<NativeFilter>().cast_mut()) };
            if f.scheduled {
                schedulers::unregister(f.id);
            }
            let id = f.id;
            f.waiting = false;
            let pending = core::mem::take(&mut f.callouts);
            // Envoy cancels the stream's callouts: the runtime hears of no
            // answer, and other streams are not left waiting for one.
            let _ = with_vm(&mut f, core::ptr::null_mut(), None, |vm, host| {
                vm.forget(id);
                for (_, token) in pending {
                    vm.on_fetch_response(host, token, 0);
                }
            });
        }
    });
}
const _: abi::OnHttpFilterDestroy = envoy_dynamic_module_on_http_filter_destroy;

/// The answer of a callout, copied out of Envoy's buffers; neither status
/// nor body if the callout failed.
///
/// # Safety
/// The pointers are those Envoy passes to `http_callout_done`.
unsafe fn callout_answer(
    result: abi::CalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) -> CalloutAnswer {
    if result != abi::CALLOUT_SUCCESS {
        return (None, None);
    }
    let mut status = None;
    if !headers.is_null() {
        // SAFETY: Envoy's array of `headers_size` headers for this call.
        let hs = unsafe { core::slice::from_raw_parts(headers, headers_size) };
        for h in hs {
            // SAFETY: Envoy's buffers for this call.
            let (k, v) = unsafe {
                (
                    EnvoyBuffer {
                        ptr: h.key_ptr,
                        length: h.key_length,
                    }
                    .bytes(),
                    EnvoyBuffer {
                        ptr: h.value_ptr,
                        length: h.value_length,
                    }
                    .bytes(),
                )
            };
            if k == b":status" {
                status = Some(String::from_utf8_lossy(v).into_owned());
                break;
            }
        }
    }
    // As the wasm build reads it: at most one byte past the largest JWKS.
    let max = crate::jose::jwk::MAX_JWKS_BYTES + 1;
    let mut body = Vec::new();
    if !body_chunks.is_null() {
        // SAFETY: Envoy's array of `body_chunks_size` buffers for this call.
        let chunks = unsafe { core::slice::from_raw_parts(body_chunks, body_chunks_size) };
        for c in chunks {
            // SAFETY: Envoy's buffer for this call.
            let bytes = unsafe { c.bytes() };
            let room = max.saturating_sub(body.len());
            body.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or(&[]));
        }
    }
    (status, Some(body))
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    callout_id: u64,
    result: abi::CalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) {
    guarded(envoy, filter, (), |f| {
        let pos = f.callouts.iter().position(|(id, _)| *id == callout_id)?;
        let (_, token) = f.callouts.remove(pos);
        // SAFETY: Envoy's pointers for this call.
        let answer =
            unsafe { callout_answer(result, headers, headers_size, body_chunks, body_chunks_size) };
        let size = answer.1.as_ref().map_or(0, Vec::len);
        with_vm(f, envoy, Some(answer), |vm, host| {
            vm.on_fetch_response(host, token, size);
            vm.on_introspection_response(host, token, size);
            tick_if_due(vm, host);
        })?;
        if f.callouts.is_empty() && f.encoding_held {
            f.encoding_held = false;
            if let Some(cb) = callbacks() {
                // SAFETY: the current hook's stream, stopped in its response.
                unsafe { (cb.continue_encoding)(envoy) };
            }
        }
        Some(())
    });
}
const _: abi::OnHttpFilterHttpCalloutDone = envoy_dynamic_module_on_http_filter_http_callout_done;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    event_id: u64,
) {
    guarded(envoy, filter, (), |f| {
        if !f.waiting {
            return Some(());
        }
        let id = f.id;
        with_vm(f, envoy, None, |vm, host| {
            tick_if_due(vm, host);
            // Woken by another stream's hook: decide again (it may no
            // longer wait), unless the tick above already did.
            if event_id == schedulers::EVENT_WAKE
                && !host.resumed.get()
                && !host.responded.get()
                && vm.is_held(id)
                && vm.process(host, id, false) == Step::Continue
            {
                host.resume_request();
            }
        })
    });
}
const _: abi::OnHttpFilterScheduled = envoy_dynamic_module_on_http_filter_scheduled;

// Hooks Envoy requires but certbound has no use for (streamed callouts,
// flow control). They touch nothing, so they cannot panic.

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}
const _: abi::OnHttpFilterHttpStreamHeaders =
    envoy_dynamic_module_on_http_filter_http_stream_headers;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}
const _: abi::OnHttpFilterHttpStreamData = envoy_dynamic_module_on_http_filter_http_stream_data;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}
const _: abi::OnHttpFilterHttpStreamTrailers =
    envoy_dynamic_module_on_http_filter_http_stream_trailers;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _stream_id: u64,
) {
}
const _: abi::OnHttpFilterHttpStreamComplete =
    envoy_dynamic_module_on_http_filter_http_stream_complete;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _stream_id: u64,
    _reason: abi::HttpStreamResetReason,
) {
}
const _: abi::OnHttpFilterHttpStreamReset = envoy_dynamic_module_on_http_filter_http_stream_reset;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
) {
}
const _: abi::OnHttpFilterWatermark =
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
) {
}
const _: abi::OnHttpFilterWatermark =
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> abi::LocalReplyStatus {
    abi::LOCAL_REPLY_CONTINUE
}
const _: abi::OnHttpFilterLocalReply = envoy_dynamic_module_on_http_filter_local_reply;
