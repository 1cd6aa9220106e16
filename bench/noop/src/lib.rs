//! A proxy-wasm HTTP filter that does nothing: every callback returns `Continue`. Envoy still crosses into the
//! VM for each callback, so this measures the cost of being a Wasm filter at all.
//!
//! Its plugin configuration may name host calls to make on every request, comma-separated, so the bench can
//! price the calls tollgate's data path cannot avoid (the "floor" of `bench/run.py` and
//! `bench/instructions.py`): `headers` (read the request and response header maps whole), `traceparent` (add
//! a request header), `content_length` (remove the request's), `bodies` (hold the request body until it is
//! whole and read it once, and read every response chunk as it passes, as tollgate does), `clock` (two clock
//! reads), `counters` (three counter increments). An empty configuration makes none: the plain no-op module.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::cell::Cell;

const HEADERS: u32 = 1;
const TRACEPARENT: u32 = 2;
const CONTENT_LENGTH: u32 = 4;
const BODIES: u32 = 8;
const CLOCK: u32 = 16;
const COUNTERS: u32 = 32;

thread_local! {
    static OPS: Cell<u32> = const { Cell::new(0) };
    static COUNTER: Cell<u32> = const { Cell::new(0) };
}

fn on(op: u32) -> bool {
    OPS.with(Cell::get) & op != 0
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
}}

struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let mut ops = 0;
        for op in String::from_utf8_lossy(&config).split(',') {
            ops |= match op.trim() {
                "headers" => HEADERS,
                "traceparent" => TRACEPARENT,
                "content_length" => CONTENT_LENGTH,
                "bodies" => BODIES,
                "clock" => CLOCK,
                "counters" => COUNTERS,
                _ => 0,
            };
        }
        OPS.with(|o| o.set(ops));
        if ops & COUNTERS != 0 {
            if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "noop.calls") {
                COUNTER.with(|c| c.set(id));
            }
        }
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map: MapType, data: *mut *mut u8, size: *mut usize) -> Status;
}

/// The whole header map as the host serializes it (what tollgate reads), dropped unparsed.
fn header_map(map: MapType) {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host allocates the result through `proxy_on_memory_allocate` (a Vec of exactly `size`).
    unsafe {
        if proxy_get_header_map_pairs(map, &mut data, &mut size) == Status::Ok && !data.is_null() {
            drop(Vec::from_raw_parts(data, size, size));
        }
    }
}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if on(HEADERS) {
            header_map(MapType::HttpRequestHeaders);
        }
        if on(CLOCK) {
            let _ = hostcalls::get_current_time();
        }
        if on(TRACEPARENT) {
            let _ = hostcalls::add_map_value(
                MapType::HttpRequestHeaders,
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            );
        }
        if on(CONTENT_LENGTH) {
            let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, "content-length", None);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if on(BODIES) {
            // As tollgate: hold the request body until it is whole, then read it once.
            if !end_of_stream {
                return Action::Pause;
            }
            let _ = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if on(HEADERS) {
            header_map(MapType::HttpResponseHeaders);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if on(BODIES) && body_size > 0 {
            // As tollgate: read every chunk as it passes (a stream is never held).
            let _ = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if on(CLOCK) {
            let _ = hostcalls::get_current_time();
        }
        if on(COUNTERS) {
            let id = COUNTER.with(Cell::get);
            for _ in 0..3 {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
    }
}
