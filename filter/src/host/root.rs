//! Root context: configuration, the per-VM span queue, and the export tick. Callouts are dispatched only from
//! here so their answers always find a live context.

use super::abi;
use super::http::Exchange;
use super::stats::Stats;
use super::{log, now_ns, random, random_unit};
use crate::config::Config;
use crate::telemetry::export::{self, classify, ExportStats, Outcome, SpanQueue};
use crate::telemetry::trace::hex;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// What every HTTP context of this VM shares with the root.
pub struct Shared {
    pub config: Rc<Config>,
    pub queue: Rc<RefCell<SpanQueue>>,
    pub stats: Rc<Stats>,
}

#[derive(Default)]
pub struct Root {
    config: Option<Rc<Config>>,
    queue: Option<Rc<RefCell<SpanQueue>>>,
    stats: Option<Rc<Stats>>,
    instance_id: String,
    in_flight: Option<u32>,
    last_flush_ms: u64,
    next_attempt_ms: u64,
    published: ExportStats,
    published_depth: i64,
}

fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

impl Root {
    fn publish_stats(&mut self) {
        let (Some(q), Some(s)) = (&self.queue, &self.stats) else {
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
        let depth = i64::try_from(q.len()).unwrap_or(i64::MAX);
        s.queue_depth.delta(depth - self.published_depth);
        self.published_depth = depth;
        self.published = now;
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
        let ua = concat!("tollgate/", env!("CARGO_PKG_VERSION"));
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", otlp.traces_path.as_str()),
            (":authority", otlp.authority.as_str()),
            ("content-type", "application/x-protobuf"),
            ("user-agent", ua),
        ];
        headers.extend(otlp.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let timeout = Duration::from_millis(otlp.timeout_ms);
        match proxy_wasm::hostcalls::dispatch_http_call(
            &otlp.cluster,
            headers,
            Some(&body),
            vec![],
            timeout,
        ) {
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
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if self.in_flight != Some(token) {
            return;
        }
        self.in_flight = None;
        let Some(queue) = self.queue.clone() else {
            return;
        };
        // No headers means no response: timeout, reset or connection failure.
        let status = if num_headers == 0 {
            None
        } else {
            abi::header_str(MapType::HttpCallResponseHeaders, ":status")
                .and_then(|s| s.parse::<u16>().ok())
        };
        let outcome = queue.borrow_mut().finish(classify(status));
        match outcome {
            Outcome::Success => {
                if body_size > 0 {
                    let body = abi::buffer(BufferType::HttpCallResponseBody, 0, body_size);
                    if let Ok(resp) = ExportTraceServiceResponse::decode(body.as_slice()) {
                        if let Some(p) = resp.partial_success.filter(|p| p.rejected_spans > 0) {
                            log(
                                LogLevel::Warn,
                                &format!(
                                    "tollgate: collector rejected {} spans: {}",
                                    p.rejected_spans, p.error_message
                                ),
                            );
                        }
                    }
                }
            }
            Outcome::Retry => {
                let retry_after = abi::header_str(MapType::HttpCallResponseHeaders, "retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let attempts = queue.borrow().attempts();
                self.next_attempt_ms =
                    now_ms() + export::backoff_ms(attempts, retry_after, random_unit());
            }
            Outcome::Fail => {
                log(
                    LogLevel::Warn,
                    &format!("tollgate: OTLP export failed (status {status:?}); batch dropped"),
                );
            }
        }
        self.publish_stats();
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        self.instance_id = hex(&random::<16>());
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
        if let Err(e) = super::budget::on_configure(&cfg) {
            log(LogLevel::Error, &e);
            return false;
        }
        if self.instance_id.is_empty() {
            self.instance_id = hex(&random::<16>());
        }
        let resource = export::resource(&cfg.service_name, &self.instance_id, &cfg.resource);
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
        if self.stats.is_none() {
            self.stats = Some(Rc::new(Stats::define()));
        }
        let tick = cfg
            .otlp
            .as_ref()
            .map_or(1_000, |o| o.flush_interval_ms.min(200));
        let _ = proxy_wasm::hostcalls::set_tick_period(Duration::from_millis(tick));
        self.config = Some(Rc::new(cfg));
        true
    }

    fn on_tick(&mut self) {
        self.flush();
        self.publish_stats();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = Shared {
            config: self.config.clone()?,
            queue: self.queue.clone()?,
            stats: self.stats.clone()?,
        };
        Some(Box::new(Exchange::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
