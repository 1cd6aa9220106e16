//! Budget enforcement on the data path: resolve the tenant (request headers), reserve before forwarding
//! (request body), answer 429 or clamp, put the remaining-tokens headers on the response, commit the exact
//! usage (log). The arithmetic is in `crate::budget`; this file only supplies host facts and the store.

use super::abi;
use super::rls as rls_host;
use super::root::Shared;
use super::{log, now_ns, random};
use crate::budget::ledger::{self, Clock, Contention, Ledger, Store, StoreError};
use crate::budget::tenant::{self, Resolved};
use crate::budget::{self, BackendKind, BudgetConfig, Decision, Reservation, TenantSource};
use crate::call::{BudgetOutcome as Outcome, Call, Route, Verdict};
use crate::codec::headers::Headers;
use crate::config::Config;
use crate::reply::{Refusal, Reply};
use crate::rls;
use proxy_wasm::types::{LogLevel, MapType};
use std::cell::Cell;

/// Envoy shared data through the non-panicking host calls.
pub struct SharedData;

impl Store for SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        abi::get_shared_data(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        match abi::set_shared_data(key, value, cas) {
            abi::SetShared::Ok => Ok(()),
            abi::SetShared::CasMismatch => Err(StoreError::CasMismatch),
            abi::SetShared::Failed => Err(StoreError::Failed),
        }
    }
}

thread_local! {
    static HOLDER: Cell<u64> = const { Cell::new(0) };
}

/// This VM's non-zero id for the key-creation lock.
fn holder() -> u64 {
    HOLDER.with(|h| {
        if h.get() == 0 {
            h.set(u64::from_le_bytes(random::<8>()).max(1));
        }
        h.get()
    })
}

fn now_s() -> u64 {
    now_ns() / 1_000_000_000
}

/// The engine that keeps the counters in Envoy shared data: it reserves and commits synchronously.
/// `backend: "rls"` is asynchronous (a gRPC call the request waits for) and goes through `rls_admit`,
/// `on_grpc_answer` and `on_log` instead (`host/rls.rs`).
pub enum Backend {
    Local,
}

impl Backend {
    pub fn for_config(_cfg: &BudgetConfig) -> Backend {
        Backend::Local
    }

    fn ledger(cfg: &BudgetConfig) -> Ledger<'static, SharedData> {
        static STORE: SharedData = SharedData;
        Ledger {
            store: &STORE,
            holder: holder(),
            max_keys: cfg.max_tenants,
        }
    }

    /// Reserve the worst case on every applicable counter.
    pub fn admit(
        &self,
        cfg: &BudgetConfig,
        specs: &[budget::CounterSpec],
        want: &budget::Want,
        clock: &Clock,
    ) -> Result<Decision, Contention> {
        match self {
            Backend::Local => Self::ledger(cfg).admit(specs, want, clock),
        }
    }

    /// Replace a reservation with the exact usage (or release it: zero usage).
    pub fn commit(
        &self,
        cfg: &BudgetConfig,
        reservation: &Reservation,
        actual: budget::Amount,
        clock: &Clock,
    ) -> Result<(), Contention> {
        match self {
            Backend::Local => Self::ledger(cfg).commit(reservation, actual, clock),
        }
    }
}

/// Configure-time checks and set-up. Err: the configuration must be refused.
pub fn on_configure(cfg: &Config) -> Result<(), String> {
    let Some(b) = cfg.budgets.as_ref() else {
        return Ok(());
    };
    if b.backend == BackendKind::Rls {
        return Ok(()); // Nothing in shared data; the rules were checked against the protocol at parse time.
    }
    // Create the key-creation lock before traffic flows.
    Backend::ledger(b).init();
    Ok(())
}

