//! Gemini Live: `BidiGenerateContent` over WebSocket, on the Gemini API
//! (`wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`,
//! `…BidiGenerateContentConstrained` with ephemeral tokens) and on Vertex AI
//! (`/ws/google.cloud.aiplatform.v1.LlmBidiService/BidiGenerateContent`).
//!
//! One JSON message per WebSocket message (text or binary frames). The client opens with `setup` (the
//! model), then sends `clientContent` (a turn, `turnComplete: true` asks for a response),
//! `realtimeInput` (streamed audio/video/text; with automatic activity detection the server decides when
//! a turn ends) and `toolResponse`. The server answers `setupComplete`, then `serverContent` pieces
//! (`modelTurn` parts, `generationComplete`, `interrupted`, `turnComplete`), `toolCall`, `goAway`
//! (it will close soon) and `usageMetadata`, which arrives with the message that completes a turn.
//!
//! There is no in-band error message: the server closes the WebSocket with a close code and a reason
//! (1008 policy violation, 1011 for quota and internal errors), which the Python SDK raises as `APIError`
//! with that code. A refusal here can only be such a close (`refusal_close`).
//!
//! Wire names are the JSON mapping of the protobuf: camelCase, snake_case accepted as well (the Python
//! SDK sends `client_content`). The Gemini API reports output as `responseTokenCount` /
//! `responseTokensDetails`, Vertex AI as `candidatesTokenCount` / `candidatesTokensDetails` (python-genai
//! `_live_converters.py`).

use super::realtime::{add_opt, ModalityUsage};
use crate::codec::json::lenient::{items, json_struct, read, Lenient, LenientStr, Raw};
use crate::stream::websocket::encode_close;
use std::borrow::Cow;

/// Which Google endpoint serves the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// generativelanguage.googleapis.com: `gen_ai.provider.name` `gcp.gemini`.
    GeminiApi,
    /// aiplatform.googleapis.com: `gcp.vertex_ai`.
    VertexAi,
}

/// The backend of a Live WebSocket path, None for any other path.
pub fn route(path: &str) -> Option<Backend> {
    let path = path.split('?').next().unwrap_or("");
    let rest = path.strip_prefix("/ws/")?;
    if let Some(service) = rest.strip_prefix("google.ai.generativelanguage.") {
        let (_version, method) = service.split_once(".GenerativeService.")?;
        return matches!(
            method,
            "BidiGenerateContent" | "BidiGenerateContentConstrained"
        )
        .then_some(Backend::GeminiApi);
    }
    let service = rest.strip_prefix("google.cloud.aiplatform.")?;
    let (_version, method) = service.split_once(".LlmBidiService/")?;
    (method == "BidiGenerateContent").then_some(Backend::VertexAi)
}

json_struct! {
    struct ServerWire<'a> {
        setup_complete: Lenient<SetupComplete<'a>> = "setupComplete" | "setup_complete",
        server_content: Lenient<ServerContent<'a>> = "serverContent" | "server_content",
        tool_call: Lenient<Raw<'a>> = "toolCall" | "tool_call",
        usage: Lenient<UsageWire<'a>> = "usageMetadata" | "usage_metadata",
        go_away: Lenient<GoAway<'a>> = "goAway" | "go_away",
    }
}

json_struct! {
    struct SetupComplete<'a> {
        session_id: LenientStr<'a> = "sessionId" | "session_id",
    }
}

json_struct! {
    struct ServerContent<'a> {
        model_turn: Lenient<Raw<'a>> = "modelTurn" | "model_turn",
        turn_complete: Lenient<bool> = "turnComplete" | "turn_complete",
        generation_complete: Lenient<bool> = "generationComplete" | "generation_complete",
        interrupted: Lenient<bool> = "interrupted",
        turn_complete_reason: LenientStr<'a> = "turnCompleteReason" | "turn_complete_reason",
    }
}

json_struct! {
    struct GoAway<'a> {
        time_left: LenientStr<'a> = "timeLeft" | "time_left",
    }
}

