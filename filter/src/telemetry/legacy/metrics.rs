//! The pre-#8 `telemetry/metrics.rs` (prost structs from opentelemetry-proto), kept verbatim for the
//! equivalence tests: the direct encoders must produce the very same bytes.
#![allow(dead_code, clippy::all)]

// GenAI client metrics: a per-VM aggregator of finished calls, encoded as one OTLP/HTTP metrics request
// per interval with DELTA temporality. Pure: the host records calls, asks for a request on its interval,
// sends it and reports the outcome.
//
// Why delta: each Envoy worker runs its own Wasm VM, so several VMs report under one service identity.
// Each VM exports only what it saw since its previous export (start time = end of its previous interval),
// which a backend can sum across VMs; cumulative series from several VMs would collide. Each VM also has a
// distinct `service.instance.id`, so even a backend that keeps series per instance stays correct.

use super::export::{Outcome, MAX_ATTEMPTS, SCOPE_NAME, VERSION};
use crate::call::Call;
use crate::telemetry::Semconv;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::collections::BTreeMap;

/// Explicit bucket boundaries the semconv asks for on token histograms.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// Explicit bucket boundaries (seconds) the semconv asks for on duration histograms.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// The attribute marking the series that collects measurements beyond the cardinality limit (as the
/// OpenTelemetry SDK specification does).
pub const OVERFLOW_ATTR: &str = "otel.metric.overflow";

/// Metric attribute values longer than this are cut (model names come from requests).
const MAX_ATTR_LEN: usize = 128;

/// Every instrument tollgate reports. The order is the export order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Instrument {
    // Default set (semconv v1.37–v1.41).
    TokenUsage,
    OperationDuration,
    OperationTimeToFirstChunk,
    // Latest experimental set (semantic-conventions-genai), only with `semconv: "latest"`.
    InferenceDuration,
    InferenceTimeToFirstChunk,
    UsageInputTokens,
    UsageOutputTokens,
    UsageCacheReadInputTokens,
    UsageCacheWriteInputTokens,
    UsageReasoningOutputTokens,
    OperationInputTokens,
    OperationOutputTokens,
    // tollgate's own, in both sets: attribution by tenant, cost and budget decisions.
    Cost,
    BudgetDecisions,
}

/// How an instrument aggregates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Histogram(&'static [f64]),
    /// Monotonic counter.
    Counter,
    /// Monotonic counter of a fractional quantity (USD).
    CounterF64,
}

