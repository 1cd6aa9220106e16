//! Budget alert webhooks: a JSON POST per threshold crossing to an Envoy cluster, from a bounded queue that
//! never blocks traffic. Pure: the host dispatches the HTTP callout, reports the answer, and ticks the queue.
//!
//! Configuration (`budgets.webhook`):
//!
//! ```json
//! {"cluster": "alert-hooks", "path": "/hooks/tollgate", "authority": "hooks.internal",
//!  "headers": {"authorization": "Bearer …"}, "timeout_ms": 2000, "max_queue": 100, "max_attempts": 5}
//! ```
//!
//! Delivery: one request in flight per VM; a failed one (no answer, 408, 429, 5xx) is retried after
//! `export::backoff_ms` (exponential from 500 ms, capped at 30 s, jittered, `Retry-After` honoured) up to
//! `max_attempts`, then dropped and counted; any other answer drops it at once. A full queue drops the new
//! alert and counts it. Every alert is also an OTLP log record, so a lost webhook is never the only trace.

use super::export::backoff_ms;
use super::logs::ThresholdEvent;
use crate::codec::json::write::Json as Out;
use std::collections::VecDeque;

/// A JSON number; NaN and infinities (which JSON cannot write) as null.
fn number(v: f64) -> Out {
    crate::codec::json::write::decimal(v).map_or(Out::Null, Out::Lit)
}

/// The POST body of a threshold crossing: the event's fields, and a `text` line for chat-style receivers.
pub fn payload(ev: &ThresholdEvent) -> String {
    let mut members = vec![
        ("event", Out::str(super::logs::EVENT_THRESHOLD)),
        ("text", Out::Str(ev.summary())),
        // Milliseconds: a JSON number in nanoseconds is past 2^53, which JavaScript readers round.
        (
            "time_unix_ms",
            Out::Lit((ev.time_unix_nano / 1_000_000).to_string()),
        ),
        ("rule", Out::str(ev.rule)),
        ("dimension", Out::str(ev.dimension)),
        ("subject", Out::str(ev.subject)),
        (
            "window",
            Out::obj([
                ("id", Out::str(ev.window_id)),
                ("start", Out::Lit(ev.window_start_s.to_string())),
                ("end", Out::Lit(ev.window_end_s.to_string())),
            ]),
        ),
        ("threshold", number(ev.threshold)),
        ("measure", Out::str(ev.measure)),
        ("usage", number(ev.usage)),
        ("limit", number(ev.limit)),
    ];
    if let Some(t) = ev.trace {
        members.push(("trace_id", Out::Str(crate::codec::hex::hex(&t.trace_id))));
        members.push(("span_id", Out::Str(crate::codec::hex::hex(&t.span_id))));
    }
    Out::Obj(
        members
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
    .text()
}

/// Counters the host publishes as Envoy stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    pub enqueued: u64,
    pub delivered: u64,
    pub retries: u64,
    /// The queue was full (receiver slow or down).
    pub dropped_queue_full: u64,
    /// Refused by the receiver, or still failing after `max_attempts`.
    pub dropped_failed: u64,
}

/// What a receiver's answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Back in the queue until its backoff has passed.
    Retry,
    Dropped,
}

/// `None` = no answer (timeout, reset, refused). 408, 429 and 5xx are worth another try; other 4xx never.
pub fn retryable(status: Option<u16>) -> Option<bool> {
    match status {
        Some(200..=299) => None,
        None | Some(408 | 429 | 500..=599) => Some(true),
        Some(_) => Some(false),
    }
}

struct Item {
    /// Order of arrival: of the alerts that are due, the oldest goes first.
    seq: u64,
    body: String,
    attempts: u32,
    not_before_ms: u64,
}

/// A bounded FIFO of alert bodies, one of them in flight at a time.
pub struct WebhookQueue {
    items: VecDeque<Item>,
    in_flight: Option<Item>,
    max_queue: usize,
    max_attempts: u32,
    pub stats: WebhookStats,
}

