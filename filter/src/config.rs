//! Plugin JSON → validated, compiled configuration. Parsed once in `on_configure`; any error rejects the
//! configuration (Envoy then refuses the listener update or fails start-up) with a message naming the key.

use crate::call::Api;
use crate::codec::json::strict::{
    boolean, err, float, items, object, opt, required, string, string_map, syntax_error, uint,
    variant, ConfigError,
};
use crate::codec::json::tape::{self, Value};
use crate::providers::RouteRule;
use crate::telemetry::{span, Semconv};
use std::collections::BTreeMap;

/// What tollgate does with a request covered by a signature (`signed_requests`; see `crate::codec::sigv4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SignedPolicy {
    /// Never rewrite it; when egress redaction would have changed its body, answer 400 in the API's dialect.
    #[default]
    Refuse,
    /// Never rewrite it; forward it as sent, flagged on the span and counted.
    Forward,
    /// A filter after tollgate signs the request again (Envoy's `aws_request_signing` with the gateway's
    /// credentials): rewrite it like any other.
    Resign,
}

/// What tollgate does with a request body too large to hold and read (`oversized_requests`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OversizedPolicy {
    /// Forward it uninspected; budgets reserve it by its size and the default output cap.
    #[default]
    Forward,
    /// Refuse it (413 in the API's dialect) when a budget, a block rule or egress redaction applies.
    Refuse,
}

/// Body compression of OTLP export requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
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
    pub compression: Compression,
    /// Export GenAI metrics (in addition to spans).
    pub metrics: bool,
    /// How often each VM exports its metric deltas.
    pub metrics_interval_ms: u64,
    /// Distinct attribute sets per metric per interval; beyond it measurements go to one overflow series.
    pub metrics_max_series: usize,
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
    /// Cap on the text of each captured content attribute; longer content is cut with a marker.
    pub max_content_bytes: usize,
    /// PII and secret redaction (telemetry, egress, block, output).
    pub redaction: crate::redact::Settings,
    /// Request header carrying `gen_ai.conversation.id`, lowercase.
    pub conversation_id_header: Option<String>,
    pub semconv: Semconv,
    /// Also emit the deprecated `gen_ai.system` attribute.
    pub emit_gen_ai_system: bool,
    /// Head sampling ratio for traces without a sampled parent decision, 0.0–1.0.
    pub sampling_ratio: f64,
    /// Largest request body tollgate holds in Envoy's buffer to read it (and largest decoded size of a
    /// compressed one); larger ones pass through uninspected. Must not exceed Envoy's buffer limit.
    pub max_request_body: usize,
    /// Request bodies too large to hold (`oversized_requests`).
    pub oversized_requests: OversizedPolicy,
    /// Requests covered by a signature (`signed_requests`).
    pub signed_requests: SignedPolicy,
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

/// The plugin JSON as read, before validation. `tenant`, `budgets` and `pricing` stay on the tape until
/// validation reaches them, so that their errors come in the order of the checks.
#[derive(Default)]
struct Raw<'t, 'de> {
    service_name: Option<String>,
    resource: BTreeMap<String, String>,
    otlp: Option<RawOtlp>,
    routes: Vec<RawRoute>,
    include_usage: Option<bool>,
    capture_content: bool,
    max_content_bytes: Option<u64>,
    redaction: Option<crate::redact::RawRedaction>,
    conversation_id_header: Option<String>,
    semconv: Semconv,
    emit_gen_ai_system: bool,
    sampling_ratio: Option<f64>,
    max_request_body: Option<u64>,
    max_response_body: Option<u64>,
    max_event: Option<u64>,
    oversized_requests: OversizedPolicy,
    signed_requests: SignedPolicy,
    tenant: Option<Value<'t, 'de>>,
    budgets: Option<Value<'t, 'de>>,
    pricing: Option<Value<'t, 'de>>,
}

