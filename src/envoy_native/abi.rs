//! The part of Envoy's dynamic-module C ABI that certbound uses, written out
//! by hand (no bindgen, no SDK).
//!
//! Source: `source/extensions/dynamic_modules/abi/abi.h` in envoyproxy/envoy,
//! read at commit `0199da4a13cb999df12ad32db7d03942cfbf9abb` (a header that
//! declares ABI `v0.1.0`; Envoy keeps a module built against one minor ABI
//! working with the next). The header at the v1.40.0 commit itself could
//! not be read, so every declaration was checked against the Envoy 1.40.0
//! binary (`envoy --version`: `9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0`):
//! every callback below is in its dynamic symbol table, every hook type
//! matches the function type Envoy 1.40.0 resolves it as, and the module
//! loads and serves there. Envoy 1.40.0 reports ABI version [`ABI_VERSION`].
//!
//! Event hooks (the module exports them; Envoy resolves them by name):
//!
//! | hook | when |
//! | --- | --- |
//! | `envoy_dynamic_module_on_program_init` | `dlopen`; returns the ABI version, null refuses the module |
//! | `envoy_dynamic_module_on_http_filter_config_new` | filter configuration; null refuses it |
//! | `envoy_dynamic_module_on_http_filter_config_destroy` | configuration removed |
//! | `envoy_dynamic_module_on_http_filter_new` | each stream |
//! | `envoy_dynamic_module_on_http_filter_request_headers` | request headers |
//! | `envoy_dynamic_module_on_http_filter_request_body` | request body frame |
//! | `envoy_dynamic_module_on_http_filter_request_trailers` | request trailers |
//! | `envoy_dynamic_module_on_http_filter_response_headers` | response headers |
//! | `envoy_dynamic_module_on_http_filter_response_body` | response body frame |
//! | `envoy_dynamic_module_on_http_filter_response_trailers` | response trailers |
//! | `envoy_dynamic_module_on_http_filter_stream_complete` | stream done, before access logs |
//! | `envoy_dynamic_module_on_http_filter_destroy` | stream's filter freed |
//! | `envoy_dynamic_module_on_http_filter_http_callout_done` | a one-shot callout answered or failed |
//! | `envoy_dynamic_module_on_http_filter_http_stream_{headers,data,trailers,complete,reset}` | streamed callouts (required by Envoy; unused) |
//! | `envoy_dynamic_module_on_http_filter_scheduled` | an event committed through a scheduler, on the stream's worker |
//! | `envoy_dynamic_module_on_http_filter_config_scheduled` | optional: an event committed through a configuration's scheduler, on the main thread |
//! | `envoy_dynamic_module_on_http_filter_config_http_callout_done` | optional: a configuration's callout answered or failed, on the main thread |
//! | `envoy_dynamic_module_on_http_filter_downstream_{above_write_buffer_high,below_write_buffer_low}_watermark` | flow control (required by Envoy; unused) |
//! | `envoy_dynamic_module_on_http_filter_local_reply` | optional: a local reply is being sent |
//!
//! Envoy 1.40 refuses a filter configuration when any hook above but the
//! optional ones is missing. The HTTP filter has no timer hook in 1.40: the
//! way back onto a stream's worker thread is a scheduler
//! (`..._scheduler_new`/`_commit`/`_delete`, then `on_http_filter_scheduled`),
//! and onto the main thread a configuration's scheduler
//! (`..._config_scheduler_*`, then `on_http_filter_config_scheduled`).
//!
//! Callbacks (Envoy exports them; [`Callbacks::resolve`] looks each one up by
//! name once, at program init):
//!
//! | callback | use |
//! | --- | --- |
//! | `envoy_dynamic_module_callback_log` | log under Envoy's `dynamic_modules` logger |
//! | `envoy_dynamic_module_callback_log_enabled` | skip formatting below the level |
//! | `envoy_dynamic_module_callback_http_get_header` | one header value (index-th copy) and the count |
//! | `envoy_dynamic_module_callback_http_get_headers_size` | number of headers in a map |
//! | `envoy_dynamic_module_callback_http_get_headers` | every header of a map |
//! | `envoy_dynamic_module_callback_http_set_header` | replace a header; a null value removes it |
//! | `envoy_dynamic_module_callback_http_add_header` | append a header value |
//! | `envoy_dynamic_module_callback_http_send_response` | local reply: status, headers, body, details |
//! | `envoy_dynamic_module_callback_http_filter_continue_decoding` | resume a stopped request |
//! | `envoy_dynamic_module_callback_http_filter_continue_encoding` | resume a stopped response |
//! | `envoy_dynamic_module_callback_http_clear_route_cache` | route again after request headers changed (as proxy-wasm does on every change) |
//! | `envoy_dynamic_module_callback_http_filter_get_attribute_string` | `connection.sha256_peer_certificate_digest`, ... |
//! | `envoy_dynamic_module_callback_http_filter_get_attribute_bool` | `connection.mtls` |
//! | `envoy_dynamic_module_callback_http_filter_get_attribute_int` | integer attributes |
//! | `envoy_dynamic_module_callback_http_filter_http_callout` | one-shot HTTP callout: cluster, headers, body, timeout |
//! | `envoy_dynamic_module_callback_http_filter_config_define_counter` | define a counter (configuration time only) |
//! | `envoy_dynamic_module_callback_http_filter_increment_counter` | increment it for a stream |
//! | `envoy_dynamic_module_callback_http_filter_config_increment_counter` | increment it outside a stream |
//! | `envoy_dynamic_module_callback_http_filter_config_define_gauge` | define a gauge (configuration time only) |
//! | `envoy_dynamic_module_callback_http_filter_set_gauge` | set it for a stream |
//! | `envoy_dynamic_module_callback_http_filter_config_set_gauge` | set it outside a stream |
//! | `envoy_dynamic_module_callback_http_filter_scheduler_new` | a handle that may be used from any thread |
//! | `envoy_dynamic_module_callback_http_filter_scheduler_commit` | queue `on_http_filter_scheduled` on the stream's worker |
//! | `envoy_dynamic_module_callback_http_filter_scheduler_delete` | free the handle |
//! | `envoy_dynamic_module_callback_http_filter_config_scheduler_new` | a configuration's handle, usable from any thread |
//! | `envoy_dynamic_module_callback_http_filter_config_scheduler_commit` | queue `on_http_filter_config_scheduled` on the main thread |
//! | `envoy_dynamic_module_callback_http_filter_config_scheduler_delete` | free the handle |
//! | `envoy_dynamic_module_callback_http_filter_config_http_callout` | one-shot HTTP callout of a configuration (main thread) |
//!
//! There is no attribute for the whole peer certificate: Envoy's attribute
//! list has its SHA-256 digest (hex), subject and SANs.
//!
//! Enums cross the ABI as C `enum`s (32 bits); they are `u32` here, with
//! the values as constants, so that a value Envoy adds later is a number,
//! not undefined behaviour.

