//! Local replies: why tollgate answers instead of the provider, and the reply the host sends. The body is
//! written in the dialect of the API that was called (`providers::reply`).

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

/// A refusal decided before its dialect: the kind, a message that never contains user content, and extra
/// headers (`retry-after`, `x-ratelimit-*`). `providers::reply` writes it in the called API's dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub refusal: Refusal,
    pub message: String,
    pub headers: Vec<(String, String)>,
}

impl Denial {
    pub fn new(refusal: Refusal, message: impl Into<String>) -> Denial {
        Denial {
            refusal,
            message: message.into(),
            headers: Vec::new(),
        }
    }
}
