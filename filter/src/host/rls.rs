#![allow(dead_code)]
// Wired into the exchange once the budgets config and seam land (see README "Budgets across replicas").
//! `budgets.backend = "rls"`: one exchange's calls to the rate-limit service. The admission call is made from
//! the request body callback, which returns `Action::Pause`; Envoy answers into this exchange's
//! `on_grpc_call_response`, which resumes the request or sends the refusal. The usage debit is made after the
//! response and nobody waits for it: Envoy runs every Wasm gRPC call on the root context, so it completes
//! even though the exchange ends right after dispatching it.

use super::abi;
use super::stats::RlsStats;
use crate::budget::{Amount, BudgetConfig, RlsConfig};
use crate::rls::{self, Admission, Counter, FailureMode};
use proxy_wasm::types::BufferType;
use std::time::Duration;

/// What the calls need, prepared once at configure time.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The serialized `GrpcService` naming the cluster and `:authority` (ASCII, hence UTF-8).
    pub upstream: String,
    pub domain: String,
    pub timeout: Duration,
    pub failure_mode: FailureMode,
}

impl Settings {
    pub fn from_config(c: &RlsConfig) -> Settings {
        Settings::new(
            &c.cluster,
            &c.authority,
            &c.domain,
            c.timeout_ms,
            c.failure_mode,
        )
    }

    pub fn new(
        cluster: &str,
        authority: &str,
        domain: &str,
        timeout_ms: u64,
        failure_mode: FailureMode,
    ) -> Settings {
        let bytes = rls::grpc_service(cluster, authority);
        // Non-UTF-8 only for names of 128+ bytes (multi-byte varints); the bare cluster name then.
        let upstream = String::from_utf8(bytes).unwrap_or_else(|_| cluster.to_owned());
        Settings {
            upstream,
            domain: domain.to_owned(),
            timeout: Duration::from_millis(timeout_ms),
            failure_mode,
        }
    }
}

/// The rate-limit state of one exchange.
#[derive(Debug, Default)]
pub struct Gate {
    /// The admission call in flight.
    token: Option<u32>,
    /// The counters this request was admitted against (debited after the response).
    counters: Vec<Counter>,
    /// The admission call debited `rls::ADMISSION_HITS` from `counters`.
    admitted: bool,
    /// What the service last said (for the remaining-tokens headers and the span).
    pub decision: Option<rls::Decision>,
}

impl Gate {
    /// Ask the service whether `counters` have a token left. `Ok(())`: the call is in flight and the body
    /// callback must return `Action::Pause`; `Err(admission)`: decided now (no counters, or Envoy refused
    /// the call, which is a failure like any other).
    pub fn start(
        &mut self,
        s: &Settings,
        counters: Vec<Counter>,
        stats: &RlsStats,
    ) -> Result<(), Admission> {
        if counters.is_empty() {
            return Err(Admission::Admit(rls::Decision::default()));
        }
        let msg = rls::request(&s.domain, &counters, rls::ADMISSION_HITS);
        self.counters = counters;
        match abi::grpc_call(&s.upstream, rls::SERVICE, rls::METHOD, &msg, s.timeout) {
            Some(token) => {
                self.token = Some(token);
                Ok(())
            }
            None => Err(self.failed(s.failure_mode, stats)),
        }
    }

    fn failed(&mut self, mode: FailureMode, stats: &RlsStats) -> Admission {
        match mode {
            FailureMode::Open => {
                stats.failed_open.add(1);
                Admission::FailOpen
            }
            FailureMode::Closed => {
                stats.failed_closed.add(1);
                Admission::FailClosed
            }
        }
    }

    /// Whether `token` is this exchange's admission call.
    pub fn waiting_for(&self, token: u32) -> bool {
        self.token == Some(token)
    }

    /// The answer to the admission call (`status_code` 0 is OK, else the gRPC status: a timeout is
    /// DEADLINE_EXCEEDED, an unreachable service UNAVAILABLE).
    pub fn answer(
        &mut self,
        s: &Settings,
        status_code: u32,
        size: usize,
        stats: &RlsStats,
    ) -> Admission {
        self.token = None;
        let body = if status_code == rls::GRPC_OK && size > 0 {
            abi::buffer(BufferType::GrpcReceiveBuffer, 0, size)
        } else {
            Vec::new()
        };
        let a = rls::admission(status_code, &body, &self.counters, s.failure_mode);
        match a {
            Admission::Admit(d) => {
                stats.checks.add(1);
                self.admitted = true;
                self.decision = Some(d);
            }
            Admission::Deny(d) => {
                stats.checks.add(1);
                stats.denied.add(1);
                self.decision = Some(d);
            }
            Admission::FailOpen => stats.failed_open.add(1),
            Admission::FailClosed => stats.failed_closed.add(1),
        }
        a
    }

    /// After the response (or an abort): debit the exact usage less the admission hit, one call per kind
    /// of limit. A request admitted while the service was failing is debited in full, so what it used still
    /// counts once the service is back.
    pub fn debit(&mut self, s: &Settings, used: &Amount, stats: &RlsStats) {
        let counters = std::mem::take(&mut self.counters);
        if counters.is_empty() || self.token.is_some() {
            return;
        }
        for (hits, of_kind) in rls::debits(&counters, used, self.admitted) {
            let msg = rls::request(&s.domain, &of_kind, hits);
            match abi::grpc_call(&s.upstream, rls::SERVICE, rls::METHOD, &msg, s.timeout) {
                Some(_) => stats.debits.add(1),
                None => stats.debit_failures.add(1),
            }
        }
    }
}

/// Request body, `backend: "rls"`: start the admission call for `tenant` on the counters `specs`. `Ok(())`: return
/// `Action::Pause` and wait for `answer`; `Err(admission)`: decided now, `settle` it.
pub fn admit(
    budgets: &BudgetConfig,
    gate: &mut Gate,
    tenant: &str,
    specs: &[crate::budget::CounterSpec],
    stats: &RlsStats,
) -> Result<(), Admission> {
    let Some(cfg) = budgets.rls.as_ref() else {
        return Err(Admission::FailOpen);
    };
    let counters = rls::counters(&budgets.rules, specs, tenant);
    gate.start(&Settings::from_config(cfg), counters, stats)
}

/// `on_grpc_call_response`: the admission for this exchange's call, None for any other token.
pub fn answer(
    budgets: &BudgetConfig,
    gate: &mut Gate,
    token: u32,
    status_code: u32,
    size: usize,
    stats: &RlsStats,
) -> Option<Admission> {
    let cfg = budgets.rls.as_ref()?;
    if !gate.waiting_for(token) {
        return None;
    }
    Some(gate.answer(&Settings::from_config(cfg), status_code, size, stats))
}

/// `on_log`: debit what the call used.
pub fn commit(budgets: &BudgetConfig, gate: &mut Gate, used: &Amount, stats: &RlsStats) {
    if let Some(cfg) = budgets.rls.as_ref() {
        gate.debit(&Settings::from_config(cfg), used, stats);
    }
}