// The ABI as declared: not every constant and callback is used yet.
#![allow(dead_code)]

use core::ffi::{c_char, c_void};
use std::ffi::CStr;

/// The ABI version Envoy 1.40.0 expects from `on_program_init`. Envoy logs
/// `Dynamic module ABI version v0.2.0 matched.` for it; any other string
/// only draws a warning.
pub const ABI_VERSION: &CStr = c"v0.2.0";

// ------------------------------------------------------------------ types

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`: Envoy's
/// configuration object. Valid while the configuration exists.
pub type HttpFilterConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr`: ours.
pub type HttpFilterConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr`: Envoy's per-stream
/// filter. certbound uses it only inside the hook that was given it.
pub type HttpFilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr`: ours.
pub type HttpFilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr`: allocated
/// by Envoy, owned by the module, usable from any thread.
pub type HttpFilterSchedulerPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr`:
/// the same for a configuration (events run on the main thread).
pub type HttpFilterConfigSchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes Envoy owns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes the module owns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleBuffer {
    pub ptr: *const c_char,
    pub length: usize,
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const c_char,
    pub key_length: usize,
    pub value_ptr: *const c_char,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_http_header_type`.
pub type HeaderType = u32;
pub const REQUEST_HEADER: HeaderType = 0;
pub const REQUEST_TRAILER: HeaderType = 1;
pub const RESPONSE_HEADER: HeaderType = 2;
pub const RESPONSE_TRAILER: HeaderType = 3;

/// `envoy_dynamic_module_type_log_level`.
pub type LogLevel = u32;
pub const LOG_TRACE: LogLevel = 0;
pub const LOG_DEBUG: LogLevel = 1;
pub const LOG_INFO: LogLevel = 2;
pub const LOG_WARN: LogLevel = 3;
pub const LOG_ERROR: LogLevel = 4;
pub const LOG_CRITICAL: LogLevel = 5;

/// `envoy_dynamic_module_type_http_callout_init_result`.
pub type CalloutInitResult = u32;
pub const CALLOUT_INIT_SUCCESS: CalloutInitResult = 0;
pub const CALLOUT_INIT_MISSING_REQUIRED_HEADERS: CalloutInitResult = 1;
pub const CALLOUT_INIT_CLUSTER_NOT_FOUND: CalloutInitResult = 2;
pub const CALLOUT_INIT_DUPLICATE_CALLOUT_ID: CalloutInitResult = 3;
pub const CALLOUT_INIT_CANNOT_CREATE_REQUEST: CalloutInitResult = 4;

/// `envoy_dynamic_module_type_http_callout_result`.
pub type CalloutResult = u32;
pub const CALLOUT_SUCCESS: CalloutResult = 0;
pub const CALLOUT_RESET: CalloutResult = 1;
pub const CALLOUT_EXCEED_RESPONSE_BUFFER_LIMIT: CalloutResult = 2;

/// `envoy_dynamic_module_type_http_stream_reset_reason` (streamed callouts).
pub type HttpStreamResetReason = u32;

/// `envoy_dynamic_module_type_metrics_result`.
pub type MetricsResult = u32;
pub const METRICS_SUCCESS: MetricsResult = 0;

/// `envoy_dynamic_module_type_attribute_id` (the enum's position).
pub type AttributeId = u32;
/// `source.address`
pub const ATTR_SOURCE_ADDRESS: AttributeId = 24;
/// `connection.mtls`
pub const ATTR_CONNECTION_MTLS: AttributeId = 29;
/// `connection.subject_peer_certificate`
pub const ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE: AttributeId = 33;
/// `connection.dns_san_peer_certificate`
pub const ATTR_CONNECTION_DNS_SAN_PEER_CERTIFICATE: AttributeId = 35;
/// `connection.uri_san_peer_certificate`
pub const ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE: AttributeId = 37;
/// `connection.sha256_peer_certificate_digest`: lowercase hex of the
/// SHA-256 of the client certificate's DER, i.e. RFC 8705's `x5t#S256`
/// before base64url. On a TLS connection without a client certificate
/// Envoy 1.40 answers `true` with an empty string: empty means no
/// certificate.
pub const ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST: AttributeId = 38;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and
/// the response one: same values).
pub type HeadersStatus = u32;
pub const HEADERS_CONTINUE: HeadersStatus = 0;
pub const HEADERS_STOP_ITERATION: HeadersStatus = 1;
pub const HEADERS_STOP_ALL_ITERATION_AND_BUFFER: HeadersStatus = 3;

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_body_status`.
pub type BodyStatus = u32;
pub const BODY_CONTINUE: BodyStatus = 0;
pub const BODY_STOP_ITERATION_AND_BUFFER: BodyStatus = 1;
pub const BODY_STOP_ITERATION_NO_BUFFER: BodyStatus = 3;

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_trailers_status`.
pub type TrailersStatus = u32;
pub const TRAILERS_CONTINUE: TrailersStatus = 0;
pub const TRAILERS_STOP_ITERATION: TrailersStatus = 1;

/// `envoy_dynamic_module_type_on_http_filter_local_reply_status`.
pub type LocalReplyStatus = u32;
pub const LOCAL_REPLY_CONTINUE: LocalReplyStatus = 0;

// ------------------------------------------------------------ event hooks
// The module defines these (`#[unsafe(no_mangle)]`, in `super`); the types
// let the compiler check each definition against the header.

pub type OnProgramInit = unsafe extern "C" fn() -> *const c_char;
pub type OnHttpFilterConfigNew = unsafe extern "C" fn(
    HttpFilterConfigEnvoyPtr,
    EnvoyBuffer,
    EnvoyBuffer,
) -> HttpFilterConfigModulePtr;
pub type OnHttpFilterConfigDestroy = unsafe extern "C" fn(HttpFilterConfigModulePtr);
pub type OnHttpFilterNew =
    unsafe extern "C" fn(HttpFilterConfigModulePtr, HttpFilterEnvoyPtr) -> HttpFilterModulePtr;
pub type OnHttpFilterHeaders =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, HttpFilterModulePtr, bool) -> HeadersStatus;
pub type OnHttpFilterBody =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, HttpFilterModulePtr, bool) -> BodyStatus;
pub type OnHttpFilterTrailers =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, HttpFilterModulePtr) -> TrailersStatus;
pub type OnHttpFilterStreamComplete = unsafe extern "C" fn(HttpFilterEnvoyPtr, HttpFilterModulePtr);
pub type OnHttpFilterDestroy = unsafe extern "C" fn(HttpFilterModulePtr);
pub type OnHttpFilterHttpCalloutDone = unsafe extern "C" fn(
    HttpFilterEnvoyPtr,
    HttpFilterModulePtr,
    u64,
    CalloutResult,
    *mut EnvoyHttpHeader,
    usize,
    *mut EnvoyBuffer,
    usize,
);
pub type OnHttpFilterHttpStreamHeaders = unsafe extern "C" fn(
    HttpFilterEnvoyPtr,
    HttpFilterModulePtr,
    u64,
    *mut EnvoyHttpHeader,
    usize,
    bool,
);
pub type OnHttpFilterHttpStreamData = unsafe extern "C" fn(
    HttpFilterEnvoyPtr,
    HttpFilterModulePtr,
    u64,
    *const EnvoyBuffer,
    usize,
    bool,
);
pub type OnHttpFilterHttpStreamTrailers =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, HttpFilterModulePtr, u64, *mut EnvoyHttpHeader, usize);
pub type OnHttpFilterHttpStreamComplete =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, HttpFilterModulePtr, u64);
pub type OnHttpFilterHttpStreamReset =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, HttpFilterModulePtr, u64, HttpStreamResetReason);
pub type OnHttpFilterScheduled = unsafe extern "C" fn(HttpFilterEnvoyPtr, HttpFilterModulePtr, u64);
pub type OnHttpFilterConfigScheduled =
    unsafe extern "C" fn(HttpFilterConfigEnvoyPtr, HttpFilterConfigModulePtr, u64);
