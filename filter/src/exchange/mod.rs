//! One HTTP exchange, the per-request state machine, in the order the proxy calls it: request headers →
//! request body → (the rate-limit service's answer) → response headers → each response chunk → log.
//! Pure: everything it asks of the proxy goes through the [`Host`] trait, so the same exchange runs in the
//! proxy-wasm module and, natively, in an Envoy dynamic module; the unit tests drive it with a fake host.
//!
//! Every decision on a request is made here:
//! - which requests are LLM calls (`providers::detect`), who they are attributed to, their trace context;
//! - whether the request headers are held until the body is decided (`hold`), how a body that cannot be
//!   held or read is treated (`oversized_requests`), what a signature forbids changing (`signed_requests`);
//! - the request pipeline, in this order: read the body (decoded copy when compressed), redaction's block
//!   check and egress rewrite, budgets (reserve, refuse or clamp), `include_usage` injection, then one
//!   replacement of the body (`inspect_request`);
//! - on the response: the remaining-tokens headers, the reader, the removal of the usage-only chunk
//!   tollgate asked for, output redaction;
//! - at the end: usage estimates, the budget commit, cost, counters, metrics, evidence and the span.
//!
//! The path of one response chunk reads top to bottom in `on_response_body`: the host hands the bytes
//! over → `stream` decodes and frames them → the provider interprets each event (`providers`) → the
//! `Call` accumulates usage, finish reasons and content → the client-bound bytes are edited (usage-only
//! chunk, output redaction) and handed back. When the exchange ends (`on_log`), `budget` commits and
//! `telemetry` turns the `Call` into metrics and a span.

mod alerts;
pub mod budget;
pub mod hold;
pub mod host;
mod inspect;
mod mcp;
mod realtime;
mod redaction;
mod rls;

#[cfg(test)]
mod fake_host_test;
#[cfg(test)]
mod mcp_test;
#[cfg(test)]
mod realtime_test;
#[cfg(test)]
mod tests;

pub use host::Host;

use crate::call::Call;
use crate::codec::headers::Headers;
use crate::codec::sigv4::{self, Signature};
use crate::config::{Config, OversizedPolicy, SignedPolicy};
use crate::providers::reader::ResponseReader;
use crate::providers::{self, Provider};
use crate::reply::{Denial, Refusal, Reply};
use crate::stream::sse_edit::SseEventFilter;
use crate::stream::{inflate_all, ContentEncoding, Framing, Limits};
use crate::telemetry::{span, trace};
use budget::{Budgeted, Step};
use hold::{Read, Support};
use host::{Attribute, Body, Counter, Level, Map, Once};
use redaction::Redaction;
use std::sync::Arc;

/// What the proxy does with the stream after a callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let it go on.
    Continue,
    /// Hold it: headers held, a body chunk buffered, or the request answered locally.
    Pause,
}

pub struct Exchange {
    config: Arc<Config>,
    call: Call,
    /// This request is an LLM call tollgate inspects.
    active: bool,
    /// How the request body is read (`hold`).
    read: Read,
    /// The request headers have not been forwarded yet: being decided on, or held until the decisions on
    /// the body are made.
    held: bool,
    /// The held request is noted with the host while its support for holding is unknown.
    probing: bool,
    /// A request-body callback has run.
    body_started: bool,
    /// tollgate paused a request body chunk (the proxy buffered it).
    body_paused: bool,
    /// No more request-body work: passed uninspected, or already read.
    request_skipped: bool,
    /// The request's `content-encoding`; `None` for codings tollgate cannot undo (body not inspected).
    request_encoding: Option<ContentEncoding>,
    /// The signature tollgate keeps valid (None: unsigned, or signed again after tollgate).
    signature: Option<Signature>,
    /// The decisions on the body that may refuse the request.
    decisions: hold::Decisions,
    /// The request waits, paused, for the rate-limit service.
    rls_paused: bool,
    /// tollgate answered the request itself.
    refused: bool,
    /// The response body's reader, from the response headers on.
    reader: Option<ResponseReader>,
    response_done: bool,
    /// Removes the usage-only chunk from the client's stream when tollgate injected `include_usage`.
    usage_filter: Option<SseEventFilter>,
    budget: Budgeted,
    /// Block check, egress rewrite, output redaction, captured content.
    redaction: Redaction,
    /// The exchange is an MCP request (`mcp.servers`), not a model call.
    mcp: Option<Box<mcp::McpCall>>,
    /// The exchange is a realtime WebSocket session.
    realtime: Option<Box<realtime::Session>>,
}

