//! `Call` → OTLP span, with attribute names and types from the GenAI semantic conventions. The span is
//! written straight into its protobuf encoding (a `Span` message of `trace.proto`) when the call ends: no
//! per-attribute allocation, and a queued span is one compact buffer.

use crate::call::Call;
use crate::call::Findings;
use crate::codec::proto::{self, Value};
use crate::providers;
use crate::redact::Redactor;
use std::borrow::Cow;

/// A finished span, encoded as the body of an OTLP `Span` message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Span(Vec<u8>);

impl Span {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

// `Span` field numbers (trace.proto).
const TRACE_ID: u32 = 1;
const SPAN_ID: u32 = 2;
const TRACE_STATE: u32 = 3;
const PARENT_SPAN_ID: u32 = 4;
const NAME: u32 = 5;
const KIND: u32 = 6;
const START_TIME: u32 = 7;
const END_TIME: u32 = 8;
const ATTRIBUTES: u32 = 9;
const EVENTS: u32 = 11;
const STATUS: u32 = 15;
const FLAGS: u32 = 16;
/// `SpanKind.SPAN_KIND_CLIENT`.
const KIND_CLIENT: u64 = 3;
/// `Status.StatusCode.STATUS_CODE_ERROR`.
const STATUS_ERROR: u64 = 2;

/// Attribute writer: each `put_*` skips absent values so the span carries only what is known. With a
/// redactor, string values that can carry user text are redacted as they are written.
pub struct Attrs<'b, 'r> {
    buf: &'b mut Vec<u8>,
    /// The repeated `KeyValue` field of the enclosing message.
    field: u32,
    redactor: Option<&'r Redactor>,
    findings: Findings,
}

fn redacted<'v>(findings: &mut Findings, r: &Redactor, v: &'v str) -> Cow<'v, str> {
    let (out, found) = r.redact(v);
    if found.is_empty() {
        Cow::Borrowed(v)
    } else {
        findings.merge(&found);
        Cow::Owned(out.into_owned())
    }
}

impl<'r> Attrs<'_, 'r> {
    fn redactor_for(&self, key: &str) -> Option<&'r Redactor> {
        self.redactor
            .filter(|_| !STRUCTURAL_ATTRIBUTES.contains(&key))
    }

    pub fn str(&mut self, key: &str, v: Option<&str>) {
        let Some(v) = v else { return };
        match self.redactor_for(key) {
            Some(r) => {
                let out = redacted(&mut self.findings, r, v);
                proto::key_value(self.buf, self.field, key, Value::Str(&out));
            }
            None => proto::key_value(self.buf, self.field, key, Value::Str(v)),
        }
    }
    pub fn int(&mut self, key: &str, v: Option<u64>) {
        if let Some(v) = v {
            let v = Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
            proto::key_value(self.buf, self.field, key, v);
        }
    }
    pub fn i64(&mut self, key: &str, v: Option<i64>) {
        if let Some(v) = v {
            proto::key_value(self.buf, self.field, key, Value::Int(v));
        }
    }
    pub fn double(&mut self, key: &str, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            proto::key_value(self.buf, self.field, key, Value::Double(v));
        }
    }
    pub fn bool(&mut self, key: &str, v: bool) {
        proto::key_value(self.buf, self.field, key, Value::Bool(v));
    }
    pub fn strs<S: AsRef<str>>(&mut self, key: &str, v: &[S]) {
        if v.is_empty() {
            return;
        }
        match self.redactor_for(key) {
            Some(r) => {
                let findings = &mut self.findings;
                let out: Vec<Cow<'_, str>> = v
                    .iter()
                    .map(|s| redacted(findings, r, s.as_ref()))
                    .collect();
                proto::key_strings(self.buf, self.field, key, &out);
            }
            None => proto::key_strings(self.buf, self.field, key, v),
        }
    }
}

/// What the plugin configuration says about span contents. Both generations of semantic-convention names
/// (`Semconv`) share the span names today; the latest-only names are metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Also emit the deprecated `gen_ai.system` attribute.
    pub emit_gen_ai_system: bool,
}

