//! One realtime WebSocket session (OpenAI Realtime and Azure's, Gemini Live): an HTTP/1.1 upgrade whose
//! frames then flow through the body callbacks, the client's in the request direction and the server's in
//! the response direction, one callback per TCP read, never marked end-of-stream (Envoy 1.40, measured
//! with a probe module: `docs/mcp-and-realtime.md`). The session ends in the log callback.
//!
//! - The upgrade: never held (its body only flows after the 101); the client's permessage-deflate offer
//!   is removed (`realtime.strip_deflate`) so that every message is readable and a refused one can be
//!   dropped without desynchronising the server's inflater.
//! - Both directions are decoded (`stream::websocket`), whatever the chunking; every byte passes unchanged
//!   except a refused client message.
//! - Per model response (OpenAI `response.done`, a Gemini turn with `usageMetadata`): a
//!   `realtime_inference {model}` CLIENT span, child of the session span, with usage by modality; the
//!   tenant's budgets are debited with the exact usage.
//! - When a budget of the tenant is spent, the next `response.create` (or a completed Gemini turn) is not
//!   forwarded: its frame is replaced by a ping, and the API's own answer (OpenAI's `error` event; for
//!   Gemini, a 1008 close as the Live API ends a session) is put in front of the next server bytes, which
//!   the ping's pong guarantees. Envoy lets a filter change the response body only inside the response
//!   callback (proxy-wasm `set_buffer` on the response body from the request callback fails), hence the
//!   ping.
//! - The session span (`realtime_session {model}`, tollgate's own name: the conventions model the session
//!   as an id only) carries the totals.

use super::host::{Body, Counter, Host, Map};
use super::{random_bytes, random_unit, Action, Exchange};
use crate::budget::ledger::{self, Amount, Clock, Ledger};
use crate::call::{Call, SpanIds};
use crate::codec::headers::Headers;
use crate::config::Config;
use crate::providers::gemini_live::{self, Backend, ClientMessage};
use crate::providers::openai_realtime::{self, ClientEvent, ServerEvent};
use crate::providers::realtime::ModalityUsage;
use crate::stream::websocket::{
    encode_frame, frame_extent, negotiated, strip_deflate_offer, unmask, Extensions, Opcode,
    Sender, WsDecoder, WsEvent, WsLimits,
};
use crate::telemetry::metrics::{Attr, Instrument, ValRef};
use crate::telemetry::{span, trace};

/// Which API the session speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Api {
    OpenAi { azure: bool },
    Gemini(Backend),
}

/// A response in progress or finished.
#[derive(Clone, Debug, Default)]
struct Response {
    id: Option<String>,
    start_ns: u64,
}

pub struct Session {
    api: Api,
    ids: SpanIds,
    start_ns: u64,
    tenant: String,
    model: Option<String>,
    session_id: Option<String>,
    client: Option<WsDecoder>,
    server: Option<WsDecoder>,
    /// The upgrade was answered 101.
    open: bool,
    /// Client bytes of an unfinished frame, held while refusals are possible.
    held: Vec<u8>,
    /// Client-bound bytes to put in front of the next server bytes (a refusal's answer).
    inject: Vec<u8>,
    /// A budget of the tenant is spent: refuse what asks for a response.
    spent: bool,
    refused: u64,
    current: Option<Response>,
    responses: u64,
    totals: ModalityUsage,
    cost_usd: f64,
    close_code: Option<u16>,
    unread: u64,
    /// Gemini: the turn's start (first server content after the previous turn).
    turn_start_ns: Option<u64>,
}

fn provider_name(api: &Api) -> &'static str {
    match api {
        Api::OpenAi { azure: false } => "openai",
        Api::OpenAi { azure: true } => "azure.ai.openai",
        Api::Gemini(Backend::GeminiApi) => "gcp.gemini",
        Api::Gemini(Backend::VertexAi) => "gcp.vertex_ai",
    }
}