json_struct! {
    struct UsageWire<'a> {
        prompt: Lenient<u64> = "promptTokenCount" | "prompt_token_count",
        cached: Lenient<u64> = "cachedContentTokenCount" | "cached_content_token_count",
        response: Lenient<u64> = "responseTokenCount" | "response_token_count",
        candidates: Lenient<u64> = "candidatesTokenCount" | "candidates_token_count",
        tool_use_prompt: Lenient<u64> = "toolUsePromptTokenCount" | "tool_use_prompt_token_count",
        thoughts: Lenient<u64> = "thoughtsTokenCount" | "thoughts_token_count",
        total: Lenient<u64> = "totalTokenCount" | "total_token_count",
        prompt_details: Lenient<Vec<Lenient<ModalityCount<'a>>>> = "promptTokensDetails" | "prompt_tokens_details",
        cache_details: Lenient<Vec<Lenient<ModalityCount<'a>>>> = "cacheTokensDetails" | "cache_tokens_details",
        response_details: Lenient<Vec<Lenient<ModalityCount<'a>>>> = "responseTokensDetails" | "response_tokens_details",
        candidates_details: Lenient<Vec<Lenient<ModalityCount<'a>>>> = "candidatesTokensDetails" | "candidates_tokens_details",
        tool_use_details: Lenient<Vec<Lenient<ModalityCount<'a>>>> = "toolUsePromptTokensDetails" | "tool_use_prompt_tokens_details",
    }
}

json_struct! {
    struct ModalityCount<'a> {
        modality: LenientStr<'a> = "modality",
        count: Lenient<u64> = "tokenCount" | "token_count",
    }
}

/// The modality names of `MediaModality` (an unspecified modality counts as text).
#[derive(Clone, Copy)]
enum Modality {
    Text,
    Audio,
    Image,
    Video,
    Document,
}

fn modality(name: &str) -> Option<Modality> {
    Some(match name.to_ascii_uppercase().as_str() {
        "TEXT" | "MODALITY_UNSPECIFIED" => Modality::Text,
        "AUDIO" => Modality::Audio,
        "IMAGE" => Modality::Image,
        "VIDEO" => Modality::Video,
        "DOCUMENT" => Modality::Document,
        _ => return None,
    })
}

/// The (modality, count) pairs of a details list that could be read.
fn counts(list: Option<Vec<Lenient<ModalityCount<'_>>>>) -> Vec<(Modality, u64)> {
    items(Lenient(list))
        .filter_map(|c| Some((modality(c.modality.get()?.as_ref())?, c.count.get()?)))
        .collect()
}

impl UsageWire<'_> {
    /// As for `generateContent` (`gemini.rs`): input = prompt (cached included) + tool-use prompt,
    /// output = response + thoughts, reasoning = thoughts. Per modality from the details lists.
    fn modality(self, backend: Backend) -> ModalityUsage {
        let thoughts = self.thoughts.get();
        let mut u = ModalityUsage {
            total: self.total.get(),
            cache_read: self.cached.get(),
            reasoning: thoughts,
            ..ModalityUsage::default()
        };
        let (prompt, tool) = (self.prompt.get(), self.tool_use_prompt.get());
        add_opt(&mut u.input, prompt);
        add_opt(&mut u.input, tool);
        // The field the SDK reads for this backend, the other one when it is absent.
        let (response, response_details) = match backend {
            Backend::GeminiApi => (
                self.response.get().or(self.candidates.get()),
                self.response_details
                    .get()
                    .or(self.candidates_details.get()),
            ),
            Backend::VertexAi => (
                self.candidates.get().or(self.response.get()),
                self.candidates_details
                    .get()
                    .or(self.response_details.get()),
            ),
        };
        add_opt(&mut u.output, response);
        add_opt(&mut u.output, thoughts);
        for (m, n) in counts(self.prompt_details.get())
            .into_iter()
            .chain(counts(self.tool_use_details.get()))
        {
            let slot = match m {
                Modality::Text => &mut u.input_text,
                Modality::Audio => &mut u.input_audio,
                Modality::Image => &mut u.input_image,
                Modality::Video => &mut u.input_video,
                Modality::Document => &mut u.input_document,
            };
            add_opt(slot, Some(n));
        }
        for (m, n) in counts(self.cache_details.get()) {
            let slot = match m {
                Modality::Text => &mut u.cache_read_text,
                Modality::Audio => &mut u.cache_read_audio,
                Modality::Image => &mut u.cache_read_image,
                Modality::Video | Modality::Document => continue,
            };
            add_opt(slot, Some(n));
        }
        for (m, n) in counts(response_details) {
            let slot = match m {
                Modality::Text => &mut u.output_text,
                Modality::Audio => &mut u.output_audio,
                Modality::Image => &mut u.output_image,
                Modality::Video | Modality::Document => continue,
            };
            add_opt(slot, Some(n));
        }
        u
    }
}

