//! Local replies in the dialect of the API that was called, so the client's SDK recognises them: its retry
//! logic backs off on a rate limit and surfaces a refusal as the provider's own error type.
//!
//! Pure: builds status, headers and body; `host` sends them with `send_http_response`.

use crate::call::Api;
use crate::codec::json::Json;

/// Why tollgate answers instead of the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A token or cost budget is exhausted (429; SDKs retry after `retry-after`).
    BudgetExceeded,
    /// The request carries content a `block` rule forbids (400; not retryable).
    ContentBlocked,
    /// The request is signed and a data-protection rewrite would have broken its signature (400).
    SignedRequest,
    /// The request body is too large for the gateway to read, and a decision needs it (413).
    TooLarge,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::BudgetExceeded => 429,
            Refusal::ContentBlocked | Refusal::SignedRequest => 400,
            Refusal::TooLarge => 413,
        }
    }

    /// The stable machine-readable code in OpenAI-shaped bodies.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::BudgetExceeded => "token_budget_exceeded",
            Refusal::ContentBlocked => "content_blocked",
            Refusal::SignedRequest => "signed_request_not_modifiable",
            Refusal::TooLarge => "request_too_large",
        }
    }

    pub const ALL: [Refusal; 4] = [
        Refusal::BudgetExceeded,
        Refusal::ContentBlocked,
        Refusal::SignedRequest,
        Refusal::TooLarge,
    ];
}

/// A complete local reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The reply for `refusal` on `api`, with `message` (never containing user content) and extra headers
/// (e.g. `retry-after`, `x-ratelimit-*`).
pub fn refuse(api: Api, refusal: Refusal, message: &str, extra: Vec<(String, String)>) -> Reply {
    let status = refusal.status();
    let limited = refusal == Refusal::BudgetExceeded;
    let too_large = refusal == Refusal::TooLarge;
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    let s = Json::str;
    let body = match api {
        // Anthropic SDKs read `error.type`; 429 is `rate_limit_error`, 400 `invalid_request_error`.
        Api::AnthropicMessages => Json::obj([
            ("type", s("error")),
            (
                "error",
                Json::obj([
                    (
                        "type",
                        s(if limited {
                            "rate_limit_error"
                        } else if too_large {
                            "request_too_large"
                        } else {
                            "invalid_request_error"
                        }),
                    ),
                    ("message", s(message)),
                ]),
            ),
        ]),
        // google.rpc.Status as Google APIs return it.
        Api::Gemini => Json::obj([(
            "error",
            Json::obj([
                ("code", Json::Lit(status.to_string())),
                ("message", s(message)),
                (
                    "status",
                    s(if limited {
                        "RESOURCE_EXHAUSTED"
                    } else {
                        "INVALID_ARGUMENT"
                    }),
                ),
            ]),
        )]),
        // AWS SDKs take the error type from `x-amzn-errortype` and the message from the body.
        Api::BedrockConverse | Api::BedrockInvoke | Api::BedrockEmbeddings => {
            let kind = if limited {
                "ThrottlingException"
            } else {
                "ValidationException"
            };
            headers.push(("x-amzn-errortype".to_string(), kind.to_string()));
            Json::obj([("message", s(message))])
        }
        Api::CohereChat => Json::obj([("message", s(message))]),
        Api::OllamaChat | Api::OllamaGenerate => Json::obj([("error", s(message))]),
        Api::OpenAiChat | Api::OpenAiResponses | Api::OpenAiEmbeddings | Api::OpenAiCompletions => {
            Json::obj([(
                "error",
                Json::obj([
                    ("message", s(message)),
                    (
                        "type",
                        s(if limited {
                            "rate_limit_error"
                        } else {
                            "invalid_request_error"
                        }),
                    ),
                    ("param", Json::Null),
                    ("code", s(refusal.code())),
                ]),
            )])
        }
    };
    headers.extend(extra);
    Reply {
        status,
        headers,
        body: body.text().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn body(r: &Reply) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn openai_shape_budget() {
        let r = refuse(
            Api::OpenAiChat,
            Refusal::BudgetExceeded,
            "budget",
            vec![("retry-after".into(), "12".into())],
        );
        assert_eq!(r.status, 429);
        let b = body(&r);
        assert_eq!(b["error"]["code"], "token_budget_exceeded");
        assert_eq!(b["error"]["type"], "rate_limit_error");
        assert_eq!(b["error"]["message"], "budget");
        assert!(r.headers.contains(&("retry-after".into(), "12".into())));
        assert!(r
            .headers
            .contains(&("content-type".into(), "application/json".into())));
    }

    #[test]
    fn every_api_has_a_dialect() {
        for api in Api::ALL {
            for refusal in Refusal::ALL {
                let r = refuse(api, refusal, "m \"quoted\"", vec![]);
                assert_eq!(r.status, refusal.status());
                let b = body(&r);
                let text = b.to_string();
                assert!(text.contains("m \\\"quoted\\\""), "{api:?}: {text}");
            }
        }
    }

    #[test]
    fn anthropic_gemini_bedrock() {
        let a = body(&refuse(
            Api::AnthropicMessages,
            Refusal::BudgetExceeded,
            "x",
            vec![],
        ));
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "rate_limit_error");
        let g = body(&refuse(Api::Gemini, Refusal::BudgetExceeded, "x", vec![]));
        assert_eq!(g["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(g["error"]["code"], 429);
        let br = refuse(Api::BedrockConverse, Refusal::BudgetExceeded, "x", vec![]);
        assert!(br
            .headers
            .contains(&("x-amzn-errortype".into(), "ThrottlingException".into())));
        let blocked = refuse(Api::BedrockInvoke, Refusal::ContentBlocked, "x", vec![]);
        assert_eq!(blocked.status, 400);
        assert!(blocked
            .headers
            .contains(&("x-amzn-errortype".into(), "ValidationException".into())));
        let large = refuse(Api::AnthropicMessages, Refusal::TooLarge, "x", vec![]);
        assert_eq!(large.status, 413);
        assert_eq!(body(&large)["error"]["type"], "request_too_large");
        let signed = refuse(Api::BedrockConverse, Refusal::SignedRequest, "x", vec![]);
        assert_eq!(signed.status, 400);
        assert!(signed
            .headers
            .contains(&("x-amzn-errortype".into(), "ValidationException".into())));
    }
}
