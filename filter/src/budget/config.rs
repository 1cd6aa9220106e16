//! `tenant` and `budgets` plugin JSON → validated rules. Parsed from the raw JSON values the top-level
//! config hands over, so every error names its full key (`budgets.rules[2].window`).

use super::tenant::valid_tenant;
use crate::config::ConfigError;
use serde::Deserialize;
use serde_json::Value;

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Deserialize `v` as `T`, naming the failing key under `prefix`.
fn typed<T: for<'de> Deserialize<'de>>(prefix: &str, v: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." || path.is_empty() {
            prefix.to_owned()
        } else if path.starts_with('[') {
            format!("{prefix}{path}")
        } else {
            format!("{prefix}.{path}")
        };
        err(key, e.inner().to_string())
    })
}

/// Where a request's tenant comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantSource {
    /// No `tenant` key: every request is the default tenant.
    Fixed,
    /// A request header (lowercase name).
    Header(String),
    /// A claim of the JWT payload Envoy's `jwt_authn` filter wrote to dynamic metadata
    /// (`payload_in_metadata: <metadata_key>`).
    JwtClaim { claim: String, metadata_key: String },
    /// SHA-256 of the API key (bearer token, `x-api-key` or `x-goog-api-key`), hex prefix. Never the key.
    ApiKeyHash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantConfig {
    pub source: TenantSource,
    /// Used when the source yields nothing or an invalid value.
    pub default: String,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            source: TenantSource::Fixed,
            default: "anonymous".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    header: Option<String>,
    jwt_claim: Option<String>,
    metadata_key: Option<String>,
    api_key_hash: Option<bool>,
    default: Option<String>,
}

impl TenantConfig {
    pub fn parse(v: Value) -> Result<TenantConfig, ConfigError> {
        let r: RawTenant = typed("tenant", v)?;
        let default = r.default.unwrap_or_else(|| "anonymous".into());
        if !valid_tenant(&default) {
            return Err(err(
                "tenant.default",
                "must be 1-64 characters of [A-Za-z0-9._:@-]",
            ));
        }
        let sources = usize::from(r.header.is_some())
            + usize::from(r.jwt_claim.is_some())
            + usize::from(r.api_key_hash == Some(true));
        if sources != 1 {
            return Err(err(
                "tenant",
                "set exactly one of `header`, `jwt_claim` or `api_key_hash: true`",
            ));
        }
        if r.metadata_key.is_some() && r.jwt_claim.is_none() {
            return Err(err("tenant.metadata_key", "only valid with `jwt_claim`"));
        }
        let source = if let Some(h) = r.header {
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err("tenant.header", "must be a header name"));
            }
            TenantSource::Header(h.to_ascii_lowercase())
        } else if let Some(claim) = r.jwt_claim {
            if claim.is_empty() {
                return Err(err("tenant.jwt_claim", "must name a claim"));
            }
            let metadata_key = r.metadata_key.unwrap_or_else(|| "jwt_payload".into());
            if metadata_key.is_empty() {
                return Err(err("tenant.metadata_key", "must not be empty"));
            }
            TenantSource::JwtClaim {
                claim,
                metadata_key,
            }
        } else {
            TenantSource::ApiKeyHash
        };
        Ok(TenantConfig { source, default })
    }
}

/// Which engine keeps the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Envoy shared data: exact across the workers of one Envoy process.
    #[default]
    Local,
    /// An Envoy rate-limit service (`envoy.service.ratelimit.v3`), shared by several gateway replicas.
    Rls,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Admit when the rate-limit service is unreachable or slow.
    #[default]
    Open,
    /// Refuse (429) when the rate-limit service is unreachable or slow.
    Closed,
}

/// Connection to a rate-limit service (`budgets.backend = "rls"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RlsConfig {
    /// HTTP/2 Envoy cluster of the service.
    pub cluster: String,
    /// `:authority` of the gRPC calls.
    pub authority: String,
    /// Rate-limit domain sent in every `ShouldRateLimit` request.
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRls {
    cluster: String,
    authority: Option<String>,
    domain: Option<String>,
    timeout_ms: Option<u64>,
    #[serde(default)]
    failure_mode: FailureMode,
}

/// Limits of one rule; at least one is set. Cost is kept in pico-USD so arithmetic stays integral.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Limits {
    pub tokens: Option<u64>,
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cost_pico: Option<u64>,
}