/// Set header `name` to `value`, given `current`, the map as read in this callback: replaced when it has
/// the header, else added, the cheaper call (in Envoy 1.40 proxy-wasm, ~3 k instructions less than
/// replacing, which removes existing values first; `bench/instructions.py`).
fn put_header<H: Host>(host: &mut H, map: Map, current: &Headers, name: &str, value: &str) {
    if current.get(name).is_some() {
        host.set_header(map, name, value);
    } else {
        host.add_header(map, name, value);
    }
}

/// `N` random bytes from the host's generator, 8 at a time.
fn random_bytes<H: Host, const N: usize>(host: &mut H) -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        for (o, b) in chunk.iter_mut().zip(host.random().to_le_bytes()) {
            *o = b;
        }
    }
    out
}

/// A uniform draw in [0, 1) with 53 bits of precision.
fn random_unit<H: Host>(host: &mut H) -> f64 {
    (host.random() >> 11) as f64 / (1u64 << 53) as f64
}

/// Configure-time set-up of what the exchanges of a configuration share (the budget store's lock).
pub fn configure<S: crate::budget::ledger::Store>(config: &Config, store: &S, holder: u64) {
    budget::configure(config, store, holder);
}

impl Exchange {
    pub fn new(config: Arc<Config>) -> Exchange {
        Exchange {
            config,
            call: Call::default(),
            active: false,
            read: Read::NoBody,
            held: false,
            probing: false,
            body_started: false,
            body_paused: false,
            request_skipped: false,
            request_encoding: Some(ContentEncoding::Identity),
            signature: None,
            decisions: hold::Decisions::default(),
            rls_paused: false,
            refused: false,
            reader: None,
            response_done: false,
            usage_filter: None,
            budget: Budgeted::default(),
            redaction: Redaction::default(),
            mcp: None,
            realtime: None,
        }
    }

    /// `server.address` and `server.port` from the request's `:authority` (443 when it names no port).
    fn set_server(&mut self, authority: &str) {
        let server = providers::strip_port(authority);
        self.call.server_address = server.to_ascii_lowercase();
        self.call.server_port = authority
            .strip_prefix(server)
            .and_then(|p| p.strip_prefix(':'))
            .and_then(|p| p.parse().ok())
            .or(Some(443));
    }

