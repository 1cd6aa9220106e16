//! OTLP log records for tollgate's events (`POST /v1/logs`), written straight to protobuf like the spans.
//!
//! An event is a log record with `event_name` set (`LogRecord.event_name = 12`, opentelemetry-proto
//! `logs.proto`): the OpenTelemetry semantic conventions deprecate the `event.name` attribute in its favour
//! (`model/event/deprecated/registry-deprecated.yaml`: "The value of this attribute MUST now be set as the
//! value of the EventName field on the LogRecord"), so the name is written there only. Names are in
//! tollgate's namespace; the GenAI conventions define no budget events.
//!
//! `tollgate.budget.threshold`: a budget rule's committed usage reached one of its thresholds in a window,
//! reported once per (rule, subject, window, threshold) across the Envoy's workers. Attributes:
//!
//! | attribute | type | |
//! | --- | --- | --- |
//! | `tollgate.budget.rule` | string | `rules[i]`, as on spans |
//! | `tollgate.budget.dimension` | string | what the subject is: `tenant`, `team`, `user`, … |
//! | `tollgate.budget.subject` | string | its value (`team-a`, `~overflow` for the shared overflow counter) |
//! | `tollgate.budget.window.id` | string | `2026-03`, `2026-W09`, `2026-03-05`, or the start of a fixed window |
//! | `tollgate.budget.window.start`, `.end` | int | Unix seconds, `[start, end)` |
//! | `tollgate.budget.threshold` | double | the fraction reached (0.8) |
//! | `tollgate.budget.measure` | string | the limit that reached it: `tokens`, `input_tokens`, `output_tokens`, `cost_usd` |
//! | `tollgate.budget.usage`, `tollgate.budget.limit` | double | in the measure's unit: tokens, or USD |
//!
//! Severity INFO (9), WARN (13) for a threshold of 1.0 (the budget is spent: calls are being refused). The
//! body is a one-line summary for log viewers. With the committing call's trace context the record joins
//! its trace.

use super::export::{Resource, SCOPE_NAME, VERSION};
use crate::codec::proto::{self, Value};

/// `event_name` of a threshold crossing.
pub const EVENT_THRESHOLD: &str = "tollgate.budget.threshold";

const SEVERITY_INFO: u64 = 9;
const SEVERITY_WARN: u64 = 13;

/// The trace a record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceRef {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// W3C trace flags (bit 0: sampled).
    pub flags: u8,
}

/// A budget threshold crossing, in plain values (the budget module maps its crossing to this).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThresholdEvent<'a> {
    pub time_unix_nano: u64,
    pub rule: &'a str,
    pub dimension: &'a str,
    pub subject: &'a str,
    pub window_id: &'a str,
    pub window_start_s: u64,
    pub window_end_s: u64,
    /// The fraction reached, in (0, 1].
    pub threshold: f64,
    pub measure: &'a str,
    /// Committed usage and limit in the measure's unit (tokens, or USD).
    pub usage: f64,
    pub limit: f64,
    pub trace: Option<TraceRef>,
}

impl ThresholdEvent<'_> {
    /// One line for people: `budget rules[0]: team team-a reached 80% of its cost_usd limit (400.5 of 500) in window 2026-03`.
    pub fn summary(&self) -> String {
        let n = |v: f64| crate::codec::json::write::decimal(v).unwrap_or_else(|| "?".into());
        format!(
            "budget {}: {} {} reached {}% of its {} limit ({} of {}) in window {}",
            self.rule,
            self.dimension,
            self.subject,
            n((self.threshold * 100.0 * 1e4).round() / 1e4),
            self.measure,
            n(self.usage),
            n(self.limit),
            self.window_id
        )
    }
}

/// An encoded `LogRecord` message body, ready to batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord(Vec<u8>);

