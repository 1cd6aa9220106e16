//! Plugin JSON → validated, compiled configuration. Parsed once in `on_configure`; any error rejects the
//! configuration (Envoy then refuses the listener update or fails start-up) with a message naming the key.

use crate::call::Api;
use crate::providers::RouteRule;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Which generation of GenAI semantic-convention names to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Semconv {
    /// The widely deployed names (semconv v1.37–v1.41): what today's dashboards key on.
    #[default]
    Default,
    /// The newest experimental names, in addition to the default ones.
    Latest,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Otlp {
    /// Envoy cluster the collector is reached through.
    pub cluster: String,
    /// `:authority` sent to the collector.
    pub authority: String,
    pub traces_path: String,
    pub metrics_path: String,
    pub timeout_ms: u64,
    pub flush_interval_ms: u64,
    /// Spans per export request.
    pub max_batch: usize,
    /// Spans held while the collector is slow or down; beyond it new spans are dropped and counted.
    pub max_queue: usize,
    /// Extra request headers (e.g. authorization for a SaaS collector).
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub service_name: String,
    /// Extra OTLP resource attributes.
    pub resource: Vec<(String, String)>,
    /// None: telemetry export disabled (stats still work).
    pub otlp: Option<Otlp>,
    pub routes: Vec<RouteRule>,
    /// Add `stream_options.include_usage` to OpenAI-shaped streaming requests that lack it (and strip the
    /// extra usage chunk from the client's stream).
    pub include_usage: bool,
    pub capture_content: bool,
    /// Request header carrying `gen_ai.conversation.id`, lowercase.
    pub conversation_id_header: Option<String>,
    pub semconv: Semconv,
    /// Also emit the deprecated `gen_ai.system` attribute.
    pub emit_gen_ai_system: bool,
    /// Head sampling ratio for traces without a sampled parent decision, 0.0–1.0.
    pub sampling_ratio: f64,
    /// Largest request body tollgate buffers to inspect; larger ones pass through uninspected.
    pub max_request_body: usize,
    /// Largest non-streamed response body kept for inspection.
    pub max_response_body: usize,
    /// Largest single streamed event kept for inspection.
    pub max_event: usize,
    /// How requests map to tenants (`tenant`).
    pub tenant: crate::budget::TenantConfig,
    /// Token and cost budgets (`budgets`); None = no enforcement.
    pub budgets: Option<crate::budget::BudgetConfig>,
    /// USD per million tokens by model pattern (`pricing`).
    pub pricing: crate::pricing::Pricing,
}

impl Default for Config {
    fn default() -> Self {
        // Never fails: the empty object is a valid configuration.
        Config::from_raw(Raw::default()).unwrap_or_else(|_| Config::fallback())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    service_name: Option<String>,
    resource: BTreeMap<String, String>,
    otlp: Option<RawOtlp>,
    routes: Vec<RawRoute>,
    include_usage: Option<bool>,
    capture_content: bool,
    conversation_id_header: Option<String>,
    semconv: Semconv,
    emit_gen_ai_system: bool,
    sampling_ratio: Option<f64>,
    max_request_body: Option<u64>,
    max_response_body: Option<u64>,
    max_event: Option<u64>,
    tenant: Option<serde_json::Value>,
    budgets: Option<serde_json::Value>,
    pricing: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    cluster: String,
    authority: Option<String>,
    traces_path: Option<String>,
    metrics_path: Option<String>,
    timeout_ms: Option<u64>,
    flush_interval_ms: Option<u64>,
    max_batch: Option<u64>,
    max_queue: Option<u64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    host: String,
    #[serde(default)]
    path_prefix: String,
    api: Option<String>,
    provider: String,
}

/// A configuration error: the key path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "invalid tollgate configuration: {}", self.reason)
        } else {
            write!(
                f,
                "invalid tollgate configuration: {}: {}",
                self.key, self.reason
            )
        }
    }
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

const MIB: u64 = 1024 * 1024;

fn size(key: &str, v: Option<u64>, default: u64, max: u64) -> Result<usize, ConfigError> {
    let v = v.unwrap_or(default);
    if v == 0 || v > max {
        return Err(err(key, format!("must be between 1 and {max}")));
    }
    usize::try_from(v).map_err(|_| err(key, "too large for this platform"))
}