impl Instrument {
    pub const ALL: [Instrument; 14] = [
        Instrument::TokenUsage,
        Instrument::OperationDuration,
        Instrument::OperationTimeToFirstChunk,
        Instrument::InferenceDuration,
        Instrument::InferenceTimeToFirstChunk,
        Instrument::UsageInputTokens,
        Instrument::UsageOutputTokens,
        Instrument::UsageCacheReadInputTokens,
        Instrument::UsageCacheWriteInputTokens,
        Instrument::UsageReasoningOutputTokens,
        Instrument::OperationInputTokens,
        Instrument::OperationOutputTokens,
        Instrument::Cost,
        Instrument::BudgetDecisions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Instrument::TokenUsage => "gen_ai.client.token.usage",
            Instrument::OperationDuration => "gen_ai.client.operation.duration",
            Instrument::OperationTimeToFirstChunk => "gen_ai.client.operation.time_to_first_chunk",
            Instrument::InferenceDuration => "gen_ai.client.inference.duration",
            Instrument::InferenceTimeToFirstChunk => "gen_ai.client.inference.time_to_first_chunk",
            Instrument::UsageInputTokens => "gen_ai.client.inference.usage.input_tokens",
            Instrument::UsageOutputTokens => "gen_ai.client.inference.usage.output_tokens",
            Instrument::UsageCacheReadInputTokens => {
                "gen_ai.client.inference.usage.cache_read.input_tokens"
            }
            Instrument::UsageCacheWriteInputTokens => {
                "gen_ai.client.inference.usage.cache_write.input_tokens"
            }
            Instrument::UsageReasoningOutputTokens => {
                "gen_ai.client.inference.usage.reasoning.output_tokens"
            }
            Instrument::OperationInputTokens => "gen_ai.client.inference.operation.input_tokens",
            Instrument::OperationOutputTokens => "gen_ai.client.inference.operation.output_tokens",
            Instrument::Cost => "tollgate.cost.usd",
            Instrument::BudgetDecisions => "tollgate.budget.decisions",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Instrument::TokenUsage
            | Instrument::OperationInputTokens
            | Instrument::OperationOutputTokens => Kind::Histogram(&TOKEN_BUCKETS),
            Instrument::OperationDuration
            | Instrument::OperationTimeToFirstChunk
            | Instrument::InferenceDuration
            | Instrument::InferenceTimeToFirstChunk => Kind::Histogram(&DURATION_BUCKETS),
            Instrument::UsageInputTokens
            | Instrument::UsageOutputTokens
            | Instrument::UsageCacheReadInputTokens
            | Instrument::UsageCacheWriteInputTokens
            | Instrument::UsageReasoningOutputTokens
            | Instrument::BudgetDecisions => Kind::Counter,
            Instrument::Cost => Kind::CounterF64,
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Instrument::Cost => return "{USD}",
            Instrument::BudgetDecisions => return "{request}",
            _ => {}
        }
        match self.kind() {
            Kind::Histogram(b) if b == DURATION_BUCKETS.as_slice() => "s",
            _ => "{token}",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Instrument::TokenUsage => "Number of input and output tokens used.",
            Instrument::OperationDuration | Instrument::InferenceDuration => {
                "GenAI operation duration."
            }
            Instrument::OperationTimeToFirstChunk | Instrument::InferenceTimeToFirstChunk => {
                "Time to receive the first chunk of a streamed response."
            }
            Instrument::UsageInputTokens => "Input tokens used, including cached tokens.",
            Instrument::UsageOutputTokens => "Output tokens used, including reasoning tokens.",
            Instrument::UsageCacheReadInputTokens => "Input tokens served from the provider cache.",
            Instrument::UsageCacheWriteInputTokens => "Input tokens written to the provider cache.",
            Instrument::UsageReasoningOutputTokens => "Output tokens used for reasoning.",
            Instrument::OperationInputTokens => "Input tokens per inference operation.",
            Instrument::OperationOutputTokens => "Output tokens per inference operation.",
            Instrument::Cost => "Cost of the calls in USD, from the pricing table.",
            Instrument::BudgetDecisions => {
                "Budget decisions (allowed, denied, clamped, dry_run_denied)."
            }
        }
    }
}

/// A metric attribute value (ordered so attribute sets can key a map).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// An attribute set, in insertion order (the same code builds every set, so equal sets compare equal).
pub type AttrSet = Vec<(&'static str, Val)>;

#[derive(Clone, Debug, PartialEq)]
enum Data {
    Histogram {
        buckets: Vec<u64>,
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
    },
    Counter(u64),
    CounterF64(f64),
}

impl Data {
    fn new(kind: Kind) -> Data {
        match kind {
            Kind::Histogram(bounds) => Data::Histogram {
                buckets: vec![0; bounds.len() + 1],
                count: 0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            },
            Kind::Counter => Data::Counter(0),
            Kind::CounterF64 => Data::CounterF64(0.0),
        }
    }

    fn record(&mut self, kind: Kind, v: f64) {
        match (self, kind) {
            (
                Data::Histogram {
                    buckets,
                    count,
                    sum,
                    min,
                    max,
                },
                Kind::Histogram(bounds),
            ) => {
                // Bucket i holds (bounds[i-1], bounds[i]]; the last one everything above the last bound.
                let i = bounds.iter().take_while(|b| v > **b).count();
                if let Some(b) = buckets.get_mut(i) {
                    *b = b.saturating_add(1);
                }
                *count = count.saturating_add(1);
                *sum += v;
                *min = min.min(v);
                *max = max.max(v);
            }
            (Data::Counter(total), Kind::Counter) => {
                *total = total.saturating_add(if v > 0.0 { v as u64 } else { 0 });
            }
            (Data::CounterF64(total), Kind::CounterF64) if v > 0.0 => *total += v,
            _ => {}
        }
    }
}

/// Counters the host publishes as Envoy stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsStats {
    /// Measurements folded into an overflow series because the cardinality limit was reached.
    pub overflow: u64,
    /// Data points accepted by the collector.
    pub exported_points: u64,
    /// Data points dropped after a non-retryable answer or too many attempts.
    pub dropped_points: u64,
    /// Data points the collector reported as rejected in a partial success.
    pub rejected_points: u64,
    pub retries: u64,
}

