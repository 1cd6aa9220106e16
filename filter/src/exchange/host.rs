//! What the exchange needs from the proxy it runs in, and nothing proxy-specific: header maps, bodies, local
//! replies, resuming a paused request, a few stream attributes, the clock, randomness, counters, the
//! budget store, one kind of callout and the telemetry sinks.
//!
//! Two hosts implement it: the proxy-wasm glue (`host/`, one VM per Envoy worker, everything on one
//! thread) and the native Envoy dynamic module (`native/`), whose per-stream callbacks run on the
//! stream's worker thread while process-wide state (the budget store, the span queue, the metrics) is
//! shared by every worker behind atomics and locks. So the trait asks for no `'static` context and no
//! thread-local: the exchange is one per stream, is driven from one thread at a time, owns its
//! per-request state, and reaches shared state only through these calls.

use crate::budget::ledger::Store;
use crate::call::Call;
use crate::codec::headers::Headers;
use crate::reply::Reply;
use crate::telemetry::logs::LogRecord;
use crate::telemetry::metrics::{Attr, Instrument};
use crate::telemetry::span::Span;
use crate::telemetry::Semconv;

/// A header map of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Map {
    RequestHeaders,
    ResponseHeaders,
}

/// A body of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// What the proxy buffered of the request body so far, the current chunk included.
    Request,
    /// The current response chunk (with what the exchange held back by pausing, for a buffered response).
    Response,
}

/// A fact about the stream the headers do not carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribute<'a> {
    /// The first URI SAN of the downstream peer's certificate (absent on a plaintext connection).
    PeerUriSan,
    /// The JWT payload Envoy's `jwt_authn` filter stored in the stream's metadata under key `.0`
    /// (`payload_in_metadata`), in the proxy's encoding (`budget::tenant::claim_from_metadata` reads it).
    JwtPayload(&'a str),
    /// Why the proxy answered as it did (`request_payload_too_large`, ...).
    ResponseCodeDetails,
}

/// Something that happens once per plugin configuration at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Once {
    /// The proxy answered 413 to a request body tollgate held: its buffer limit is below
    /// `max_request_body`. Logged the first time.
    BufferOverflow,
}

/// A log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// A unary gRPC call (the rate-limit service's `ShouldRateLimit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcCall<'a> {
    /// The proxy's cluster the service is reached through.
    pub cluster: &'a str,
    /// `:authority` of the call.
    pub authority: &'a str,
    pub service: &'static str,
    pub method: &'static str,
    /// The request message, without gRPC framing.
    pub message: &'a [u8],
    pub timeout_ms: u64,
}

/// Whether the proxy passes the body of a request whose headers tollgate holds; see `exchange::hold`.
pub use super::hold::Support;

/// The counters tollgate publishes (`tollgate.*`). Their names are the same in every host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Calls,
    CallsFailed,
    CallsUninspected,
    TokensInput,
    TokensOutput,
    UsageEstimated,
    BudgetAllowed,
    BudgetDenied,
    BudgetClamped,
    BudgetDryRunDenied,
    BudgetTenantInvalid,
    BudgetTenantOverflow,
    BudgetErrors,
    /// Admission calls to the rate-limit service answered with a decision.
    RlsChecks,
    /// Requests the rate-limit service said were over a budget.
    RlsDenied,
    /// Admission calls that failed (unreachable, timeout, error, bad answer) and admitted.
    RlsFailedOpen,
    /// Admission calls that failed and refused the request.
    RlsFailedClosed,
    /// Usage debits dispatched after the response.
    RlsDebits,
    /// Usage debits the proxy refused to dispatch.
    RlsDebitFailures,
    /// Requests refused by a redaction `block` rule.
    RedactionBlocked,
    /// Request bodies rewritten by egress redaction.
    RedactionEgressRewritten,
    /// Responses whose output could not be redacted (compressed, or a framing other than SSE/JSON).
    RedactionOutputUnsupported,
    /// Requests whose headers were held until the decisions on their body were made.
    HoldRequests,
    /// Requests that would have been held but the proxy cannot hold headers and still pass the body.
    HoldUnavailable,
    /// Refusals sent after the request's headers had been forwarded (the upstream stream is reset).
    RefusalsAfterForward,
    /// Request bodies too large to hold, forwarded uninspected.
    RequestOversized,
    /// Of those, refused (`oversized_requests: refuse`).
    RequestOversizedRefused,
    /// The proxy answered 413 to a body tollgate held.
    RequestBufferOverflow,
    /// Signed requests refused because egress redaction would have changed their body.
    SignedRefused,
    /// Signed requests forwarded unchanged although a rewrite applied.
    SignedUnmodified,
    /// MCP JSON-RPC requests observed (one span each).
    McpRequests,
    /// MCP requests refused at the gateway (tool policy, tool-call budget, unreadable tool call).
    McpRefused,
    /// MCP request or answer bodies that could not be read (not JSON, too large, compressed, batched).
    McpUnread,
    /// Realtime WebSocket sessions observed.
    RealtimeSessions,
    /// Realtime model responses (OpenAI `response.done`, Gemini turns with usage) read.
    RealtimeResponses,
    /// Realtime client messages refused in-band (spent budget).
    RealtimeRefused,
    /// Realtime messages not read: over `realtime.max_message`, compressed without a decoder, or after
    /// a framing error (the bytes still pass).
    RealtimeUnread,
    /// Budget alert thresholds crossed (each once per rule, subject and window).
    BudgetThresholds,
    /// Reads of the budget inspection route, answered and refused (not allowed).
    BudgetInspections,
    BudgetInspectRefused,
}