/// Every span attribute the call determines, in the order they are written. `error` is `call.error_type()`.
fn attributes(a: &mut Attrs<'_, '_>, call: &Call, cfg: &Settings, error: Option<&str>) {
    let req = &call.request;
    let resp = &call.response;
    let route = call.route.as_ref();
    a.str("gen_ai.operation.name", route.map(providers::operation));
    a.str("gen_ai.provider.name", route.map(|r| r.provider.as_str()));
    if cfg.emit_gen_ai_system {
        a.str("gen_ai.system", route.map(|r| r.provider.as_str()));
    }
    a.str("gen_ai.request.model", call.request_model());
    if req.stream || route.is_some_and(|r| r.path_stream) {
        a.bool("gen_ai.request.stream", true);
    }
    a.int("gen_ai.request.max_tokens", req.max_tokens);
    a.double("gen_ai.request.temperature", req.temperature);
    a.double("gen_ai.request.top_p", req.top_p);
    a.double("gen_ai.request.top_k", req.top_k);
    a.double("gen_ai.request.frequency_penalty", req.frequency_penalty);
    a.double("gen_ai.request.presence_penalty", req.presence_penalty);
    a.i64("gen_ai.request.seed", req.seed);
    a.int(
        "gen_ai.request.choice.count",
        req.choice_count.filter(|&n| n != 1),
    );
    a.strs("gen_ai.request.stop_sequences", &req.stop_sequences);
    a.str("gen_ai.output.type", req.output_type);
    a.int(
        "gen_ai.embeddings.dimension.count",
        req.embedding_dimensions,
    );
    a.strs("gen_ai.request.encoding_formats", &req.encoding_formats);
    a.str("gen_ai.conversation.id", call.conversation_id.as_deref());
    a.str("gen_ai.response.id", resp.id.as_deref());
    a.str("gen_ai.response.model", resp.model.as_deref());
    a.strs("gen_ai.response.finish_reasons", &resp.finish_reasons);
    let u = &resp.usage;
    a.int("gen_ai.usage.input_tokens", u.input);
    a.int("gen_ai.usage.output_tokens", u.output);
    a.int("gen_ai.usage.cache_read.input_tokens", u.cache_read);
    a.int("gen_ai.usage.cache_write.input_tokens", u.cache_write);
    a.int("gen_ai.usage.reasoning.output_tokens", u.reasoning);
    let since_start = |t: Option<u64>| {
        t.filter(|_| call.start_ns > 0)
            .map(|t| t.saturating_sub(call.start_ns) as f64 / 1e9)
    };
    a.double(
        "gen_ai.response.time_to_first_chunk",
        since_start(call.first_chunk_ns),
    );
    a.str(
        "server.address",
        Some(call.server_address.as_str()).filter(|s| !s.is_empty()),
    );
    if !call.server_address.is_empty() {
        a.int("server.port", call.server_port.map(u64::from));
    }
    a.int("http.response.status_code", call.http_status.map(u64::from));
    a.str("error.type", error);
    if route.is_some_and(|r| r.provider == "openai" || r.provider == "azure.ai.openai") {
        a.str(
            "openai.api.type",
            route.and_then(|r| providers::provider(r.api).openai_api_type(r)),
        );
        a.str("openai.request.service_tier", req.service_tier.as_deref());
        a.str("openai.response.service_tier", resp.service_tier.as_deref());
        a.str(
            "openai.response.system_fingerprint",
            resp.system_fingerprint.as_deref(),
        );
    }
    a.str(
        "tollgate.system_prompt.hash",
        req.system_prompt_hash.as_deref(),
    );
    if !req.tool_names.is_empty() {
        a.strs("tollgate.request.tools", &req.tool_names);
    }
    a.double(
        "tollgate.response.time_to_first_token",
        since_start(call.first_content_ns),
    );
    if call.usage_estimated {
        a.bool("tollgate.usage.estimated", true);
    }
    if resp.incomplete {
        a.bool("tollgate.usage.partial", true);
    }
    if req.signed {
        a.bool("tollgate.request.signed", true);
    }
    a.str("tollgate.request.unmodified", req.rewrite_skipped);
    a.str("tollgate.request.uninspected", req.uninspected);
    a.str("tollgate.tenant", call.tenant.as_deref());
    a.double("tollgate.cost.usd", call.cost_usd);
    if let Some(b) = &call.budget {
        a.str("tollgate.budget.decision", Some(b.verdict.as_str()));
        a.str("tollgate.budget.rule", b.rule.as_deref());
        a.int("tollgate.budget.remaining_tokens", b.remaining_tokens);
    }
    let ev = &call.evidence;
    for (name, json) in &ev.content {
        a.str(name, Some(json));
    }
    if ev.truncated {
        a.bool("tollgate.content.truncated", true);
    }
    if ev.active {
        a.int(
            "tollgate.redaction.count",
            Some(u64::from(ev.findings.count)),
        );
        a.strs("tollgate.redaction.types", &ev.findings.types);
    }
    a.strs("tollgate.security.flags", &ev.flags);
}

