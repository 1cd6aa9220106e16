//! What the exchange core asks of a host, over the dynamic-modules ABI: header maps, bodies, local replies,
//! resuming, properties, the budget store, gRPC calls, clock, randomness, log and counters.
//!
//! `NativeHost` is built for each stream hook from the hook's arguments; it holds no state of its own. Its
//! inherent methods speak the ABI's terms; `impl Host for NativeHost` below is the core's `Host` trait over
//! them, one for one with the proxy-wasm host (filter/src/host/http.rs), and makes no decision.

use crate::abi::{attribute_id, body_type, header_type, log_level};
use crate::core::{
    serialize, Attr, Attribute, Body, Call, Counter, GrpcCall, Headers, Host, Instrument, Level,
    LogRecord, Map, Once, Reply, Semconv, Span, SplitMix64, Support,
};
use crate::envoy::{self, Stream};
use crate::export::Lane;
use crate::plugin::Plugin;
use crate::stats::Stat;
use crate::store::{SharedStore, STORE};
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which direction a header map or body belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Request,
    Response,
}

impl Dir {
    fn headers(self) -> u32 {
        match self {
            Dir::Request => header_type::REQUEST_HEADER,
            Dir::Response => header_type::RESPONSE_HEADER,
        }
    }
    fn buffered(self) -> u32 {
        match self {
            Dir::Request => body_type::BUFFERED_REQUEST,
            Dir::Response => body_type::BUFFERED_RESPONSE,
        }
    }
    fn received(self) -> u32 {
        match self {
            Dir::Request => body_type::RECEIVED_REQUEST,
            Dir::Response => body_type::RECEIVED_RESPONSE,
        }
    }
}

pub struct NativeHost<'a> {
    pub stream: Stream,
    pub plugin: &'a Plugin,
    pub lane: &'a Lane,
    /// The worker running the stream.
    pub worker: u32,
    /// The hook is `stream_complete`: the stream is about to go, so a gRPC call made now (a usage debit)
    /// is sent by the main thread (`rlsdebit.rs`); a callout started from the stream would die with it.
    pub ending: bool,
    /// The gRPC call this hook started, whose answer the stream awaits.
    pub started: Option<u64>,
}

