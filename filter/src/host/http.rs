//! One HTTP exchange, in the order Envoy calls it: request headers → request body → response headers →
//! response body chunks → log. Everything it learns goes into a `Call`; on `on_log` the call becomes a span.

use super::abi;
use super::budget::{self, Budgeted, Step};
use super::redaction::{self, Redaction};
use super::root::Shared;
use super::{now_ns, random, random_unit};
use crate::call::Call;
use crate::providers::reader::ResponseReader;
use crate::providers::{self, openai, Framing};
use crate::stream::sse_edit::SseEventFilter;
use crate::stream::{inflate_all, ContentEncoding, Limits};
use crate::telemetry::{span, trace};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

pub struct Exchange {
    shared: Shared,
    call: Call,
    /// This request is an LLM call tollgate inspects.
    active: bool,
    /// The request body was too large to buffer and passed uninspected.
    request_skipped: bool,
    /// The request's `content-encoding`; `None` for codings tollgate cannot undo (body not inspected).
    request_encoding: Option<ContentEncoding>,
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
    pub fn new(shared: Shared) -> Exchange {
        Exchange {
            shared,
            call: Call::default(),
            active: false,
            request_skipped: false,
            request_encoding: Some(ContentEncoding::Identity),
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
                .is_some_and(providers::openai_compat::may_inject_usage)
    }

    /// Whether `on_http_request_body` may replace the body (then `content-length` must go). A compressed
    /// request body is only ever read (decoded copy), never rewritten.
    fn may_rewrite_request_body(&self) -> bool {
        self.request_encoding == Some(ContentEncoding::Identity)
            && (self.may_inject_usage()
                || budget::may_rewrite(&self.shared.config)
                || redaction::may_rewrite_request(&self.shared.config))
    }

    /// Replace the buffered request body (its `content-length` was removed with the headers).
    fn replace_request_body(old_size: usize, body: &[u8]) -> bool {
        abi::set_buffer(BufferType::HttpRequestBody, 0, old_size, body)
    }

    /// Answer locally instead of the provider; nothing of the body goes upstream.
    fn refuse(&mut self, reply: &crate::reply::Reply) {
        abi::send_reply(reply);
        self.response_done = true;
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

/// Answer the request locally; the caller returns `Action::Pause` (or is an asynchronous callback).
impl Context for Exchange {
    /// `budgets.backend = "rls"`: the rate-limit service's answer to the paused request.
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
            Some(_) => {
                abi::resume_request();
            }
            None => {}
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
        self.redaction.on_request_headers(&cfg);
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
        let tp = headers.get_str("traceparent");
        let ts = headers.get_str("tracestate");
        self.call.ids = trace::span_ids(
            tp.as_deref(),
            ts.as_deref(),
            random(),
            cfg.sampling_ratio,
            random_unit(),
        );
        // The provider's own spans (if any) become children of the gateway span.
        abi::put_header(
            MapType::HttpRequestHeaders,
            &headers,
            "traceparent",
            &trace::format_traceparent(&self.call.ids),
        );
        if !end_of_stream && self.may_rewrite_request_body() {
            // The body's new length is only known once it is buffered, and the headers leave first (pausing
            // them would also stop the body callbacks unless Envoy sets `allow_on_headers_stop_iteration`),
            // so let Envoy frame the upstream body itself.
            abi::remove_header(MapType::HttpRequestHeaders, "content-length");
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.active || self.request_skipped {
            return Action::Continue;
        }
        if body_size > self.shared.config.max_request_body {
            // Too large to hold: forward what is buffered and stop inspecting this request body.
            self.request_skipped = true;
            self.shared.stats.calls_uninspected.add(1);
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause; // Buffer until the whole body is here.
        }
        let body = abi::buffer(BufferType::HttpRequestBody, 0, body_size);
        let Some(api) = self.call.route.as_ref().map(|r| r.api) else {
            return Action::Continue;
        };
        // A compressed body is decoded into a copy for inspection; the original bytes go upstream and are
        // never rewritten.
        let identity = self.request_encoding == Some(ContentEncoding::Identity);
        let max = u64::try_from(self.shared.config.max_request_body).unwrap_or(u64::MAX);
        let decoded = match self.request_encoding {
            Some(enc) if !identity => inflate_all(enc, &body, max).ok(),
            _ => None,
        };
        let readable = if identity {
            Some(body.as_slice())
        } else {
            decoded.as_deref()
        };
        let Some(readable) = readable else {
            // Unknown coding, corrupt or over `max_request_body` once decoded: forwarded as is.
            self.request_skipped = true;
            self.shared.stats.calls_uninspected.add(1);
            return Action::Continue;
        };
        if let Some(route) = self.call.route.as_ref() {
            providers::request(route, readable, &mut self.call.request);
        }
        // 1. Redaction: refuse what a `block` detector matches, then rewrite what leaves the company.
        let cfg = self.shared.config.clone();
        if self
            .redaction
            .on_request_body(&cfg, &self.shared.stats, api, readable, &mut self.call)
        {
            return Action::Pause; // answered locally: a `block` detector matched
        }
        // What goes upstream instead of the original body, once a step rewrites it.
        let mut out: Option<Vec<u8>> = None;
        let mut rewritten = false;
        if let Some(new_body) = self.redaction.take_egress_body() {
            if !identity {
                // Egress redaction found something it cannot remove from a compressed body: refuse rather
                // than let it leave.
                self.refuse(&crate::reply::refuse(
                    api,
                    crate::reply::Refusal::ContentBlocked,
                    "request blocked by the gateway's data protection policy: a compressed body with \
                     sensitive content cannot be redacted; send it uncompressed",
                    Vec::new(),
                ));
                self.shared.stats.redaction_blocked.add(1);
                return Action::Pause;
            }
            out = Some(new_body);
            rewritten = true;
        }
        // 2. Budgets: reserve the worst case of what is actually sent; refuse or clamp.
        let inspected = out.as_deref().unwrap_or(readable);
        let mut wait = false;
        match budget::on_request_body(
            &self.shared,
            &mut self.budget,
            &mut self.call,
            inspected,
            identity,
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
            if let Some(new_body) = openai::inject_include_usage(out.as_deref().unwrap_or(&body)) {
                out = Some(new_body);
                usage_injected = true;
            }
        }
        if out
            .as_deref()
            .is_some_and(|new_body| Self::replace_request_body(body_size, new_body))
        {
            self.call.request.include_usage_injected = usage_injected;
            if rewritten {
                self.shared.stats.redaction_egress_rewritten.add(1);
            }
        }
        if wait {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if !self.active || self.budget.refused {
            return Action::Continue;
        }
        let headers = abi::headers(MapType::HttpResponseHeaders);
        budget::on_response_headers(&self.shared, &self.budget, &headers);
        let status = headers
            .get_str(":status")
            .and_then(|s| s.parse::<u16>().ok());
        self.call.http_status = status;
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
        if let Some(filter) = self.usage_filter.as_mut() {
            out = filter.push_changed(&chunk, &openai::is_usage_only_event);
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
            let span = span::build_span(&self.call, &cfg, self.redaction.scrubber(&cfg));
            self.shared.queue.borrow_mut().push(span);
        }
    }
}
