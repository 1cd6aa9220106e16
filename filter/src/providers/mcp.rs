//! MCP (Model Context Protocol) traffic on the Streamable HTTP transport: JSON-RPC 2.0 messages in POST
//! bodies, answered with one JSON message or an SSE stream of them.
//!
//! Pure reading and building, no policy wiring:
//! - `read_body` reads a POST body or a JSON response body (one message; a batch array as protocol revision
//!   2025-03-26 allowed, which later revisions removed), `frame_body` one message of an SSE answer;
//! - `Pending` matches the messages of an answer to the request's id and keeps the outcome (result, tool
//!   error, JSON-RPC error);
//! - `ToolPolicy` decides a tool name against allow and deny lists with `*` wildcards;
//! - `error_response` and `tool_error_result` build the answer to a refused call, the request id echoed
//!   byte for byte.
//!
//! Names and attributes follow the OpenTelemetry MCP conventions (semantic-conventions-genai,
//! `model/mcp/`): see `attr` and `span_name`.
//!
//! Security: a key repeated where the reader looks (`method`, `params`, `name`, `id`, ...) makes the
//! message `ambiguous`, since servers disagree on which copy counts; policy must not trust such a message.

use crate::codec::json::tape::{self, Value};
use crate::codec::json::{escape_into, Json};
use crate::stream::Frame;
use crate::stream::Framing;
use std::borrow::Cow;

/// Request headers of the transport (names lowercase, as Envoy hands them over).
pub mod header {
    /// The protocol revision in use (every POST since 2025-06-18).
    pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
    /// The session a server assigned (revisions 2025-03-26 to 2025-11-25; removed in 2026-07-28).
    pub const SESSION_ID: &str = "mcp-session-id";
    /// The JSON-RPC method mirrored from the body (2026-07-28).
    pub const METHOD: &str = "mcp-method";
    /// `params.name` or `params.uri` mirrored from the body (2026-07-28), possibly `=?base64?…?=`-encoded.
    pub const NAME: &str = "mcp-name";
}

/// OpenTelemetry attribute names of MCP client spans and metrics.
pub mod attr {
    pub const METHOD_NAME: &str = "mcp.method.name";
    pub const SESSION_ID: &str = "mcp.session.id";
    pub const PROTOCOL_VERSION: &str = "mcp.protocol.version";
    pub const RESOURCE_URI: &str = "mcp.resource.uri";
    pub const JSONRPC_REQUEST_ID: &str = "jsonrpc.request.id";
    pub const JSONRPC_PROTOCOL_VERSION: &str = "jsonrpc.protocol.version";
    pub const RPC_RESPONSE_STATUS_CODE: &str = "rpc.response.status_code";
    pub const TOOL_NAME: &str = "gen_ai.tool.name";
    pub const PROMPT_NAME: &str = "gen_ai.prompt.name";
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
    pub const TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
    pub const ERROR_TYPE: &str = "error.type";
    /// The client operation duration histogram (unit `s`).
    pub const CLIENT_OPERATION_DURATION: &str = "mcp.client.operation.duration";
    /// Its advised bucket boundaries.
    pub const DURATION_BUCKETS: [f64; 14] = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ];
    /// `gen_ai.operation.name` of a `tools/call`.
    pub const EXECUTE_TOOL: &str = "execute_tool";
    /// `error.type` of a tool result flagged `isError`.
    pub const TOOL_ERROR: &str = "tool_error";
}

/// JSON-RPC 2.0 error codes (the standard ones, and the ones tollgate answers refusals with).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// A tool the tenant may not call. MCP asks application-defined codes to stay outside the JSON-RPC
    /// reserved range (-32768..-32000); the MCP SDK clients surface any code as their error type
    /// (Python `MCPError`, TypeScript `ProtocolError`) with the message and `data`.
    pub const TOOL_DENIED: i64 = -31403;
    /// The tenant's tool-call budget is spent for the current window.
    pub const BUDGET_EXCEEDED: i64 = -31429;
}

/// A byte range of the body (`start..end`), for redaction and content capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A JSON-RPC id: a string or a number, kept as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId {
    raw: String,
    text: String,
    string: bool,
}

impl RequestId {
    /// The id's JSON text exactly as the message wrote it (for echoing it back).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The value of `jsonrpc.request.id`: a string id unescaped, a number as written.
    pub fn attribute(&self) -> &str {
        &self.text
    }

    pub fn is_string(&self) -> bool {
        self.string
    }