impl<'t, 'de> Raw<'t, 'de> {
    fn read(v: Value<'t, 'de>) -> Result<Self, ConfigError> {
        let mut r = Raw::default();
        object(
            v,
            &[
                "service_name",
                "resource",
                "otlp",
                "routes",
                "include_usage",
                "capture_content",
                "max_content_bytes",
                "redaction",
                "conversation_id_header",
                "semconv",
                "emit_gen_ai_system",
                "sampling_ratio",
                "max_request_body",
                "max_response_body",
                "max_event",
                "tenant",
                "budgets",
                "pricing",
                "oversized_requests",
                "signed_requests",
            ],
            &mut |i, v| {
                match i {
                    0 => r.service_name = opt(v, string)?,
                    1 => r.resource = string_map(v)?,
                    2 => r.otlp = opt(v, RawOtlp::read)?,
                    3 => {
                        let routes = &mut r.routes;
                        items(v, &mut |v| {
                            routes.push(RawRoute::read(v)?);
                            Ok(())
                        })?;
                    }
                    4 => r.include_usage = opt(v, boolean)?,
                    5 => r.capture_content = boolean(v)?,
                    6 => r.max_content_bytes = opt(v, uint)?,
                    7 => r.redaction = opt(v, crate::redact::RawRedaction::read)?,
                    8 => r.conversation_id_header = opt(v, string)?,
                    9 => {
                        if variant(v, &["default", "latest"])? == 1 {
                            r.semconv = Semconv::Latest;
                        }
                    }
                    10 => r.emit_gen_ai_system = boolean(v)?,
                    11 => r.sampling_ratio = opt(v, float)?,
                    12 => r.max_request_body = opt(v, uint)?,
                    13 => r.max_response_body = opt(v, uint)?,
                    14 => r.max_event = opt(v, uint)?,
                    15 => r.tenant = opt(v, Ok)?,
                    16 => r.budgets = opt(v, Ok)?,
                    17 => r.pricing = opt(v, Ok)?,
                    18 => {
                        if variant(v, &["forward", "refuse"])? == 1 {
                            r.oversized_requests = OversizedPolicy::Refuse;
                        }
                    }
                    _ => {
                        r.signed_requests = match variant(v, &["refuse", "forward", "resign"])? {
                            0 => SignedPolicy::Refuse,
                            1 => SignedPolicy::Forward,
                            _ => SignedPolicy::Resign,
                        }
                    }
                }
                Ok(())
            },
        )?;
        Ok(r)
    }
}

struct RawOtlp {
    cluster: String,
    authority: Option<String>,
    traces_path: Option<String>,
    metrics_path: Option<String>,
    timeout_ms: Option<u64>,
    flush_interval_ms: Option<u64>,
    max_batch: Option<u64>,
    max_queue: Option<u64>,
    headers: BTreeMap<String, String>,
    compression: Compression,
    metrics: Option<bool>,
    metrics_interval_ms: Option<u64>,
    metrics_max_series: Option<u64>,
}

impl RawOtlp {
    fn read(v: Value) -> Result<Self, ConfigError> {
        let mut cluster = None;
        let mut o = RawOtlp {
            cluster: String::new(),
            authority: None,
            traces_path: None,
            metrics_path: None,
            timeout_ms: None,
            flush_interval_ms: None,
            max_batch: None,
            max_queue: None,
            headers: BTreeMap::new(),
            compression: Compression::None,
            metrics: None,
            metrics_interval_ms: None,
            metrics_max_series: None,
        };
        object(
            v,
            &[
                "cluster",
                "authority",
                "traces_path",
                "metrics_path",
                "timeout_ms",
                "flush_interval_ms",
                "max_batch",
                "max_queue",
                "headers",
                "compression",
                "metrics",
                "metrics_interval_ms",
                "metrics_max_series",
            ],
            &mut |i, v| {
                match i {
                    0 => cluster = Some(string(v)?),
                    1 => o.authority = opt(v, string)?,
                    2 => o.traces_path = opt(v, string)?,
                    3 => o.metrics_path = opt(v, string)?,
                    4 => o.timeout_ms = opt(v, uint)?,
                    5 => o.flush_interval_ms = opt(v, uint)?,
                    6 => o.max_batch = opt(v, uint)?,
                    7 => o.max_queue = opt(v, uint)?,
                    8 => o.headers = string_map(v)?,
                    9 => {
                        if variant(v, &["none", "gzip"])? == 1 {
                            o.compression = Compression::Gzip;
                        }
                    }
                    10 => o.metrics = opt(v, boolean)?,
                    11 => o.metrics_interval_ms = opt(v, uint)?,
                    _ => o.metrics_max_series = opt(v, uint)?,
                }
                Ok(())
            },
        )?;
        o.cluster = required(cluster, "cluster")?;
        Ok(o)
    }
}

