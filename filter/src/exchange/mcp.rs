//! One MCP Streamable HTTP exchange: a JSON-RPC message POSTed to a server the configuration names
//! (`mcp.servers`, or `routes[].api = "mcp"`), answered with one JSON message or an SSE stream.
//!
//! - The request: the tenant, the trace context (continued from `traceparent`, propagated like a model
//!   call's), the body read whole (it is held like a model call's when something may refuse it);
//!   redaction's block check and egress rewrite apply to the tool arguments; the tool policy and the
//!   tool-call budget decide `tools/call`. A refusal is a JSON-RPC error with the request's id, sent as
//!   `200 application/json`: every MCP client SDK generation surfaces it as the call's error (a 4xx is an
//!   HTTP exception in Python `mcp` 1.x, and may send 2.x clients down their legacy fallback).
//! - The answer: its messages are matched to the request's id (`providers::mcp::Pending`), whatever the
//!   chunking, through the same decoder model responses use.
//! - The end: one CLIENT span `{mcp.method.name} {target}` and one `mcp.client.operation.duration`
//!   measurement per request, per the OpenTelemetry MCP semantic conventions (semantic-conventions-genai,
//!   `model/mcp`); the tool-call budget is committed.
//!
//! GET (the server's own SSE stream, before revision 2026-07-28) and DELETE (ending a session) pass
//! unobserved: they carry no request of the client's.

use super::host::{Body, Counter, Host, Map};
use super::{put_header, random_bytes, random_unit, Action, Exchange};
use crate::budget::ledger::{Amount, Clock, Decision, Ledger, Reservation, Want};
use crate::call::{Findings, SpanIds};
use crate::codec::headers::Headers;
use crate::config::Config;
use crate::providers::mcp::{self, attr, code, Kind, Message, Outcome, Pending, ToolDecision};
use crate::redact::FieldSelector;
use crate::reply::Reply;
use crate::stream::{BodyDecoder, ContentEncoding, Limits};
use crate::telemetry::metrics::{Attr, Instrument, ValRef};
use crate::telemetry::{span, trace};

/// Every string of `params.arguments`, the tool's input, is user data (redacted on egress and in
/// captured content); the selector is applied to the arguments' own JSON text.
const ARGUMENTS: FieldSelector<'static> = FieldSelector {
    roots: &[],
    structural: &[],
    opaque: &[],
};

/// Span attributes that are protocol structure, never user text.
const STRUCTURAL: &[&str] = &[
    attr::METHOD_NAME,
    attr::SESSION_ID,
    attr::PROTOCOL_VERSION,
    attr::JSONRPC_REQUEST_ID,
    attr::JSONRPC_PROTOCOL_VERSION,
    attr::RPC_RESPONSE_STATUS_CODE,
    attr::TOOL_NAME,
    attr::PROMPT_NAME,
    attr::OPERATION_NAME,
    "network.protocol.name",
    "network.transport",
    "tollgate.mcp.refusal",
    attr::TOOL_CALL_ARGUMENTS,
    attr::TOOL_CALL_RESULT,
];

/// What one MCP exchange learned.
#[derive(Default)]
pub struct McpCall {
    ids: SpanIds,
    start_ns: u64,
    tenant: String,
    session_id: Option<String>,
    /// `mcp-protocol-version` of the request, else of `_meta`, else what `initialize` negotiated.
    protocol_version: Option<String>,
    request: Option<Message>,
    pending: Option<Pending>,
    decoder: Option<BodyDecoder>,
    /// Why the gateway answered itself (`tool_denied`, `budget_exceeded`, `invalid_tool_call`, `blocked`).
    refusal: Option<&'static str>,
    /// The reply's outcome when the gateway answered.
    refused_outcome: Option<Outcome>,
    reservation: Option<(Reservation, Clock)>,
    /// Redacted tool arguments and result (`capture_content`).
    arguments: Option<String>,
    result: Option<String>,
    findings: Findings,
    http_status: Option<u16>,
    /// The answer ended before its response message arrived.
    incomplete: bool,
}