/// What one server message says, as far as the gateway reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerMessage {
    pub setup_complete: bool,
    /// `setupComplete.sessionId` (Vertex AI sends one; the Gemini API does not).
    pub session_id: Option<String>,
    /// `serverContent.modelTurn` came: the model is producing a response.
    pub content: bool,
    /// The model finished generating (it may still wait for playback before `turn_complete`).
    pub generation_complete: bool,
    /// The client's input interrupted the response.
    pub interrupted: bool,
    /// The turn is over: the response's end.
    pub turn_complete: bool,
    pub turn_complete_reason: Option<String>,
    /// The server asks the model to call tools.
    pub tool_call: bool,
    /// `goAway.timeLeft` (e.g. `"50s"`): the connection will be closed.
    pub go_away: Option<String>,
    pub usage: Option<ModalityUsage>,
    /// None of the members above: an unknown message.
    pub unknown: bool,
}

impl ServerMessage {
    /// `gen_ai.response.finish_reasons` of the response this message completes: `stop` for a finished
    /// turn, the provider's reason when it gave one, `error` for an interrupted turn without one.
    pub fn finish_reason(&self) -> Option<&str> {
        if !self.turn_complete && !self.interrupted {
            return None;
        }
        Some(match self.turn_complete_reason.as_deref() {
            Some(r) => r,
            None if self.interrupted => "error",
            None => "stop",
        })
    }
}

fn owned(s: LenientStr<'_>) -> Option<String> {
    s.get().map(Cow::into_owned)
}

/// Read one server message; None when it is not a JSON object.
pub fn server_message(text: &str, backend: Backend) -> Option<ServerMessage> {
    // The reader would take an array as the struct's fields in order, as serde does.
    text.trim_start().starts_with('{').then_some(())?;
    let w = read::<ServerWire<'_>>(text.as_bytes())?;
    let mut m = ServerMessage::default();
    let mut known = false;
    if let Some(s) = w.setup_complete.get() {
        m.setup_complete = true;
        m.session_id = owned(s.session_id);
        known = true;
    }
    if let Some(c) = w.server_content.get() {
        m.content = c.model_turn.get().is_some();
        m.turn_complete = c.turn_complete.get().unwrap_or(false);
        m.generation_complete = c.generation_complete.get().unwrap_or(false);
        m.interrupted = c.interrupted.get().unwrap_or(false);
        m.turn_complete_reason = owned(c.turn_complete_reason);
        known = true;
    }
    if w.tool_call.get().is_some() {
        m.tool_call = true;
        known = true;
    }
    if let Some(g) = w.go_away.get() {
        m.go_away = Some(owned(g.time_left).unwrap_or_default());
        known = true;
    }
    if let Some(u) = w.usage.get() {
        m.usage = Some(u.modality(backend));
        known = true;
    }
    m.unknown = !known;
    Some(m)
}

json_struct! {
    struct ClientWire<'a> {
        setup: Lenient<Setup<'a>> = "setup",
        client_content: Lenient<ClientContent> = "clientContent" | "client_content",
        realtime_input: Lenient<Raw<'a>> = "realtimeInput" | "realtime_input",
        tool_response: Lenient<Raw<'a>> = "toolResponse" | "tool_response",
    }
}

json_struct! {
    struct Setup<'a> {
        model: LenientStr<'a> = "model",
    }
}

json_struct! {
    struct ClientContent {
        turn_complete: Lenient<bool> = "turnComplete" | "turn_complete",
    }
}

