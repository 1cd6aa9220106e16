//! Opt-in content capture (`capture_content`): the request's messages and system instructions and the
//! model's output, in the GenAI semantic-convention JSON shape, redacted and size-capped before export.
//!
//! - `gen_ai.input.messages`: `[{"role", "parts": [{"type":"text","content"} | {"type":"tool_call","id",
//!   "name","arguments"} | {"type":"tool_call_response","id","response"} | {"type":<other>}], "name"?}]`
//! - `gen_ai.system_instructions`: `[{"type":"text","content"}]`
//! - `gen_ai.output.messages`: one `{"role":"assistant","parts":[…],"finish_reason"}` per choice.
//!
//! Input is read from the buffered request body per API shape; output is accumulated by the providers
//! through [`OutputCapture`] as text and tool calls arrive (whole bodies and streams alike), bounded.
//! Every string is redacted before it is serialised; then each attribute is cut to `max_content_bytes` of
//! text, the cut string ending in [`TRUNCATED`] and later parts dropped.

use crate::call::{Api, Response};
use crate::redact::{Findings, Redactor};
use serde_json::{json, Map, Value};

/// Appended to a string cut by the size cap.
pub const TRUNCATED: &str = "…[truncated]";
/// Output text is kept up to the cap plus this much, so a match straddling the cap is still recognised
/// (and redacted) before the cut.
pub const SLACK: usize = 512;
const MAX_CHOICES: usize = 16;
const MAX_TOOL_CALLS: usize = 64;
/// Structural bytes charged per string against the cap, so thousands of empty parts cannot bloat a span.
const PER_STRING_OVERHEAD: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCallOut {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChoiceOut {
    pub text: String,
    pub tool_calls: Vec<ToolCallOut>,
}

/// Output accumulated while the response is read. Disabled (the default) it stores nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputCapture {
    enabled: bool,
    /// Bytes that may still be stored.
    room: usize,
    /// Something was dropped for lack of room.
    pub overflow: bool,
    pub choices: Vec<ChoiceOut>,
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl OutputCapture {
    pub fn new(max_bytes: usize) -> Self {
        OutputCapture {
            enabled: true,
            room: max_bytes.saturating_add(SLACK),
            overflow: false,
            choices: Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn choice(&mut self, index: usize) -> Option<&mut ChoiceOut> {
        if !self.enabled || index >= MAX_CHOICES {
            return None;
        }
        if self.choices.len() <= index {
            self.choices.resize(index + 1, ChoiceOut::default());
        }
        self.choices.get_mut(index)
    }

    /// Take as much of `s` as fits; the rest is dropped and `overflow` set.
    fn take<'s>(&mut self, s: &'s str) -> &'s str {
        let n = floor_boundary(s, self.room);
        if n < s.len() {
            self.overflow = true;
        }
        self.room -= n;
        s.get(..n).unwrap_or("")
    }

    /// Generated text of choice `index`.
    pub fn text(&mut self, index: usize, s: &str) {
        if !self.enabled || s.is_empty() {
            return;
        }
        let part = self.take(s);
        if let Some(c) = self.choice(index) {
            c.text.push_str(part);
        }
    }

    /// A tool call the model started (or named again: the same id is not added twice).
    pub fn tool_call(&mut self, index: usize, id: &str, name: &str) {
        let (id, name) = (self.take(id).to_owned(), self.take(name).to_owned());
        let Some(c) = self.choice(index) else { return };
        if !id.is_empty() {
            if let Some(known) = c.tool_calls.iter_mut().find(|t| t.id == id) {
                if known.name.is_empty() {
                    known.name = name;
                }
                return;
            }
        }
        if c.tool_calls.len() < MAX_TOOL_CALLS {
            c.tool_calls.push(ToolCallOut {
                id,
                name,
                arguments: String::new(),
            });
        }
    }

    /// Arguments (JSON text, possibly a fragment) of the latest tool call of choice `index`.
    pub fn tool_arguments(&mut self, index: usize, fragment: &str) {
        if !self.enabled || fragment.is_empty() {
            return;
        }
        let part = self.take(fragment).to_owned();
        if let Some(t) = self.choice(index).and_then(|c| c.tool_calls.last_mut()) {
            t.arguments.push_str(&part);
        }
    }
}

/// Record generated text of choice `index` (no-op unless capture is on).
pub fn output_text(resp: &mut Response, index: usize, text: &str) {
    resp.content.text(index, text);
}

fn text_part(s: &str) -> Value {
    json!({"type": "text", "content": s})
}

fn str_of(v: &Value) -> Option<&str> {
    v.as_str()
}

/// Text of a content value that is a string or a list of `{text}` parts; other parts are kept by type.
fn parts_of(content: &Value, out: &mut Vec<Value>) {
    match content {
        Value::String(s) if !s.is_empty() => out.push(text_part(s)),
        Value::Array(items) => {
            for p in items {
                if let Some(t) = p.get("text").and_then(str_of) {
                    out.push(text_part(t));
                } else if let Some(kind) = p.get("type").and_then(str_of) {
                    block_part(kind, p, out);
                } else {
                    // Gemini / Bedrock parts are keyed by kind rather than typed.
                    keyed_part(p, out);
                }
            }
        }
        _ => {}
    }
}

/// Anthropic-style typed blocks (and OpenAI parts that are not text).
fn block_part(kind: &str, p: &Value, out: &mut Vec<Value>) {
    match kind {
        "tool_use" | "function_call" => out.push(json!({
            "type": "tool_call",
            "id": p.get("id").or_else(|| p.get("call_id")).cloned().unwrap_or(Value::Null),
            "name": p.get("name").cloned().unwrap_or(Value::Null),
            "arguments": p.get("input").or_else(|| p.get("arguments")).cloned().unwrap_or(Value::Null),
        })),
        "tool_result" | "function_call_output" => out.push(json!({
            "type": "tool_call_response",
            "id": p.get("tool_use_id").or_else(|| p.get("call_id")).cloned().unwrap_or(Value::Null),
            "response": flatten_text(p.get("content").or_else(|| p.get("output")).unwrap_or(&Value::Null)),
        })),
        other => out.push(json!({"type": other})),
    }
}

/// Gemini `{functionCall}` / `{functionResponse}` and Bedrock `{toolUse}` / `{toolResult}` parts.
fn keyed_part(p: &Value, out: &mut Vec<Value>) {
    if let Some(f) = p.get("functionCall") {
        out.push(json!({"type": "tool_call", "id": f.get("id").cloned().unwrap_or(Value::Null),
            "name": f.get("name").cloned().unwrap_or(Value::Null), "arguments": f.get("args").cloned().unwrap_or(Value::Null)}));
    } else if let Some(f) = p.get("functionResponse") {
        out.push(json!({"type": "tool_call_response", "id": f.get("id").or_else(|| f.get("name")).cloned().unwrap_or(Value::Null),
            "response": f.get("response").cloned().unwrap_or(Value::Null)}));
    } else if let Some(t) = p.get("toolUse") {
        out.push(json!({"type": "tool_call", "id": t.get("toolUseId").cloned().unwrap_or(Value::Null),
            "name": t.get("name").cloned().unwrap_or(Value::Null), "arguments": t.get("input").cloned().unwrap_or(Value::Null)}));
    } else if let Some(t) = p.get("toolResult") {
        out.push(json!({"type": "tool_call_response", "id": t.get("toolUseId").cloned().unwrap_or(Value::Null),
            "response": flatten_text(t.get("content").unwrap_or(&Value::Null))}));
    } else if let Some(k) = p.as_object().and_then(|o| o.keys().next()) {
        out.push(json!({"type": k}));
    }
}

/// A tool result's content as one value: text joined, or the value itself when it is not text.
fn flatten_text(v: &Value) -> Value {
    match v {
        Value::Array(items) => {
            let texts: Vec<&str> = items
                .iter()
                .filter_map(|i| i.get("text").and_then(str_of))
                .collect();
            if texts.is_empty() {
                v.clone()
            } else {
                Value::String(texts.join("\n"))
            }
        }
        other => other.clone(),
    }
}

/// An OpenAI-shaped chat message (OpenAI, Azure, Mistral, vLLM, Cohere v2, Ollama chat).
fn chat_message(m: &Value) -> Option<Value> {
    let role = m.get("role").and_then(str_of)?;
    let mut parts = Vec::new();
    if role == "tool" {
        parts.push(json!({
            "type": "tool_call_response",
            "id": m.get("tool_call_id").cloned().unwrap_or(Value::Null),
            "response": flatten_text(m.get("content").unwrap_or(&Value::Null)),
        }));
    } else if let Some(c) = m.get("content") {
        parts_of(c, &mut parts);
    }
    for call in m
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let f = call.get("function").unwrap_or(&Value::Null);
        let args = f.get("arguments").cloned().unwrap_or(Value::Null);
        // OpenAI sends arguments as a JSON string; semconv wants the object when it parses.
        let args = match &args {
            Value::String(s) => serde_json::from_str(s).unwrap_or(args),
            _ => args,
        };
        parts.push(
            json!({"type": "tool_call", "id": call.get("id").cloned().unwrap_or(Value::Null),
            "name": f.get("name").cloned().unwrap_or(Value::Null), "arguments": args}),
        );
    }
    let mut msg = Map::new();
    msg.insert("role".into(), Value::String(role.to_owned()));
    msg.insert("parts".into(), Value::Array(parts));
    if let Some(n) = m.get("name").filter(|n| n.is_string()) {
        msg.insert("name".into(), n.clone());
    }
    Some(Value::Object(msg))
}