/// Attributes whose values are protocol structure, never user text: everything else that is a string is
/// redacted by [`scrub`] when redaction is on.
const STRUCTURAL_ATTRIBUTES: &[&str] = &[
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.output.type",
    "gen_ai.response.finish_reasons",
    "server.address",
    "error.type",
    "openai.request.service_tier",
    "openai.response.service_tier",
    "openai.response.system_fingerprint",
    "tollgate.system_prompt.hash",
    "tollgate.redaction.types",
    "tollgate.security.flags",
    "tollgate.request.unmodified",
    "tollgate.request.uninspected",
    // Already redacted (and capped) when captured.
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
];

/// Span name per semconv: `{operation} {model}`, or the operation alone when the model is unknown.
pub fn span_name(call: &Call) -> String {
    let op = call.route.as_ref().map_or("chat", providers::operation);
    match call.request_model() {
        Some(m) => format!("{op} {m}"),
        None => op.to_owned(),
    }
}

/// The OTLP span for a finished call. With a redactor, every string attribute that can carry user text
/// (conversation ids, stop sequences, tool names, response ids; span and event attributes) is redacted.
pub fn build_span(call: &Call, cfg: &Settings, redactor: Option<&Redactor>) -> Span {
    build(call, cfg, redactor).0
}

/// [`build_span`], also returning what redaction found in the attributes.
pub fn build(call: &Call, cfg: &Settings, redactor: Option<&Redactor>) -> (Span, Findings) {
    use proto::{bytes, opt_bytes, opt_fixed64, opt_varint};
    let error = call.error_type();
    let ids = &call.ids;
    let mut buf = Vec::with_capacity(1024);
    let b = &mut buf;
    bytes(b, TRACE_ID, &ids.trace_id);
    bytes(b, SPAN_ID, &ids.span_id);
    opt_bytes(b, TRACE_STATE, ids.tracestate.as_bytes());
    if let Some(p) = &ids.parent_span_id {
        bytes(b, PARENT_SPAN_ID, p);
    }
    let op = call.route.as_ref().map_or("chat", providers::operation);
    match call.request_model() {
        Some(m) => {
            proto::len_prefix(b, NAME, op.len() + 1 + m.len());
            b.extend_from_slice(op.as_bytes());
            b.push(b' ');
            b.extend_from_slice(m.as_bytes());
        }
        None => opt_bytes(b, NAME, op.as_bytes()),
    }
    opt_varint(b, KIND, KIND_CLIENT);
    opt_fixed64(b, START_TIME, call.start_ns);
    opt_fixed64(b, END_TIME, call.end_ns.max(call.start_ns));
    let mut a = Attrs {
        buf: b,
        field: ATTRIBUTES,
        redactor,
        findings: Findings::default(),
    };
    attributes(&mut a, call, cfg, error.as_deref());
    let mut findings = a.findings;
    for t in &call.response.tool_calls {
        // `Span.Event { time_unix_nano = 1, name = 2, attributes = 3 }`.
        proto::message(b, EVENTS, |e| {
            opt_fixed64(e, 1, call.end_ns);
            bytes(e, 2, b"gen_ai.tool.call");
            let mut a = Attrs {
                buf: e,
                field: 3,
                redactor,
                findings: Findings::default(),
            };
            a.str(
                "gen_ai.tool.name",
                Some(t.name.as_str()).filter(|s| !s.is_empty()),
            );
            a.str(
                "gen_ai.tool.call.id",
                Some(t.id.as_str()).filter(|s| !s.is_empty()),
            );
            findings.merge(&a.findings);
        });
    }
    // `Status { message = 2, code = 3 }`, present (empty) even when unset.
    match error.as_deref() {
        Some(e) => {
            let msg = if e.is_empty() {
                0
            } else {
                proto::field_len(e.len())
            };
            proto::len_prefix(b, STATUS, msg + 2);
            opt_bytes(b, 2, e.as_bytes());
            opt_varint(b, 3, STATUS_ERROR);
        }
        None => proto::len_prefix(b, STATUS, 0),
    }
    let flags = u32::from(ids.sampled)
        | 0x100
        | if ids.parent_span_id.is_some() {
            0x200
        } else {
            0
        };
    proto::tag(b, FLAGS, proto::FIXED32);
    b.extend_from_slice(&flags.to_le_bytes());
    (Span(buf), findings)
}

/// Test support: the span decoded with the official generated types.
#[cfg(test)]
pub fn decode(span: &Span) -> opentelemetry_proto::tonic::trace::v1::Span {
    prost::Message::decode(span.as_bytes()).unwrap()
}