/// Aggregates the calls one VM sees during an export interval. Memory is bounded: at most `max_series`
/// attribute sets per instrument (+1 overflow series), whatever the traffic.
pub struct Aggregator {
    series: BTreeMap<Instrument, BTreeMap<AttrSet, Data>>,
    max_series: usize,
    /// Start of the current delta interval (ns since the epoch).
    start_ns: u64,
    pending: Option<Pending>,
    pub stats: MetricsStats,
}

/// An encoded export request being sent or retried. While it is pending, new calls keep aggregating (bounded
/// by the series limit) into the next interval, so nothing grows while the collector is down.
struct Pending {
    body: Vec<u8>,
    points: u64,
    attempts: u32,
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_ATTR_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default().to_owned()
}

/// The semconv attributes shared by every GenAI client metric for this call.
fn base_attrs(call: &Call, with_error: bool) -> AttrSet {
    let mut a: AttrSet = Vec::with_capacity(8);
    let route = call.route.as_ref();
    let op = route.map_or("chat", crate::providers::operation);
    a.push(("gen_ai.operation.name", Val::Str(op.to_owned())));
    if let Some(r) = route {
        a.push(("gen_ai.provider.name", Val::Str(cut(&r.provider))));
    }
    if let Some(m) = call.request_model() {
        a.push(("gen_ai.request.model", Val::Str(cut(m))));
    }
    if let Some(m) = call.response.model.as_deref() {
        a.push(("gen_ai.response.model", Val::Str(cut(m))));
    }
    if !call.server_address.is_empty() {
        a.push(("server.address", Val::Str(cut(&call.server_address))));
        if let Some(p) = call.server_port {
            a.push(("server.port", Val::Int(i64::from(p))));
        }
    }
    if let Some(t) = call.tenant.as_deref() {
        a.push(("tollgate.tenant", Val::Str(cut(t))));
    }
    if with_error {
        if let Some(e) = call.error_type() {
            a.push(("error.type", Val::Str(cut(&e))));
        }
    }
    a
}

fn with(mut a: AttrSet, key: &'static str, v: &str) -> AttrSet {
    a.push((key, Val::Str(v.to_owned())));
    a
}

fn seconds(from_ns: u64, to_ns: u64) -> Option<f64> {
    (from_ns > 0 && to_ns >= from_ns).then(|| (to_ns - from_ns) as f64 / 1e9)
}

impl Aggregator {
    pub fn new(max_series: usize, start_ns: u64) -> Aggregator {
        Aggregator {
            series: BTreeMap::new(),
            max_series: max_series.max(1),
            start_ns,
            pending: None,
            stats: MetricsStats::default(),
        }
    }

    pub fn set_max_series(&mut self, max_series: usize) {
        self.max_series = max_series.max(1);
    }

    /// Record one measurement; a new attribute set beyond the limit goes to the overflow series.
    pub fn add(&mut self, inst: Instrument, attrs: AttrSet, v: f64) {
        if !v.is_finite() {
            return;
        }
        let kind = inst.kind();
        let max = self.max_series;
        let per = self.series.entry(inst).or_default();
        let overflow_key = || vec![(OVERFLOW_ATTR, Val::Bool(true))];
        let regular = per.len() - usize::from(per.contains_key(&overflow_key()));
        let key = if per.contains_key(&attrs) || regular < max {
            attrs
        } else {
            self.stats.overflow = self.stats.overflow.saturating_add(1);
            overflow_key()
        };
        per.entry(key)
            .or_insert_with(|| Data::new(kind))
            .record(kind, v);
    }