impl WebhookQueue {
    pub fn new(max_queue: usize, max_attempts: u32) -> WebhookQueue {
        WebhookQueue {
            items: VecDeque::new(),
            in_flight: None,
            max_queue: max_queue.max(1),
            max_attempts: max_attempts.max(1),
            stats: WebhookStats::default(),
        }
    }

    /// Alerts held, the one in flight included.
    pub fn len(&self) -> usize {
        self.items.len() + usize::from(self.in_flight.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Queue an alert; false (counted) when the queue is full.
    pub fn push(&mut self, body: String) -> bool {
        if self.len() >= self.max_queue {
            self.stats.dropped_queue_full += 1;
            return false;
        }
        self.items.push_back(Item {
            seq: self.stats.enqueued,
            body,
            attempts: 0,
            not_before_ms: 0,
        });
        self.stats.enqueued += 1;
        true
    }

    /// Start sending: the body of the oldest alert whose backoff has passed, or None (one is in flight, or
    /// none is due).
    pub fn next(&mut self, now_ms: u64) -> Option<&str> {
        if self.in_flight.is_none() {
            let due = self.items.iter().position(|i| i.not_before_ms <= now_ms)?;
            let mut item = self.items.remove(due)?;
            item.attempts = item.attempts.saturating_add(1);
            self.in_flight = Some(item);
        }
        self.in_flight.as_ref().map(|i| i.body.as_str())
    }

    /// When the host should tick again for an alert waiting out its backoff (None: nothing waits).
    pub fn next_due_ms(&self) -> Option<u64> {
        if self.in_flight.is_some() {
            return None;
        }
        self.items.iter().map(|i| i.not_before_ms).min()
    }

    /// Record the receiver's answer to the request in flight (`status` None: none came). `jitter` in [0, 1).
    pub fn finish(
        &mut self,
        status: Option<u16>,
        retry_after_s: Option<u64>,
        now_ms: u64,
        jitter: f64,
    ) -> Delivery {
        let Some(mut item) = self.in_flight.take() else {
            return Delivery::Dropped;
        };
        match retryable(status) {
            None => {
                self.stats.delivered += 1;
                Delivery::Delivered
            }
            Some(true) if item.attempts < self.max_attempts => {
                self.stats.retries += 1;
                item.not_before_ms =
                    now_ms.saturating_add(backoff_ms(item.attempts, retry_after_s, jitter));
                // Back in its place by arrival; while it waits, later alerts that are due go ahead.
                let at = self
                    .items
                    .iter()
                    .position(|i| i.seq > item.seq)
                    .unwrap_or(self.items.len());
                self.items.insert(at, item);
                Delivery::Retry
            }
            Some(_) => {
                self.stats.dropped_failed += 1;
                Delivery::Dropped
            }
        }
    }

    /// Envoy refused to dispatch the request (e.g. the cluster does not exist): an attempt that failed.
    pub fn dispatch_failed(&mut self, now_ms: u64, jitter: f64) -> Delivery {
        self.finish(None, None, now_ms, jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::super::logs::TraceRef;
    use super::*;
    use crate::budget::alerts::WebhookConfig;
    use crate::codec::json::strict::ConfigError;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> Result<WebhookConfig, ConfigError> {
        crate::codec::json::strict::read_json(&v, |v| WebhookConfig::read("budgets.webhook", v))
    }

    fn event() -> ThresholdEvent<'static> {
        ThresholdEvent {
            time_unix_nano: 1_772_334_000_123_456_789,
            rule: "rules[1]",
            dimension: "user",
            subject: "jane\"doe\n",
            window_id: "2026-W09",
            window_start_s: 1_771_804_800,
            window_end_s: 1_772_409_600,
            threshold: 0.8,
            measure: "tokens",
            usage: 80_000.0,
            limit: 100_000.0,
            trace: None,
        }
    }

    #[test]
    fn config_defaults_and_errors_name_the_key() {
        let c = cfg(json!({"cluster": "hooks", "headers": {"Authorization": "Bearer x"}})).unwrap();
        assert_eq!(
            (
                c.authority.as_str(),
                c.path.as_str(),
                c.timeout_ms,
                c.max_queue,
                c.max_attempts
            ),
            ("hooks", "/", 2000, 100, 5)
        );
        assert_eq!(c.headers, vec![("authorization".into(), "Bearer x".into())]);
        let h = c.request_headers(42);
        assert!(h.contains(&(":method", "POST".into())));
        assert!(h.contains(&("content-length", "42".into())));
        assert!(h.contains(&("authorization", "Bearer x".into())));
        let key = |v| cfg(v).unwrap_err().key;
        assert_eq!(key(json!({})), "budgets.webhook");
        assert_eq!(key(json!({"cluster": ""})), "budgets.webhook.cluster");
        assert_eq!(key(json!({"cluster": 5})), "budgets.webhook.cluster");
        assert_eq!(
            key(json!({"cluster": "c", "path": "hooks"})),
            "budgets.webhook.path"
        );
        assert_eq!(
            key(json!({"cluster": "c", "path": "/a b"})),
            "budgets.webhook.path"
        );
        assert_eq!(
            key(json!({"cluster": "c", "timeout_ms": 0})),
            "budgets.webhook.timeout_ms"
        );
        assert_eq!(
            key(json!({"cluster": "c", "max_queue": 10001})),
            "budgets.webhook.max_queue"
        );
        assert_eq!(
            key(json!({"cluster": "c", "max_attempts": -1})),
            "budgets.webhook.max_attempts"
        );
        assert_eq!(
            key(json!({"cluster": "c", "headers": {"Content-Type": "x"}})),
            "budgets.webhook.headers.Content-Type"
        );
        assert_eq!(
            key(json!({"cluster": "c", "headers": {"x-a": "1\r\nx-b: 2"}})),
            "budgets.webhook.headers.x-a"
        );
        assert_eq!(
            key(json!({"cluster": "c", "headers": {"bad name": "1"}})),
            "budgets.webhook.headers.bad name"
        );
        assert_eq!(
            key(json!({"cluster": "c", "headers": {"x": 1}})),
            "budgets.webhook.headers.x"
        );
        assert_eq!(
            key(json!({"cluster": "c", "retries": 1})),
            "budgets.webhook.retries"
        );
    }

    #[test]
    fn payload_is_json_with_every_field() {
        let mut ev = event();
        let v: serde_json::Value = serde_json::from_str(&payload(&ev)).unwrap();
        assert_eq!(
            v,
            json!({
                "event": "tollgate.budget.threshold",
                "text": ev.summary(),
                "time_unix_ms": 1_772_334_000_123u64,
                "rule": "rules[1]", "dimension": "user", "subject": "jane\"doe\n",
                "window": {"id": "2026-W09", "start": 1_771_804_800u64, "end": 1_772_409_600u64},
                "threshold": 0.8, "measure": "tokens", "usage": 80000, "limit": 100000
            })
        );
        ev.usage = f64::NAN;
        ev.limit = f64::INFINITY;
        ev.threshold = 1.0;
        ev.trace = Some(TraceRef {
            trace_id: [0xab; 16],
            span_id: [1; 8],
            flags: 1,
        });
        let v: serde_json::Value = serde_json::from_str(&payload(&ev)).unwrap();
        assert_eq!((&v["usage"], &v["limit"]), (&json!(null), &json!(null)));
        assert_eq!(v["threshold"], json!(1));
        assert_eq!(v["trace_id"], json!("ab".repeat(16)));
        assert_eq!(v["span_id"], json!("0101010101010101"));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let mut q = WebhookQueue::new(2, 3);
        assert!(q.push("a".into()) && q.push("b".into()));
        assert!(!q.push("c".into()));
        assert_eq!(q.next(0), Some("a"));
        // The alert in flight still takes a slot.
        assert!(!q.push("d".into()));
        assert_eq!(q.stats.dropped_queue_full, 2);
        assert_eq!(q.finish(Some(204), None, 0, 0.0), Delivery::Delivered);
        assert!(q.push("e".into()));
        assert_eq!(q.next(0), Some("b"));
        assert_eq!(q.next(0), Some("b"), "one in flight at a time");
        assert_eq!(q.finish(Some(200), None, 0, 0.0), Delivery::Delivered);
        assert_eq!(q.next(0), Some("e"));
        assert_eq!((q.stats.enqueued, q.stats.delivered, q.len()), (3, 2, 1));
    }

    #[test]
    fn failures_retry_with_backoff_in_order_then_drop() {
        let mut q = WebhookQueue::new(10, 3);
        q.push("first".into());
        q.push("second".into());
        // A receiver that is down: no answer. Backoff for attempt 1 without jitter: 250 ms.
        assert_eq!(q.next(1_000), Some("first"));
        assert_eq!(q.finish(None, None, 1_000, 0.0), Delivery::Retry);
        // While the first waits, the second (due) goes ahead.
        assert_eq!(q.next_due_ms(), Some(0));
        assert_eq!(q.next(1_100), Some("second"));
        // Retry-After (2 s) beats the second's own backoff (375 ms with this jitter).
        assert_eq!(q.finish(Some(503), Some(2), 1_100, 0.5), Delivery::Retry);
        assert_eq!(q.next(1_200), None, "both wait out their backoff");
        assert_eq!(q.next_due_ms(), Some(1_250));
        assert_eq!(q.next(1_250), Some("first"));
        assert_eq!(q.finish(Some(500), None, 1_250, 0.0), Delivery::Retry);
        assert_eq!(q.next_due_ms(), Some(1_750), "attempt 2: 500 ms");
        // Third and last attempt of the first fails: dropped and counted.
        assert_eq!(q.next(1_750), Some("first"));
        assert_eq!(q.finish(Some(429), None, 1_750, 0.0), Delivery::Dropped);
        assert_eq!(q.next(3_099), None);
        assert_eq!(q.next(3_100), Some("second"));
        assert_eq!(q.finish(Some(200), None, 3_100, 0.0), Delivery::Delivered);
        assert!(q.is_empty());
        assert_eq!(
            q.stats,
            WebhookStats {
                enqueued: 2,
                delivered: 1,
                retries: 3,
                dropped_queue_full: 0,
                dropped_failed: 1,
            }
        );
    }

    #[test]
    fn retried_alerts_keep_their_place_by_arrival() {
        let mut q = WebhookQueue::new(10, 5);
        for b in ["a", "b", "c"] {
            q.push(b.into());
        }
        assert_eq!(q.next(0), Some("a"));
        q.finish(None, None, 0, 0.0);
        assert_eq!(q.next(0), Some("b"));
        q.finish(None, None, 0, 0.0);
        // Both due again: the older first, then the younger, then the one never tried.
        let order: Vec<String> = (0..3)
            .map(|_| {
                let b = q.next(10_000).unwrap().to_owned();
                q.finish(Some(200), None, 10_000, 0.0);
                b
            })
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn refusals_drop_at_once_and_dispatch_failures_retry() {
        let mut q = WebhookQueue::new(10, 5);
        q.push("a".into());
        q.next(0);
        assert_eq!(q.finish(Some(400), None, 0, 0.0), Delivery::Dropped);
        q.push("b".into());
        q.next(0);
        assert_eq!(q.dispatch_failed(0, 0.0), Delivery::Retry);
        assert_eq!(
            q.finish(Some(200), None, 0, 0.0),
            Delivery::Dropped,
            "nothing in flight"
        );
        for (s, want) in [
            (Some(201), None),
            (Some(404), Some(false)),
            (Some(408), Some(true)),
            (Some(502), Some(true)),
            (None, Some(true)),
        ] {
            assert_eq!(retryable(s), want, "{s:?}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut q = WebhookQueue::new(1, 20);
        q.push("x".into());
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            q.next(now).unwrap();
            q.finish(None, None, now, 0.0);
            let due = q.next_due_ms().unwrap();
            waits.push(due - now);
            now = due;
        }
        assert_eq!(
            waits,
            [250, 500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000, 15_000]
        );
    }
}
