//! A fake proxy for the exchange's unit tests: it implements `Host` in memory and plays Envoy's part around
//! it, as the e2e tests see Envoy do it. A request body chunk the exchange pauses on stays in the stream's
//! buffer and the next callback sees all of it; a callback that continues sends the buffer on; held request
//! headers leave with the first body callback that continues; a local reply ends the request; response
//! chunks the exchange pauses on are buffered the same way, and what continues reaches the client.

use super::host::{Attribute, Body, Counter, GrpcCall, Host, Level, Map, Once, Support};
use super::{Action, Exchange};
use crate::budget::ledger::{Store, StoreError};
use crate::call::Call;
use crate::codec::headers::{serialize, Headers};
use crate::config::Config;
use crate::reply::Reply;
use crate::rng::SplitMix64;
use crate::telemetry::logs::LogRecord;
use crate::telemetry::metrics::{Attr, Instrument};
use crate::telemetry::span::Span;
use crate::telemetry::Semconv;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Envoy shared data in memory: values with their CAS tokens.
#[derive(Default)]
pub struct MemStore {
    pub data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    pub next_cas: std::cell::Cell<u32>,
    /// Fail every write (a store under contention).
    pub refuse_writes: bool,
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.data.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        if self.refuse_writes {
            return Err(StoreError::CasMismatch);
        }
        let mut data = self.data.borrow_mut();
        if cas != 0 && data.get(key).map(|(_, c)| *c) != Some(cas) {
            return Err(StoreError::CasMismatch);
        }
        let next = self.next_cas.get() + 1;
        self.next_cas.set(next);
        data.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

/// A gRPC call the exchange started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grpc {
    pub token: u64,
    pub cluster: String,
    pub authority: String,
    pub message: Vec<u8>,
}

/// The fake proxy.
pub struct FakeHost {
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    /// The request body buffered so far (chunks the exchange paused on, and the current one).
    pub request_buffer: Vec<u8>,
    /// The response bytes buffered so far.
    pub response_buffer: Vec<u8>,
    /// What reached the provider: its headers (once they left) and body.
    pub upstream_headers: Option<Vec<(String, String)>>,
    pub upstream_body: Vec<u8>,
    /// What reached the client: the reply tollgate sent, or the provider's response as edited.
    pub replies: Vec<Reply>,
    pub client_body: Vec<u8>,
    pub resumed: u32,
    pub counters: BTreeMap<&'static str, u64>,
    pub detections: BTreeMap<String, u64>,
    pub logs: Vec<(Level, String)>,
    pub attributes: HashMap<String, Vec<u8>>,
    pub store: MemStore,
    pub grpc: Vec<Grpc>,
    /// Refuse to start gRPC calls.
    pub refuse_grpc: bool,
    pub now_ns: u64,
    pub rng: SplitMix64,
    pub support: Support,
    /// The request is noted as held while support is unknown; `hold_released` plays the tick's release.
    pub noted: bool,
    pub hold_released: bool,
    pub overflow_logged: bool,
    pub spans: Vec<Span>,
    pub metrics: Vec<Call>,
    /// `record_metric` measurements: instrument, attributes (key, value as debug text), value.
    pub measurements: Vec<Measurement>,
    /// OTLP log records (budget alerts) and webhook bodies handed over.
    pub alert_logs: Vec<LogRecord>,
    pub alert_posts: Vec<String>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost {
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            request_buffer: Vec::new(),
            response_buffer: Vec::new(),
            upstream_headers: None,
            upstream_body: Vec::new(),
            replies: Vec::new(),
            client_body: Vec::new(),
            resumed: 0,
            counters: BTreeMap::new(),
            detections: BTreeMap::new(),
            logs: Vec::new(),
            attributes: HashMap::new(),
            store: MemStore::default(),
            grpc: Vec::new(),
            refuse_grpc: false,
            now_ns: 1_765_000_000_000_000_000,
            rng: SplitMix64::new(7),
            support: Support::Works,
            noted: false,
            hold_released: false,
            overflow_logged: false,
            spans: Vec::new(),
            metrics: Vec::new(),
            measurements: Vec::new(),
            alert_logs: Vec::new(),
            alert_posts: Vec::new(),
        }
    }
}

impl FakeHost {
    fn map(&mut self, m: Map) -> &mut Vec<(String, String)> {
        match m {
            Map::RequestHeaders => &mut self.request_headers,
            Map::ResponseHeaders => &mut self.response_headers,
        }
    }

