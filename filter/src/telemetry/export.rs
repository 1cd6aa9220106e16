//! The span export queue: bounded, batched, encoded as OTLP/HTTP protobuf. Pure: the host decides when to
//! flush, sends the bytes, and reports the outcome back so retries and drops are accounted for.

use super::span::Span;
use crate::codec::proto::{self, Value};
use std::collections::VecDeque;

pub const SCOPE_NAME: &str = "tollgate";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Counters the host publishes as Envoy stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub enqueued: u64,
    /// Dropped because the queue was full (collector slow or down).
    pub dropped_queue_full: u64,
    /// Dropped after a non-retryable answer or too many attempts.
    pub dropped_failed: u64,
    pub exported: u64,
    pub retries: u64,
    /// Spans the collector accepted the request for but rejected (`partial_success`); not retried.
    pub rejected: u64,
}

/// A bounded FIFO of finished spans plus the batch currently being sent.
pub struct SpanQueue {
    resource: Resource,
    queue: VecDeque<Span>,
    max_queue: usize,
    max_batch: usize,
    in_flight: Option<InFlight>,
    pub stats: ExportStats,
}

struct InFlight {
    spans: Vec<Span>,
    attempts: u32,
}

/// What the collector's answer means for the batch in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// 429 / 502 / 503 / 504 or a connection failure: keep the batch and try again after a backoff.
    Retry,
    /// Any other answer: drop and count.
    Fail,
}

/// Classify a collector response per the OTLP/HTTP spec. `None` = no response (timeout, reset, refused).
pub fn classify(status: Option<u16>) -> Outcome {
    match status {
        Some(200..=299) => Outcome::Success,
        Some(429 | 502 | 503 | 504) | None => Outcome::Retry,
        Some(_) => Outcome::Fail,
    }
}

