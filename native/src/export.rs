//! OTLP export of the native build: spans and GenAI metrics leave through Envoy HTTP callouts to the collector
//! cluster, made from the main thread, never from a request.
//!
//! # One lane per worker
//!
//! Each Envoy worker thread has a lane: its own span queue and metrics aggregator (the core's `SpanQueue` and
//! `Aggregator`, exactly as one Wasm VM has), behind a mutex that only that worker and the main thread take.
//! A worker pushes a finished span and records a call's metrics under its lane's lock; the main thread, on
//! each tick of the config's scheduler, takes a batch out of each lane under the same lock, releases it, and
//! sends the batch with a config-level callout (the ABI's config callouts must be made on the main thread).
//!
//! Why lanes rather than one process-wide queue:
//! - no cross-worker contention on the request path: a worker's lock is contended only while the main thread
//!   copies a batch out of that lane (a few microseconds per tick);
//! - the telemetry is the Wasm build's, unit for unit: each lane is one `service.instance.id` exporting its
//!   own metric deltas (delta temporality needs one writer per series and instance), the queue bound
//!   (`otlp.max_queue`) applies per worker as it does per VM, and each lane has one batch in flight, so
//!   export throughput scales with the workers as it does with the VMs;
//! - a slow collector backs off per lane, with the Wasm build's retry, backoff and drop accounting (the
//!   core's `SpanQueue::finish`, `export::backoff_ms`, `export::classify`).
//!
//! Nothing here blocks traffic: a worker never waits for the collector, a full queue drops (and counts) the
//! new span, and the main thread only dispatches.

use crate::core::{
    export, partial_success, Aggregator, Attr, Call, Compression, Config, ExportStats, Instrument,
    MetricsStats, Otlp, Outcome, Resource, Semconv, Span, SpanQueue,
};
use crate::stats::{Own, Pending, Totals};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// One worker's telemetry.
pub struct Lane {
    /// Counters this worker made, for the stats tick.
    pub pending: Pending,
    telemetry: Mutex<Telemetry>,
}

struct Telemetry {
    queue: SpanQueue,
    metrics: Aggregator,
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, Telemetry> {
        // A poisoned lane (a panic while a worker held it) still holds a consistent queue: every operation
        // on it is a whole push or pop. Export goes on.
        self.telemetry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue a finished span for export (worker). True when a full batch is now waiting: the caller may wake
    /// the main thread instead of waiting for the next tick.
    pub fn push_span(&self, span: Span) -> bool {
        let mut t = self.lock();
        let was_ready = t.queue.batch_ready();
        t.queue.push(span);
        !was_ready && t.queue.batch_ready()
    }

    /// Record a finished call into this lane's metrics (worker).
    pub fn record(&self, call: &Call, semconv: Semconv) {
        self.lock().metrics.record(call, semconv);
    }

    /// One measurement of an instrument that is not a model call's (worker).
    pub fn measure(&self, instrument: Instrument, attrs: &[Attr<'_>], value: f64) {
        self.lock().metrics.add(instrument, attrs, value);
    }

    /// Spans held (queued or in flight).
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }
}

/// What the exporter needs of the core's span queue and metrics aggregator once an answer arrives: both
/// keep the batch in flight, count retries and drops, and take a partial success.
trait Batches {
    fn finish(&mut self, outcome: Outcome) -> Outcome;
    fn rejected(&mut self, n: u64);
    fn attempts(&self) -> u32;
}

impl Batches for SpanQueue {
    fn finish(&mut self, outcome: Outcome) -> Outcome {
        SpanQueue::finish(self, outcome)
    }
    fn rejected(&mut self, n: u64) {
        SpanQueue::rejected(self, n)
    }
    fn attempts(&self) -> u32 {
        SpanQueue::attempts(self)
    }
}

impl Batches for Aggregator {
    fn finish(&mut self, outcome: Outcome) -> Outcome {
        Aggregator::finish(self, outcome)
    }
    fn rejected(&mut self, n: u64) {
        Aggregator::rejected(self, n)
    }
    fn attempts(&self) -> u32 {
        Aggregator::attempts(self)
    }
}

/// Which export a callout carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Spans,
    Metrics,
}

/// The main thread's view of one lane's exports.
struct LaneExport {
    resource: Resource,
    spans_in_flight: Option<u64>,
    spans_next_attempt_ms: u64,
    last_flush_ms: u64,
    metrics_in_flight: Option<u64>,
    metrics_next_attempt_ms: u64,
    last_close_ms: u64,
    published: ExportStats,
    published_metrics: MetricsStats,
}