pub type OnHttpFilterConfigHttpCalloutDone = unsafe extern "C" fn(
    HttpFilterConfigEnvoyPtr,
    HttpFilterConfigModulePtr,
    u64,
    CalloutResult,
    *mut EnvoyHttpHeader,
    usize,
    *mut EnvoyBuffer,
    usize,
);
pub type OnHttpFilterWatermark = unsafe extern "C" fn(HttpFilterEnvoyPtr, HttpFilterModulePtr);
pub type OnHttpFilterLocalReply = unsafe extern "C" fn(
    HttpFilterEnvoyPtr,
    HttpFilterModulePtr,
    u32,
    EnvoyBuffer,
    bool,
) -> LocalReplyStatus;

// -------------------------------------------------------------- callbacks

pub type LogFn = unsafe extern "C" fn(LogLevel, ModuleBuffer);
pub type LogEnabledFn = unsafe extern "C" fn(LogLevel) -> bool;
pub type GetHeaderFn = unsafe extern "C" fn(
    HttpFilterEnvoyPtr,
    HeaderType,
    ModuleBuffer,
    *mut EnvoyBuffer,
    usize,
    *mut usize,
) -> bool;
pub type GetHeadersSizeFn = unsafe extern "C" fn(HttpFilterEnvoyPtr, HeaderType) -> usize;
pub type GetHeadersFn =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, HeaderType, *mut EnvoyHttpHeader) -> bool;
pub type SetHeaderFn =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, HeaderType, ModuleBuffer, ModuleBuffer) -> bool;
pub type SendResponseFn = unsafe extern "C" fn(
    HttpFilterEnvoyPtr,
    u32,
    *mut ModuleHttpHeader,
    usize,
    ModuleBuffer,
    ModuleBuffer,
);
pub type ContinueFn = unsafe extern "C" fn(HttpFilterEnvoyPtr);
pub type GetAttributeStringFn =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, AttributeId, *mut EnvoyBuffer) -> bool;
pub type GetAttributeBoolFn =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, AttributeId, *mut bool) -> bool;
pub type GetAttributeIntFn =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, AttributeId, *mut u64) -> bool;
pub type HttpCalloutFn = unsafe extern "C" fn(
    HttpFilterEnvoyPtr,
    *mut u64,
    ModuleBuffer,
    *mut ModuleHttpHeader,
    usize,
    ModuleBuffer,
    u64,
) -> CalloutInitResult;
pub type DefineCounterFn = unsafe extern "C" fn(
    HttpFilterConfigEnvoyPtr,
    ModuleBuffer,
    *mut ModuleBuffer,
    usize,
    *mut usize,
) -> MetricsResult;
pub type IncrementCounterFn =
    unsafe extern "C" fn(HttpFilterEnvoyPtr, usize, *mut ModuleBuffer, usize, u64) -> MetricsResult;