struct RawRoute {
    host: String,
    path_prefix: String,
    api: Option<String>,
    provider: String,
}

impl RawRoute {
    fn read(v: Value) -> Result<Self, ConfigError> {
        let (mut host, mut path_prefix, mut api, mut provider) = (None, String::new(), None, None);
        object(
            v,
            &["host", "path_prefix", "api", "provider"],
            &mut |i, v| {
                match i {
                    0 => host = Some(string(v)?),
                    1 => path_prefix = string(v)?,
                    2 => api = opt(v, string)?,
                    _ => provider = Some(string(v)?),
                }
                Ok(())
            },
        )?;
        Ok(RawRoute {
            host: required(host, "host")?,
            path_prefix,
            api,
            provider: required(provider, "provider")?,
        })
    }
}

const MIB: u64 = 1024 * 1024;

/// Envoy's default buffer limit (listener `per_connection_buffer_limit_bytes`, 1 MiB): a paused filter's
/// buffered request body beyond the limit makes Envoy answer 413 (`FilterManager::requestDataTooLarge`,
/// source/common/http/filter_manager.cc). A Wasm plugin cannot read the limit (no property exposes it:
/// source/extensions/filters/common/expr/context.h), so the default assumes Envoy's.
pub const DEFAULT_MAX_REQUEST_BODY: usize = 1 << 20;

fn size(key: &str, v: Option<u64>, default: u64, max: u64) -> Result<usize, ConfigError> {
    let v = v.unwrap_or(default);
    if v == 0 || v > max {
        return Err(err(key, format!("must be between 1 and {max}")));
    }
    usize::try_from(v).map_err(|_| err(key, "too large for this platform"))
}

impl Config {
    /// What the span builder takes from the configuration.
    pub fn span_settings(&self) -> span::Settings {
        span::Settings {
            emit_gen_ai_system: self.emit_gen_ai_system,
        }
    }