impl LogRecord {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The `LogRecord` of a threshold crossing (fields in number order, as prost writes them).
pub fn threshold_record(ev: &ThresholdEvent) -> LogRecord {
    let mut b = Vec::with_capacity(512);
    proto::opt_fixed64(&mut b, 1, ev.time_unix_nano);
    let spent = ev.threshold >= 1.0;
    proto::opt_varint(&mut b, 2, if spent { SEVERITY_WARN } else { SEVERITY_INFO });
    proto::bytes(&mut b, 3, if spent { b"WARN" } else { b"INFO" });
    // body: AnyValue { string_value = 1 }
    let summary = ev.summary();
    proto::message(&mut b, 5, |b| proto::bytes(b, 1, summary.as_bytes()));
    let ints = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    for (key, value) in [
        ("tollgate.budget.rule", Value::Str(ev.rule)),
        ("tollgate.budget.dimension", Value::Str(ev.dimension)),
        ("tollgate.budget.subject", Value::Str(ev.subject)),
        ("tollgate.budget.window.id", Value::Str(ev.window_id)),
        ("tollgate.budget.window.start", ints(ev.window_start_s)),
        ("tollgate.budget.window.end", ints(ev.window_end_s)),
        ("tollgate.budget.threshold", Value::Double(ev.threshold)),
        ("tollgate.budget.measure", Value::Str(ev.measure)),
        ("tollgate.budget.usage", Value::Double(ev.usage)),
        ("tollgate.budget.limit", Value::Double(ev.limit)),
    ] {
        proto::key_value(&mut b, 6, key, value);
    }
    if let Some(t) = ev.trace {
        if t.flags != 0 {
            proto::tag(&mut b, 8, proto::FIXED32);
            b.extend_from_slice(&u32::from(t.flags).to_le_bytes());
        }
        if t.trace_id != [0; 16] && t.span_id != [0; 8] {
            proto::bytes(&mut b, 9, &t.trace_id);
            proto::bytes(&mut b, 10, &t.span_id);
        }
    }
    proto::opt_fixed64(&mut b, 11, ev.time_unix_nano);
    proto::bytes(&mut b, 12, EVENT_THRESHOLD.as_bytes());
    LogRecord(b)
}

/// `ExportLogsServiceRequest { resource_logs = 1 { resource = 1, scope_logs = 2 { scope = 1,
/// log_records = 2 } } }` for one resource and scope, the records copied in as they are.
pub fn encode(resource: &Resource, records: &[LogRecord]) -> Vec<u8> {
    let mut b = Vec::with_capacity(
        64 + resource.as_bytes().len() + records.iter().map(|r| r.0.len() + 4).sum::<usize>(),
    );
    proto::message(&mut b, 1, |b| {
        proto::bytes(b, 1, resource.as_bytes());
        proto::message(b, 2, |b| {
            proto::scope(b, 1, SCOPE_NAME, VERSION);
            for r in records {
                proto::bytes(b, 2, &r.0);
            }
        });
    });
    b
}

/// Counters the host publishes as Envoy stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub exported: u64,
    pub retries: u64,
    /// The queue was full (collector slow or down).
    pub dropped_queue_full: u64,
    /// Refused by the collector, or still failing after `MAX_ATTEMPTS`.
    pub dropped_failed: u64,
}

/// A bounded queue of log records exported in batches, one request in flight at a time, retried with
/// `export::backoff_ms` on the answers OTLP/HTTP says to retry, dropped and counted otherwise.
pub struct LogQueue {
    records: std::collections::VecDeque<LogRecord>,
    in_flight: Vec<LogRecord>,
    attempts: u32,
    not_before_ms: u64,
    max_queue: usize,
    pub stats: LogStats,
}

/// Records per export request.
const MAX_BATCH: usize = 100;
/// Attempts of one batch before it is dropped.
const MAX_ATTEMPTS: u32 = 5;

impl LogQueue {
    pub fn new(max_queue: usize) -> LogQueue {
        LogQueue {
            records: std::collections::VecDeque::new(),
            in_flight: Vec::new(),
            attempts: 0,
            not_before_ms: 0,
            max_queue: max_queue.max(1),
            stats: LogStats::default(),
        }
    }

    /// Queue a record; false (counted) when the queue is full.
    pub fn push(&mut self, r: LogRecord) -> bool {
        if self.records.len() + self.in_flight.len() >= self.max_queue {
            self.stats.dropped_queue_full += 1;
            return false;
        }
        self.records.push_back(r);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.in_flight.is_empty()
    }

    /// The next export request's body, when none is in flight, records wait and the backoff has passed.
    pub fn next(&mut self, resource: &Resource, now_ms: u64) -> Option<Vec<u8>> {
        if !self.in_flight.is_empty() || self.records.is_empty() || now_ms < self.not_before_ms {
            return None;
        }
        let n = self.records.len().min(MAX_BATCH);
        self.in_flight = self.records.drain(..n).collect();
        self.attempts = self.attempts.saturating_add(1);
        Some(encode(resource, &self.in_flight))
    }