/// Anthropic Messages (direct, Vertex, Bedrock InvokeModel with Claude) and Bedrock Converse messages.
fn block_message(m: &Value) -> Option<Value> {
    let role = m.get("role").and_then(str_of)?;
    let mut parts = Vec::new();
    if let Some(c) = m.get("content") {
        parts_of(c, &mut parts);
    }
    Some(json!({"role": role, "parts": parts}))
}

fn gemini_message(m: &Value) -> Option<Value> {
    let role = match m.get("role").and_then(str_of).unwrap_or("user") {
        "model" => "assistant",
        r => r,
    };
    let mut parts = Vec::new();
    if let Some(p) = m.get("parts") {
        parts_of(p, &mut parts);
    }
    Some(json!({"role": role, "parts": parts}))
}

/// What the request said, in semconv shape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Input {
    pub messages: Vec<Value>,
    pub system: Vec<Value>,
}

fn system_parts(v: Option<&Value>, out: &mut Vec<Value>) {
    match v {
        Some(Value::Object(o)) => {
            if let Some(p) = o.get("parts") {
                parts_of(p, out);
            }
        }
        Some(v) => parts_of(v, out),
        None => {}
    }
}

/// Read the request body of `api` into semconv messages and system instructions.
pub fn input(api: Api, body: &[u8]) -> Option<Input> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let mut inp = Input::default();
    let list = |key: &str| v.get(key).and_then(Value::as_array).into_iter().flatten();
    match api {
        Api::OpenAiChat | Api::CohereChat | Api::OllamaChat => {
            inp.messages = list("messages").filter_map(chat_message).collect();
        }
        Api::AnthropicMessages | Api::BedrockInvoke | Api::BedrockConverse => {
            system_parts(v.get("system"), &mut inp.system);
            inp.messages = list("messages").filter_map(block_message).collect();
        }
        Api::Gemini => {
            system_parts(
                v.get("systemInstruction")
                    .or_else(|| v.get("system_instruction")),
                &mut inp.system,
            );
            inp.messages = list("contents").filter_map(gemini_message).collect();
        }
        Api::OpenAiResponses => {
            system_parts(v.get("instructions"), &mut inp.system);
            match v.get("input") {
                Some(Value::String(s)) => {
                    inp.messages
                        .push(json!({"role": "user", "parts": [text_part(s)]}));
                }
                Some(Value::Array(items)) => {
                    for item in items {
                        if item.get("role").is_some() {
                            inp.messages.extend(chat_message(item));
                        } else if let Some(kind) = item.get("type").and_then(str_of) {
                            let mut parts = Vec::new();
                            block_part(kind, item, &mut parts);
                            let role = if kind == "function_call_output" {
                                "tool"
                            } else {
                                "assistant"
                            };
                            inp.messages.push(json!({"role": role, "parts": parts}));
                        }
                    }
                }
                _ => {}
            }
        }
        Api::OpenAiCompletions | Api::OllamaGenerate => {
            system_parts(v.get("system"), &mut inp.system);
            let mut parts = Vec::new();
            match v.get("prompt") {
                Some(Value::String(s)) => parts.push(text_part(s)),
                Some(Value::Array(items)) => {
                    parts.extend(items.iter().filter_map(str_of).map(text_part))
                }
                _ => {}
            }
            if !parts.is_empty() {
                inp.messages.push(json!({"role": "user", "parts": parts}));
            }
        }
        // Embedding inputs are not conversation messages.
        Api::OpenAiEmbeddings => return None,
    }
    Some(inp)
}