    /// What tollgate learned of the call so far.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// The provider of the detected call.
    fn provider(&self) -> Option<&'static dyn Provider> {
        self.call.route.as_ref().map(|r| providers::provider(r.api))
    }

    /// Whether tollgate asks this stream for usage (`Provider::may_inject_usage`).
    fn may_inject_usage(&self) -> bool {
        self.config.include_usage
            && self
                .call
                .route
                .as_ref()
                .is_some_and(|r| providers::provider(r.api).may_inject_usage(r))
    }

    /// A signature tollgate keeps valid covers request header `name`.
    fn signature_covers(&self, name: &str) -> bool {
        self.signature
            .as_ref()
            .is_some_and(|s| s.covers_header(name))
    }

    /// A signature tollgate keeps valid covers the body, or its length.
    fn signature_blocks_rewrite(&self) -> bool {
        self.signature
            .as_ref()
            .is_some_and(|s| s.body || s.covers_header("content-length"))
    }

    /// Whether the request body may be replaced (then `content-length` must go, or change before held
    /// headers leave). A compressed request body is only ever read (decoded copy), never rewritten; a
    /// signed one never changes.
    fn may_rewrite_request_body(&self) -> bool {
        self.request_encoding == Some(ContentEncoding::Identity)
            && !self.signature_blocks_rewrite()
            && (self.may_inject_usage()
                || budget::may_rewrite(&self.config)
                || redaction::may_rewrite_request(&self.config))
    }

    /// Replace the buffered request body (its `content-length` was removed with the headers, or is set
    /// here while the headers are held).
    fn replace_request_body<H: Host>(&self, host: &mut H, old_size: usize, body: &[u8]) -> bool {
        if !host.set_body(Body::Request, old_size, body) {
            return false;
        }
        if self.held && matches!(self.read, Read::Whole) {
            host.set_header(
                Map::RequestHeaders,
                "content-length",
                &(body.len() as u64).to_string(),
            );
        }
        true
    }

    /// Answer locally instead of the provider. Held headers never leave; a refusal after they left resets
    /// the upstream stream, and is counted.
    fn refuse<H: Host>(&mut self, host: &mut H, reply: &Reply) {
        host.send_reply(reply);
        self.refused_locally(host);
        self.call.http_status = Some(reply.status);
    }

    /// Bookkeeping of a local answer (sent here or by redaction's block check).
    fn refused_locally<H: Host>(&mut self, host: &mut H) {
        self.refused = true;
        self.response_done = true;
        if !self.held {
            host.count(Counter::RefusalsAfterForward, 1);
        }
    }

    fn refuse_with<H: Host>(&mut self, host: &mut H, refusal: Refusal, message: &str) {
        let Some(route) = self.call.route.as_ref() else {
            return;
        };
        let reply = providers::reply(route, &Denial::new(refusal, message));
        self.call.response.error_type = Some(refusal.code().to_owned());
        self.refuse(host, &reply);
    }

    /// Let the request go on: the held headers (if any) leave with the body.
    fn release(&mut self) -> Action {
        self.held = false;
        Action::Continue
    }

    /// The body will not be read before it is forwarded.
    fn unread<H: Host>(&mut self, host: &mut H, reason: &'static str) {
        self.call.request.uninspected = Some(reason);
        host.count(Counter::CallsUninspected, 1);
        if reason != "encoding" {
            host.count(Counter::RequestOversized, 1);
        }
    }

    /// The decisions on a body tollgate does not read, from its size: refuse it (`oversized_requests:
    /// refuse`), or reserve it by its size in the budgets. Returns true when the request was refused.
    fn decide_unread<H: Host>(&mut self, host: &mut H, size: u64) -> bool {
        let cfg = self.config.clone();
        if self.decisions.any() && cfg.oversized_requests == OversizedPolicy::Refuse {
            host.count(Counter::RequestOversizedRefused, 1);
            self.refuse_with(
                host,
                Refusal::TooLarge,
                "request refused by the gateway: its body is larger than it can inspect \
                 (max_request_body), or of undeclared length and not sent at once",
            );
            return true;
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let max = cfg.max_request_body;
        let step = budget::on_request_body(
            host,
            &cfg,
            &mut self.budget,
            &mut self.call,
            None,
            size,
            false,
            max,
        );
        match step {
            Step::Refuse(reply) => {
                self.refuse(host, &reply);
                true
            }
            // `rls`: the answer arrives in `on_grpc_answer`; the request is not paused for it.
            _ => false,
        }
    }

    /// Read a whole, buffered request body: decisions (block, egress, budgets), rewrites, then forward it,
    /// refuse it, or wait for the rate-limit service.
    fn inspect_request<H: Host>(&mut self, host: &mut H, body_size: usize) -> Action {
        if self.mcp.is_some() {
            return self.mcp_inspect(host, body_size);
        }
        self.request_skipped = true;
        let body = host.body(Body::Request, body_size);
        let Some(p) = self.provider() else {
            return self.release();
        };
        let cfg = self.config.clone();
        let max = cfg.max_request_body;
        // A compressed body is decoded into a copy for inspection; the original bytes go upstream and are
        // never rewritten.
        let identity = self.request_encoding == Some(ContentEncoding::Identity);
        let decoded = match self.request_encoding {
            Some(enc) if !identity => {
                inflate_all(enc, &body, u64::try_from(max).unwrap_or(u64::MAX)).ok()
            }
            _ => None,
        };
        let readable = if identity {
            Some(body.as_slice())
        } else {
            decoded.as_deref()
        };
        let Some(readable) = readable else {
            // Unknown coding, corrupt or over `max_request_body` once decoded: forwarded as is.
            self.unread(host, "encoding");
            return self.release();
        };
        if let Some(route) = self.call.route.as_ref() {
            providers::request(route, readable, &mut self.call.request);
        }
        // 1. Redaction: refuse what a `block` detector matches, then rewrite what leaves the company.
        if self
            .redaction
            .on_request_body(host, &cfg, readable, &mut self.call)
        {
            self.refused_locally(host);
            return Action::Pause; // answered locally: a `block` detector matched
        }
        // What goes upstream instead of the original body, once a step rewrites it.
        let mut out: Option<Vec<u8>> = None;
        let mut rewritten = false;
        if let Some(new_body) = self.redaction.take_egress_body() {
            if !identity {
                // Egress redaction found something it cannot remove from a compressed body: refuse rather
                // than let it leave.
                self.refuse_with(
                    host,
                    Refusal::ContentBlocked,
                    "request blocked by the gateway's data protection policy: a compressed body with \
                     sensitive content cannot be redacted; send it uncompressed",
                );
                host.count(Counter::RedactionBlocked, 1);
                return Action::Pause;
            }
            if self.signature_blocks_rewrite() {
                if cfg.signed_requests == SignedPolicy::Forward {
                    self.call.request.rewrite_skipped = Some("signed");
                    host.count(Counter::SignedUnmodified, 1);
                } else {
                    self.refuse_with(
                        host,
                        Refusal::SignedRequest,
                        "request blocked by the gateway's data protection policy: its body contains \
                         sensitive content to redact, and it is signed (AWS SigV4), which redaction \
                         would break; send it without that content",
                    );
                    host.count(Counter::SignedRefused, 1);
                    return Action::Pause;
                }
            } else if new_body.len() > max {
                // The proxy holds the body in its buffer: a longer one would be refused there (413).
                self.refuse_with(
                    host,
                    Refusal::ContentBlocked,
                    "request blocked by the gateway's data protection policy: its redacted body would \
                     exceed the gateway's buffer limit (max_request_body)",
                );
                host.count(Counter::RedactionBlocked, 1);
                return Action::Pause;
            } else {
                out = Some(new_body);
                rewritten = true;
            }
        }
        // 2. Budgets: reserve the worst case of what is actually sent; refuse or clamp.
        let rewritable = identity && !self.signature_blocks_rewrite();
        let inspected = out.as_deref().unwrap_or(readable);
        let mut wait = false;
        let step = budget::on_request_body(
            host,
            &cfg,
            &mut self.budget,
            &mut self.call,
            Some(inspected),
            inspected.len(),
            rewritable,
            max,
        );
        match step {
            Step::Continue => {}
            // The rate-limit service decides (`on_grpc_answer`); the rewrites below still apply.
            Step::Wait => wait = true,
            Step::Rewrite(new_body) => out = Some(new_body),
            Step::Refuse(reply) => {
                self.refuse(host, &reply);
                return Action::Pause;
            }
        }
        // 3. Ask the stream for usage. Only a streaming request can take it; the parse above read the
        // flag, so other bodies are not read a second time.
        let mut usage_injected = false;
        if self.call.request.stream && self.may_rewrite_request_body() && self.may_inject_usage() {
            if let Some(new_body) = p
                .inject_usage(out.as_deref().unwrap_or(&body))
                .filter(|b| b.len() <= max)
            {
                out = Some(new_body);
                usage_injected = true;
            }
        }
        // 4. One replacement of the body, with whatever the steps above rewrote.
        if out
            .as_deref()
            .is_some_and(|new_body| self.replace_request_body(host, body_size, new_body))
        {
            self.call.request.include_usage_injected = usage_injected;
            if rewritten {
                host.count(Counter::RedactionEgressRewritten, 1);
            }
        }
        if wait {
            self.rls_paused = true;
            return Action::Pause;
        }
        self.release()
    }

    /// The proxy answered 413 to a body tollgate held: `max_request_body` is above its buffer limit.
    fn check_buffer_overflow<H: Host>(&mut self, host: &mut H, status: Option<u16>) {
        if status != Some(413) || !self.body_paused {
            return;
        }
        let details = host.attribute(Attribute::ResponseCodeDetails);
        if details.as_deref() != Some(b"request_payload_too_large".as_slice()) {
            return;
        }
        host.count(Counter::RequestBufferOverflow, 1);
        if host.once(Once::BufferOverflow) {
            host.log(
                Level::Warn,
                "tollgate: Envoy answered 413 to a request body tollgate held: max_request_body is \
                 above Envoy's buffer limit (per_connection_buffer_limit_bytes, \
                 request_body_buffer_limit); counted in tollgate.request.buffer_overflow",
            );
        }
    }

    /// Feed response bytes through decompression and framing into the provider's reader, and note when the
    /// first chunk and the first generated content arrived.
    fn read_response<H: Host>(&mut self, host: &mut H, chunk: &[u8], end: bool) {
        let (Some(reader), Some(route)) = (self.reader.as_mut(), self.call.route.as_ref()) else {
            return;
        };
        let progress = reader.push(route, chunk, end, &mut self.call.response);
        if progress.chunk || progress.content {
            let now = host.now_ns();
            if progress.chunk && self.call.first_chunk_ns.is_none() {
                self.call.first_chunk_ns = Some(now);
            }
            if progress.content && self.call.first_content_ns.is_none() {
                self.call.first_content_ns = Some(now);
            }
        }
    }

    fn framing(&self) -> Framing {
        self.reader
            .as_ref()
            .map_or(Framing::Whole, ResponseReader::framing)
    }

    pub fn on_request_headers<H: Host>(&mut self, host: &mut H, end_of_stream: bool) -> Action {
        let cfg = self.config.clone();
        // One host call for the whole map; every header below is read from it.
        let headers = host.headers(Map::RequestHeaders);
        if let Some(reply) = inspect::on_request_headers(host, &cfg, &headers) {
            host.send_reply(&reply);
            return Action::Pause;
        }
        if !cfg.mcp.servers.is_empty() {
            let authority = headers.get_str(":authority").unwrap_or_default();
            let path = headers.get_str(":path").unwrap_or_default();
            if let Some(action) =
                self.mcp_request_headers(host, &headers, &authority, &path, end_of_stream)
            {
                return action;
            }
        }
        if headers.get("upgrade").is_some() {
            let path = headers.get_str(":path").unwrap_or_default();
            if let Some(action) = self.realtime_request_headers(host, &headers, &path) {
                return action;
            }
        }
        if headers.get(":method") != Some(b"POST") {
            return Action::Continue;
        }
        let authority = headers.get_str(":authority").unwrap_or_default();
        let path = headers.get_str(":path").unwrap_or_default();
        let Some(route) = providers::detect(&authority, &path, &cfg.routes) else {
            return Action::Continue;
        };
        self.active = true;
        self.held = true; // until this callback lets them go
        self.call.start_ns = host.now_ns();
        self.call.request.stream = route.path_stream;
        self.call.route = Some(route);
        self.set_server(&authority);
        if let Some(h) = &cfg.conversation_id_header {
            self.call.conversation_id = headers
                .get_string(h)
                .filter(|v| !v.is_empty() && v.len() <= 256);
        }
        let ce = headers.get_str("content-encoding").unwrap_or_default();
        self.request_encoding = ContentEncoding::from_header(&ce);
        budget::on_request_headers(host, &cfg, &mut self.budget, &mut self.call, &headers);
        // A signature tollgate must keep valid: nothing it signs changes (unless a filter after tollgate
        // signs the request again).
        if cfg.signed_requests != SignedPolicy::Resign {
            self.signature = sigv4::detect(
                headers.get_str("authorization").as_deref(),
                headers.get_str("x-amz-content-sha256").as_deref(),
                &path,
            );
        }
        self.call.request.signed = self.signature.is_some();
        // Output redaction asks for an identity-encoded response, unless that header is signed.
        if !self.signature_covers("accept-encoding") {
            self.redaction.on_request_headers(host, &cfg);
        }
        let tp = headers.get_str("traceparent");
        let ts = headers.get_str("tracestate");
        let ids = random_bytes::<H, 24>(host);
        let draw = random_unit(host);
        self.call.ids =
            trace::span_ids(tp.as_deref(), ts.as_deref(), ids, cfg.sampling_ratio, draw);
        // The provider's own spans (if any) become children of the gateway span, unless the app's
        // `traceparent` is signed.
        if !self.signature_covers("traceparent") {
            put_header(
                host,
                Map::RequestHeaders,
                &headers,
                "traceparent",
                &trace::format_traceparent(&self.call.ids),
            );
        }
        let framing = hold::Framing {
            end_of_stream,
            upgrade: headers.get("upgrade").is_some(),
            content_length: hold::content_length(headers.get_str("content-length").as_deref()),
        };
        self.read = hold::read(&framing, cfg.max_request_body);
        self.decisions = hold::Decisions {
            budget: budget::may_deny(&cfg, &self.budget),
            block: !cfg.redaction.block.is_empty(),
            egress: cfg.redaction.egress,
        };
        if let Read::TooLarge(size) = self.read {
            // Never held: decided from its declared size, before anything is forwarded.
            self.request_skipped = true;
            self.unread(host, "too_large");
            if self.decide_unread(host, size) {
                return Action::Pause;
            }
            return self.release();
        }
        let compressed = self
            .request_encoding
            .is_some_and(|e| e != ContentEncoding::Identity);
        let signed_body = self.signature.as_ref().is_some_and(|s| s.body);
        let may_refuse =
            hold::may_refuse(&cfg, &self.decisions, self.read, compressed, signed_body);
        let support = host.hold_support();
        if hold::hold(may_refuse, self.read, framing.upgrade, support) {
            // The decisions on the body come before any byte of the request leaves: no upstream
            // connection, no request at the provider when one refuses. `content-length` stays; a rewrite
            // sets the new length before the headers leave.
            self.probing = host.hold_note();
            host.count(Counter::HoldRequests, 1);
            return Action::Pause;
        }
        if support == Support::Unavailable
            && hold::hold(may_refuse, self.read, framing.upgrade, Support::Works)
        {
            host.count(Counter::HoldUnavailable, 1);
        }
        if !end_of_stream && self.may_rewrite_request_body() {
            // The body's new length is only known once it is buffered, and these headers leave first, so
            // let the proxy frame the upstream body itself.
            host.remove_header(Map::RequestHeaders, "content-length");
        }
        self.release()
    }

    /// `body_size`: the request body buffered so far, this chunk included.
    pub fn on_request_body<H: Host>(
        &mut self,
        host: &mut H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.realtime.is_some() {
            return self.realtime_request_body(host, body_size);
        }
        if !self.active || self.request_skipped {
            return Action::Continue;
        }
        let max = self.config.max_request_body;
        let first = !self.body_started;
        self.body_started = true;
        if first && self.probing {
            self.probing = false;
            if !host.hold_body_seen() {
                // The host found the proxy could not hold this request and released it: its headers left.
                self.held = false;
            }
        }
        match hold::body_step(self.read, first, body_size, end_of_stream, max) {
            hold::Step::Wait => {
                self.body_paused = true;
                Action::Pause // Buffer until the whole body is here.
            }
            hold::Step::Inspect => self.inspect_request(host, body_size),
            hold::Step::Pass if self.mcp.is_some() => {
                self.request_skipped = true;
                host.count(Counter::McpUnread, 1);
                self.release()
            }
            hold::Step::Pass => {
                // Too large to hold, or of undeclared length and not whole in its first chunk (holding more
                // could overflow the proxy's buffer): decide from its size now and forward it.
                self.request_skipped = true;
                let declared = matches!(self.read, Read::Whole);
                self.unread(
                    host,
                    if declared {
                        "too_large"
                    } else {
                        "undeclared_length"
                    },
                );
                let size = u64::try_from(body_size.max(max)).unwrap_or(u64::MAX);
                if self.decide_unread(host, size) {
                    return Action::Pause;
                }
                self.release()
            }
        }
    }

    /// `budgets.backend = "rls"`: the rate-limit service's answer to call `token` (to a paused request, or
    /// to one whose body is not read and which was forwarded meanwhile). `status` is the gRPC status (0 is
    /// OK), `body` the bare response message.
    pub fn on_grpc_answer<H: Host>(&mut self, host: &mut H, token: u64, status: u32, body: &[u8]) {
        let cfg = self.config.clone();
        let step = budget::on_grpc_answer(
            host,
            &cfg,
            &mut self.budget,
            &mut self.call,
            token,
            status,
            body,
        );
        match step {
            Some(Step::Refuse(reply)) => self.refuse(host, &reply),
            Some(_) if self.rls_paused => {
                self.rls_paused = false;
                host.resume_request();
                self.held = false;
            }
            _ => {}
        }
    }

    pub fn on_response_headers<H: Host>(&mut self, host: &mut H, end_of_stream: bool) -> Action {
        if !self.active || self.budget.refused || self.refused {
            return Action::Continue;
        }
        if self.realtime.is_some() {
            self.realtime_response_headers(host);
            return Action::Continue;
        }
        if self.mcp.is_some() {
            self.mcp_response_headers(host);
            if end_of_stream {
                self.mcp_response_body(host, 0, true);
            }
            return Action::Continue;
        }
        let cfg = self.config.clone();
        let headers = host.headers(Map::ResponseHeaders);
        budget::on_response_headers(host, &cfg, &self.budget, &headers);
        let status = headers
            .get_str(":status")
            .and_then(|s| s.parse::<u16>().ok());
        self.call.http_status = status;
        self.check_buffer_overflow(host, status);
        let ce = headers.get_str("content-encoding").unwrap_or_default();
        let encoding = if ce.trim().is_empty() {
            Some(ContentEncoding::Identity)
        } else {
            ContentEncoding::from_header(&ce)
        };
        if let Some(route) = self.call.route.as_ref() {
            let limits = Limits {
                max_event: cfg.max_event,
                max_body: cfg.max_response_body,
                ..Limits::default()
            };
            let reader = ResponseReader::new(
                route,
                &self.call.request,
                status,
                &headers,
                &limits,
                &mut self.call.response,
            );
            if reader.uninspected() {
                host.count(Counter::CallsUninspected, 1);
            }
            self.reader = Some(reader);
        }
        if self.call.request.include_usage_injected
            && self.framing() == Framing::Sse
            && encoding == Some(ContentEncoding::Identity)
        {
            self.usage_filter = Some(SseEventFilter::default());
            host.remove_header(Map::ResponseHeaders, "content-length");
        }
        let identity = encoding == Some(ContentEncoding::Identity);
        if self
            .redaction
            .on_response_headers(host, &cfg, self.framing(), identity)
        {
            host.remove_header(Map::ResponseHeaders, "content-length");
        }
        if end_of_stream {
            self.read_response(host, &[], true);
            self.response_done = true;
        }
        Action::Continue
    }

    /// One response chunk of `body_size` bytes, from the proxy to the client.
    pub fn on_response_body<H: Host>(
        &mut self,
        host: &mut H,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if !self.active || self.response_done {
            return Action::Continue;
        }
        if self.mcp.is_some() {
            self.mcp_response_body(host, body_size, end_of_stream);
            return Action::Continue;
        }
        if self.realtime.is_some() {
            self.realtime_response_body(host, body_size);
            return Action::Continue;
        }
        let cfg = self.config.clone();
        if self.redaction.buffers_response() {
            // Output redaction of a whole JSON body: hold it until it is complete, then redact it once.
            if !end_of_stream {
                return Action::Pause;
            }
            let body = host.body(Body::Response, body_size);
            self.read_response(host, &body, true);
            if let Some(out) = self.redaction.redact_json_response(&cfg, &body) {
                host.set_body(Body::Response, body_size, &out);
            }
            self.response_done = true;
            return Action::Continue;
        }
        // Never pause a stream: each chunk goes to the client now (less any output-redaction hold-back).
        // 1. The bytes, from the proxy.
        let chunk = if body_size > 0 {
            host.body(Body::Response, body_size)
        } else {
            Vec::new()
        };
        // 2. Decoded, framed, read by the provider into the call (usage, finish reasons, content, timings).
        self.read_response(host, &chunk, end_of_stream);
        // 3. The client's bytes: without the usage-only chunk tollgate asked for...
        let mut out = None;
        let p = self.provider();
        if let (Some(filter), Some(p)) = (self.usage_filter.as_mut(), p) {
            out = filter.push_changed(&chunk, &|raw| p.is_usage_only_event(raw));
            if end_of_stream {
                let rest = filter.finish();
                if !rest.is_empty() {
                    out.get_or_insert_with(|| chunk.clone()).extend(rest);
                }
            }
        }
        // ...and with its output redacted.
        let edited = out.as_deref().unwrap_or(&chunk);
        if let Some(o) = self.redaction.redact_stream(&cfg, edited, end_of_stream) {
            out = Some(o);
        }
        // 4. Back to the proxy, when they changed.
        if let Some(o) = out.filter(|o| *o != chunk) {
            host.set_body(Body::Response, body_size, &o);
        }
        if end_of_stream {
            self.response_done = true;
        }
        Action::Continue
    }

    /// The exchange is over, however it ended: finish the call, commit its usage, count it, export it.
    pub fn on_log<H: Host>(&mut self, host: &mut H) {
        if !self.active {
            return;
        }
        if self.mcp.is_some() {
            return self.mcp_log(host);
        }
        if self.realtime.is_some() {
            return self.realtime_log(host);
        }
        if self.probing {
            host.hold_forget();
        }
        if !self.response_done {
            // Client abort, upstream reset or timeout: keep what the complete events told us.
            self.read_response(host, &[], true);
            self.call.transport_error = Some(if self.call.http_status.is_none() {
                "no_response"
            } else {
                "stream_interrupted"
            });
        }
        if self.reader.as_ref().is_some_and(ResponseReader::incomplete) {
            self.call.response.incomplete = true;
        }
        self.call.end_ns = host.now_ns();
        self.call.estimate_missing_usage();
        let cfg = self.config.clone();
        budget::on_log(host, &cfg, &mut self.budget, &self.call);
        self.call.cost_usd = crate::pricing::call_cost(&cfg.pricing, &self.call);
        host.count(Counter::Calls, 1);
        if self.call.error_type().is_some() {
            host.count(Counter::CallsFailed, 1);
        }
        host.count(
            Counter::TokensInput,
            self.call.response.usage.input.unwrap_or(0),
        );
        host.count(
            Counter::TokensOutput,
            self.call.response.usage.output.unwrap_or(0),
        );
        if self.call.usage_estimated {
            host.count(Counter::UsageEstimated, 1);
        }
        if cfg.otlp.as_ref().is_some_and(|o| o.metrics) {
            host.record_metrics(&self.call, cfg.semconv);
        }
        self.redaction.finish(host, &cfg, &mut self.call);
        if cfg.otlp.is_some() && self.call.ids.sampled {
            let span = span::build_span(
                &self.call,
                &cfg.span_settings(),
                self.redaction.scrubber(&cfg),
            );
            host.export_span(span);
        }
    }
}
