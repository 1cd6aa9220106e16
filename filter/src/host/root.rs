//! Root context: configuration, the per-VM span queue, and the export tick. Callouts are dispatched only from
//! here so their answers always find a live context.

use super::abi;
use super::hold::Holds;
use super::http::Http;
use super::metrics::{self, now_ms, partial_success, Answer, MetricsExporter};
use super::stats::Stats;
use super::{log, random, random_unit};
use crate::config::Config;
use crate::telemetry::export::{self, ExportStats, Outcome, Resource, SpanQueue};
use crate::telemetry::metrics::Aggregator;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// What every HTTP context of this VM shares with the root.
pub struct Shared {
    pub config: Arc<Config>,
    pub queue: Rc<RefCell<SpanQueue>>,
    pub stats: Rc<Stats>,
    pub metrics: Rc<RefCell<Aggregator>>,
    /// Whether Envoy delivers the body of held requests, and the held requests still finding out.
    pub holds: Rc<Holds>,
}

#[derive(Default)]
pub struct Root {
    /// This root context's id, to return to after acting in an exchange's context.
    context_id: u32,
    holds: Rc<Holds>,
    config: Option<Arc<Config>>,
    queue: Option<Rc<RefCell<SpanQueue>>>,
    stats: Option<Rc<Stats>>,
    metrics: Option<MetricsExporter>,
    resource: Option<Resource>,
    instance_id: String,
    in_flight: Option<u32>,
    last_flush_ms: u64,
    next_attempt_ms: u64,
    published: ExportStats,
    published_depth: i64,
}

impl Root {
    pub fn new(context_id: u32) -> Root {
        Root {
            context_id,
            ..Root::default()
        }
    }

    fn publish_stats(&mut self) {
        if let Some(s) = &self.stats {
            s.publish_batched();
        }
        let (Some(q), Some(s)) = (self.queue.clone(), self.stats.clone()) else {
            return;
        };
        let q = q.borrow();
        let now = q.stats;
        let p = self.published;
        s.spans_enqueued
            .add(now.enqueued.saturating_sub(p.enqueued));
        s.spans_exported
            .add(now.exported.saturating_sub(p.exported));
        s.spans_dropped_queue_full
            .add(now.dropped_queue_full.saturating_sub(p.dropped_queue_full));
        s.spans_dropped_failed
            .add(now.dropped_failed.saturating_sub(p.dropped_failed));
        s.export_retries.add(now.retries.saturating_sub(p.retries));
        s.spans_rejected
            .add(now.rejected.saturating_sub(p.rejected));
        let depth = i64::try_from(q.len()).unwrap_or(i64::MAX);
        s.queue_depth.delta(depth - self.published_depth);
        self.published_depth = depth;
        self.published = now;
        drop(q);
        if let Some(m) = self.metrics.as_mut() {
            m.publish(&s);
        }
    }

    fn flush(&mut self) {
        let (Some(cfg), Some(queue)) = (self.config.clone(), self.queue.clone()) else {
            return;
        };
        let Some(otlp) = cfg.otlp.as_ref() else {
            return;
        };
        let now = now_ms();
        if self.in_flight.is_some() || now < self.next_attempt_ms {
            return;
        }
        let mut q = queue.borrow_mut();
        let due = q.batch_ready()
            || q.attempts() > 0
            || now.saturating_sub(self.last_flush_ms) >= otlp.flush_interval_ms;
        if !due {
            return;
        }
        let Some(body) = q.next_request() else { return };
        self.last_flush_ms = now;
        match metrics::dispatch(otlp, &otlp.traces_path, &body) {
            Ok(token) => self.in_flight = Some(token),
            Err(status) => {
                // Unknown cluster or bad argument: configuration problem; back off and count, never block traffic.
                log(
                    LogLevel::Warn,
                    &format!(
                        "tollgate: OTLP export dispatch to cluster '{}' failed: {status:?}",
                        otlp.cluster
                    ),
                );
                q.dispatch_failed();
                let attempts = q.attempts().max(1);
                self.next_attempt_ms = now + export::backoff_ms(attempts, None, random_unit());
            }
        }
    }
}