/// The request's messages, as far as the policy is concerned.
fn tool_calls(body: &mcp::Body) -> impl Iterator<Item = &Message> {
    body.messages().iter().filter(|m| m.tool().is_some())
}

fn clock<H: Host>(host: &mut H) -> Clock {
    Clock {
        now_s: host.now_ns() / 1_000_000_000,
        ttl_s: 300,
    }
}

impl Exchange {
    /// Request headers of a POST to a configured MCP server: returns None when the request is not one.
    pub(super) fn mcp_request_headers<H: Host>(
        &mut self,
        host: &mut H,
        headers: &Headers,
        authority: &str,
        path: &str,
        end_of_stream: bool,
    ) -> Option<Action> {
        let cfg = self.config.clone();
        let server = crate::providers::strip_port(authority);
        cfg.mcp.server(server, path)?;
        if headers.get(":method") != Some(b"POST") {
            return Some(Action::Continue);
        }
        self.active = true;
        self.held = true;
        let mut m = McpCall {
            start_ns: host.now_ns(),
            ..McpCall::default()
        };
        self.call.start_ns = m.start_ns;
        self.set_server(authority);
        super::budget::on_request_headers(host, &cfg, &mut self.budget, &mut self.call, headers);
        m.tenant = self
            .call
            .tenant
            .clone()
            .unwrap_or_else(|| cfg.tenant.default.clone());
        m.session_id = headers
            .get_string(mcp::header::SESSION_ID)
            .filter(|v| !v.is_empty() && v.len() <= 256);
        m.protocol_version = headers
            .get_string(mcp::header::PROTOCOL_VERSION)
            .filter(|v| !v.is_empty() && v.len() <= 64);
        let tp = headers.get_str("traceparent");
        let ts = headers.get_str("tracestate");
        let ids = random_bytes::<H, 24>(host);
        let draw = random_unit(host);
        m.ids = trace::span_ids(tp.as_deref(), ts.as_deref(), ids, cfg.sampling_ratio, draw);
        put_header(
            host,
            Map::RequestHeaders,
            headers,
            "traceparent",
            &trace::format_traceparent(&m.ids),
        );
        let ce = headers.get_str("content-encoding").unwrap_or_default();
        self.request_encoding = ContentEncoding::from_header(&ce);
        let framing = super::hold::Framing {
            end_of_stream,
            upgrade: false,
            content_length: super::hold::content_length(
                headers.get_str("content-length").as_deref(),
            ),
        };
        self.read = super::hold::read(&framing, cfg.max_request_body);
        let may_refuse = cfg.mcp.may_refuse(Some(&m.tenant))
            || !cfg.redaction.block.is_empty()
            || cfg.redaction.egress;
        self.mcp = Some(Box::new(m));
        host.count(Counter::McpRequests, 1);
        if let super::hold::Read::TooLarge(_) | super::hold::Read::NoBody = self.read {
            self.request_skipped = true;
            if matches!(self.read, super::hold::Read::TooLarge(_)) {
                host.count(Counter::McpUnread, 1);
            }
            return Some(self.release());
        }
        let support = host.hold_support();
        if super::hold::hold(may_refuse, self.read, false, support) {
            self.probing = host.hold_note();
            host.count(Counter::HoldRequests, 1);
            return Some(Action::Pause);
        }
        if !end_of_stream && cfg.redaction.egress {
            host.remove_header(Map::RequestHeaders, "content-length");
        }
        Some(self.release())
    }

    /// The whole request body of an MCP exchange: read it, apply redaction and the tool policy, then
    /// forward or answer it.
    pub(super) fn mcp_inspect<H: Host>(&mut self, host: &mut H, body_size: usize) -> Action {
        self.request_skipped = true;
        let cfg = self.config.clone();
        let Some(mut m) = self.mcp.take() else {
            return self.release();
        };
        let action = self.mcp_decide(host, &cfg, &mut m, body_size);
        self.mcp = Some(m);
        action
    }

