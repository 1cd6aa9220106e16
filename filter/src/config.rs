//! Plugin JSON → validated, compiled configuration. Parsed once in `on_configure`; any error rejects the
//! configuration (Envoy then refuses the listener update or fails start-up) with a message naming the key.

use crate::call::Api;
use crate::providers::tape;
use crate::providers::RouteRule;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Which generation of GenAI semantic-convention names to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Semconv {
    /// The widely deployed names (semconv v1.37–v1.41): what today's dashboards key on.
    #[default]
    Default,
    /// The newest experimental names, in addition to the default ones.
    Latest,
}

/// What tollgate does with a request covered by a signature (`signed_requests`; see `crate::signed`).
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
    tenant: Option<Json<'t, 'de>>,
    budgets: Option<Json<'t, 'de>>,
    pricing: Option<Json<'t, 'de>>,
}

impl<'t, 'de> Raw<'t, 'de> {
    fn read(v: Json<'t, 'de>) -> Result<Self, ConfigError> {
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
    fn read(v: Json) -> Result<Self, ConfigError> {
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
    fn read(v: Json) -> Result<Self, ConfigError> {
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

/// A value of the plugin JSON, on the token tape.
pub type Json<'t, 'de> = tape::Value<'t, 'de>;

/// The readers below take values as serde's derived readers (`deny_unknown_fields`) took them from
/// serde_json, with serde's wording for the errors that users see most, at a fraction of the module size.
/// An error's key is relative to the value read; each enclosing reader puts its own part in front (`under`).
///
/// `e` one level down: its key under `head` (a member's name, or `[i]`).
pub(crate) fn under(mut e: ConfigError, head: &str) -> ConfigError {
    let dot = if e.key.is_empty() || e.key.starts_with('[') {
        ""
    } else {
        "."
    };
    e.key = format!("{head}{dot}{}", e.key);
    e
}

/// What `v` is, as serde's `Unexpected` says it.
fn unexpected(v: Json) -> String {
    let raw = v.raw_text().unwrap_or_default();
    match raw.as_bytes().first() {
        Some(b'n') => "null".into(),
        Some(b't' | b'f') => format!("boolean `{raw}`"),
        Some(b'"') => match v.str() {
            Some(s) => format!("string {s:?}"),
            // The tape keeps what serde_json refuses to read.
            None => "string with a lone UTF-16 surrogate escape".into(),
        },
        Some(b'[') => "sequence".into(),
        Some(b'{') => "map".into(),
        _ if v.i64().is_some() || v.u64().is_some() => format!("integer `{raw}`"),
        _ => format!("floating point `{raw}`"),
    }
}

/// `v` is not what was `expected`: serde's "invalid type".
pub(crate) fn invalid_type(v: Json, expected: &str) -> ConfigError {
    invalid(v, "type", expected)
}

fn invalid(v: Json, what: &str, expected: &str) -> ConfigError {
    err(
        "",
        format!("invalid {what}: {}, expected {expected}", unexpected(v)),
    )
}

/// serde's list of what would have been accepted.
fn one_of(names: &[&str]) -> String {
    match names {
        [a] => format!("expected `{a}`"),
        [a, b] => format!("expected `{a}` or `{b}`"),
        _ => format!("expected one of `{}`", names.join("`, `")),
    }
}

/// A required field, or serde's "missing field".
pub(crate) fn required<T>(v: Option<T>, name: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| err("", format!("missing field `{name}`")))
}

/// An `Option`: `null` is absent.
pub(crate) fn opt<'t, 'de, T>(
    v: Json<'t, 'de>,
    read: fn(Json<'t, 'de>) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    if v.raw_text() == Some("null") {
        return Ok(None);
    }
    read(v).map(Some)
}

pub(crate) fn string(v: Json) -> Result<String, ConfigError> {
    v.str()
        .map(Cow::into_owned)
        .ok_or_else(|| invalid_type(v, "a string"))
}

pub(crate) fn boolean(v: Json) -> Result<bool, ConfigError> {
    v.bool().ok_or_else(|| invalid_type(v, "a boolean"))
}

pub(crate) fn uint(v: Json) -> Result<u64, ConfigError> {
    // serde: a negative integer is of the right type, with a wrong value.
    v.u64().ok_or_else(|| {
        let what = if v.i64().is_some() { "value" } else { "type" };
        invalid(v, what, "u64")
    })
}

pub(crate) fn float(v: Json) -> Result<f64, ConfigError> {
    v.f64().ok_or_else(|| invalid_type(v, "f64"))
}

/// A unit variant named by a string: its index in `names`.
pub(crate) fn variant(v: Json, names: &[&str]) -> Result<usize, ConfigError> {
    let s = v.str().ok_or_else(|| invalid_type(v, "a string"))?;
    names
        .iter()
        .position(|n| *n == s)
        .ok_or_else(|| err("", format!("unknown variant `{s}`, {}", one_of(names))))
}

/// Hand each element of an array to `f`, naming the index of any error.
pub(crate) fn items<'t, 'de>(
    v: Json<'t, 'de>,
    f: &mut dyn FnMut(Json<'t, 'de>) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let elements = v.elements().ok_or_else(|| invalid_type(v, "a sequence"))?;
    for (i, item) in elements.enumerate() {
        f(item).map_err(|e| under(e, &format!("[{i}]")))?;
    }
    Ok(())
}

pub(crate) fn strings(v: Json) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    items(v, &mut |v| {
        out.push(string(v)?);
        Ok(())
    })?;
    Ok(out)
}

/// An object of strings (a later duplicate key wins, as in serde's map).
pub(crate) fn string_map(v: Json) -> Result<BTreeMap<String, String>, ConfigError> {
    let members = v.members().ok_or_else(|| invalid_type(v, "a map"))?;
    let mut out = BTreeMap::new();
    for (key, value) in members {
        let value = string(value).map_err(|e| under(e, &key))?;
        out.insert(key.into_owned(), value);
    }
    Ok(out)
}

/// A struct's members: the value of the member named `names[i]` goes to `f(i, _)`; an unknown or
/// repeated key fails. Required fields are the caller's (`required`). At most 64 fields.
pub(crate) fn object<'t, 'de>(
    v: Json<'t, 'de>,
    names: &[&str],
    f: &mut dyn FnMut(usize, Json<'t, 'de>) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let members = v.members().ok_or_else(|| invalid_type(v, "an object"))?;
    let mut seen = 0u64;
    for (key, value) in members {
        let Some(i) = names.iter().position(|n| *n == key) else {
            return Err(err(
                key.as_ref(),
                format!("unknown field `{key}`, {}", one_of(names)),
            ));
        };
        let bit = 1u64.checked_shl(i as u32).unwrap_or(0);
        if seen & bit != 0 {
            return Err(err(key.as_ref(), format!("duplicate field `{key}`")));
        }
        seen |= bit;
        f(i, value).map_err(|e| under(e, &key))?;
    }
    Ok(())
}

/// Read `v` (tests: the readers take a tape value; tests build their input with `json!`).
#[cfg(test)]
pub(crate) fn read_json<T>(
    v: &serde_json::Value,
    read: impl for<'t, 'de> FnOnce(Json<'t, 'de>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let text = v.to_string();
    tape::read(&text, read).unwrap_or_else(|| Err(err("", "invalid JSON")))
}

/// Why `json`, which the tape refused, is not one JSON value, and where (line and column, 1-based).
fn syntax_error(json: &[u8]) -> ConfigError {
    let place = |at: usize| {
        let before = json.get(..at).unwrap_or(json);
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |n| n + 1);
        let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
            .chars()
            .count()
            + 1;
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        format!("at line {line} column {column}")
    };
    let text = match std::str::from_utf8(json) {
        Ok(text) => text,
        Err(e) => {
            let at = e.valid_up_to();
            return err("", format!("invalid JSON: not UTF-8 {}", place(at)));
        }
    };
    let Some(at) = tape::error_at(text) else {
        // Only a text beyond the tape's 4 GiB.
        return err("", "invalid JSON: too large");
    };
    // One complete value, then more text.
    if at > 0 && text.get(..at).is_some_and(|v| tape::error_at(v).is_none()) {
        return err(
            "",
            format!(
                "invalid JSON after the configuration object: trailing characters {}",
                place(at)
            ),
        );
    }
    let what = match text.get(at..).and_then(|t| t.chars().next()) {
        None => "unexpected end of input".to_owned(),
        Some('"') => "a string that is not closed or has an invalid escape".to_owned(),
        Some(c) => format!("unexpected `{}`", c.escape_debug()),
    };
    err("", format!("invalid JSON: {what} {}", place(at)))
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
