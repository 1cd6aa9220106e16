//! Budget threshold alerts for one exchange: the thresholds its commit crossed (`ledger::Fired`, each
//! crossed by this commit and no other, across workers) become a `tollgate.budget.threshold` OTLP log
//! record, a counter, and with `budgets.webhook` a queued POST. The host delivers both without blocking
//! traffic.

use super::host::{Counter, Host, Level};
use crate::budget::ledger::Fired;
use crate::budget::thresholds::fraction;
use crate::budget::BudgetConfig;
use crate::call::Call;
use crate::telemetry::logs::{self, ThresholdEvent, TraceRef};
use crate::telemetry::webhook;

/// The subject of a counter key (`tollgate.budget.v1/<fingerprint>/<subject>`).
fn subject_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// Report the thresholds one call's commit crossed.
pub fn report<H: Host>(host: &mut H, b: &BudgetConfig, call: &Call, fired: &[Fired]) {
    let now_ns = host.now_ns();
    let trace = Some(TraceRef {
        trace_id: call.ids.trace_id,
        span_id: call.ids.span_id,
        flags: u8::from(call.ids.sampled),
    });
    for f in fired {
        let Some(rule) = b.rules.get(f.rule) else {
            continue;
        };
        let bounds = f.window.bounds(f.window_start);
        let window_id = f.window.key(f.window_start);
        for c in &f.crossings {
            let ev = ThresholdEvent {
                time_unix_nano: now_ns,
                rule: &rule.name,
                dimension: b.dimension_name(rule.dimension),
                subject: subject_of(&f.key),
                window_id: &window_id,
                window_start_s: bounds.start,
                window_end_s: bounds.end,
                threshold: fraction(c.threshold_ppm),
                measure: c.measure.as_str(),
                usage: c.measure.user_value(c.used),
                limit: c.measure.user_value(c.limit),
                trace,
            };
            host.count(Counter::BudgetThresholds, 1);
            host.log(Level::Info, &format!("tollgate: {}", ev.summary()));
            host.export_log(logs::threshold_record(&ev));
            if b.webhook.is_some() {
                host.post_alert(webhook::payload(&ev));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::subject_of;

    #[test]
    fn the_subject_is_the_last_part_of_the_key() {
        assert_eq!(subject_of("tollgate.budget.v1/0123abcd/team-a"), "team-a");
        assert_eq!(
            subject_of("tollgate.budget.v1/0123abcd/~overflow"),
            "~overflow"
        );
    }
}
