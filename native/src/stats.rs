//! Envoy stats of the native build: the same names as the Wasm build's (filter/src/host/stats.rs), counted in
//! module memory by the workers and handed to Envoy by the main thread on each tick.
//!
//! Why batched: an increment through the ABI costs Envoy a few hundred instructions unlabeled and several
//! thousand labeled (docs/dynamic-modules-abi.md §11), and the stat calls of a config are only made safely
//! from the main thread anyway. A worker adds to its own lane's atomics (no other worker touches that cache
//! line); each tick swaps them to zero and increments Envoy's counters once. Envoy's value lags by at most one
//! tick (200 ms with OTLP export, 1 s without), as in the Wasm build.
//!
//! Names: the module defines `tollgate.calls` etc. in Envoy's default dynamic-modules namespace, so `/stats`
//! shows `dynamicmodulescustom.tollgate.calls` (the Wasm build: `wasmcustom.tollgate.calls`) and Prometheus
//! `envoy_dynamicmodulescustom_tollgate_calls`, or `tollgate_calls` — the Wasm build's name — with the
//! runtime flag `envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix` (docs/native-module.md).

use crate::core::Counter;
use crate::envoy::ConfigHandle;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of this host beside the exchange's (`Counter::ALL`): the export's and the budget alerts', as the
/// Wasm build names them, and two of the native build's own. (`tollgate.queue_depth`, the one gauge, is defined apart.)
pub const OWN: [&str; 18] = [
    "tollgate.spans_enqueued",
    "tollgate.spans_exported",
    "tollgate.spans_dropped_queue_full",
    "tollgate.spans_dropped_failed",
    "tollgate.export_retries",
    "tollgate.spans_rejected",
    "tollgate.metrics_exported",
    "tollgate.metrics_dropped",
    "tollgate.metrics_rejected",
    "tollgate.metrics_export_retries",
    "tollgate.metrics_overflow",
    "tollgate.budget_alert_logs_exported",
    "tollgate.budget_alert_logs_dropped",
    "tollgate.budget_webhook_delivered",
    "tollgate.budget_webhook_retries",
    "tollgate.budget_webhook_dropped",
    // Panics caught at the ABI boundary (src/guard.rs).
    "tollgate.native.panics",
    // Rate-limit debits the service answered with an error (the Wasm build cannot see those: its debit's
    // answer arrives after the exchange is gone; the native build sends debits from the main thread).
    "tollgate.budget_rls_debit_errors",
];

pub const QUEUE_DEPTH: &str = "tollgate.queue_depth";

/// One of [`OWN`], by position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Own {
    SpansEnqueued,
    SpansExported,
    SpansDroppedQueueFull,
    SpansDroppedFailed,
    ExportRetries,
    SpansRejected,
    MetricsExported,
    MetricsDropped,
    MetricsRejected,
    MetricsExportRetries,
    MetricsOverflow,
    AlertLogsExported,
    AlertLogsDropped,
    WebhookDelivered,
    WebhookRetries,
    WebhookDropped,
    NativePanics,
    RlsDebitErrors,
}

/// A counter the native build publishes: one of the exchange's, or one of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Exchange(Counter),
    Own(Own),
}

impl From<Counter> for Stat {
    fn from(c: Counter) -> Stat {
        Stat::Exchange(c)
    }
}

impl From<Own> for Stat {
    fn from(o: Own) -> Stat {
        Stat::Own(o)
    }
}

/// Every counter: the exchange's first, in `Counter::ALL` order, then [`OWN`].
pub const N: usize = Counter::ALL.len() + OWN.len();

impl Stat {
    /// Position in [`Pending`] and [`Totals`].
    pub fn index(self) -> usize {
        match self {
            Stat::Exchange(c) => c as usize,
            Stat::Own(o) => Counter::ALL.len() + o as usize,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Stat::Exchange(c) => c.name(),
            Stat::Own(o) => OWN.get(o as usize).copied().unwrap_or("tollgate.unknown"),
        }
    }
}

/// The name of the counter at `index` (see [`Stat::index`]).
pub fn name_at(index: usize) -> Option<&'static str> {
    match Counter::ALL.get(index) {
        Some(c) => Some(c.name()),
        None => OWN.get(index.checked_sub(Counter::ALL.len())?).copied(),
    }
}

