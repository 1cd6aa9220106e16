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

use crate::call::Response;
use crate::call::{floor_boundary, Findings};
use crate::codec::json::tape::{self, Value};
use crate::codec::json::Json;
use crate::redact::Redactor;
use std::borrow::Cow;

/// Appended to a string cut by the size cap.
pub const TRUNCATED: &str = "…[truncated]";
/// Structural bytes charged per string against the cap, so thousands of empty parts cannot bloat a span.
const PER_STRING_OVERHEAD: usize = 8;

/// Record generated text of choice `index` (no-op unless capture is on).
pub fn output_text(resp: &mut Response, index: usize, text: &str) {
    resp.content.text(index, text);
}

/// Values copied from the request deeper than this are cut to `null` (serde_json, which capture used
/// before, refused such bodies whole).
const MAX_DEPTH: usize = 128;

/// `v` copied, as written; nesting beyond [`MAX_DEPTH`] is `null`.
pub fn copy(v: Value<'_, '_>) -> Json {
    fn at(v: Value<'_, '_>, depth: usize) -> Json {
        if v.is_null() || depth > MAX_DEPTH {
            return Json::Null;
        }
        if let Some(s) = v.str() {
            return Json::Str(s.into_owned());
        }
        if let Some(items) = v.elements() {
            return Json::Arr(items.map(|i| at(i, depth + 1)).collect());
        }
        if let Some(members) = v.members() {
            return Json::Obj(
                members
                    .map(|(k, v)| (k.into_owned(), at(v, depth + 1)))
                    .collect(),
            );
        }
        v.raw_text().map_or(Json::Null, |t| Json::Lit(t.to_owned()))
    }
    at(v, 0)
}

/// `text` read as JSON, or None.
pub fn parse(text: &str) -> Option<Json> {
    tape::read(text, copy)
}

/// Member `key` of object `v` (the last, if the key is repeated).
pub fn get<'t, 'de>(v: Value<'t, 'de>, key: &str) -> Option<Value<'t, 'de>> {
    v.members()?
        .filter(|(k, _)| k == key)
        .last()
        .map(|(_, v)| v)
}

/// A string member of `v`.
pub fn get_str<'de>(v: Value<'_, 'de>, key: &str) -> Option<Cow<'de, str>> {
    get(v, key)?.str()
}

/// The first of `keys` that `v` has, copied; `null` when it has none.
pub fn member(v: Value<'_, '_>, keys: &[&str]) -> Json {
    keys.iter().find_map(|k| get(v, k)).map_or(Json::Null, copy)
}

pub fn text_part(s: &str) -> Json {
    Json::obj([("type", Json::str("text")), ("content", Json::str(s))])
}

pub fn tool_call(id: Json, name: Json, arguments: Json) -> Json {
    Json::obj([
        ("type", Json::str("tool_call")),
        ("id", id),
        ("name", name),
        ("arguments", arguments),
    ])
}

pub fn tool_response(id: Json, response: Json) -> Json {
    Json::obj([
        ("type", Json::str("tool_call_response")),
        ("id", id),
        ("response", response),
    ])
}

/// `{role, parts}`, then `extra` when given (a chat message's `name`, an output's `finish_reason`).
pub fn message(role: &str, parts: Vec<Json>, extra: Option<(&str, Json)>) -> Json {
    let mut members = vec![
        ("role".to_owned(), Json::str(role)),
        ("parts".to_owned(), Json::Arr(parts)),
    ];
    members.extend(extra.map(|(k, v)| (k.to_owned(), v)));
    Json::Obj(members)
}

/// Text of a content value that is a string or a list of `{text}` parts; other parts are kept by type.
pub fn parts_of(content: Value<'_, '_>, out: &mut Vec<Json>) {
    if let Some(s) = content.str() {
        if !s.is_empty() {
            out.push(text_part(&s));
        }
        return;
    }
    for p in content.elements().into_iter().flatten() {
        if let Some(t) = get_str(p, "text") {
            out.push(text_part(&t));
        } else if let Some(kind) = get_str(p, "type") {
            block_part(&kind, p, out);
        } else {
            // Gemini / Bedrock parts are keyed by kind rather than typed.
            keyed_part(p, out);
        }
    }
}

