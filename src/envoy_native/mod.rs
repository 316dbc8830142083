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
#[cfg(test)]
mod tests;

use core::ffi::{c_char, c_void};
use std::ffi::CStr;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

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

/// The filter configuration: for now the bytes as given.
#[derive(Debug)]
pub struct NativeConfig {
    /// `filter_name` from the Envoy configuration.
    pub name: String,
    /// `filter_config` (a `StringValue`'s value: JSON).
    pub raw: Vec<u8>,
}

impl NativeConfig {
    /// Accepts any configuration; the JSON is parsed here later.
    pub fn new(name: &[u8], raw: &[u8]) -> Result<NativeConfig, String> {
        Ok(NativeConfig {
            name: String::from_utf8_lossy(name).into_owned(),
            raw: raw.to_vec(),
        })
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
    _config_envoy_ptr: HttpFilterConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> HttpFilterConfigModulePtr {
    let build = || {
        // SAFETY: Envoy's buffers for this call; copied before returning.
        let (name, raw) = unsafe { (name.bytes(), config.bytes()) };
        match NativeConfig::new(name, raw) {
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
                log(
                    abi::LOG_ERROR,
                    &format!("certbound: configuration refused: {e}"),
                );
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
#[derive(Debug)]
pub struct NativeFilter {
    /// Held so the configuration outlives the stream.
    #[allow(dead_code)]
    pub config: Arc<NativeConfig>,
    pub phase: Phase,
}

/// The filter behind `ptr`, for the duration of one hook. Envoy calls a
/// stream's hooks one at a time, on its worker thread.
///
/// # Safety
/// `ptr` is null or came from `on_http_filter_new` and is not destroyed.
unsafe fn filter_mut<'a>(ptr: HttpFilterModulePtr) -> Option<&'a mut NativeFilter> {
    // SAFETY: the caller's contract; Box::into_raw gave a unique pointer.
    unsafe { ptr.cast::<NativeFilter>().cast_mut().as_mut() }
}

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: HttpFilterConfigModulePtr,
    _filter_envoy_ptr: HttpFilterEnvoyPtr,
) -> HttpFilterModulePtr {
    let make = || match config_ref(config) {
        Some(config) => Box::into_raw(Box::new(NativeFilter {
            config,
            phase: Phase::New,
        }))
        .cast_const()
        .cast::<c_void>(),
        // Envoy closes the stream when this is null.
        None => core::ptr::null(),
    };
    catch_unwind(make).unwrap_or(core::ptr::null())
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
            Some(f) => core::mem::replace(&mut f.phase, Phase::Replied) == Phase::Replied,
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
    body: impl FnOnce(&mut NativeFilter) -> T,
) -> T {
    let run = AssertUnwindSafe(|| {
        // SAFETY: the filter pointer Envoy passes to this hook.
        unsafe { filter_mut(filter) }.map(body)
    });
    match catch_unwind(run) {
        Ok(Some(status)) => status,
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
                abi::HEADERS_CONTINUE
            }
            // Twice, or after the end: nothing new to decide.
            Phase::Request => abi::HEADERS_CONTINUE,
            Phase::Replied | Phase::Complete => abi::HEADERS_STOP_ITERATION,
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
        if f.phase == Phase::Replied {
            abi::BODY_STOP_ITERATION_NO_BUFFER
        } else {
            abi::BODY_CONTINUE
        }
    })
}
const _: abi::OnHttpFilterBody = envoy_dynamic_module_on_http_filter_request_body;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> abi::TrailersStatus {
    guarded(envoy, filter, abi::TRAILERS_STOP_ITERATION, |f| {
        if f.phase == Phase::Replied {
            abi::TRAILERS_STOP_ITERATION
        } else {
            abi::TRAILERS_CONTINUE
        }
    })
}
const _: abi::OnHttpFilterTrailers = envoy_dynamic_module_on_http_filter_request_trailers;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::HeadersStatus {
    guarded(envoy, filter, abi::HEADERS_STOP_ITERATION, |_| {
        abi::HEADERS_CONTINUE
    })
}
const _: abi::OnHttpFilterHeaders = envoy_dynamic_module_on_http_filter_response_headers;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
    _end_of_stream: bool,
) -> abi::BodyStatus {
    guarded(envoy, filter, abi::BODY_STOP_ITERATION_NO_BUFFER, |_| {
        abi::BODY_CONTINUE
    })
}
const _: abi::OnHttpFilterBody = envoy_dynamic_module_on_http_filter_response_body;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) -> abi::TrailersStatus {
    guarded(envoy, filter, abi::TRAILERS_STOP_ITERATION, |_| {
        abi::TRAILERS_CONTINUE
    })
}
const _: abi::OnHttpFilterTrailers = envoy_dynamic_module_on_http_filter_response_trailers;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _envoy: HttpFilterEnvoyPtr,
    filter: HttpFilterModulePtr,
) {
    let _ = catch_unwind(|| {
        // SAFETY: the filter pointer Envoy passes to this hook.
        if let Some(f) = unsafe { filter_mut(filter) } {
            f.phase = Phase::Complete;
        }
    });
}
const _: abi::OnHttpFilterStreamComplete = envoy_dynamic_module_on_http_filter_stream_complete;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: HttpFilterModulePtr) {
    let _ = catch_unwind(|| {
        if !filter.is_null() {
            // SAFETY: from Box::into_raw in filter_new; Envoy destroys once.
            drop(unsafe { Box::from_raw(filter.cast::<NativeFilter>().cast_mut()) });
        }
    });
}
const _: abi::OnHttpFilterDestroy = envoy_dynamic_module_on_http_filter_destroy;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _callout_id: u64,
    _result: abi::CalloutResult,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
    // No callouts yet.
}
const _: abi::OnHttpFilterHttpCalloutDone = envoy_dynamic_module_on_http_filter_http_callout_done;

#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: HttpFilterEnvoyPtr,
    _filter: HttpFilterModulePtr,
    _event_id: u64,
) {
    // Nothing is scheduled yet.
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