/// Per-exchange budget state.
#[derive(Default)]
pub struct Budgeted {
    pub tenant: Option<String>,
    reservation: Option<Reservation>,
    input_estimate: u64,
    /// `x-ratelimit-*` headers for the response.
    headers: Vec<(&'static str, String)>,
    pub refused: bool,
    /// `backend: "rls"`: the rate-limit service calls of this exchange.
    rls: rls_host::Gate,
}

/// Whether the body may be rewritten for budgets (clamping).
pub fn may_rewrite(cfg: &Config) -> bool {
    cfg.budgets.as_ref().is_some_and(|b| b.clamp_min.is_some())
}

fn tenant_source_value(cfg: &Config, headers: &Headers) -> Option<String> {
    match &cfg.tenant.source {
        TenantSource::Fixed | TenantSource::PeerIdentity(_) => None,
        TenantSource::Header(h) => headers.get_string(h),
        TenantSource::JwtClaim {
            claim,
            metadata_key,
        } => abi::property(&[
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
            metadata_key,
        ])
        .and_then(|b| tenant::claim_from_metadata(&b, claim)),
        TenantSource::ApiKeyHash => tenant::api_key_tenant(
            headers.get_str("authorization").as_deref(),
            headers.get_str("x-api-key").as_deref(),
            headers.get_str("x-goog-api-key").as_deref(),
        ),
    }
}

/// Resolve the tenant at request headers (when tenants or budgets are configured).
pub fn on_request_headers(shared: &Shared, st: &mut Budgeted, call: &mut Call, headers: &Headers) {
    let cfg = &shared.config;
    if cfg.budgets.is_none() && cfg.tenant.source == TenantSource::Fixed {
        return;
    }
    let Resolved { tenant, invalid } = match &cfg.tenant.source {
        // Envoy's CEL attribute: the first URI SAN of the downstream peer certificate, absent on plaintext
        // connections (source/extensions/filters/common/expr/context.cc, `uri_san_peer_certificate`).
        TenantSource::PeerIdentity(rules) => tenant::resolve_peer(
            rules,
            abi::property(&["connection", "uri_san_peer_certificate"]).as_deref(),
            &cfg.tenant.default,
        ),
        _ => tenant::resolve(
            tenant_source_value(cfg, headers).as_deref(),
            &cfg.tenant.default,
        ),
    };
    if invalid {
        shared.stats.budget_tenant_invalid.add(1);
    }
    call.tenant = Some(tenant.clone());
    st.tenant = Some(tenant);
}

/// What the request body callback must do.
pub enum Step {
    Continue,
    /// `backend: "rls"`: the rate-limit service is deciding. Finish the body work, then return
    /// `Action::Pause`; the answer arrives in `on_grpc_call_response` (`on_grpc_answer`).
    Wait,
    /// Forward this body instead (clamped max tokens).
    Rewrite(Vec<u8>),
    /// Answer locally.
    Refuse(Reply),
}

fn rate_headers(t: &ledger::Tightest) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    if let (Some(limit), Some(left)) = (t.limit_tokens, t.remaining_tokens) {
        h.push(("x-ratelimit-limit-tokens", limit.to_string()));
        h.push(("x-ratelimit-remaining-tokens", left.to_string()));
        h.push(("x-ratelimit-reset-tokens", format!("{}s", t.reset_s)));
    }
    h
}

fn rule_name(cfg: &BudgetConfig, rule: usize) -> Option<String> {
    cfg.rules.get(rule).map(|r| r.name.clone())
}