pub type ConfigIncrementCounterFn = unsafe extern "C" fn(
    HttpFilterConfigEnvoyPtr,
    usize,
    *mut ModuleBuffer,
    usize,
    u64,
) -> MetricsResult;
pub type SchedulerNewFn = unsafe extern "C" fn(HttpFilterEnvoyPtr) -> HttpFilterSchedulerPtr;
pub type SchedulerCommitFn = unsafe extern "C" fn(HttpFilterSchedulerPtr, u64);
pub type SchedulerDeleteFn = unsafe extern "C" fn(HttpFilterSchedulerPtr);
pub type ConfigSchedulerNewFn =
    unsafe extern "C" fn(HttpFilterConfigEnvoyPtr) -> HttpFilterConfigSchedulerPtr;
pub type ConfigSchedulerCommitFn = unsafe extern "C" fn(HttpFilterConfigSchedulerPtr, u64);
pub type ConfigSchedulerDeleteFn = unsafe extern "C" fn(HttpFilterConfigSchedulerPtr);
pub type ConfigHttpCalloutFn = unsafe extern "C" fn(
    HttpFilterConfigEnvoyPtr,
    *mut u64,
    ModuleBuffer,
    *mut ModuleHttpHeader,
    usize,
    ModuleBuffer,
    u64,
) -> CalloutInitResult;