impl Exchange {
    /// Request headers of a WebSocket upgrade to a realtime API path: None when it is not one.
    pub(super) fn realtime_request_headers<H: Host>(
        &mut self,
        host: &mut H,
        headers: &Headers,
        path: &str,
    ) -> Option<Action> {
        let cfg = self.config.clone();
        if !cfg.realtime.enabled || headers.get(":method") != Some(b"GET") {
            return None;
        }
        let upgrade = headers.get_str("upgrade")?;
        if !upgrade.eq_ignore_ascii_case("websocket") {
            return None;
        }
        let (api, model) = if let Some(r) = openai_realtime::route(path) {
            (Api::OpenAi { azure: r.azure }, r.model)
        } else {
            (Api::Gemini(gemini_live::route(path)?), None)
        };
        self.active = true;
        self.held = false;
        self.request_skipped = true;
        let authority = headers.get_str(":authority").unwrap_or_default();
        self.set_server(&authority);
        super::budget::on_request_headers(host, &cfg, &mut self.budget, &mut self.call, headers);
        let tenant = self
            .call
            .tenant
            .clone()
            .unwrap_or_else(|| cfg.tenant.default.clone());
        let tp = headers.get_str("traceparent");
        let ts = headers.get_str("tracestate");
        let ids = random_bytes::<H, 24>(host);
        let draw = random_unit(host);
        let ids = trace::span_ids(tp.as_deref(), ts.as_deref(), ids, cfg.sampling_ratio, draw);
        if cfg.realtime.strip_deflate {
            if let Some(offer) = headers.get_str("sec-websocket-extensions") {
                match strip_deflate_offer(&offer) {
                    Some(rest) => {
                        host.set_header(Map::RequestHeaders, "sec-websocket-extensions", &rest)
                    }
                    None => host.remove_header(Map::RequestHeaders, "sec-websocket-extensions"),
                }
            }
        }
        let spent = spent(host, &cfg, &tenant, model.as_deref());
        self.realtime = Some(Box::new(Session {
            api,
            ids,
            start_ns: host.now_ns(),
            tenant,
            model,
            session_id: None,
            client: None,
            server: None,
            open: false,
            held: Vec::new(),
            inject: Vec::new(),
            spent,
            refused: 0,
            current: None,
            responses: 0,
            totals: ModalityUsage::default(),
            cost_usd: 0.0,
            close_code: None,
            unread: 0,
            turn_start_ns: None,
        }));
        host.count(Counter::RealtimeSessions, 1);
        Some(Action::Continue)
    }

    pub(super) fn realtime_response_headers<H: Host>(&mut self, host: &mut H) {
        let cfg = self.config.clone();
        let headers = host.headers(Map::ResponseHeaders);
        let Some(s) = self.realtime.as_mut() else {
            return;
        };
        let status = headers
            .get_str(":status")
            .and_then(|v| v.parse::<u16>().ok());
        self.call.http_status = status;
        if status != Some(101) {
            return;
        }
        s.open = true;
        let ext = negotiated(headers.get_str("sec-websocket-extensions").as_deref());
        if ext == Extensions::Unsupported {
            host.count(Counter::RealtimeUnread, 1);
            return;
        }
        let limits = WsLimits {
            max_message: cfg.realtime.max_message,
            ..WsLimits::default()
        };
        s.client = Some(WsDecoder::new(Sender::Client, ext, limits));
        s.server = Some(WsDecoder::new(Sender::Server, ext, limits));
    }

    /// Client bytes: read, and with a spent budget, whole frames forwarded or refused.
    pub(super) fn realtime_request_body<H: Host>(&mut self, host: &mut H, size: usize) -> Action {
        let Some(mut s) = self.realtime.take() else {
            return Action::Continue;
        };
        if s.open && size > 0 {
            let chunk = host.body(Body::Request, size);
            s.read_client(host, &chunk);
            if s.spent || !s.held.is_empty() {
                let out = s.gate(host, &chunk);
                if out != chunk {
                    host.set_body(Body::Request, size, &out);
                }
            }
        }
        self.realtime = Some(s);
        Action::Continue
    }

    pub(super) fn realtime_response_body<H: Host>(&mut self, host: &mut H, size: usize) {
        let cfg = self.config.clone();
        let Some(mut s) = self.realtime.take() else {
            return;
        };
        if s.open {
            let chunk = if size > 0 {
                host.body(Body::Response, size)
            } else {
                Vec::new()
            };
            s.read_server(host, &cfg, &self.call, &chunk);
            if !s.inject.is_empty() && size > 0 {
                let mut out = std::mem::take(&mut s.inject);
                out.extend_from_slice(&chunk);
                host.set_body(Body::Response, size, &out);
            }
        }
        self.realtime = Some(s);
    }

