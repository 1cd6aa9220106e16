//! Test-only switches, compiled only with the `test-probes` feature (the module `make native-test-module`
//! builds for tests/test_native_module.py; never `make build`'s libtollgate.so). A request header
//! `x-tollgate-probe` makes the module exercise one piece of its host through real Envoy, using the core's
//! own code where there is one:
//!
//! - `panic:<hook>`: panic inside `request_headers`, `request_body`, `response_headers`, `response_body`,
//!   `stream_complete` or `grpc` (the gRPC answer hook, with the request paused);
//! - `span:<model>`: at the end of the exchange, build a span (the core's `build_span`) and record metrics for
//!   a call to `<model>` with 3 input and 2 output tokens, count it, and export both;
//! - `budget:<limit>:<tenant>`: reserve 1 token of a `<limit>`-token budget with the core's ledger over the
//!   module's store; a denial is answered 429, an admission commits at the end;
//! - `rls:<limit>:<tenant>`: ask the rate-limit service of `budgets.rls` for one token (a gRPC call over a
//!   streamed callout, the request paused until the answer); over the limit or failed closed, 429; at the end
//!   debit 4 more tokens through the main thread. The answer is reported in `x-tollgate-probe-rls`.
//!
//! Probes combine, comma-separated (`rls:10:t,panic:grpc`). Every probed response says which worker ran it
//! (`x-tollgate-probe-worker`).

use crate::abi::{body_status, header_type, headers_status};
use crate::core::{rls, Call, Counter};
use crate::envoy::Stream;
use crate::host::now_ns;
use crate::stats::Stat;
use crate::stream::StreamState;
use tollgate::budget::calendar::Window;
use tollgate::budget::ledger;
use tollgate::budget::Limits;

#[derive(Debug, Default)]
pub struct Probe {
    /// A probe header was seen: the response says which worker ran the stream (`x-tollgate-probe-worker`).
    /// The exchange does not run on a probed stream.
    pub active: bool,
    panic_in: Option<String>,
    span_model: Option<String>,
    reservation: Option<ledger::Reservation>,
    rls: Option<(Vec<rls::Counter>, Option<String>)>,
}

// The deliberate panic is the point of this switch (it proves the guards); test builds only.
#[allow(clippy::panic)]
fn maybe_panic(s: &StreamState, hook: &str) {
    if s.probe.panic_in.as_deref() == Some(hook) {
        panic!("tollgate test probe: deliberate panic in {hook}");
    }
}

const HOLDER_BASE: u64 = 0x7000;

pub fn request_headers(s: &mut StreamState, stream: Stream, _eos: bool) -> Option<u32> {
    let v = stream.header(header_type::REQUEST_HEADER, "x-tollgate-probe")?;
    let v = String::from_utf8_lossy(v).into_owned();
    s.probe.active = true;
    let mut decided = None;
    // Several probes may be combined: `rls:10:t,panic:grpc`.
    for item in v.split(',') {
        let mut parts = item.trim().splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("panic"), Some(hook), _) => s.probe.panic_in = Some(hook.to_string()),
            (Some("span"), Some(model), _) => s.probe.span_model = Some(model.to_string()),
            (Some("budget"), Some(limit), Some(tenant)) => {
                decided = Some(budget(s, stream, limit, tenant))
            }
            (Some("rls"), Some(limit), Some(tenant)) => {
                decided = Some(rls_admit(s, stream, limit, tenant))
            }
            _ => {}
        }
    }
    maybe_panic(s, "request_headers");
    decided
}

pub fn request_body(s: &mut StreamState, _stream: Stream, _eos: bool) -> Option<u32> {
    maybe_panic(s, "request_body");
    // Only a request a probe paused; the exchange's own pauses are the exchange's.
    (s.probe.active && s.request_paused).then_some(body_status::STOP_ITERATION_AND_BUFFER)
}