impl NativeHost<'_> {
    /// A whole header map, copied once into the core's `Headers` form (the proxy-wasm serialization), so
    /// that the core reads it exactly as it reads the Wasm host's.
    pub fn headers(&self, dir: Dir) -> Headers {
        // The slices are Envoy's, valid for this hook; they are copied before it returns.
        let pairs = self.stream.headers(dir.headers());
        Headers::new(serialize(&pairs))
    }

    /// The first value of one header (no copy of the map).
    pub fn header(&self, dir: Dir, name: &str) -> Option<Vec<u8>> {
        self.stream.header(dir.headers(), name).map(<[u8]>::to_vec)
    }

    /// Replace every value of `name`.
    pub fn set_header(&self, dir: Dir, name: &str, value: &str) -> bool {
        self.stream
            .set_header(dir.headers(), name, value.as_bytes())
    }

    /// Add a value beside any existing ones (cheaper than replacing when the header is absent).
    pub fn add_header(&self, dir: Dir, name: &str, value: &str) -> bool {
        self.stream
            .add_header(dir.headers(), name, value.as_bytes())
    }

    pub fn remove_header(&self, dir: Dir, name: &str) -> bool {
        self.stream.remove_header(dir.headers(), name)
    }

    /// The body as the proxy-wasm host sees it in a body callback: what earlier callbacks kept buffered
    /// (by pausing) followed by this callback's chunk.
    pub fn body(&self, dir: Dir) -> Vec<u8> {
        let size = self.body_size(dir);
        let mut out = Vec::with_capacity(size);
        self.stream
            .for_each_body_slice(dir.buffered(), |s| out.extend_from_slice(s));
        self.stream
            .for_each_body_slice(dir.received(), |s| out.extend_from_slice(s));
        out
    }

    pub fn body_size(&self, dir: Dir) -> usize {
        self.stream
            .body_size(dir.buffered())
            .saturating_add(self.stream.body_size(dir.received()))
    }

    /// Replace the whole body seen by `body` with `bytes`. With the request headers held, the caller also
    /// sets or removes `content-length` (Envoy does not: an upstream would wait for the stale length).
    pub fn replace_body(&self, dir: Dir, bytes: &[u8]) -> bool {
        // A buffer that does not exist (nothing was buffered; no chunk in this hook) cannot be drained: Envoy
        // answers false for it, so only a non-empty one is.
        let b = self.stream.body_size(dir.buffered());
        let r = self.stream.body_size(dir.received());
        let drained = (b == 0 || self.stream.drain_body(dir.buffered(), b))
            && (r == 0 || self.stream.drain_body(dir.received(), r));
        drained && (bytes.is_empty() || self.stream.append_body(dir.received(), bytes))
    }

    /// Answer the request locally (budget refusal, block rule, oversized body).
    pub fn send_reply(&self, reply: &Reply) {
        let headers: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        self.stream.send_response(
            u32::from(reply.status),
            &headers,
            &reply.body,
            "tollgate_local_reply",
        );
    }

    /// Let a request paused in a request callback go on (after an asynchronous admission).
    pub fn resume_request(&self) {
        self.stream.continue_decoding();
    }

    /// A property by the proxy-wasm path the core asks for, from the ABI's attributes. The paths are those the
    /// core uses; the attribute ids are positions in abi.h's enum, checked against Envoy 1.40
    /// (docs/dynamic-modules-abi.md §4).
    pub fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let id = match path {
            ["connection", "uri_san_peer_certificate"] => {
                attribute_id::CONNECTION_URI_SAN_PEER_CERTIFICATE
            }
            ["response", "code_details"] => attribute_id::RESPONSE_CODE_DETAILS,
            ["request", "id"] => attribute_id::REQUEST_ID,
            _ => return None,
        };
        self.stream.attr_string(id).map(<[u8]>::to_vec)
    }

    /// A numeric property (`request.total_size`).
    pub fn property_u64(&self, path: &[&str]) -> Option<u64> {
        match path {
            ["request", "total_size"] => self.stream.attr_int(attribute_id::REQUEST_TOTAL_SIZE),
            ["request", "size"] => self.stream.attr_int(attribute_id::REQUEST_SIZE),
            _ => None,
        }
    }

    /// The budget store, shared by every worker of the process.
    pub fn store(&self) -> &'static SharedStore {
        &STORE
    }

    /// Start a unary gRPC call to the rate-limit service (`budgets.rls`): Some(stream id) when started; the
    /// answer arrives in this stream's `on_http_filter_http_stream_*` hooks (`stream::Calls`).
    pub fn grpc_call(&self, service: &str, method: &str, message: &[u8]) -> Option<u64> {
        let rls = self.plugin.config.budgets.as_ref()?.rls.as_ref()?;
        let headers = crate::grpc::request_headers(service, method, &rls.authority, rls.timeout_ms);
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let (r, id) = self.stream.start_http_stream(
            &rls.cluster,
            &headers,
            &crate::grpc::frame(message),
            true,
            rls.timeout_ms,
        );
        (r == crate::abi::callout_init::SUCCESS).then_some(id)
    }

    /// A usage debit for the rate-limit service, sent by the main thread (`rlsdebit.rs`). False when it
    /// could not be queued (counted as a debit failure, as a debit Envoy refuses to dispatch is).
    pub fn debit(&self, message: Vec<u8>) -> bool {
        let queued = self.plugin.debits.push(message);
        if queued {
            self.plugin.wake();
            NativeHost::count(self, Stat::Exchange(Counter::RlsDebits), 1);
        } else {
            NativeHost::count(self, Stat::Exchange(Counter::RlsDebitFailures), 1);
        }
        queued
    }

    pub fn count(&self, stat: Stat, n: u64) {
        self.lane.pending.add(stat, n);
    }

    /// Count a span redacted by detector `name` (`tollgate.redaction.detected.<name>`).
    pub fn count_detector(&self, name: &str, n: u64) {
        if let Some(i) = self.plugin.ids.detector_index(name) {
            self.lane.pending.add_detector(i, n);
        }
    }

    /// Queue a finished span for export.
    pub fn export_span(&self, span: Span) {
        if self.lane.push_span(span) {
            self.plugin.wake();
        }
    }

    /// Record a finished call into this worker's GenAI metrics.
    pub fn record_metrics(&self, call: &Call) {
        if self.plugin.config.otlp.as_ref().is_some_and(|o| o.metrics) {
            self.lane.record(call, self.plugin.config.semconv);
        }
    }

    pub fn log(&self, level: u32, msg: &str) {
        envoy::log(level, msg);
    }

    pub fn log_enabled(&self, level: u32) -> bool {
        level >= log_level::ERROR || envoy::log_enabled(level)
    }
}