/// Sends one OTLP/HTTP request to the collector; the answer comes back through `Exporter::on_answer` with the
/// returned id. `ConfigHandle::http_callout` in the module, a recorder in the tests.
pub trait Transport {
    /// Ok(callout id), or Err(Envoy's `http_callout_init_result`) when the request could not be dispatched.
    fn send(
        &mut self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32>;
}

/// The collector's answer to one export request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// None: no response at all (timeout, reset, connection failure).
    pub status: Option<u16>,
    /// `Retry-After` in seconds (the delay-seconds form; an HTTP-date falls back to tollgate's backoff).
    pub retry_after: Option<u64>,
    /// The body when small (it only matters for a partial success).
    pub body: Vec<u8>,
}

/// Largest collector answer body read (a partial success is a few bytes).
pub const MAX_ANSWER_BODY: usize = 64 * 1024;

impl Answer {
    /// From a callout's result, headers and body.
    pub fn read(success: bool, headers: &[(&[u8], &[u8])], body: Vec<u8>) -> Answer {
        if !success {
            return Answer::default();
        }
        let get = |name: &[u8]| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        Answer {
            status: get(b":status").and_then(|s| s.trim().parse().ok()),
            retry_after: get(b"retry-after").and_then(|v| v.trim().parse().ok()),
            body,
        }
    }
}

/// A config's export pipeline: the lanes (one per worker) and the main thread's flush state.
pub struct Exporter {
    lanes: Box<[Lane]>,
    /// Main thread only; a mutex because the config object is shared with the workers (it must be `Sync`).
    state: Mutex<State>,
}

struct State {
    lanes: Vec<LaneExport>,
    callouts: HashMap<u64, (usize, Kind)>,
}

/// What one main-thread event gives the exporter: the time, randomness for backoff jitter, the way out to
/// the collector, and the log for problems (written at warn).
pub struct Io<'a> {
    pub now_ns: u64,
    pub jitter: &'a mut dyn FnMut() -> f64,
    pub transport: &'a mut dyn Transport,
    pub log: &'a mut dyn FnMut(String),
}

impl Io<'_> {
    fn now_ms(&self) -> u64 {
        self.now_ns / 1_000_000
    }
}

impl Exporter {
    /// `workers` lanes; `instance_id` gives each lane its `service.instance.id` (a random UUID in the module).
    pub fn new(
        cfg: &Config,
        workers: usize,
        detectors: usize,
        now_ns: u64,
        mut instance_id: impl FnMut() -> String,
    ) -> Exporter {
        let workers = workers.max(1);
        let (max_queue, max_batch, max_series) = cfg.otlp.as_ref().map_or((1, 1, 1), |o| {
            (o.max_queue, o.max_batch, o.metrics_max_series)
        });
        let mut lanes = Vec::with_capacity(workers);
        let mut exports = Vec::with_capacity(workers);
        for _ in 0..workers {
            let resource = export::resource(&cfg.service_name, &instance_id(), &cfg.resource);
            lanes.push(Lane {
                pending: Pending::new(detectors),
                telemetry: Mutex::new(Telemetry {
                    queue: SpanQueue::new(resource.clone(), max_queue, max_batch),
                    metrics: Aggregator::new(max_series, now_ns),
                }),
            });
            exports.push(LaneExport {
                resource,
                spans_in_flight: None,
                spans_next_attempt_ms: 0,
                last_flush_ms: now_ns / 1_000_000,
                metrics_in_flight: None,
                metrics_next_attempt_ms: 0,
                last_close_ms: now_ns / 1_000_000,
                published: ExportStats::default(),
                published_metrics: MetricsStats::default(),
            });
        }
        Exporter {
            lanes: lanes.into_boxed_slice(),
            state: Mutex::new(State {
                lanes: exports,
                callouts: HashMap::new(),
            }),
        }
    }

    /// The lane of worker `index` (an index beyond the workers known at creation folds back; `new` always
    /// makes at least one lane, so this is None only for a type's sake).
    pub fn lane(&self, index: u32) -> Option<&Lane> {
        let n = self.lanes.len().max(1);
        self.lanes.get(usize::try_from(index).unwrap_or(0) % n)
    }