/// Anthropic-style typed blocks (and OpenAI parts that are not text).
pub fn block_part(kind: &str, p: Value<'_, '_>, out: &mut Vec<Json>) {
    out.push(match kind {
        "tool_use" | "function_call" => tool_call(
            member(p, &["id", "call_id"]),
            member(p, &["name"]),
            member(p, &["input", "arguments"]),
        ),
        "tool_result" | "function_call_output" => tool_response(
            member(p, &["tool_use_id", "call_id"]),
            flatten_text(get(p, "content").or_else(|| get(p, "output"))),
        ),
        other => Json::obj([("type", Json::str(other))]),
    });
}

/// Gemini `{functionCall}` / `{functionResponse}` and Bedrock `{toolUse}` / `{toolResult}` parts.
pub fn keyed_part(p: Value<'_, '_>, out: &mut Vec<Json>) {
    if let Some(f) = get(p, "functionCall") {
        out.push(tool_call(
            member(f, &["id"]),
            member(f, &["name"]),
            member(f, &["args"]),
        ));
    } else if let Some(f) = get(p, "functionResponse") {
        out.push(tool_response(
            member(f, &["id", "name"]),
            member(f, &["response"]),
        ));
    } else if let Some(t) = get(p, "toolUse") {
        out.push(tool_call(
            member(t, &["toolUseId"]),
            member(t, &["name"]),
            member(t, &["input"]),
        ));
    } else if let Some(t) = get(p, "toolResult") {
        out.push(tool_response(
            member(t, &["toolUseId"]),
            flatten_text(get(t, "content")),
        ));
    } else if let Some((k, _)) = p.members().and_then(|mut m| m.next()) {
        out.push(Json::obj([("type", Json::str(&k))]));
    }
}

/// A tool result's content as one value: text joined, or the value itself when it is not text.
pub fn flatten_text(v: Option<Value<'_, '_>>) -> Json {
    let Some(v) = v else { return Json::Null };
    let texts: Vec<Cow<'_, str>> = v
        .elements()
        .into_iter()
        .flatten()
        .filter_map(|i| get_str(i, "text"))
        .collect();
    if texts.is_empty() {
        copy(v)
    } else {
        Json::Str(texts.join("\n"))
    }
}

/// An OpenAI-shaped chat message (OpenAI, Azure, Mistral, vLLM, Cohere v2, Ollama chat).
pub fn chat_message(m: Value<'_, '_>) -> Option<Json> {
    let role = get_str(m, "role")?;
    let mut parts = Vec::new();
    if role == "tool" {
        parts.push(tool_response(
            member(m, &["tool_call_id"]),
            flatten_text(get(m, "content")),
        ));
    } else if let Some(c) = get(m, "content") {
        parts_of(c, &mut parts);
    }
    for call in get(m, "tool_calls")
        .and_then(|c| c.elements())
        .into_iter()
        .flatten()
    {
        let f = get(call, "function");
        let args = f.and_then(|f| get(f, "arguments"));
        // OpenAI sends arguments as a JSON string; semconv wants the object when it parses.
        let args = match args.and_then(|a| a.str()) {
            Some(s) => parse(&s).unwrap_or(Json::Str(s.into_owned())),
            None => args.map_or(Json::Null, copy),
        };
        let name = f.map_or(Json::Null, |f| member(f, &["name"]));
        parts.push(tool_call(member(call, &["id"]), name, args));
    }
    let name = get_str(m, "name").map(|n| ("name", Json::Str(n.into_owned())));
    Some(message(&role, parts, name))
}

