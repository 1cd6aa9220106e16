//! The pre-#8 `telemetry/span.rs` (prost structs from opentelemetry-proto), kept verbatim for the
//! equivalence tests: the direct encoders must produce the very same bytes.
#![allow(dead_code, clippy::all)]

// `Call` → OTLP span, with attribute names and types from the GenAI semantic conventions.

use crate::call::{Api, Call};
use crate::config::Config;
use crate::telemetry::Semconv;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span, Status};

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Attribute list under construction; each `put_*` skips absent values so the span carries only what is known.
#[derive(Default)]
pub struct Attrs(pub Vec<KeyValue>);

impl Attrs {
    pub fn str(&mut self, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            self.0
                .push(kv(key, any_value::Value::StringValue(v.to_owned())));
        }
    }
    pub fn int(&mut self, key: &str, v: Option<u64>) {
        if let Some(v) = v {
            self.0.push(kv(
                key,
                any_value::Value::IntValue(i64::try_from(v).unwrap_or(i64::MAX)),
            ));
        }
    }
    pub fn i64(&mut self, key: &str, v: Option<i64>) {
        if let Some(v) = v {
            self.0.push(kv(key, any_value::Value::IntValue(v)));
        }
    }
    pub fn double(&mut self, key: &str, v: Option<f64>) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.0.push(kv(key, any_value::Value::DoubleValue(v)));
        }
    }
    pub fn bool(&mut self, key: &str, v: bool) {
        self.0.push(kv(key, any_value::Value::BoolValue(v)));
    }
    pub fn strs(&mut self, key: &str, v: &[String]) {
        if !v.is_empty() {
            let values = v
                .iter()
                .map(|s| AnyValue {
                    value: Some(any_value::Value::StringValue(s.clone())),
                })
                .collect();
            self.0
                .push(kv(key, any_value::Value::ArrayValue(ArrayValue { values })));
        }
    }
}

/// Every span attribute the call determines. Shared by spans and the fixture tests.
pub fn attributes(call: &Call, cfg: &Config) -> Vec<KeyValue> {
    let mut a = Attrs::default();
    let req = &call.request;
    let resp = &call.response;
    let route = call.route.as_ref();
    a.str(
        "gen_ai.operation.name",
        route.map(crate::providers::operation),
    );
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
    if let (Some(first), true) = (call.first_chunk_ns, call.start_ns > 0) {
        a.double(
            "gen_ai.response.time_to_first_chunk",
            Some(first.saturating_sub(call.start_ns) as f64 / 1e9),
        );
    }
    a.str(
        "server.address",
        Some(call.server_address.as_str()).filter(|s| !s.is_empty()),
    );
    if !call.server_address.is_empty() {
        a.int("server.port", call.server_port.map(u64::from));
    }
    a.int("http.response.status_code", call.http_status.map(u64::from));
    a.str("error.type", call.error_type().as_deref());
    if route.is_some_and(|r| r.provider == "openai" || r.provider == "azure.ai.openai") {
        a.str(
            "openai.api.type",
            match route.map(|r| r.api) {
                Some(Api::OpenAiChat) => Some("chat_completions"),
                Some(Api::OpenAiResponses) => Some("responses"),
                _ => None,
            },
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
    if call.usage_estimated {
        a.bool("tollgate.usage.estimated", true);
    }
    if resp.incomplete {
        a.bool("tollgate.usage.partial", true);
    }
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
    if !ev.flags.is_empty() {
        let flags: Vec<String> = ev.flags.iter().map(|f| (*f).to_owned()).collect();
        a.strs("tollgate.security.flags", &flags);
    }
    let _ = Semconv::Latest; // The latest-only names are metrics; span names are shared by both sets today.
    a.0
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
    // Already redacted (and capped) when captured.
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
];

fn scrub_value(v: &mut AnyValue, r: &crate::redact::Redactor, f: &mut crate::call::Findings) {
    match v.value.as_mut() {
        Some(any_value::Value::StringValue(s)) => {
            let (out, found) = r.redact(s);
            if !found.is_empty() {
                *s = out.into_owned();
                f.merge(&found);
            }
        }
        Some(any_value::Value::ArrayValue(arr)) => {
            for x in &mut arr.values {
                scrub_value(x, r, f);
            }
        }
        _ => {}
    }
}

/// Redact every string attribute (span and event attributes) that can carry user text — conversation ids,
/// stop sequences, tool names, response ids — before the span is queued. Returns what was found.
pub fn scrub(span: &mut Span, r: &crate::redact::Redactor) -> crate::call::Findings {
    let mut f = crate::call::Findings::default();
    let attrs = span
        .attributes
        .iter_mut()
        .chain(span.events.iter_mut().flat_map(|e| e.attributes.iter_mut()));
    for kv in attrs {
        if STRUCTURAL_ATTRIBUTES.contains(&kv.key.as_str()) {
            continue;
        }
        if let Some(v) = kv.value.as_mut() {
            scrub_value(v, r, &mut f);
        }
    }
    f
}

/// Span name per semconv: `{operation} {model}`, or the operation alone when the model is unknown.
pub fn span_name(call: &Call) -> String {
    let op = call
        .route
        .as_ref()
        .map_or("chat", crate::providers::operation);
    match call.request_model() {
        Some(m) => format!("{op} {m}"),
        None => op.to_owned(),
    }
}

/// The OTLP span for a finished call.
pub fn build_span(call: &Call, cfg: &Config) -> Span {
    let error = call.error_type();
    let events = call
        .response
        .tool_calls
        .iter()
        .map(|t| {
            let mut a = Attrs::default();
            a.str(
                "gen_ai.tool.name",
                Some(t.name.as_str()).filter(|s| !s.is_empty()),
            );
            a.str(
                "gen_ai.tool.call.id",
                Some(t.id.as_str()).filter(|s| !s.is_empty()),
            );
            span::Event {
                time_unix_nano: call.end_ns,
                name: "gen_ai.tool.call".to_owned(),
                attributes: a.0,
                dropped_attributes_count: 0,
            }
        })
        .collect();
    Span {
        trace_id: call.ids.trace_id.to_vec(),
        span_id: call.ids.span_id.to_vec(),
        trace_state: call.ids.tracestate.clone(),
        parent_span_id: call
            .ids
            .parent_span_id
            .map(|p| p.to_vec())
            .unwrap_or_default(),
        flags: u32::from(call.ids.sampled)
            | 0x100
            | if call.ids.parent_span_id.is_some() {
                0x200
            } else {
                0
            },
        name: span_name(call),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: call.start_ns,
        end_time_unix_nano: call.end_ns.max(call.start_ns),
        attributes: attributes(call, cfg),
        dropped_attributes_count: 0,
        events,
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status: Some(match error {
            Some(e) => Status {
                message: e,
                code: status::StatusCode::Error as i32,
            },
            None => Status {
                message: String::new(),
                code: status::StatusCode::Unset as i32,
            },
        }),
    }
}