    /// The session is over (closed by either side, reset, or timed out).
    pub(super) fn realtime_log<H: Host>(&mut self, host: &mut H) {
        let cfg = self.config.clone();
        let Some(mut s) = self.realtime.take() else {
            return;
        };
        let end_ns = host.now_ns();
        let truncated = s.server.as_ref().is_some_and(|d| {
            let st = d.stats();
            st.truncated || st.buffered > 0
        });
        if let Some(d) = s.server.as_mut() {
            d.finish();
        }
        // Everything the decoders could not read: messages over the cap, text that is not UTF-8,
        // compressed messages that did not inflate, and a framing error, which stops reading the rest.
        let mut dropped = 0u64;
        let mut invalid = false;
        for d in [s.client.as_ref(), s.server.as_ref()].into_iter().flatten() {
            let st = d.stats();
            dropped = dropped
                .saturating_add(st.oversize_skipped)
                .saturating_add(st.invalid_utf8)
                .saturating_add(st.inflate_errors)
                .saturating_add(st.inflate_capped)
                .saturating_add(st.undecodable);
            if d.invalid().is_some() {
                invalid = true;
                dropped = dropped.saturating_add(1);
            }
        }
        if dropped > 0 {
            host.count(Counter::RealtimeUnread, dropped);
            s.unread = s.unread.saturating_add(dropped);
        }
        if cfg.otlp.is_none() || !s.ids.sampled {
            return;
        }
        let model = s.model.clone().unwrap_or_default();
        let name = if model.is_empty() {
            "realtime_session".to_owned()
        } else {
            format!("realtime_session {model}")
        };
        // A response in flight when the session ended: its usage never came.
        let partial = s.current.is_some() || truncated || invalid;
        let error = match (s.open, self.call.http_status, s.close_code) {
            (false, Some(st), _) => Some(st.to_string()),
            (false, None, _) => Some("no_response".to_owned()),
            (true, _, Some(c)) if c != 1000 && c != 1001 && c != 1005 => Some(c.to_string()),
            _ => None,
        };
        let other = span::Other {
            ids: &s.ids,
            name: &name,
            start_ns: s.start_ns,
            end_ns,
            error: error.as_deref().map(|_| ""),
        };
        let server = self.call.server_address.clone();
        let port = self.call.server_port;
        let totals = s.totals;
        let built = span::build_other(&other, None, &[], |a| {
            a.str("gen_ai.provider.name", Some(provider_name(&s.api)));
            a.str("gen_ai.request.model", s.model.as_deref());
            a.str("gen_ai.realtime_session.id", s.session_id.as_deref());
            for (k, v) in totals.attributes() {
                a.int(k, Some(v));
            }
            a.int("tollgate.realtime.responses", Some(s.responses));
            if s.refused > 0 {
                a.int("tollgate.realtime.refused", Some(s.refused));
            }
            if s.unread > 0 {
                a.int("tollgate.realtime.unread", Some(s.unread));
            }
            if partial {
                a.bool("tollgate.usage.partial", true);
            }
            a.int("websocket.close.code", s.close_code.map(u64::from));
            a.str("error.type", error.as_deref());
            a.str(
                "server.address",
                Some(server.as_str()).filter(|v| !v.is_empty()),
            );
            a.int("server.port", port.map(u64::from));
            a.str("network.protocol.name", Some("websocket"));
            a.str("tollgate.tenant", Some(&s.tenant));
            a.double(
                "tollgate.cost.usd",
                (s.cost_usd > 0.0).then_some(s.cost_usd),
            );
        });
        host.export_span(built);
    }
}

