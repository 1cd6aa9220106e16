//! OpenAI Realtime over WebSocket (`wss://api.openai.com/v1/realtime?model=…`), Azure OpenAI's
//! (`/openai/realtime?api-version=…&deployment=…`, and `/openai/v1/realtime?model=…`), GA and beta.
//!
//! One text message per event, `{"type": …}`. What the gateway reads:
//! - server events: `session.created`/`session.updated` (session id, model), `response.created`,
//!   `response.done` (id, status and its reason, usage by modality), `error`;
//! - client events: `response.create` (what a budget refuses), `session.update` (a model change).
//!
//! GA and beta differ in event names the gateway does not need (`response.output_audio.delta` vs
//! `response.audio.delta`, `output_modalities` vs `modalities`) and agree on these. The beta is asked for
//! with the `OpenAI-Beta: realtime=v1` header, or from browsers with the subprotocol
//! `openai-beta.realtime-v1` (`is_beta`).
//!
//! Audio travels base64 in JSON (`input_audio_buffer.append`, `response.output_audio.delta`): most
//! messages are large and uninteresting, so the event type is peeked at first and only the few events
//! above are read whole.

use super::gemini::percent_decode;
use super::realtime::ModalityUsage;
use crate::codec::json::lenient::{json_struct, read, Lenient, LenientStr};
use crate::codec::json::skim::Reader;
use crate::codec::json::Json;
use std::borrow::Cow;

/// Where a realtime WebSocket goes, from the upgrade request's path (with its query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealtimeRoute {
    /// Azure OpenAI (`/openai/...`): `gen_ai.provider.name` `azure.ai.openai`.
    pub azure: bool,
    /// The `model` query parameter (the Azure `deployment` when there is no model).
    pub model: Option<String>,
}

/// A realtime WebSocket path: `/v1/realtime`, `/openai/realtime`, `/openai/v1/realtime` (the HTTP
/// endpoints below it, `/calls`, `/sessions`, `/client_secrets`, are not WebSockets and are refused).
pub fn route(path: &str) -> Option<RealtimeRoute> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let path = path.strip_suffix('/').unwrap_or(path);
    let azure = match path {
        "/v1/realtime" => false,
        "/openai/realtime" | "/openai/v1/realtime" => true,
        _ => return None,
    };
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
            .filter(|v| !v.is_empty())
    };
    let model = param("model").or_else(|| if azure { param("deployment") } else { None });
    Some(RealtimeRoute { azure, model })
}

/// Whether the upgrade asked for the beta protocol: `OpenAI-Beta: realtime=v1`, or the subprotocol
/// `openai-beta.realtime-v1` in `Sec-WebSocket-Protocol` (browsers cannot set headers). Browser clients
/// also pass their key as the subprotocol `openai-insecure-api-key.<key>`: that header is a secret.
pub fn is_beta(openai_beta: Option<&str>, subprotocols: Option<&str>) -> bool {
    openai_beta.is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("realtime=v1"))
    }) || subprotocols.is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("openai-beta.realtime-v1"))
    })
}

/// The `type` of an event, found by walking the top-level members without reading the other values.
/// None when the text is not a JSON object with exactly one plain string `type` (a second `type` could be
/// the one the server reads, so the caller reads the event the careful way).
pub fn event_type(text: &str) -> Option<&str> {
    let mut r = Reader::new(text);
    r.begin_object()?;
    let (mut first, mut found) = (true, None);
    while let Some(key) = r.next_key(first)? {
        first = false;
        if key == b"type" {
            if found.is_some() {
                return None;
            }
            found = Some(r.string()?.plain()?);
        } else {
            r.skip()?;
        }
    }
    r.at_end().then_some(found)?
}

json_struct! {
    struct Event<'a> {
        kind: LenientStr<'a> = "type",
        event_id: LenientStr<'a> = "event_id",
        response: Lenient<ResponseObject<'a>> = "response",
        session: Lenient<Session<'a>> = "session",
        error: Lenient<ErrorObject<'a>> = "error",
    }
}