#[cfg(test)]
mod redaction_tests {
    use super::*;
    use crate::call::{Call, Route};
    use crate::redact::{RedactionConfig, Redactor};
    use opentelemetry_proto::tonic::common::v1::any_value;

    fn value(span: &Span, key: &str) -> Option<any_value::Value> {
        decode(span)
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    }

    #[test]
    fn first_chunk_and_first_token_timings() {
        let mut call = Call {
            start_ns: 1_000_000_000,
            first_chunk_ns: Some(1_250_000_000),
            first_content_ns: Some(2_000_000_000),
            ..Default::default()
        };
        let span = build_span(&call, &Settings::default(), None);
        assert_eq!(
            value(&span, "gen_ai.response.time_to_first_chunk"),
            Some(any_value::Value::DoubleValue(0.25))
        );
        assert_eq!(
            value(&span, "tollgate.response.time_to_first_token"),
            Some(any_value::Value::DoubleValue(1.0))
        );
        // A stream that only said how it began (or failed) has a first chunk and no first token.
        call.first_content_ns = None;
        let span = build_span(&call, &Settings::default(), None);
        assert!(value(&span, "gen_ai.response.time_to_first_chunk").is_some());
        assert!(value(&span, "tollgate.response.time_to_first_token").is_none());
        call.first_chunk_ns = None;
        let span = build_span(&call, &Settings::default(), None);
        assert!(value(&span, "gen_ai.response.time_to_first_chunk").is_none());
    }

    #[test]
    fn redaction_attributes_and_scrub() {
        let mut call = Call {
            route: Some(Route {
                api: crate::call::Api::OpenAiChat,
                provider: "openai".into(),
                path_model: None,
                path_stream: false,
            }),
            conversation_id: Some("jane@example.com".into()),
            ..Default::default()
        };
        call.request.stop_sequences = vec!["call 555-123-4567".into()];
        call.evidence.active = true;
        call.evidence.findings.merge(
            &Redactor::new(&RedactionConfig::default())
                .unwrap()
                .redact("a@example.com")
                .1,
        );
        call.evidence.flags = vec!["prompt_injection.ignore_instructions"];
        call.evidence.content = vec![("gen_ai.input.messages", "[]".into())];
        let span = build_span(&call, &Settings::default(), None);
        assert_eq!(
            value(&span, "tollgate.redaction.count"),
            Some(any_value::Value::IntValue(1))
        );
        assert!(
            matches!(value(&span, "tollgate.redaction.types"), Some(any_value::Value::ArrayValue(a)) if a.values.len() == 1)
        );
        assert!(value(&span, "tollgate.security.flags").is_some());
        assert_eq!(
            value(&span, "gen_ai.input.messages"),
            Some(any_value::Value::StringValue("[]".into()))
        );
        let redactor = Redactor::new(&RedactionConfig::default()).unwrap();
        let (span, f) = build(&call, &Settings::default(), Some(&redactor));
        assert_eq!(f.types, vec!["email", "phone"]);
        assert_eq!(
            value(&span, "gen_ai.conversation.id"),
            Some(any_value::Value::StringValue("[REDACTED:EMAIL]".into()))
        );
        let bytes = format!("{:?}", decode(&span));
        assert!(!bytes.contains("jane@") && !bytes.contains("555-123"));
        let raw = String::from_utf8_lossy(span.as_bytes());
        assert!(!raw.contains("jane@") && !raw.contains("555-123"));
        assert_eq!(
            value(&span, "gen_ai.provider.name"),
            Some(any_value::Value::StringValue("openai".into()))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Api, Route};
    use opentelemetry_proto::tonic::common::v1::any_value;

    fn api_type(api: Api, provider: &str) -> Option<String> {
        let call = Call {
            route: Some(Route {
                api,
                provider: provider.into(),
                path_model: None,
                path_stream: false,
            }),
            ..Default::default()
        };
        decode(&build_span(&call, &Settings::default(), None))
            .attributes
            .into_iter()
            .find(|kv| kv.key == "openai.api.type")
            .and_then(|kv| match kv.value?.value? {
                any_value::Value::StringValue(s) => Some(s),
                _ => None,
            })
    }

    #[test]
    fn openai_api_type() {
        assert_eq!(
            api_type(Api::OpenAiChat, "openai").as_deref(),
            Some("chat_completions")
        );
        assert_eq!(
            api_type(Api::OpenAiResponses, "azure.ai.openai").as_deref(),
            Some("responses")
        );
        assert_eq!(api_type(Api::OpenAiEmbeddings, "openai"), None);
        assert_eq!(api_type(Api::OpenAiChat, "vllm"), None);
    }
}
