//! Envoy stats published by tollgate (`wasmcustom.tollgate.*`, `tollgate_*` in Prometheus output). Declared in
//! one place; names are fixed strings so cardinality is bounded.

use crate::exchange::host::Counter;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::{Cell, RefCell};

pub struct Stats {
    /// The exchange's counters (`exchange::host::Counter`), in `Counter::ALL` order.
    counters: Vec<Counted>,
    pub spans_enqueued: Metric,
    pub spans_exported: Metric,
    pub spans_dropped_queue_full: Metric,
    pub spans_dropped_failed: Metric,
    pub export_retries: Metric,
    pub queue_depth: Metric,
    pub spans_rejected: Metric,
    pub metrics_exported: Metric,
    pub metrics_dropped: Metric,
    pub metrics_rejected: Metric,
    pub metrics_export_retries: Metric,
    pub metrics_overflow: Metric,
    /// `tollgate.redaction.detected.<detector>`: spans redacted per detector, defined at configure time from
    /// the configured detector list (at most 14 built-ins + 64 custom patterns).
    detectors: RefCell<Vec<(String, Metric)>>,
}

/// An exchange counter: handed to Envoy at once, or batched until the tick when every call bumps it.
enum Counted {
    Now(Metric),
    Batched(Batched),
}

/// A counter bumped by every call, handed to Envoy on the root's tick (`Stats::publish_batched`): one
/// host call per tick instead of one per call (each `proxy_increment_metric` costs Envoy 1.40 ~1.5 k
/// instructions, `bench/instructions.py`). Envoy's value lags by at most one tick (200 ms with OTLP export,
/// 1 s without).
pub struct Batched {
    metric: Metric,
    pending: Cell<u64>,
}

impl Batched {
    fn define(name: &str) -> Batched {
        Batched {
            metric: Metric::define(MetricType::Counter, name),
            pending: Cell::new(0),
        }
    }
    pub fn add(&self, n: u64) {
        self.pending.set(self.pending.get().saturating_add(n));
    }
    fn publish(&self) {
        self.metric.add(self.pending.replace(0));
    }
}

/// A metric id; a metric the host refused to define is silently a no-op.
#[derive(Clone, Copy)]
pub struct Metric(Option<u32>);

impl Metric {
    fn define(kind: MetricType, name: &str) -> Metric {
        Metric(hostcalls::define_metric(kind, name).ok())
    }
    /// Add `n` (counters reject increments ≤ 0, so zero is skipped).
    pub fn add(self, n: u64) {
        if let (Some(id), Ok(n @ 1..)) = (self.0, i64::try_from(n)) {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
    /// Adjust a gauge by a signed delta.
    pub fn delta(self, d: i64) {
        if let (Some(id), true) = (self.0, d != 0) {
            let _ = hostcalls::increment_metric(id, d);
        }
    }
}

impl Stats {
    pub fn define() -> Stats {
        let c = |n: &str| Metric::define(MetricType::Counter, n);
        let counters = Counter::ALL
            .iter()
            .map(|&k| {
                if k.per_call() {
                    Counted::Batched(Batched::define(k.name()))
                } else {
                    Counted::Now(c(k.name()))
                }
            })
            .collect();
        Stats {
            counters,
            spans_enqueued: c("tollgate.spans_enqueued"),
            spans_exported: c("tollgate.spans_exported"),
            spans_dropped_queue_full: c("tollgate.spans_dropped_queue_full"),
            spans_dropped_failed: c("tollgate.spans_dropped_failed"),
            export_retries: c("tollgate.export_retries"),
            queue_depth: Metric::define(MetricType::Gauge, "tollgate.queue_depth"),
            spans_rejected: c("tollgate.spans_rejected"),
            metrics_exported: c("tollgate.metrics_exported"),
            metrics_dropped: c("tollgate.metrics_dropped"),
            metrics_rejected: c("tollgate.metrics_rejected"),
            metrics_export_retries: c("tollgate.metrics_export_retries"),
            metrics_overflow: c("tollgate.metrics_overflow"),
            detectors: RefCell::new(Vec::new()),
        }
    }

    /// Add `n` to an exchange counter.
    pub fn count(&self, counter: Counter, n: u64) {
        match self.counters.get(counter as usize) {
            Some(Counted::Now(m)) => m.add(n),
            Some(Counted::Batched(b)) => b.add(n),
            None => {}
        }
    }

    /// Hand the per-call counters' increments since the last tick to Envoy.
    pub fn publish_batched(&self) {
        for c in &self.counters {
            if let Counted::Batched(b) = c {
                b.publish();
            }
        }
    }

    /// (Re)define the per-detector counters for a configuration's detector names. Names already defined
    /// keep their metric (Envoy returns the same id for the same name).
    pub fn define_detectors(&self, names: &[String]) {
        let mut d = self.detectors.borrow_mut();
        d.retain(|(n, _)| names.contains(n));
        for n in names {
            if !d.iter().any(|(k, _)| k == n) {
                let m = Metric::define(
                    MetricType::Counter,
                    &format!("tollgate.redaction.detected.{n}"),
                );
                d.push((n.clone(), m));
            }
        }
    }

    /// Count spans redacted by `detector` (unknown names are ignored: the set is fixed per configuration).
    pub fn count_detection(&self, detector: &str, n: u64) {
        let d = self.detectors.borrow();
        if let Some((_, m)) = d.iter().find(|(k, _)| k == detector) {
            m.add(n);
        }
    }
}
