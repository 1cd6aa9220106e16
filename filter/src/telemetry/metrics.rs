//! GenAI client metrics: a per-VM aggregator of finished calls, encoded as one OTLP/HTTP metrics request
//! per interval with DELTA temporality. Pure: the host records calls, asks for a request on its interval,
//! sends it and reports the outcome.
//!
//! Why delta: each Envoy worker runs its own Wasm VM, so several VMs report under one service identity.
//! Each VM exports only what it saw since its previous export (start time = end of its previous interval),
//! which a backend can sum across VMs; cumulative series from several VMs would collide. Each VM also has a
//! distinct `service.instance.id`, so even a backend that keeps series per instance stays correct.

use super::export::Resource;
use super::export::{Outcome, MAX_ATTEMPTS, SCOPE_NAME, VERSION};
use super::Semconv;
use crate::call::Call;
use crate::codec::proto::{self, Value};
use crate::providers;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

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

/// A metric attribute value (ordered: the points of a metric are exported in the order of their sets).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// A borrowed attribute value, to look series up without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValRef<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

impl Val {
    fn as_ref(&self) -> ValRef<'_> {
        match self {
            Val::Str(s) => ValRef::Str(s),
            Val::Int(i) => ValRef::Int(*i),
            Val::Bool(b) => ValRef::Bool(*b),
        }
    }
}

impl ValRef<'_> {
    fn to_val(self) -> Val {
        match self {
            ValRef::Str(s) => Val::Str(s.to_owned()),
            ValRef::Int(i) => Val::Int(i),
            ValRef::Bool(b) => Val::Bool(b),
        }
    }
}

/// An attribute set, in insertion order (the same code builds every set, so equal sets compare equal).
pub type AttrSet = Vec<(&'static str, Val)>;

/// A borrowed attribute.
pub type Attr<'a> = (&'static str, ValRef<'a>);

/// An attribute set being looked up: attributes shared by several sets of a call, plus at most one more,
/// with its hash (computed incrementally: the shared part is hashed once per call).
#[derive(Clone, Copy, Debug)]
pub struct View<'a, 'b> {
    base: &'b [Attr<'a>],
    extra: Option<Attr<'a>>,
    hash: u64,
}

impl<'a, 'b> View<'a, 'b> {
    pub fn new(base: &'b [Attr<'a>], extra: Option<Attr<'a>>) -> Self {
        let mut h = Fx(0);
        h.attrs(base);
        Self::after(h, base, extra)
    }

    /// The view of `base` + `extra`, where `h` already holds the hash of `base`.
    fn after(mut h: Fx, base: &'b [Attr<'a>], extra: Option<Attr<'a>>) -> Self {
        if let Some(a) = extra {
            h.attr(a);
        }
        View {
            base,
            extra,
            hash: h.0,
        }
    }

    fn iter(&self) -> impl Iterator<Item = Attr<'a>> + '_ {
        self.base.iter().copied().chain(self.extra)
    }

    fn len(&self) -> usize {
        self.base.len() + usize::from(self.extra.is_some())
    }

    fn matches(&self, set: &AttrSet) -> bool {
        // Keys are literals: the same pointer almost always, so the byte comparison is rarely needed.
        let same_key = |k: &str, k2: &str| std::ptr::eq(k, k2) || k == k2;
        set.len() == self.len()
            && set
                .iter()
                .zip(self.iter())
                .all(|((k, v), (k2, v2))| same_key(k, k2) && v.as_ref() == v2)
    }

    fn to_set(self) -> AttrSet {
        self.iter().map(|(k, v)| (k, v.to_val())).collect()
    }
}

/// The rustc "Fx" hash: fast and good enough for a table whose lookups always confirm equality.
#[derive(Clone, Copy)]
struct Fx(u64);

impl Fx {
    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn bytes(&mut self, b: &[u8]) {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(
                <[u8; 8]>::try_from(c).unwrap_or_default(),
            ));
        }
        let rest = chunks.remainder();
        let tail = match b.last_chunk::<8>() {
            // The last 8 bytes, overlapping words already hashed.
            Some(last) if !rest.is_empty() => u64::from_le_bytes(*last),
            _ => rest.iter().fold(0u64, |w, &x| (w << 8) | u64::from(x)),
        };
        self.word(tail ^ ((b.len() as u64) << 56));
    }

    /// Keys are a fixed set of names: their length tells them apart well enough.
    fn attr(&mut self, (k, v): Attr<'_>) {
        match v {
            ValRef::Str(s) => {
                self.word(k.len() as u64);
                self.bytes(s.as_bytes());
            }
            ValRef::Int(i) => {
                self.word((k.len() as u64) | 1 << 32);
                self.word(i as u64);
            }
            ValRef::Bool(b) => self.word((k.len() as u64) | (2 + u64::from(b)) << 32),
        }
    }

    fn attrs(&mut self, attrs: &[Attr<'_>]) {
        for &a in attrs {
            self.attr(a);
        }
    }
}