    /// The value of counter `c` (0 when never counted).
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters.get(c.name()).copied().unwrap_or(0)
    }

    /// The first value of request header `name` as the provider received it.
    pub fn upstream_header(&self, name: &str) -> Option<&str> {
        self.upstream_headers
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of response header `name` as the client received it.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Host for FakeHost {
    type Store = MemStore;

    fn headers(&mut self, m: Map) -> Headers {
        let pairs: Vec<(&str, &str)> = self
            .map(m)
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Headers::new(serialize(&pairs))
    }

    fn set_header(&mut self, m: Map, name: &str, value: &str) {
        let h = self.map(m);
        h.retain(|(k, _)| k != name);
        h.push((name.to_owned(), value.to_owned()));
    }

    fn add_header(&mut self, m: Map, name: &str, value: &str) {
        self.map(m).push((name.to_owned(), value.to_owned()));
    }

    fn remove_header(&mut self, m: Map, name: &str) {
        self.map(m).retain(|(k, _)| k != name);
    }

    fn body(&mut self, b: Body, size: usize) -> Vec<u8> {
        let buf = match b {
            Body::Request => &self.request_buffer,
            Body::Response => &self.response_buffer,
        };
        buf.get(..size.min(buf.len())).unwrap_or_default().to_vec()
    }

    fn set_body(&mut self, b: Body, size: usize, value: &[u8]) -> bool {
        let buf = match b {
            Body::Request => &mut self.request_buffer,
            Body::Response => &mut self.response_buffer,
        };
        let size = size.min(buf.len());
        buf.splice(..size, value.iter().copied());
        true
    }

    fn send_reply(&mut self, reply: &Reply) -> bool {
        self.replies.push(reply.clone());
        true
    }

    fn resume_request(&mut self) -> bool {
        self.resumed += 1;
        true
    }

    fn attribute(&mut self, attribute: Attribute<'_>) -> Option<Vec<u8>> {
        let key = match attribute {
            Attribute::PeerUriSan => "peer_uri_san".to_owned(),
            Attribute::JwtPayload(k) => format!("jwt:{k}"),
            Attribute::ResponseCodeDetails => "response_code_details".to_owned(),
        };
        self.attributes.get(&key).cloned()
    }

    fn now_ns(&mut self) -> u64 {
        self.now_ns
    }

    fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_owned()));
    }

    fn count(&mut self, counter: Counter, n: u64) {
        *self.counters.entry(counter.name()).or_default() += n;
    }

    fn count_detection(&mut self, detector: &str, n: u64) {
        *self.detections.entry(detector.to_owned()).or_default() += n;
    }

    fn once(&mut self, what: Once) -> bool {
        match what {
            Once::BufferOverflow => !std::mem::replace(&mut self.overflow_logged, true),
        }
    }

    fn store(&self) -> &MemStore {
        &self.store
    }

    fn store_holder(&mut self) -> u64 {
        42
    }

    fn grpc_call(&mut self, call: &GrpcCall<'_>) -> Option<u64> {
        if self.refuse_grpc {
            return None;
        }
        let token = self.grpc.len() as u64 + 1;
        self.grpc.push(Grpc {
            token,
            cluster: call.cluster.to_owned(),
            authority: call.authority.to_owned(),
            message: call.message.to_vec(),
        });
        Some(token)
    }

    fn hold_support(&mut self) -> Support {
        self.support
    }

    fn hold_note(&mut self) -> bool {
        self.noted = self.support == Support::Unknown;
        self.noted
    }

    fn hold_body_seen(&mut self) -> bool {
        let still_held = self.noted && !self.hold_released;
        self.noted = false;
        still_held
    }

    fn hold_forget(&mut self) {
        self.noted = false;
    }

    fn export_span(&mut self, span: Span) {
        self.spans.push(span);
    }

    fn record_metrics(&mut self, call: &Call, _semconv: Semconv) {
        self.metrics.push(call.clone());
    }

    fn record_metric(&mut self, instrument: Instrument, attrs: &[Attr<'_>], value: f64) {
        let attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), format!("{v:?}")))
            .collect();
        self.measurements.push((instrument, attrs, value));
    }

    fn export_log(&mut self, record: LogRecord) {
        self.alert_logs.push(record);
    }

    fn post_alert(&mut self, body: String) {
        self.alert_posts.push(body);
    }
}

/// A `record_metric` measurement: instrument, attributes (key, value as debug text), value.
pub type Measurement = (Instrument, Vec<(String, String)>, f64);

/// One exchange through the fake proxy.
pub struct Run {
    pub host: FakeHost,
    pub ex: Exchange,
    /// The request headers are held (the headers callback paused and nothing continued yet).
    held: bool,
    /// The request was answered locally.
    pub refused: bool,
    /// The exchange paused a body callback for the rate-limit service.
    pub waiting: bool,
}