/// Which tenants a rule covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TenantMatch {
    /// This tenant only.
    Named(String),
    /// Every tenant that no `Named` rule mentions, each with its own counter.
    Each,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub tenant: TenantMatch,
    /// Fixed window length in seconds; windows start at multiples of it since the Unix epoch.
    pub window_s: u64,
    pub limits: Limits,
    /// Model patterns (`*` wildcard); empty = every model.
    pub models: Vec<String>,
    /// Stable identity (tenant, window, models) so a reload that keeps the rule keeps its counter.
    pub fingerprint: String,
    /// For humans (span attribute, logs): `rules[i]` in the configuration.
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BudgetConfig {
    pub backend: BackendKind,
    pub rules: Vec<Rule>,
    /// Output tokens reserved when a request declares no maximum.
    pub default_max_output_tokens: u64,
    /// Some(min): lower a request's max output tokens to what the budget allows when ≥ min.
    pub clamp_min: Option<u64>,
    pub dry_run: bool,
    pub response_headers: bool,
    pub reservation_ttl_s: u64,
    /// Distinct (rule, tenant) counters kept in shared data; further tenants share one overflow counter.
    pub max_tenants: u64,
    pub rls: Option<RlsConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    #[serde(default)]
    backend: BackendKind,
    rules: Vec<Value>,
    default_max_output_tokens: Option<u64>,
    clamp_max_tokens: Option<Value>,
    #[serde(default)]
    dry_run: bool,
    response_headers: Option<bool>,
    reservation_ttl_s: Option<u64>,
    max_tenants: Option<u64>,
    rls: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClamp {
    min: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    tenant: String,
    window: Value,
    tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_usd: Option<f64>,
    models: Option<Vec<String>>,
}

/// "1m" | "1h" | "1d" | "30d" | "90s" | 3600 → seconds (1 s to 366 days).
pub fn parse_window(v: &Value) -> Result<u64, String> {
    let secs = match v {
        Value::Number(n) => n.as_u64().ok_or("must be a positive integer of seconds")?,
        Value::String(s) => {
            let s = s.trim();
            let split = s
                .find(|c: char| !c.is_ascii_digit())
                .ok_or("needs a unit: s, m, h or d")?;
            let (num, unit) = s.split_at_checked(split).ok_or("bad window")?;
            let n: u64 = num
                .parse()
                .map_err(|_| "must start with a number, like \"1h\"")?;
            let mult = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3_600,
                "d" => 86_400,
                _ => return Err(format!("unknown unit `{unit}`, expected s, m, h or d")),
            };
            n.checked_mul(mult).ok_or("too large")?
        }
        _ => return Err("must be a duration like \"1h\" or seconds".into()),
    };
    if secs == 0 || secs > 366 * 86_400 {
        return Err("must be between 1 second and 366 days".into());
    }
    Ok(secs)
}

/// USD → pico-USD, rounded up (never under-charge).
pub fn usd_to_pico(usd: f64) -> Option<u64> {
    if !usd.is_finite() || usd < 0.0 {
        return None;
    }
    let p = (usd * 1e12).ceil();
    if p >= u64::MAX as f64 {
        None
    } else {
        Some(p as u64)
    }
}

fn fingerprint(tenant: &TenantMatch, window_s: u64, models: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    match tenant {
        TenantMatch::Named(t) => {
            h.update(b"named\0");
            h.update(t.as_bytes());
        }
        TenantMatch::Each => h.update(b"each"),
    }
    h.update(b"\0");
    h.update(window_s.to_le_bytes());
    let mut m: Vec<&String> = models.iter().collect();
    m.sort();
    m.dedup();
    for model in m {
        h.update(b"\0");
        h.update(model.as_bytes());
    }
    crate::telemetry::trace::hex(h.finalize().get(..8).unwrap_or_default())
}

fn rule(key: &str, v: Value) -> Result<Rule, ConfigError> {
    let r: RawRule = typed(key, v)?;
    let tenant = if r.tenant == "*" {
        TenantMatch::Each
    } else if valid_tenant(&r.tenant) {
        TenantMatch::Named(r.tenant)
    } else {
        return Err(err(
            format!("{key}.tenant"),
            "must be \"*\" or 1-64 characters of [A-Za-z0-9._:@-]",
        ));
    };
    let window_s = parse_window(&r.window).map_err(|e| err(format!("{key}.window"), e))?;
    for (name, v) in [
        ("tokens", r.tokens),
        ("input_tokens", r.input_tokens),
        ("output_tokens", r.output_tokens),
    ] {
        if v == Some(0) {
            return Err(err(format!("{key}.{name}"), "must be at least 1"));
        }
    }
    let cost_pico = match r.cost_usd {
        None => None,
        Some(c) if c > 0.0 => Some(
            usd_to_pico(c)
                .ok_or_else(|| err(format!("{key}.cost_usd"), "must be a finite amount"))?,
        ),
        Some(_) => return Err(err(format!("{key}.cost_usd"), "must be greater than 0")),
    };
    let limits = Limits {
        tokens: r.tokens,
        input: r.input_tokens,
        output: r.output_tokens,
        cost_pico,
    };
    if limits == Limits::default() {
        return Err(err(
            key,
            "needs at least one limit: tokens, input_tokens, output_tokens or cost_usd",
        ));
    }
    let models = r.models.unwrap_or_default();
    for (i, m) in models.iter().enumerate() {
        if m.is_empty() || m.len() > 256 {
            return Err(err(
                format!("{key}.models[{i}]"),
                "must be a model name or pattern (1-256 characters)",
            ));
        }
    }
    let fingerprint = fingerprint(&tenant, window_s, &models);
    Ok(Rule {
        tenant,
        window_s,
        limits,
        models,
        fingerprint,
        name: key.trim_start_matches("budgets.").to_owned(),
    })
}