/// Hasher for keys that already are hashes.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

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
    /// The attribute sets of this interval, each stored once; series refer to them by index.
    sets: Vec<AttrSet>,
    /// Hash of a set's attributes → its index (collisions probe the next hash value).
    index: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    /// Per instrument (indexed by `Instrument as usize`): set index → aggregate.
    series: Vec<BTreeMap<u32, Data>>,
    max_series: usize,
    /// Start of the current delta interval (ns since the epoch).
    start_ns: u64,
    pending: Option<Pending>,
    pub stats: MetricsStats,
}

/// The series key of the overflow series (its set is `[(OVERFLOW_ATTR, true)]`).
const OVERFLOW: u32 = u32::MAX;

/// An encoded export request being sent or retried. While it is pending, new calls keep aggregating (bounded
/// by the series limit) into the next interval, so nothing grows while the collector is down.
struct Pending {
    body: Vec<u8>,
    points: u64,
    attempts: u32,
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(MAX_ATTR_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// The semconv attributes shared by every GenAI client metric for this call, `error.type` (when `error`)
/// last so the set without it is a prefix. Returns the attributes and how many there are.
fn base_attrs<'a>(call: &'a Call, error: Option<&'a str>) -> ([Attr<'a>; 8], usize) {
    let mut a: [Attr<'a>; 8] = [("", ValRef::Bool(false)); 8];
    let mut n = 0;
    let mut push = |kv: Attr<'a>| {
        if let Some(slot) = a.get_mut(n) {
            *slot = kv;
            n += 1;
        }
    };
    let route = call.route.as_ref();
    let op = route.map_or("chat", providers::operation);
    push(("gen_ai.operation.name", ValRef::Str(op)));
    if let Some(r) = route {
        push(("gen_ai.provider.name", ValRef::Str(cut(&r.provider))));
    }
    if let Some(m) = call.request_model() {
        push(("gen_ai.request.model", ValRef::Str(cut(m))));
    }
    if let Some(m) = call.response.model.as_deref() {
        push(("gen_ai.response.model", ValRef::Str(cut(m))));
    }
    if !call.server_address.is_empty() {
        push(("server.address", ValRef::Str(cut(&call.server_address))));
        if let Some(p) = call.server_port {
            push(("server.port", ValRef::Int(i64::from(p))));
        }
    }
    if let Some(t) = call.tenant.as_deref() {
        push(("tollgate.tenant", ValRef::Str(cut(t))));
    }
    if let Some(e) = error {
        push(("error.type", ValRef::Str(cut(e))));
    }
    (a, n)
}

fn seconds(from_ns: u64, to_ns: u64) -> Option<f64> {
    (from_ns > 0 && to_ns >= from_ns).then(|| (to_ns - from_ns) as f64 / 1e9)
}

