//! One HTTP exchange, in the order Envoy calls it: request headers → request body → response headers →
//! response body chunks → log. Everything it learns goes into a `Call`; on `on_log` the call becomes a span.

use super::abi;
use super::budget::{self, Budgeted, Step};
use super::redaction::{self, Redaction};
use super::root::Shared;
use super::{log, now_ns, random, random_unit};
use crate::call::Call;
use crate::codec::sigv4::{self, Signature};
use crate::config::{OversizedPolicy, SignedPolicy};
use crate::hold::{self, Read, Support};
use crate::providers;
use crate::providers::reader::ResponseReader;
use crate::reply::{Refusal, Reply};
use crate::stream::sse_edit::SseEventFilter;
use crate::stream::Framing;
use crate::stream::{inflate_all, ContentEncoding, Limits};
use crate::telemetry::{span, trace};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

pub struct Exchange {
    shared: Shared,
    context_id: u32,
    call: Call,
    /// This request is an LLM call tollgate inspects.
    active: bool,
    /// How the request body is read (`crate::hold`).
    read: Read,
    /// The request headers have not been forwarded yet: being decided on, or held until the decisions on
    /// the body are made.
    held: bool,
    /// The held request is noted with `Holds` while Envoy's support for holding is unknown.
    probing: bool,
    /// A request-body callback has run.
    body_started: bool,
    /// tollgate paused a request body chunk (Envoy buffered it).
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
}

impl Exchange {
    pub fn new(shared: Shared, context_id: u32) -> Exchange {
        Exchange {
            shared,
            context_id,
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
        }
    }