json_struct! {
    struct Session<'a> {
        id: LenientStr<'a> = "id",
        model: LenientStr<'a> = "model",
    }
}

json_struct! {
    struct ResponseObject<'a> {
        id: LenientStr<'a> = "id",
        status: LenientStr<'a> = "status",
        status_details: Lenient<StatusDetails<'a>> = "status_details",
        conversation_id: LenientStr<'a> = "conversation_id",
        usage: Lenient<Usage> = "usage",
    }
}

json_struct! {
    struct StatusDetails<'a> {
        reason: LenientStr<'a> = "reason",
        error: Lenient<StatusError<'a>> = "error",
    }
}

json_struct! {
    struct StatusError<'a> {
        kind: LenientStr<'a> = "type",
        code: LenientStr<'a> = "code",
    }
}

json_struct! {
    struct Usage {
        total_tokens: Lenient<u64> = "total_tokens",
        input_tokens: Lenient<u64> = "input_tokens",
        output_tokens: Lenient<u64> = "output_tokens",
        input_token_details: Lenient<InputDetails> = "input_token_details",
        output_token_details: Lenient<OutputDetails> = "output_token_details",
    }
}

json_struct! {
    struct InputDetails {
        text_tokens: Lenient<u64> = "text_tokens",
        audio_tokens: Lenient<u64> = "audio_tokens",
        image_tokens: Lenient<u64> = "image_tokens",
        cached_tokens: Lenient<u64> = "cached_tokens",
        cached_tokens_details: Lenient<CachedDetails> = "cached_tokens_details",
    }
}

json_struct! {
    struct CachedDetails {
        text_tokens: Lenient<u64> = "text_tokens",
        audio_tokens: Lenient<u64> = "audio_tokens",
        image_tokens: Lenient<u64> = "image_tokens",
    }
}

json_struct! {
    struct OutputDetails {
        text_tokens: Lenient<u64> = "text_tokens",
        audio_tokens: Lenient<u64> = "audio_tokens",
        /// Azure reports it; the OpenAI types do not have it.
        reasoning_tokens: Lenient<u64> = "reasoning_tokens",
    }
}

json_struct! {
    struct ErrorObject<'a> {
        kind: LenientStr<'a> = "type",
        code: LenientStr<'a> = "code",
        message: LenientStr<'a> = "message",
        event_id: LenientStr<'a> = "event_id",
    }
}

impl Usage {
    /// Every count as reported: cached ⊂ input, and the details split input and output by modality.
    fn modality(self) -> ModalityUsage {
        let mut u = ModalityUsage {
            input: self.input_tokens.get(),
            output: self.output_tokens.get(),
            total: self.total_tokens.get(),
            ..ModalityUsage::default()
        };
        if let Some(d) = self.input_token_details.get() {
            u.input_text = d.text_tokens.get();
            u.input_audio = d.audio_tokens.get();
            u.input_image = d.image_tokens.get();
            u.cache_read = d.cached_tokens.get();
            if let Some(c) = d.cached_tokens_details.get() {
                u.cache_read_text = c.text_tokens.get();
                u.cache_read_audio = c.audio_tokens.get();
                u.cache_read_image = c.image_tokens.get();
            }
        }
        if let Some(d) = self.output_token_details.get() {
            u.output_text = d.text_tokens.get();
            u.output_audio = d.audio_tokens.get();
            u.reasoning = d.reasoning_tokens.get();
        }
        u
    }
}

/// A `response.done`: always sent, whatever the response's end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseDone {
    pub id: Option<String>,
    /// `completed`, `cancelled`, `failed` or `incomplete`.
    pub status: Option<String>,
    /// `status_details.reason`: `turn_detected`/`client_cancelled` (cancelled),
    /// `max_output_tokens`/`content_filter` (incomplete).
    pub reason: Option<String>,
    /// `status_details.error` of a failed response.
    pub error_type: Option<String>,
    pub error_code: Option<String>,
    pub conversation_id: Option<String>,
    /// None when the event carried no usage.
    pub usage: Option<ModalityUsage>,
}