    fn mcp_decide<H: Host>(
        &mut self,
        host: &mut H,
        cfg: &Config,
        m: &mut McpCall,
        body_size: usize,
    ) -> Action {
        let raw = host.body(Body::Request, body_size);
        if self.request_encoding != Some(ContentEncoding::Identity) {
            // Compressed JSON-RPC is not something MCP clients send; it is not read.
            host.count(Counter::McpUnread, 1);
            return self.release();
        }
        let body = mcp::read_body(&raw);
        let policy = cfg.mcp.policy(Some(&m.tenant));
        let guarded = cfg.mcp.may_refuse(Some(&m.tenant));
        let first = body.messages().first().cloned();
        if let Some(msg) = first.as_ref() {
            if m.protocol_version.is_none() {
                m.protocol_version = msg.meta_protocol_version.clone();
            }
            m.pending = Some(Pending::new(msg));
        }
        m.request = first;
        match &body {
            mcp::Body::NotJson => {
                host.count(Counter::McpUnread, 1);
                return self.release();
            }
            mcp::Body::Batch(_) => {
                host.count(Counter::McpUnread, 1);
                // A batch (revision 2025-03-26) is not read message by message for spans; a tool call in
                // it is refused where a policy applies, so that wrapping cannot walk around it.
                if guarded && tool_calls(&body).next().is_some() {
                    return self.mcp_refuse(
                        host,
                        m,
                        None,
                        code::INVALID_REQUEST,
                        "the gateway does not accept tool calls in a JSON-RPC batch",
                        "invalid_tool_call",
                    );
                }
                return self.release();
            }
            mcp::Body::Single(_) => {}
        }
        let Some(msg) = m.request.clone() else {
            return self.release();
        };
        if msg.kind == Kind::Invalid || (msg.ambiguous && guarded) {
            if guarded && (msg.ambiguous || raw.windows(10).any(|w| w == b"tools/call")) {
                return self.mcp_refuse(
                    host,
                    m,
                    msg.id.as_ref(),
                    code::INVALID_REQUEST,
                    "the gateway cannot read this request unambiguously",
                    "invalid_tool_call",
                );
            }
            host.count(Counter::McpUnread, 1);
        }
        // Redaction: the block check and the egress rewrite see the tool arguments.
        let mut out = None;
        let args = msg
            .arguments
            .and_then(|a| Some((a, raw.get(a.start..a.end)?)));
        if let Some((span, args)) = args.filter(|_| crate::exchange::redaction::enabled(cfg)) {
            let r = cfg.redaction.redactor();
            if let Some((redacted, f)) =
                r.redact_json_strings_observed(args, ARGUMENTS, &mut |_| {})
            {
                let mut rewritten = Vec::with_capacity(raw.len());
                rewritten.extend_from_slice(raw.get(..span.start).unwrap_or_default());
                rewritten.extend_from_slice(&redacted);
                rewritten.extend_from_slice(raw.get(span.end..).unwrap_or_default());
                let blocked = f.blocked_by(&cfg.redaction.block);
                if !blocked.is_empty() {
                    host.count(Counter::RedactionBlocked, 1);
                    let message = format!(
                        "tool call blocked by the gateway's data protection policy: its arguments contain {}",
                        blocked.join(", ")
                    );
                    m.findings.merge(&f);
                    return self.mcp_refuse(
                        host,
                        m,
                        msg.id.as_ref(),
                        code::TOOL_DENIED,
                        &message,
                        "content_blocked",
                    );
                }
                if cfg.redaction.egress && !f.is_empty() {
                    out = Some(rewritten);
                }
                m.findings.merge(&f);
            }
        }
        if let Some(tool) = msg.tool() {
            if policy.check(tool) != ToolDecision::Allowed {
                return self.mcp_refuse(
                    host,
                    m,
                    msg.id.as_ref(),
                    code::TOOL_DENIED,
                    "tool call refused by the gateway's tool policy",
                    "tool_denied",
                );
            }
            let specs = cfg.mcp.counters(&m.tenant);
            if !specs.is_empty() {
                let clock = clock(host);
                let ledger = Ledger {
                    store: host.store(),
                    holder: 0,
                    max_keys: u64::MAX,
                };
                let want = Want {
                    input: 1,
                    output: 0,
                    min_output: 0,
                    input_cost_pico: 0,
                    output_price_pico: 0,
                };
                match ledger.admit(&specs, &want, &clock) {
                    Ok(Decision::Admitted { reservation, .. }) => {
                        m.reservation = Some((reservation, clock));
                    }
                    Ok(Decision::Denied { .. }) => {
                        return self.mcp_refuse(
                            host,
                            m,
                            msg.id.as_ref(),
                            code::BUDGET_EXCEEDED,
                            "tool call refused: the tenant's tool-call budget for this window is spent",
                            "budget_exceeded",
                        );
                    }
                    Err(_) => {
                        host.count(Counter::BudgetErrors, 1);
                        return self.mcp_refuse(
                            host,
                            m,
                            msg.id.as_ref(),
                            code::BUDGET_EXCEEDED,
                            "tool call refused: the gateway could not check the tool-call budget",
                            "budget_exceeded",
                        );
                    }
                }
            }
        }
        if cfg.capture_content {
            let text = &raw;
            m.arguments = msg
                .arguments
                .and_then(|s| text.get(s.start..s.end))
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(|s| cap(cfg, cfg.redaction.redactor().redact(s).0.into_owned()));
        }
        if let Some(new_body) = out.filter(|b| b.len() <= cfg.max_request_body) {
            if self.replace_request_body(host, body_size, &new_body) {
                host.count(Counter::RedactionEgressRewritten, 1);
            }
        }
        self.release()
    }