impl Context for Root {
    /// The VM is going away (reconfiguration, shutdown): counters still held for the tick go to Envoy now.
    fn on_done(&mut self) -> bool {
        self.publish_stats();
        true
    }

    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self
            .metrics
            .as_mut()
            .is_some_and(|m| m.on_response(token, num_headers, body_size))
        {
            self.publish_stats();
            return;
        }
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let Some(queue) = self.queue.clone() else {
            return;
        };
        let answer = Answer::read(num_headers, body_size);
        let outcome = queue.borrow_mut().finish(answer.outcome());
        match outcome {
            Outcome::Success => {
                if let Some((rejected, message)) = partial_success(&answer.body) {
                    queue
                        .borrow_mut()
                        .rejected(u64::try_from(rejected).unwrap_or(0));
                    log(
                        LogLevel::Warn,
                        &format!("tollgate: collector rejected {rejected} spans: {message}"),
                    );
                }
            }
            Outcome::Retry => {
                let attempts = queue.borrow().attempts();
                self.next_attempt_ms =
                    now_ms() + export::backoff_ms(attempts, answer.retry_after, random_unit());
            }
            Outcome::Fail => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "tollgate: OTLP export failed (status {:?}); batch dropped",
                        answer.status
                    ),
                );
            }
        }
        // A full batch waiting goes now rather than at the next tick: otherwise export throughput would be
        // capped at one batch per tick and a busy worker would drop spans with a healthy collector.
        self.flush();
        self.publish_stats();
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        self.instance_id = export::instance_id(random::<16>());
        true
    }

    fn on_configure(&mut self, size: usize) -> bool {
        let raw = if size == 0 {
            Vec::new()
        } else {
            abi::buffer(BufferType::PluginConfiguration, 0, size)
        };
        let cfg = match Config::parse(&raw) {
            Ok(c) => c,
            Err(e) => {
                log(LogLevel::Error, &e.to_string());
                return false;
            }
        };
        crate::exchange::configure(&cfg, &super::store::SharedData, super::store::holder());
        if self.instance_id.is_empty() {
            self.instance_id = export::instance_id(random::<16>());
        }
        let resource = export::resource(&cfg.service_name, &self.instance_id, &cfg.resource);
        let resource_for_metrics = resource.clone();
        let (max_queue, max_batch) = cfg
            .otlp
            .as_ref()
            .map_or((1, 1), |o| (o.max_queue, o.max_batch));
        match &self.queue {
            // A reconfigured plugin keeps the spans already queued.
            Some(q) => q.borrow_mut().reconfigure(resource, max_queue, max_batch),
            None => {
                self.queue = Some(Rc::new(RefCell::new(SpanQueue::new(
                    resource, max_queue, max_batch,
                ))))
            }
        }
        let max_series = cfg.otlp.as_ref().map_or(1, |o| o.metrics_max_series);
        if self.metrics.is_none() {
            self.metrics = Some(MetricsExporter::new(max_series));
        }
        self.resource = Some(resource_for_metrics);
        if self.stats.is_none() {
            self.stats = Some(Rc::new(Stats::define()));
        }
        if let Some(s) = &self.stats {
            s.define_detectors(&cfg.redaction.detector_names);
        }
        let tick = cfg
            .otlp
            .as_ref()
            .map_or(1_000, |o| o.flush_interval_ms.min(200));
        let _ = proxy_wasm::hostcalls::set_tick_period(Duration::from_millis(tick));
        // Envoy's answer to held headers is a property of this plugin configuration: learn it again.
        self.holds = Rc::new(Holds::default());
        self.config = Some(Arc::new(cfg));
        true
    }

    fn on_tick(&mut self) {
        if self.stats.as_ref().is_some_and(|s| self.holds.tick(s)) {
            abi::set_effective_context(self.context_id);
        }
        self.flush();
        if let (Some(m), Some(cfg), Some(res)) = (
            self.metrics.as_mut(),
            self.config.as_ref(),
            self.resource.as_ref(),
        ) {
            m.tick(cfg, res);
        }
        self.publish_stats();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = Shared {
            config: self.config.clone()?,
            queue: self.queue.clone()?,
            stats: self.stats.clone()?,
            metrics: self.metrics.as_ref()?.aggregator.clone(),
            holds: self.holds.clone(),
        };
        Some(Box::new(Http::new(shared, context_id)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
