//! Budget enforcement for one exchange: resolve the tenant (request headers), reserve before forwarding
//! (request body), refuse or clamp, put the remaining-tokens headers on the response, commit the exact
//! usage (log). The arithmetic is `crate::budget`'s; the store and the clock are the host's.

use super::host::{Attribute, Counter, Host, Level, Map};
use super::rls::{self as rls_calls, Gate};
use crate::budget::ledger::{self, Clock, Contention, Ledger, Store};
use crate::budget::rls::{self, Admission};
use crate::budget::tenant::{self, Resolved};
use crate::budget::{
    self, BackendKind, BudgetConfig, CounterSpec, Decision, Reservation, TenantSource,
};
use crate::call::{BudgetOutcome, Call, Route, Verdict};
use crate::codec::headers::Headers;
use crate::config::Config;
use crate::providers;
use crate::reply::{Denial, Refusal, Reply};

/// Per-exchange budget state.
#[derive(Default)]
pub struct Budgeted {
    tenant: Option<String>,
    reservation: Option<Reservation>,
    input_estimate: u64,
    /// `x-ratelimit-*` headers for the response.
    headers: Vec<(&'static str, String)>,
    /// A budget refused the request.
    pub refused: bool,
    /// `backend: "rls"`: the rate-limit service calls of this exchange.
    rls: Gate,
}

/// What the request body callback must do.
pub enum Step {
    Continue,
    /// `backend: "rls"`: the rate-limit service is deciding. Finish the body work, then pause; the answer
    /// arrives in `on_grpc_answer`.
    Wait,
    /// Forward this body instead (clamped max tokens).
    Rewrite(Vec<u8>),
    /// Answer locally.
    Refuse(Reply),
}

/// Configure-time set-up: the store's key-creation lock exists before traffic flows.
pub fn configure<S: Store>(cfg: &Config, store: &S, holder: u64) {
    let Some(b) = cfg.budgets.as_ref() else {
        return;
    };
    if b.backend == BackendKind::Rls {
        return; // Nothing in the store; the rules were checked against the protocol at parse time.
    }
    ledger_of(b, store, holder).init();
}

fn ledger_of<'s, S: Store>(b: &BudgetConfig, store: &'s S, holder: u64) -> Ledger<'s, S> {
    Ledger {
        store,
        holder,
        max_keys: b.max_tenants,
    }
}

fn clock<H: Host>(host: &mut H, b: &BudgetConfig) -> Clock {
    Clock {
        now_s: host.now_ns() / 1_000_000_000,
        ttl_s: b.reservation_ttl_s,
    }
}

/// Whether the body may be rewritten for budgets (clamping).
pub fn may_rewrite(cfg: &Config) -> bool {
    cfg.budgets.as_ref().is_some_and(|b| b.clamp_min.is_some())
}

fn tenant_source_value<H: Host>(host: &mut H, cfg: &Config, headers: &Headers) -> Option<String> {
    match &cfg.tenant.source {
        TenantSource::Fixed | TenantSource::PeerIdentity(_) => None,
        TenantSource::Header(h) => headers.get_string(h),
        TenantSource::JwtClaim {
            claim,
            metadata_key,
        } => host
            .attribute(Attribute::JwtPayload(metadata_key))
            .and_then(|b| tenant::claim_from_metadata(&b, claim)),
        TenantSource::ApiKeyHash => tenant::api_key_tenant(
            headers.get_str("authorization").as_deref(),
            headers.get_str("x-api-key").as_deref(),
            headers.get_str("x-goog-api-key").as_deref(),
        ),
    }
}

/// Resolve the tenant at request headers (when tenants or budgets are configured).
pub fn on_request_headers<H: Host>(
    host: &mut H,
    cfg: &Config,
    st: &mut Budgeted,
    call: &mut Call,
    headers: &Headers,
) {
    if cfg.budgets.is_none() && cfg.tenant.source == TenantSource::Fixed {
        return;
    }
    let Resolved { tenant, invalid } = match &cfg.tenant.source {
        // Envoy's CEL attribute: the first URI SAN of the downstream peer certificate, absent on plaintext
        // connections (source/extensions/filters/common/expr/context.cc, `uri_san_peer_certificate`).
        TenantSource::PeerIdentity(rules) => tenant::resolve_peer(
            rules,
            host.attribute(Attribute::PeerUriSan).as_deref(),
            &cfg.tenant.default,
        ),
        _ => tenant::resolve(
            tenant_source_value(host, cfg, headers).as_deref(),
            &cfg.tenant.default,
        ),
    };
    if invalid {
        host.count(Counter::BudgetTenantInvalid, 1);
    }
    call.tenant = Some(tenant.clone());
    st.tenant = Some(tenant);
}