    fn mcp_refuse<H: Host>(
        &mut self,
        host: &mut H,
        m: &mut McpCall,
        id: Option<&mcp::RequestId>,
        code: i64,
        message: &str,
        reason: &'static str,
    ) -> Action {
        let reply = Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: mcp::error_response(id, code, message, Some(reason)),
        };
        host.count(Counter::McpRefused, 1);
        m.refusal = Some(reason);
        m.refused_outcome = Some(Outcome::RpcError {
            code: Some(code),
            message: Some(message.to_owned()),
        });
        m.http_status = Some(200);
        self.refuse(host, &reply);
        Action::Pause
    }

    pub(super) fn mcp_response_headers<H: Host>(&mut self, host: &mut H) {
        let cfg = self.config.clone();
        let headers = host.headers(Map::ResponseHeaders);
        let Some(m) = self.mcp.as_mut() else { return };
        m.http_status = headers
            .get_str(":status")
            .and_then(|s| s.parse::<u16>().ok());
        if m.session_id.is_none() {
            m.session_id = headers
                .get_string(mcp::header::SESSION_ID)
                .filter(|v| !v.is_empty() && v.len() <= 256);
        }
        let ct = headers.get_str("content-type");
        let Some(framing) = mcp::response_framing(ct.as_deref()) else {
            return;
        };
        let ce = headers.get_str("content-encoding").unwrap_or_default();
        let Some(encoding) = (if ce.trim().is_empty() {
            Some(ContentEncoding::Identity)
        } else {
            ContentEncoding::from_header(&ce)
        }) else {
            host.count(Counter::McpUnread, 1);
            return;
        };
        let limits = Limits {
            max_event: cfg.max_event,
            max_body: cfg.max_response_body,
            ..Limits::default()
        };
        m.decoder = Some(BodyDecoder::new(encoding, framing, &limits));
        m.incomplete = m.pending.as_ref().is_some_and(|p| p.outcome().is_none());
    }

    pub(super) fn mcp_response_body<H: Host>(&mut self, host: &mut H, size: usize, end: bool) {
        let cfg = self.config.clone();
        let chunk = if size > 0 {
            host.body(Body::Response, size)
        } else {
            Vec::new()
        };
        let Some(m) = self.mcp.as_mut() else { return };
        m.feed(&cfg, &chunk, end);
        if end {
            self.response_done = true;
        }
    }

    /// The exchange is over: the span, the metric, the tool-call budget.
    pub(super) fn mcp_log<H: Host>(&mut self, host: &mut H) {
        let cfg = self.config.clone();
        let Some(mut m) = self.mcp.take() else { return };
        if self.probing {
            host.hold_forget();
        }
        if !self.response_done && m.refusal.is_none() {
            m.feed(&cfg, &[], true);
        }
        let end_ns = host.now_ns();
        // Answer events too large to read, malformed, or in a coding that did not decode.
        if let Some(st) = m.decoder.as_ref().map(BodyDecoder::stats) {
            let dropped = st
                .oversize_skipped
                .saturating_add(st.malformed)
                .saturating_add(st.inflate_errors)
                .saturating_add(st.inflate_capped);
            if dropped > 0 {
                host.count(Counter::McpUnread, dropped);
            }
        }
        if let Some((reservation, clock)) = m.reservation.take() {
            let ledger = Ledger {
                store: host.store(),
                holder: 0,
                max_keys: u64::MAX,
            };
            let used = Amount {
                tokens: 1,
                input: 1,
                ..Amount::default()
            };
            if ledger.commit(&reservation, used, &clock).is_err() {
                host.count(Counter::BudgetErrors, 1);
            }
        }
        let Some(req) = m.request.as_ref() else {
            return;
        };
        if !matches!(req.kind, Kind::Request | Kind::Notification) {
            return;
        }
        let outcome = m
            .refused_outcome
            .clone()
            .or_else(|| m.pending.as_ref().and_then(|p| p.outcome().cloned()));
        let error = match (&outcome, req.kind) {
            (Some(o), _) => o.error_type(),
            // A request whose answer never came, or an HTTP error without a JSON-RPC one.
            (None, Kind::Request) => Some(match m.http_status {
                Some(s) if s >= 400 => s.to_string(),
                _ => "_OTHER".to_owned(),
            }),
            (None, _) => m.http_status.filter(|s| *s >= 400).map(|s| s.to_string()),
        };
        let method = req.method.clone().unwrap_or_default();
        let tool = req.tool().map(str::to_owned);
        let prompt = (method == "prompts/get")
            .then(|| req.name.clone())
            .flatten();
        let status_code = outcome.as_ref().and_then(Outcome::status_code);
        let duration = end_ns.saturating_sub(m.start_ns) as f64 / 1e9;
        if cfg.otlp.as_ref().is_some_and(|o| o.metrics) {
            let mut attrs: Vec<Attr<'_>> = vec![(attr::METHOD_NAME, ValRef::Str(&method))];
            if let Some(e) = error.as_deref() {
                attrs.push((attr::ERROR_TYPE, ValRef::Str(e)));
            }
            if let Some(t) = tool.as_deref() {
                attrs.push((attr::TOOL_NAME, ValRef::Str(t)));
                attrs.push((attr::OPERATION_NAME, ValRef::Str(attr::EXECUTE_TOOL)));
            }
            if let Some(p) = prompt.as_deref() {
                attrs.push((attr::PROMPT_NAME, ValRef::Str(p)));
            }
            if let Some(c) = status_code.as_deref() {
                attrs.push((attr::RPC_RESPONSE_STATUS_CODE, ValRef::Str(c)));
            }
            if let Some(v) = m.protocol_version.as_deref() {
                attrs.push((attr::PROTOCOL_VERSION, ValRef::Str(v)));
            }
            attrs.push(("network.protocol.name", ValRef::Str("http")));
            attrs.push(("network.transport", ValRef::Str("tcp")));
            attrs.push(("server.address", ValRef::Str(&self.call.server_address)));
            if let Some(p) = self.call.server_port {
                attrs.push(("server.port", ValRef::Int(i64::from(p))));
            }
            attrs.push(("tollgate.tenant", ValRef::Str(&m.tenant)));
            host.record_metric(Instrument::McpClientOperationDuration, &attrs, duration);
        }
        if cfg.otlp.is_none() || !m.ids.sampled {
            return;
        }
        let name = mcp::span_name(req);
        let description = outcome
            .as_ref()
            .and_then(Outcome::description)
            .unwrap_or_default()
            .to_owned();
        let redactor = cfg.redaction.configured.then(|| cfg.redaction.redactor());
        let other = span::Other {
            ids: &m.ids,
            name: &name,
            start_ns: m.start_ns,
            end_ns,
            error: error.as_ref().map(|_| description.as_str()),
        };
        let server = self.call.server_address.clone();
        let port = self.call.server_port;
        let built = span::build_other(&other, redactor, STRUCTURAL, |a| {
            a.str(attr::METHOD_NAME, Some(&method));
            a.str(attr::TOOL_NAME, tool.as_deref());
            if tool.is_some() {
                a.str(attr::OPERATION_NAME, Some(attr::EXECUTE_TOOL));
            }
            a.str(attr::PROMPT_NAME, prompt.as_deref());
            a.str(
                attr::JSONRPC_REQUEST_ID,
                req.id.as_ref().map(mcp::RequestId::attribute),
            );
            a.str(
                attr::JSONRPC_PROTOCOL_VERSION,
                req.jsonrpc.as_deref().filter(|v| *v != "2.0"),
            );
            a.str(attr::RESOURCE_URI, req.uri.as_deref());
            a.str(attr::PROTOCOL_VERSION, m.protocol_version.as_deref());
            // Sessions end with revision 2026-07-28 (model/mcp/registry.yaml: MUST NOT be set then).
            if m.protocol_version
                .as_deref()
                .is_none_or(|v| v < "2026-07-28")
            {
                a.str(attr::SESSION_ID, m.session_id.as_deref());
            }
            a.str(attr::ERROR_TYPE, error.as_deref());
            a.str(attr::RPC_RESPONSE_STATUS_CODE, status_code.as_deref());
            a.str("network.protocol.name", Some("http"));
            a.str("network.transport", Some("tcp"));
            a.str(
                "server.address",
                Some(server.as_str()).filter(|s| !s.is_empty()),
            );
            a.int("server.port", port.map(u64::from));
            a.int("http.response.status_code", m.http_status.map(u64::from));
            a.str("tollgate.tenant", Some(&m.tenant));
            a.str("tollgate.mcp.refusal", m.refusal);
            if m.incomplete && m.refusal.is_none() && outcome.is_none() {
                a.bool("tollgate.mcp.incomplete", true);
            }
            a.str(attr::TOOL_CALL_ARGUMENTS, m.arguments.as_deref());
            a.str(attr::TOOL_CALL_RESULT, m.result.as_deref());
            if !m.findings.is_empty() {
                a.int(
                    "tollgate.redaction.count",
                    Some(u64::from(m.findings.count)),
                );
                a.strs("tollgate.redaction.types", &m.findings.types);
            }
        });
        host.export_span(built);
    }
}