    /// Whether tollgate asks this OpenAI-shaped stream for usage (`openai_compat::may_inject_usage`).
    fn may_inject_usage(&self) -> bool {
        self.shared.config.include_usage
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

    /// Whether `on_http_request_body` may replace the body (then `content-length` must go, or change before
    /// held headers leave). A compressed request body is only ever read (decoded copy), never rewritten; a
    /// signed one never changes.
    fn may_rewrite_request_body(&self) -> bool {
        self.request_encoding == Some(ContentEncoding::Identity)
            && !self.signature_blocks_rewrite()
            && (self.may_inject_usage()
                || budget::may_rewrite(&self.shared.config)
                || redaction::may_rewrite_request(&self.shared.config))
    }

    /// Replace the buffered request body (its `content-length` was removed with the headers, or is set
    /// here while the headers are held).
    fn replace_request_body(&self, old_size: usize, body: &[u8]) -> bool {
        if !abi::set_buffer(BufferType::HttpRequestBody, 0, old_size, body) {
            return false;
        }
        if self.held && matches!(self.read, Read::Whole) {
            abi::set_header(
                MapType::HttpRequestHeaders,
                "content-length",
                &(body.len() as u64).to_string(),
            );
        }
        true
    }

    /// Answer locally instead of the provider. Held headers never leave; a refusal after they left resets
    /// the upstream stream, and is counted.
    fn refuse(&mut self, reply: &Reply) {
        abi::send_reply(reply);
        self.refused_locally();
        self.call.http_status = Some(reply.status);
    }

    /// Bookkeeping of a local answer (sent here or by redaction's block check).
    fn refused_locally(&mut self) {
        self.refused = true;
        self.response_done = true;
        if !self.held {
            self.shared.stats.refusals_after_forward.add(1);
        }
    }

    fn refuse_with(&mut self, refusal: Refusal, message: &str) {
        let Some(route) = self.call.route.as_ref() else {
            return;
        };
        let reply = providers::reply(route, &crate::reply::Denial::new(refusal, message));
        self.call.response.error_type = Some(refusal.code().to_owned());
        self.refuse(&reply);
    }

    /// Let the request go on: the held headers (if any) leave with the body.
    fn release(&mut self) -> Action {
        self.held = false;
        Action::Continue
    }

    /// The body will not be read before it is forwarded.
    fn unread(&mut self, reason: &'static str) {
        self.call.request.uninspected = Some(reason);
        self.shared.stats.calls_uninspected.add(1);
        if reason != "encoding" {
            self.shared.stats.request_oversized.add(1);
        }
    }

    /// The decisions on a body tollgate does not read, from its size: refuse it (`oversized_requests:
    /// refuse`), or reserve it by its size in the budgets. Returns true when the request was refused.
    fn decide_unread(&mut self, size: u64) -> bool {
        let cfg = self.shared.config.clone();
        if self.decisions.any() && cfg.oversized_requests == OversizedPolicy::Refuse {
            self.shared.stats.request_oversized_refused.add(1);
            self.refuse_with(
                Refusal::TooLarge,
                "request refused by the gateway: its body is larger than it can inspect \
                 (max_request_body), or of undeclared length and not sent at once",
            );
            return true;
        }
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let max = self.shared.config.max_request_body;
        match budget::on_request_body(
            &self.shared,
            &mut self.budget,
            &mut self.call,
            None,
            size,
            false,
            max,
        ) {
            Step::Refuse(reply) => {
                self.refuse(&reply);
                true
            }
            // `rls`: the answer arrives in `on_grpc_call_response`; the request is not paused for it.
            _ => false,
        }
    }

    /// Read a whole, buffered request body: decisions (block, egress, budgets), rewrites, then forward it,
    /// refuse it, or wait for the rate-limit service.
    fn inspect_request(&mut self, body_size: usize) -> Action {
        self.request_skipped = true;
        let body = abi::buffer(BufferType::HttpRequestBody, 0, body_size);
        let Some(api) = self.call.route.as_ref().map(|r| r.api) else {
            return self.release();
        };
        let cfg = self.shared.config.clone();
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
            self.unread("encoding");
            return self.release();
        };
        if let Some(route) = self.call.route.as_ref() {
            providers::request(route, readable, &mut self.call.request);
        }
        // 1. Redaction: refuse what a `block` detector matches, then rewrite what leaves the company.
        if self
            .redaction
            .on_request_body(&cfg, &self.shared.stats, readable, &mut self.call)
        {
            self.refused_locally();
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
                    Refusal::ContentBlocked,
                    "request blocked by the gateway's data protection policy: a compressed body with \
                     sensitive content cannot be redacted; send it uncompressed",
                );
                self.shared.stats.redaction_blocked.add(1);
                return Action::Pause;
            }
            if self.signature_blocks_rewrite() {
                if cfg.signed_requests == SignedPolicy::Forward {
                    self.call.request.rewrite_skipped = Some("signed");
                    self.shared.stats.signed_unmodified.add(1);
                } else {
                    self.refuse_with(
                        Refusal::SignedRequest,
                        "request blocked by the gateway's data protection policy: its body contains \
                         sensitive content to redact, and it is signed (AWS SigV4), which redaction \
                         would break; send it without that content",
                    );
                    self.shared.stats.signed_refused.add(1);
                    return Action::Pause;
                }
            } else if new_body.len() > max {
                // Envoy holds the body in its buffer: a longer one would be refused there (413).
                self.refuse_with(
                    Refusal::ContentBlocked,
                    "request blocked by the gateway's data protection policy: its redacted body would \
                     exceed the gateway's buffer limit (max_request_body)",
                );
                self.shared.stats.redaction_blocked.add(1);
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
        match budget::on_request_body(
            &self.shared,
            &mut self.budget,
            &mut self.call,
            Some(inspected),
            inspected.len(),
            rewritable,
            max,
        ) {
            Step::Continue => {}
            // The rate-limit service decides (`on_grpc_call_response`); the rewrites below still apply.
            Step::Wait => wait = true,
            Step::Rewrite(new_body) => out = Some(new_body),
            Step::Refuse(reply) => {
                self.refuse(&reply);
                return Action::Pause;
            }
        }
        // 3. Ask OpenAI-shaped streams for usage.
        let mut usage_injected = false;
        // Only a streaming request can take it; the parse above read the flag, so other bodies are not
        // read a second time.
        if self.call.request.stream && self.may_rewrite_request_body() && self.may_inject_usage() {
            if let Some(new_body) = providers::provider(api)
                .inject_usage(out.as_deref().unwrap_or(&body))
                .filter(|b| b.len() <= max)
            {
                out = Some(new_body);
                usage_injected = true;
            }
        }
        if out
            .as_deref()
            .is_some_and(|new_body| self.replace_request_body(body_size, new_body))
        {
            self.call.request.include_usage_injected = usage_injected;
            if rewritten {
                self.shared.stats.redaction_egress_rewritten.add(1);
            }
        }
        if wait {
            self.rls_paused = true;
            return Action::Pause;
        }
        self.release()
    }