    /// The collector's answer to the request in flight (`status` None: none came, or it could not be sent).
    pub fn finish(
        &mut self,
        status: Option<u16>,
        retry_after_s: Option<u64>,
        now_ms: u64,
        jitter: f64,
    ) {
        let batch = std::mem::take(&mut self.in_flight);
        let n = batch.len() as u64;
        match super::export::classify(status) {
            super::export::Outcome::Success => {
                self.stats.exported += n;
                self.attempts = 0;
            }
            super::export::Outcome::Retry if self.attempts < MAX_ATTEMPTS => {
                self.stats.retries += 1;
                self.not_before_ms = now_ms.saturating_add(super::export::backoff_ms(
                    self.attempts,
                    retry_after_s,
                    jitter,
                ));
                for r in batch.into_iter().rev() {
                    self.records.push_front(r);
                }
            }
            _ => {
                self.stats.dropped_failed += n;
                self.attempts = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::export::resource;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord as PLogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource as PResource;
    use prost::Message;

    #[test]
    fn the_queue_batches_retries_then_drops_and_counts() {
        let res = resource("svc", "id", &[]);
        let rec = |i: u64| {
            let mut ev = event(0.8, None);
            ev.time_unix_nano = i;
            threshold_record(&ev)
        };
        let mut q = LogQueue::new(150);
        for i in 0..160 {
            q.push(rec(i));
        }
        assert_eq!(q.stats.dropped_queue_full, 10);
        let body = q.next(&res, 0).unwrap();
        let req = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(req.resource_logs[0].scope_logs[0].log_records.len(), 100);
        assert!(q.next(&res, 0).is_none(), "one request in flight");
        // A 503 puts the batch back in front, after a backoff.
        q.finish(Some(503), None, 0, 0.0);
        assert!(q.next(&res, 0).is_none(), "waits out the backoff");
        let again = q.next(&res, 60_000).unwrap();
        assert_eq!(again, body);
        q.finish(Some(200), None, 60_000, 0.0);
        assert_eq!(q.stats.exported, 100);
        // A 400 drops what was sent.
        q.next(&res, 60_000).unwrap();
        q.finish(Some(400), None, 60_000, 0.0);
        assert_eq!((q.stats.dropped_failed, q.is_empty()), (50, true));
        // No answer, MAX_ATTEMPTS times: dropped.
        q.push(rec(1));
        let mut now = 100_000;
        for _ in 0..MAX_ATTEMPTS {
            assert!(q.next(&res, now).is_some());
            q.finish(None, None, now, 0.0);
            now += 100_000;
        }
        assert_eq!(
            (q.stats.dropped_failed, q.stats.retries, q.is_empty()),
            (51, 5, true)
        );
    }

    fn event(threshold: f64, trace: Option<TraceRef>) -> ThresholdEvent<'static> {
        ThresholdEvent {
            time_unix_nano: 1_772_334_000_123_456_789,
            rule: "rules[0]",
            dimension: "team",
            subject: "team-a",
            window_id: "2026-03",
            window_start_s: 1_772_323_200,
            window_end_s: 1_775_001_600,
            threshold,
            measure: "cost_usd",
            usage: 400.5,
            limit: 500.0,
            trace,
        }
    }

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    /// The same record built with the official generated types.
    fn generated(ev: &ThresholdEvent) -> PLogRecord {
        use any_value::Value as V;
        let spent = ev.threshold >= 1.0;
        let trace = ev
            .trace
            .filter(|t| t.trace_id != [0; 16] && t.span_id != [0; 8]);
        PLogRecord {
            time_unix_nano: ev.time_unix_nano,
            observed_time_unix_nano: ev.time_unix_nano,
            severity_number: if spent { 13 } else { 9 },
            severity_text: if spent { "WARN" } else { "INFO" }.into(),
            body: Some(AnyValue {
                value: Some(V::StringValue(ev.summary())),
            }),
            attributes: vec![
                kv("tollgate.budget.rule", V::StringValue(ev.rule.into())),
                kv(
                    "tollgate.budget.dimension",
                    V::StringValue(ev.dimension.into()),
                ),
                kv("tollgate.budget.subject", V::StringValue(ev.subject.into())),
                kv(
                    "tollgate.budget.window.id",
                    V::StringValue(ev.window_id.into()),
                ),
                kv(
                    "tollgate.budget.window.start",
                    V::IntValue(ev.window_start_s as i64),
                ),
                kv(
                    "tollgate.budget.window.end",
                    V::IntValue(ev.window_end_s as i64),
                ),
                kv("tollgate.budget.threshold", V::DoubleValue(ev.threshold)),
                kv("tollgate.budget.measure", V::StringValue(ev.measure.into())),
                kv("tollgate.budget.usage", V::DoubleValue(ev.usage)),
                kv("tollgate.budget.limit", V::DoubleValue(ev.limit)),
            ],
            flags: ev.trace.map_or(0, |t| u32::from(t.flags)),
            trace_id: trace.map_or(Vec::new(), |t| t.trace_id.to_vec()),
            span_id: trace.map_or(Vec::new(), |t| t.span_id.to_vec()),
            event_name: EVENT_THRESHOLD.into(),
            ..Default::default()
        }
    }

    #[test]
    fn records_are_byte_identical_to_the_generated_types() {
        let traced = TraceRef {
            trace_id: [0xab; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            flags: 1,
        };
        let unsampled = TraceRef { flags: 0, ..traced };
        let zero = TraceRef {
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
        };
        let mut odd = event(0.333333, None);
        odd.subject = "key:0123456789abcdef";
        odd.measure = "tokens";
        odd.usage = 0.0;
        odd.limit = 1e18;
        odd.window_start_s = u64::MAX;
        for ev in [
            event(0.8, None),
            event(1.0, Some(traced)),
            event(0.5, Some(unsampled)),
            event(0.5, Some(zero)),
            odd,
        ] {
            let mine = threshold_record(&ev);
            let mut want = generated(&ev);
            if ev.window_start_s == u64::MAX {
                want.attributes[4] = kv(
                    "tollgate.budget.window.start",
                    any_value::Value::IntValue(i64::MAX),
                );
            }
            assert_eq!(mine.as_bytes(), want.encode_to_vec().as_slice(), "{ev:?}");
        }
    }

    #[test]
    fn export_request_decodes_with_resource_scope_and_event_name() {
        let res = resource("egress", "vm-1", &[]);
        let records = [
            threshold_record(&event(0.5, None)),
            threshold_record(&event(1.0, None)),
        ];
        let body = encode(&res, &records);
        let req = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(req.resource_logs.len(), 1);
        let rl = &req.resource_logs[0];
        let attrs = &rl.resource.as_ref().unwrap().attributes;
        assert!(attrs.iter().any(|a| a.key == "service.name"));
        let sl = &rl.scope_logs[0];
        assert_eq!(sl.scope.as_ref().unwrap().name, "tollgate");
        assert_eq!(sl.log_records.len(), 2);
        assert!(sl
            .log_records
            .iter()
            .all(|r| r.event_name == EVENT_THRESHOLD));
        assert_eq!(sl.log_records[1].severity_number, 13);
        assert!(!sl.log_records[0]
            .attributes
            .iter()
            .any(|a| a.key == "event.name"));
        // And byte-identical to the generated request.
        let want = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(PResource::decode(res.as_bytes()).unwrap()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.into(),
                        version: VERSION.into(),
                        ..Default::default()
                    }),
                    log_records: vec![generated(&event(0.5, None)), generated(&event(1.0, None))],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(body, want.encode_to_vec());
        assert_eq!(
            encode(&res, &[]),
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: want.resource_logs[0].resource.clone(),
                    scope_logs: vec![ScopeLogs {
                        scope: want.resource_logs[0].scope_logs[0].scope.clone(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec()
        );
    }

    #[test]
    fn the_summary_reads_as_a_sentence() {
        assert_eq!(
            event(0.8, None).summary(),
            "budget rules[0]: team team-a reached 80% of its cost_usd limit (400.5 of 500) in window 2026-03"
        );
        let mut ev = event(1.0 / 3.0, None);
        ev.measure = "tokens";
        ev.usage = 3334.0;
        ev.limit = 10000.0;
        assert!(ev
            .summary()
            .contains("33.3333% of its tokens limit (3334 of 10000)"));
    }
}