    /// The first lane's resource: what the budget alerts' log records are exported under (`alerts.rs`).
    pub fn resource(&self) -> Option<Resource> {
        self.state().lanes.first().map(|l| l.resource.clone())
    }

    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scheduler's tick (main thread): send what is due in every lane.
    pub fn tick(&self, cfg: &Config, io: &mut Io) {
        let Some(otlp) = cfg.otlp.as_ref() else {
            return;
        };
        let mut st = self.state();
        for i in 0..self.lanes.len() {
            self.flush_spans(&mut st, i, otlp, io);
            if otlp.metrics {
                self.tick_metrics(&mut st, i, otlp, io);
            }
        }
    }

    fn flush_spans(&self, st: &mut State, i: usize, otlp: &Otlp, io: &mut Io) {
        let now = io.now_ms();
        let (Some(lane), Some(ex)) = (self.lanes.get(i), st.lanes.get_mut(i)) else {
            return;
        };
        if ex.spans_in_flight.is_some() || now < ex.spans_next_attempt_ms {
            return;
        }
        let body = {
            let mut tel = lane.lock();
            let q = &mut tel.queue;
            let due = q.batch_ready()
                || q.attempts() > 0
                || now.saturating_sub(ex.last_flush_ms) >= otlp.flush_interval_ms;
            if !due {
                return;
            }
            match q.next_request() {
                Some(b) => b,
                None => return,
            }
        };
        ex.last_flush_ms = now;
        match dispatch(io.transport, otlp, &otlp.traces_path, &body) {
            Ok(id) => {
                ex.spans_in_flight = Some(id);
                st.callouts.insert(id, (i, Kind::Spans));
            }
            Err(r) => {
                // Unknown cluster or a bad request: a configuration problem. Back off and count; traffic goes on.
                (io.log)(format!(
                    "tollgate: OTLP export dispatch to cluster '{}' failed (http_callout_init_result {r})",
                    otlp.cluster
                ));
                let mut tel = lane.lock();
                tel.queue.dispatch_failed();
                let attempts = tel.queue.attempts().max(1);
                ex.spans_next_attempt_ms = now + export::backoff_ms(attempts, None, (io.jitter)());
            }
        }
    }

    fn tick_metrics(&self, st: &mut State, i: usize, otlp: &Otlp, io: &mut Io) {
        let now = io.now_ms();
        let (Some(lane), Some(ex)) = (self.lanes.get(i), st.lanes.get_mut(i)) else {
            return;
        };
        let body = {
            let mut tel = lane.lock();
            let agg = &mut tel.metrics;
            agg.set_max_series(otlp.metrics_max_series);
            if now.saturating_sub(ex.last_close_ms) >= otlp.metrics_interval_ms {
                ex.last_close_ms = now;
                agg.close_interval(&ex.resource, io.now_ns);
            }
            if ex.metrics_in_flight.is_some() || now < ex.metrics_next_attempt_ms {
                return;
            }
            match agg.next_request() {
                Some(b) => b.to_vec(),
                None => return,
            }
        };
        match dispatch(io.transport, otlp, &otlp.metrics_path, &body) {
            Ok(id) => {
                ex.metrics_in_flight = Some(id);
                st.callouts.insert(id, (i, Kind::Metrics));
            }
            Err(r) => {
                (io.log)(format!(
                    "tollgate: OTLP metrics dispatch to cluster '{}' failed (http_callout_init_result {r})",
                    otlp.cluster
                ));
                let mut tel = lane.lock();
                tel.metrics.finish(Outcome::Retry);
                let attempts = tel.metrics.attempts().max(1);
                ex.metrics_next_attempt_ms =
                    now + export::backoff_ms(attempts, None, (io.jitter)());
            }
        }
    }

