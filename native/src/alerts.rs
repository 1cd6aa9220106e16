//! Budget alerts of the native build: the OTLP log records (the core's `LogQueue`) to the collector's
//! `otlp.logs_path`, and the webhook bodies (the core's `WebhookQueue`) to `budgets.webhook`'s cluster, as the
//! Wasm build sends them (filter/src/host/alerts.rs).
//!
//! One pair of queues per filter configuration, shared by its workers: a worker pushes under a mutex that the
//! main thread holds only to take the next request out or to record an answer, and wakes the main thread. The
//! main thread sends from the queues on each tick, on a wake-up and after each answer, with config-level
//! callouts, one request in flight per queue. Retries, backoff, drops and their counts are the core queues'.
//! Both queues are bounded as one Wasm VM's are (`MAX_LOGS`, `budgets.webhook.max_queue`).

use crate::core::{Config, LogQueue, LogRecord, LogStats, Resource, WebhookQueue, WebhookStats};
use crate::export::{self, Answer, Io};
use crate::stats::{Own, Totals};
use std::sync::{Mutex, MutexGuard};

/// Log records held while the collector is slow or down (the Wasm build's bound per VM).
pub const MAX_LOGS: usize = 1_000;

pub struct Alerts {
    inner: Mutex<Inner>,
}

struct Inner {
    logs: LogQueue,
    logs_in_flight: Option<u64>,
    webhook: Option<WebhookQueue>,
    webhook_in_flight: Option<u64>,
    published_logs: LogStats,
    published_webhook: WebhookStats,
}