/// Whether a budget may refuse this exchange's request (its tenant resolved at the headers).
pub fn may_deny(cfg: &Config, st: &Budgeted) -> bool {
    match (cfg.budgets.as_ref(), st.tenant.as_deref()) {
        (Some(b), Some(tenant)) => budget::may_deny(b, tenant),
        _ => false,
    }
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
/// be forwarded in its place (the proxy's buffer holds it).
///
/// A body not read is reserved by its size and the default output cap, against every rule of its tenant
/// (its model is unknown) at the highest price of the `pricing` table. Either way the usage the response
/// reports is committed as for any call.
#[allow(clippy::too_many_arguments)]
pub fn on_request_body<H: Host>(
    host: &mut H,
    cfg: &Config,
    st: &mut Budgeted,
    call: &mut Call,
    body: Option<&[u8]>,
    size: usize,
    rewritable: bool,
    max_len: usize,
) -> Step {
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
    let generates = providers::operation(route) != "embeddings";
    let ask = budget::ask(b, generates, request, size, price.as_ref());
    let clamp = |route: &Route, per_choice: u64| {
        body.filter(|_| rewritable)
            .and_then(|body| providers::set_max_output_tokens(route, body, per_choice))
            .filter(|new_body| new_body.len() <= max_len)
    };
    admit(host, st, call, b, specs, &ask, &clamp)
}

/// Reserve `ask` on `specs` (local) or ask the rate-limit service; `clamp(route, per_choice)`: the body
/// with its max output tokens lowered, when it can be rewritten.
fn admit<H: Host>(
    host: &mut H,
    st: &mut Budgeted,
    call: &mut Call,
    b: &BudgetConfig,
    specs: Vec<CounterSpec>,
    ask: &budget::Ask,
    clamp: &dyn Fn(&Route, u64) -> Option<Vec<u8>>,
) -> Step {
    st.input_estimate = ask.want.input;
    if b.backend == BackendKind::Rls {
        let tenant = st.tenant.as_deref().unwrap_or_default();
        return match rls_calls::admit(host, b, &mut st.rls, tenant, &specs) {
            Ok(()) => Step::Wait,
            Err(a) => rls_decided(host, st, call, b, &a),
        };
    }
    let clock = clock(host, b);
    let holder = host.store_holder();
    let ledger = ledger_of(b, host.store(), holder);
    let decision = match ledger.admit(&specs, &ask.want, &clock) {
        Ok(d) => d,
        Err(Contention) => {
            // The store kept refusing writes: enforcing without a record would break the guarantee.
            let Some(first) = specs.first() else {
                return Step::Continue;
            };
            let t = ledger.peek(first, &clock);
            host.count(Counter::BudgetErrors, 1);
            host.log(
                Level::Warn,
                "tollgate: budget store contention; request refused",
            );
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
                host.count(Counter::BudgetTenantOverflow, 1);
            }
            st.headers = tightest.as_ref().map(rate_headers).unwrap_or_default();
            let mut outcome = BudgetOutcome {
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
                        let holder = host.store_holder();
                        let _ = ledger_of(b, host.store(), holder).commit(
                            &reservation,
                            budget::Amount::default(),
                            &clock,
                        );
                        return refuse(host, st, call, b, tightest, &specs, &clock);
                    }
                    None => {}
                }
                if clamped {
                    outcome.verdict = Verdict::Clamped;
                    call.request.max_tokens = Some(per_choice);
                }
            }
            match outcome.verdict {
                Verdict::Clamped => host.count(Counter::BudgetClamped, 1),
                _ => host.count(Counter::BudgetAllowed, 1),
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
                host.count(Counter::BudgetTenantOverflow, 1);
            }
            if b.dry_run {
                host.count(Counter::BudgetDryRunDenied, 1);
                st.headers = rate_headers(&tightest);
                // Nothing reserved, but the usage still lands in the counters.
                st.reservation = Some(ledger::track_only(&specs, &clock));
                call.budget = Some(BudgetOutcome {
                    verdict: Verdict::DryRunDenied,
                    rule: rule_name(b, tightest.rule),
                    remaining_tokens: tightest.remaining_tokens,
                });
                return Step::Continue;
            }
            refuse(host, st, call, b, Some(tightest), &specs, &clock)
        }
    }
}