/// Budget admission for a request body: `Some(body)` read (and parsed into `call.request`), or None when it
/// is not read (too large to hold, or of undeclared length), `size` bytes.
///
/// A read body reserves its input estimate and its declared max output. `rewritable`: the body may be
/// replaced (false for compressed or signed bodies, which are forwarded as they are; a clamp that cannot be
/// applied then refuses, as when the max-tokens field cannot be set); `max_len`: the longest body that may
/// be forwarded in its place (Envoy's buffer holds it).
///
/// A body not read is reserved by its size and the default output cap, against every rule of its tenant
/// (its model is unknown) at the highest price of the `pricing` table. Either way the usage the response
/// reports is committed as for any call.
pub fn on_request_body(
    shared: &Shared,
    st: &mut Budgeted,
    call: &mut Call,
    body: Option<&[u8]>,
    size: usize,
    rewritable: bool,
    max_len: usize,
) -> Step {
    let cfg = &shared.config;
    let (Some(b), Some(tenant), Some(route)) = (
        cfg.budgets.as_ref(),
        st.tenant.as_deref(),
        call.route.as_ref(),
    ) else {
        return Step::Continue;
    };
    let (specs, price, request) = match body {
        Some(_) => {
            let model = call.request_model();
            (
                budget::counters(b, tenant, model),
                model.and_then(|m| cfg.pricing.lookup(m)).copied(),
                Some(&call.request),
            )
        }
        None => (
            budget::counters_any_model(b, tenant),
            cfg.pricing.worst(),
            None,
        ),
    };
    if specs.is_empty() {
        return Step::Continue;
    }
    let generates = crate::providers::operation(route) != "embeddings";
    let ask = budget::ask(b, generates, request, size, price.as_ref());
    let clamp = |route: &Route, per_choice: u64| {
        body.filter(|_| rewritable)
            .and_then(|body| crate::providers::set_max_output_tokens(route, body, per_choice))
            .filter(|new_body| new_body.len() <= max_len)
    };
    admit(shared, st, call, b, specs, &ask, &clamp)
}

/// Whether a budget may refuse this exchange's request (its tenant resolved at the headers).
pub fn may_deny(shared: &Shared, st: &Budgeted) -> bool {
    match (shared.config.budgets.as_ref(), st.tenant.as_deref()) {
        (Some(b), Some(tenant)) => budget::may_deny(b, tenant),
        _ => false,
    }
}

/// Reserve `ask` on `specs` (local) or ask the rate-limit service; `clamp(route, per_choice)`: the body
/// with its max output tokens lowered, when it can be rewritten.
fn admit(
    shared: &Shared,
    st: &mut Budgeted,
    call: &mut Call,
    b: &BudgetConfig,
    specs: Vec<budget::CounterSpec>,
    ask: &budget::Ask,
    clamp: &dyn Fn(&Route, u64) -> Option<Vec<u8>>,
) -> Step {
    st.input_estimate = ask.want.input;
    if b.backend == BackendKind::Rls {
        return rls_admit(shared, st, call, b, &specs);
    }
    let clock = Clock {
        now_s: now_s(),
        ttl_s: b.reservation_ttl_s,
    };
    let backend = Backend::for_config(b);
    let stats = &shared.stats;
    let decision = match backend.admit(b, &specs, &ask.want, &clock) {
        Ok(d) => d,
        Err(Contention) => {
            // The store kept refusing writes: enforcing without a record would break the guarantee.
            stats.budget_errors.add(1);
            log(
                LogLevel::Warn,
                "tollgate: budget store contention; request refused",
            );
            let Some(first) = specs.first() else {
                return Step::Continue;
            };
            let t = Backend::ledger(b).peek(first, &clock);
            Decision::Denied {
                tightest: t,
                overflowed: false,
            }
        }
    };
    match decision {
        Decision::Admitted {
            reservation,
            output,
            tightest,
            overflowed,
        } => {
            if overflowed {
                stats.budget_tenant_overflow.add(1);
            }
            st.headers = tightest.as_ref().map(rate_headers).unwrap_or_default();
            let mut outcome = Outcome {
                verdict: Verdict::Allowed,
                rule: tightest.and_then(|t| rule_name(b, t.rule)),
                remaining_tokens: tightest.and_then(|t| t.remaining_tokens),
            };
            let mut step = Step::Continue;
            let clamped = output < ask.want.output;
            // Clamping also writes the assumed default when the request declared no maximum, so the
            // provider cannot generate more than was reserved.
            if b.clamp_min.is_some() && (clamped || !ask.declared) && ask.want.output > 0 {
                let per_choice = output / ask.choices.max(1);
                let Some(route) = call.route.as_ref() else {
                    return Step::Continue;
                };
                match clamp(route, per_choice) {
                    Some(new_body) => step = Step::Rewrite(new_body),
                    None if clamped => {
                        // Cannot lower it safely: refuse rather than admit more than reserved.
                        let _ = backend.commit(b, &reservation, budget::Amount::default(), &clock);
                        return refuse(shared, st, call, b, tightest, &specs, &clock);
                    }
                    None => {}
                }
                if clamped {
                    outcome.verdict = Verdict::Clamped;
                    call.request.max_tokens = Some(per_choice);
                }
            }
            match outcome.verdict {
                Verdict::Clamped => stats.budget_clamped.add(1),
                _ => stats.budget_allowed.add(1),
            }
            st.reservation = Some(reservation);
            call.budget = Some(outcome);
            step
        }
        Decision::Denied {
            tightest,
            overflowed,
        } => {
            if overflowed {
                stats.budget_tenant_overflow.add(1);
            }
            if b.dry_run {
                stats.budget_dry_run_denied.add(1);
                st.headers = rate_headers(&tightest);
                // Nothing reserved, but the usage still lands in the counters.
                st.reservation = Some(ledger::track_only(&specs, &clock));
                call.budget = Some(Outcome {
                    verdict: Verdict::DryRunDenied,
                    rule: rule_name(b, tightest.rule),
                    remaining_tokens: tightest.remaining_tokens,
                });
                return Step::Continue;
            }
            refuse(shared, st, call, b, Some(tightest), &specs, &clock)
        }
    }
}