impl Counter {
    pub const ALL: [Counter; 40] = [
        Counter::Calls,
        Counter::CallsFailed,
        Counter::CallsUninspected,
        Counter::TokensInput,
        Counter::TokensOutput,
        Counter::UsageEstimated,
        Counter::BudgetAllowed,
        Counter::BudgetDenied,
        Counter::BudgetClamped,
        Counter::BudgetDryRunDenied,
        Counter::BudgetTenantInvalid,
        Counter::BudgetTenantOverflow,
        Counter::BudgetErrors,
        Counter::RlsChecks,
        Counter::RlsDenied,
        Counter::RlsFailedOpen,
        Counter::RlsFailedClosed,
        Counter::RlsDebits,
        Counter::RlsDebitFailures,
        Counter::RedactionBlocked,
        Counter::RedactionEgressRewritten,
        Counter::RedactionOutputUnsupported,
        Counter::HoldRequests,
        Counter::HoldUnavailable,
        Counter::RefusalsAfterForward,
        Counter::RequestOversized,
        Counter::RequestOversizedRefused,
        Counter::RequestBufferOverflow,
        Counter::SignedRefused,
        Counter::SignedUnmodified,
        Counter::McpRequests,
        Counter::McpRefused,
        Counter::McpUnread,
        Counter::RealtimeSessions,
        Counter::RealtimeResponses,
        Counter::RealtimeRefused,
        Counter::RealtimeUnread,
        Counter::BudgetThresholds,
        Counter::BudgetInspections,
        Counter::BudgetInspectRefused,
    ];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Calls => "tollgate.calls",
            Counter::CallsFailed => "tollgate.calls_failed",
            Counter::CallsUninspected => "tollgate.calls_uninspected",
            Counter::TokensInput => "tollgate.tokens_input",
            Counter::TokensOutput => "tollgate.tokens_output",
            Counter::UsageEstimated => "tollgate.usage_estimated",
            Counter::BudgetAllowed => "tollgate.budget_allowed",
            Counter::BudgetDenied => "tollgate.budget_denied",
            Counter::BudgetClamped => "tollgate.budget_clamped",
            Counter::BudgetDryRunDenied => "tollgate.budget_dry_run_denied",
            Counter::BudgetTenantInvalid => "tollgate.budget_tenant_invalid",
            Counter::BudgetTenantOverflow => "tollgate.budget_tenant_overflow",
            Counter::BudgetErrors => "tollgate.budget_errors",
            Counter::RlsChecks => "tollgate.budget_rls_checks",
            Counter::RlsDenied => "tollgate.budget_rls_denied",
            Counter::RlsFailedOpen => "tollgate.budget_rls_failed_open",
            Counter::RlsFailedClosed => "tollgate.budget_rls_failed_closed",
            Counter::RlsDebits => "tollgate.budget_rls_debits",
            Counter::RlsDebitFailures => "tollgate.budget_rls_debit_failures",
            Counter::RedactionBlocked => "tollgate.redaction.blocked",
            Counter::RedactionEgressRewritten => "tollgate.redaction.egress_rewritten",
            Counter::RedactionOutputUnsupported => "tollgate.redaction.output_unsupported",
            Counter::HoldRequests => "tollgate.hold.requests",
            Counter::HoldUnavailable => "tollgate.hold.unavailable",
            Counter::RefusalsAfterForward => "tollgate.refusals_after_forward",
            Counter::RequestOversized => "tollgate.request.oversized",
            Counter::RequestOversizedRefused => "tollgate.request.oversized_refused",
            Counter::RequestBufferOverflow => "tollgate.request.buffer_overflow",
            Counter::SignedRefused => "tollgate.signed.refused",
            Counter::SignedUnmodified => "tollgate.signed.unmodified",
            Counter::McpRequests => "tollgate.mcp.requests",
            Counter::McpRefused => "tollgate.mcp.refused",
            Counter::McpUnread => "tollgate.mcp.unread",
            Counter::RealtimeSessions => "tollgate.realtime.sessions",
            Counter::RealtimeResponses => "tollgate.realtime.responses",
            Counter::RealtimeRefused => "tollgate.realtime.refused",
            Counter::RealtimeUnread => "tollgate.realtime.unread",
            Counter::BudgetThresholds => "tollgate.budget_thresholds",
            Counter::BudgetInspections => "tollgate.budget_inspections",
            Counter::BudgetInspectRefused => "tollgate.budget_inspect_refused",
        }
    }

    /// Bumped by every call (or every held request): a host may add these up in memory and hand the
    /// proxy totals now and then rather than pay a host call per request.
    pub fn per_call(self) -> bool {
        matches!(
            self,
            Counter::Calls
                | Counter::CallsFailed
                | Counter::TokensInput
                | Counter::TokensOutput
                | Counter::UsageEstimated
                | Counter::HoldRequests
                | Counter::HoldUnavailable
        )
    }
}