fn dir(m: Map) -> Dir {
    match m {
        Map::RequestHeaders => Dir::Request,
        Map::ResponseHeaders => Dir::Response,
    }
}

fn body_dir(b: Body) -> Dir {
    match b {
        Body::Request => Dir::Request,
        Body::Response => Dir::Response,
    }
}

impl Host for NativeHost<'_> {
    type Store = SharedStore;

    fn headers(&mut self, map: Map) -> Headers {
        NativeHost::headers(self, dir(map))
    }

    fn set_header(&mut self, map: Map, name: &str, value: &str) {
        NativeHost::set_header(self, dir(map), name, value);
    }

    fn add_header(&mut self, map: Map, name: &str, value: &str) {
        NativeHost::add_header(self, dir(map), name, value);
    }

    fn remove_header(&mut self, map: Map, name: &str) {
        NativeHost::remove_header(self, dir(map), name);
    }

    /// The body seen by this hook (`body`); its first `size` bytes. The exchange passes the size the
    /// hook reported (`body_size`), so this is the whole of it.
    fn body(&mut self, body: Body, size: usize) -> Vec<u8> {
        let mut b = NativeHost::body(self, body_dir(body));
        b.truncate(size);
        b
    }

    /// Replace bytes `[0, size)` of the body seen by this hook; what follows them is kept.
    fn set_body(&mut self, body: Body, size: usize, value: &[u8]) -> bool {
        let d = body_dir(body);
        if size >= self.body_size(d) {
            return self.replace_body(d, value);
        }
        let whole = NativeHost::body(self, d);
        let mut out = Vec::with_capacity(value.len() + whole.len().saturating_sub(size));
        out.extend_from_slice(value);
        out.extend_from_slice(whole.get(size..).unwrap_or_default());
        self.replace_body(d, &out)
    }

    fn send_reply(&mut self, reply: &Reply) -> bool {
        NativeHost::send_reply(self, reply);
        true
    }

    fn resume_request(&mut self) -> bool {
        NativeHost::resume_request(self);
        true
    }

    fn attribute(&mut self, attribute: Attribute<'_>) -> Option<Vec<u8>> {
        match attribute {
            Attribute::PeerUriSan => self.property(&["connection", "uri_san_peer_certificate"]),
            Attribute::ResponseCodeDetails => self.property(&["response", "code_details"]),
            // The dynamic-modules ABI of Envoy 1.40 reads a metadata value by namespace and key only as a
            // scalar or a list element (`http_get_metadata_{string,number,bool,list_*}`); jwt_authn's payload
            // is a Struct under its key, out of its reach (docs/native-module.md, "JWT claims").
            Attribute::JwtPayload(_) => None,
        }
    }

    fn now_ns(&mut self) -> u64 {
        now_ns()
    }

    fn random(&mut self) -> u64 {
        u64::from_le_bytes(random_bytes())
    }

    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Info => log_level::INFO,
            Level::Warn => log_level::WARN,
            Level::Error => log_level::ERROR,
        };
        NativeHost::log(self, level, message);
    }

    /// As in the Wasm build: the counters every call bumps are added up in this worker's lane and handed to
    /// Envoy on the tick (an ABI increment per call would cost more than the rest of the host calls); the
    /// others, rare, reach Envoy now, so that a denial is in `/stats` when its answer is.
    fn count(&mut self, counter: Counter, n: u64) {
        let stat = Stat::from(counter);
        match self.plugin.ids.counter(stat) {
            Some(id) if !counter.per_call() => {
                if n > 0 {
                    self.stream.increment_counter(id, n);
                }
            }
            _ => NativeHost::count(self, stat, n),
        }
    }

    fn count_detection(&mut self, detector: &str, n: u64) {
        match self.plugin.ids.detector(detector) {
            Some(id) => {
                if n > 0 {
                    self.stream.increment_counter(id, n);
                }
            }
            None => self.count_detector(detector, n),
        }
    }

    fn once(&mut self, what: Once) -> bool {
        self.plugin.once(what)
    }

    fn store(&self) -> &SharedStore {
        &STORE
    }

    fn store_holder(&mut self) -> u64 {
        u64::from(self.worker).saturating_add(1)
    }

    fn grpc_call(&mut self, call: &GrpcCall<'_>) -> Option<u64> {
        if self.ending {
            // Queued for the main thread; the stream will not see an answer, as in the Wasm build.
            let message = call.message.to_vec();
            return self.plugin.debits.push(message).then(|| {
                self.plugin.wake();
                0
            });
        }
        let headers = crate::grpc::request_headers(
            call.service,
            call.method,
            call.authority,
            call.timeout_ms,
        );
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let (r, id) = self.stream.start_http_stream(
            call.cluster,
            &headers,
            &crate::grpc::frame(call.message),
            true,
            call.timeout_ms,
        );
        let id = (r == crate::abi::callout_init::SUCCESS).then_some(id)?;
        self.started = Some(id);
        Some(id)
    }

    /// Envoy's dynamic-modules filter keeps delivering the body of a request whose headers it holds
    /// (docs/dynamic-modules-abi.md, "verified"): nothing to probe.
    fn hold_support(&mut self) -> Support {
        Support::Works
    }

    fn hold_note(&mut self) -> bool {
        false
    }

    fn hold_body_seen(&mut self) -> bool {
        true
    }

    fn hold_forget(&mut self) {}

    fn export_span(&mut self, span: Span) {
        NativeHost::export_span(self, span);
    }

    fn record_metrics(&mut self, call: &Call, semconv: Semconv) {
        self.lane.record(call, semconv);
    }

    fn record_metric(&mut self, instrument: Instrument, attrs: &[Attr<'_>], value: f64) {
        if self.plugin.config.otlp.as_ref().is_some_and(|o| o.metrics) {
            self.lane.measure(instrument, attrs, value);
        }
    }

    /// A budget alert's log record: queued for the main thread, which exports it (`alerts.rs`).
    fn export_log(&mut self, record: LogRecord) {
        if self.plugin.alerts.push_log(&self.plugin.config, record) {
            self.plugin.wake();
        }
    }

    /// A budget alert's webhook body: queued for the main thread, which posts it (`alerts.rs`).
    fn post_alert(&mut self, body: String) {
        if self.plugin.alerts.push_webhook(body) {
            self.plugin.wake();
        }
    }
}

