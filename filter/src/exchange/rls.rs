//! `budgets.backend = "rls"`: one exchange's calls to the rate-limit service. The admission call is made from
//! the request body callback, which then pauses the request; the answer comes back to the exchange
//! (`on_grpc_answer`), which resumes the request or sends the refusal. The usage debit is made after the
//! response and nobody waits for it: in proxy-wasm Envoy runs every gRPC call on the root context, so it
//! completes even though the exchange ends right after dispatching it. The protocol is `budget::rls`.

use super::host::{Counter, GrpcCall, Host};
use crate::budget::rls::{self, Admission, FailureMode};
use crate::budget::{Amount, BudgetConfig, CounterSpec, RlsConfig};

/// The rate-limit state of one exchange.
#[derive(Debug, Default)]
pub struct Gate {
    /// The admission call in flight.
    token: Option<u64>,
    /// The counters this request was admitted against (debited after the response).
    counters: Vec<rls::Counter>,
    /// The admission call debited `rls::ADMISSION_HITS` from `counters`.
    admitted: bool,
}

/// The call carrying `message` to the service `c` names.
fn call<'a>(c: &'a RlsConfig, message: &'a [u8]) -> GrpcCall<'a> {
    GrpcCall {
        cluster: &c.cluster,
        authority: &c.authority,
        service: rls::SERVICE,
        method: rls::METHOD,
        message,
        timeout_ms: c.timeout_ms,
    }
}

fn failed<H: Host>(host: &mut H, mode: FailureMode) -> Admission {
    match mode {
        FailureMode::Open => {
            host.count(Counter::RlsFailedOpen, 1);
            Admission::FailOpen
        }
        FailureMode::Closed => {
            host.count(Counter::RlsFailedClosed, 1);
            Admission::FailClosed
        }
    }
}

impl Gate {
    /// Ask the service whether `counters` have a token left. `Ok(())`: the call is in flight and the body
    /// callback pauses; `Err(admission)`: decided now (no counters, or the proxy refused the call, which
    /// is a failure like any other).
    fn start<H: Host>(
        &mut self,
        host: &mut H,
        c: &RlsConfig,
        counters: Vec<rls::Counter>,
    ) -> Result<(), Admission> {
        if counters.is_empty() {
            return Err(Admission::Admit(rls::Decision::default()));
        }
        let msg = rls::request(&c.domain, &counters, rls::ADMISSION_HITS);
        self.counters = counters;
        match host.grpc_call(&call(c, &msg)) {
            Some(token) => {
                self.token = Some(token);
                Ok(())
            }
            None => Err(failed(host, c.failure_mode)),
        }
    }

    /// The answer to the admission call (`status` 0 is OK, else the gRPC status: a timeout is
    /// DEADLINE_EXCEEDED, an unreachable service UNAVAILABLE; `body` the bare response message).
    fn answer<H: Host>(
        &mut self,
        host: &mut H,
        c: &RlsConfig,
        status: u32,
        body: &[u8],
    ) -> Admission {
        self.token = None;
        let body = if status == rls::GRPC_OK { body } else { &[] };
        let a = rls::admission(status, body, &self.counters, c.failure_mode);
        match a {
            Admission::Admit(_) => {
                host.count(Counter::RlsChecks, 1);
                self.admitted = true;
            }
            Admission::Deny(_) => {
                host.count(Counter::RlsChecks, 1);
                host.count(Counter::RlsDenied, 1);
            }
            Admission::FailOpen => host.count(Counter::RlsFailedOpen, 1),
            Admission::FailClosed => host.count(Counter::RlsFailedClosed, 1),
        }
        a
    }

    /// After the response (or an abort): debit the exact usage less the admission hit, one call per kind
    /// of limit. A request admitted while the service was failing is debited in full, so what it used still
    /// counts once the service is back.
    fn debit<H: Host>(&mut self, host: &mut H, c: &RlsConfig, used: &Amount) {
        let counters = std::mem::take(&mut self.counters);
        if counters.is_empty() || self.token.is_some() {
            return;
        }
        for (hits, of_kind) in rls::debits(&counters, used, self.admitted) {
            let msg = rls::request(&c.domain, &of_kind, hits);
            match host.grpc_call(&call(c, &msg)) {
                Some(_) => host.count(Counter::RlsDebits, 1),
                None => host.count(Counter::RlsDebitFailures, 1),
            }
        }
    }
}

/// Request body: start the admission call for `tenant` on the counters `specs`. `Ok(())`: pause and wait
/// for `answer`; `Err(admission)`: decided now.
pub fn admit<H: Host>(
    host: &mut H,
    budgets: &BudgetConfig,
    gate: &mut Gate,
    tenant: &str,
    specs: &[CounterSpec],
) -> Result<(), Admission> {
    let Some(c) = budgets.rls.as_ref() else {
        return Err(Admission::FailOpen);
    };
    let counters = rls::counters(&budgets.rules, specs, tenant);
    gate.start(host, c, counters)
}

/// A gRPC answer: the admission for this exchange's call, None for any other token.
pub fn answer<H: Host>(
    host: &mut H,
    budgets: &BudgetConfig,
    gate: &mut Gate,
    token: u64,
    status: u32,
    body: &[u8],
) -> Option<Admission> {
    let c = budgets.rls.as_ref()?;
    if gate.token != Some(token) {
        return None;
    }
    Some(gate.answer(host, c, status, body))
}

/// The call is over: debit what it used.
pub fn commit<H: Host>(host: &mut H, budgets: &BudgetConfig, gate: &mut Gate, used: &Amount) {
    if let Some(c) = budgets.rls.as_ref() {
        gate.debit(host, c, used);
    }
}