    /// Whether `other` names the same request: equal strings, or equal numbers (`7`, `7.0` and `7e0` are
    /// one value; servers may write a number back differently from how it came).
    pub fn matches(&self, other: &RequestId) -> bool {
        if self.string != other.string {
            return false;
        }
        if self.string || self.text == other.text {
            return self.text == other.text;
        }
        match (number_key(&self.text), number_key(&other.text)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    fn of(v: Value<'_, '_>) -> Option<RequestId> {
        let raw = v.raw_text()?;
        if let Some(s) = v.str() {
            return Some(RequestId {
                raw: raw.to_owned(),
                text: s.into_owned(),
                string: true,
            });
        }
        // A number token (one beyond f64 included, which the tape reads as `null` elsewhere).
        raw.bytes()
            .next()
            .filter(|b| *b == b'-' || b.is_ascii_digit())?;
        Some(RequestId {
            raw: raw.to_owned(),
            text: raw.to_owned(),
            string: false,
        })
    }
}

/// A number compared by value: integers exactly, anything else through f64.
#[derive(PartialEq)]
enum NumberKey {
    Int(i128),
    Float(u64),
}

fn number_key(text: &str) -> Option<NumberKey> {
    if let Ok(i) = text.parse::<i128>() {
        return Some(NumberKey::Int(i));
    }
    let f = tape::f64_of(text)?;
    if f.fract() == 0.0 && f.abs() < 1e30 {
        return Some(NumberKey::Int(f as i128));
    }
    Some(NumberKey::Float(f.to_bits()))
}

/// What kind of JSON-RPC message it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// `method` and an `id` (a `null` id is read as none: MCP forbids it).
    Request,
    /// `method` and no `id`: nothing answers it (a Streamable HTTP server answers the POST with 202).
    Notification,
    /// `result`.
    Result,
    /// `error`.
    Error,
    /// Not a JSON-RPC 2.0 message (no `"jsonrpc": "2.0"`, no method, result or error, a bad id).
    #[default]
    Invalid,
}

/// What one message says, as far as observability and policy need it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub kind: Kind,
    /// The `jsonrpc` member (`jsonrpc.protocol.version`).
    pub jsonrpc: Option<String>,
    pub id: Option<RequestId>,
    pub method: Option<String>,
    /// `params.name`: the tool of `tools/call`, the prompt of `prompts/get`.
    pub name: Option<String>,
    /// `params.uri` (`resources/read` and the like).
    pub uri: Option<String>,
    /// Where `params.arguments` is (tool arguments).
    pub arguments: Option<Span>,
    /// Trace context propagated in `params._meta` (SEP-414).
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]` (per-request version, 2026-07-28).
    pub meta_protocol_version: Option<String>,
    /// Where `result` is (tool results, for opt-in capture).
    pub result: Option<Span>,
    /// `result.isError` of a tool result.
    pub is_error: Option<bool>,
    /// `result.resultType` (2026-07-28: `complete` or `input_required`; absent means complete).
    pub result_type: Option<String>,
    /// `result.protocolVersion`: the version an `initialize` result negotiated (before 2026-07-28).
    pub protocol_version: Option<String>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    /// A member the reader looks at appeared twice (the last copy was read).
    pub ambiguous: bool,
}

impl Message {
    /// The `tools/call` tool name, when this is one.
    pub fn tool(&self) -> Option<&str> {
        (self.kind == Kind::Request && self.method.as_deref() == Some("tools/call"))
            .then_some(self.name.as_deref())
            .flatten()
    }
}

/// A POST body or JSON response body.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Single(Box<Message>),
    /// A JSON array of messages (JSON-RPC batch; MCP 2025-03-26 only).
    Batch(Vec<Message>),
    /// Not JSON (or not UTF-8).
    NotJson,
}

impl Body {
    /// The messages it holds.
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m.as_ref()),
            Body::Batch(v) => v,
            Body::NotJson => &[],
        }
    }
}

/// Read a whole POST body (or a JSON response body).
pub fn read_body(body: &[u8]) -> Body {
    let Ok(text) = std::str::from_utf8(body) else {
        return Body::NotJson;
    };
    tape::read(text, |root| match root.elements() {
        Some(items) => Body::Batch(items.map(|v| message(text, v)).collect()),
        None => Body::Single(Box::new(message(text, root))),
    })
    .unwrap_or(Body::NotJson)
}

/// How an answer is framed, from its `content-type`: one JSON message, or an SSE stream of them. None
/// for anything else (a 202 has no body; an HTML error page is not read).
pub fn response_framing(content_type: Option<&str>) -> Option<Framing> {
    let essence = content_type?.split(';').next()?.trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Some(Framing::Whole)
    } else if essence.eq_ignore_ascii_case("text/event-stream") {
        Some(Framing::Sse)
    } else {
        None
    }
}

/// The messages of one frame of an answer (`stream::BodyDecoder` with `response_framing`): an SSE event's
/// data, or the whole JSON body. None for an event without data (the priming event of 2025-11-25
/// servers, keep-alives).
pub fn frame_body(frame: &Frame<'_>) -> Option<Body> {
    match *frame {
        Frame::Sse { data, .. } if data.trim().is_empty() => None,
        Frame::Sse { data, .. } => Some(read_body(data.as_bytes())),
        Frame::Json(bytes) => Some(read_body(bytes)),
        Frame::Aws { .. } => None,
    }
}

/// Where `part`, a slice of `text`, starts in it.
fn span_of(text: &str, part: &str) -> Option<Span> {
    let start = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= text.len()).then_some(Span { start, end })
}

/// Mark `slot` seen; a second time makes the message ambiguous.
fn once(seen: &mut u32, bit: u32, ambiguous: &mut bool) {
    if *seen & bit != 0 {
        *ambiguous = true;
    }
    *seen |= bit;
}

fn string(v: Value<'_, '_>) -> Option<String> {
    v.str().map(Cow::into_owned)
}

/// Read one message from its value on the tape of `text`.
fn message(text: &str, v: Value<'_, '_>) -> Message {
    let mut m = Message::default();
    let Some(members) = v.members() else {
        return m;
    };
    let (mut seen, mut bad_id, mut has_id) = (0u32, false, false);
    let (mut has_result, mut has_error) = (false, false);
    for (key, value) in members {
        match key.as_ref() {
            "jsonrpc" => {
                once(&mut seen, 1, &mut m.ambiguous);
                m.jsonrpc = string(value);
            }
            "id" => {
                once(&mut seen, 2, &mut m.ambiguous);
                has_id = true;
                m.id = None;
                bad_id = false;
                if value.raw_text() != Some("null") {
                    m.id = RequestId::of(value);
                    bad_id = m.id.is_none();
                }
            }
            "method" => {
                once(&mut seen, 4, &mut m.ambiguous);
                m.method = string(value);
            }
            "params" => {
                once(&mut seen, 8, &mut m.ambiguous);
                params(text, value, &mut m);
            }
            "result" => {
                once(&mut seen, 16, &mut m.ambiguous);
                has_result = true;
                result(text, value, &mut m);
            }
            "error" => {
                once(&mut seen, 32, &mut m.ambiguous);
                has_error = true;
                error(value, &mut m);
            }
            _ => {}
        }
    }
    m.kind = if m.jsonrpc.as_deref() != Some("2.0") || bad_id {
        Kind::Invalid
    } else if m.method.is_some() && !has_result && !has_error {
        if has_id {
            Kind::Request
        } else {
            Kind::Notification
        }
    } else if has_error && m.method.is_none() && !has_result {
        Kind::Error
    } else if has_result && !has_error && m.method.is_none() && m.id.is_some() {
        Kind::Result
    } else {
        Kind::Invalid
    };
    m
}

fn params(text: &str, v: Value<'_, '_>, m: &mut Message) {
    let Some(members) = v.members() else {
        return;
    };
    let mut seen = 0u32;
    for (key, value) in members {
        match key.as_ref() {
            "name" => {
                once(&mut seen, 1, &mut m.ambiguous);
                m.name = string(value);
            }
            "uri" => {
                once(&mut seen, 2, &mut m.ambiguous);
                m.uri = string(value);
            }
            "arguments" => {
                once(&mut seen, 4, &mut m.ambiguous);
                m.arguments = value.raw_text().and_then(|raw| span_of(text, raw));
            }
            "_meta" => {
                once(&mut seen, 8, &mut m.ambiguous);
                for (k, meta) in value.members().into_iter().flatten() {
                    match k.as_ref() {
                        "traceparent" => m.traceparent = string(meta),
                        "tracestate" => m.tracestate = string(meta),
                        "io.modelcontextprotocol/protocolVersion" => {
                            m.meta_protocol_version = string(meta)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

fn result(text: &str, v: Value<'_, '_>, m: &mut Message) {
    m.result = v.raw_text().and_then(|raw| span_of(text, raw));
    for (key, value) in v.members().into_iter().flatten() {
        match key.as_ref() {
            "isError" => m.is_error = value.bool(),
            "resultType" => m.result_type = string(value),
            "protocolVersion" => m.protocol_version = string(value),
            _ => {}
        }
    }
}

fn error(v: Value<'_, '_>, m: &mut Message) {
    for (key, value) in v.members().into_iter().flatten() {
        match key.as_ref() {
            "code" => m.error_code = value.i64(),
            "message" => m.error_message = string(value),
            _ => {}
        }
    }
}

/// How a request ended, from the answer's message with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A result (for `tools/call`: not flagged `isError`).
    Success,
    /// A `tools/call` result flagged `isError: true`.
    ToolError,
    /// A 2026-07-28 `input_required` result: the client will retry the request with the input.
    InputRequired,
    /// A JSON-RPC error response.
    RpcError {
        code: Option<i64>,
        message: Option<String>,
    },
}

impl Outcome {
    /// `error.type`: the JSON-RPC error code, or `tool_error` (`_OTHER` for an error without a code).
    pub fn error_type(&self) -> Option<String> {
        match self {
            Outcome::Success | Outcome::InputRequired => None,
            Outcome::ToolError => Some(attr::TOOL_ERROR.to_owned()),
            Outcome::RpcError { code: Some(c), .. } => Some(c.to_string()),
            Outcome::RpcError { code: None, .. } => Some("_OTHER".to_owned()),
        }
    }

    /// `rpc.response.status_code`: the JSON-RPC error code, when there is one.
    pub fn status_code(&self) -> Option<String> {
        match self {
            Outcome::RpcError { code: Some(c), .. } => Some(c.to_string()),
            _ => None,
        }
    }

    /// The span status description (the JSON-RPC error message).
    pub fn description(&self) -> Option<&str> {
        match self {
            Outcome::RpcError { message, .. } => message.as_deref(),
            _ => None,
        }
    }
}

/// A request waiting for its answer: feed it every message of the answer (`observe`).
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    id: Option<RequestId>,
    tool_call: bool,
    outcome: Option<Outcome>,
    /// Notifications seen before the response (progress, log messages).
    pub notifications: u64,
    /// Responses with another id (or none), which do not answer this request.
    pub unmatched: u64,
}

impl Pending {
    /// For a request (a message of another kind never gets an outcome).
    pub fn new(request: &Message) -> Pending {
        Pending {
            id: (request.kind == Kind::Request)
                .then(|| request.id.clone())
                .flatten(),
            tool_call: request.tool().is_some(),
            outcome: None,
            notifications: 0,
            unmatched: 0,
        }
    }

    /// The first matching response decides the outcome; what follows it is ignored. An error response
    /// without an id (a request the server could not read) answers the request too: on Streamable HTTP
    /// the POST carried only this request.
    pub fn observe(&mut self, msg: &Message) {
        if self.outcome.is_some() {
            return;
        }
        let Some(id) = self.id.as_ref() else {
            return;
        };
        match msg.kind {
            Kind::Notification => self.notifications = self.notifications.saturating_add(1),
            Kind::Result | Kind::Error => {
                let same = match msg.id.as_ref() {
                    Some(other) => id.matches(other),
                    None => msg.kind == Kind::Error,
                };
                if !same {
                    self.unmatched = self.unmatched.saturating_add(1);
                    return;
                }
                self.outcome = Some(if msg.kind == Kind::Error {
                    Outcome::RpcError {
                        code: msg.error_code,
                        message: msg.error_message.clone(),
                    }
                } else if msg.result_type.as_deref() == Some("input_required") {
                    Outcome::InputRequired
                } else if self.tool_call && msg.is_error == Some(true) {
                    Outcome::ToolError
                } else {
                    Outcome::Success
                });
            }
            Kind::Request | Kind::Invalid => {}
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}

/// The MCP client span name: `{mcp.method.name} {target}`, the target being the tool (`tools/call`) or the
/// prompt (`prompts/get`); the method alone otherwise (a resource URI is not low-cardinality).
pub fn span_name(msg: &Message) -> String {
    let method = msg.method.as_deref().unwrap_or("");
    let target = match method {
        "tools/call" | "prompts/get" => msg.name.as_deref().filter(|n| !n.is_empty()),
        _ => None,
    };
    match target {
        Some(t) => format!("{method} {t}"),
        None => method.to_owned(),
    }
}

/// A malformed policy list entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// An empty pattern at this index of `allow` or `deny`.
    Empty { list: &'static str, index: usize },
}

/// Per-tenant tool policy: `deny` wins; with a non-empty `allow`, a tool must match one of its patterns.
/// Patterns match the whole name, case-sensitively (tool names are), `*` standing for any run of
/// characters (none included).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    allow: Vec<String>,
    deny: Vec<String>,
}

/// What the policy says of one tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolDecision {
    Allowed,
    /// It matches `deny[index]`.
    Denied {
        index: usize,
    },
    /// `allow` is not empty and no pattern of it matches.
    NotAllowed,
}

impl ToolPolicy {
    pub fn new(allow: Vec<String>, deny: Vec<String>) -> Result<ToolPolicy, PolicyError> {
        for (list, patterns) in [("allow", &allow), ("deny", &deny)] {
            if let Some(index) = patterns.iter().position(String::is_empty) {
                return Err(PolicyError::Empty { list, index });
            }
        }
        Ok(ToolPolicy { allow, deny })
    }

    pub fn check(&self, tool: &str) -> ToolDecision {
        if let Some(index) = self.deny.iter().position(|p| wildcard_match(p, tool)) {
            return ToolDecision::Denied { index };
        }
        if self.allow.is_empty() || self.allow.iter().any(|p| wildcard_match(p, tool)) {
            ToolDecision::Allowed
        } else {
            ToolDecision::NotAllowed
        }
    }
}

/// Whether `name` matches `pattern` as a whole, `*` matching any run of characters. Linear in practice,
/// O(len(pattern) × len(name)) at worst, no recursion.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0usize, 0usize);
    // The position after the last `*` seen, and where in `name` it started matching.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, ni));
            }
            Some(&c) if n.get(ni) == Some(&c) => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// The `id` member of an answer: the request's id as it was written, or `null` when it had none.
fn push_id(out: &mut Vec<u8>, id: Option<&RequestId>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.map_or("null", RequestId::raw).as_bytes());
}

/// A JSON-RPC error response to the request with `id`, echoed exactly as the request wrote it:
/// `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…,"data":{"reason":…}}}` (`data` only with a
/// reason). Send it as `200 application/json`: older SDK clients (Python `mcp` 1.x) raise on a 4xx before
/// reading the body, and a 4xx without a recognised error may send newer clients down their legacy
/// fallback.
pub fn error_response(
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    reason: Option<&str>,
) -> Vec<u8> {
    let mut error = vec![
        ("code".to_owned(), Json::Lit(code.to_string())),
        ("message".to_owned(), Json::str(message)),
    ];
    if let Some(r) = reason {
        error.push(("data".to_owned(), Json::obj([("reason", Json::str(r))])));
    }
    let mut out = Vec::with_capacity(96 + message.len());
    push_id(&mut out, id);
    out.extend_from_slice(b",\"error\":");
    out.extend_from_slice(Json::Obj(error).text().as_bytes());
    out.push(b'}');
    out
}

/// The other way to refuse a `tools/call`: a successful JSON-RPC response whose tool result is flagged
/// `isError`, with `text` as its content, which an agent framework hands to the model as the tool's
/// answer instead of raising. `resultType` is written for protocol revisions that require it
/// (2026-07-28 and later).
pub fn tool_error_result(id: &RequestId, text: &str, protocol_version: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + text.len());
    push_id(&mut out, Some(id));
    out.extend_from_slice(b",\"result\":{");
    if protocol_version.is_some_and(|v| v >= "2026-07-28") {
        out.extend_from_slice(b"\"resultType\":\"complete\",");
    }
    out.extend_from_slice(b"\"content\":[{\"type\":\"text\",\"text\":\"");
    escape_into(&mut out, text);
    out.extend_from_slice(b"\"}],\"isError\":true}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{BodyDecoder, ContentEncoding, Limits};
    use serde_json::Value as J;

    fn single(body: &str) -> Message {
        match read_body(body.as_bytes()) {
            Body::Single(m) => *m,
            other => panic!("{other:?}"),
        }
    }

    /// The `tools/call` request of the MCP schema's examples (schema/2026-07-28/examples/CallToolRequest/
    /// call-tool-request.json, modelcontextprotocol/modelcontextprotocol, Apache-2.0 / MIT).
    const SPEC_CALL: &str = r#"{
  "jsonrpc": "2.0",
  "id": "call-tool-example",
  "method": "tools/call",
  "params": {
    "_meta": {
      "io.modelcontextprotocol/protocolVersion": "2026-07-28",
      "io.modelcontextprotocol/clientInfo": {
        "name": "ExampleClient",
        "version": "1.0.0"
      },
      "io.modelcontextprotocol/clientCapabilities": {}
    },
    "name": "get_weather",
    "arguments": {
      "location": "New York"
    }
  }
}"#;

    /// Its answer (examples/CallToolResultResponse/call-tool-result-response.json).
    const SPEC_RESULT: &str = r#"{
  "jsonrpc": "2.0",
  "id": "call-tool-example",
  "result": {
    "resultType": "complete",
    "content": [
      {
        "type": "text",
        "text": "Current weather in New York:\nTemperature: 72°F\nConditions: Partly cloudy"
      }
    ],
    "isError": false
  }
}"#;

    #[test]
    fn reads_a_tools_call_request() {
        let m = single(SPEC_CALL);
        assert_eq!(m.kind, Kind::Request);
        assert_eq!(m.tool(), Some("get_weather"));
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert_eq!(m.meta_protocol_version.as_deref(), Some("2026-07-28"));
        let id = m.id.as_ref().unwrap();
        assert_eq!(
            (id.raw(), id.attribute(), id.is_string()),
            ("\"call-tool-example\"", "call-tool-example", true)
        );
        let args = m.arguments.unwrap();
        let text: J = serde_json::from_str(&SPEC_CALL[args.start..args.end]).unwrap();
        assert_eq!(text, serde_json::json!({"location": "New York"}));
        assert!(!m.ambiguous);
        assert_eq!(span_name(&m), "tools/call get_weather");
    }

    #[test]
    fn reads_every_kind() {
        let n = single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!((n.kind, n.id.clone()), (Kind::Notification, None));
        assert_eq!(span_name(&n), "notifications/initialized");
        let r = single(SPEC_RESULT);
        assert_eq!(
            (r.kind, r.is_error, r.result_type.as_deref()),
            (Kind::Result, Some(false), Some("complete"))
        );
        let span = r.result.unwrap();
        assert!(SPEC_RESULT[span.start..span.end].starts_with('{'));
        let e = single(
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool: invalid_tool_name"}}"#,
        );
        assert_eq!(
            (e.kind, e.error_code, e.error_message.as_deref()),
            (
                Kind::Error,
                Some(-32602),
                Some("Unknown tool: invalid_tool_name")
            )
        );
        let e = single(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#,
        );
        assert_eq!((e.kind, e.id.clone()), (Kind::Error, None));
        let init = single(
            r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#,
        );
        assert_eq!(init.protocol_version.as_deref(), Some("2025-06-18"));
        let p = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"code_review","arguments":{"code":"x"}}}"#,
        );
        assert_eq!(
            (p.tool(), span_name(&p).as_str()),
            (None, "prompts/get code_review")
        );
        let rr = single(
            r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a/b.json"}}"#,
        );
        assert_eq!(
            (rr.uri.as_deref(), span_name(&rr).as_str()),
            (Some("file:///a/b.json"), "resources/read")
        );
        let t = single(
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","_meta":{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"rojo=00f067aa0ba902b7"}}}"#,
        );
        assert_eq!(
            t.traceparent.as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(t.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7"));
    }

    #[test]
    fn not_json_rpc_is_invalid() {
        for body in [
            r#"{"method":"tools/call","id":1}"#,
            r#"{"jsonrpc":"1.0","method":"tools/call","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","method":"x","id":{"a":1}}"#,
            r#"{"jsonrpc":"2.0","method":"x","id":true}"#,
            r#"{"jsonrpc":"2.0","method":"x","result":{},"id":1}"#,
            r#"{"jsonrpc":"2.0","result":{}}"#,
            r#"{"jsonrpc":"2.0","result":{},"error":{},"id":1}"#,
            r#""tools/call""#,
            r#"{"model":"gpt-4o","messages":[]}"#,
        ] {
            assert_eq!(single(body).kind, Kind::Invalid, "{body}");
        }
        for body in [&b"{\"jsonrpc\":"[..], b"\xff\xfe", b"", b"[1,"] {
            assert_eq!(read_body(body), Body::NotJson);
        }
    }

    #[test]
    fn ids_are_kept_verbatim_and_matched_by_value() {
        let ids: Vec<RequestId> = [
            r#""a\u0062c""#,
            r#""abc""#,
            "7",
            "7.0",
            "7e0",
            "-0",
            "0",
            "1e400",
            r#""7""#,
            "18446744073709551617",
        ]
        .iter()
        .map(|raw| {
            let m = single(&format!(
                r#"{{"jsonrpc":"2.0","id":{raw},"method":"ping"}}"#
            ));
            let id = m.id.clone().unwrap_or_else(|| panic!("{raw}"));
            assert_eq!(id.raw(), *raw);
            id
        })
        .collect();
        assert_eq!(ids[0].attribute(), "abc");
        assert!(ids[0].matches(&ids[1]));
        assert!(ids[2].matches(&ids[3]) && ids[2].matches(&ids[4]));
        assert!(ids[5].matches(&ids[6]));
        assert!(!ids[2].matches(&ids[8]), "number 7 is not string \"7\"");
        assert!(!ids[9].matches(&ids[2]));
        assert!(ids[9].matches(&ids[9].clone()));
        assert_eq!(ids[7].attribute(), "1e400");
    }

    #[test]
    fn repeated_keys_make_a_message_ambiguous() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"rm_rf"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"a","name":"b"}}"#,
        ] {
            let m = single(body);
            assert!(m.ambiguous, "{body}");
        }
        // The last copy is the one read, as Python's and JavaScript's JSON parsers do.
        let m = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"rm_rf"}}"#,
        );
        assert_eq!(m.tool(), Some("rm_rf"));
    }

    #[test]
    fn batches_are_read_element_by_element() {
        let b = read_body(br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/x"},5]"#);
        let Body::Batch(v) = &b else { panic!() };
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].tool(), Some("a"));
        assert_eq!((v[1].kind, v[2].kind), (Kind::Notification, Kind::Invalid));
        assert_eq!(b.messages().len(), 3);
        assert_eq!(read_body(b"[]"), Body::Batch(vec![]));
    }

    fn decode(framing: Framing, body: &[u8]) -> Vec<Message> {
        let mut d = BodyDecoder::new(ContentEncoding::Identity, framing, &Limits::default());
        let mut out = Vec::new();
        let mut take = |f: Frame<'_>| {
            if let Some(b) = frame_body(&f) {
                out.extend(b.messages().iter().cloned());
            }
        };
        for c in body.chunks(3) {
            d.push(c, &mut take);
        }
        d.finish(&mut take);
        out
    }

    #[test]
    fn sse_and_json_answers_are_matched_to_the_request() {
        let req = single(
            r#"{"jsonrpc":"2.0","id":"r-1","method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}"#,
        );
        // A 2025-11-25 server: priming event, progress, another request's answer, the answer, trailing noise.
        let sse = "id: e0\ndata:\n\n\
                   event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n\
                   data: {\"jsonrpc\":\"2.0\",\"id\":\"other\",\"result\":{}}\n\n\
                   data: {\"jsonrpc\":\"2.0\",\"id\":\"r-1\",\"result\":{\"content\":[],\"isError\":true}}\n\n\
                   data: {\"jsonrpc\":\"2.0\",\"id\":\"r-1\",\"result\":{}}\n\n";
        assert_eq!(
            response_framing(Some("text/event-stream; charset=utf-8")),
            Some(Framing::Sse)
        );
        let mut p = Pending::new(&req);
        for m in decode(Framing::Sse, sse.as_bytes()) {
            p.observe(&m);
        }
        assert_eq!(p.outcome(), Some(&Outcome::ToolError));
        assert_eq!((p.notifications, p.unmatched), (1, 1));
        assert_eq!(
            p.outcome().unwrap().error_type().as_deref(),
            Some("tool_error")
        );

        assert_eq!(
            response_framing(Some("Application/JSON")),
            Some(Framing::Whole)
        );
        assert_eq!(response_framing(Some("text/html")), None);
        assert_eq!(response_framing(None), None);
        let json = br#"{"jsonrpc":"2.0","id":"r-1","error":{"code":-32602,"message":"Unknown tool: search"}}"#;
        let mut p = Pending::new(&req);
        for m in decode(Framing::Whole, json) {
            p.observe(&m);
        }
        let o = p.outcome().unwrap();
        assert_eq!(o.error_type().as_deref(), Some("-32602"));
        assert_eq!(o.status_code().as_deref(), Some("-32602"));
        assert_eq!(o.description(), Some("Unknown tool: search"));

        let mut p = Pending::new(&single(SPEC_CALL));
        p.observe(&single(SPEC_RESULT));
        assert_eq!(p.outcome(), Some(&Outcome::Success));
        let mut p = Pending::new(&req);
        p.observe(&single(r#"{"jsonrpc":"2.0","id":"r-1","result":{"resultType":"input_required","inputRequests":{}}}"#));
        assert_eq!(
            (p.outcome(), p.outcome().unwrap().error_type()),
            (Some(&Outcome::InputRequired), None)
        );
        // An error without an id answers the only request of the POST.
        let mut p = Pending::new(&req);
        p.observe(&single(
            r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"bad"}}"#,
        ));
        assert!(matches!(
            p.outcome(),
            Some(Outcome::RpcError {
                code: Some(-32600),
                ..
            })
        ));
        // A notification never gets an outcome.
        let mut p = Pending::new(&single(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ));
        p.observe(&single(SPEC_RESULT));
        assert_eq!(p.outcome(), None);
    }

    #[test]
    fn tool_policy_with_wildcards() {
        let p = ToolPolicy::new(
            vec!["search_*".into(), "get_weather".into(), "fs.*.read".into()],
            vec!["*delete*".into(), "search_internal".into()],
        )
        .unwrap();
        assert_eq!(p.check("search_web"), ToolDecision::Allowed);
        assert_eq!(p.check("search_"), ToolDecision::Allowed);
        assert_eq!(p.check("get_weather"), ToolDecision::Allowed);
        assert_eq!(p.check("Get_Weather"), ToolDecision::NotAllowed);
        assert_eq!(p.check("get_weather2"), ToolDecision::NotAllowed);
        assert_eq!(p.check("fs.docs.read"), ToolDecision::Allowed);
        assert_eq!(p.check("fs.docs.write"), ToolDecision::NotAllowed);
        assert_eq!(
            p.check("search_internal"),
            ToolDecision::Denied { index: 1 }
        );
        assert_eq!(
            p.check("search_and_delete"),
            ToolDecision::Denied { index: 0 }
        );
        assert_eq!(p.check(""), ToolDecision::NotAllowed);
        let open = ToolPolicy::new(vec![], vec!["admin_*".into()]).unwrap();
        assert_eq!(open.check("anything"), ToolDecision::Allowed);
        assert_eq!(open.check("admin_x"), ToolDecision::Denied { index: 0 });
        assert_eq!(ToolPolicy::default().check("x"), ToolDecision::Allowed);
        assert_eq!(
            ToolPolicy::new(vec!["a".into()], vec!["b".into(), String::new()]),
            Err(PolicyError::Empty {
                list: "deny",
                index: 1
            })
        );
    }

    #[test]
    fn wildcard_matching() {
        for (p, n, want) in [
            ("*", "", true),
            ("*", "abc", true),
            ("", "", true),
            ("", "a", false),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a**b", "ab", true),
            ("*ab*ab*", "xabyabz", true),
            ("*aab", "aaaab", true),
            ("é*", "éa", true),
            ("a?c", "abc", false),
        ] {
            assert_eq!(wildcard_match(p, n), want, "{p} {n}");
        }
        // Worst case stays fast.
        let name = "a".repeat(2000);
        assert!(!wildcard_match(&format!("{}b", "*a".repeat(50)), &name));
    }

    #[test]
    fn refusals_echo_the_id_byte_for_byte() {
        for raw in [r#""a\u0062c""#, "7", "7.50", r#""𝄞 \"q\"""#, "-1e3"] {
            let req = single(&format!(
                r#"{{"jsonrpc":"2.0","id":{raw},"method":"tools/call","params":{{"name":"t"}}}}"#
            ));
            let id = req.id.as_ref().unwrap();
            let body = error_response(
                Some(id),
                code::TOOL_DENIED,
                "tool \"t\" is not allowed",
                Some("tool_denied"),
            );
            let text = String::from_utf8(body.clone()).unwrap();
            assert!(
                text.starts_with(&format!(r#"{{"jsonrpc":"2.0","id":{raw},"error":"#)),
                "{text}"
            );
            let v: J = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["error"]["code"], -31403);
            assert_eq!(v["error"]["message"], "tool \"t\" is not allowed");
            assert_eq!(v["error"]["data"]["reason"], "tool_denied");
            // Our own reader sees an error answering that request.
            let mut p = Pending::new(&req);
            p.observe(&single(&text));
            assert!(matches!(
                p.outcome(),
                Some(Outcome::RpcError {
                    code: Some(-31403),
                    ..
                })
            ));

            let r = tool_error_result(id, "denied\n", Some("2026-07-28"));
            let v: J = serde_json::from_slice(&r).unwrap();
            assert_eq!(v["result"]["isError"], true);
            assert_eq!(v["result"]["resultType"], "complete");
            assert_eq!(v["result"]["content"][0]["text"], "denied\n");
            assert!(String::from_utf8(r)
                .unwrap()
                .contains(&format!("\"id\":{raw},")));
            let mut p = Pending::new(&req);
            p.observe(&single(
                std::str::from_utf8(&tool_error_result(id, "x", None)).unwrap(),
            ));
            assert_eq!(p.outcome(), Some(&Outcome::ToolError));
        }
        let v: J = serde_json::from_slice(&error_response(
            None,
            code::PARSE_ERROR,
            "Parse error",
            None,
        ))
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}})
        );
        assert!(!String::from_utf8(tool_error_result(
            &RequestId {
                raw: "1".into(),
                text: "1".into(),
                string: false
            },
            "x",
            Some("2025-11-25")
        ))
        .unwrap()
        .contains("resultType"));
    }

    #[test]
    fn garbage_never_panics() {
        let mut s = 0x1234_5678_9abc_def0_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let alphabet = b"{}[]\",:\\ 0-9e.nulltruejsonrpcidmethodparamsresulterror\xff";
        for seed in [SPEC_CALL, SPEC_RESULT] {
            for _ in 0..500 {
                let mut m = seed.as_bytes().to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % m.len();
                    m[at] = alphabet[(next() as usize) % alphabet.len()];
                }
                let b = read_body(&m);
                for msg in b.messages() {
                    let mut p = Pending::new(msg);
                    p.observe(msg);
                    let _ = span_name(msg);
                    if let Some(a) = msg.arguments {
                        assert!(a.start <= a.end && a.end <= m.len());
                    }
                }
            }
        }
    }
}
