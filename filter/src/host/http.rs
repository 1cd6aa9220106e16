//! One HTTP context: the exchange (`crate::exchange`, where every decision is made) and the proxy-wasm
//! implementation of its `Host` trait. Each callback Envoy makes is handed to the exchange as it comes.

use super::root::Shared;
use super::store::{self, SharedData};
use super::{abi, log, now_ns, with_rng};
use crate::budget::rls;
use crate::call::Call;
use crate::codec::headers::Headers;
use crate::exchange::host::{Attribute, Body, Counter, GrpcCall, Host, Level, Map, Once, Support};
use crate::exchange::{self, Exchange};
use crate::reply::Reply;
use crate::telemetry::logs::LogRecord;
use crate::telemetry::metrics::{Attr, Instrument};
use crate::telemetry::span::Span;
use crate::telemetry::Semconv;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};
use std::time::Duration;

pub struct Http {
    exchange: Exchange,
    host: WasmHost,
}

impl Http {
    pub fn new(shared: Shared, context_id: u32) -> Http {
        Http {
            exchange: Exchange::new(shared.config.clone()),
            host: WasmHost { shared, context_id },
        }
    }
}

fn action(a: exchange::Action) -> Action {
    match a {
        exchange::Action::Continue => Action::Continue,
        exchange::Action::Pause => Action::Pause,
    }
}

/// The proxy-wasm host of one exchange: its context and what the VM's exchanges share.
struct WasmHost {
    shared: Shared,
    context_id: u32,
}

fn map(m: Map) -> MapType {
    match m {
        Map::RequestHeaders => MapType::HttpRequestHeaders,
        Map::ResponseHeaders => MapType::HttpResponseHeaders,
    }
}

fn buffer(b: Body) -> BufferType {
    match b {
        Body::Request => BufferType::HttpRequestBody,
        Body::Response => BufferType::HttpResponseBody,
    }
}

impl Host for WasmHost {
    type Store = SharedData;

    fn headers(&mut self, m: Map) -> Headers {
        abi::headers(map(m))
    }

    fn set_header(&mut self, m: Map, name: &str, value: &str) {
        abi::set_header(map(m), name, value);
    }

    fn add_header(&mut self, m: Map, name: &str, value: &str) {
        abi::add_header(map(m), name, value);
    }

    fn remove_header(&mut self, m: Map, name: &str) {
        abi::remove_header(map(m), name);
    }

    fn body(&mut self, b: Body, size: usize) -> Vec<u8> {
        abi::buffer(buffer(b), 0, size)
    }

    fn set_body(&mut self, b: Body, size: usize, value: &[u8]) -> bool {
        abi::set_buffer(buffer(b), 0, size, value)
    }

    fn send_reply(&mut self, reply: &Reply) -> bool {
        abi::send_reply(reply)
    }

    fn resume_request(&mut self) -> bool {
        abi::resume_request()
    }

    fn attribute(&mut self, attribute: Attribute<'_>) -> Option<Vec<u8>> {
        match attribute {
            Attribute::PeerUriSan => abi::property(&["connection", "uri_san_peer_certificate"]),
            Attribute::JwtPayload(key) => abi::property(&[
                "metadata",
                "filter_metadata",
                "envoy.filters.http.jwt_authn",
                key,
            ]),
            Attribute::ResponseCodeDetails => abi::property(&["response", "code_details"]),
        }
    }

    fn now_ns(&mut self) -> u64 {
        now_ns()
    }

    fn random(&mut self) -> u64 {
        // Unreachable fallback in practice (nothing re-enters the generator); keeps ids unique-ish.
        with_rng(|g| g.next_u64()).unwrap_or_else(now_ns)
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        log(level, message);
    }

    fn count(&mut self, counter: Counter, n: u64) {
        self.shared.stats.count(counter, n);
    }

    fn count_detection(&mut self, detector: &str, n: u64) {
        self.shared.stats.count_detection(detector, n);
    }

    fn once(&mut self, what: Once) -> bool {
        match what {
            Once::BufferOverflow => !self.shared.holds.overflow_logged.replace(true),
        }
    }

    fn store(&self) -> &SharedData {
        &SharedData
    }

    fn store_holder(&mut self) -> u64 {
        store::holder()
    }

    fn grpc_call(&mut self, call: &GrpcCall<'_>) -> Option<u64> {
        // `dispatch_grpc_call` takes the serialized `GrpcService` as its upstream (ASCII for the names
        // config validation admits; non-UTF-8 only for names of 128+ bytes: the bare cluster name then).
        let upstream = String::from_utf8(rls::grpc_service(call.cluster, call.authority))
            .unwrap_or_else(|_| call.cluster.to_owned());
        abi::grpc_call(
            &upstream,
            call.service,
            call.method,
            call.message,
            Duration::from_millis(call.timeout_ms),
        )
        .map(u64::from)
    }

    fn hold_support(&mut self) -> Support {
        self.shared.holds.support()
    }

    fn hold_note(&mut self) -> bool {
        self.shared.holds.held(self.context_id)
    }

    fn hold_body_seen(&mut self) -> bool {
        self.shared.holds.body_seen(self.context_id)
    }

    fn hold_forget(&mut self) {
        self.shared.holds.forget(self.context_id);
    }

    fn export_span(&mut self, span: Span) {
        self.shared.queue.borrow_mut().push(span);
    }

    fn record_metrics(&mut self, call: &Call, semconv: Semconv) {
        self.shared.metrics.borrow_mut().record(call, semconv);
    }

    fn record_metric(&mut self, instrument: Instrument, attrs: &[Attr<'_>], value: f64) {
        self.shared
            .metrics
            .borrow_mut()
            .add(instrument, attrs, value);
    }

    fn export_log(&mut self, record: LogRecord) {
        let cfg = self.shared.config.clone();
        self.shared.alerts.borrow_mut().push_log(&cfg, record);
    }

    fn post_alert(&mut self, body: String) {
        self.shared.alerts.borrow_mut().push_webhook(body);
    }
}

impl Context for Http {
    /// `budgets.backend = "rls"`: the rate-limit service's answer.
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let body = if response_size > 0 {
            abi::buffer(BufferType::GrpcReceiveBuffer, 0, response_size)
        } else {
            Vec::new()
        };
        self.exchange
            .on_grpc_answer(&mut self.host, u64::from(token_id), status_code, &body);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(
            self.exchange
                .on_request_headers(&mut self.host, end_of_stream),
        )
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.exchange
                .on_request_body(&mut self.host, body_size, end_of_stream),
        )
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(
            self.exchange
                .on_response_headers(&mut self.host, end_of_stream),
        )
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(
            self.exchange
                .on_response_body(&mut self.host, body_size, end_of_stream),
        )
    }

    fn on_log(&mut self) {
        self.exchange.on_log(&mut self.host);
    }
}
