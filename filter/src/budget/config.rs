//! `tenant` and `budgets` plugin JSON → validated rules. Parsed from the raw JSON values the top-level
//! config hands over, so every error names its full key (`budgets.rules[2].window`).

use super::tenant::{valid_tenant, IdentityRule};
use crate::codec::json::strict::{
    boolean, float, items, object, opt, required, string, strings, uint, under, variant,
    ConfigError,
};
use crate::codec::json::tape::Value;

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
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
    /// The caller's mTLS workload identity (its client certificate's URI SAN), mapped by the first rule
    /// that matches. Unforgeable when the listener requires client certificates from a CA it trusts.
    PeerIdentity(Vec<IdentityRule>),
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

struct RawTenant {
    header: Option<String>,
    jwt_claim: Option<String>,
    metadata_key: Option<String>,
    api_key_hash: Option<bool>,
    peer_identity: Option<Vec<IdentityRule>>,
    default: Option<String>,
}

impl RawTenant {
    fn read(v: Value) -> Result<Self, ConfigError> {
        let mut r = RawTenant {
            header: None,
            jwt_claim: None,
            metadata_key: None,
            api_key_hash: None,
            peer_identity: None,
            default: None,
        };
        object(
            v,
            &[
                "header",
                "jwt_claim",
                "metadata_key",
                "api_key_hash",
                "peer_identity",
                "default",
            ],
            &mut |i, v| {
                match i {
                    0 => r.header = opt(v, string)?,
                    1 => r.jwt_claim = opt(v, string)?,
                    2 => r.metadata_key = opt(v, string)?,
                    3 => r.api_key_hash = opt(v, boolean)?,
                    4 => r.peer_identity = opt(v, peer_identity)?,
                    _ => r.default = opt(v, string)?,
                }
                Ok(())
            },
        )?;
        Ok(r)
    }
}

/// `tenant.peer_identity`: a tenant template for every identity (`"{namespace}"`), or a list of
/// `{"match": <glob>, "tenant": <template>}` rules, the first that applies winning.
fn peer_identity(v: Value) -> Result<Vec<IdentityRule>, ConfigError> {
    let rule = |pattern: &str, tenant: &str| {
        IdentityRule::parse(pattern, tenant).map_err(|field| {
            let reason = match field {
                "match" => "must not be empty",
                _ => super::tenant::BAD_TEMPLATE,
            };
            err(field, reason)
        })
    };
    if let Some(template) = v.str() {
        return Ok(vec![rule("*", &template).map_err(|e| err("", e.reason))?]);
    }
    let mut rules = Vec::new();
    items(v, &mut |v| {
        let (mut pattern, mut tenant) = (None, None);
        object(v, &["match", "tenant"], &mut |i, v| {
            match i {
                0 => pattern = Some(string(v)?),
                _ => tenant = Some(string(v)?),
            }
            Ok(())
        })?;
        rules.push(rule(
            &required(pattern, "match")?,
            &required(tenant, "tenant")?,
        )?);
        Ok(())
    })?;
    if rules.is_empty() {
        return Err(err("", "needs at least one rule"));
    }
    Ok(rules)
}

impl TenantConfig {
    /// Tests: `read` of a `json!` value.
    #[cfg(test)]
    pub fn parse(v: serde_json::Value) -> Result<TenantConfig, ConfigError> {
        crate::codec::json::strict::read_json(&v, Self::read)
    }