impl ResponseDone {
    /// `gen_ai.response.finish_reasons` for the response: `stop`, `length` and `content_filter` as for
    /// Chat; an interrupted response reports its reason (`turn_detected`, `client_cancelled`), a failed one
    /// `error`.
    pub fn finish_reason(&self) -> Option<&str> {
        Some(match (self.status.as_deref()?, self.reason.as_deref()) {
            ("completed", _) => "stop",
            ("incomplete", Some("max_output_tokens")) => "length",
            ("incomplete", Some("content_filter")) => "content_filter",
            ("cancelled", Some(r)) => r,
            ("failed" | "cancelled" | "incomplete", _) => "error",
            (other, _) => other,
        })
    }

    /// `error.type` of the response span: the failure's code or type, `_OTHER` when it has neither.
    pub fn error_type(&self) -> Option<&str> {
        (self.status.as_deref() == Some("failed")).then(|| {
            self.error_code
                .as_deref()
                .or(self.error_type.as_deref())
                .unwrap_or("_OTHER")
        })
    }
}

/// An `error` event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorEvent {
    pub kind: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    /// The client event that caused it.
    pub client_event_id: Option<String>,
}

/// A server event, as far as the gateway reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// `session.created` or `session.updated`.
    Session {
        id: Option<String>,
        model: Option<String>,
    },
    ResponseCreated {
        id: Option<String>,
    },
    ResponseDone(Box<ResponseDone>),
    Error(ErrorEvent),
    /// Any other event (its type).
    Other(String),
}

fn owned(s: LenientStr<'_>) -> Option<String> {
    s.get().map(Cow::into_owned)
}

/// Read one server event (a text message); None when it is not a JSON object with a `type`.
pub fn server_event(text: &str) -> Option<ServerEvent> {
    if let Some(t) = event_type(text) {
        if !matches!(
            t,
            "session.created" | "session.updated" | "response.created" | "response.done" | "error"
        ) {
            return Some(ServerEvent::Other(t.to_owned()));
        }
    }
    let e = read::<Event<'_>>(text.as_bytes())?;
    let kind = e.kind.get()?;
    Some(match kind.as_ref() {
        "session.created" | "session.updated" => {
            let s = e.session.get().unwrap_or_default();
            ServerEvent::Session {
                id: owned(s.id),
                model: owned(s.model),
            }
        }
        "response.created" => ServerEvent::ResponseCreated {
            id: e.response.get().and_then(|r| owned(r.id)),
        },
        "response.done" => {
            let r = e.response.get().unwrap_or_default();
            let details = r.status_details.get().unwrap_or_default();
            let failure = details.error.get().unwrap_or_default();
            ServerEvent::ResponseDone(Box::new(ResponseDone {
                id: owned(r.id),
                status: owned(r.status),
                reason: owned(details.reason),
                error_type: owned(failure.kind),
                error_code: owned(failure.code),
                conversation_id: owned(r.conversation_id),
                usage: r.usage.get().map(Usage::modality),
            }))
        }
        "error" => {
            let err = e.error.get().unwrap_or_default();
            ServerEvent::Error(ErrorEvent {
                kind: owned(err.kind),
                code: owned(err.code),
                message: owned(err.message),
                client_event_id: owned(err.event_id),
            })
        }
        other => ServerEvent::Other(other.to_owned()),
    })
}

/// A client event, as far as the gateway reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// `response.create`: asks the model for a response (what a spent budget refuses). `event_id` is the
    /// client's own id of the event, echoed in an `error` about it.
    ResponseCreate { event_id: Option<String> },
    /// `session.update`, with the model when it names one.
    SessionUpdate { model: Option<String> },
    /// Any other event (its type).
    Other(String),
    /// A JSON object whose event cannot be told for sure (a repeated member, such as two `type`s): the
    /// server may read it as a `response.create`, so a spent budget refuses it too.
    Ambiguous,
}