/// Whether a budget of `tenant` has nothing left for `model` (local ledger only).
fn spent<H: Host>(host: &mut H, cfg: &Config, tenant: &str, model: Option<&str>) -> bool {
    let Some(b) = cfg.budgets.as_ref() else {
        return false;
    };
    if b.backend != crate::budget::BackendKind::Local || !crate::budget::may_deny(b, tenant) {
        return false;
    }
    let specs = crate::budget::counters(b, tenant, model);
    let clock = Clock {
        now_s: host.now_ns() / 1_000_000_000,
        ttl_s: b.reservation_ttl_s,
    };
    let ledger = Ledger {
        store: host.store(),
        holder: 0,
        max_keys: b.max_tenants,
    };
    specs
        .iter()
        .any(|spec| ledger.peek(spec, &clock).remaining_tokens == Some(0))
}

impl Session {
    fn read_client<H: Host>(&mut self, host: &mut H, chunk: &[u8]) {
        let Some(d) = self.client.as_mut() else {
            return;
        };
        let api = self.api.clone();
        let mut model = None;
        d.push(chunk, &mut |ev| {
            if let WsEvent::Text(text) = ev {
                match &api {
                    Api::OpenAi { .. } => {
                        if let Some(ClientEvent::SessionUpdate { model: Some(m) }) =
                            openai_realtime::client_event(text)
                        {
                            model = Some(m);
                        }
                    }
                    Api::Gemini(_) => {
                        if let Some(ClientMessage::Setup { model: Some(m) }) =
                            gemini_live::client_message(text)
                        {
                            model = Some(gemini_live::model_name(&m).to_owned());
                        }
                    }
                }
            }
        });
        if model.is_some() && self.model.is_none() {
            self.model = model;
        }
        let _ = host;
    }

    /// With refusals possible: the client bytes to forward, whole frames only (an unfinished frame is held
    /// until its end); a refused message is replaced by a ping.
    fn gate<H: Host>(&mut self, host: &mut H, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(buf.len());
        let mut at = 0usize;
        while let Some(rest) = buf.get(at..).filter(|r| !r.is_empty()) {
            let Some(e) = frame_extent(rest) else { break };
            let Ok(total) = usize::try_from(e.total_len) else {
                break;
            };
            let Some(frame) = rest.get(..total) else {
                break;
            };
            let refuse = e.fin
                && e.opcode == 1
                && !e.rsv1
                && frame
                    .get(e.header_len..)
                    .map(|p| unmask(p, e.mask))
                    .and_then(|p| String::from_utf8(p).ok())
                    .is_some_and(|text| self.asks_for_response(&text));
            if refuse {
                self.refuse(host);
                let mask = random_bytes::<H, 4>(host);
                out.extend(encode_frame(Opcode::Ping, b"tollgate", Some(mask)));
            } else {
                out.extend_from_slice(frame);
            }
            at += total;
        }
        let rest = buf.get(at..).unwrap_or_default();
        // Hold a small unfinished frame (it may be a `response.create`); a large one is audio or content
        // and passes as it comes (counted: a refusal could not stop it).
        let small = frame_extent(rest).is_none_or(|e| e.total_len <= 64 * 1024);
        if small {
            self.held = rest.to_vec();
        } else {
            out.extend_from_slice(rest);
            self.unread += 1;
            host.count(Counter::RealtimeUnread, 1);
        }
        out
    }

    fn asks_for_response(&self, text: &str) -> bool {
        match &self.api {
            Api::OpenAi { .. } => matches!(
                openai_realtime::client_event(text),
                Some(ClientEvent::ResponseCreate { .. } | ClientEvent::Ambiguous)
            ),
            Api::Gemini(_) => matches!(
                gemini_live::client_message(text),
                Some(
                    ClientMessage::ClientContent {
                        turn_complete: true
                    } | ClientMessage::Ambiguous
                )
            ),
        }
    }

    fn refuse<H: Host>(&mut self, host: &mut H) {
        self.refused += 1;
        host.count(Counter::RealtimeRefused, 1);
        let message = "response refused by the gateway: the tenant's token budget is spent";
        let answer = match &self.api {
            Api::OpenAi { .. } => {
                let id = format!("event_tollgate_{}", host.random() % 1_000_000_000);
                let event = openai_realtime::error_event(
                    &id,
                    "rate_limit_error",
                    "token_budget_exceeded",
                    message,
                    None,
                );
                encode_frame(Opcode::Text, event.as_bytes(), None)
            }
            Api::Gemini(_) => gemini_live::refusal_close(message),
        };
        self.inject.extend(answer);
    }

