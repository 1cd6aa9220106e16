//! tollgate as a native Envoy dynamic module (`libtollgate.so`): the core of `tollgate.wasm` (the `tollgate`
//! crate) behind a host that speaks Envoy 1.40's dynamic-modules C ABI (docs/dynamic-modules-abi.md).
//!
//! Envoy loads it with `dynamic_module_config: {name: tollgate}` (the file `libtollgate.so` in
//! `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`), `filter_name: tollgate` and `filter_config` = the plugin JSON as a
//! `google.protobuf.StringValue` (docs/native-module.md).
//!
//! This file is the ABI boundary: every function Envoy calls, each running its body under a panic guard
//! (`guard.rs`), so that no fault in the module can take Envoy down. A stream that faulted passes through
//! untouched from then on, and a request a fault left paused is resumed.
//!
//! Threads: `program_init`, `config_new`/`config_destroy`, the config's scheduled events and callout answers
//! run on Envoy's main thread; a stream's hooks on its worker thread (docs/dynamic-modules-abi.md §6).

// The hooks are `extern "C"` functions Envoy calls with pointers it owns; the ABI contract, not the Rust
// signature, is what makes dereferencing them sound.
#![allow(clippy::not_unsafe_ptr_arg_deref)]
// Some ABI wrappers and host calls serve only the test probes (`test-probes`) and the unit tests.
#![allow(dead_code)]
// As in the core: non-test code contains no panicking construct (a panic is caught, but it is still a bug).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo
    )
)]

mod abi;
mod alerts;
mod core;
#[cfg(not(test))]
mod envoy;
#[cfg(test)]
#[path = "envoy_fake.rs"]
mod envoy;
mod export;
mod grpc;
mod guard;
mod host;
mod plugin;
#[cfg(feature = "test-probes")]
mod probes;
mod rlsdebit;
mod stats;
mod store;
mod stream;

use abi::*;
use envoy::{ConfigHandle, Stream};
use export::{Answer, Io, Transport};
use guard::guard;
use plugin::{event, Plugin};
use std::panic::{catch_unwind, AssertUnwindSafe};
use stream::StreamState;

// ------------------------------------------------------------------------------------------------
// Program and filter config (main thread)

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> AbiVersionPtr {
    guard("on_program_init", std::ptr::null(), || {
        guard::install_panic_hook();
        ABI_VERSION.as_ptr().cast()
    })
}