impl Alerts {
    pub fn new(cfg: &Config) -> Alerts {
        let webhook = cfg
            .budgets
            .as_ref()
            .and_then(|b| b.webhook.as_ref())
            .map(|w| WebhookQueue::new(w.max_queue, w.max_attempts));
        Alerts {
            inner: Mutex::new(Inner {
                logs: LogQueue::new(MAX_LOGS),
                logs_in_flight: None,
                webhook,
                webhook_in_flight: None,
                published_logs: LogStats::default(),
                published_webhook: WebhookStats::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every operation on the queues is whole; a poisoned lock still guards consistent queues.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue an alert's log record (worker). True when it was queued: the caller wakes the main thread.
    pub fn push_log(&self, cfg: &Config, record: LogRecord) -> bool {
        cfg.otlp.is_some() && self.lock().logs.push(record)
    }

    /// Queue an alert's webhook body (worker). True when it was queued: the caller wakes the main thread.
    pub fn push_webhook(&self, body: String) -> bool {
        self.lock().webhook.as_mut().is_some_and(|q| q.push(body))
    }

    /// Send what is due (main thread). `resource` is the one the log records are exported under. The lock
    /// is not held while a request is compressed and dispatched, so a worker pushing an alert never waits for
    /// that: only the main thread takes requests out, and Envoy never answers a config callout inside the
    /// dispatch (`DynamicModuleHttpFilterConfig::sendHttpCallout` registers the callout after
    /// `AsyncClient::send` returns, and an answer that came inline is dropped and the dispatch refused).
    pub fn flush(&self, cfg: &Config, resource: &Resource, io: &mut Io) {
        let now = io.now_ns / 1_000_000;
        if let Some(otlp) = cfg.otlp.as_ref() {
            let body = {
                let mut a = self.lock();
                match a.logs_in_flight {
                    None => a.logs.next(resource, now),
                    Some(_) => None,
                }
            };
            if let Some(body) = body {
                let sent = export::dispatch(io.transport, otlp, &otlp.logs_path, &body);
                let mut a = self.lock();
                match sent {
                    Ok(id) => a.logs_in_flight = Some(id),
                    Err(r) => {
                        (io.log)(format!(
                            "tollgate: budget alert log export to cluster '{}' failed (http_callout_init_result {r})",
                            otlp.cluster
                        ));
                        a.logs.finish(None, None, now, (io.jitter)());
                    }
                }
            }
        }
        if let Some(w) = cfg.budgets.as_ref().and_then(|b| b.webhook.as_ref()) {
            let body = {
                let mut a = self.lock();
                let idle = a.webhook_in_flight.is_none();
                a.webhook
                    .as_mut()
                    .filter(|_| idle)
                    .and_then(|q| q.next(now).map(str::to_owned))
            };
            if let Some(body) = body {
                let headers = w.request_headers(body.len());
                let headers: Vec<(&str, &[u8])> =
                    headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
                let sent = io
                    .transport
                    .send(&w.cluster, &headers, body.as_bytes(), w.timeout_ms);
                let mut a = self.lock();
                match sent {
                    Ok(id) => a.webhook_in_flight = Some(id),
                    Err(r) => {
                        (io.log)(format!(
                            "tollgate: budget webhook dispatch to cluster '{}' failed (http_callout_init_result {r})",
                            w.cluster
                        ));
                        if let Some(q) = a.webhook.as_mut() {
                            q.dispatch_failed(now, (io.jitter)());
                        }
                    }
                }
            }
        }
    }

    /// Callout `id` was answered (main thread): false when it was not an alert's.
    pub fn on_answer(&self, id: u64, answer: &Answer, io: &mut Io) -> bool {
        let now = io.now_ns / 1_000_000;
        let mut a = self.lock();
        if a.logs_in_flight == Some(id) {
            a.logs_in_flight = None;
            a.logs
                .finish(answer.status, answer.retry_after, now, (io.jitter)());
            return true;
        }
        if a.webhook_in_flight == Some(id) {
            a.webhook_in_flight = None;
            if let Some(q) = a.webhook.as_mut() {
                q.finish(answer.status, answer.retry_after, now, (io.jitter)());
            }
            return true;
        }
        false
    }

    /// Move the counters' increments since the last call into `totals` (main thread).
    pub fn drain_stats(&self, totals: &mut Totals) {
        let mut a = self.lock();
        let (now, p) = (a.logs.stats, a.published_logs);
        totals.grew(Own::AlertLogsExported, now.exported, p.exported);
        totals.grew(
            Own::AlertLogsDropped,
            now.dropped_queue_full + now.dropped_failed,
            p.dropped_queue_full + p.dropped_failed,
        );
        a.published_logs = now;
        if let Some(now) = a.webhook.as_ref().map(|q| q.stats) {
            let p = a.published_webhook;
            totals.grew(Own::WebhookDelivered, now.delivered, p.delivered);
            totals.grew(Own::WebhookRetries, now.retries, p.retries);
            totals.grew(
                Own::WebhookDropped,
                now.dropped_queue_full + now.dropped_failed,
                p.dropped_queue_full + p.dropped_failed,
            );
            a.published_webhook = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::Recorder;
    use crate::stats::Stat;
    use tollgate::telemetry::logs::{threshold_record, ThresholdEvent};

    fn cfg() -> Config {
        Config::parse(
            br#"{"service_name":"gw","otlp":{"cluster":"otel","authority":"collector"},
                "tenant":{"header":"x-tenant"},
                "budgets":{"rules":[{"tenant":"*","window":"1h","tokens":10,"thresholds":[0.5]}],
                  "webhook":{"cluster":"hooks","path":"/hook","authority":"hooks.internal",
                    "headers":{"authorization":"Bearer t"},"timeout_ms":700,"max_queue":2,"max_attempts":2}}}"#,
        )
        .unwrap()
    }

    fn record() -> LogRecord {
        threshold_record(&ThresholdEvent {
            time_unix_nano: 1,
            rule: "rules[0]",
            dimension: "tenant",
            subject: "a",
            window_id: "w",
            window_start_s: 0,
            window_end_s: 3600,
            threshold: 0.5,
            measure: "tokens",
            usage: 5.0,
            limit: 10.0,
            trace: None,
        })
    }

    fn run<T>(t: &mut Recorder, now_s: u64, f: impl FnOnce(&mut Io) -> T) -> T {
        f(&mut Io {
            now_ns: now_s * 1_000_000_000,
            jitter: &mut || 0.0,
            transport: t,
            log: &mut |_| {},
        })
    }

    fn drained(a: &Alerts) -> Totals {
        let mut t = Totals::new(0);
        a.drain_stats(&mut t);
        t
    }

    fn n(t: &Totals, o: Own) -> u64 {
        t.counters[Stat::Own(o).index()]
    }

    #[test]
    fn log_records_go_to_the_logs_path_one_request_at_a_time() {
        let cfg = cfg();
        let res = crate::core::export::resource("gw", "i-1", &cfg.resource);
        let a = Alerts::new(&cfg);
        assert!(a.push_log(&cfg, record()));
        let mut t = Recorder::default();
        run(&mut t, 1, |io| a.flush(&cfg, &res, io));
        assert_eq!(t.sent.len(), 1);
        assert_eq!(t.sent[0].0, "otel");
        assert!(t.sent[0]
            .1
            .contains(&(":path".to_string(), b"/v1/logs".to_vec())));
        // A second record waits for the answer to the first request.
        assert!(a.push_log(&cfg, record()));
        run(&mut t, 1, |io| a.flush(&cfg, &res, io));
        assert_eq!(t.sent.len(), 1);
        let ok = Answer {
            status: Some(200),
            ..Answer::default()
        };
        assert!(run(&mut t, 1, |io| a.on_answer(1, &ok, io)));
        assert!(
            !run(&mut t, 1, |io| a.on_answer(1, &ok, io)),
            "answered once"
        );
        run(&mut t, 1, |io| a.flush(&cfg, &res, io));
        assert_eq!(t.sent.len(), 2);
        assert!(run(&mut t, 1, |io| a.on_answer(2, &ok, io)));
        let s = drained(&a);
        assert_eq!(n(&s, Own::AlertLogsExported), 2);
        assert_eq!(n(&s, Own::AlertLogsDropped), 0);
        assert_eq!(n(&drained(&a), Own::AlertLogsExported), 0, "published once");
    }

    #[test]
    fn webhooks_carry_their_headers_retry_and_drop_as_the_core_decides() {
        let cfg = cfg();
        let res = crate::core::export::resource("gw", "i-1", &cfg.resource);
        let a = Alerts::new(&cfg);
        assert!(a.push_webhook("{\"a\":1}".into()));
        assert!(a.push_webhook("{\"b\":2}".into()));
        assert!(!a.push_webhook("{\"c\":3}".into()), "max_queue 2");
        let mut t = Recorder::default();
        run(&mut t, 10, |io| a.flush(&cfg, &res, io));
        assert_eq!(t.sent.len(), 1);
        let (cluster, headers, body, timeout) = &t.sent[0];
        assert_eq!(
            (cluster.as_str(), body.as_slice(), *timeout),
            ("hooks", b"{\"a\":1}".as_slice(), 700)
        );
        for h in [
            (":method", "POST"),
            (":path", "/hook"),
            (":authority", "hooks.internal"),
            ("content-type", "application/json"),
            ("authorization", "Bearer t"),
        ] {
            assert!(
                headers.contains(&(h.0.to_string(), h.1.as_bytes().to_vec())),
                "{h:?}"
            );
        }
        // 503: retried after the backoff; meanwhile the next alert goes.
        let busy = Answer {
            status: Some(503),
            ..Answer::default()
        };
        assert!(run(&mut t, 10, |io| a.on_answer(1, &busy, io)));
        run(&mut t, 10, |io| a.flush(&cfg, &res, io));
        assert_eq!(t.sent.len(), 2);
        assert_eq!(t.sent[1].2, b"{\"b\":2}");
        let ok = Answer {
            status: Some(204),
            ..Answer::default()
        };
        assert!(run(&mut t, 10, |io| a.on_answer(2, &ok, io)));
        // The retry, after its backoff: a second failure is its last attempt (max_attempts 2).
        run(&mut t, 100, |io| a.flush(&cfg, &res, io));
        assert_eq!(t.sent.len(), 3);
        assert_eq!(t.sent[2].2, b"{\"a\":1}");
        assert!(run(&mut t, 100, |io| a.on_answer(
            3,
            &Answer::default(),
            io
        )));
        let s = drained(&a);
        assert_eq!(n(&s, Own::WebhookDelivered), 1);
        assert_eq!(n(&s, Own::WebhookRetries), 1);
        assert_eq!(n(&s, Own::WebhookDropped), 2, "one queue full, one failed");
    }

    #[test]
    fn a_refused_dispatch_counts_as_a_failed_attempt() {
        let cfg = cfg();
        let res = crate::core::export::resource("gw", "i-1", &cfg.resource);
        let a = Alerts::new(&cfg);
        a.push_webhook("x".into());
        let mut t = Recorder {
            refuse: Some(1),
            ..Recorder::default()
        };
        run(&mut t, 1, |io| a.flush(&cfg, &res, io));
        run(&mut t, 100, |io| a.flush(&cfg, &res, io));
        assert_eq!(n(&drained(&a), Own::WebhookDropped), 1);
    }

    #[test]
    fn without_otlp_or_a_webhook_nothing_is_queued() {
        let cfg = Config::parse(br#"{"service_name":"gw"}"#).unwrap();
        let a = Alerts::new(&cfg);
        assert!(!a.push_log(&cfg, record()));
        assert!(!a.push_webhook("x".into()));
    }
}