    /// Record everything a finished call contributes to the configured semconv set.
    pub fn record(&mut self, call: &Call, semconv: Semconv) {
        let u = &call.response.usage;
        let base = base_attrs(call, true);
        let duration = seconds(call.start_ns, call.end_ns);
        let ttfc = call.first_chunk_ns.and_then(|f| seconds(call.start_ns, f));
        // Token usage is reported only when the count is known (semconv: MUST NOT report otherwise).
        if let Some(n) = u.input {
            let a = with(base.clone(), "gen_ai.token.type", "input");
            self.add(Instrument::TokenUsage, a, n as f64);
        }
        if let Some(n) = u.output {
            let a = with(base.clone(), "gen_ai.token.type", "output");
            self.add(Instrument::TokenUsage, a, n as f64);
        }
        if let Some(d) = duration {
            self.add(Instrument::OperationDuration, base.clone(), d);
        }
        if let Some(t) = ttfc {
            self.add(Instrument::OperationTimeToFirstChunk, base.clone(), t);
        }
        if let Some(usd) = call.cost_usd {
            self.add(Instrument::Cost, base_attrs(call, false), usd);
        }
        if let Some(b) = &call.budget {
            let a = with(
                base_attrs(call, false),
                "tollgate.budget.decision",
                b.verdict.as_str(),
            );
            self.add(Instrument::BudgetDecisions, a, 1.0);
        }
        if semconv != Semconv::Latest {
            return;
        }
        // The latest set names inference operations only; embeddings keep `gen_ai.client.operation.duration`.
        let inference = call
            .route
            .as_ref()
            .is_none_or(|r| crate::providers::operation(r) != "embeddings");
        if !inference {
            return;
        }
        if let Some(d) = duration {
            self.add(Instrument::InferenceDuration, base.clone(), d);
        }
        if let Some(t) = ttfc {
            self.add(Instrument::InferenceTimeToFirstChunk, base.clone(), t);
        }
        // Usage counters are recorded for failed calls too (0), broken down by modality; providers do not
        // break usage down by modality in what tollgate reads, so it is `unknown` as the semconv says.
        let counted = with(base_attrs(call, false), "gen_ai.token.modality", "unknown");
        let n = |v: Option<u64>| v.unwrap_or(0) as f64;
        self.add(Instrument::UsageInputTokens, counted.clone(), n(u.input));
        self.add(Instrument::UsageOutputTokens, counted.clone(), n(u.output));
        for (inst, v) in [
            (Instrument::UsageCacheReadInputTokens, u.cache_read),
            (Instrument::UsageCacheWriteInputTokens, u.cache_write),
            (Instrument::UsageReasoningOutputTokens, u.reasoning),
        ] {
            if let Some(v) = v {
                self.add(inst, counted.clone(), v as f64);
            }
        }
        let per_op = base_attrs(call, false);
        if let Some(v) = u.input {
            self.add(Instrument::OperationInputTokens, per_op.clone(), v as f64);
        }
        if let Some(v) = u.output {
            self.add(Instrument::OperationOutputTokens, per_op, v as f64);
        }
    }

    /// Attribute sets currently held (all instruments).
    pub fn series_count(&self) -> usize {
        self.series.values().map(BTreeMap::len).sum()
    }

    /// Close the interval at `now_ns`: encode what it aggregated as the pending export request and start a
    /// new interval. Does nothing while a previous request is still pending (the interval then simply grows)
    /// or when nothing was recorded.
    pub fn close_interval(&mut self, resource: &Resource, now_ns: u64) {
        if self.pending.is_some() {
            return;
        }
        let start = self.start_ns;
        self.start_ns = now_ns;
        let series = std::mem::take(&mut self.series);
        let points = series.values().map(BTreeMap::len).sum::<usize>() as u64;
        if points == 0 {
            return;
        }
        let body = encode(resource, &series, start, now_ns);
        self.pending = Some(Pending {
            body,
            points,
            attempts: 0,
        });
    }

