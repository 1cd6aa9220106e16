//! Budget alerts leaving the VM: the OTLP log records (`telemetry::logs::LogQueue`) to the collector's logs
//! path, and the webhook bodies (`telemetry::webhook::WebhookQueue`) to `budgets.webhook`'s cluster. Both
//! queues are per VM and bounded; the root drains them on its tick and on each answer, one request in
//! flight per queue, so traffic never waits for either.

use super::metrics::{self, now_ms, Answer};
use super::stats::Stats;
use super::{log, random_unit};
use crate::config::Config;
use crate::telemetry::export::Resource;
use crate::telemetry::logs::{LogQueue, LogRecord, LogStats};
use crate::telemetry::webhook::{WebhookQueue, WebhookStats};
use proxy_wasm::types::LogLevel;
use std::time::Duration;

/// Log records a VM holds while the collector is slow or down.
const MAX_LOGS: usize = 1_000;

pub struct Alerts {
    logs: LogQueue,
    logs_in_flight: Option<u32>,
    webhook: Option<WebhookQueue>,
    webhook_in_flight: Option<u32>,
    published_logs: LogStats,
    published_webhook: WebhookStats,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            logs: LogQueue::new(MAX_LOGS),
            logs_in_flight: None,
            webhook: None,
            webhook_in_flight: None,
            published_logs: LogStats::default(),
            published_webhook: WebhookStats::default(),
        }
    }
}

impl Alerts {
    /// A (re)configuration: the webhook queue follows `budgets.webhook` (alerts already queued stay).
    pub fn configure(&mut self, cfg: &Config) {
        match cfg.budgets.as_ref().and_then(|b| b.webhook.as_ref()) {
            Some(w) if self.webhook.is_none() => {
                self.webhook = Some(WebhookQueue::new(w.max_queue, w.max_attempts));
            }
            Some(_) => {}
            None => self.webhook = None,
        }
    }

    pub fn push_log(&mut self, cfg: &Config, record: LogRecord) {
        if cfg.otlp.is_some() {
            self.logs.push(record);
        }
    }

    pub fn push_webhook(&mut self, body: String) {
        if let Some(q) = self.webhook.as_mut() {
            q.push(body);
        }
    }

    /// Send what is due.
    pub fn flush(&mut self, cfg: &Config, resource: &Resource) {
        let now = now_ms();
        if let (Some(otlp), None) = (cfg.otlp.as_ref(), self.logs_in_flight) {
            if let Some(body) = self.logs.next(resource, now) {
                match metrics::dispatch(otlp, &otlp.logs_path, &body) {
                    Ok(token) => self.logs_in_flight = Some(token),
                    Err(_) => self.logs.finish(None, None, now, random_unit()),
                }
            }
        }
        let hook = cfg.budgets.as_ref().and_then(|b| b.webhook.as_ref());
        if let (Some(w), Some(q), None) = (hook, self.webhook.as_mut(), self.webhook_in_flight) {
            if let Some(body) = q.next(now).map(str::to_owned) {
                let headers = w.request_headers(body.len());
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                match proxy_wasm::hostcalls::dispatch_http_call(
                    &w.cluster,
                    headers,
                    Some(body.as_bytes()),
                    vec![],
                    Duration::from_millis(w.timeout_ms),
                ) {
                    Ok(token) => self.webhook_in_flight = Some(token),
                    Err(status) => {
                        log(
                            LogLevel::Warn,
                            &format!(
                                "tollgate: budget webhook dispatch to cluster '{}' failed: {status:?}",
                                w.cluster
                            ),
                        );
                        q.dispatch_failed(now, random_unit());
                    }
                }
            }
        }
    }

    /// An HTTP callout answered: true when it was one of ours.
    pub fn on_response(&mut self, token: u32, num_headers: usize, body_size: usize) -> bool {
        if self.logs_in_flight == Some(token) {
            self.logs_in_flight = None;
            let a = Answer::read(num_headers, body_size);
            self.logs
                .finish(a.status, a.retry_after, now_ms(), random_unit());
            return true;
        }
        if self.webhook_in_flight == Some(token) {
            self.webhook_in_flight = None;
            let a = Answer::read(num_headers, body_size);
            if let Some(q) = self.webhook.as_mut() {
                q.finish(a.status, a.retry_after, now_ms(), random_unit());
            }
            return true;
        }
        false
    }

    /// Hand the counters' increments since the last call to Envoy.
    pub fn publish(&mut self, s: &Stats) {
        let (now, p) = (self.logs.stats, self.published_logs);
        s.alert_logs_exported
            .add(now.exported.saturating_sub(p.exported));
        s.alert_logs_dropped.add(
            (now.dropped_queue_full + now.dropped_failed)
                .saturating_sub(p.dropped_queue_full + p.dropped_failed),
        );
        self.published_logs = now;
        if let Some(q) = &self.webhook {
            let (now, p) = (q.stats, self.published_webhook);
            s.webhook_delivered
                .add(now.delivered.saturating_sub(p.delivered));
            s.webhook_retries.add(now.retries.saturating_sub(p.retries));
            s.webhook_dropped.add(
                (now.dropped_queue_full + now.dropped_failed)
                    .saturating_sub(p.dropped_queue_full + p.dropped_failed),
            );
            self.published_webhook = now;
        }
    }
}