    /// Envoy answered 413 to a body tollgate held: `max_request_body` is above Envoy's buffer limit.
    fn check_buffer_overflow(&mut self, status: Option<u16>) {
        if status != Some(413) || !self.body_paused {
            return;
        }
        let details = abi::property(&["response", "code_details"]);
        if details.as_deref() != Some(b"request_payload_too_large".as_slice()) {
            return;
        }
        self.shared.stats.request_buffer_overflow.add(1);
        if self.shared.holds.first_overflow() {
            log(
                LogLevel::Warn,
                "tollgate: Envoy answered 413 to a request body tollgate held: max_request_body is \
                 above Envoy's buffer limit (per_connection_buffer_limit_bytes, \
                 request_body_buffer_limit); counted in tollgate.request.buffer_overflow",
            );
        }
    }

    /// Feed response bytes through decompression and framing into the provider's reader.
    fn read_response(&mut self, chunk: &[u8], end: bool) {
        let (Some(reader), Some(route)) = (self.reader.as_mut(), self.call.route.as_ref()) else {
            return;
        };
        let progress = reader.push(route, chunk, end, &mut self.call.response);
        if progress.chunk || progress.content {
            let now = now_ns();
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
}

impl Context for Exchange {
    /// `budgets.backend = "rls"`: the rate-limit service's answer (to a paused request, or to one whose
    /// body is not read and which was forwarded meanwhile).
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let step = budget::on_grpc_answer(
            &self.shared,
            &mut self.budget,
            &mut self.call,
            token_id,
            status_code,
            response_size,
        );
        match step {
            Some(Step::Refuse(reply)) => self.refuse(&reply),
            Some(_) if self.rls_paused => {
                self.rls_paused = false;
                abi::resume_request();
                self.held = false;
            }
            _ => {}
        }
    }
}

impl HttpContext for Exchange {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let cfg = self.shared.config.clone();
        // One host call for the whole map; every header below is read from it.
        let headers = abi::headers(MapType::HttpRequestHeaders);
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
        self.call.start_ns = now_ns();
        self.call.request.stream = route.path_stream;
        self.call.route = Some(route);
        let host = providers::strip_port(&authority);
        self.call.server_address = host.to_ascii_lowercase();
        self.call.server_port = authority
            .strip_prefix(host)
            .and_then(|p| p.strip_prefix(':'))
            .and_then(|p| p.parse().ok())
            .or(Some(443));
        if let Some(h) = &cfg.conversation_id_header {
            self.call.conversation_id = headers
                .get_string(h)
                .filter(|v| !v.is_empty() && v.len() <= 256);
        }
        let ce = headers.get_str("content-encoding").unwrap_or_default();
        self.request_encoding = ContentEncoding::from_header(&ce);
        budget::on_request_headers(&self.shared, &mut self.budget, &mut self.call, &headers);
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
            self.redaction.on_request_headers(&cfg);
        }
        let tp = headers.get_str("traceparent");
        let ts = headers.get_str("tracestate");
        self.call.ids = trace::span_ids(
            tp.as_deref(),
            ts.as_deref(),
            random(),
            cfg.sampling_ratio,
            random_unit(),
        );
        // The provider's own spans (if any) become children of the gateway span, unless the app's
        // `traceparent` is signed.
        if !self.signature_covers("traceparent") {
            abi::put_header(
                MapType::HttpRequestHeaders,
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
            budget: budget::may_deny(&self.shared, &self.budget),
            block: !cfg.redaction.block.is_empty(),
            egress: cfg.redaction.egress,
        };
        if let Read::TooLarge(size) = self.read {
            // Never held: decided from its declared size, before anything is forwarded.
            self.request_skipped = true;
            self.unread("too_large");
            if self.decide_unread(size) {
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
        let support = self.shared.holds.support();
        if hold::hold(may_refuse, self.read, framing.upgrade, support) {
            // The decisions on the body come before any byte of the request leaves: no upstream
            // connection, no request at the provider when one refuses. `content-length` stays; a rewrite
            // sets the new length before the headers leave.
            self.probing = self.shared.holds.held(self.context_id);
            self.shared.stats.hold_requests.add(1);
            return Action::Pause;
        }
        if support == Support::Unavailable
            && hold::hold(may_refuse, self.read, framing.upgrade, Support::Works)
        {
            self.shared.stats.hold_unavailable.add(1);
        }
        if !end_of_stream && self.may_rewrite_request_body() {
            // The body's new length is only known once it is buffered, and these headers leave first, so
            // let Envoy frame the upstream body itself.
            abi::remove_header(MapType::HttpRequestHeaders, "content-length");
        }
        self.release()
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.active {
            return Action::Continue;
        }
        let max = self.shared.config.max_request_body;
        if self.request_skipped {
            return Action::Continue;
        }
        let first = !self.body_started;
        self.body_started = true;
        if first && self.probing {
            self.probing = false;
            if !self.shared.holds.body_seen(self.context_id) {
                // The tick found Envoy could not hold this request and released it: its headers left.
                self.held = false;
            }
        }
        match hold::body_step(self.read, first, body_size, end_of_stream, max) {
            hold::Step::Wait => {
                self.body_paused = true;
                Action::Pause // Buffer until the whole body is here.
            }
            hold::Step::Inspect => self.inspect_request(body_size),
            hold::Step::Pass => {
                // Too large to hold, or of undeclared length and not whole in its first chunk (holding more
                // could overflow Envoy's buffer): decide from its size now and forward it.
                self.request_skipped = true;
                let declared = matches!(self.read, Read::Whole);
                self.unread(if declared {
                    "too_large"
                } else {
                    "undeclared_length"
                });
                let size = u64::try_from(body_size.max(max)).unwrap_or(u64::MAX);
                if self.decide_unread(size) {
                    return Action::Pause;
                }
                self.release()
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !self.active || self.budget.refused || self.refused {
            return Action::Continue;
        }
        let headers = abi::headers(MapType::HttpResponseHeaders);
        budget::on_response_headers(&self.shared, &self.budget, &headers);
        let status = headers
            .get_str(":status")
            .and_then(|s| s.parse::<u16>().ok());
        self.call.http_status = status;
        self.check_buffer_overflow(status);
        let ce = headers.get_str("content-encoding").unwrap_or_default();
        let encoding = if ce.trim().is_empty() {
            Some(ContentEncoding::Identity)
        } else {
            ContentEncoding::from_header(&ce)
        };
        if let Some(route) = self.call.route.as_ref() {
            let cfg = &self.shared.config;
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
                self.shared.stats.calls_uninspected.add(1);
            }
            self.reader = Some(reader);
        }
        if self.call.request.include_usage_injected
            && self.framing() == Framing::Sse
            && encoding == Some(ContentEncoding::Identity)
        {
            self.usage_filter = Some(SseEventFilter::default());
            abi::remove_header(MapType::HttpResponseHeaders, "content-length");
        }
        let identity = encoding == Some(ContentEncoding::Identity);
        let cfg = self.shared.config.clone();
        if self
            .redaction
            .on_response_headers(&cfg, &self.shared.stats, self.framing(), identity)
        {
            abi::remove_header(MapType::HttpResponseHeaders, "content-length");
        }
        if end_of_stream {
            self.read_response(&[], true);
            self.response_done = true;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.active || self.response_done {
            return Action::Continue;
        }
        if self.redaction.buffers_response() {
            // Output redaction of a whole JSON body: hold it until it is complete, then redact it once.
            if !end_of_stream {
                return Action::Pause;
            }
            let body = abi::buffer(BufferType::HttpResponseBody, 0, body_size);
            self.read_response(&body, true);
            let cfg = self.shared.config.clone();
            if let Some(out) = self.redaction.redact_json_response(&cfg, &body) {
                abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out);
            }
            self.response_done = true;
            return Action::Continue;
        }
        // Never Pause a stream: each chunk goes to the client now (less any output-redaction hold-back).
        let chunk = if body_size > 0 {
            abi::buffer(BufferType::HttpResponseBody, 0, body_size)
        } else {
            Vec::new()
        };
        self.read_response(&chunk, end_of_stream);
        let mut out = None;
        if let (Some(filter), Some(route)) = (self.usage_filter.as_mut(), self.call.route.as_ref())
        {
            let usage = providers::provider(route.api);
            out = filter.push_changed(&chunk, &|raw| usage.is_usage_only_event(raw));
            if end_of_stream {
                let rest = filter.finish();
                if !rest.is_empty() {
                    out.get_or_insert_with(|| chunk.clone()).extend(rest);
                }
            }
        }
        let cfg = self.shared.config.clone();
        let edited = out.as_deref().unwrap_or(&chunk);
        if let Some(o) = self.redaction.redact_stream(&cfg, edited, end_of_stream) {
            out = Some(o);
        }
        if let Some(o) = out.filter(|o| *o != chunk) {
            abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, &o);
        }
        if end_of_stream {
            self.response_done = true;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if !self.active {
            return;
        }
        if self.probing {
            self.shared.holds.forget(self.context_id);
        }
        if !self.response_done {
            // Client abort, upstream reset or timeout: keep what the complete events told us.
            self.read_response(&[], true);
            self.call.transport_error = Some(if self.call.http_status.is_none() {
                "no_response"
            } else {
                "stream_interrupted"
            });
        }
        if self.reader.as_ref().is_some_and(ResponseReader::incomplete) {
            self.call.response.incomplete = true;
        }
        self.call.end_ns = now_ns();
        self.call.estimate_missing_usage();
        budget::on_log(&self.shared, &mut self.budget, &self.call);
        self.call.cost_usd = crate::pricing::call_cost(&self.shared.config.pricing, &self.call);
        let stats = &self.shared.stats;
        stats.calls.add(1);
        if self.call.error_type().is_some() {
            stats.calls_failed.add(1);
        }
        stats
            .tokens_input
            .add(self.call.response.usage.input.unwrap_or(0));
        stats
            .tokens_output
            .add(self.call.response.usage.output.unwrap_or(0));
        if self.call.usage_estimated {
            stats.usage_estimated.add(1);
        }
        super::metrics::record(&self.shared, &self.call);
        let cfg = self.shared.config.clone();
        self.redaction.finish(&cfg, stats, &mut self.call);
        if cfg.otlp.is_some() && self.call.ids.sampled {
            let span = span::build_span(
                &self.call,
                &cfg.span_settings(),
                self.redaction.scrubber(&cfg),
            );
            self.shared.queue.borrow_mut().push(span);
        }
    }
}