/// A client message, as far as the gateway reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// The first message: `setup.model` is `models/{model}` (Gemini API) or a Vertex resource name.
    Setup {
        model: Option<String>,
    },
    /// A turn of content; `turn_complete` asks the model to respond (what a spent budget refuses).
    ClientContent {
        turn_complete: bool,
    },
    /// Streamed input (audio, video, text, activity signals).
    RealtimeInput,
    ToolResponse,
    Other,
    /// A JSON object with a member named twice: the server may read either copy, so a spent budget
    /// refuses it too.
    Ambiguous,
}

/// Read one client message; None when it is not a JSON object.
pub fn client_message(text: &str) -> Option<ClientMessage> {
    text.trim_start().starts_with('{').then_some(())?;
    if super::realtime::repeated_member(text) {
        return Some(ClientMessage::Ambiguous);
    }
    let Some(w) = read::<ClientWire<'_>>(text.as_bytes()) else {
        return crate::codec::json::tape::error_at(text)
            .is_none()
            .then_some(ClientMessage::Ambiguous);
    };
    Some(if let Some(s) = w.setup.get() {
        ClientMessage::Setup {
            model: owned(s.model),
        }
    } else if let Some(c) = w.client_content.get() {
        ClientMessage::ClientContent {
            turn_complete: c.turn_complete.get().unwrap_or(false),
        }
    } else if w.realtime_input.get().is_some() {
        ClientMessage::RealtimeInput
    } else if w.tool_response.get().is_some() {
        ClientMessage::ToolResponse
    } else {
        ClientMessage::Other
    })
}

/// The model name of `setup.model` for `gen_ai.request.model`: `models/gemini-2.5-flash` →
/// `gemini-2.5-flash`, a Vertex resource name to its last segment.
pub fn model_name(setup_model: &str) -> &str {
    setup_model.rsplit('/').next().unwrap_or(setup_model)
}

/// The close code of a refusal: 1008, policy violation (RFC 6455 §7.4.1).
pub const REFUSAL_CLOSE_CODE: u16 = 1008;