impl Config {
    /// Parse plugin JSON. Empty input means "all defaults".
    pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Config::from_raw(Raw::default());
        }
        let de = &mut serde_json::Deserializer::from_slice(json);
        let raw: Raw = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            err(key, e.inner().to_string())
        })?;
        Config::from_raw(raw)
    }

    fn fallback() -> Config {
        Config {
            service_name: "tollgate".into(),
            resource: Vec::new(),
            otlp: None,
            routes: Vec::new(),
            include_usage: true,
            capture_content: false,
            conversation_id_header: None,
            semconv: Semconv::Default,
            emit_gen_ai_system: false,
            sampling_ratio: 1.0,
            max_request_body: 8 << 20,
            max_response_body: 8 << 20,
            max_event: 256 << 10,
            tenant: crate::budget::TenantConfig::default(),
            budgets: None,
            pricing: crate::pricing::Pricing::default(),
        }
    }

    fn from_raw(raw: Raw) -> Result<Config, ConfigError> {
        let service_name = raw.service_name.unwrap_or_else(|| "tollgate".into());
        if service_name.is_empty() {
            return Err(err("service_name", "must not be empty"));
        }
        let otlp = raw.otlp.map(Self::otlp).transpose()?;
        let mut routes = Vec::with_capacity(raw.routes.len());
        for (i, r) in raw.routes.into_iter().enumerate() {
            let key = format!("routes[{i}]");
            if r.host.is_empty() || r.host.contains(['/', ' ']) {
                return Err(err(
                    format!("{key}.host"),
                    "must be a host name without scheme, path or port",
                ));
            }
            if !r.path_prefix.is_empty() && !r.path_prefix.starts_with('/') {
                return Err(err(format!("{key}.path_prefix"), "must start with '/'"));
            }
            let api = match r.api.as_deref() {
                None => None,
                Some(name) => Some(Api::from_name(name).ok_or_else(|| {
                    let known: Vec<&str> = Api::ALL.iter().map(|a| a.name()).collect();
                    err(
                        format!("{key}.api"),
                        format!("unknown API `{name}`, expected one of {}", known.join(", ")),
                    )
                })?),
            };
            if r.provider.is_empty() {
                return Err(err(format!("{key}.provider"), "must not be empty"));
            }
            routes.push(RouteRule {
                host: r.host.to_ascii_lowercase(),
                path_prefix: r.path_prefix,
                api,
                provider: r.provider,
            });
        }
        let sampling_ratio = raw.sampling_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sampling_ratio) {
            return Err(err("sampling_ratio", "must be between 0.0 and 1.0"));
        }
        let conversation_id_header = match raw.conversation_id_header {
            Some(h)
                if h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                return Err(err("conversation_id_header", "must be a header name"));
            }
            h => h.map(|h| h.to_ascii_lowercase()),
        };
        Ok(Config {
            service_name,
            resource: raw.resource.into_iter().collect(),
            otlp,
            routes,
            include_usage: raw.include_usage.unwrap_or(true),
            capture_content: raw.capture_content,
            conversation_id_header,
            semconv: raw.semconv,
            emit_gen_ai_system: raw.emit_gen_ai_system,
            sampling_ratio,
            max_request_body: size("max_request_body", raw.max_request_body, 8 * MIB, 64 * MIB)?,
            max_response_body: size(
                "max_response_body",
                raw.max_response_body,
                8 * MIB,
                64 * MIB,
            )?,
            max_event: size("max_event", raw.max_event, 256 * 1024, 16 * MIB)?,
            tenant: raw
                .tenant
                .map(crate::budget::TenantConfig::parse)
                .transpose()?
                .unwrap_or_default(),
            budgets: raw
                .budgets
                .map(crate::budget::BudgetConfig::parse)
                .transpose()?,
            pricing: raw
                .pricing
                .map(crate::pricing::Pricing::parse)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    fn otlp(o: RawOtlp) -> Result<Otlp, ConfigError> {
        if o.cluster.is_empty() {
            return Err(err("otlp.cluster", "must name an Envoy cluster"));
        }
        let path = |key: &str, v: Option<String>, default: &str| -> Result<String, ConfigError> {
            let v = v.unwrap_or_else(|| default.to_owned());
            if v.starts_with('/') {
                Ok(v)
            } else {
                Err(err(key, "must start with '/'"))
            }
        };
        let timeout_ms = o.timeout_ms.unwrap_or(5_000);
        if timeout_ms == 0 || timeout_ms > 60_000 {
            return Err(err("otlp.timeout_ms", "must be between 1 and 60000"));
        }
        let flush_interval_ms = o.flush_interval_ms.unwrap_or(1_000);
        if !(100..=60_000).contains(&flush_interval_ms) {
            return Err(err(
                "otlp.flush_interval_ms",
                "must be between 100 and 60000",
            ));
        }
        let max_batch = size("otlp.max_batch", o.max_batch, 512, 10_000)?;
        let max_queue = size("otlp.max_queue", o.max_queue, 4096, 1_000_000)?;
        if max_queue < max_batch {
            return Err(err("otlp.max_queue", "must be at least otlp.max_batch"));
        }
        for name in o.headers.keys() {
            if name.is_empty()
                || name.starts_with(':')
                || !name.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(err(format!("otlp.headers.{name}"), "invalid header name"));
            }
        }
        Ok(Otlp {
            authority: o.authority.unwrap_or_else(|| o.cluster.clone()),
            cluster: o.cluster,
            traces_path: path("otlp.traces_path", o.traces_path, "/v1/traces")?,
            metrics_path: path("otlp.metrics_path", o.metrics_path, "/v1/metrics")?,
            timeout_ms,
            flush_interval_ms,
            max_batch,
            max_queue,
            headers: o
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_defaults() {
        let c = Config::parse(b"").unwrap();
        assert_eq!(c.service_name, "tollgate");
        assert!(c.include_usage && c.otlp.is_none());
        assert_eq!(Config::parse(b"{}").unwrap(), c);
        assert_eq!(Config::default(), c);
    }

    #[test]
    fn full_config() {
        let c = Config::parse(
            br#"{"service_name":"gw","otlp":{"cluster":"otel","authority":"otel:4318","max_batch":10,"max_queue":20},
                "routes":[{"host":"VLLM.internal","path_prefix":"/v1/","api":"openai.chat","provider":"vllm"}],
                "resource":{"deployment.environment.name":"prod"},"semconv":"latest"}"#,
        )
        .unwrap();
        let o = c.otlp.unwrap();
        assert_eq!(
            (
                o.cluster.as_str(),
                o.authority.as_str(),
                o.traces_path.as_str()
            ),
            ("otel", "otel:4318", "/v1/traces")
        );
        assert_eq!(c.routes[0].host, "vllm.internal");
        assert_eq!(c.routes[0].api, Some(Api::OpenAiChat));
        assert_eq!(c.semconv, Semconv::Latest);
    }

    fn key_of(json: &str) -> String {
        Config::parse(json.as_bytes()).unwrap_err().key
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            key_of(r#"{"otlp":{"cluster":"c","timeout_ms":"x"}}"#),
            "otlp.timeout_ms"
        );
        assert_eq!(
            key_of(r#"{"otlp":{"cluster":"c","bogus":1}}"#),
            "otlp.bogus"
        );
        assert!(Config::parse(br#"{"otlp":{"cluster":"c","bogus":1}}"#)
            .unwrap_err()
            .reason
            .contains("bogus"));
        assert_eq!(
            key_of(r#"{"routes":[{"host":"h","provider":"p","api":"nope"}]}"#),
            "routes[0].api"
        );
        assert_eq!(key_of(r#"{"sampling_ratio":2}"#), "sampling_ratio");
        assert_eq!(key_of(r#"{"otlp":{"cluster":""}}"#), "otlp.cluster");
        assert_eq!(
            key_of(r#"{"otlp":{"cluster":"c","max_batch":100,"max_queue":10}}"#),
            "otlp.max_queue"
        );
        assert!(Config::parse(b"{not json").is_err());
        assert_eq!(
            key_of(r#"{"budgets":[{"tenant":"*","window":"1x","tokens":5}]}"#),
            "budgets[0].window"
        );
        assert_eq!(
            key_of(r#"{"pricing":{"gpt-4o*":{"input":"cheap","output":1}}}"#),
            "pricing.gpt-4o*.input"
        );
        assert_eq!(
            key_of(r#"{"tenant":{"header":"x","bogus":1}}"#),
            "tenant.bogus"
        );
        let c = Config::parse(
            br#"{"tenant":{"header":"x-tenant-id"},"budgets":[{"tenant":"*","window":"1h","tokens":5}],
                "pricing":{"gpt-4o*":{"input":2.5,"output":10}}}"#,
        )
        .unwrap();
        assert_eq!(c.budgets.unwrap().rules.len(), 1);
        assert!(c.pricing.lookup("gpt-4o-mini").is_some());
        let e = Config::parse(br#"{"typo_key":1}"#).unwrap_err();
        assert!(e.to_string().contains("typo_key"), "{e}");
    }
}