impl BudgetConfig {
    /// `budgets`: a list of rules (shorthand for `{"rules": [...]}`) or the full object.
    pub fn parse(v: Value) -> Result<BudgetConfig, ConfigError> {
        let (raw, prefix) = match v {
            Value::Array(rules) => (
                RawBudgets {
                    backend: BackendKind::Local,
                    rules,
                    default_max_output_tokens: None,
                    clamp_max_tokens: None,
                    dry_run: false,
                    response_headers: None,
                    reservation_ttl_s: None,
                    max_tenants: None,
                    rls: None,
                },
                "budgets",
            ),
            v @ Value::Object(_) => (typed::<RawBudgets>("budgets", v)?, "budgets.rules"),
            _ => {
                return Err(err(
                    "budgets",
                    "must be a list of rules or an object with `rules`",
                ))
            }
        };
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
        for (i, v) in raw.rules.into_iter().enumerate() {
            let key = format!("{prefix}[{i}]");
            let r = rule(&key, v)?;
            if let Some(prev) = rules.iter().find(|p| p.fingerprint == r.fingerprint) {
                return Err(err(
                    key,
                    format!(
                        "same tenant, window and models as {}; put all limits in one rule",
                        prev.name
                    ),
                ));
            }
            rules.push(r);
        }
        if rules.is_empty() {
            return Err(err(prefix, "needs at least one rule"));
        }
        let default_max_output_tokens = raw.default_max_output_tokens.unwrap_or(4096);
        if default_max_output_tokens == 0 || default_max_output_tokens > 10_000_000 {
            return Err(err(
                "budgets.default_max_output_tokens",
                "must be between 1 and 10000000",
            ));
        }
        let clamp_min = match raw.clamp_max_tokens {
            None | Some(Value::Bool(false)) => None,
            Some(Value::Bool(true)) => Some(1),
            Some(v @ Value::Object(_)) => {
                let c: RawClamp = typed("budgets.clamp_max_tokens", v)?;
                let min = c.min.unwrap_or(1);
                if min == 0 {
                    return Err(err("budgets.clamp_max_tokens.min", "must be at least 1"));
                }
                Some(min)
            }
            Some(_) => {
                return Err(err(
                    "budgets.clamp_max_tokens",
                    "must be false, true or {\"min\": N}",
                ))
            }
        };
        let reservation_ttl_s = raw.reservation_ttl_s.unwrap_or(600);
        if !(10..=86_400).contains(&reservation_ttl_s) {
            return Err(err(
                "budgets.reservation_ttl_s",
                "must be between 10 and 86400",
            ));
        }
        let max_tenants = raw.max_tenants.unwrap_or(10_000);
        if !(1..=1_000_000).contains(&max_tenants) {
            return Err(err("budgets.max_tenants", "must be between 1 and 1000000"));
        }
        let rls = raw.rls.map(Self::rls).transpose()?;
        if raw.backend == BackendKind::Rls && rls.is_none() {
            return Err(err("budgets.rls", "required when backend is \"rls\""));
        }
        if raw.backend == BackendKind::Rls {
            crate::rls::check_rules(&rules).map_err(|(key, why)| err(key, why))?;
            if clamp_min.is_some() {
                return Err(err(
                    "budgets.clamp_max_tokens",
                    "not available with backend \"rls\" (the service keeps no reservations to clamp against)",
                ));
            }
        }
        Ok(BudgetConfig {
            backend: raw.backend,
            rules,
            default_max_output_tokens,
            clamp_min,
            dry_run: raw.dry_run,
            response_headers: raw.response_headers.unwrap_or(true),
            reservation_ttl_s,
            max_tenants,
            rls,
        })
    }

    fn rls(v: Value) -> Result<RlsConfig, ConfigError> {
        let r: RawRls = typed("budgets.rls", v)?;
        if r.cluster.is_empty() {
            return Err(err("budgets.rls.cluster", "must name an Envoy cluster"));
        }
        let domain = r.domain.unwrap_or_else(|| "tollgate".into());
        if domain.is_empty() {
            return Err(err("budgets.rls.domain", "must not be empty"));
        }
        let timeout_ms = r.timeout_ms.unwrap_or(100);
        if !(1..=10_000).contains(&timeout_ms) {
            return Err(err("budgets.rls.timeout_ms", "must be between 1 and 10000"));
        }
        Ok(RlsConfig {
            authority: r.authority.unwrap_or_else(|| r.cluster.clone()),
            cluster: r.cluster,
            domain,
            timeout_ms,
            failure_mode: r.failure_mode,
        })
    }
}