/// Anthropic Messages (direct, Vertex, Bedrock InvokeModel with Claude) and Bedrock Converse messages.
pub fn block_message(m: Value<'_, '_>) -> Option<Json> {
    let role = get_str(m, "role")?;
    let mut parts = Vec::new();
    if let Some(c) = get(m, "content") {
        parts_of(c, &mut parts);
    }
    Some(message(&role, parts, None))
}

/// What the request said, in semconv shape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Input {
    pub messages: Vec<Json>,
    pub system: Vec<Json>,
}

pub fn system_parts(v: Option<Value<'_, '_>>, out: &mut Vec<Json>) {
    let Some(v) = v else { return };
    if v.members().is_some() {
        if let Some(p) = get(v, "parts") {
            parts_of(p, out);
        }
    } else {
        parts_of(v, out);
    }
}

/// Read a request body into semconv messages and system instructions with `shape`, the provider's layout
/// (`Provider::capture_input`); None when it is not UTF-8 JSON.
pub fn read(body: &[u8], shape: impl FnOnce(Value<'_, '_>, &mut Input)) -> Option<Input> {
    let text = std::str::from_utf8(body).ok()?;
    tape::read(text, |v| {
        let mut inp = Input::default();
        shape(v, &mut inp);
        inp
    })
}

/// The elements of list member `key` of `v` (none when absent or not a list).
pub fn list<'t, 'de>(v: Value<'t, 'de>, key: &str) -> impl Iterator<Item = Value<'t, 'de>> {
    get(v, key).and_then(|l| l.elements()).into_iter().flatten()
}

/// OpenAI-shaped chat: `messages` (OpenAI, Azure, Mistral, vLLM, Cohere v2, Ollama chat).
pub fn chat(v: Value<'_, '_>, inp: &mut Input) {
    inp.messages = list(v, "messages").filter_map(chat_message).collect();
}

/// Typed content blocks: `system` and `messages` (Anthropic Messages, Bedrock Converse and InvokeModel).
pub fn blocks(v: Value<'_, '_>, inp: &mut Input) {
    system_parts(get(v, "system"), &mut inp.system);
    inp.messages = list(v, "messages").filter_map(block_message).collect();
}

/// A bare `prompt` (a string or a list of strings) and `system` (Completions, Ollama generate).
pub fn prompt(v: Value<'_, '_>, inp: &mut Input) {
    system_parts(get(v, "system"), &mut inp.system);
    let prompt = get(v, "prompt");
    let mut parts = Vec::new();
    if let Some(s) = prompt.and_then(|p| p.str()) {
        parts.push(text_part(&s));
    }
    for p in prompt.and_then(|p| p.elements()).into_iter().flatten() {
        parts.extend(p.str().map(|s| text_part(&s)));
    }
    if !parts.is_empty() {
        inp.messages.push(message("user", parts, None));
    }
}

/// Output messages, one per choice, with the finish reasons the response reported.
pub fn output(resp: &Response) -> Vec<Json> {
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
                let args = parse(&t.arguments).unwrap_or_else(|| Json::str(&t.arguments));
                parts.push(tool_call(Json::str(&t.id), Json::str(&t.name), args));
            }
            let finish = resp.finish_reasons.get(i).map_or("", String::as_str);
            message(
                "assistant",
                parts,
                Some(("finish_reason", Json::str(finish))),
            )
        })
        .collect()
}

/// Redact every string in `v` (keys included: a tool argument object's keys are user-controlled too).
pub fn redact_value(r: &Redactor, v: &mut Json, findings: &mut Findings) {
    let redact = |s: &mut String, findings: &mut Findings| {
        let (out, f) = r.redact(s);
        if !f.is_empty() {
            *s = out.into_owned();
            findings.merge(&f);
        }
    };
    match v {
        Json::Str(s) => redact(s, findings),
        Json::Arr(items) => items.iter_mut().for_each(|i| redact_value(r, i, findings)),
        Json::Obj(members) => {
            for (k, val) in members.iter_mut() {
                redact(k, findings);
                redact_value(r, val, findings);
            }
        }
        Json::Null | Json::Lit(_) => {}
    }
}