    fn read_server<H: Host>(&mut self, host: &mut H, cfg: &Config, call: &Call, chunk: &[u8]) {
        let Some(d) = self.server.as_mut() else {
            return;
        };
        let mut events: Vec<ServerEvent> = Vec::new();
        let mut gemini: Vec<gemini_live::ServerMessage> = Vec::new();
        let mut close = None;
        let api = self.api.clone();
        d.push(chunk, &mut |ev| match ev {
            WsEvent::Text(text) => match &api {
                Api::OpenAi { .. } => {
                    if let Some(e) = openai_realtime::server_event(text) {
                        if !matches!(e, ServerEvent::Other(_)) {
                            events.push(e);
                        }
                    }
                }
                Api::Gemini(b) => {
                    if let Some(m) = gemini_live::server_message(text, *b) {
                        gemini.push(m);
                    }
                }
            },
            // Gemini sends its JSON messages as binary frames too.
            WsEvent::Binary(bytes) => {
                if let (Api::Gemini(b), Ok(text)) = (&api, std::str::from_utf8(bytes)) {
                    if let Some(m) = gemini_live::server_message(text, *b) {
                        gemini.push(m);
                    }
                }
            }
            WsEvent::Close { code, .. } => close = Some(code),
            WsEvent::Ping(_) | WsEvent::Pong(_) => {}
        });
        if let Some(c) = close {
            self.close_code = c;
        }
        let now = host.now_ns();
        for e in events {
            match e {
                ServerEvent::Session { id, model } => {
                    if id.is_some() {
                        self.session_id = id;
                    }
                    if model.is_some() {
                        self.model = model;
                    }
                }
                ServerEvent::ResponseCreated { id } => {
                    self.current = Some(Response { id, start_ns: now });
                }
                ServerEvent::ResponseDone(done) => {
                    let r = self.current.take().unwrap_or(Response {
                        id: None,
                        start_ns: now,
                    });
                    let usage = done.usage.unwrap_or_default();
                    let finish = done.finish_reason().map(str::to_owned);
                    let error = done.error_type().map(str::to_owned);
                    let id = done.id.clone().or(r.id);
                    self.response(host, cfg, call, id, r.start_ns, usage, finish, error);
                }
                ServerEvent::Error(_) | ServerEvent::Other(_) => {}
            }
        }
        for m in gemini {
            if m.session_id.is_some() {
                self.session_id = m.session_id.clone();
            }
            if m.content && self.turn_start_ns.is_none() {
                self.turn_start_ns = Some(now);
                self.current = Some(Response::default());
            }
            // Usage arrives once per turn, with or just before its end.
            if let Some(u) = m.usage {
                let start = self.turn_start_ns.take().unwrap_or(now);
                self.current = None;
                let finish = m.finish_reason().map(str::to_owned).or(Some("stop".into()));
                self.response(host, cfg, call, None, start, u, finish, None);
            } else if m.turn_complete {
                self.turn_start_ns = None;
            }
        }
        let _ = host;
    }