fn refuse(
    shared: &Shared,
    st: &mut Budgeted,
    call: &mut Call,
    b: &BudgetConfig,
    tightest: Option<ledger::Tightest>,
    specs: &[budget::CounterSpec],
    clock: &Clock,
) -> Step {
    let Some(route) = call.route.as_ref() else {
        return Step::Continue;
    };
    shared.stats.budget_denied.add(1);
    let reset = tightest.map_or_else(
        || {
            specs
                .iter()
                .map(|s| ledger::seconds_to_reset(s.window_s, clock.now_s))
                .max()
                .unwrap_or(1)
        },
        |t| t.reset_s,
    );
    let rule = tightest.and_then(|t| rule_name(b, t.rule));
    let mut headers: Vec<(String, String)> = vec![("retry-after".into(), reset.to_string())];
    if let Some(t) = &tightest {
        headers.extend(rate_headers(t).into_iter().map(|(k, v)| (k.to_owned(), v)));
    }
    let message = format!(
        "token budget exceeded for tenant '{}' ({}); the window resets in {reset}s",
        st.tenant.as_deref().unwrap_or(""),
        rule.as_deref().unwrap_or("budget"),
    );
    let mut denial = crate::reply::Denial::new(Refusal::BudgetExceeded, message);
    denial.headers = headers;
    let reply = crate::providers::reply(route, &denial);
    call.budget = Some(Outcome {
        verdict: Verdict::Denied,
        rule,
        remaining_tokens: tightest.and_then(|t| t.remaining_tokens),
    });
    call.http_status = Some(reply.status);
    call.response.error_type = Some(Refusal::BudgetExceeded.code().to_owned());
    st.refused = true;
    Step::Refuse(reply)
}

/// `backend: "rls"`: ask the rate-limit service (`Step::Wait`), or decide now when no call could be made.
fn rls_admit(
    shared: &Shared,
    st: &mut Budgeted,
    call: &mut Call,
    b: &BudgetConfig,
    specs: &[budget::CounterSpec],
) -> Step {
    let tenant = st.tenant.as_deref().unwrap_or_default();
    match rls_host::admit(b, &mut st.rls, tenant, specs, &shared.stats.rls) {
        Ok(()) => Step::Wait,
        Err(a) => rls_decided(shared, st, call, b, &a),
    }
}