/// Wall clock in ns since the Unix epoch (0 if the clock is before it).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

thread_local! {
    /// One generator per thread (each worker has its own), seeded from the OS.
    static RNG: RefCell<Option<SplitMix64>> = const { RefCell::new(None) };
}

/// Seed bytes from the kernel (`/dev/urandom`), or from the clock and thread if that cannot be read.
fn seed() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    let t = now_ns();
    let id = format!("{:?}", std::thread::current().id());
    id.bytes().fold(t, |h, c| h.rotate_left(5) ^ u64::from(c))
}

fn with_rng<T>(f: impl FnOnce(&mut SplitMix64) -> T, fallback: T) -> T {
    RNG.try_with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => Some(f(slot.get_or_insert_with(|| SplitMix64::new(seed())))),
        Err(_) => None,
    })
    .ok()
    .flatten()
    .unwrap_or(fallback)
}

/// Random bytes for ids (trace and span ids, instance ids).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let fallback = {
        let t = now_ns().to_le_bytes();
        std::array::from_fn(|i| t.get(i % 8).copied().unwrap_or(0) ^ (i as u8).wrapping_mul(151))
    };
    with_rng(|g| g.bytes(), fallback)
}

/// A uniform draw in [0, 1) for sampling and jitter.
pub fn random_unit() -> f64 {
    with_rng(|g| g.unit(), 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_header_bytes_read_back_in_the_core() {
        let pairs: [(&[u8], &[u8]); 3] = [
            (b":path", b"/v1/chat/completions"),
            (b"x-bin", b"\xff\x00z"),
            (b"empty", b""),
        ];
        let h = Headers::new(serialize(&pairs));
        assert_eq!(h.get(":path"), Some(b"/v1/chat/completions".as_slice()));
        assert_eq!(h.get("x-bin"), Some(b"\xff\x00z".as_slice()));
        assert_eq!(h.get("empty"), Some(b"".as_slice()));
        assert_eq!(h.iter().count(), 3);
    }

    #[test]
    fn randomness_differs_per_draw_and_thread() {
        let a: [u8; 16] = random_bytes();
        let b: [u8; 16] = random_bytes();
        assert_ne!(a, b);
        let c: [u8; 16] = std::thread::spawn(random_bytes).join().unwrap();
        assert_ne!(a, c);
        let u = random_unit();
        assert!((0.0..1.0).contains(&u));
        assert!(now_ns() > 1_700_000_000 * 1_000_000_000);
    }
}