/// Captured content is capped like model content.
fn cap(cfg: &Config, mut s: String) -> String {
    if s.len() > cfg.max_content_bytes {
        let mut end = cfg.max_content_bytes;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("…[truncated]");
    }
    s
}

impl McpCall {
    /// Answer bytes (any chunking) into the pending request.
    fn feed(&mut self, cfg: &Config, chunk: &[u8], end: bool) {
        let Some(dec) = self.decoder.as_mut() else {
            return;
        };
        let pending = &mut self.pending;
        let capture = cfg.capture_content;
        let result = &mut self.result;
        let version = &mut self.protocol_version;
        let mut on = |frame: crate::stream::Frame<'_>| {
            let Some(body) = mcp::frame_body(&frame) else {
                return;
            };
            let text = match frame {
                crate::stream::Frame::Sse { data, .. } => data.as_bytes(),
                crate::stream::Frame::Json(b) => b,
                crate::stream::Frame::Aws { .. } => &[],
            };
            for msg in body.messages() {
                if version.is_none() {
                    // What an `initialize` answer negotiated (revisions before 2026-07-28).
                    version.clone_from(&msg.protocol_version);
                }
                let Some(p) = pending.as_mut() else { return };
                let before = p.outcome().is_some();
                p.observe(msg);
                if capture && !before && p.outcome().is_some() {
                    *result = msg
                        .result
                        .and_then(|s| text.get(s.start..s.end))
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .map(|s| cap(cfg, cfg.redaction.redactor().redact(s).0.into_owned()));
                }
            }
        };
        dec.push(chunk, &mut on);
        if end {
            dec.finish(&mut on);
        }
        self.incomplete = self.pending.as_ref().is_some_and(|p| p.outcome().is_none());
    }
}