/// The rate-limit service answered this exchange's admission call (None: not this exchange's call).
/// `Step::Refuse`: send the reply; otherwise resume the request.
pub fn on_grpc_answer(
    shared: &Shared,
    st: &mut Budgeted,
    call: &mut Call,
    token: u32,
    status_code: u32,
    size: usize,
) -> Option<Step> {
    let b = shared.config.budgets.as_ref()?;
    let a = rls_host::answer(b, &mut st.rls, token, status_code, size, &shared.stats.rls)?;
    Some(rls_decided(shared, st, call, b, &a))
}

fn rls_decided(
    shared: &Shared,
    st: &mut Budgeted,
    call: &mut Call,
    b: &BudgetConfig,
    a: &rls::Admission,
) -> Step {
    let stats = &shared.stats;
    let Some(route) = call.route.as_ref() else {
        return Step::Continue;
    };
    let decision = match a {
        rls::Admission::Admit(d) | rls::Admission::Deny(d) => Some(*d),
        _ => None,
    };
    if let Some((limit, left)) = decision.and_then(|d| d.limit.zip(d.remaining)) {
        st.headers = vec![
            ("x-ratelimit-limit-tokens", limit.to_string()),
            ("x-ratelimit-remaining-tokens", left.to_string()),
        ];
        if let Some(reset) = decision.and_then(|d| d.reset_secs) {
            st.headers
                .push(("x-ratelimit-reset-tokens", format!("{reset}s")));
        }
    }
    let remaining_tokens = decision.and_then(|d| d.remaining);
    let Some(reply) = rls::refusal(a).map(|d| crate::providers::reply(route, &d)) else {
        stats.budget_allowed.add(1);
        call.budget = Some(Outcome {
            verdict: Verdict::Allowed,
            rule: None,
            remaining_tokens,
        });
        return Step::Continue;
    };
    if b.dry_run {
        stats.budget_dry_run_denied.add(1);
        call.budget = Some(Outcome {
            verdict: Verdict::DryRunDenied,
            rule: None,
            remaining_tokens,
        });
        return Step::Continue;
    }
    stats.budget_denied.add(1);
    call.budget = Some(Outcome {
        verdict: Verdict::Denied,
        rule: None,
        remaining_tokens,
    });
    call.http_status = Some(reply.status);
    call.response.error_type = Some(Refusal::BudgetExceeded.code().to_owned());
    st.refused = true;
    Step::Refuse(reply)
}

/// Add the remaining-tokens headers to a provider response (`headers`: the response's own), replacing the
/// provider's headers of the same name.
pub fn on_response_headers(shared: &Shared, st: &Budgeted, headers: &Headers) {
    if st.refused
        || !shared
            .config
            .budgets
            .as_ref()
            .is_some_and(|b| b.response_headers)
    {
        return;
    }
    for (k, v) in &st.headers {
        abi::put_header(MapType::HttpResponseHeaders, headers, k, v);
    }
}

/// Commit the exact usage once the call is over (usage must already be final, estimates included).
pub fn on_log(shared: &Shared, st: &mut Budgeted, call: &Call) {
    let Some(b) = shared.config.budgets.as_ref() else {
        return;
    };
    if b.backend == BackendKind::Rls {
        let actual = actual_usage(shared, st, call);
        rls_host::commit(b, &mut st.rls, &actual, &shared.stats.rls);
        return;
    }
    let Some(res) = st.reservation.take() else {
        return;
    };
    let actual = actual_usage(shared, st, call);
    let clock = Clock {
        now_s: now_s(),
        ttl_s: b.reservation_ttl_s,
    };
    if Backend::for_config(b)
        .commit(b, &res, actual, &clock)
        .is_err()
    {
        shared.stats.budget_errors.add(1);
    }
}

/// What the call used, estimates filled in (see `budget::actual`).
fn actual_usage(shared: &Shared, st: &Budgeted, call: &Call) -> budget::Amount {
    let price = call
        .request_model()
        .and_then(|m| shared.config.pricing.lookup(m));
    let provider_error = call.http_status.is_some_and(|s| s >= 400);
    budget::actual(
        &call.response.usage,
        provider_error,
        st.input_estimate,
        price,
    )
}