    /// The request body to send now (the pending one, again when retried), or None.
    pub fn next_request(&mut self) -> Option<&[u8]> {
        let p = self.pending.as_mut()?;
        p.attempts += 1;
        Some(p.body.as_slice())
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    pub fn attempts(&self) -> u32 {
        self.pending.as_ref().map_or(0, |p| p.attempts)
    }

    /// Record the collector's answer for the pending request (see `SpanQueue::finish`).
    pub fn finish(&mut self, outcome: Outcome) -> Outcome {
        let Some(p) = self.pending.take() else {
            return outcome;
        };
        match outcome {
            Outcome::Success => {
                self.stats.exported_points = self.stats.exported_points.saturating_add(p.points);
                Outcome::Success
            }
            Outcome::Retry if p.attempts < MAX_ATTEMPTS => {
                self.stats.retries += 1;
                self.pending = Some(p);
                Outcome::Retry
            }
            Outcome::Retry | Outcome::Fail => {
                self.stats.dropped_points = self.stats.dropped_points.saturating_add(p.points);
                Outcome::Fail
            }
        }
    }

    /// The collector accepted the request but rejected `n` points (`partial_success`): counted, not retried.
    pub fn rejected(&mut self, n: u64) {
        self.stats.rejected_points = self.stats.rejected_points.saturating_add(n);
        self.stats.exported_points = self.stats.exported_points.saturating_sub(n);
    }
}

fn kv(key: &str, v: &Val) -> KeyValue {
    let value = match v {
        Val::Str(s) => any_value::Value::StringValue(s.clone()),
        Val::Int(i) => any_value::Value::IntValue(*i),
        Val::Bool(b) => any_value::Value::BoolValue(*b),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn encode(
    resource: &Resource,
    series: &BTreeMap<Instrument, BTreeMap<AttrSet, Data>>,
    start_ns: u64,
    now_ns: u64,
) -> Vec<u8> {
    let delta = AggregationTemporality::Delta as i32;
    let metrics = series
        .iter()
        .filter(|(_, per)| !per.is_empty())
        .map(|(inst, per)| {
            let attrs = |a: &AttrSet| a.iter().map(|(k, v)| kv(k, v)).collect::<Vec<_>>();
            let data = match inst.kind() {
                Kind::Histogram(bounds) => metric::Data::Histogram(Histogram {
                    data_points: per
                        .iter()
                        .filter_map(|(a, d)| match d {
                            Data::Histogram {
                                buckets,
                                count,
                                sum,
                                min,
                                max,
                            } => Some(HistogramDataPoint {
                                attributes: attrs(a),
                                start_time_unix_nano: start_ns,
                                time_unix_nano: now_ns,
                                count: *count,
                                sum: Some(*sum),
                                bucket_counts: buckets.clone(),
                                explicit_bounds: bounds.to_vec(),
                                exemplars: Vec::new(),
                                flags: 0,
                                min: (*count > 0).then_some(*min),
                                max: (*count > 0).then_some(*max),
                            }),
                            Data::Counter(_) | Data::CounterF64(_) => None,
                        })
                        .collect(),
                    aggregation_temporality: delta,
                }),
                Kind::Counter | Kind::CounterF64 => metric::Data::Sum(Sum {
                    data_points: per
                        .iter()
                        .filter_map(|(a, d)| {
                            let value = match d {
                                Data::Counter(v) => number_data_point::Value::AsInt(
                                    i64::try_from(*v).unwrap_or(i64::MAX),
                                ),
                                Data::CounterF64(v) => number_data_point::Value::AsDouble(*v),
                                Data::Histogram { .. } => return None,
                            };
                            Some(NumberDataPoint {
                                attributes: attrs(a),
                                start_time_unix_nano: start_ns,
                                time_unix_nano: now_ns,
                                exemplars: Vec::new(),
                                flags: 0,
                                value: Some(value),
                            })
                        })
                        .collect(),
                    aggregation_temporality: delta,
                    is_monotonic: true,
                }),
            };
            Metric {
                name: inst.name().to_owned(),
                description: inst.description().to_owned(),
                unit: inst.unit().to_owned(),
                metadata: Vec::new(),
                data: Some(data),
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: VERSION.to_owned(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}