/// The proxy, as one exchange sees it. Every call acts on the exchange's own stream; a host reports
/// failures of its own calls by their return values and never panics.
pub trait Host {
    /// The budget store shared by every worker of the proxy.
    type Store: Store;

    /// A whole header map, read at once.
    fn headers(&mut self, map: Map) -> Headers;
    /// Replace every value of header `name` with `value`.
    fn set_header(&mut self, map: Map, name: &str, value: &str);
    /// Add a value of header `name` beside any it has (cheaper than `set_header` where it has none).
    fn add_header(&mut self, map: Map, name: &str, value: &str);
    fn remove_header(&mut self, map: Map, name: &str);

    /// Bytes `[0, size)` of a body (empty on any failure).
    fn body(&mut self, body: Body, size: usize) -> Vec<u8>;
    /// Replace bytes `[0, size)` of a body with `value`; false when the proxy refused.
    fn set_body(&mut self, body: Body, size: usize, value: &[u8]) -> bool;

    /// Answer the request locally (the exchange then pauses the stream); false when the proxy refused.
    fn send_reply(&mut self, reply: &Reply) -> bool;
    /// Let a request the exchange paused in a body callback go on; false when the proxy refused.
    fn resume_request(&mut self) -> bool;

    /// A fact about the stream; None when the proxy does not know it.
    fn attribute(&mut self, attribute: Attribute<'_>) -> Option<Vec<u8>>;
    /// Wall clock, ns since the Unix epoch (0 when the proxy cannot say).
    fn now_ns(&mut self) -> u64;
    /// 64 random bits: trace and span ids, sampling draws (random, not secret: W3C Trace Context).
    fn random(&mut self) -> u64;
    fn log(&mut self, level: Level, message: &str);

    /// Add `n` to a counter.
    fn count(&mut self, counter: Counter, n: u64);
    /// Add `n` to `tollgate.redaction.detected.<detector>` (a detector of the configuration).
    fn count_detection(&mut self, detector: &str, n: u64);
    /// Whether `what` happens for the first time under this plugin configuration.
    fn once(&mut self, what: Once) -> bool;

    /// The budget store (`budgets.backend: local`).
    fn store(&self) -> &Self::Store;
    /// This worker's non-zero id for the store's key-creation lock.
    fn store_holder(&mut self) -> u64;
    /// Start a unary gRPC call; its answer comes back to `Exchange::on_grpc_answer` with the returned
    /// token. None when the proxy refused to start it.
    fn grpc_call(&mut self, call: &GrpcCall<'_>) -> Option<u64>;

    /// Whether the proxy passes the body of a request whose headers are held.
    fn hold_support(&mut self) -> Support;
    /// This request's headers are held while that is unknown: note it, so that the host can find out
    /// (and release the request when the proxy cannot pass its body). Whether it was noted.
    fn hold_note(&mut self) -> bool;
    /// The first body callback of a noted request: whether it was still held (false: the host found the
    /// proxy cannot hold it and released it, so its headers left).
    fn hold_body_seen(&mut self) -> bool;
    /// A noted request is over.
    fn hold_forget(&mut self);

    /// A finished, sampled span for the OTLP export queue.
    fn export_span(&mut self, span: Span);
    /// A finished call for the GenAI metrics.
    fn record_metrics(&mut self, call: &Call, semconv: Semconv);
    /// One measurement of an instrument that is not a model call's (`mcp.client.operation.duration`).
    fn record_metric(&mut self, instrument: Instrument, attrs: &[Attr<'_>], value: f64);
    /// An OTLP log record (a budget alert) for the logs export (`/v1/logs`), bounded and never blocking;
    /// what the host cannot keep it drops and counts.
    fn export_log(&mut self, record: LogRecord);
    /// A budget alert's JSON body for the `budgets.webhook` queue, bounded and never blocking; what the
    /// host cannot keep or deliver it drops and counts.
    fn post_alert(&mut self, body: String);
}

#[cfg(test)]
mod tests {
    use super::Counter;

    /// Hosts index their metrics by `counter as usize`: `ALL` is in declaration order, and every name is
    /// distinct.
    #[test]
    fn counters_are_listed_in_order_with_distinct_names() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
        }
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
        assert!(names.iter().all(|n| n.starts_with("tollgate.")));
    }
}