impl Aggregator {
    pub fn new(max_series: usize, start_ns: u64) -> Aggregator {
        Aggregator {
            sets: Vec::new(),
            index: HashMap::default(),
            series: Instrument::ALL.iter().map(|_| BTreeMap::new()).collect(),
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
    pub fn add(&mut self, inst: Instrument, attrs: &[Attr<'_>], v: f64) {
        self.add_all(View::new(attrs, None), &[(inst, Some(v))]);
    }

    /// Record measurements of several instruments that share one attribute set (looked up once).
    pub fn add_all(&mut self, view: View<'_, '_>, values: &[(Instrument, Option<f64>)]) {
        if !values.iter().any(|(_, v)| v.is_some_and(f64::is_finite)) {
            return;
        }
        // The set's index, or the free slot of the index where it would go.
        let mut slot = view.hash;
        let mut id = loop {
            match self.index.get(&slot) {
                None => break None,
                Some(&i) if self.sets.get(i as usize).is_some_and(|s| view.matches(s)) => {
                    break Some(i)
                }
                Some(_) => slot = slot.wrapping_add(1),
            }
        };
        for &(inst, v) in values {
            let Some(v) = v.filter(|v| v.is_finite()) else {
                continue;
            };
            let kind = inst.kind();
            let Some(per) = self.series.get_mut(inst as usize) else {
                continue;
            };
            if let Some(d) = id.and_then(|i| per.get_mut(&i)) {
                d.record(kind, v);
                continue;
            }
            let regular = per.len() - usize::from(per.contains_key(&OVERFLOW));
            let key = match id {
                _ if regular < self.max_series => match id {
                    Some(i) => i,
                    None => {
                        let i = u32::try_from(self.sets.len()).unwrap_or(OVERFLOW);
                        self.sets.push(view.to_set());
                        self.index.insert(slot, i);
                        id = Some(i);
                        i
                    }
                },
                _ => {
                    self.stats.overflow = self.stats.overflow.saturating_add(1);
                    OVERFLOW
                }
            };
            per.entry(key)
                .or_insert_with(|| Data::new(kind))
                .record(kind, v);
        }
    }

    /// Record everything a finished call contributes to the configured semconv set.
    pub fn record(&mut self, call: &Call, semconv: Semconv) {
        let u = &call.response.usage;
        let error = call.error_type();
        let (attrs, n) = base_attrs(call, error.as_deref());
        let base = attrs.get(..n).unwrap_or_default();
        // Cost, budget and the latest set's counters are per call, not per outcome: no `error.type`.
        let no_error = match error {
            Some(_) => base.get(..n.saturating_sub(1)).unwrap_or_default(),
            None => base,
        };
        // Hash the shared attributes once: `no_error` is a prefix of `base`.
        let mut h_no_error = Fx(0);
        h_no_error.attrs(no_error);
        let mut h_base = h_no_error;
        h_base.attrs(base.get(no_error.len()..).unwrap_or_default());
        let state = |b: &[Attr<'_>]| {
            if b.len() == no_error.len() {
                h_no_error
            } else {
                h_base
            }
        };
        let with = |b, key, v| View::after(state(b), b, Some((key, ValRef::Str(v))));
        let plain = |b| View::after(state(b), b, None);
        let duration = seconds(call.start_ns, call.end_ns);
        // The span's `gen_ai.response.time_to_first_chunk`: set for streamed responses only.
        let ttfc = call.first_chunk_ns.and_then(|f| seconds(call.start_ns, f));
        let latest = semconv == Semconv::Latest;
        // The latest set names inference operations only; embeddings keep `gen_ai.client.operation.duration`.
        let inference = latest
            && call
                .route
                .as_ref()
                .is_none_or(|r| providers::operation(r) != "embeddings");
        let tokens = |v: Option<u64>| v.map(|v| v as f64);
        // Token usage is reported only when the count is known (semconv: MUST NOT report otherwise).
        let token_type = "gen_ai.token.type";
        let input = [(Instrument::TokenUsage, tokens(u.input))];
        self.add_all(with(base, token_type, "input"), &input);
        let output = [(Instrument::TokenUsage, tokens(u.output))];
        self.add_all(with(base, token_type, "output"), &output);
        let on = |yes: bool, v: Option<f64>| v.filter(|_| yes);
        self.add_all(
            plain(base),
            &[
                (Instrument::OperationDuration, duration),
                (Instrument::OperationTimeToFirstChunk, ttfc),
                (Instrument::InferenceDuration, on(inference, duration)),
                (Instrument::InferenceTimeToFirstChunk, on(inference, ttfc)),
            ],
        );
        self.add_all(
            plain(no_error),
            &[
                (Instrument::Cost, call.cost_usd),
                (
                    Instrument::OperationInputTokens,
                    on(inference, tokens(u.input)),
                ),
                (
                    Instrument::OperationOutputTokens,
                    on(inference, tokens(u.output)),
                ),
            ],
        );
        if let Some(b) = &call.budget {
            self.add_all(
                with(no_error, "tollgate.budget.decision", b.verdict.as_str()),
                &[(Instrument::BudgetDecisions, Some(1.0))],
            );
        }
        if !inference {
            return;
        }
        // Usage counters are recorded for failed calls too (0), broken down by modality; providers do not
        // break usage down by modality in what tollgate reads, so it is `unknown` as the semconv says.
        let n = |v: Option<u64>| Some(v.unwrap_or(0) as f64);
        self.add_all(
            with(no_error, "gen_ai.token.modality", "unknown"),
            &[
                (Instrument::UsageInputTokens, n(u.input)),
                (Instrument::UsageOutputTokens, n(u.output)),
                (Instrument::UsageCacheReadInputTokens, tokens(u.cache_read)),
                (
                    Instrument::UsageCacheWriteInputTokens,
                    tokens(u.cache_write),
                ),
                (Instrument::UsageReasoningOutputTokens, tokens(u.reasoning)),
            ],
        );
    }

    /// Attribute sets currently held (all instruments).
    pub fn series_count(&self) -> usize {
        self.series.iter().map(BTreeMap::len).sum()
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
        let points = self.series_count() as u64;
        let body = (points > 0).then(|| encode(resource, &self.sets, &self.series, start, now_ns));
        self.sets.clear();
        self.index.clear();
        for per in &mut self.series {
            per.clear();
        }
        if let Some(body) = body {
            self.pending = Some(Pending {
                body,
                points,
                attempts: 0,
            });
        }
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

fn put_attrs(b: &mut Vec<u8>, field: u32, set: &AttrSet) {
    for (k, v) in set {
        let v = match v {
            Val::Str(s) => Value::Str(s),
            Val::Int(i) => Value::Int(*i),
            Val::Bool(b) => Value::Bool(*b),
        };
        proto::key_value(b, field, k, v);
    }
}

/// `ExportMetricsServiceRequest` (metrics_service.proto, metrics.proto) for one interval.
fn encode(
    resource: &Resource,
    sets: &[AttrSet],
    series: &[BTreeMap<u32, Data>],
    start_ns: u64,
    now_ns: u64,
) -> Vec<u8> {
    use proto::{double, fixed64, message, opt_bytes, opt_fixed64, opt_varint};
    /// `AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA`.
    const DELTA: u64 = 1;
    let overflow: AttrSet = vec![(OVERFLOW_ATTR, Val::Bool(true))];
    let mut out = Vec::with_capacity(4096);
    // ExportMetricsServiceRequest { resource_metrics = 1 }
    message(&mut out, 1, |b| {
        // ResourceMetrics { resource = 1, scope_metrics = 2 }
        proto::bytes(b, 1, resource.as_bytes());
        message(b, 2, |b| {
            // ScopeMetrics { scope = 1, metrics = 2 }
            proto::scope(b, 1, SCOPE_NAME, VERSION);
            for (inst, per) in Instrument::ALL.iter().zip(series) {
                if per.is_empty() {
                    continue;
                }
                // Points in the order of their attribute sets.
                let mut points: Vec<(&AttrSet, &Data)> = per
                    .iter()
                    .filter_map(|(id, d)| match *id {
                        OVERFLOW => Some((&overflow, d)),
                        id => Some((sets.get(id as usize)?, d)),
                    })
                    .collect();
                crate::sort::sort_by(&mut points, |x, y| x.0 < y.0);
                // Metric { name = 1, description = 2, unit = 3, sum = 7 | histogram = 9 }
                message(b, 2, |b| {
                    opt_bytes(b, 1, inst.name().as_bytes());
                    opt_bytes(b, 2, inst.description().as_bytes());
                    opt_bytes(b, 3, inst.unit().as_bytes());
                    match inst.kind() {
                        Kind::Histogram(bounds) => message(b, 9, |b| {
                            // Histogram { data_points = 1, aggregation_temporality = 2 }
                            for (set, d) in &points {
                                let Data::Histogram {
                                    buckets,
                                    count,
                                    sum,
                                    min,
                                    max,
                                } = d
                                else {
                                    continue;
                                };
                                // HistogramDataPoint { start_time_unix_nano = 2, time_unix_nano = 3,
                                // count = 4, sum = 5, bucket_counts = 6, explicit_bounds = 7,
                                // attributes = 9, min = 11, max = 12 }
                                message(b, 1, |b| {
                                    opt_fixed64(b, 2, start_ns);
                                    opt_fixed64(b, 3, now_ns);
                                    opt_fixed64(b, 4, *count);
                                    double(b, 5, *sum);
                                    if !buckets.is_empty() {
                                        proto::len_prefix(b, 6, buckets.len() * 8);
                                        for c in buckets {
                                            b.extend_from_slice(&c.to_le_bytes());
                                        }
                                    }
                                    if !bounds.is_empty() {
                                        proto::len_prefix(b, 7, bounds.len() * 8);
                                        for x in bounds.iter() {
                                            b.extend_from_slice(&x.to_bits().to_le_bytes());
                                        }
                                    }
                                    put_attrs(b, 9, set);
                                    if *count > 0 {
                                        double(b, 11, *min);
                                        double(b, 12, *max);
                                    }
                                });
                            }
                            opt_varint(b, 2, DELTA);
                        }),
                        Kind::Counter | Kind::CounterF64 => message(b, 7, |b| {
                            // Sum { data_points = 1, aggregation_temporality = 2, is_monotonic = 3 }
                            for (set, d) in &points {
                                // NumberDataPoint { start_time_unix_nano = 2, time_unix_nano = 3,
                                // as_double = 4 | as_int = 6, attributes = 7 }
                                let write_value: &dyn Fn(&mut Vec<u8>) = match d {
                                    Data::Counter(v) => &|b| {
                                        fixed64(b, 6, i64::try_from(*v).unwrap_or(i64::MAX) as u64)
                                    },
                                    Data::CounterF64(v) => &|b| double(b, 4, *v),
                                    Data::Histogram { .. } => continue,
                                };
                                message(b, 1, |b| {
                                    opt_fixed64(b, 2, start_ns);
                                    opt_fixed64(b, 3, now_ns);
                                    write_value(b);
                                    put_attrs(b, 7, set);
                                });
                            }
                            opt_varint(b, 2, DELTA);
                            opt_varint(b, 3, 1);
                        }),
                    }
                });
            }
        });
    });
    out
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Api, Route, Usage};
    use crate::telemetry::export::resource;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::metric::Data as PData;
    use opentelemetry_proto::tonic::metrics::v1::{
        number_data_point, AggregationTemporality, HistogramDataPoint, Metric,
    };
    use prost::Message;

    fn call(model: &str, input: Option<u64>, output: Option<u64>, stream: bool) -> Call {
        let mut c = Call {
            route: Some(Route {
                api: Api::OpenAiChat,
                provider: "openai".into(),
                path_model: None,
                path_stream: false,
            }),
            server_address: "api.openai.com".into(),
            server_port: Some(443),
            start_ns: 1_000_000_000,
            end_ns: 1_300_000_000,
            http_status: Some(200),
            ..Default::default()
        };
        c.request.model = Some(model.into());
        c.request.stream = stream;
        c.response.model = Some(format!("{model}-2024"));
        c.response.usage = Usage {
            input,
            output,
            ..Default::default()
        };
        if stream {
            c.first_chunk_ns = Some(1_050_000_000);
        }
        c
    }

    fn decode(body: &[u8]) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest::decode(body).unwrap()
    }

    fn metric<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> Option<&'a Metric> {
        req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
    }

    fn hist_points(m: &Metric) -> &[HistogramDataPoint] {
        match m.data.as_ref().unwrap() {
            PData::Histogram(h) => {
                assert_eq!(
                    h.aggregation_temporality,
                    AggregationTemporality::Delta as i32
                );
                &h.data_points
            }
            other => panic!("not a histogram: {other:?}"),
        }
    }

    fn attr<'a>(p: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        p.iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn take(agg: &mut Aggregator, now: u64) -> ExportMetricsServiceRequest {
        agg.close_interval(&resource("gw", "vm", &[]), now);
        let req = decode(agg.next_request().unwrap());
        assert_eq!(agg.finish(Outcome::Success), Outcome::Success);
        req
    }

    #[test]
    fn default_set_counts_sums_and_buckets() {
        let mut agg = Aggregator::new(100, 5);
        agg.record(&call("gpt-4o", Some(19), Some(10), false), Semconv::Default);
        agg.record(
            &call("gpt-4o", Some(1000), Some(3), false),
            Semconv::Default,
        );
        agg.record(&call("gpt-4o", Some(7), None, true), Semconv::Default);
        let req = take(&mut agg, 2_000_000_000);
        let usage = metric(&req, "gen_ai.client.token.usage").unwrap();
        assert_eq!(usage.unit, "{token}");
        let pts = hist_points(usage);
        let input = pts
            .iter()
            .find(|p| {
                attr(&p.attributes, "gen_ai.token.type")
                    == Some(&any_value::Value::StringValue("input".into()))
            })
            .unwrap();
        assert_eq!((input.count, input.sum), (3, Some(1026.0)));
        assert_eq!(input.explicit_bounds, TOKEN_BUCKETS.to_vec());
        // 7 → (4,16], 19 → (16,64], 1000 → (256,1024].
        assert_eq!(input.bucket_counts.len(), 15);
        assert_eq!(input.bucket_counts[2], 1);
        assert_eq!(input.bucket_counts[3], 1);
        assert_eq!(input.bucket_counts[5], 1);
        assert_eq!((input.min, input.max), (Some(7.0), Some(1000.0)));
        assert_eq!(
            (input.start_time_unix_nano, input.time_unix_nano),
            (5, 2_000_000_000)
        );
        assert_eq!(
            attr(&input.attributes, "server.port"),
            Some(&any_value::Value::IntValue(443))
        );
        assert_eq!(
            attr(&input.attributes, "gen_ai.response.model"),
            Some(&any_value::Value::StringValue("gpt-4o-2024".into()))
        );
        let output: u64 = pts.iter().map(|p| p.count).sum::<u64>() - 3;
        assert_eq!(output, 2, "the call without output usage records none");

        let dur = metric(&req, "gen_ai.client.operation.duration").unwrap();
        assert_eq!(dur.unit, "s");
        let [d] = hist_points(dur) else { panic!() };
        assert_eq!(d.count, 3);
        assert!((d.sum.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(d.explicit_bounds, DURATION_BUCKETS.to_vec());
        assert_eq!(d.bucket_counts[5], 3, "0.3 s falls in (0.16, 0.32]");

        let ttfc = metric(&req, "gen_ai.client.operation.time_to_first_chunk").unwrap();
        let [t] = hist_points(ttfc) else { panic!() };
        assert_eq!(t.count, 1, "streams only");
        assert!((t.sum.unwrap() - 0.05).abs() < 1e-9);
        assert!(metric(&req, "gen_ai.client.inference.duration").is_none());

        // The next interval starts where this one ended and holds only new calls.
        agg.record(&call("gpt-4o", Some(1), Some(1), false), Semconv::Default);
        let next = take(&mut agg, 3_000_000_000);
        let d = &hist_points(metric(&next, "gen_ai.client.operation.duration").unwrap())[0];
        assert_eq!((d.count, d.start_time_unix_nano), (1, 2_000_000_000));
    }

    #[test]
    fn cost_and_budget_decisions_by_tenant() {
        use crate::call::{BudgetOutcome as Budget, Verdict};
        let mut agg = Aggregator::new(100, 1);
        for (usd, verdict) in [
            (0.25, Verdict::Allowed),
            (0.5, Verdict::Allowed),
            (0.0, Verdict::Denied),
        ] {
            let mut c = call("gpt-4o", Some(10), Some(5), false);
            c.tenant = Some("team-a".into());
            c.cost_usd = (usd > 0.0).then_some(usd);
            c.budget = Some(Budget {
                verdict,
                rule: Some("rules[0]".into()),
                remaining_tokens: None,
            });
            agg.record(&c, Semconv::Default);
        }
        let req = take(&mut agg, 2_000_000_000);
        let sum_points = |name: &str| match metric(&req, name).unwrap().data.as_ref().unwrap() {
            PData::Sum(s) => {
                assert!(s.is_monotonic);
                assert_eq!(
                    s.aggregation_temporality,
                    AggregationTemporality::Delta as i32
                );
                s.data_points.clone()
            }
            other => panic!("not a sum: {other:?}"),
        };
        let cost = sum_points("tollgate.cost.usd");
        assert_eq!(metric(&req, "tollgate.cost.usd").unwrap().unit, "{USD}");
        assert_eq!(cost.len(), 1);
        assert_eq!(
            cost[0].value,
            Some(number_data_point::Value::AsDouble(0.75))
        );
        assert_eq!(
            attr(&cost[0].attributes, "tollgate.tenant"),
            Some(&any_value::Value::StringValue("team-a".into()))
        );
        let decisions = sum_points("tollgate.budget.decisions");
        let count = |v: &str| {
            decisions
                .iter()
                .find(|p| {
                    attr(&p.attributes, "tollgate.budget.decision")
                        == Some(&any_value::Value::StringValue(v.into()))
                })
                .and_then(|p| p.value)
        };
        assert_eq!(count("allowed"), Some(number_data_point::Value::AsInt(2)));
        assert_eq!(count("denied"), Some(number_data_point::Value::AsInt(1)));
        // The semconv histograms carry the tenant too, so usage is attributable.
        let usage = hist_points(metric(&req, "gen_ai.client.token.usage").unwrap());
        assert!(usage
            .iter()
            .all(|p| attr(&p.attributes, "tollgate.tenant").is_some()));
    }

    #[test]
    fn errors_carry_error_type() {
        let mut agg = Aggregator::new(100, 1);
        let mut c = call("gpt-4o", None, None, false);
        c.http_status = Some(429);
        agg.record(&c, Semconv::Default);
        let req = take(&mut agg, 2);
        assert!(metric(&req, "gen_ai.client.token.usage").is_none());
        let d = &hist_points(metric(&req, "gen_ai.client.operation.duration").unwrap())[0];
        assert_eq!(
            attr(&d.attributes, "error.type"),
            Some(&any_value::Value::StringValue("429".into()))
        );
    }

    #[test]
    fn latest_set() {
        let mut agg = Aggregator::new(100, 1);
        let mut c = call("gpt-4o", Some(100), Some(20), true);
        c.response.usage.cache_read = Some(40);
        c.response.usage.reasoning = Some(5);
        agg.record(&c, Semconv::Latest);
        let mut failed = call("gpt-4o", None, None, false);
        failed.http_status = Some(500);
        agg.record(&failed, Semconv::Latest);
        let req = take(&mut agg, 2);
        for name in [
            "gen_ai.client.token.usage",
            "gen_ai.client.operation.duration",
            "gen_ai.client.inference.duration",
            "gen_ai.client.inference.time_to_first_chunk",
            "gen_ai.client.inference.operation.input_tokens",
            "gen_ai.client.inference.operation.output_tokens",
        ] {
            assert!(metric(&req, name).is_some(), "{name}");
        }
        let counter = |name: &str| -> Vec<(i64, Option<any_value::Value>)> {
            match metric(&req, name).unwrap().data.as_ref().unwrap() {
                PData::Sum(s) => {
                    assert!(s.is_monotonic);
                    assert_eq!(
                        s.aggregation_temporality,
                        AggregationTemporality::Delta as i32
                    );
                    s.data_points
                        .iter()
                        .map(|p| {
                            let v = match p.value {
                                Some(number_data_point::Value::AsInt(v)) => v,
                                _ => panic!(),
                            };
                            (v, attr(&p.attributes, "gen_ai.token.modality").cloned())
                        })
                        .collect()
                }
                _ => panic!("{name} is not a sum"),
            }
        };
        let unknown = Some(any_value::Value::StringValue("unknown".into()));
        // Success and failure share the counter series (error.type is not a counter attribute): 100 + 0.
        assert_eq!(
            counter("gen_ai.client.inference.usage.input_tokens"),
            [(100, unknown.clone())]
        );
        assert_eq!(
            counter("gen_ai.client.inference.usage.output_tokens")[0].0,
            20
        );
        assert_eq!(
            counter("gen_ai.client.inference.usage.cache_read.input_tokens")[0].0,
            40
        );
        assert_eq!(
            counter("gen_ai.client.inference.usage.reasoning.output_tokens")[0].0,
            5
        );
        assert!(metric(
            &req,
            "gen_ai.client.inference.usage.cache_write.input_tokens"
        )
        .is_none());
        let d = hist_points(metric(&req, "gen_ai.client.inference.duration").unwrap());
        assert_eq!(d.iter().map(|p| p.count).sum::<u64>(), 2);
    }

    #[test]
    fn embeddings_are_not_inference() {
        let mut agg = Aggregator::new(100, 1);
        let mut c = call("text-embedding-3-small", Some(8), None, false);
        c.route.as_mut().unwrap().api = Api::OpenAiEmbeddings;
        agg.record(&c, Semconv::Latest);
        let req = take(&mut agg, 2);
        assert!(metric(&req, "gen_ai.client.operation.duration").is_some());
        assert!(metric(&req, "gen_ai.client.inference.duration").is_none());
    }

    #[test]
    fn cardinality_is_capped_with_an_overflow_series() {
        let mut agg = Aggregator::new(3, 1);
        for i in 0..50 {
            agg.record(
                &call(&format!("model-{i}"), Some(10), None, false),
                Semconv::Default,
            );
        }
        assert_eq!(
            agg.series_count(),
            8,
            "3 + overflow, for each of two instruments"
        );
        assert_eq!(agg.stats.overflow, 2 * 47);
        let req = take(&mut agg, 2);
        let pts = hist_points(metric(&req, "gen_ai.client.token.usage").unwrap());
        assert_eq!(pts.len(), 4);
        let over = pts
            .iter()
            .find(|p| {
                attr(&p.attributes, OVERFLOW_ATTR) == Some(&any_value::Value::BoolValue(true))
            })
            .unwrap();
        assert_eq!((over.count, over.attributes.len()), (47, 1));
        assert_eq!(
            pts.iter().map(|p| p.count).sum::<u64>(),
            50,
            "nothing is lost"
        );
        // Existing series keep recording after the limit is reached.
        let mut agg = Aggregator::new(1, 1);
        agg.record(&call("a", Some(1), None, false), Semconv::Default);
        agg.record(&call("b", Some(1), None, false), Semconv::Default);
        agg.record(&call("a", Some(1), None, false), Semconv::Default);
        assert_eq!(agg.stats.overflow, 2);
    }

    #[test]
    fn hash_collisions_keep_sets_apart() {
        // Every view gets the same hash: lookups probe past the other sets and still find their own.
        let mut agg = Aggregator::new(10, 1);
        let models = ["a", "b", "c", "d"];
        for round in 0..3 {
            for (i, m) in models.iter().enumerate() {
                let base = [("gen_ai.request.model", ValRef::Str(m))];
                let view = View {
                    base: &base,
                    extra: None,
                    hash: 42,
                };
                let v = Some((i + 1) as f64);
                agg.add_all(view, &[(Instrument::UsageInputTokens, v)]);
            }
            assert_eq!(agg.series_count(), 4, "round {round}");
        }
        let req = take(&mut agg, 2);
        let m = metric(&req, "gen_ai.client.inference.usage.input_tokens").unwrap();
        let Some(PData::Sum(sum)) = &m.data else {
            panic!()
        };
        let got: Vec<_> = sum.data_points.iter().map(|p| p.value).collect();
        let expect: Vec<_> = (1..=4)
            .map(|i| Some(number_data_point::Value::AsInt(3 * i)))
            .collect();
        assert_eq!(got, expect);
        // Hashes of equal views agree however they were built; different values differ.
        let base = [
            ("gen_ai.operation.name", ValRef::Str("chat")),
            ("server.port", ValRef::Int(443)),
        ];
        let extra = Some(("gen_ai.token.type", ValRef::Str("input")));
        let all = [
            base[0],
            base[1],
            ("gen_ai.token.type", ValRef::Str("input")),
        ];
        assert_eq!(View::new(&base, extra).hash, View::new(&all, None).hash);
        assert_ne!(
            View::new(&base, extra).hash,
            View::new(&base, Some(("gen_ai.token.type", ValRef::Str("output")))).hash
        );
        let long = "x".repeat(13);
        let longer = "x".repeat(14);
        assert_ne!(
            View::new(&[("k", ValRef::Str(&long))], None).hash,
            View::new(&[("k", ValRef::Str(&longer))], None).hash
        );
    }

    #[test]
    fn long_attribute_values_are_cut() {
        let mut agg = Aggregator::new(10, 1);
        let long = "é".repeat(500);
        agg.record(&call(&long, Some(1), None, false), Semconv::Default);
        let req = take(&mut agg, 2);
        let p = &hist_points(metric(&req, "gen_ai.client.token.usage").unwrap())[0];
        match attr(&p.attributes, "gen_ai.request.model") {
            Some(any_value::Value::StringValue(s)) => assert!(s.len() <= MAX_ATTR_LEN),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failed_exports_are_dropped_and_counted_while_aggregation_stays_bounded() {
        let res = resource("gw", "vm", &[]);
        let mut agg = Aggregator::new(2, 1);
        agg.record(&call("a", Some(1), Some(1), false), Semconv::Default);
        agg.close_interval(&res, 10);
        assert!(agg.has_pending());
        // Retried up to MAX_ATTEMPTS; meanwhile new calls aggregate into the next (growing) interval.
        for i in 1..MAX_ATTEMPTS {
            assert!(agg.next_request().is_some());
            assert_eq!(agg.finish(Outcome::Retry), Outcome::Retry);
            agg.record(
                &call(&format!("m{i}"), Some(1), None, false),
                Semconv::Default,
            );
            agg.close_interval(&res, 10 + u64::from(i));
            assert!(agg.series_count() <= 2 * 3, "bounded by the series cap");
        }
        assert!(agg.next_request().is_some());
        assert_eq!(agg.finish(Outcome::Retry), Outcome::Fail);
        assert_eq!((agg.stats.retries, agg.stats.dropped_points), (4, 3));
        // The next interval still starts where the failed one ended.
        agg.close_interval(&res, 100);
        let req = decode(agg.next_request().unwrap());
        let d = &hist_points(metric(&req, "gen_ai.client.operation.duration").unwrap())[0];
        assert_eq!(d.start_time_unix_nano, 10);
        assert_eq!(agg.finish(Outcome::Fail), Outcome::Fail);
        // A non-retryable answer drops at once.
        assert!(!agg.has_pending());
        agg.close_interval(&res, 200);
        assert!(!agg.has_pending(), "an empty interval sends nothing");
        agg.rejected(0);
    }
}