fn refuse<H: Host>(
    host: &mut H,
    st: &mut Budgeted,
    call: &mut Call,
    b: &BudgetConfig,
    tightest: Option<ledger::Tightest>,
    specs: &[CounterSpec],
    clock: &Clock,
) -> Step {
    let Some(route) = call.route.as_ref() else {
        return Step::Continue;
    };
    host.count(Counter::BudgetDenied, 1);
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
    let message = format!(
        "token budget exceeded for tenant '{}' ({}); the window resets in {reset}s",
        st.tenant.as_deref().unwrap_or(""),
        rule.as_deref().unwrap_or("budget"),
    );
    let mut denial = Denial::new(Refusal::BudgetExceeded, message);
    denial
        .headers
        .push(("retry-after".into(), reset.to_string()));
    if let Some(t) = &tightest {
        denial
            .headers
            .extend(rate_headers(t).into_iter().map(|(k, v)| (k.to_owned(), v)));
    }
    let reply = providers::reply(route, &denial);
    call.budget = Some(BudgetOutcome {
        verdict: Verdict::Denied,
        rule,
        remaining_tokens: tightest.and_then(|t| t.remaining_tokens),
    });
    call.http_status = Some(reply.status);
    call.response.error_type = Some(Refusal::BudgetExceeded.code().to_owned());
    st.refused = true;
    Step::Refuse(reply)
}

/// The rate-limit service answered (None: not this exchange's call). `Step::Refuse`: send the reply;
/// otherwise resume the request.
#[allow(clippy::too_many_arguments)]
pub fn on_grpc_answer<H: Host>(
    host: &mut H,
    cfg: &Config,
    st: &mut Budgeted,
    call: &mut Call,
    token: u64,
    status: u32,
    body: &[u8],
) -> Option<Step> {
    let b = cfg.budgets.as_ref()?;
    let a = rls_calls::answer(host, b, &mut st.rls, token, status, body)?;
    Some(rls_decided(host, st, call, b, &a))
}

fn rls_decided<H: Host>(
    host: &mut H,
    st: &mut Budgeted,
    call: &mut Call,
    b: &BudgetConfig,
    a: &Admission,
) -> Step {
    let Some(route) = call.route.as_ref() else {
        return Step::Continue;
    };
    let decision = match a {
        Admission::Admit(d) | Admission::Deny(d) => Some(*d),
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
    let Some(reply) = rls::refusal(a).map(|d| providers::reply(route, &d)) else {
        host.count(Counter::BudgetAllowed, 1);
        call.budget = Some(BudgetOutcome {
            verdict: Verdict::Allowed,
            rule: None,
            remaining_tokens,
        });
        return Step::Continue;
    };
    if b.dry_run {
        host.count(Counter::BudgetDryRunDenied, 1);
        call.budget = Some(BudgetOutcome {
            verdict: Verdict::DryRunDenied,
            rule: None,
            remaining_tokens,
        });
        return Step::Continue;
    }
    host.count(Counter::BudgetDenied, 1);
    call.budget = Some(BudgetOutcome {
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
pub fn on_response_headers<H: Host>(host: &mut H, cfg: &Config, st: &Budgeted, headers: &Headers) {
    if st.refused || !cfg.budgets.as_ref().is_some_and(|b| b.response_headers) {
        return;
    }
    for (k, v) in &st.headers {
        super::put_header(host, Map::ResponseHeaders, headers, k, v);
    }
}

/// Commit the exact usage once the call is over (usage must already be final, estimates included).
pub fn on_log<H: Host>(host: &mut H, cfg: &Config, st: &mut Budgeted, call: &Call) {
    let Some(b) = cfg.budgets.as_ref() else {
        return;
    };
    if b.backend == BackendKind::Rls {
        let actual = actual_usage(cfg, st, call);
        rls_calls::commit(host, b, &mut st.rls, &actual);
        return;
    }
    let Some(res) = st.reservation.take() else {
        return;
    };
    let actual = actual_usage(cfg, st, call);
    let clock = clock(host, b);
    let holder = host.store_holder();
    if ledger_of(b, host.store(), holder)
        .commit(&res, actual, &clock)
        .is_err()
    {
        host.count(Counter::BudgetErrors, 1);
    }
}

/// What the call used, estimates filled in (see `budget::actual`).
fn actual_usage(cfg: &Config, st: &Budgeted, call: &Call) -> budget::Amount {
    let price = call.request_model().and_then(|m| cfg.pricing.lookup(m));
    let provider_error = call.http_status.is_some_and(|s| s >= 400);
    budget::actual(
        &call.response.usage,
        provider_error,
        st.input_estimate,
        price,
    )
}