    /// Parse plugin JSON. Empty input means "all defaults".
    pub fn parse(json: &[u8]) -> Result<Config, ConfigError> {
        if json.iter().all(u8::is_ascii_whitespace) {
            return Config::from_raw(Raw::default());
        }
        // Before reading, so that any other top-level value gets this message rather than a type error.
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(err("", "the configuration must be a JSON object"));
        }
        let read = std::str::from_utf8(json)
            .ok()
            .and_then(|text| tape::read(text, |v| Config::from_raw(Raw::read(v)?)));
        read.unwrap_or_else(|| Err(syntax_error(json)))
    }

    fn fallback() -> Config {
        Config {
            service_name: "tollgate".into(),
            resource: Vec::new(),
            otlp: None,
            routes: Vec::new(),
            include_usage: true,
            capture_content: false,
            max_content_bytes: 16 << 10,
            redaction: crate::redact::Settings::default(),
            conversation_id_header: None,
            semconv: Semconv::Default,
            emit_gen_ai_system: false,
            sampling_ratio: 1.0,
            max_request_body: DEFAULT_MAX_REQUEST_BODY,
            oversized_requests: OversizedPolicy::Forward,
            signed_requests: SignedPolicy::Refuse,
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
            max_content_bytes: size("max_content_bytes", raw.max_content_bytes, 16 * 1024, MIB)?,
            redaction: crate::redact::Settings::from_raw(raw.redaction)
                .map_err(|(key, reason)| err(key, reason))?,
            conversation_id_header,
            semconv: raw.semconv,
            emit_gen_ai_system: raw.emit_gen_ai_system,
            sampling_ratio,
            max_request_body: size(
                "max_request_body",
                raw.max_request_body,
                DEFAULT_MAX_REQUEST_BODY as u64,
                64 * MIB,
            )?,
            oversized_requests: raw.oversized_requests,
            signed_requests: raw.signed_requests,
            max_response_body: size(
                "max_response_body",
                raw.max_response_body,
                8 * MIB,
                64 * MIB,
            )?,
            max_event: size("max_event", raw.max_event, 256 * 1024, 16 * MIB)?,
            tenant: raw
                .tenant
                .map(crate::budget::TenantConfig::read)
                .transpose()?
                .unwrap_or_default(),
            budgets: raw
                .budgets
                .map(crate::budget::BudgetConfig::read)
                .transpose()?,
            pricing: raw
                .pricing
                .map(crate::pricing::Pricing::read)
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
        let metrics_interval_ms = o.metrics_interval_ms.unwrap_or(10_000);
        if !(100..=300_000).contains(&metrics_interval_ms) {
            return Err(err(
                "otlp.metrics_interval_ms",
                "must be between 100 and 300000",
            ));
        }
        let metrics_max_series = size(
            "otlp.metrics_max_series",
            o.metrics_max_series,
            1_000,
            100_000,
        )?;
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
            compression: o.compression,
            metrics: o.metrics.unwrap_or(true),
            metrics_interval_ms,
            metrics_max_series,
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
        assert_eq!(o.compression, Compression::None);
        assert!(o.metrics);
        assert_eq!(
            (o.metrics_interval_ms, o.metrics_max_series),
            (10_000, 1_000)
        );
    }

    #[test]
    fn export_options() {
        let c = Config::parse(
            br#"{"otlp":{"cluster":"c","compression":"gzip","metrics":false,"metrics_interval_ms":500,
                 "metrics_max_series":20}}"#,
        )
        .unwrap();
        let o = c.otlp.unwrap();
        assert_eq!(o.compression, Compression::Gzip);
        assert!(!o.metrics);
        assert_eq!((o.metrics_interval_ms, o.metrics_max_series), (500, 20));
        assert_eq!(
            key_of(r#"{"otlp":{"cluster":"c","compression":"zstd"}}"#),
            "otlp.compression"
        );
        assert_eq!(
            key_of(r#"{"otlp":{"cluster":"c","metrics_interval_ms":10}}"#),
            "otlp.metrics_interval_ms"
        );
        assert_eq!(
            key_of(r#"{"otlp":{"cluster":"c","metrics_max_series":0}}"#),
            "otlp.metrics_max_series"
        );
    }

    fn key_of(json: &str) -> String {
        Config::parse(json.as_bytes()).unwrap_err().key
    }

    #[test]
    fn wire_policies() {
        let d = Config::default();
        assert_eq!(d.max_request_body, 1 << 20, "Envoy's default buffer limit");
        assert_eq!(
            (d.oversized_requests, d.signed_requests),
            (OversizedPolicy::Forward, SignedPolicy::Refuse)
        );
        let c = Config::parse(
            br#"{"max_request_body":8388608,"oversized_requests":"refuse","signed_requests":"resign"}"#,
        )
        .unwrap();
        assert_eq!(c.max_request_body, 8 << 20);
        assert_eq!(
            (c.oversized_requests, c.signed_requests),
            (OversizedPolicy::Refuse, SignedPolicy::Resign)
        );
        let f = Config::parse(br#"{"signed_requests":"forward"}"#).unwrap();
        assert_eq!(f.signed_requests, SignedPolicy::Forward);
        assert_eq!(key_of(r#"{"signed_requests":"sign"}"#), "signed_requests");
        assert_eq!(
            key_of(r#"{"oversized_requests":"drop"}"#),
            "oversized_requests"
        );
        assert_eq!(key_of(r#"{"max_request_body":0}"#), "max_request_body");
    }

    /// What the tape-based readers do differently from serde's: a struct written as an array of its fields
    /// is refused, and a token serde_json cannot hold is a type error at its key, not "invalid JSON".
    #[test]
    fn tokens_and_shapes_serde_read_otherwise() {
        let e = Config::parse(br#"{"otlp":["collector"]}"#).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.reason.as_str()),
            ("otlp", "invalid type: sequence, expected an object")
        );
        let e = Config::parse(br#"{"max_event":1e400}"#).unwrap_err();
        assert_eq!(e.key, "max_event");
        assert!(
            e.reason.starts_with("invalid type: floating point `1e400`"),
            "{e}"
        );
        let e = Config::parse(br#"{"service_name":"\ud800"}"#).unwrap_err();
        assert_eq!(e.key, "service_name");
        assert!(e.reason.contains("lone UTF-16 surrogate"), "{e}");
        // Trailing text is reported before an error inside the object.
        let e = Config::parse(br#"{"max_event":"x"} trailing"#).unwrap_err();
        assert!(
            e.reason
                .starts_with("invalid JSON after the configuration object"),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        let reason = |t: &[u8]| Config::parse(t).unwrap_err().reason;
        assert_eq!(
            reason(b"{not json"),
            "invalid JSON: unexpected `n` at line 1 column 2"
        );
        assert_eq!(
            reason(b"{\n  \"a\": 1,\n  \"\xc3\xa9\": tru }"),
            "invalid JSON: unexpected `t` at line 3 column 8"
        );
        assert_eq!(
            reason(b"{\"a\": [1, 2}"),
            "invalid JSON: unexpected `}` at line 1 column 12"
        );
        assert_eq!(
            reason(b"{\"a\": "),
            "invalid JSON: unexpected end of input at line 1 column 7"
        );
        assert_eq!(
            reason(b"{\"a\": \"x\\q\"}"),
            "invalid JSON: a string that is not closed or has an invalid escape at line 1 column 7"
        );
        assert_eq!(
            reason(b"{\"a\": \"\xff\"}"),
            "invalid JSON: not UTF-8 at line 1 column 8"
        );
        assert_eq!(
            reason(b"{}\n {}"),
            "invalid JSON after the configuration object: trailing characters at line 2 column 2"
        );
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
        assert!(Config::parse(b"{not json")
            .unwrap_err()
            .to_string()
            .starts_with("invalid tollgate configuration: invalid JSON: "));
        assert!(Config::parse(b"{} {}")
            .unwrap_err()
            .reason
            .starts_with("invalid JSON after the configuration object"));
        assert_eq!(
            Config::parse(br#"["svc"]"#).unwrap_err().reason,
            "the configuration must be a JSON object"
        );
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

    #[test]
    fn redaction_errors_name_the_key_and_pattern() {
        let e =
            Config::parse(br#"{"redaction":{"custom":[{"name":"employee_id","regex":"E[0-9"}]}}"#)
                .unwrap_err();
        assert_eq!(e.key, "redaction.custom[0].regex");
        assert!(e.to_string().contains("employee_id"), "{e}");
        assert_eq!(
            key_of(r#"{"redaction":{"detectors":["nope"]}}"#),
            "redaction.detectors[0]"
        );
        assert_eq!(
            key_of(r#"{"redaction":{"replacement":"hash"}}"#),
            "redaction.hash_key"
        );
        assert_eq!(key_of(r#"{"redaction":{"egres":true}}"#), "redaction.egres");
        assert_eq!(key_of(r#"{"max_content_bytes":0}"#), "max_content_bytes");
        let c = Config::parse(
            br#"{"capture_content":true,"redaction":{"egress":true,"block":["email"]}}"#,
        )
        .unwrap();
        assert!(c.capture_content && c.redaction.egress && c.redaction.configured);
        assert_eq!(c.max_content_bytes, 16 * 1024);
    }
}