fn plugin<'a>(p: FilterConfigModulePtr) -> Option<&'a Plugin> {
    // SAFETY: the pointer `config_new` returned; Envoy passes it until `config_destroy`.
    unsafe { (p as *const Plugin).as_ref() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: FilterConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> FilterConfigModulePtr {
    guard("on_http_filter_config_new", std::ptr::null(), || {
        // SAFETY: both buffers are Envoy's, valid for this hook; Plugin::new copies what it keeps.
        let (name, raw) = unsafe { (name.as_slice(), config.as_slice()) };
        let handle = ConfigHandle(config_envoy);
        match Plugin::new(handle, name, raw, envoy::concurrency(), host::now_ns()) {
            Ok(p) => {
                let p = Box::new(p);
                p.start_ticker();
                Box::into_raw(p) as FilterConfigModulePtr
            }
            Err(plugin::Refused(reason)) => {
                // Envoy rejects the config on NULL and does not say why: the reason is this line.
                envoy::log(log_level::ERROR, &reason);
                std::ptr::null()
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: FilterConfigModulePtr,
) {
    guard("on_http_filter_config_destroy", (), || {
        if config.is_null() {
            return;
        }
        // SAFETY: the pointer config_new returned; Envoy destroys it once, after every stream using it.
        let mut p = unsafe { Box::from_raw(config as *mut Plugin) };
        p.shut_down();
    })
}

/// Config-level callouts to the collector (main thread only).
struct Callouts(ConfigHandle);

impl Transport for Callouts {
    fn send(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        match self.0.http_callout(cluster, headers, body, timeout_ms) {
            (callout_init::SUCCESS, id) => Ok(id),
            (r, _) => Err(r),
        }
    }
}

/// The config's scheduler fired (main thread): the tick, or a wake-up from a worker.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    event_id: u64,
) {
    guard("on_http_filter_config_scheduled", (), || {
        let Some(p) = plugin(config) else { return };
        let handle = ConfigHandle(config_envoy);
        match event_id {
            event::TICK | event::WAKE => p.on_tick(handle, host::now_ns(), &mut Callouts(handle)),
            _ => {}
        }
    })
}

/// The collector answered an export, or a webhook receiver an alert (main thread).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    callout_id: u64,
    result: u32,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body: *mut EnvoyBuffer,
    body_size: usize,
) {
    guard("on_http_filter_config_http_callout_done", (), || {
        let Some(p) = plugin(config) else { return };
        let handle = ConfigHandle(config_envoy);
        // SAFETY: Envoy's arrays, valid for this hook.
        let (headers, body) = unsafe {
            (
                envoy_headers(headers, headers_size),
                envoy_body(body, body_size, export::MAX_ANSWER_BODY),
            )
        };
        let answer = Answer::read(result == callout_result::SUCCESS, &headers, body);
        let mut io = Io {
            now_ns: host::now_ns(),
            jitter: &mut host::random_unit,
            transport: &mut Callouts(handle),
            log: &mut |m: String| envoy::log(log_level::WARN, &m),
        };
        if p.exporter
            .on_answer(&p.config, callout_id, &answer, &mut io)
        {
            p.publish(handle);
        } else if p.alerts.on_answer(callout_id, &answer, &mut io) {
            // The next alert goes now rather than at the next tick.
            p.flush_alerts(&mut io);
            p.publish(handle);
        }
    })
}

// Config-level streamed callouts: the rate-limit debits (main thread).

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    stream_id: u64,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    _end_stream: bool,
) {
    guard("on_http_filter_config_http_stream_headers", (), || {
        let Some(p) = plugin(config) else { return };
        // SAFETY: Envoy's array, valid for this hook.
        let h = unsafe { envoy_headers(headers, headers_size) };
        p.debits.answer_part(stream_id, |a| a.headers(&h));
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    stream_id: u64,
    data: *const EnvoyBuffer,
    data_count: usize,
    _end_stream: bool,
) {
    guard("on_http_filter_config_http_stream_data", (), || {
        let Some(p) = plugin(config) else { return };
        // SAFETY: Envoy's array, valid for this hook.
        let d = unsafe { envoy_body(data, data_count, grpc::MAX_MESSAGE + 5) };
        p.debits.answer_part(stream_id, |a| a.data(&d));
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    stream_id: u64,
    trailers: *mut EnvoyHttpHeader,
    trailers_size: usize,
) {
    guard("on_http_filter_config_http_stream_trailers", (), || {
        let Some(p) = plugin(config) else { return };
        // SAFETY: Envoy's array, valid for this hook.
        let t = unsafe { envoy_headers(trailers, trailers_size) };
        p.debits.answer_part(stream_id, |a| a.trailers(&t));
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    stream_id: u64,
) {
    guard("on_http_filter_config_http_stream_complete", (), || {
        let Some(p) = plugin(config) else { return };
        p.debits.finished(stream_id, None, &p.main);
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    stream_id: u64,
    reason: u32,
) {
    guard("on_http_filter_config_http_stream_reset", (), || {
        let Some(p) = plugin(config) else { return };
        p.debits.finished(stream_id, Some(reason), &p.main);
    })
}

// ------------------------------------------------------------------------------------------------
// Streams (the stream's worker thread)

fn state<'a>(p: FilterModulePtr) -> Option<&'a mut StreamState> {
    // SAFETY: the pointer on_http_filter_new returned; Envoy calls a stream's hooks on one thread, one at a
    // time, and never after on_http_filter_destroy.
    unsafe { (p as *mut StreamState).as_mut() }
}

/// Run a stream hook's body under the guard. On a panic the stream is marked faulted (it passes through
/// from then on), its request state is dropped, and `fallback` — the hook's fail-open answer — is returned.
/// `resume`: the hook runs outside Envoy's request path (a callout answer, a scheduled event), so a request
/// the stream paused must be resumed here or it would hang.
fn on_stream<R>(
    hook: &str,
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    fallback: R,
    resume: bool,
    body: impl FnOnce(&mut StreamState, Stream) -> R,
) -> R {
    let stream = Stream(fe);
    let Some(s) = state(fm) else { return fallback };
    if s.faulted {
        return fallback;
    }
    match catch_unwind(AssertUnwindSafe(|| body(s, stream))) {
        Ok(r) => r,
        Err(payload) => {
            guard::caught(hook, payload.as_ref());
            let _ = catch_unwind(AssertUnwindSafe(|| {
                if let Some(s) = state(fm) {
                    s.faulted = true;
                    s.drop_request_state();
                    if resume && s.request_paused {
                        s.request_paused = false;
                        stream.continue_decoding();
                    }
                    // A synchronous hook's fallback (Continue) resumes the request itself.
                    if !resume {
                        s.request_paused = false;
                    }
                }
            }));
            fallback
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: FilterConfigModulePtr,
    filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    guard("on_http_filter_new", std::ptr::null(), || {
        if config.is_null() {
            return std::ptr::null();
        }
        let worker = Stream(filter_envoy).worker_index();
        Box::into_raw(Box::new(StreamState::new(config as *const Plugin, worker)))
            as FilterModulePtr
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_stream(
        "on_http_filter_request_headers",
        fe,
        fm,
        headers_status::CONTINUE,
        false,
        |s, st| stream::request_headers(s, st, end_of_stream),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_stream(
        "on_http_filter_request_body",
        fe,
        fm,
        body_status::CONTINUE,
        false,
        |s, st| stream::request_body(s, st, end_of_stream),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
) -> u32 {
    on_stream(
        "on_http_filter_request_trailers",
        fe,
        fm,
        trailers_status::CONTINUE,
        false,
        stream::request_trailers,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_stream(
        "on_http_filter_response_headers",
        fe,
        fm,
        headers_status::CONTINUE,
        false,
        |s, st| stream::response_headers(s, st, end_of_stream),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_stream(
        "on_http_filter_response_body",
        fe,
        fm,
        body_status::CONTINUE,
        false,
        |s, st| stream::response_body(s, st, end_of_stream),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
) -> u32 {
    on_stream(
        "on_http_filter_response_trailers",
        fe,
        fm,
        trailers_status::CONTINUE,
        false,
        stream::response_trailers,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
) {
    on_stream(
        "on_http_filter_stream_complete",
        fe,
        fm,
        (),
        false,
        stream::stream_complete,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(fm: FilterModulePtr) {
    guard("on_http_filter_destroy", (), || {
        if fm.is_null() {
            return;
        }
        // SAFETY: the pointer on_http_filter_new returned; destroyed exactly once.
        drop(unsafe { Box::from_raw(fm as *mut StreamState) });
    })
}

/// A one-shot callout from a stream answered (tollgate makes none; required by Envoy).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _body: *mut EnvoyBuffer,
    _body_size: usize,
) {
    on_stream(
        "on_http_filter_http_callout_done",
        fe,
        fm,
        (),
        true,
        |_, _| {},
    )
}

// The stream's gRPC call (the rate-limit admission) answering, piece by piece.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    stream_id: u64,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    _end_stream: bool,
) {
    on_stream(
        "on_http_filter_http_stream_headers",
        fe,
        fm,
        (),
        true,
        |s, _| {
            // SAFETY: Envoy's array, valid for this hook.
            let h = unsafe { envoy_headers(headers, headers_size) };
            stream::call_part(s, stream_id, |a| a.headers(&h));
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    stream_id: u64,
    data: *const EnvoyBuffer,
    data_count: usize,
    _end_stream: bool,
) {
    on_stream(
        "on_http_filter_http_stream_data",
        fe,
        fm,
        (),
        true,
        |s, _| {
            // SAFETY: Envoy's array, valid for this hook.
            let d = unsafe { envoy_body(data, data_count, grpc::MAX_MESSAGE + 5) };
            stream::call_part(s, stream_id, |a| a.data(&d));
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    stream_id: u64,
    trailers: *mut EnvoyHttpHeader,
    trailers_size: usize,
) {
    on_stream(
        "on_http_filter_http_stream_trailers",
        fe,
        fm,
        (),
        true,
        |s, _| {
            // SAFETY: Envoy's array, valid for this hook.
            let t = unsafe { envoy_headers(trailers, trailers_size) };
            stream::call_part(s, stream_id, |a| a.trailers(&t));
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    stream_id: u64,
) {
    on_stream(
        "on_http_filter_http_stream_complete",
        fe,
        fm,
        (),
        true,
        |s, st| stream::call_done(s, st, stream_id, None),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    stream_id: u64,
    reason: u32,
) {
    on_stream(
        "on_http_filter_http_stream_reset",
        fe,
        fm,
        (),
        true,
        |s, st| stream::call_done(s, st, stream_id, Some(reason)),
    )
}

/// An event committed to a stream's scheduler (tollgate commits none; required by Envoy).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    _event_id: u64,
) {
    on_stream("on_http_filter_scheduled", fe, fm, (), true, |_, _| {})
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
) {
    on_stream(
        "on_http_filter_downstream_above_write_buffer_high_watermark",
        fe,
        fm,
        (),
        false,
        |_, _| {},
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
) {
    on_stream(
        "on_http_filter_downstream_below_write_buffer_low_watermark",
        fe,
        fm,
        (),
        false,
        |_, _| {},
    )
}