    /// One model response is over: its span, its usage on the totals and in the budgets.
    #[allow(clippy::too_many_arguments)]
    fn response<H: Host>(
        &mut self,
        host: &mut H,
        cfg: &Config,
        call: &Call,
        id: Option<String>,
        start_ns: u64,
        usage: ModalityUsage,
        finish: Option<String>,
        error: Option<String>,
    ) {
        self.responses += 1;
        self.totals.add(&usage);
        host.count(Counter::RealtimeResponses, 1);
        host.count(Counter::TokensInput, usage.input.unwrap_or(0));
        host.count(Counter::TokensOutput, usage.output.unwrap_or(0));
        // The price of the response, as a model call's.
        let mut priced = Call::default();
        priced.response.model.clone_from(&self.model);
        priced.response.usage = usage.usage();
        let cost = crate::pricing::call_cost(&cfg.pricing, &priced);
        if let Some(c) = cost {
            self.cost_usd += c;
        }
        if let Some(b) = cfg.budgets.as_ref() {
            if b.backend == crate::budget::BackendKind::Local {
                let specs = crate::budget::counters(b, &self.tenant, self.model.as_deref());
                let clock = Clock {
                    now_s: host.now_ns() / 1_000_000_000,
                    ttl_s: b.reservation_ttl_s,
                };
                let u = usage.usage();
                let actual = Amount {
                    tokens: u.total(),
                    input: u.input.unwrap_or(0),
                    output: u.output.unwrap_or(0),
                    cost_pico: cost.map_or(0, |c| (c * 1e12) as u64),
                };
                let res = ledger::track_only(&specs, &clock);
                let ledger = Ledger {
                    store: host.store(),
                    holder: 0,
                    max_keys: b.max_tenants,
                };
                let failed = ledger.commit(&res, actual, &clock).is_err();
                if failed {
                    host.count(Counter::BudgetErrors, 1);
                }
            }
            self.spent = spent(host, cfg, &self.tenant, self.model.as_deref());
        }
        let end_ns = host.now_ns();
        if cfg.otlp.as_ref().is_some_and(|o| o.metrics) {
            // The GenAI client metrics of the response, with the attributes a model call's carry.
            let model = self.model.clone();
            let port = call.server_port.map(i64::from);
            let mut base: Vec<Attr<'_>> = vec![
                ("gen_ai.operation.name", ValRef::Str("realtime_inference")),
                (
                    "gen_ai.provider.name",
                    ValRef::Str(provider_name(&self.api)),
                ),
            ];
            if let Some(m) = model.as_deref() {
                base.push(("gen_ai.request.model", ValRef::Str(m)));
            }
            if !call.server_address.is_empty() {
                base.push(("server.address", ValRef::Str(&call.server_address)));
                if let Some(p) = port {
                    base.push(("server.port", ValRef::Int(p)));
                }
            }
            base.push(("tollgate.tenant", ValRef::Str(&self.tenant)));
            if let Some(e) = error.as_deref() {
                base.push(("error.type", ValRef::Str(e)));
            }
            for (kind, v) in [("input", usage.input), ("output", usage.output)] {
                if let Some(v) = v {
                    let mut attrs = base.clone();
                    attrs.push(("gen_ai.token.type", ValRef::Str(kind)));
                    host.record_metric(Instrument::TokenUsage, &attrs, v as f64);
                }
            }
            let secs = end_ns.saturating_sub(start_ns) as f64 / 1e9;
            host.record_metric(Instrument::OperationDuration, &base, secs);
            if let Some(c) = cost {
                host.record_metric(Instrument::Cost, &base, c);
            }
        }
        if cfg.otlp.is_none() || !self.ids.sampled {
            return;
        }
        let mut ids = self.ids.clone();
        ids.parent_span_id = Some(self.ids.span_id);
        ids.span_id = random_bytes::<H, 8>(host);
        let model = self.model.clone().unwrap_or_default();
        let name = if model.is_empty() {
            "realtime_inference".to_owned()
        } else {
            format!("realtime_inference {model}")
        };
        let other = span::Other {
            ids: &ids,
            name: &name,
            start_ns,
            end_ns,
            error: error.as_deref().map(|_| ""),
        };
        let server = call.server_address.clone();
        let built = span::build_other(&other, None, &[], |a| {
            a.str("gen_ai.operation.name", Some("realtime_inference"));
            a.str("gen_ai.provider.name", Some(provider_name(&self.api)));
            a.str("gen_ai.request.model", self.model.as_deref());
            a.str("gen_ai.response.id", id.as_deref());
            a.str("gen_ai.realtime_session.id", self.session_id.as_deref());
            if let Some(f) = finish.as_deref() {
                a.strs("gen_ai.response.finish_reasons", &[f]);
            }
            for (k, v) in usage.attributes() {
                a.int(k, Some(v));
            }
            a.str("error.type", error.as_deref());
            a.str(
                "server.address",
                Some(server.as_str()).filter(|v| !v.is_empty()),
            );
            a.int("server.port", call.server_port.map(u64::from));
            a.str("tollgate.tenant", Some(&self.tenant));
            a.double("tollgate.cost.usd", cost);
        });
        host.export_span(built);
    }
}