pub fn response_headers(s: &mut StreamState, stream: Stream, _eos: bool) -> Option<u32> {
    maybe_panic(s, "response_headers");
    if s.probe.active {
        let worker = s.worker.to_string();
        stream.set_header(
            header_type::RESPONSE_HEADER,
            "x-tollgate-probe-worker",
            worker.as_bytes(),
        );
    }
    if let Some((_, Some(said))) = &s.probe.rls {
        stream.set_header(
            header_type::RESPONSE_HEADER,
            "x-tollgate-probe-rls",
            said.as_bytes(),
        );
    }
    None
}

pub fn response_body(s: &mut StreamState, _stream: Stream, _eos: bool) -> Option<u32> {
    maybe_panic(s, "response_body");
    None
}

pub fn stream_complete(s: &mut StreamState, stream: Stream) {
    maybe_panic(s, "stream_complete");
    let Some(host) = s.host(stream) else { return };
    if let Some(model) = s.probe.span_model.take() {
        let mut call = Call::default();
        call.request.model = Some(model);
        call.response.usage.input = Some(3);
        call.response.usage.output = Some(2);
        call.ids.trace_id = crate::host::random_bytes();
        call.ids.span_id = crate::host::random_bytes();
        call.ids.sampled = true;
        call.start_ns = now_ns().saturating_sub(1_000_000);
        call.end_ns = now_ns();
        let cfg = &host.plugin.config;
        host.count(Stat::Exchange(Counter::Calls), 1);
        host.count(Stat::Exchange(Counter::TokensInput), 3);
        host.count(Stat::Exchange(Counter::TokensOutput), 2);
        host.record_metrics(&call);
        if cfg.otlp.is_some() {
            host.export_span(tollgate::telemetry::span::build_span(
                &call,
                &cfg.span_settings(),
                None,
            ));
        }
    }
    if let Some(r) = s.probe.reservation.take() {
        let l = ledger_for(s.worker);
        let used = r.held.first().map(|h| h.amount).unwrap_or_default();
        let _ = l.commit(&r, used, &clock());
    }
    if let Some((counters, _)) = s.probe.rls.take() {
        if let Some(rls_cfg) = host
            .plugin
            .config
            .budgets
            .as_ref()
            .and_then(|b| b.rls.as_ref())
        {
            host.debit(rls::request(&rls_cfg.domain, &counters, 4));
        }
    }
}

fn clock() -> ledger::Clock {
    ledger::Clock {
        now_s: now_ns() / 1_000_000_000,
        ttl_s: 300,
    }
}

fn ledger_for(worker: u32) -> ledger::Ledger<'static, crate::store::SharedStore> {
    ledger::Ledger {
        store: &crate::store::STORE,
        holder: HOLDER_BASE + u64::from(worker),
        max_keys: 1000,
    }
}

fn refuse(s: &mut StreamState, stream: Stream, why: &str) -> u32 {
    if let Some(h) = s.host(stream) {
        h.send_reply(&crate::core::Reply {
            status: 429,
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("x-tollgate-probe-worker".into(), s.worker.to_string()),
            ],
            body: why.as_bytes().to_vec(),
        });
    }
    headers_status::STOP_ITERATION
}

fn budget(s: &mut StreamState, stream: Stream, limit: &str, tenant: &str) -> u32 {
    let limit: u64 = limit.parse().unwrap_or(0);
    let spec = ledger::CounterSpec {
        rule: 0,
        key: ledger::counter_key("probe", tenant),
        overflow_key: ledger::overflow_key("probe"),
        window: Window::Fixed(3600),
        limits: Limits {
            tokens: Some(limit),
            ..Limits::default()
        },
        subject: tenant.to_string(),
    };
    let want = ledger::Want {
        input: 1,
        ..ledger::Want::default()
    };
    let l = ledger_for(s.worker);
    let host = s.host(stream);
    match l.admit(&[spec], &want, &clock()) {
        Ok(ledger::Decision::Admitted { reservation, .. }) => {
            if let Some(h) = host {
                h.count(Stat::Exchange(Counter::BudgetAllowed), 1);
            }
            s.probe.reservation = Some(reservation);
            headers_status::CONTINUE
        }
        Ok(ledger::Decision::Denied { .. }) => {
            if let Some(h) = host {
                h.count(Stat::Exchange(Counter::BudgetDenied), 1);
            }
            refuse(s, stream, "budget")
        }
        Err(_) => {
            if let Some(h) = host {
                h.count(Stat::Exchange(Counter::BudgetErrors), 1);
            }
            refuse(s, stream, "budget store contention")
        }
    }
}