/// Declares [`Callbacks`] (one function pointer per callback) and its
/// resolution by symbol name, from one list.
macro_rules! callbacks {
    ($($field:ident: $ty:ty = $name:literal,)*) => {
        /// Envoy's callbacks, as function pointers. Built once by
        /// [`Callbacks::resolve`]: at program init from Envoy's own
        /// symbols, in tests from a fake.
        #[derive(Clone, Copy)]
        pub struct Callbacks {
            $(pub $field: $ty,)*
        }

        impl Callbacks {
            /// Every symbol name, in declaration order.
            pub const NAMES: &'static [&'static CStr] = &[$($name,)*];

            /// Looks every callback up with `lookup` (a `dlsym`). `Err`
            /// names the first one that is missing.
            ///
            /// # Safety
            /// A non-null pointer `lookup` returns for a name must be the
            /// address of a function with that callback's C signature.
            pub unsafe fn resolve(
                mut lookup: impl FnMut(&CStr) -> *mut c_void,
            ) -> Result<Callbacks, &'static CStr> {
                Ok(Callbacks {
                    $($field: {
                        let p = lookup($name);
                        if p.is_null() {
                            return Err($name);
                        }
                        // SAFETY: non-null, and the caller vouches for the
                        // signature; data and function pointers have the
                        // same size on every target Envoy runs on.
                        unsafe { core::mem::transmute::<*mut c_void, $ty>(p) }
                    },)*
                })
            }
        }
    };
}