    /// The `tenant` key.
    pub fn read(v: Value) -> Result<TenantConfig, ConfigError> {
        let r = RawTenant::read(v).map_err(|e| under(e, "tenant"))?;
        let default = r.default.unwrap_or_else(|| "anonymous".into());
        if !valid_tenant(&default) {
            return Err(err(
                "tenant.default",
                "must be 1-64 characters of [A-Za-z0-9._:@-]",
            ));
        }
        let sources = usize::from(r.header.is_some())
            + usize::from(r.jwt_claim.is_some())
            + usize::from(r.api_key_hash == Some(true))
            + usize::from(r.peer_identity.is_some());
        if sources != 1 {
            return Err(err(
                "tenant",
                "set exactly one of `header`, `jwt_claim`, `api_key_hash: true` or `peer_identity`",
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
        } else if let Some(rules) = r.peer_identity {
            TenantSource::PeerIdentity(rules)
        } else {
            TenantSource::ApiKeyHash
        };
        Ok(TenantConfig { source, default })
    }
}

/// Which engine keeps the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// Envoy shared data: exact across the workers of one Envoy process.
    #[default]
    Local,
    /// An Envoy rate-limit service (`envoy.service.ratelimit.v3`), shared by several gateway replicas.
    Rls,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
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

struct RawRls {
    cluster: String,
    authority: Option<String>,
    domain: Option<String>,
    timeout_ms: Option<u64>,
    failure_mode: FailureMode,
}

impl RawRls {
    fn read(v: Value) -> Result<Self, ConfigError> {
        let (mut cluster, mut authority, mut domain, mut timeout_ms) = (None, None, None, None);
        let mut failure_mode = FailureMode::Open;
        object(
            v,
            &[
                "cluster",
                "authority",
                "domain",
                "timeout_ms",
                "failure_mode",
            ],
            &mut |i, v| {
                match i {
                    0 => cluster = Some(string(v)?),
                    1 => authority = opt(v, string)?,
                    2 => domain = opt(v, string)?,
                    3 => timeout_ms = opt(v, uint)?,
                    _ => {
                        if variant(v, &["open", "closed"])? == 1 {
                            failure_mode = FailureMode::Closed;
                        }
                    }
                }
                Ok(())
            },
        )?;
        Ok(RawRls {
            cluster: required(cluster, "cluster")?,
            authority,
            domain,
            timeout_ms,
            failure_mode,
        })
    }
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

/// The full form of `budgets`; rules and nested objects stay on the tape until validation reaches them.
struct RawBudgets<'t, 'de> {
    backend: BackendKind,
    rules: Vec<Value<'t, 'de>>,
    default_max_output_tokens: Option<u64>,
    clamp_max_tokens: Option<Value<'t, 'de>>,
    dry_run: bool,
    response_headers: Option<bool>,
    reservation_ttl_s: Option<u64>,
    max_tenants: Option<u64>,
    rls: Option<Value<'t, 'de>>,
}

impl<'t, 'de> RawBudgets<'t, 'de> {
    fn new(rules: Vec<Value<'t, 'de>>) -> Self {
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
        }
    }

    fn read(v: Value<'t, 'de>) -> Result<Self, ConfigError> {
        let mut r = RawBudgets::new(Vec::new());
        let mut rules = None;
        object(
            v,
            &[
                "backend",
                "rules",
                "default_max_output_tokens",
                "clamp_max_tokens",
                "dry_run",
                "response_headers",
                "reservation_ttl_s",
                "max_tenants",
                "rls",
            ],
            &mut |i, v| {
                match i {
                    0 => {
                        if variant(v, &["local", "rls"])? == 1 {
                            r.backend = BackendKind::Rls;
                        }
                    }
                    1 => {
                        let mut list = Vec::new();
                        items(v, &mut |v| {
                            list.push(v);
                            Ok(())
                        })?;
                        rules = Some(list);
                    }
                    2 => r.default_max_output_tokens = opt(v, uint)?,
                    3 => r.clamp_max_tokens = opt(v, Ok)?,
                    4 => r.dry_run = boolean(v)?,
                    5 => r.response_headers = opt(v, boolean)?,
                    6 => r.reservation_ttl_s = opt(v, uint)?,
                    7 => r.max_tenants = opt(v, uint)?,
                    _ => r.rls = opt(v, Ok)?,
                }
                Ok(())
            },
        )?;
        r.rules = required(rules, "rules")?;
        Ok(r)
    }
}

struct RawRule<'t, 'de> {
    tenant: String,
    window: Value<'t, 'de>,
    tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cost_usd: Option<f64>,
    models: Option<Vec<String>>,
}

impl<'t, 'de> RawRule<'t, 'de> {
    fn read(v: Value<'t, 'de>) -> Result<Self, ConfigError> {
        let (mut tenant, mut window) = (None, None);
        let (mut tokens, mut input_tokens, mut output_tokens) = (None, None, None);
        let (mut cost_usd, mut models) = (None, None);
        object(
            v,
            &[
                "tenant",
                "window",
                "tokens",
                "input_tokens",
                "output_tokens",
                "cost_usd",
                "models",
            ],
            &mut |i, v| {
                match i {
                    0 => tenant = Some(string(v)?),
                    1 => window = Some(v),
                    2 => tokens = opt(v, uint)?,
                    3 => input_tokens = opt(v, uint)?,
                    4 => output_tokens = opt(v, uint)?,
                    5 => cost_usd = opt(v, float)?,
                    _ => models = opt(v, strings)?,
                }
                Ok(())
            },
        )?;
        Ok(RawRule {
            tenant: required(tenant, "tenant")?,
            window: required(window, "window")?,
            tokens,
            input_tokens,
            output_tokens,
            cost_usd,
            models,
        })
    }
}

/// "1m" | "1h" | "1d" | "30d" | "90s" | 3600 → seconds (1 s to 366 days).
pub fn parse_window(v: Value) -> Result<u64, String> {
    let secs = if let Some(s) = v.str() {
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
    } else if v.f64().is_some() {
        v.u64().ok_or("must be a positive integer of seconds")?
    } else {
        return Err("must be a duration like \"1h\" or seconds".into());
    };
    if secs == 0 || secs > 366 * 86_400 {
        return Err("must be between 1 second and 366 days".into());
    }
    Ok(secs)
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
    crate::sort::sort_by(&mut m, |a, b| a < b);
    m.dedup();
    for model in m {
        h.update(b"\0");
        h.update(model.as_bytes());
    }
    crate::codec::hex::hex(h.finalize().get(..8).unwrap_or_default())
}

fn rule(key: &str, v: Value) -> Result<Rule, ConfigError> {
    let r = RawRule::read(v).map_err(|e| under(e, key))?;
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
    let window_s = parse_window(r.window).map_err(|e| err(format!("{key}.window"), e))?;
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
            crate::pricing::usd_to_pico(c)
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
    /// Tests: `read` of a `json!` value.
    #[cfg(test)]
    pub fn parse(v: serde_json::Value) -> Result<BudgetConfig, ConfigError> {
        crate::codec::json::strict::read_json(&v, Self::read)
    }

    /// `budgets`: a list of rules (shorthand for `{"rules": [...]}`) or the full object.
    pub fn read(v: Value) -> Result<BudgetConfig, ConfigError> {
        let (raw, prefix) = if let Some(rules) = v.elements() {
            (RawBudgets::new(rules.collect()), "budgets")
        } else if v.members().is_some() {
            (
                RawBudgets::read(v).map_err(|e| under(e, "budgets"))?,
                "budgets.rules",
            )
        } else {
            return Err(err(
                "budgets",
                "must be a list of rules or an object with `rules`",
            ));
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
        let clamp_min = match raw.clamp_max_tokens.map(|v| (v, v.bool())) {
            None | Some((_, Some(false))) => None,
            Some((_, Some(true))) => Some(1),
            Some((v, _)) if v.members().is_some() => {
                let mut min = None;
                object(v, &["min"], &mut |_, v| {
                    min = opt(v, uint)?;
                    Ok(())
                })
                .map_err(|e| under(e, "budgets.clamp_max_tokens"))?;
                let min = min.unwrap_or(1);
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
            super::rls::check_rules(&rules).map_err(|(key, why)| err(key, why))?;
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
        let r = RawRls::read(v).map_err(|e| under(e, "budgets.rls"))?;
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