impl Run {
    pub fn new(config: &str) -> Run {
        Run::with(
            Config::parse(config.as_bytes()).unwrap(),
            FakeHost::default(),
        )
    }

    pub fn with(config: Config, host: FakeHost) -> Run {
        Run {
            host,
            ex: Exchange::new(Arc::new(config)),
            held: false,
            refused: false,
            waiting: false,
        }
    }

    fn forward_headers(&mut self) {
        if self.host.upstream_headers.is_none() {
            self.host.upstream_headers = Some(self.host.request_headers.clone());
        }
    }

    /// The request headers callback.
    pub fn request_headers(&mut self, headers: &[(&str, &str)], end_of_stream: bool) -> Action {
        self.host.request_headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let a = self.ex.on_request_headers(&mut self.host, end_of_stream);
        self.refused = !self.host.replies.is_empty();
        match a {
            Action::Continue => self.forward_headers(),
            Action::Pause => self.held = !self.refused,
        }
        a
    }

    /// One request body chunk; what the exchange did with it.
    pub fn request_chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> Action {
        if self.refused {
            return Action::Pause;
        }
        self.host.request_buffer.extend_from_slice(chunk);
        let size = self.host.request_buffer.len();
        let a = self.ex.on_request_body(&mut self.host, size, end_of_stream);
        if !self.host.replies.is_empty() {
            self.refused = true;
            return a;
        }
        match a {
            Action::Continue => {
                self.held = false;
                self.forward_headers();
                let buf = std::mem::take(&mut self.host.request_buffer);
                self.host.upstream_body.extend(buf);
            }
            Action::Pause => self.waiting = end_of_stream,
        }
        a
    }

    /// The rate-limit service answers call `token`.
    pub fn grpc_answer(&mut self, token: u64, status: u32, body: &[u8]) {
        let resumed = self.host.resumed;
        self.ex.on_grpc_answer(&mut self.host, token, status, body);
        if !self.host.replies.is_empty() {
            self.refused = true;
        } else if self.host.resumed > resumed {
            self.waiting = false;
            self.held = false;
            self.forward_headers();
            let buf = std::mem::take(&mut self.host.request_buffer);
            self.host.upstream_body.extend(buf);
        }
    }

    /// A whole request: headers, then the body in `chunks` (the last one ends the stream).
    pub fn request(&mut self, headers: &[(&str, &str)], chunks: &[&[u8]]) {
        self.request_headers(headers, chunks.is_empty());
        for (i, c) in chunks.iter().enumerate() {
            self.request_chunk(c, i + 1 == chunks.len());
        }
    }

    /// Whether the request reached the provider.
    pub fn forwarded(&self) -> bool {
        self.host.upstream_headers.is_some() && !self.held
    }

    /// The response headers callback.
    pub fn response_headers(&mut self, headers: &[(&str, &str)], end_of_stream: bool) -> Action {
        self.host.response_headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.ex.on_response_headers(&mut self.host, end_of_stream)
    }

    /// One response chunk; what continues reaches the client.
    pub fn response_chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> Action {
        self.host.response_buffer.extend_from_slice(chunk);
        let size = self.host.response_buffer.len();
        let a = self
            .ex
            .on_response_body(&mut self.host, size, end_of_stream);
        if a == Action::Continue {
            let buf = std::mem::take(&mut self.host.response_buffer);
            self.host.client_body.extend(buf);
        }
        a
    }

    /// A whole response: headers, then the body in `chunks`.
    pub fn response(&mut self, headers: &[(&str, &str)], chunks: &[&[u8]]) {
        self.response_headers(headers, chunks.is_empty());
        for (i, c) in chunks.iter().enumerate() {
            self.response_chunk(c, i + 1 == chunks.len());
        }
    }

    /// The stream is over.
    pub fn log(&mut self) -> &Call {
        self.ex.on_log(&mut self.host);
        self.ex.call()
    }
}

/// `body` cut into pieces: whole, one byte at a time, and at random places (seeded, so a failure repeats).
pub fn chunkings(body: &[u8]) -> Vec<(String, Vec<&[u8]>)> {
    let mut out = vec![
        ("whole".to_owned(), vec![body]),
        ("one byte".to_owned(), body.chunks(1).collect()),
    ];
    for seed in [1u64, 2, 3] {
        let mut g = SplitMix64::new(seed);
        let mut pieces = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let n = (g.next_u64() % 97 + 1) as usize;
            let (a, b) = rest.split_at(n.min(rest.len()));
            pieces.push(a);
            rest = b;
        }
        out.push((format!("random {seed}"), pieces));
    }
    out
}