    /// The collector answered (or failed to) callout `id` (main thread). False if `id` is not an export.
    pub fn on_answer(&self, cfg: &Config, id: u64, answer: &Answer, io: &mut Io) -> bool {
        let mut st = self.state();
        let Some((i, kind)) = st.callouts.remove(&id) else {
            return false;
        };
        let now = io.now_ms();
        let (Some(lane), Some(ex)) = (self.lanes.get(i), st.lanes.get_mut(i)) else {
            return true;
        };
        let outcome = export::classify(answer.status);
        let mut tel = lane.lock();
        let (batches, next_attempt_ms, items): (&mut dyn Batches, _, _) = match kind {
            Kind::Spans => {
                ex.spans_in_flight = None;
                (&mut tel.queue, &mut ex.spans_next_attempt_ms, "spans")
            }
            Kind::Metrics => {
                ex.metrics_in_flight = None;
                (
                    &mut tel.metrics,
                    &mut ex.metrics_next_attempt_ms,
                    "metric data points",
                )
            }
        };
        match batches.finish(outcome) {
            Outcome::Success => {
                if let Some((rejected, message)) =
                    partial_success(&answer.body).filter(|(n, _)| *n > 0)
                {
                    batches.rejected(u64::try_from(rejected).unwrap_or(0));
                    (io.log)(format!(
                        "tollgate: collector rejected {rejected} {items}: {message}"
                    ));
                }
            }
            Outcome::Retry => {
                *next_attempt_ms =
                    now + export::backoff_ms(batches.attempts(), answer.retry_after, (io.jitter)());
            }
            Outcome::Fail => (io.log)(match kind {
                Kind::Spans => format!(
                    "tollgate: OTLP export failed (status {:?}); batch dropped",
                    answer.status
                ),
                Kind::Metrics => format!(
                    "tollgate: OTLP metrics export failed (status {:?}); data points dropped",
                    answer.status
                ),
            }),
        }
        drop(tel);
        // A full batch waiting goes now rather than at the next tick, so that export throughput is not
        // capped at one batch per tick (as in the Wasm build).
        if kind == Kind::Spans {
            if let Some(otlp) = cfg.otlp.as_ref() {
                self.flush_spans(&mut st, i, otlp, io);
            }
        }
        true
    }

    /// Move every lane's counts since the last call into `totals` (main thread), export counters included;
    /// returns the spans held in all lanes (the `tollgate.queue_depth` gauge).
    pub fn drain_stats(&self, totals: &mut Totals) -> u64 {
        let mut st = self.state();
        let mut depth = 0u64;
        for (lane, ex) in self.lanes.iter().zip(st.lanes.iter_mut()) {
            lane.pending.drain_into(totals);
            let tel = lane.lock();
            depth = depth.saturating_add(tel.queue.len() as u64);
            let (now, p) = (tel.queue.stats, ex.published);
            totals.grew(Own::SpansEnqueued, now.enqueued, p.enqueued);
            totals.grew(Own::SpansExported, now.exported, p.exported);
            totals.grew(
                Own::SpansDroppedQueueFull,
                now.dropped_queue_full,
                p.dropped_queue_full,
            );
            totals.grew(
                Own::SpansDroppedFailed,
                now.dropped_failed,
                p.dropped_failed,
            );
            totals.grew(Own::ExportRetries, now.retries, p.retries);
            totals.grew(Own::SpansRejected, now.rejected, p.rejected);
            ex.published = now;
            let (now, p) = (tel.metrics.stats, ex.published_metrics);
            totals.grew(Own::MetricsExported, now.exported_points, p.exported_points);
            totals.grew(Own::MetricsDropped, now.dropped_points, p.dropped_points);
            totals.grew(Own::MetricsRejected, now.rejected_points, p.rejected_points);
            totals.grew(Own::MetricsExportRetries, now.retries, p.retries);
            totals.grew(Own::MetricsOverflow, now.overflow, p.overflow);
            ex.published_metrics = now;
        }
        depth
    }
}

