//! The pre-#8 `telemetry/export.rs` (prost structs from opentelemetry-proto), kept verbatim for the
//! equivalence tests: the direct encoders must produce the very same bytes.
#![allow(dead_code, clippy::all)]

// The span export queue: bounded, batched, encoded as OTLP/HTTP protobuf. Pure: the host decides when to
// flush, sends the bytes, and reports the outcome back so retries and drops are accounted for.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
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
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 3 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

/// Batches are retried at most this many times before they are dropped.
pub const MAX_ATTEMPTS: u32 = 5;

pub fn resource(service_name: &str, instance_id: &str, extra: &[(String, String)]) -> Resource {
    let s = |k: &str, v: &str| KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..Default::default()
    };
    let mut attributes = vec![
        s("service.name", service_name),
        s("service.version", VERSION),
        s("service.instance.id", instance_id),
        s("telemetry.sdk.name", SCOPE_NAME),
        s("telemetry.sdk.language", "rust"),
        s("telemetry.sdk.version", VERSION),
    ];
    for (k, v) in extra {
        attributes.retain(|a| &a.key != k);
        attributes.push(s(k, v));
    }
    Resource {
        attributes,
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    }
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

pub fn encode(resource: &Resource, spans: &[Span]) -> Vec<u8> {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: VERSION.to_owned(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                spans: spans.to_vec(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    req.encode_to_vec()
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