/// Output messages, one per choice, with the finish reasons the response reported.
pub fn output(resp: &Response) -> Vec<Value> {
    resp.content
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut parts = Vec::new();
            if !c.text.is_empty() {
                parts.push(text_part(&c.text));
            }
            for t in &c.tool_calls {
                let args = serde_json::from_str::<Value>(&t.arguments)
                    .unwrap_or_else(|_| Value::String(t.arguments.clone()));
                parts.push(
                    json!({"type": "tool_call", "id": t.id, "name": t.name, "arguments": args}),
                );
            }
            json!({
                "role": "assistant",
                "parts": parts,
                "finish_reason": resp.finish_reasons.get(i).map_or("", String::as_str),
            })
        })
        .collect()
}

/// Redact every string in `v` (keys included: a tool argument object's keys are user-controlled too).
pub fn redact_value(r: &Redactor, v: &mut Value, findings: &mut Findings) {
    match v {
        Value::String(s) => {
            let (out, f) = r.redact(s);
            if !f.is_empty() {
                *s = out.into_owned();
                findings.merge(&f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact_value(r, i, findings)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut val) in old {
                let (key, f) = r.redact(&k);
                findings.merge(&f);
                redact_value(r, &mut val, findings);
                map.insert(key.into_owned(), val);
            }
        }
        _ => {}
    }
}

/// Cut the strings of `v` to a total of `budget` bytes: the string that crosses it ends in [`TRUNCATED`],
/// and array elements after it are dropped. Returns whether anything was cut.
pub fn cap_value(v: &mut Value, budget: &mut usize) -> bool {
    match v {
        Value::String(s) => {
            let cost = s.len().saturating_add(PER_STRING_OVERHEAD);
            if cost <= *budget {
                *budget -= cost;
                return false;
            }
            let keep = floor_boundary(s, budget.saturating_sub(PER_STRING_OVERHEAD));
            s.truncate(keep);
            s.push_str(TRUNCATED);
            *budget = 0;
            true
        }
        Value::Array(items) => {
            let mut cut = false;
            let mut keep = items.len();
            for (i, item) in items.iter_mut().enumerate() {
                if *budget == 0 {
                    keep = i;
                    cut = true;
                    break;
                }
                cut |= cap_value(item, budget);
            }
            items.truncate(keep);
            cut
        }
        Value::Object(map) => {
            let mut cut = false;
            for (_, val) in map.iter_mut() {
                cut |= cap_value(val, budget);
            }
            cut
        }
        _ => false,
    }
}

/// What redaction and capture add to one call's span.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// Redaction ran for this call (then `tollgate.redaction.count` is set, 0 included).
    pub active: bool,
    /// Spans redacted in the request's user text and in the output.
    pub findings: Findings,
    /// Prompt-injection flags (never blocking).
    pub flags: Vec<&'static str>,
    /// Content attributes (already redacted and capped): (name, JSON text).
    pub content: Vec<(&'static str, String)>,
    pub truncated: bool,
}

/// One content attribute, ready for the span: redacted, capped, serialised.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rendered {
    /// (attribute name, JSON text).
    pub attributes: Vec<(&'static str, String)>,
    /// Found in the input messages and system instructions.
    pub findings: Findings,
    /// Found in the output messages.
    pub output_findings: Findings,
    pub truncated: bool,
}

/// Render the content attributes: redaction first (on whole strings), then the size cap.
pub fn render(input: Option<&Input>, resp: &Response, r: &Redactor, max_bytes: usize) -> Rendered {
    let mut out = Rendered::default();
    let add = |name: &'static str, items: Vec<Value>, out: &mut Rendered| {
        if items.is_empty() {
            return;
        }
        let mut v = Value::Array(items);
        let mut found = Findings::default();
        redact_value(r, &mut v, &mut found);
        if name == "gen_ai.output.messages" {
            out.output_findings.merge(&found);
        } else {
            out.findings.merge(&found);
        }
        let mut budget = max_bytes;
        out.truncated |= cap_value(&mut v, &mut budget);
        out.attributes.push((name, v.to_string()));
    };
    if let Some(i) = input {
        add("gen_ai.system_instructions", i.system.clone(), &mut out);
        add("gen_ai.input.messages", i.messages.clone(), &mut out);
    }
    add("gen_ai.output.messages", output(resp), &mut out);
    out.truncated |= resp.content.overflow;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::RedactionConfig;

    fn r() -> Redactor {
        Redactor::new(&RedactionConfig::default()).unwrap()
    }

    fn inp(api: Api, body: &str) -> Input {
        input(api, body.as_bytes()).unwrap()
    }

    #[test]
    fn openai_chat_messages() {
        let i = inp(
            Api::OpenAiChat,
            r#"{"model":"m","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}],"name":"bob"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"42"}]}"#,
        );
        assert_eq!(
            Value::Array(i.messages),
            json!([
                {"role":"system","parts":[{"type":"text","content":"be brief"}]},
                {"role":"user","parts":[{"type":"text","content":"hi"},{"type":"image_url"}],"name":"bob"},
                {"role":"assistant","parts":[{"type":"tool_call","id":"c1","name":"f","arguments":{"a":1}}]},
                {"role":"tool","parts":[{"type":"tool_call_response","id":"c1","response":"42"}]}
            ])
        );
        assert!(i.system.is_empty());
        assert!(input(Api::OpenAiEmbeddings, br#"{"input":"x"}"#).is_none());
        assert!(input(Api::OpenAiChat, b"not json").is_none());
    }

    #[test]
    fn anthropic_gemini_bedrock_responses() {
        let i = inp(
            Api::AnthropicMessages,
            r#"{"system":[{"type":"text","text":"sys"}],"messages":[{"role":"user","content":"q"},
            {"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"x":"y"}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"ok"}]}]}]}"#,
        );
        assert_eq!(
            Value::Array(i.system),
            json!([{"type":"text","content":"sys"}])
        );
        assert_eq!(
            i.messages[1],
            json!({"role":"assistant","parts":[{"type":"tool_call","id":"t1","name":"f","arguments":{"x":"y"}}]})
        );
        assert_eq!(
            i.messages[2]["parts"][0],
            json!({"type":"tool_call_response","id":"t1","response":"ok"})
        );
        let i = inp(
            Api::AnthropicMessages,
            r#"{"system":"plain","messages":[]}"#,
        );
        assert_eq!(
            Value::Array(i.system),
            json!([{"type":"text","content":"plain"}])
        );
        let i = inp(
            Api::Gemini,
            r#"{"systemInstruction":{"parts":[{"text":"s"}]},"contents":[{"role":"user","parts":[{"text":"a"}]},
            {"role":"model","parts":[{"functionCall":{"name":"f","args":{"k":1}}}]}]}"#,
        );
        assert_eq!(
            Value::Array(i.system),
            json!([{"type":"text","content":"s"}])
        );
        assert_eq!(i.messages[1]["role"], "assistant");
        assert_eq!(i.messages[1]["parts"][0]["type"], "tool_call");
        let i = inp(
            Api::BedrockConverse,
            r#"{"system":[{"text":"s"}],"messages":[{"role":"user","content":[{"text":"a"},{"toolResult":{"toolUseId":"u","content":[{"text":"r"}]}}]}]}"#,
        );
        assert_eq!(
            i.messages[0]["parts"][1],
            json!({"type":"tool_call_response","id":"u","response":"r"})
        );
        let i = inp(
            Api::OpenAiResponses,
            r#"{"instructions":"be nice","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]},
            {"type":"function_call_output","call_id":"c","output":"done"}]}"#,
        );
        assert_eq!(
            Value::Array(i.system),
            json!([{"type":"text","content":"be nice"}])
        );
        assert_eq!(i.messages[0]["parts"][0]["content"], "hi");
        assert_eq!(i.messages[1]["role"], "tool");
        let i = inp(Api::OllamaGenerate, r#"{"prompt":"p","system":"s"}"#);
        assert_eq!(i.messages[0]["parts"][0]["content"], "p");
        assert_eq!(i.system[0]["content"], "s");
    }

    #[test]
    fn output_capture_is_bounded() {
        let mut c = OutputCapture::default();
        c.text(0, "ignored when disabled");
        assert!(c.choices.is_empty());
        let mut c = OutputCapture::new(10);
        c.text(0, "hello ");
        c.text(1, "other");
        c.tool_call(0, "id1", "f");
        c.tool_call(0, "id1", "f");
        c.tool_arguments(0, "{\"a\":");
        c.tool_arguments(0, "1}");
        assert_eq!(c.choices[0].text, "hello ");
        assert_eq!(c.choices[0].tool_calls.len(), 1);
        assert_eq!(c.choices[0].tool_calls[0].arguments, "{\"a\":1}");
        c.text(0, &"é".repeat(1000));
        assert!(c.overflow);
        let total: usize = c.choices.iter().map(|x| x.text.len()).sum();
        assert!(total <= 10 + SLACK);
        c.text(99, "beyond the choice cap");
        assert_eq!(c.choices.len(), 2);
    }

    #[test]
    fn render_redacts_then_caps() {
        let mut resp = Response {
            content: OutputCapture::new(64),
            ..Default::default()
        };
        resp.content.text(0, "mail jane@example.com now");
        resp.set_finish_reason(0, "stop");
        let i = inp(
            Api::OpenAiChat,
            r#"{"messages":[{"role":"user","content":"key sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz_12-34567890abcdef"}]}"#,
        );
        let out = render(Some(&i), &resp, &r(), 1000);
        let text: String = out.attributes.iter().map(|(_, v)| v.as_str()).collect();
        assert!(
            !text.contains("jane@example.com") && !text.contains("sk-proj-Ab3"),
            "{text}"
        );
        assert_eq!(out.findings.types, vec!["openai_key"]);
        assert_eq!(out.output_findings.types, vec!["email"]);
        let (name, outp) = &out.attributes[1];
        assert_eq!(*name, "gen_ai.output.messages");
        assert_eq!(
            serde_json::from_str::<Value>(outp).unwrap(),
            json!([{"role":"assistant","parts":[{"type":"text","content":"mail [REDACTED:EMAIL] now"}],"finish_reason":"stop"}])
        );
        assert!(!out.truncated);
        // Cap: long text is cut with the marker and later messages dropped; the result is valid JSON.
        let long = "word ".repeat(200);
        let body =
            json!({"messages":[{"role":"user","content": long},{"role":"user","content":"later"}]})
                .to_string();
        let i = inp(Api::OpenAiChat, &body);
        let out = render(Some(&i), &Response::default(), &r(), 100);
        assert!(out.truncated);
        let v: Value = serde_json::from_str(&out.attributes[0].1).unwrap();
        let content = v[0]["parts"][0]["content"].as_str().unwrap();
        assert!(content.ends_with(TRUNCATED) && content.len() < 100 + TRUNCATED.len());
        assert_eq!(v.as_array().unwrap().len(), 1);
    }

    #[test]
    fn cap_value_keeps_char_boundaries() {
        let mut v = json!(["ééééé", "x"]);
        let mut budget = 8 + 3;
        assert!(cap_value(&mut v, &mut budget));
        assert_eq!(v, json!([format!("é{TRUNCATED}")]));
    }
}