/// The export request: OTLP/HTTP protobuf to `path` on the collector cluster, gzip when configured, the
/// configured extra headers (the Wasm build sends the same). Spans, metrics and the budget alerts' log records.
pub fn dispatch(t: &mut dyn Transport, otlp: &Otlp, path: &str, body: &[u8]) -> Result<u64, u32> {
    let ua = concat!("tollgate/", env!("CARGO_PKG_VERSION"));
    let gz = match otlp.compression {
        Compression::Gzip => export::gzip(body),
        Compression::None => None,
    };
    let mut headers: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":path", path.as_bytes()),
        (":authority", otlp.authority.as_bytes()),
        ("content-type", b"application/x-protobuf"),
        ("user-agent", ua.as_bytes()),
    ];
    if gz.is_some() {
        headers.push(("content-encoding", b"gzip"));
    }
    headers.extend(otlp.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    t.send(
        &otlp.cluster,
        &headers,
        gz.as_deref().unwrap_or(body),
        otlp.timeout_ms,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::Call;
    use crate::stats::Stat;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    /// Cluster, headers, body and timeout of one request.
    pub(crate) type Sent = (String, Vec<(String, Vec<u8>)>, Vec<u8>, u64);

    /// A transport that records what it is asked to send (or refuses it with `refuse`).
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub(crate) sent: Vec<Sent>,
        pub(crate) refuse: Option<u32>,
        pub(crate) next: u64,
    }

    impl Transport for Recorder {
        fn send(
            &mut self,
            cluster: &str,
            headers: &[(&str, &[u8])],
            body: &[u8],
            timeout_ms: u64,
        ) -> Result<u64, u32> {
            if let Some(r) = self.refuse {
                return Err(r);
            }
            self.next += 1;
            self.sent.push((
                cluster.to_string(),
                headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect(),
                body.to_vec(),
                timeout_ms,
            ));
            Ok(self.next)
        }
    }

    fn cfg(metrics: bool) -> Config {
        let json = format!(
            r#"{{"service_name":"gw","otlp":{{"cluster":"otel","authority":"collector","flush_interval_ms":1000,"max_batch":2,"max_queue":3,"metrics":{metrics}}}}}"#
        );
        Config::parse(json.as_bytes()).unwrap_or_else(|e| panic!("{e} in {json}"))
    }

    fn span(cfg: &Config, n: u8) -> Span {
        let mut call = Call::default();
        call.request.model = Some(format!("m{n}"));
        call.ids.span_id = [n; 8];
        call.ids.trace_id = [n; 16];
        tollgate::telemetry::span::build_span(&call, &cfg.span_settings(), None)
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("instance-{n}")
        }
    }

    const S: u64 = 1_000_000_000;

    /// The scheduler's tick at `now`, with a fixed jitter.
    fn tick(
        ex: &Exporter,
        cfg: &Config,
        now: u64,
        jitter: f64,
        t: &mut Recorder,
        logs: &mut Vec<String>,
    ) {
        ex.tick(
            cfg,
            &mut Io {
                now_ns: now,
                jitter: &mut || jitter,
                transport: t,
                log: &mut |m| logs.push(m),
            },
        );
    }

    /// The collector's answer to callout `id` at `now`.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        ex: &Exporter,
        cfg: &Config,
        id: u64,
        a: &Answer,
        now: u64,
        jitter: f64,
        t: &mut Recorder,
        logs: &mut Vec<String>,
    ) -> bool {
        ex.on_answer(
            cfg,
            id,
            a,
            &mut Io {
                now_ns: now,
                jitter: &mut || jitter,
                transport: t,
                log: &mut |m| logs.push(m),
            },
        )
    }

    #[test]
    fn lanes_export_their_own_spans_with_their_own_instance() {
        let cfg = cfg(false);
        let ex = Exporter::new(&cfg, 2, 0, 100 * S, ids());
        assert!(!ex.lane(0).unwrap().push_span(span(&cfg, 1)));
        assert!(!ex.lane(1).unwrap().push_span(span(&cfg, 2)));
        assert!(
            ex.lane(1).unwrap().push_span(span(&cfg, 3)),
            "a full batch wakes the main thread"
        );
        let mut t = Recorder::default();
        let mut logs = Vec::new();
        // Lane 1 has a full batch: sent at once; lane 0 waits for its flush interval.
        tick(&ex, &cfg, 100 * S + 1, 0.5, &mut t, &mut logs);
        assert_eq!(t.sent.len(), 1);
        let (cluster, headers, body, _) = &t.sent[0];
        assert_eq!(cluster, "otel");
        assert!(headers.contains(&(":authority".into(), b"collector".to_vec())));
        assert!(headers.contains(&(":path".into(), b"/v1/traces".to_vec())));
        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let rs = &req.resource_spans[0];
        let instance = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .find(|a| a.key == "service.instance.id");
        assert!(format!("{instance:?}").contains("instance-2"));
        assert_eq!(rs.scope_spans[0].spans.len(), 2);
        // One second later lane 0 is due.
        tick(&ex, &cfg, 101 * S + 1, 0.5, &mut t, &mut logs);
        assert_eq!(t.sent.len(), 2);
        let mut totals = Totals::new(0);
        assert_eq!(
            ex.drain_stats(&mut totals),
            3,
            "in flight still counts as queued"
        );
        assert_eq!(totals.counters[Stat::Own(Own::SpansEnqueued).index()], 3);
        let ok = Answer {
            status: Some(200),
            ..Answer::default()
        };
        assert!(answer(
            &ex,
            &cfg,
            1,
            &ok,
            101 * S + 2,
            0.5,
            &mut t,
            &mut logs
        ));
        assert!(answer(
            &ex,
            &cfg,
            2,
            &ok,
            101 * S + 3,
            0.5,
            &mut t,
            &mut logs
        ));
        assert!(!answer(
            &ex,
            &cfg,
            99,
            &ok,
            101 * S + 3,
            0.5,
            &mut t,
            &mut logs
        ));
        let mut totals = Totals::new(0);
        assert_eq!(ex.drain_stats(&mut totals), 0);
        assert_eq!(totals.counters[Stat::Own(Own::SpansExported).index()], 3);
        assert_eq!(
            totals.counters[Stat::Own(Own::SpansEnqueued).index()],
            0,
            "published once"
        );
        assert!(logs.is_empty(), "{logs:?}");
    }

    #[test]
    fn retries_back_off_and_drops_are_counted() {
        let cfg = cfg(false);
        let ex = Exporter::new(&cfg, 1, 0, 100 * S, ids());
        for i in 0..5 {
            ex.lane(0).unwrap().push_span(span(&cfg, i));
        }
        let mut t = Recorder::default();
        let mut logs = Vec::new();
        let mut now = 100 * S;
        tick(&ex, &cfg, now, 0.0, &mut t, &mut logs);
        assert_eq!(t.sent.len(), 1);
        let busy = Answer {
            status: Some(503),
            retry_after: Some(2),
            ..Answer::default()
        };
        for attempt in 1..export::MAX_ATTEMPTS {
            let id = t.next;
            assert!(answer(&ex, &cfg, id, &busy, now, 0.0, &mut t, &mut logs));
            assert_eq!(
                t.sent.len() as u32,
                attempt,
                "nothing is sent before the backoff"
            );
            now += 2 * S; // Retry-After: 2
            tick(&ex, &cfg, now, 0.0, &mut t, &mut logs);
            assert_eq!(t.sent.len() as u32, attempt + 1, "the same batch again");
            assert_eq!(t.sent.last().unwrap().2, t.sent[0].2);
        }
        let id = t.next;
        answer(&ex, &cfg, id, &busy, now, 0.0, &mut t, &mut logs);
        let mut totals = Totals::new(0);
        ex.drain_stats(&mut totals);
        assert_eq!(
            totals.counters[Stat::Own(Own::SpansDroppedFailed).index()],
            2
        );
        assert_eq!(
            totals.counters[Stat::Own(Own::SpansDroppedQueueFull).index()],
            2,
            "max_queue 3"
        );
        assert_eq!(
            totals.counters[Stat::Own(Own::ExportRetries).index()],
            u64::from(export::MAX_ATTEMPTS - 1)
        );
        // Envoy refusing to dispatch (unknown cluster) is logged and retried later.
        let mut refusing = Recorder {
            refuse: Some(2),
            ..Recorder::default()
        };
        now += 60 * S;
        tick(&ex, &cfg, now, 0.0, &mut refusing, &mut logs);
        assert!(
            logs.iter()
                .any(|l| l.contains("cluster 'otel'") && l.contains("result 2")),
            "{logs:?}"
        );
        assert_eq!(
            ex.lane(0).unwrap().queued(),
            1,
            "the batch went back to the queue"
        );
    }

    #[test]
    fn metrics_are_closed_per_interval_and_sent_per_lane() {
        let cfg = cfg(true);
        let ex = Exporter::new(&cfg, 2, 0, 100 * S, ids());
        let mut call = Call::default();
        call.request.model = Some("gpt".into());
        call.response.usage.input = Some(3);
        ex.lane(0).unwrap().record(&call, cfg.semconv);
        let mut t = Recorder::default();
        let interval = cfg.otlp.as_ref().unwrap().metrics_interval_ms * 1_000_000;
        tick(&ex, &cfg, 100 * S + interval, 0.5, &mut t, &mut Vec::new());
        let metrics: Vec<_> = t
            .sent
            .iter()
            .filter(|(_, h, _, _)| h.contains(&(":path".into(), b"/v1/metrics".to_vec())))
            .collect();
        assert_eq!(
            metrics.len(),
            1,
            "only the lane that recorded something sends"
        );
    }

    #[test]
    fn answers_are_read_from_callout_headers() {
        let h: Vec<(&[u8], &[u8])> = vec![(b":status", b"503"), (b"Retry-After", b" 7")];
        let a = Answer::read(true, &h, b"x".to_vec());
        assert_eq!(
            (a.status, a.retry_after, a.body.as_slice()),
            (Some(503), Some(7), b"x".as_slice())
        );
        assert_eq!(Answer::read(false, &h, Vec::new()), Answer::default());
    }
}
