//! Per-tenant token and cost budgets that hold under concurrency (pure; the host supplies the store).
//!
//! - `config`: the `tenant` and `budgets` plugin JSON (rules, windows, limits, the `rls` backend's keys).
//! - `tenant`: validation, API-key hashing, JWT claim extraction, mTLS workload identity mapping.
//! - `ledger`: counters in a compare-and-swap store; reserve the worst case before forwarding, commit the
//!   exact usage after.
//! - `rls`: the rate-limit service protocol, for `backend: rls` (budgets shared by every replica).
//!
//! This module decides *which* counters a request touches and *how much* it asks for (`plan`).

pub mod config;
pub mod ledger;
pub mod rls;
pub mod tenant;

pub use config::{
    BackendKind, BudgetConfig, FailureMode, Limits, RlsConfig, TenantConfig, TenantSource,
};
pub use ledger::{Amount, CounterSpec, Decision, Reservation, Tightest, Want};

use crate::call::{Request, Usage};
use crate::pricing::{model_matches, Price};
use config::TenantMatch;

/// Input tokens a body can hold at most. Byte-level BPE tokenizers (OpenAI, Anthropic, Llama, Mistral) and
/// SentencePiece with byte fallback (Gemini) emit tokens of at least one byte, so the text of a prompt has at
/// most as many tokens as bytes; the JSON around each message (`{"role":"user","content":""}`, 30+ bytes) is
/// more than the few template tokens a provider adds per message. So the body length over-approximates the
/// input tokens (typically 3–4×). Not covered: content the body only references (image URLs, files,
/// `previous_response_id`, cached contexts).
pub fn estimate_input_tokens(body_len: usize) -> u64 {
    u64::try_from(body_len)
        .unwrap_or(u64::MAX)
        .saturating_add(16)
}

/// The counters `tenant` calling `model` is checked against. A named rule covers its tenant; `"*"` rules cover
/// every tenant no rule names (each with its own counter). Rules with `models` apply only to matching models.
pub fn counters(cfg: &BudgetConfig, tenant: &str, model: Option<&str>) -> Vec<CounterSpec> {
    counters_where(cfg, tenant, &|models| {
        models.is_empty() || model.is_some_and(|m| models.iter().any(|p| model_matches(p, m)))
    })
}

/// The counters of a request whose body was not read, so whose model is unknown: every rule of its tenant,
/// model-scoped ones included (a request must not escape a model's budget by being too large to read).
pub fn counters_any_model(cfg: &BudgetConfig, tenant: &str) -> Vec<CounterSpec> {
    counters_where(cfg, tenant, &|_| true)
}

/// Whether a budget can refuse a request of `tenant`: some rule covers it, and not in dry-run (where only a
/// clamp that cannot be applied refuses).
pub fn may_deny(cfg: &BudgetConfig, tenant: &str) -> bool {
    (!cfg.dry_run || cfg.clamp_min.is_some()) && !counters_any_model(cfg, tenant).is_empty()
}

fn counters_where(
    cfg: &BudgetConfig,
    tenant: &str,
    models_apply: &dyn Fn(&[String]) -> bool,
) -> Vec<CounterSpec> {
    let named = cfg
        .rules
        .iter()
        .any(|r| r.tenant == TenantMatch::Named(tenant.to_owned()));
    cfg.rules
        .iter()
        .enumerate()
        .filter(|(_, r)| match &r.tenant {
            TenantMatch::Named(t) => t == tenant,
            TenantMatch::Each => !named,
        })
        .filter(|(_, r)| models_apply(&r.models))
        .map(|(i, r)| CounterSpec {
            rule: i,
            key: ledger::counter_key(&r.fingerprint, tenant),
            overflow_key: ledger::overflow_key(&r.fingerprint),
            window_s: r.window_s,
            limits: r.limits,
        })
        .collect()
}

/// What a request asks to reserve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ask {
    pub want: Want,
    /// Choices the output is split across (`n`); a clamp sets `granted / choices` per choice.
    pub choices: u64,
    /// The request declared its max output tokens (otherwise `default_max_output_tokens` was assumed).
    pub declared: bool,
}

