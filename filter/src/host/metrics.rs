//! OTLP export plumbing shared by spans and metrics (dispatch with headers and optional gzip, reading the
//! collector's answer), and the per-VM metrics exporter driven by the root's tick.

use super::abi;
use super::stats::Stats;
use super::{log, now_ns, random_unit};
use crate::config::{Compression, Config, Otlp};
use crate::telemetry::export::{self, classify, Outcome, Resource};
use crate::telemetry::metrics::{Aggregator, MetricsStats};
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

pub(super) fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// Send one OTLP/HTTP export request to the collector cluster; the answer arrives in the root's
/// `on_http_call_response` with the returned token. Never blocks traffic: a failure is returned.
pub(super) fn dispatch(otlp: &Otlp, path: &str, body: &[u8]) -> Result<u32, Status> {
    let ua = concat!("tollgate/", env!("CARGO_PKG_VERSION"));
    let gz = match otlp.compression {
        Compression::Gzip => export::gzip(body),
        Compression::None => None,
    };
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", otlp.authority.as_str()),
        ("content-type", "application/x-protobuf"),
        ("user-agent", ua),
    ];
    if gz.is_some() {
        headers.push(("content-encoding", "gzip"));
    }
    headers.extend(otlp.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    proxy_wasm::hostcalls::dispatch_http_call(
        &otlp.cluster,
        headers,
        Some(gz.as_deref().unwrap_or(body)),
        vec![],
        Duration::from_millis(otlp.timeout_ms),
    )
}

/// The collector's `partial_success`, when it rejected something: (rejected count, its message).
pub(super) fn partial_success(body: &[u8]) -> Option<(i64, std::borrow::Cow<'_, str>)> {
    crate::codec::proto::partial_success(body).filter(|(n, _)| *n > 0)
}

/// The collector's answer to an export request, read inside `on_http_call_response`.
pub(super) struct Answer {
    /// None: no response at all (timeout, reset, connection failure).
    pub status: Option<u16>,
    /// `Retry-After` in seconds (the delay-seconds form; an HTTP-date falls back to our own backoff).
    pub retry_after: Option<u64>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn read(num_headers: usize, body_size: usize) -> Answer {
        let headers = if num_headers == 0 {
            crate::codec::headers::Headers::default()
        } else {
            abi::headers(MapType::HttpCallResponseHeaders)
        };
        let status = headers
            .get_str(":status")
            .and_then(|s| s.parse::<u16>().ok());
        let retry_after = headers
            .get_str("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok());
        // The body only matters for a partial success; a huge one is not read.
        let body = if body_size > 0 && body_size <= 64 * 1024 {
            abi::buffer(BufferType::HttpCallResponseBody, 0, body_size)
        } else {
            Vec::new()
        };
        Answer {
            status,
            retry_after,
            body,
        }
    }

    pub fn outcome(&self) -> Outcome {
        classify(self.status)
    }
}

/// Closes the metrics interval, sends it, retries with backoff, and publishes the outcome as Envoy stats.
pub(super) struct MetricsExporter {
    pub aggregator: Rc<RefCell<Aggregator>>,
    in_flight: Option<u32>,
    next_attempt_ms: u64,
    last_close_ms: u64,
    published: MetricsStats,
}

impl MetricsExporter {
    pub fn new(max_series: usize) -> MetricsExporter {
        MetricsExporter {
            aggregator: Rc::new(RefCell::new(Aggregator::new(max_series, now_ns()))),
            in_flight: None,
            next_attempt_ms: 0,
            last_close_ms: now_ms(),
            published: MetricsStats::default(),
        }
    }

    pub fn tick(&mut self, cfg: &Config, resource: &Resource) {
        let Some(otlp) = cfg.otlp.as_ref().filter(|o| o.metrics) else {
            return;
        };
        let now = now_ms();
        let mut agg = self.aggregator.borrow_mut();
        agg.set_max_series(otlp.metrics_max_series);
        if now.saturating_sub(self.last_close_ms) >= otlp.metrics_interval_ms {
            self.last_close_ms = now;
            agg.close_interval(resource, now_ns());
        }
        if self.in_flight.is_some() || now < self.next_attempt_ms {
            return;
        }
        let Some(body) = agg.next_request() else {
            return;
        };
        match dispatch(otlp, &otlp.metrics_path, body) {
            Ok(token) => self.in_flight = Some(token),
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "tollgate: OTLP metrics dispatch to cluster '{}' failed: {status:?}",
                        otlp.cluster
                    ),
                );
                agg.finish(Outcome::Retry);
                let attempts = agg.attempts().max(1);
                self.next_attempt_ms = now + export::backoff_ms(attempts, None, random_unit());
            }
        }
    }

    /// Handle the answer to a metrics export; false if `token` is not ours.
    pub fn on_response(&mut self, token: u32, num_headers: usize, body_size: usize) -> bool {
        if self.in_flight != Some(token) {
            return false;
        }
        self.in_flight = None;
        let answer = Answer::read(num_headers, body_size);
        let mut agg = self.aggregator.borrow_mut();
        match agg.finish(answer.outcome()) {
            Outcome::Success => {
                if let Some((rejected, message)) = partial_success(&answer.body) {
                    agg.rejected(u64::try_from(rejected).unwrap_or(0));
                    log(
                        LogLevel::Warn,
                        &format!(
                            "tollgate: collector rejected {rejected} metric data points: {message}"
                        ),
                    );
                }
            }
            Outcome::Retry => {
                self.next_attempt_ms = now_ms()
                    + export::backoff_ms(agg.attempts(), answer.retry_after, random_unit());
            }
            Outcome::Fail => log(
                LogLevel::Warn,
                &format!(
                    "tollgate: OTLP metrics export failed (status {:?}); data points dropped",
                    answer.status
                ),
            ),
        }
        true
    }

    pub fn publish(&mut self, s: &Stats) {
        let now = self.aggregator.borrow().stats;
        let p = self.published;
        s.metrics_exported
            .add(now.exported_points.saturating_sub(p.exported_points));
        s.metrics_dropped
            .add(now.dropped_points.saturating_sub(p.dropped_points));
        s.metrics_rejected
            .add(now.rejected_points.saturating_sub(p.rejected_points));
        s.metrics_export_retries
            .add(now.retries.saturating_sub(p.retries));
        s.metrics_overflow
            .add(now.overflow.saturating_sub(p.overflow));
        self.published = now;
    }
}