callbacks! {
    log: LogFn = c"envoy_dynamic_module_callback_log",
    log_enabled: LogEnabledFn = c"envoy_dynamic_module_callback_log_enabled",
    get_header: GetHeaderFn = c"envoy_dynamic_module_callback_http_get_header",
    get_headers_size: GetHeadersSizeFn = c"envoy_dynamic_module_callback_http_get_headers_size",
    get_headers: GetHeadersFn = c"envoy_dynamic_module_callback_http_get_headers",
    set_header: SetHeaderFn = c"envoy_dynamic_module_callback_http_set_header",
    add_header: SetHeaderFn = c"envoy_dynamic_module_callback_http_add_header",
    send_response: SendResponseFn = c"envoy_dynamic_module_callback_http_send_response",
    continue_decoding: ContinueFn = c"envoy_dynamic_module_callback_http_filter_continue_decoding",
    continue_encoding: ContinueFn = c"envoy_dynamic_module_callback_http_filter_continue_encoding",
    clear_route_cache: ContinueFn = c"envoy_dynamic_module_callback_http_clear_route_cache",
    get_attribute_string: GetAttributeStringFn =
        c"envoy_dynamic_module_callback_http_filter_get_attribute_string",
    get_attribute_bool: GetAttributeBoolFn =
        c"envoy_dynamic_module_callback_http_filter_get_attribute_bool",
    get_attribute_int: GetAttributeIntFn =
        c"envoy_dynamic_module_callback_http_filter_get_attribute_int",
    http_callout: HttpCalloutFn = c"envoy_dynamic_module_callback_http_filter_http_callout",
    define_counter: DefineCounterFn =
        c"envoy_dynamic_module_callback_http_filter_config_define_counter",
    increment_counter: IncrementCounterFn =
        c"envoy_dynamic_module_callback_http_filter_increment_counter",
    config_increment_counter: ConfigIncrementCounterFn =
        c"envoy_dynamic_module_callback_http_filter_config_increment_counter",
    define_gauge: DefineCounterFn =
        c"envoy_dynamic_module_callback_http_filter_config_define_gauge",
    set_gauge: IncrementCounterFn = c"envoy_dynamic_module_callback_http_filter_set_gauge",
    config_set_gauge: ConfigIncrementCounterFn =
        c"envoy_dynamic_module_callback_http_filter_config_set_gauge",
    scheduler_new: SchedulerNewFn = c"envoy_dynamic_module_callback_http_filter_scheduler_new",
    scheduler_commit: SchedulerCommitFn =
        c"envoy_dynamic_module_callback_http_filter_scheduler_commit",
    scheduler_delete: SchedulerDeleteFn =
        c"envoy_dynamic_module_callback_http_filter_scheduler_delete",
    config_scheduler_new: ConfigSchedulerNewFn =
        c"envoy_dynamic_module_callback_http_filter_config_scheduler_new",
    config_scheduler_commit: ConfigSchedulerCommitFn =
        c"envoy_dynamic_module_callback_http_filter_config_scheduler_commit",
    config_scheduler_delete: ConfigSchedulerDeleteFn =
        c"envoy_dynamic_module_callback_http_filter_config_scheduler_delete",
    config_http_callout: ConfigHttpCalloutFn =
        c"envoy_dynamic_module_callback_http_filter_config_http_callout",
}

impl ModuleBuffer {
    /// Borrows `bytes` for one call.
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The null buffer (`set_header` with it removes the header).
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: core::ptr::null(),
        length: 0,
    };
}

impl EnvoyBuffer {
    /// The bytes, for as long as Envoy keeps them (the current hook at most).
    ///
    /// # Safety
    /// `ptr` must be null or point at `length` readable bytes that outlive
    /// `'a`.
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: the caller's contract.
            unsafe { core::slice::from_raw_parts(self.ptr.cast(), self.length) }
        }
    }
}