/// Cut the strings of `v` to a total of `budget` bytes: the string that crosses it ends in [`TRUNCATED`],
/// and array elements after it are dropped. Returns whether anything was cut.
pub fn cap_value(v: &mut Json, budget: &mut usize) -> bool {
    match v {
        Json::Str(s) => {
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
        Json::Arr(items) => {
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
        Json::Obj(members) => {
            let mut cut = false;
            for (_, val) in members.iter_mut() {
                cut |= cap_value(val, budget);
            }
            cut
        }
        Json::Null | Json::Lit(_) => false,
    }
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
    let add = |name: &'static str, items: Vec<Json>, out: &mut Rendered| {
        if items.is_empty() {
            return;
        }
        let mut v = Json::Arr(items);
        let mut found = Findings::default();
        redact_value(r, &mut v, &mut found);
        if name == "gen_ai.output.messages" {
            out.output_findings.merge(&found);
        } else {
            out.findings.merge(&found);
        }
        let mut budget = max_bytes;
        out.truncated |= cap_value(&mut v, &mut budget);
        out.attributes.push((name, v.text()));
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
    use crate::call::{Api, OutputCapture, SLACK};
    use crate::redact::RedactionConfig;
    use serde_json::{json, Value};

    /// What serde_json reads of the JSON text of `items`.
    fn val(items: &[Json]) -> Value {
        serde_json::from_str(&Json::Arr(items.to_vec()).text()).unwrap()
    }

    fn r() -> Redactor {
        Redactor::new(&RedactionConfig::default()).unwrap()
    }

    /// What capture reads of a request body of `api`, through its provider.
    fn input(api: Api, body: &[u8]) -> Option<Input> {
        let route = crate::call::Route {
            api,
            provider: String::new(),
            path_model: None,
            path_stream: false,
        };
        crate::providers::capture_input(&route, body)
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
            val(&i.messages),
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
        assert_eq!(val(&i.system), json!([{"type":"text","content":"sys"}]));
        assert_eq!(
            val(&i.messages)[1],
            json!({"role":"assistant","parts":[{"type":"tool_call","id":"t1","name":"f","arguments":{"x":"y"}}]})
        );
        assert_eq!(
            val(&i.messages)[2]["parts"][0],
            json!({"type":"tool_call_response","id":"t1","response":"ok"})
        );
        let i = inp(
            Api::AnthropicMessages,
            r#"{"system":"plain","messages":[]}"#,
        );
        assert_eq!(val(&i.system), json!([{"type":"text","content":"plain"}]));
        let i = inp(
            Api::Gemini,
            r#"{"systemInstruction":{"parts":[{"text":"s"}]},"contents":[{"role":"user","parts":[{"text":"a"}]},
            {"role":"model","parts":[{"functionCall":{"name":"f","args":{"k":1}}}]}]}"#,
        );
        assert_eq!(val(&i.system), json!([{"type":"text","content":"s"}]));
        assert_eq!(val(&i.messages)[1]["role"], "assistant");
        assert_eq!(val(&i.messages)[1]["parts"][0]["type"], "tool_call");
        let i = inp(
            Api::BedrockConverse,
            r#"{"system":[{"text":"s"}],"messages":[{"role":"user","content":[{"text":"a"},{"toolResult":{"toolUseId":"u","content":[{"text":"r"}]}}]}]}"#,
        );
        assert_eq!(
            val(&i.messages)[0]["parts"][1],
            json!({"type":"tool_call_response","id":"u","response":"r"})
        );
        let i = inp(
            Api::OpenAiResponses,
            r#"{"instructions":"be nice","input":[{"role":"user","content":[{"type":"input_text","text":"hi"}]},
            {"type":"function_call_output","call_id":"c","output":"done"}]}"#,
        );
        assert_eq!(val(&i.system), json!([{"type":"text","content":"be nice"}]));
        assert_eq!(val(&i.messages)[0]["parts"][0]["content"], "hi");
        assert_eq!(val(&i.messages)[1]["role"], "tool");
        let i = inp(Api::OllamaGenerate, r#"{"prompt":"p","system":"s"}"#);
        assert_eq!(val(&i.messages)[0]["parts"][0]["content"], "p");
        assert_eq!(val(&i.system)[0]["content"], "s");
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
        let mut v = Json::Arr(vec![Json::str("ééééé"), Json::str("x")]);
        let mut budget = 8 + 3;
        assert!(cap_value(&mut v, &mut budget));
        assert_eq!(v, Json::Arr(vec![Json::Str(format!("é{TRUNCATED}"))]));
    }

    /// Every fixture file copied through the tape and written again reads, with serde_json, as the
    /// original does: the writer escapes what it must and keeps every value.
    #[test]
    fn copies_read_as_the_original() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testenv/fixtures");
        let mut seen = 0;
        for dir in std::fs::read_dir(&root).unwrap().flatten() {
            for file in std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = std::fs::read_to_string(file.path()).unwrap();
                let Ok(want) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                let got = parse(&text).unwrap().text();
                assert_eq!(
                    serde_json::from_str::<Value>(&got).unwrap(),
                    want,
                    "{:?}",
                    file.path()
                );
                seen += 1;
            }
        }
        assert!(seen > 50, "{seen} fixtures");
        let tricky = "{\"a\\\"b\":\"\\u0000\\u001f\\t\\n\\\\ \\ud83d\\ude00 é\",\"n\":[-0,1.50,1e3,true,false,null,{}]}";
        let got = parse(tricky).unwrap().text();
        assert_eq!(
            serde_json::from_str::<Value>(&got).unwrap(),
            serde_json::from_str::<Value>(tricky).unwrap()
        );
        // Numbers and member order stay as written; a repeated key too (reads take the last).
        assert_eq!(
            got,
            "{\"a\\\"b\":\"\\u0000\\u001f\\t\\n\\\\ 😀 é\",\"n\":[-0,1.50,1e3,true,false,null,{}]}"
        );
        assert_eq!(
            parse(r#"{"b":1,"a":2,"b":3}"#).unwrap().text(),
            r#"{"b":1,"a":2,"b":3}"#
        );
        let i = inp(
            Api::OpenAiChat,
            r#"{"messages":[{"role":"user","content":"x"},{"role":"user","content":"y"}],"messages":[{"role":"user","content":"z"}]}"#,
        );
        assert_eq!(
            val(&i.messages),
            json!([{"role":"user","parts":[{"type":"text","content":"z"}]}])
        );
    }

    #[test]
    fn what_cannot_be_read_is_null_or_nothing() {
        // Not JSON, or not UTF-8: no input at all.
        assert!(input(Api::OpenAiChat, b"{\"messages\":[").is_none());
        assert!(input(
            Api::OpenAiChat,
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}"
        )
        .is_none());
        // Tokens serde_json refuses (a lone surrogate, a number beyond f64) are null where they are copied.
        let i = inp(
            Api::AnthropicMessages,
            r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"\ud800","name":"f","input":{"x":1e400}}]}]}"#,
        );
        assert_eq!(
            val(&i.messages)[0]["parts"][0],
            json!({"type":"tool_call","id":null,"name":"f","arguments":{"x":null}})
        );
        // Nesting beyond MAX_DEPTH is cut to null; the rest is kept, and writing it does not recurse
        // without bound.
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        let body =
            format!(r#"{{"messages":[{{"role":"tool","tool_call_id":"c","content":{deep}}}]}}"#);
        let i = inp(Api::OpenAiChat, &body);
        let text = Json::Arr(i.messages).text();
        assert_eq!(text.matches('[').count(), MAX_DEPTH + 1 + 2);
        assert!(text.contains("null"));
    }
}