fn rls_admit(s: &mut StreamState, stream: Stream, limit: &str, tenant: &str) -> u32 {
    let counters = vec![rls::Counter {
        dimension: "tenant".to_string(),
        tenant: tenant.to_string(),
        rule: "probe".to_string(),
        kind: rls::Kind::Tokens,
        limit: limit.parse().unwrap_or(0),
        window: Window::Fixed(3600),
    }];
    let Some(host) = s.host(stream) else {
        return headers_status::CONTINUE;
    };
    let Some(domain) = host
        .plugin
        .config
        .budgets
        .as_ref()
        .and_then(|b| b.rls.as_ref())
        .map(|r| r.domain.clone())
    else {
        return headers_status::CONTINUE;
    };
    let message = rls::request(&domain, &counters, rls::ADMISSION_HITS);
    match host.grpc_call(rls::SERVICE, rls::METHOD, &message) {
        Some(id) => {
            s.call = Some((id, crate::grpc::Answer::default()));
            s.probe.rls = Some((counters, None));
            s.request_paused = true;
            headers_status::STOP_ITERATION
        }
        None => refuse(s, stream, "rls call not started"),
    }
}

/// The answer to the admission call: report it, then resume or refuse the paused request.
pub fn grpc_answer(s: &mut StreamState, stream: Stream, status: u32, message: &[u8]) {
    maybe_panic(s, "grpc");
    let plugin = s.plugin();
    let Some((counters, said)) = s.probe.rls.as_mut() else {
        return;
    };
    let mode = plugin
        .config
        .budgets
        .as_ref()
        .and_then(|b| b.rls.as_ref())
        .map_or(rls::FailureMode::Open, |r| r.failure_mode);
    let admission = rls::admission(status, message, counters, mode);
    let verdict = match admission {
        rls::Admission::Admit(_) => "admit",
        rls::Admission::Deny(_) => "deny",
        rls::Admission::FailOpen => "fail_open",
        rls::Admission::FailClosed => "fail_closed",
    };
    *said = Some(format!("status={status} {verdict}"));
    if let Some(h) = s.host(stream) {
        // As the Wasm build counts them (filter/src/host/rls.rs).
        match admission {
            rls::Admission::Admit(_) => h.count(Stat::Exchange(Counter::RlsChecks), 1),
            rls::Admission::Deny(_) => {
                h.count(Stat::Exchange(Counter::RlsChecks), 1);
                h.count(Stat::Exchange(Counter::RlsDenied), 1);
            }
            rls::Admission::FailOpen => h.count(Stat::Exchange(Counter::RlsFailedOpen), 1),
            rls::Admission::FailClosed => h.count(Stat::Exchange(Counter::RlsFailedClosed), 1),
        }
    }
    s.request_paused = false;
    match admission {
        rls::Admission::Admit(_) | rls::Admission::FailOpen => {
            stream.set_header(
                header_type::REQUEST_HEADER,
                "x-tollgate-probe-rls",
                b"checked",
            );
            stream.continue_decoding();
        }
        rls::Admission::Deny(_) | rls::Admission::FailClosed => {
            let why = format!("rls status={status} {verdict}");
            s.probe.rls = None; // nothing to debit
            refuse(s, stream, &why);
        }
    }
}
