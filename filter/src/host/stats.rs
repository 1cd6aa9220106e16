//! Envoy stats published by tollgate (`wasmcustom.tollgate.*`, `tollgate_*` in Prometheus output). Declared in
//! one place; names are fixed strings so cardinality is bounded.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::{Cell, RefCell};

pub struct Stats {
    pub calls: Batched,
    pub calls_failed: Batched,
    pub calls_uninspected: Metric,
    pub tokens_input: Batched,
    pub tokens_output: Batched,
    pub usage_estimated: Batched,
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
    pub budget_allowed: Metric,
    pub budget_denied: Metric,
    pub budget_clamped: Metric,
    pub budget_dry_run_denied: Metric,
    pub budget_tenant_invalid: Metric,
    pub budget_tenant_overflow: Metric,
    pub budget_errors: Metric,
    /// Requests refused by a redaction `block` rule.
    pub redaction_blocked: Metric,
    /// Request bodies rewritten by egress redaction.
    pub redaction_egress_rewritten: Metric,
    /// Responses whose output could not be redacted (compressed, or a framing other than SSE/JSON).
    pub redaction_output_unsupported: Metric,
    /// Requests whose headers were held until the decisions on their body were made.
    pub hold_requests: Batched,
    /// Requests that would have been held but Envoy lacks `allow_on_headers_stop_iteration`: their headers
    /// left before the decisions on their body.
    pub hold_unavailable: Batched,
    /// Refusals sent after the request's headers had been forwarded (the upstream stream is reset).
    pub refusals_after_forward: Metric,
    /// Request bodies too large to hold (over `max_request_body`, or of undeclared length and not whole in
    /// their first chunk): forwarded uninspected, reserved by their size when budgets apply.
    pub request_oversized: Metric,
    /// Of those, refused (`oversized_requests: refuse`).
    pub request_oversized_refused: Metric,
    /// Envoy answered 413 to a body tollgate held: `max_request_body` is above Envoy's buffer limit.
    pub request_buffer_overflow: Metric,
    /// Signed requests refused because egress redaction would have changed their body.
    pub signed_refused: Metric,
    /// Signed requests forwarded unchanged although a rewrite applied (`signed_requests: forward`, or a
    /// clamp or usage request skipped).
    pub signed_unmodified: Metric,
    /// `tollgate.redaction.detected.<detector>`: spans redacted per detector, defined at configure time from
    /// the configured detector list (at most 14 built-ins + 64 custom patterns).
    detectors: RefCell<Vec<(String, Metric)>>,
    pub rls: RlsStats,
}

/// `budgets.backend = "rls"`: calls to the rate-limit service and how they ended.
pub struct RlsStats {
    /// Admission calls answered with a decision.
    pub checks: Metric,
    /// Requests the service said were over a budget.
    pub denied: Metric,
    /// Admission calls that failed (unreachable, timeout, error, bad answer) and admitted (`failure_mode: open`).
    pub failed_open: Metric,
    /// Admission calls that failed and refused the request (`failure_mode: closed`).
    pub failed_closed: Metric,
    /// Usage debits dispatched after the response.
    pub debits: Metric,
    /// Usage debits Envoy refused to dispatch (those tokens went uncounted; a debit the service itself fails
    /// is not seen: its answer arrives after the exchange is gone).
    pub debit_failures: Metric,
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
        Stats {
            calls: Batched::define("tollgate.calls"),
            calls_failed: Batched::define("tollgate.calls_failed"),
            calls_uninspected: c("tollgate.calls_uninspected"),
            tokens_input: Batched::define("tollgate.tokens_input"),
            tokens_output: Batched::define("tollgate.tokens_output"),
            usage_estimated: Batched::define("tollgate.usage_estimated"),
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
            rls: RlsStats {
                checks: c("tollgate.budget_rls_checks"),
                denied: c("tollgate.budget_rls_denied"),
                failed_open: c("tollgate.budget_rls_failed_open"),
                failed_closed: c("tollgate.budget_rls_failed_closed"),
                debits: c("tollgate.budget_rls_debits"),
                debit_failures: c("tollgate.budget_rls_debit_failures"),
            },
            budget_allowed: c("tollgate.budget_allowed"),
            budget_denied: c("tollgate.budget_denied"),
            budget_clamped: c("tollgate.budget_clamped"),
            budget_dry_run_denied: c("tollgate.budget_dry_run_denied"),
            budget_tenant_invalid: c("tollgate.budget_tenant_invalid"),
            budget_tenant_overflow: c("tollgate.budget_tenant_overflow"),
            budget_errors: c("tollgate.budget_errors"),
            redaction_blocked: c("tollgate.redaction.blocked"),
            redaction_egress_rewritten: c("tollgate.redaction.egress_rewritten"),
            redaction_output_unsupported: c("tollgate.redaction.output_unsupported"),
            hold_requests: Batched::define("tollgate.hold.requests"),
            hold_unavailable: Batched::define("tollgate.hold.unavailable"),
            refusals_after_forward: c("tollgate.refusals_after_forward"),
            request_oversized: c("tollgate.request.oversized"),
            request_oversized_refused: c("tollgate.request.oversized_refused"),
            request_buffer_overflow: c("tollgate.request.buffer_overflow"),
            signed_refused: c("tollgate.signed.refused"),
            signed_unmodified: c("tollgate.signed.unmodified"),
            detectors: RefCell::new(Vec::new()),
        }
    }

    /// Hand the per-call counters' increments since the last tick to Envoy.
    pub fn publish_batched(&self) {
        for b in [
            &self.calls,
            &self.calls_failed,
            &self.tokens_input,
            &self.tokens_output,
            &self.usage_estimated,
            &self.hold_requests,
            &self.hold_unavailable,
        ] {
            b.publish();
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

    /// Count redacted spans per detector (unknown names are ignored: the set is fixed per configuration).
    pub fn count_redactions(&self, f: &crate::call::Findings) {
        let d = self.detectors.borrow();
        for (name, n) in f.per_type() {
            if let Some((_, m)) = d.iter().find(|(k, _)| k == name) {
                m.add(u64::from(n));
            }
        }
    }
}