/// Counts of one worker (or of the main thread), not yet handed to Envoy. Aligned to a cache line so two
/// workers' lanes never share one.
#[repr(align(64))]
pub struct Pending {
    counters: [AtomicU64; N],
    /// `tollgate.redaction.detected.<detector>`, in the configuration's detector order.
    detectors: Box<[AtomicU64]>,
}

impl Pending {
    pub fn new(detectors: usize) -> Pending {
        Pending {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            detectors: (0..detectors).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn add(&self, s: Stat, n: u64) {
        if n > 0 {
            if let Some(c) = self.counters.get(s.index()) {
                c.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Count a span redacted by the configuration's `i`th detector.
    pub fn add_detector(&self, i: usize, n: u64) {
        if let Some(c) = self.detectors.get(i) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Take everything counted since the last call into `totals`.
    pub fn drain_into(&self, totals: &mut Totals) {
        for (t, c) in totals.counters.iter_mut().zip(self.counters.iter()) {
            *t = t.saturating_add(c.swap(0, Ordering::Relaxed));
        }
        for (t, c) in totals.detectors.iter_mut().zip(self.detectors.iter()) {
            *t = t.saturating_add(c.swap(0, Ordering::Relaxed));
        }
    }
}

/// What one tick hands to Envoy.
#[derive(Debug, PartialEq, Eq)]
pub struct Totals {
    pub counters: [u64; N],
    pub detectors: Vec<u64>,
}

impl Totals {
    pub fn new(detectors: usize) -> Totals {
        Totals {
            counters: [0; N],
            detectors: vec![0; detectors],
        }
    }

    pub fn add(&mut self, s: Stat, n: u64) {
        if let Some(c) = self.counters.get_mut(s.index()) {
            *c = c.saturating_add(n);
        }
    }

    /// Add what a cumulative count of the core's (`now`) grew by since it was last published (`before`).
    pub fn grew(&mut self, o: Own, now: u64, before: u64) {
        self.add(Stat::Own(o), now.saturating_sub(before));
    }
}

/// Envoy's ids for this config's stats (defined in `config_new`, the only time the ABI allows it).
pub struct Ids {
    counters: [Option<usize>; N],
    queue_depth: Option<usize>,
    /// The configuration's detector names and their counter ids.
    detectors: Vec<(String, Option<usize>)>,
}

impl Ids {
    /// Define every stat. A stat Envoy refuses to define is logged and then silently not counted: stats never
    /// decide whether a configuration is accepted (the Wasm build does the same).
    pub fn define(config: ConfigHandle, detector_names: &[String]) -> Ids {
        let counter = |name: &str| match config.define_counter(name) {
            Ok(id) => Some(id),
            Err(r) => {
                crate::envoy::log(
                    crate::abi::log_level::WARN,
                    &format!(
                        "tollgate: Envoy refused to define the counter {name} (metrics_result {r})"
                    ),
                );
                None
            }
        };
        Ids {
            counters: std::array::from_fn(|i| name_at(i).and_then(counter)),
            queue_depth: config.define_gauge(QUEUE_DEPTH).ok(),
            detectors: detector_names
                .iter()
                .map(|d| {
                    (
                        d.clone(),
                        counter(&format!("tollgate.redaction.detected.{d}")),
                    )
                })
                .collect(),
        }
    }

    /// Envoy's id of a counter (None when Envoy refused to define it).
    pub fn counter(&self, s: Stat) -> Option<usize> {
        self.counters.get(s.index()).copied().flatten()
    }

    /// Envoy's id of `tollgate.redaction.detected.<name>`.
    pub fn detector(&self, name: &str) -> Option<usize> {
        self.detectors
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, id)| *id)
    }

    /// Position of a detector name in the configuration's list (what `Pending::add_detector` takes).
    pub fn detector_index(&self, name: &str) -> Option<usize> {
        self.detectors.iter().position(|(n, _)| n == name)
    }

    pub fn detectors(&self) -> usize {
        self.detectors.len()
    }

    /// Hand one tick's totals to Envoy (main thread).
    pub fn publish(&self, config: ConfigHandle, totals: &Totals, queue_depth: u64) {
        for (id, n) in self.counters.iter().zip(totals.counters.iter()) {
            if let (Some(id), 1..) = (id, *n) {
                config.increment_counter(*id, *n);
            }
        }
        for ((_, id), n) in self.detectors.iter().zip(totals.detectors.iter()) {
            if let (Some(id), 1..) = (id, *n) {
                config.increment_counter(*id, *n);
            }
        }
        if let Some(id) = self.queue_depth {
            config.set_gauge(id, queue_depth);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_has_its_name() {
        for i in 0..N {
            assert!(name_at(i).is_some(), "{i}");
        }
        assert_eq!(name_at(N), None);
        for c in Counter::ALL {
            assert_eq!(name_at(Stat::from(c).index()), Some(c.name()));
        }
        assert_eq!(Stat::from(Own::RlsDebitErrors).index(), N - 1);
    }

    /// The Wasm build's stat names, read from its source: the native build publishes every one of them.
    #[test]
    fn same_names_as_the_wasm_build() {
        let src = include_str!("../../filter/src/host/stats.rs");
        let mut wasm: Vec<&str> = src
            .split('"')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("tollgate.") && !s.contains('{'))
            .collect();
        // The per-detector counters, `tollgate.redaction.detected.{n}`, are defined from the configuration.
        assert!(src.contains("\"tollgate.redaction.detected.{n}\""));
        // The Wasm host defines its export stats itself and every counter of the exchange by its name.
        assert!(src.contains("Counter::ALL"));
        wasm.extend(Counter::ALL.iter().map(|c| c.name()));
        wasm.sort_unstable();
        wasm.dedup();
        let mine: Vec<&str> = (0..N).filter_map(name_at).collect();
        for name in &wasm {
            assert!(
                mine.contains(name) || *name == QUEUE_DEPTH,
                "{name} is a Wasm stat the native build lacks"
            );
        }
        // And every counter here is the Wasm build's, except the native build's own.
        for name in mine {
            assert!(
                wasm.contains(&name)
                    || ["tollgate.native.panics", "tollgate.budget_rls_debit_errors"]
                        .contains(&name),
                "{name} is not a Wasm stat"
            );
        }
    }

    #[test]
    fn stat_names() {
        assert_eq!(Stat::from(Counter::Calls).name(), "tollgate.calls");
        assert_eq!(
            Stat::from(Own::SpansRejected).name(),
            "tollgate.spans_rejected"
        );
        assert_eq!(
            Stat::from(Own::NativePanics).name(),
            "tollgate.native.panics"
        );
        assert_eq!(
            Stat::from(Own::RlsDebitErrors).name(),
            "tollgate.budget_rls_debit_errors"
        );
    }

    #[test]
    fn pending_counts_drain_once() {
        let p = Pending::new(2);
        p.add(Stat::Exchange(Counter::Calls), 3);
        p.add(Stat::Exchange(Counter::Calls), 0);
        p.add_detector(1, 2);
        p.add_detector(5, 1); // out of range: ignored
        let mut t = Totals::new(2);
        p.drain_into(&mut t);
        assert_eq!(t.counters[Stat::Exchange(Counter::Calls).index()], 3);
        assert_eq!(t.detectors, vec![0, 2]);
        let mut again = Totals::new(2);
        p.drain_into(&mut again);
        assert_eq!(again, Totals::new(2));
    }

    #[test]
    fn publishing_skips_zeros_and_sets_the_gauge() {
        use crate::envoy::fake;
        let h = fake::config();
        let ids = Ids::define(h, &["email".to_string()]);
        let mut t = Totals::new(1);
        t.add(Stat::Exchange(Counter::TokensInput), 12);
        t.detectors[0] = 1;
        ids.publish(h, &t, 4);
        let c = fake::counters();
        assert_eq!(c.get("tollgate.tokens_input"), Some(&12));
        assert_eq!(c.get("tollgate.redaction.detected.email"), Some(&1));
        assert_eq!(c.get("tollgate.calls"), None, "zero is not an increment");
        assert_eq!(fake::gauges().get(QUEUE_DEPTH), Some(&4));
    }
}