/// The worst case of a request: input estimate + max output tokens × choices (or the configured default).
/// `generates`: the API generates output tokens (embeddings do not); `req`: what its body said (None: the
/// body was not read).
pub fn ask(
    cfg: &BudgetConfig,
    generates: bool,
    req: Option<&Request>,
    body_len: usize,
    price: Option<&Price>,
) -> Ask {
    let input = estimate_input_tokens(body_len);
    let choices = req.and_then(|r| r.choice_count).unwrap_or(1).clamp(1, 128);
    let (per_choice, declared) = match req.and_then(|r| r.max_tokens) {
        _ if !generates => (0, true),
        Some(m) => (m, true),
        None => (cfg.default_max_output_tokens, false),
    };
    let output = per_choice.saturating_mul(choices);
    let min_output = match cfg.clamp_min {
        Some(min) if generates => min.saturating_mul(choices).min(output),
        _ => output,
    };
    let (input_cost_pico, output_price_pico) = price.map_or((0, 0), |p| {
        (input.saturating_mul(p.input_pico_worst()), p.output_pico())
    });
    Ask {
        want: Want {
            input,
            output,
            min_output,
            input_cost_pico,
            output_price_pico,
        },
        choices,
        declared,
    }
}

/// What to commit when the call is over: the provider's usage; what is missing is taken from the
/// reservation's estimate (input) or counted as 0 (output nobody saw). Errors the provider answered without
/// usage (4xx/5xx) charge nothing.
pub fn actual(
    usage: &Usage,
    provider_error: bool,
    input_estimate: u64,
    price: Option<&Price>,
) -> Amount {
    let input = match usage.input {
        Some(i) => i,
        None if provider_error && usage.output.is_none() => 0,
        None => input_estimate,
    };
    let output = usage.output.unwrap_or(0);
    let filled = Usage {
        input: Some(input),
        output: Some(output),
        ..*usage
    };
    Amount {
        tokens: input.saturating_add(output),
        input,
        output,
        cost_pico: price.map_or(0, |p| p.cost_pico(&filled)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> BudgetConfig {
        BudgetConfig::parse(v).unwrap()
    }

    #[test]
    fn named_rules_replace_star_rules_and_models_filter() {
        let c = cfg(json!([
            {"tenant": "team-a", "window": "1h", "tokens": 1000},
            {"tenant": "*", "window": "1h", "tokens": 100},
            {"tenant": "*", "window": "1d", "tokens": 500, "models": ["gpt-4o*"]}
        ]));
        let a = counters(&c, "team-a", Some("gpt-4o"));
        assert_eq!(a.iter().map(|s| s.rule).collect::<Vec<_>>(), vec![0]);
        let b = counters(&c, "team-b", Some("gpt-4o-mini"));
        assert_eq!(b.iter().map(|s| s.rule).collect::<Vec<_>>(), vec![1, 2]);
        let b2 = counters(&c, "team-b", Some("claude"));
        assert_eq!(b2.iter().map(|s| s.rule).collect::<Vec<_>>(), vec![1]);
        assert_eq!(counters(&c, "team-b", None).len(), 1);
        // Each tenant has its own counter under a "*" rule.
        assert_ne!(
            counters(&c, "x", None)[0].key,
            counters(&c, "y", None)[0].key
        );
    }

    #[test]
    fn an_unread_body_counts_against_every_rule_of_its_tenant() {
        let c = cfg(json!([
            {"tenant": "*", "window": "1h", "tokens": 100},
            {"tenant": "*", "window": "1d", "tokens": 500, "models": ["gpt-4o*"]},
            {"tenant": "team-a", "window": "1d", "tokens": 9, "models": ["claude*"]}
        ]));
        // Its model is unknown: model-scoped rules count it too, so padding past max_request_body does not
        // escape them.
        let rules = |t| {
            counters_any_model(&c, t)
                .iter()
                .map(|s| s.rule)
                .collect::<Vec<_>>()
        };
        assert_eq!(rules("team-b"), vec![0, 1]);
        assert_eq!(rules("team-a"), vec![2]);
        assert_eq!(counters(&c, "team-b", None).len(), 1);
        assert!(may_deny(&c, "team-b") && may_deny(&c, "team-a"));
        let dry =
            cfg(json!({"rules": [{"tenant": "x", "window": "1h", "tokens": 1}], "dry_run": true}));
        assert!(!may_deny(&dry, "x"), "dry-run never refuses");
        let dry_clamp = cfg(
            json!({"rules": [{"tenant": "x", "window": "1h", "tokens": 1}],
                                   "dry_run": true, "clamp_max_tokens": true}),
        );
        assert!(
            may_deny(&dry_clamp, "x"),
            "a clamp that cannot be applied refuses"
        );
        assert!(!may_deny(&dry_clamp, "y"), "no rule covers y");
    }

    #[test]
    fn fingerprints_survive_reordering_and_limit_changes() {
        let a = cfg(json!([{"tenant": "*", "window": "1h", "tokens": 100, "models": ["a", "b"]}]));
        let b = cfg(json!({"rules": [
            {"tenant": "t", "window": 60, "tokens": 5},
            {"tenant": "*", "window": "60m", "tokens": 999, "models": ["b", "a"]}
        ]}));
        assert_eq!(a.rules[0].fingerprint, b.rules[1].fingerprint);
        assert_ne!(b.rules[0].fingerprint, b.rules[1].fingerprint);
    }

    #[test]
    fn ask_covers_choices_default_and_clamp_minimum() {
        let c = cfg(
            json!({"rules": [{"tenant": "*", "window": "1h", "tokens": 100}],
                            "default_max_output_tokens": 1000, "clamp_max_tokens": {"min": 50}}),
        );
        let req = Request {
            max_tokens: Some(200),
            choice_count: Some(2),
            ..Request::default()
        };
        let a = ask(&c, true, Some(&req), 84, None);
        assert_eq!(
            (a.want.input, a.want.output, a.want.min_output, a.choices),
            (100, 400, 100, 2)
        );
        let none = ask(&c, true, None, 0, None);
        assert_eq!((none.want.output, none.declared), (1000, false));
        let emb = ask(&c, false, None, 10, None);
        assert_eq!(emb.want.output, 0);
        let price = Price {
            input: 1.0,
            output: 2.0,
            cache_read: None,
            cache_write: Some(4.0),
        };
        let p = ask(&c, true, Some(&req), 84, Some(&price));
        assert_eq!(p.want.input_cost_pico, 100 * 4_000_000);
        assert_eq!(p.want.output_price_pico, 2_000_000);
    }

    #[test]
    fn actual_fills_what_is_unknown() {
        let u = Usage {
            input: Some(10),
            output: Some(5),
            ..Usage::default()
        };
        assert_eq!(actual(&u, false, 99, None).tokens, 15);
        assert_eq!(actual(&Usage::default(), false, 99, None).tokens, 99);
        assert_eq!(actual(&Usage::default(), true, 99, None).tokens, 0);
        let price = Price {
            input: 1.0,
            output: 1.0,
            cache_read: None,
            cache_write: None,
        };
        assert_eq!(actual(&u, false, 0, Some(&price)).cost_pico, 15_000_000);
    }

    #[test]
    fn config_errors_name_the_key() {
        let key = |v: serde_json::Value| BudgetConfig::parse(v).unwrap_err().key;
        assert_eq!(key(json!([{"tenant": "*", "window": "1h"}])), "budgets[0]");
        assert_eq!(
            key(json!([{"tenant": "*", "window": "1w", "tokens": 1}])),
            "budgets[0].window"
        );
        assert_eq!(
            key(json!([{"tenant": "*", "window": 0, "tokens": 1}])),
            "budgets[0].window"
        );
        assert_eq!(
            key(json!([{"tenant": "a b", "window": "1h", "tokens": 1}])),
            "budgets[0].tenant"
        );
        assert_eq!(
            key(json!([{"tenant": "*", "window": "1h", "tokens": 0}])),
            "budgets[0].tokens"
        );
        assert_eq!(
            key(json!([{"tenant": "*", "window": "1h", "cost_usd": -1}])),
            "budgets[0].cost_usd"
        );
        assert_eq!(
            key(json!([{"tenant": "*", "window": "1h", "tokens": "x"}])),
            "budgets[0].tokens"
        );
        assert_eq!(
            key(json!([{"tenant": "*", "window": "1h", "tokens": 1, "typo": 1}])),
            "budgets[0].typo"
        );
        assert_eq!(
            key(
                json!([{"tenant": "*", "window": "1h", "tokens": 1}, {"tenant": "*", "window": 3600, "output_tokens": 1}])
            ),
            "budgets[1]"
        );
        assert_eq!(
            key(json!({"rules": [{"tenant": "*", "window": "1h", "tokens": 1}], "backend": "rls"})),
            "budgets.rls"
        );
        assert_eq!(
            key(
                json!({"rules": [{"tenant": "*", "window": "1h", "tokens": 1}], "backend": "redis"})
            ),
            "budgets.backend"
        );
        assert_eq!(
            key(
                json!({"rules": [{"tenant": "*", "window": "1h", "tokens": 1}], "rls": {"cluster": "r", "timeout_ms": 0}})
            ),
            "budgets.rls.timeout_ms"
        );
        assert_eq!(
            key(
                json!({"rules": [{"tenant": "*", "window": "1h", "tokens": 1}], "rls": {"cluster": "r", "failure_mode": "maybe"}})
            ),
            "budgets.rls.failure_mode"
        );
        assert_eq!(
            key(
                json!({"rules": [{"tenant": "*", "window": "1h", "tokens": 1}], "clamp_max_tokens": {"min": 0}})
            ),
            "budgets.clamp_max_tokens.min"
        );
        assert_eq!(
            key(
                json!({"rules": [{"tenant": "*", "window": "1h", "tokens": 1}], "reservation_ttl_s": 1})
            ),
            "budgets.reservation_ttl_s"
        );
        assert_eq!(key(json!({"rules": []})), "budgets.rules");
        assert_eq!(
            key(json!({"rules": [{"tenant": "*", "window": "1h"}]})),
            "budgets.rules[0]"
        );
        assert_eq!(key(json!(5)), "budgets");
        let e =
            BudgetConfig::parse(json!([{"tenant": "*", "window": "1w", "tokens": 1}])).unwrap_err();
        assert!(e.reason.contains("unit"), "{e:?}");
    }

    #[test]
    fn full_object_and_rls_keys() {
        let c = cfg(json!({
            "backend": "rls", "rules": [{"tenant": "*", "window": "30d", "cost_usd": 12.5, "models": ["gpt-4o*"]}],
            "default_max_output_tokens": 512, "dry_run": true,
            "response_headers": false, "reservation_ttl_s": 60, "max_tenants": 50,
            "rls": {"cluster": "ratelimit", "timeout_ms": 250, "failure_mode": "closed"}
        }));
        assert_eq!(c.backend, BackendKind::Rls);
        let rls = c.rls.unwrap();
        assert_eq!(
            (rls.authority.as_str(), rls.domain.as_str(), rls.timeout_ms),
            ("ratelimit", "tollgate", 250)
        );
        assert_eq!(rls.failure_mode, FailureMode::Closed);
        assert_eq!(c.rules[0].window_s, 30 * 86_400);
        assert_eq!(c.rules[0].limits.cost_pico, Some(12_500_000_000_000));
        assert_eq!(
            (c.clamp_min, c.dry_run, c.response_headers),
            (None, true, false)
        );
        assert_eq!(c.rules[0].name, "rules[0]");
    }

    #[test]
    fn tenant_config_forms() {
        let t =
            TenantConfig::parse(json!({"header": "X-Tenant-Id", "default": "anonymous"})).unwrap();
        assert_eq!(t.source, TenantSource::Header("x-tenant-id".into()));
        let t = TenantConfig::parse(json!({"jwt_claim": "sub"})).unwrap();
        assert_eq!(
            t.source,
            TenantSource::JwtClaim {
                claim: "sub".into(),
                metadata_key: "jwt_payload".into()
            }
        );
        let t = TenantConfig::parse(json!({"api_key_hash": true, "default": "nokey"})).unwrap();
        assert_eq!(
            (t.source, t.default.as_str()),
            (TenantSource::ApiKeyHash, "nokey")
        );
        let key = |v: serde_json::Value| TenantConfig::parse(v).unwrap_err().key;
        assert_eq!(key(json!({"header": "a", "jwt_claim": "b"})), "tenant");
        assert_eq!(key(json!({})), "tenant");
        assert_eq!(
            key(json!({"header": "a", "default": "no spaces"})),
            "tenant.default"
        );
        assert_eq!(key(json!({"header": "a b"})), "tenant.header");
        assert_eq!(
            key(json!({"header": "a", "metadata_key": "m"})),
            "tenant.metadata_key"
        );
        assert_eq!(key(json!({"header": "a", "nope": 1})), "tenant.nope");
        // The caller's workload identity: a shorthand, or rules whose errors name the rule and field.
        let t = TenantConfig::parse(json!({"peer_identity": "{namespace}"})).unwrap();
        assert_eq!(
            t.source,
            TenantSource::PeerIdentity(vec![
                tenant::IdentityRule::parse("*", "{namespace}").unwrap()
            ])
        );
        let t = TenantConfig::parse(json!({"peer_identity": [
            {"match": "spiffe://cluster.local/ns/payments-*", "tenant": "payments"},
            {"match": "spiffe://cluster.local/*", "tenant": "{namespace}"}
        ]}))
        .unwrap();
        let TenantSource::PeerIdentity(rules) = &t.source else {
            panic!("{t:?}")
        };
        assert_eq!(rules.len(), 2);
        assert_eq!(
            key(json!({"peer_identity": "{pod}"})),
            "tenant.peer_identity"
        );
        assert_eq!(key(json!({"peer_identity": []})), "tenant.peer_identity");
        assert_eq!(
            key(
                json!({"peer_identity": [{"match": "a*", "tenant": "{namespace}"}, {"match": "a*", "tenant": "{pod}"}]})
            ),
            "tenant.peer_identity[1].tenant"
        );
        assert_eq!(
            key(json!({"peer_identity": [{"match": "", "tenant": "t"}]})),
            "tenant.peer_identity[0].match"
        );
        assert_eq!(
            key(json!({"peer_identity": [{"tenant": "t"}]})),
            "tenant.peer_identity[0]"
        );
        assert_eq!(
            key(json!({"peer_identity": "{namespace}", "header": "x"})),
            "tenant"
        );
    }
}