/// A refused turn ends the session the way the Live API ends one: a close frame to the client (unmasked,
/// as a server sends it) with code 1008 and `reason` (cut to fit a control frame). The upstream side must
/// be closed too (a masked close frame, or a reset).
pub fn refusal_close(reason: &str) -> Vec<u8> {
    encode_close(REFUSAL_CLOSE_CODE, reason, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::websocket::{Extensions, Sender, WsDecoder, WsEvent, WsLimits};

    /// The messages of one recorded turn of `gemini-2.5-flash-native-audio-preview-09-2025` on the Gemini
    /// API (pydantic/pydantic-ai, tests/realtime/cassettes/test_google_ws/test_text_in_audio_out_turn.yaml,
    /// MIT; stored there as YAML, written back as JSON with the same members and values, the audio data
    /// shortened as in the cassette).
    const SETUP: &str = r#"{"setup":{"model":"models/gemini-2.5-flash-native-audio-preview-09-2025","generationConfig":{"responseModalities":["AUDIO"]},"systemInstruction":{"parts":[{"text":"Answer in two or three words."}],"role":"user"},"inputAudioTranscription":{},"outputAudioTranscription":{}}}"#;
    const TURN: &str = r#"{"client_content":{"turns":[{"parts":[{"text":"Say a short greeting."}],"role":"user"}],"turnComplete":true}}"#;
    const SERVER: [&str; 6] = [
        r#"{"setupComplete":{}}"#,
        r#"{"serverContent":{"modelTurn":{"parts":[{"text":"**Crafting a Greeting**\n\n\nI've decided \"Hello there\" is the best fit.\n\n\n\n","thought":true}]}}}"#,
        r#"{"serverContent":{"outputTranscription":{"text":"Hello there."}}}"#,
        r#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm;rate=24000","data":"AwAaACYAHQA0ADMAAwALACsASQDY/7j/PQA3ABMA5v8U"}}]}}}"#,
        r#"{"serverContent":{"generationComplete":true}}"#,
        r#"{"serverContent":{"turnComplete":true},"usageMetadata":{"promptTokenCount":1131,"responseTokenCount":26,"totalTokenCount":1157,"promptTokensDetails":[{"modality":"TEXT","tokenCount":1131}],"responseTokensDetails":[{"modality":"AUDIO","tokenCount":26}],"thoughtsTokenCount":24}}"#,
    ];

    #[test]
    fn recorded_turn() {
        assert_eq!(
            client_message(SETUP),
            Some(ClientMessage::Setup {
                model: Some("models/gemini-2.5-flash-native-audio-preview-09-2025".into())
            })
        );
        assert_eq!(
            model_name("models/gemini-2.5-flash-native-audio-preview-09-2025"),
            "gemini-2.5-flash-native-audio-preview-09-2025"
        );
        assert_eq!(
            client_message(TURN),
            Some(ClientMessage::ClientContent {
                turn_complete: true
            })
        );
        let msgs: Vec<ServerMessage> = SERVER
            .iter()
            .map(|t| server_message(t, Backend::GeminiApi).unwrap())
            .collect();
        assert!(msgs[0].setup_complete && msgs[0].session_id.is_none());
        assert!(msgs[1].content && msgs[3].content && !msgs[2].content);
        assert!(msgs[4].generation_complete && !msgs[4].turn_complete);
        assert_eq!(msgs[4].finish_reason(), None);
        let last = &msgs[5];
        assert!(last.turn_complete);
        assert_eq!(last.finish_reason(), Some("stop"));
        let u = last.usage.unwrap();
        // The thoughts are outside responseTokenCount (and, here, outside totalTokenCount); output counts
        // them, as for generateContent.
        assert_eq!(
            (u.input, u.output, u.reasoning, u.total),
            (Some(1131), Some(50), Some(24), Some(1157))
        );
        assert_eq!(
            (u.input_text, u.output_audio, u.output_text),
            (Some(1131), Some(26), None)
        );
        assert!(msgs.iter().take(5).all(|m| m.usage.is_none() && !m.unknown));
    }

    #[test]
    fn backends_read_their_output_field() {
        // python-genai's own test message carries both spellings (tests/live/test_live_response.py).
        let text = r#"{"usageMetadata":{"promptTokenCount":15,"responseTokenCount":25,"candidatesTokenCount":50,"totalTokenCount":200,"responseTokensDetails":[{"tokenCount":20,"modality":"TEXT"}],"candidatesTokensDetails":[{"tokenCount":10,"modality":"TEXT"}]},"serverContent":{"modelTurn":{"parts":[{"text":"This is a simple response."}]},"turnComplete":true}}"#;
        let g = server_message(text, Backend::GeminiApi)
            .unwrap()
            .usage
            .unwrap();
        assert_eq!((g.output, g.output_text), (Some(25), Some(20)));
        let v = server_message(text, Backend::VertexAi)
            .unwrap()
            .usage
            .unwrap();
        assert_eq!((v.output, v.output_text), (Some(50), Some(10)));
        let only = r#"{"usageMetadata":{"candidatesTokenCount":7}}"#;
        assert_eq!(
            server_message(only, Backend::GeminiApi)
                .unwrap()
                .usage
                .unwrap()
                .output,
            Some(7)
        );
    }

    #[test]
    fn modalities_cache_and_tool_use() {
        let text = r#"{"usage_metadata":{"prompt_token_count":300,"cached_content_token_count":40,"tool_use_prompt_token_count":10,"prompt_tokens_details":[{"modality":"TEXT","token_count":100},{"modality":"AUDIO","token_count":150},{"modality":"IMAGE","token_count":30},{"modality":"VIDEO","token_count":20}],"tool_use_prompt_tokens_details":[{"modality":"TEXT","token_count":10}],"cache_tokens_details":[{"modality":"TEXT","token_count":40}],"response_tokens_details":[{"modality":"AUDIO","token_count":60},{"modality":"TEXT","token_count":5},{"modality":"SMELL","token_count":1}],"response_token_count":65}}"#;
        let u = server_message(text, Backend::GeminiApi)
            .unwrap()
            .usage
            .unwrap();
        assert_eq!(u.input, Some(310));
        assert_eq!(
            (u.input_text, u.input_audio, u.input_image, u.input_video),
            (Some(110), Some(150), Some(30), Some(20))
        );
        assert_eq!((u.cache_read, u.cache_read_text), (Some(40), Some(40)));
        assert_eq!(
            (u.output, u.output_audio, u.output_text),
            (Some(65), Some(60), Some(5))
        );
        let attrs = u.attributes();
        assert!(attrs.contains(&("gen_ai.usage.audio.input_tokens", 150)));
        assert!(!attrs.iter().any(|(k, _)| k.contains("video")));
    }

    #[test]
    fn other_server_messages() {
        let m = server_message(r#"{"goAway":{"timeLeft":"50s"}}"#, Backend::GeminiApi).unwrap();
        assert_eq!(m.go_away.as_deref(), Some("50s"));
        let m = server_message(
            r#"{"toolCall":{"functionCalls":[{"id":"f1","name":"lookup","args":{}}]}}"#,
            Backend::GeminiApi,
        )
        .unwrap();
        assert!(m.tool_call);
        let m = server_message(
            r#"{"serverContent":{"interrupted":true}}"#,
            Backend::VertexAi,
        )
        .unwrap();
        assert_eq!(m.finish_reason(), Some("error"));
        let m = server_message(
            r#"{"serverContent":{"turnComplete":true,"turnCompleteReason":"NEED_MORE_INPUT"}}"#,
            Backend::VertexAi,
        )
        .unwrap();
        assert_eq!(m.finish_reason(), Some("NEED_MORE_INPUT"));
        let m = server_message(
            r#"{"setupComplete":{"sessionId":"s-1"}}"#,
            Backend::VertexAi,
        )
        .unwrap();
        assert_eq!(m.session_id.as_deref(), Some("s-1"));
        assert!(
            server_message(
                r#"{"sessionResumptionUpdate":{"newHandle":"h"}}"#,
                Backend::GeminiApi
            )
            .unwrap()
            .unknown
        );
        assert_eq!(server_message("[1]", Backend::GeminiApi), None);
        assert_eq!(server_message("nope", Backend::GeminiApi), None);
    }

    #[test]
    fn client_messages() {
        assert_eq!(
            client_message(
                r#"{"realtimeInput":{"audio":{"data":"AAAA","mimeType":"audio/pcm;rate=16000"}}}"#
            ),
            Some(ClientMessage::RealtimeInput)
        );
        assert_eq!(
            client_message(r#"{"tool_response":{"functionResponses":[]}}"#),
            Some(ClientMessage::ToolResponse)
        );
        assert_eq!(
            client_message(r#"{"clientContent":{"turns":[]}}"#),
            Some(ClientMessage::ClientContent {
                turn_complete: false
            })
        );
        assert_eq!(client_message("{}"), Some(ClientMessage::Other));
        assert_eq!(client_message("{"), None);
        assert_eq!(client_message(r#"[{"model":"m"}]"#), None);
        assert_eq!(
            client_message(
                r#"{"realtimeInput":{},"clientContent":{"turnComplete":true},"client_content":{}}"#
            ),
            Some(ClientMessage::Ambiguous)
        );
        assert_eq!(
            model_name(
                "projects/p/locations/us-central1/publishers/google/models/gemini-live-2.5-flash"
            ),
            "gemini-live-2.5-flash"
        );
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=x"),
            Some(Backend::GeminiApi)
        );
        assert_eq!(
            route("/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"),
            Some(Backend::GeminiApi)
        );
        assert_eq!(
            route("/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"),
            Some(Backend::VertexAi)
        );
        for p in [
            "/v1beta/models/gemini:generateContent",
            "/ws/google.ai.generativelanguage.v1beta.GenerativeService.Other",
            "/ws/",
            "/",
        ] {
            assert_eq!(route(p), None, "{p}");
        }
    }

    #[test]
    fn refusal_close_is_a_close_frame() {
        let frame = refusal_close("RESOURCE_EXHAUSTED: token budget for tenant a is spent");
        let mut d = WsDecoder::new(Sender::Server, Extensions::None, WsLimits::default());
        let mut got = Vec::new();
        d.push(&frame, &mut |e| {
            if let WsEvent::Close { code, reason } = e {
                got.push((code, reason.to_owned()));
            }
        });
        assert_eq!(
            got,
            vec![(
                Some(1008),
                "RESOURCE_EXHAUSTED: token budget for tenant a is spent".to_owned()
            )]
        );
    }
}