/// `service.instance.id` for one Wasm VM: a random (version 4) UUID, as the semconv recommends, so every
/// worker's VM is a distinct instance.
pub fn instance_id(random: [u8; 16]) -> String {
    let mut b = random;
    if let Some(v) = b.get_mut(6) {
        *v = (*v & 0x0f) | 0x40;
    }
    if let Some(v) = b.get_mut(8) {
        *v = (*v & 0x3f) | 0x80;
    }
    let h = crate::codec::hex::hex(&b);
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

/// Gzip an export body (`otlp.compression: "gzip"`). None if compression fails; the caller then sends the
/// body uncompressed.
pub fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    // A gzip member (RFC 1952): a header without name or time (OS "unknown"), raw deflate at level 1
    // (fastest), then the CRC-32 and length of the input.
    let mut out = Vec::with_capacity(body.len() / 3 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(body, 1));
    out.extend_from_slice(&crate::codec::crc32::hash(body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    Some(out)
}

/// Batches are retried at most this many times before they are dropped.
pub const MAX_ATTEMPTS: u32 = 5;

/// The OTLP `Resource` every export request carries, encoded once per configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource(Vec<u8>);

impl Resource {
    /// The `Resource` message body.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

pub fn resource(service_name: &str, instance_id: &str, extra: &[(String, String)]) -> Resource {
    let mut attributes: Vec<(&str, &str)> = vec![
        ("service.name", service_name),
        ("service.version", VERSION),
        ("service.instance.id", instance_id),
        ("telemetry.sdk.name", SCOPE_NAME),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", VERSION),
    ];
    for (k, v) in extra {
        attributes.retain(|a| a.0 != k);
        attributes.push((k, v));
    }
    let mut buf = Vec::new();
    for (k, v) in attributes {
        proto::key_value(&mut buf, 1, k, Value::Str(v));
    }
    Resource(buf)
}

impl SpanQueue {
    pub fn new(resource: Resource, max_queue: usize, max_batch: usize) -> SpanQueue {
        SpanQueue {
            resource,
            queue: VecDeque::new(),
            max_queue: max_queue.max(1),
            max_batch: max_batch.max(1),
            in_flight: None,
            stats: ExportStats::default(),
        }
    }

    /// New limits and resource after a configuration change; queued spans are kept (over the new bound, the
    /// newest are dropped and counted).
    pub fn reconfigure(&mut self, resource: Resource, max_queue: usize, max_batch: usize) {
        self.resource = resource;
        self.max_queue = max_queue.max(1);
        self.max_batch = max_batch.max(1);
        while self.queue.len() > self.max_queue {
            self.queue.pop_back();
            self.stats.dropped_queue_full += 1;
        }
    }

    /// Queue a span; when full, the new span is dropped (older spans are already closer to export).
    pub fn push(&mut self, span: Span) {
        let held = self.queue.len() + self.in_flight.as_ref().map_or(0, |f| f.spans.len());
        if held >= self.max_queue {
            self.stats.dropped_queue_full += 1;
        } else {
            self.queue.push_back(span);
            self.stats.enqueued += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len() + self.in_flight.as_ref().map_or(0, |f| f.spans.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// A full batch is waiting (flush now rather than at the next tick).
    pub fn batch_ready(&self) -> bool {
        self.queue.len() >= self.max_batch
    }

    /// Start sending: the encoded request body for the next batch (or the retried one), or None when there is
    /// nothing to send or a send is already in flight.
    pub fn next_request(&mut self) -> Option<Vec<u8>> {
        if self.in_flight.is_none() {
            let n = self.queue.len().min(self.max_batch);
            if n == 0 {
                return None;
            }
            let spans: Vec<Span> = self.queue.drain(..n).collect();
            self.in_flight = Some(InFlight { spans, attempts: 0 });
        }
        let flight = self.in_flight.as_mut()?;
        flight.attempts += 1;
        Some(encode(&self.resource, &flight.spans))
    }

    /// The request could not even be dispatched (e.g. unknown cluster): put the batch back for later.
    pub fn dispatch_failed(&mut self) {
        self.finish(Outcome::Retry);
    }

    /// Record the collector's answer for the batch in flight. Returns the outcome actually applied (a
    /// retryable failure becomes `Fail` once attempts are exhausted).
    pub fn finish(&mut self, outcome: Outcome) -> Outcome {
        let Some(flight) = self.in_flight.take() else {
            return outcome;
        };
        let n = flight.spans.len() as u64;
        match outcome {
            Outcome::Success => {
                self.stats.exported += n;
                Outcome::Success
            }
            Outcome::Retry if flight.attempts < MAX_ATTEMPTS => {
                self.stats.retries += 1;
                self.in_flight = Some(flight);
                Outcome::Retry
            }
            Outcome::Retry | Outcome::Fail => {
                self.stats.dropped_failed += n;
                Outcome::Fail
            }
        }
    }

    /// The collector accepted the last request but rejected `n` spans (`partial_success`): counted, not retried.
    pub fn rejected(&mut self, n: u64) {
        self.stats.rejected = self.stats.rejected.saturating_add(n);
        self.stats.exported = self.stats.exported.saturating_sub(n);
    }

    /// Attempts made for the batch in flight (for backoff).
    pub fn attempts(&self) -> u32 {
        self.in_flight.as_ref().map_or(0, |f| f.attempts)
    }
}

/// `ExportTraceServiceRequest { resource_spans = 1 }` for one resource and scope: the queued span messages
/// are copied in as they are.
pub fn encode(resource: &Resource, spans: &[Span]) -> Vec<u8> {
    // ScopeSpans { scope = 1, spans = 2 }, ResourceSpans { resource = 1, scope_spans = 2 }.
    let scope =
        proto::field_len(proto::field_len(SCOPE_NAME.len()) + proto::field_len(VERSION.len()));
    let scope_spans = scope
        + spans
            .iter()
            .map(|s| proto::field_len(s.as_bytes().len()))
            .sum::<usize>();
    let resource_spans = proto::field_len(resource.0.len()) + proto::field_len(scope_spans);
    let mut b = Vec::with_capacity(proto::field_len(resource_spans));
    proto::len_prefix(&mut b, 1, resource_spans);
    proto::bytes(&mut b, 1, &resource.0);
    proto::len_prefix(&mut b, 2, scope_spans);
    proto::scope(&mut b, 1, SCOPE_NAME, VERSION);
    for s in spans {
        proto::bytes(&mut b, 2, s.as_bytes());
    }
    b
}

/// Backoff before retry `attempt` (1-based), in ms: exponential from 500 ms, capped at 30 s, with the
/// collector's `Retry-After` (seconds) taking precedence when larger. `jitter` in [0,1) spreads VMs apart.
pub fn backoff_ms(attempt: u32, retry_after_s: Option<u64>, jitter: f64) -> u64 {
    let base = 500u64
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(6))
        .min(30_000);
    let jittered = base / 2 + ((base / 2) as f64 * jitter.clamp(0.0, 1.0)) as u64;
    let hinted = retry_after_s.map_or(0, |s| s.min(300).saturating_mul(1000));
    jittered.max(hinted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Call, Route};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    fn span(n: u8) -> Span {
        let mut call = Call {
            route: Some(Route {
                api: crate::call::Api::OpenAiChat,
                provider: "openai".into(),
                path_model: None,
                path_stream: false,
            }),
            ..Default::default()
        };
        call.request.model = Some(format!("s{n}"));
        call.ids.span_id = [n; 8];
        call.ids.trace_id = [n; 16];
        super::super::span::build_span(&call, &super::super::span::Settings::default(), None)
    }

    #[test]
    fn encodes_and_decodes() {
        let mut q = SpanQueue::new(
            resource("gw", "vm-1", &[("env".into(), "prod".into())]),
            10,
            2,
        );
        for i in 0..3 {
            q.push(span(i));
        }
        let body = q.next_request().unwrap();
        let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let rs = &decoded.resource_spans[0];
        let names: Vec<_> = rs.scope_spans[0]
            .spans
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["chat s0", "chat s1"]);
        let keys: Vec<_> = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert!(keys.contains(&"service.instance.id") && keys.contains(&"env"));
        assert!(
            q.next_request().is_some(),
            "a retry re-sends the in-flight batch"
        );
        assert_eq!(q.finish(Outcome::Success), Outcome::Success);
        assert_eq!(q.stats.exported, 2);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn queue_is_bounded_and_failures_counted() {
        let mut q = SpanQueue::new(resource("gw", "vm", &[]), 3, 3);
        for i in 0..5 {
            q.push(span(i));
        }
        assert_eq!((q.len(), q.stats.dropped_queue_full), (3, 2));
        q.next_request().unwrap();
        for _ in 1..MAX_ATTEMPTS {
            assert_eq!(q.finish(Outcome::Retry), Outcome::Retry);
            q.push(span(9));
            assert_eq!(
                q.len(),
                3,
                "the batch being retried still counts against the bound"
            );
            q.next_request().unwrap();
        }
        assert_eq!(q.finish(Outcome::Retry), Outcome::Fail);
        assert_eq!(q.stats.dropped_failed, 3);
        assert!(q.is_empty());
    }

    #[test]
    fn classification_and_backoff() {
        assert_eq!(classify(Some(200)), Outcome::Success);
        for s in [429, 502, 503, 504] {
            assert_eq!(classify(Some(s)), Outcome::Retry);
        }
        assert_eq!(classify(None), Outcome::Retry);
        assert_eq!(classify(Some(400)), Outcome::Fail);
        assert_eq!(classify(Some(500)), Outcome::Fail);
        assert_eq!(backoff_ms(1, None, 0.0), 250);
        assert_eq!(backoff_ms(1, Some(7), 0.0), 7000);
        assert!(backoff_ms(40, None, 1.0) <= 30_000);
        assert_eq!(backoff_ms(3, Some(1), 0.0), 1000);
    }

    #[test]
    fn instance_ids_are_uuids() {
        let id = instance_id([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_ne!(instance_id([1; 16]), instance_id([2; 16]));
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let mut q = SpanQueue::new(resource("gw", "vm", &[]), 10, 10);
        for i in 0..10 {
            q.push(span(i));
        }
        let body = q.next_request().unwrap();
        let gz = gzip(&body).unwrap();
        assert!(gz.len() < body.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
        q.finish(Outcome::Success);
        q.rejected(3);
        assert_eq!((q.stats.exported, q.stats.rejected), (7, 3));
    }
}