/// Read one client event (a text message); None when it is not a JSON object.
pub fn client_event(text: &str) -> Option<ClientEvent> {
    if let Some(t) = event_type(text) {
        if !matches!(t, "response.create" | "session.update") {
            return Some(ClientEvent::Other(t.to_owned()));
        }
    }
    text.trim_start().starts_with('{').then_some(())?;
    if super::realtime::repeated_member(text) {
        return Some(ClientEvent::Ambiguous);
    }
    let Some(e) = read::<Event<'_>>(text.as_bytes()) else {
        // Not a JSON object.
        return crate::codec::json::tape::error_at(text)
            .is_none()
            .then_some(ClientEvent::Ambiguous);
    };
    let Some(kind) = e.kind.get() else {
        return Some(ClientEvent::Ambiguous);
    };
    Some(match kind.as_ref() {
        "response.create" => ClientEvent::ResponseCreate {
            event_id: owned(e.event_id),
        },
        "session.update" => ClientEvent::SessionUpdate {
            model: e.session.get().and_then(|s| owned(s.model)),
        },
        other => ClientEvent::Other(other.to_owned()),
    })
}

/// The `error` event the API itself sends about a client event it refuses, for answering a refused
/// `response.create` in-band (the socket stays open; nothing is forwarded):
/// `{"type":"error","event_id":…,"error":{"type":…,"code":…,"message":…,"param":null,"event_id":…}}`.
/// `event_id` is this server event's own id (unique per session); `client_event_id` the refused event's
/// id, when it had one. Use the codes of HTTP refusals (`reply::Refusal`), e.g. type `rate_limit_error`
/// and code `token_budget_exceeded`.
pub fn error_event(
    event_id: &str,
    kind: &str,
    code: &str,
    message: &str,
    client_event_id: Option<&str>,
) -> String {
    Json::obj([
        ("type", Json::str("error")),
        ("event_id", Json::str(event_id)),
        (
            "error",
            Json::obj([
                ("type", Json::str(kind)),
                ("code", Json::str(code)),
                ("message", Json::str(message)),
                ("param", Json::Null),
                ("event_id", client_event_id.map_or(Json::Null, Json::str)),
            ]),
        ),
    ])
    .text()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as J;

    /// A GA `response.done` recorded from `gpt-realtime` (pydantic/pydantic-ai,
    /// tests/realtime/cassettes/test_openai_ws/test_text_in_audio_out_turn.yaml, MIT; the cassette stores
    /// the events as YAML, written back here as JSON with the same members and values).
    const GA_DONE: &str = r#"{"type":"response.done","event_id":"event_Dz2pftfGVvx4iYyEbvTn7","response":{"object":"realtime.response","id":"resp_Dz2peMI5aYdp3zc28YMdx","status":"completed","status_details":null,"output":[{"id":"item_Dz2penlys0DOezWoE35vu","type":"message","status":"completed","role":"assistant","content":[{"type":"output_audio","transcript":"Hey there! Great to chat with you."}]}],"conversation_id":"conv_Dz2peJhy7FJE2xGKZiJF5","output_modalities":["audio"],"max_output_tokens":"inf","audio":{"output":{"format":{"type":"audio/pcm","rate":24000},"voice":"alloy"}},"usage":{"total_tokens":79,"input_tokens":16,"output_tokens":63,"input_token_details":{"text_tokens":16,"audio_tokens":0,"image_tokens":0,"cached_tokens":0,"cached_tokens_details":{"text_tokens":0,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":19,"audio_tokens":44}},"metadata":null}}"#;

    /// Its `session.created` (same cassette, instructions shortened).
    const GA_SESSION: &str = r#"{"type":"session.created","event_id":"event_Dz2pexehVShfFs2eddZLh","session":{"type":"realtime","object":"realtime.session","id":"sess_Dz2pePC2uaIsPJZhPYNjH","model":"gpt-realtime","output_modalities":["audio"],"instructions":"Your knowledge cutoff is 2023-10.","tools":[],"tool_choice":"auto","max_output_tokens":"inf","tracing":null,"truncation":"auto","prompt":null,"expires_at":1783444866,"include":null}}"#;

    /// Azure's beta-shaped `response.done` recorded from `gpt-realtime` (same project,
    /// tests/realtime/cassettes/test_azure_ws/test_text_in_audio_out_turn.yaml, MIT), with
    /// `output_token_details.reasoning_tokens`.
    const AZURE_DONE: &str = r#"{"event_id":"event_69FvBs9sCaSfikCQIwmgXk","type":"response.done","response":{"object":"realtime.response","id":"resp_E464loWGFmfl2NWN2MaOm","status":"completed","status_details":null,"output":[{"id":"item_E464l2WcsNIalTKOJ0zN9","object":"realtime.item","type":"message","status":"completed","role":"assistant","content":[{"type":"audio","transcript":"Hello there! Great to meet you."}]}],"usage":{"total_tokens":77,"input_tokens":16,"output_tokens":61,"input_token_details":{"cached_tokens":0,"text_tokens":16,"audio_tokens":0,"image_tokens":0,"cached_tokens_details":{"text_tokens":0,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":18,"audio_tokens":43,"reasoning_tokens":0}},"conversation_id":"conv_E464kzHTuklYrIZCoMGpv","modalities":["text","audio"],"voice":{"name":"alloy","type":"openai"},"output_audio_format":"pcm16","temperature":null,"max_output_tokens":"inf","metadata":null}}"#;

    fn done(text: &str) -> ResponseDone {
        match server_event(text) {
            Some(ServerEvent::ResponseDone(d)) => *d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recorded_ga_response_done() {
        let d = done(GA_DONE);
        assert_eq!(d.id.as_deref(), Some("resp_Dz2peMI5aYdp3zc28YMdx"));
        assert_eq!((d.finish_reason(), d.error_type()), (Some("stop"), None));
        assert_eq!(
            d.conversation_id.as_deref(),
            Some("conv_Dz2peJhy7FJE2xGKZiJF5")
        );
        let u = d.usage.unwrap();
        assert_eq!((u.input, u.output, u.total), (Some(16), Some(63), Some(79)));
        assert_eq!(
            (u.input_text, u.input_audio, u.input_image),
            (Some(16), Some(0), Some(0))
        );
        assert_eq!(
            (u.output_text, u.output_audio, u.reasoning),
            (Some(19), Some(44), None)
        );
        assert_eq!((u.cache_read, u.cache_read_text), (Some(0), Some(0)));
        assert_eq!(
            server_event(GA_SESSION),
            Some(ServerEvent::Session {
                id: Some("sess_Dz2pePC2uaIsPJZhPYNjH".into()),
                model: Some("gpt-realtime".into())
            })
        );
    }

    #[test]
    fn recorded_azure_response_done() {
        let u = done(AZURE_DONE).usage.unwrap();
        assert_eq!(
            (u.input, u.output, u.total, u.reasoning),
            (Some(16), Some(61), Some(77), Some(0))
        );
        assert_eq!((u.output_text, u.output_audio), (Some(18), Some(43)));
    }

    #[test]
    fn usage_by_modality_with_cache() {
        // Every detail OpenAI's types define, cached ones included (values made up, consistent).
        let text = r#"{"type":"response.done","event_id":"e","response":{"id":"r1","status":"completed","usage":{"input_tokens":132,"output_tokens":121,"total_tokens":253,"input_token_details":{"text_tokens":119,"audio_tokens":13,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":30,"audio_tokens":91}}}}"#;
        let u = done(text).usage.unwrap();
        assert_eq!(u.cache_read, Some(64));
        assert_eq!(u.cache_read_text, Some(64));
        let attrs = u.attributes();
        assert!(attrs.contains(&("gen_ai.usage.input_tokens", 132)));
        assert!(attrs.contains(&("gen_ai.usage.cache_read.input_tokens", 64)));
        assert!(attrs.contains(&("gen_ai.usage.text.cache_read.input_tokens", 64)));
        assert!(attrs.contains(&("gen_ai.usage.audio.output_tokens", 91)));
        let cu = u.usage();
        assert_eq!(
            (cu.input, cu.output, cu.cache_read),
            (Some(132), Some(121), Some(64))
        );
    }

    #[test]
    fn statuses_and_failures() {
        let ev = |status: &str, details: &str| {
            done(&format!(
                r#"{{"type":"response.done","response":{{"id":"r","status":"{status}","status_details":{details},"usage":null}}}}"#
            ))
        };
        let d = ev(
            "cancelled",
            r#"{"type":"cancelled","reason":"turn_detected"}"#,
        );
        assert_eq!((d.finish_reason(), d.usage), (Some("turn_detected"), None));
        assert_eq!(
            ev(
                "incomplete",
                r#"{"type":"incomplete","reason":"max_output_tokens"}"#
            )
            .finish_reason(),
            Some("length")
        );
        assert_eq!(
            ev(
                "incomplete",
                r#"{"type":"incomplete","reason":"content_filter"}"#
            )
            .finish_reason(),
            Some("content_filter")
        );
        let f = ev(
            "failed",
            r#"{"type":"failed","error":{"type":"server_error","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(
            (f.finish_reason(), f.error_type()),
            (Some("error"), Some("rate_limit_exceeded"))
        );
        let f = ev("failed", "null");
        assert_eq!(f.error_type(), Some("_OTHER"));
    }

    #[test]
    fn error_events_and_other_events() {
        // The shape of the invalid-key error OpenAI sends after the upgrade (message shortened).
        let text = r#"{"type":"error","event_id":"event_1","error":{"type":"invalid_request_error","code":"invalid_api_key","message":"Incorrect API key provided.","param":null,"event_id":null}}"#;
        assert_eq!(
            server_event(text),
            Some(ServerEvent::Error(ErrorEvent {
                kind: Some("invalid_request_error".into()),
                code: Some("invalid_api_key".into()),
                message: Some("Incorrect API key provided.".into()),
                client_event_id: None,
            }))
        );
        let delta = format!(
            r#"{{"type":"response.output_audio.delta","event_id":"e","delta":"{}"}}"#,
            "QUJD".repeat(1000)
        );
        assert_eq!(
            server_event(&delta),
            Some(ServerEvent::Other("response.output_audio.delta".into()))
        );
        assert_eq!(
            server_event(
                r#"{"type":"response.created","event_id":"e","response":{"id":"resp_1","status":"in_progress","usage":null}}"#
            ),
            Some(ServerEvent::ResponseCreated {
                id: Some("resp_1".into())
            })
        );
        // `type` after a large member, and written with an escape: still read (the slow path).
        let late = r#"{"event_id":"e","response":{"id":"r","status":"completed"},"t\u0079pe":"response.done"}"#;
        assert!(matches!(
            server_event(late),
            Some(ServerEvent::ResponseDone(_))
        ));
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"type":5}"#,
            "not json",
            r#"{"type":"response.done""#,
        ] {
            assert_eq!(server_event(bad), None, "{bad}");
        }
    }

    #[test]
    fn client_events() {
        assert_eq!(
            client_event(
                r#"{"type":"response.create","event_id":"evt_client_1","response":{"instructions":"x"}}"#
            ),
            Some(ClientEvent::ResponseCreate {
                event_id: Some("evt_client_1".into())
            })
        );
        assert_eq!(
            client_event(r#"{"type":"response.create"}"#),
            Some(ClientEvent::ResponseCreate { event_id: None })
        );
        assert_eq!(
            client_event(
                r#"{"type":"session.update","session":{"type":"realtime","model":"gpt-realtime-mini"}}"#
            ),
            Some(ClientEvent::SessionUpdate {
                model: Some("gpt-realtime-mini".into())
            })
        );
        let append = format!(
            r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#,
            "AAAA".repeat(500)
        );
        assert_eq!(
            client_event(&append),
            Some(ClientEvent::Other("input_audio_buffer.append".into()))
        );
        assert_eq!(client_event("{"), None);
        assert_eq!(client_event("[1]"), None);
        // Two `type`s: the first is harmless, the second is what a last-wins parser sees.
        for dup in [
            r#"{"type":"input_audio_buffer.append","audio":"AAAA","type":"response.create"}"#,
            r#"{"type":"response.create","t\u0079pe":"input_audio_buffer.append"}"#,
            r#"{"type":5}"#,
            r#"{"event_id":"x"}"#,
        ] {
            assert_eq!(client_event(dup), Some(ClientEvent::Ambiguous), "{dup}");
        }
        assert_eq!(event_type(r#"{"type":"a","type":"b"}"#), None);
        assert_eq!(event_type(r#"{"type":"a"} trailing"#), None);
    }

    #[test]
    fn refusal_event_is_what_the_api_sends() {
        let e = error_event(
            "event_tg_1",
            "rate_limit_error",
            "token_budget_exceeded",
            "Token budget for tenant \"a\" exhausted",
            Some("evt_client_1"),
        );
        let v: J = serde_json::from_str(&e).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["event_id"], "event_tg_1");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "token_budget_exceeded");
        assert_eq!(
            v["error"]["message"],
            "Token budget for tenant \"a\" exhausted"
        );
        assert_eq!(v["error"]["param"], J::Null);
        assert_eq!(v["error"]["event_id"], "evt_client_1");
        // Our own reader takes it for an error about that client event.
        match server_event(&e) {
            Some(ServerEvent::Error(err)) => {
                assert_eq!(err.client_event_id.as_deref(), Some("evt_client_1"))
            }
            other => panic!("{other:?}"),
        }
        let v: J = serde_json::from_str(&error_event("e", "t", "c", "m", None)).unwrap();
        assert_eq!(v["error"]["event_id"], J::Null);
    }

    #[test]
    fn routes_and_beta() {
        assert_eq!(
            route("/v1/realtime?model=gpt-realtime"),
            Some(RealtimeRoute {
                azure: false,
                model: Some("gpt-realtime".into())
            })
        );
        assert_eq!(
            route("/v1/realtime"),
            Some(RealtimeRoute {
                azure: false,
                model: None
            })
        );
        assert_eq!(
            route("/openai/realtime?api-version=2025-04-01-preview&deployment=my%2Ddeploy"),
            Some(RealtimeRoute {
                azure: true,
                model: Some("my-deploy".into())
            })
        );
        assert_eq!(
            route("/openai/v1/realtime?model=gpt-realtime&deployment=d"),
            Some(RealtimeRoute {
                azure: true,
                model: Some("gpt-realtime".into())
            })
        );
        for p in [
            "/v1/realtime/calls",
            "/v1/realtime/client_secrets",
            "/v1/realtime/sessions",
            "/v1/responses",
            "/realtime",
        ] {
            assert_eq!(route(p), None, "{p}");
        }
        assert!(is_beta(Some("realtime=v1"), None));
        assert!(is_beta(Some("assistants=v2, realtime=v1"), None));
        assert!(is_beta(
            None,
            Some("realtime, openai-insecure-api-key.sk-x, openai-beta.realtime-v1")
        ));
        assert!(!is_beta(None, Some("realtime")));
        assert!(!is_beta(None, None));
    }

    #[test]
    fn garbage_never_panics() {
        let mut s = 0x0bad_5eed_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for seed in [GA_DONE, AZURE_DONE, GA_SESSION] {
            for _ in 0..400 {
                let mut m = seed.as_bytes().to_vec();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % m.len();
                    let alphabet = b"{}[]\",:\\ 0123456789nulltrue";
                    m[at] = alphabet[(next() as usize) % alphabet.len()];
                }
                if let Ok(t) = std::str::from_utf8(&m) {
                    let _ = server_event(t);
                    let _ = client_event(t);
                }
            }
        }
    }
}
