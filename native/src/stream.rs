//! One HTTP stream: the module's per-stream object and what each stream hook does with it.
//!
//! Envoy runs a stream's hooks on one worker thread, one at a time, so this state needs no lock. It is
//! created in `on_http_filter_new` and freed in `on_http_filter_destroy`, which in Envoy 1.40 runs after
//! the stream is gone (end-of-exchange work belongs in `stream_complete`).

use crate::abi::{body_status, headers_status, trailers_status};
use crate::core::{Action, Exchange};
use crate::envoy::Stream;
use crate::grpc;
use crate::host::{Dir, NativeHost};
use crate::plugin::Plugin;

pub struct StreamState {
    plugin: *const Plugin,
    /// The worker running the stream (its telemetry lane).
    pub worker: u32,
    /// A hook panicked: the stream passes through untouched from then on (fail open).
    pub faulted: bool,
    /// A request hook returned a Stop status and nothing resumed the request yet: a fault in a later,
    /// asynchronous hook must resume it, or the request would hang.
    pub request_paused: bool,
    /// The stream's gRPC call in flight (the rate-limit admission), and its answer so far.
    pub call: Option<(u64, grpc::Answer)>,
    /// The core's state machine for this exchange: every decision on the request is its own.
    pub exchange: Option<Exchange>,
    #[cfg(feature = "test-probes")]
    pub probe: crate::probes::Probe,
}

impl StreamState {
    pub fn new(plugin: *const Plugin, worker: u32) -> StreamState {
        StreamState {
            plugin,
            worker,
            faulted: false,
            request_paused: false,
            call: None,
            exchange: None,
            #[cfg(feature = "test-probes")]
            probe: crate::probes::Probe::default(),
        }
    }

    /// The stream's filter config. Its lifetime is not tied to `&self`: the config outlives every stream made
    /// from it, so the stream's state may change while the config is borrowed.
    pub fn plugin<'p>(&self) -> &'p Plugin {
        // SAFETY: Envoy keeps the filter config alive while any stream created from it exists
        // (docs/dynamic-modules-abi.md §7), and the config object is only read through this reference, whose
        // users all live within one of this stream's hooks.
        unsafe { &*self.plugin }
    }

    /// The host calls for this hook. None only if the config has no lane (never: it has one per worker).
    pub fn host<'p>(&self, stream: Stream) -> Option<NativeHost<'p>> {
        let plugin = self.plugin();
        Some(NativeHost {
            stream,
            plugin,
            lane: plugin.exporter.lane(self.worker)?,
            worker: self.worker,
            ending: false,
            started: None,
        })
    }

    /// Run one of the exchange's callbacks with this hook's host. None when there is no host (never).
    fn drive<R>(
        &mut self,
        stream: Stream,
        f: impl FnOnce(&mut Exchange, &mut NativeHost<'_>) -> R,
    ) -> Option<R> {
        // A probed stream (test module only) exercises the host's plumbing alone.
        #[cfg(feature = "test-probes")]
        if self.probe.active {
            return None;
        }
        let mut host = self.host(stream)?;
        let plugin = self.plugin();
        let exchange = self
            .exchange
            .get_or_insert_with(|| Exchange::new(plugin.config.clone()));
        let r = f(exchange, &mut host);
        if let Some(id) = host.started {
            // The answer comes back piece by piece to this stream's hooks (`call_part`, `call_done`).
            self.call = Some((id, grpc::Answer::default()));
        }
        Some(r)
    }

    /// Drop everything a request holds after a fault. Its own destructors run under a guard too (they are
    /// plain memory, but nothing may unwind into Envoy).
    pub fn drop_request_state(&mut self) {
        let call = self.call.take();
        let exchange = self.exchange.take();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            drop(call);
            drop(exchange);
        }));
        #[cfg(feature = "test-probes")]
        {
            let probe = std::mem::take(&mut self.probe);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(probe)));
        }
    }
}

// What each hook does: hand it to the exchange, and map its answer to the hook's status.

fn paused(a: Option<Action>) -> bool {
    a == Some(Action::Pause)
}

pub fn request_headers(s: &mut StreamState, stream: Stream, end_of_stream: bool) -> u32 {
    #[cfg(feature = "test-probes")]
    if let Some(r) = crate::probes::request_headers(s, stream, end_of_stream) {
        return r;
    }
    let a = s.drive(stream, |x, h| x.on_request_headers(h, end_of_stream));
    if paused(a) {
        s.request_paused = true;
        headers_status::STOP_ITERATION
    } else {
        headers_status::CONTINUE
    }
}

pub fn request_body(s: &mut StreamState, stream: Stream, end_of_stream: bool) -> u32 {
    #[cfg(feature = "test-probes")]
    if let Some(r) = crate::probes::request_body(s, stream, end_of_stream) {
        return r;
    }
    let a = s.drive(stream, |x, h| {
        let size = h.body_size(Dir::Request);
        x.on_request_body(h, size, end_of_stream)
    });
    if paused(a) {
        s.request_paused = true;
        body_status::STOP_ITERATION_AND_BUFFER
    } else {
        s.request_paused = false;
        body_status::CONTINUE
    }
}

pub fn request_trailers(_s: &mut StreamState, _stream: Stream) -> u32 {
    trailers_status::CONTINUE
}

pub fn response_headers(s: &mut StreamState, stream: Stream, end_of_stream: bool) -> u32 {
    #[cfg(feature = "test-probes")]
    if let Some(r) = crate::probes::response_headers(s, stream, end_of_stream) {
        return r;
    }
    let a = s.drive(stream, |x, h| x.on_response_headers(h, end_of_stream));
    if paused(a) {
        headers_status::STOP_ITERATION
    } else {
        headers_status::CONTINUE
    }
}

pub fn response_body(s: &mut StreamState, stream: Stream, end_of_stream: bool) -> u32 {
    #[cfg(feature = "test-probes")]
    if let Some(r) = crate::probes::response_body(s, stream, end_of_stream) {
        return r;
    }
    let a = s.drive(stream, |x, h| {
        let size = h.body_size(Dir::Response);
        x.on_response_body(h, size, end_of_stream)
    });
    if paused(a) {
        body_status::STOP_ITERATION_AND_BUFFER
    } else {
        body_status::CONTINUE
    }
}

pub fn response_trailers(_s: &mut StreamState, _stream: Stream) -> u32 {
    trailers_status::CONTINUE
}

/// The exchange is over (normally or not): the core's `on_log` (commit budgets, build and queue the span,
/// count). Runs before Envoy's access logs and before `destroy`.
pub fn stream_complete(s: &mut StreamState, stream: Stream) {
    #[cfg(feature = "test-probes")]
    crate::probes::stream_complete(s, stream);
    if s.exchange.is_none() {
        return;
    }
    s.drive(stream, |x, h| {
        h.ending = true;
        x.on_log(h);
    });
}

/// A piece of the answer to the stream's gRPC call arrived (headers, data or trailers).
pub fn call_part(s: &mut StreamState, id: u64, f: impl FnOnce(&mut grpc::Answer)) {
    if let Some((_, answer)) = s.call.as_mut().filter(|(i, _)| *i == id) {
        f(answer);
    }
}

/// The stream's gRPC call ended: `reset` carries the reset reason when it did not complete. The answer
/// (status, message) goes to the exchange, which resumes or refuses the paused request.
pub fn call_done(s: &mut StreamState, stream: Stream, id: u64, reset: Option<u32>) {
    let Some((_, mut answer)) = s.call.take_if(|(i, _)| *i == id) else {
        return;
    };
    let (status, message) = match reset {
        Some(reason) => (grpc::Answer::reset(reason), Vec::new()),
        None => answer.complete(),
    };
    #[cfg(feature = "test-probes")]
    crate::probes::grpc_answer(s, stream, status, &message);
    // The exchange resumes or refuses the request it paused; either way it is no longer paused by us.
    if s.exchange.is_some() {
        s.drive(stream, |x, h| x.on_grpc_answer(h, id, status, &message));
        s.request_paused = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::{body_type, header_type};
    use crate::core::Counter;
    use crate::envoy::fake;
    use crate::stats::{Stat, Totals};

    fn plugin(json: &str) -> Box<Plugin> {
        Box::new(Plugin::new(fake::config(), b"tollgate", json.as_bytes(), 2, 0).unwrap())
    }

    fn request(body: &[u8]) {
        for (k, v) in [
            (":method", "POST"),
            (":authority", "api.openai.com"),
            (":path", "/v1/chat/completions"),
            ("content-type", "application/json"),
        ] {
            fake::set_header(header_type::REQUEST_HEADER, k, v.as_bytes());
        }
        let len = body.len().to_string();
        fake::set_header(
            header_type::REQUEST_HEADER,
            "content-length",
            len.as_bytes(),
        );
    }

    fn body_of(ty: u32) -> Vec<u8> {
        let mut out = Vec::new();
        fake::stream(0).for_each_body_slice(ty, |b| out.extend_from_slice(b));
        out
    }

    #[test]
    fn an_over_budget_request_is_answered_429_by_the_exchange() {
        let p = plugin(r#"{"budgets":[{"tenant":"*","window":"1h","tokens":5}]}"#);
        let mut s = StreamState::new(&*p, 0);
        let st = fake::stream(0);
        let body =
            br#"{"model":"gpt-4o","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#;
        request(body);
        // Held while the body decides.
        assert_eq!(
            request_headers(&mut s, st, false),
            headers_status::STOP_ITERATION
        );
        fake::set_body(body_type::RECEIVED_REQUEST, body);
        assert_eq!(
            request_body(&mut s, st, true),
            body_status::STOP_ITERATION_AND_BUFFER
        );
        let replies = fake::replies();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].0, 429);
        assert!(String::from_utf8_lossy(&replies[0].2).contains("token_budget_exceeded"));
        assert_eq!(fake::continued(), 0, "the refused request never continues");
    }

    #[test]
    fn a_stream_gets_include_usage_and_its_usage_chunk_is_hidden_then_counted() {
        let p = plugin(r#"{"otlp":{"cluster":"otel"}}"#);
        let mut s = StreamState::new(&*p, 0);
        let st = fake::stream(0);
        let body =
            br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        request(body);
        let _ = request_headers(&mut s, st, false);
        // This hook's chunk only: nothing buffered (Envoy refuses to drain a body that does not exist).
        fake::set_body(body_type::RECEIVED_REQUEST, body);
        assert_eq!(request_body(&mut s, st, true), body_status::CONTINUE);
        let sent = body_of(body_type::RECEIVED_REQUEST);
        assert!(
            String::from_utf8_lossy(&sent).contains("include_usage"),
            "{}",
            String::from_utf8_lossy(&sent)
        );
        fake::set_header(header_type::RESPONSE_HEADER, ":status", b"200");
        fake::set_header(
            header_type::RESPONSE_HEADER,
            "content-type",
            b"text/event-stream",
        );
        assert_eq!(
            response_headers(&mut s, st, false),
            headers_status::CONTINUE
        );
        let events = concat!(
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1,\"total_tokens\":8}}\n\n",
            "data: [DONE]\n\n",
        );
        fake::set_body(body_type::RECEIVED_RESPONSE, events.as_bytes());
        assert_eq!(response_body(&mut s, st, true), body_status::CONTINUE);
        let client = String::from_utf8_lossy(&body_of(body_type::RECEIVED_RESPONSE)).into_owned();
        assert!(
            client.contains("\"Hi\"") && client.contains("[DONE]"),
            "{client}"
        );
        assert!(
            !client.contains("prompt_tokens"),
            "the usage-only chunk is hidden: {client}"
        );
        stream_complete(&mut s, st);
        let lane = p.exporter.lane(0).unwrap();
        assert_eq!(lane.queued(), 1, "one span queued for export");
        let mut t = Totals::new(0);
        lane.pending.drain_into(&mut t);
        assert_eq!(t.counters[Stat::Exchange(Counter::Calls).index()], 1);
        assert_eq!(t.counters[Stat::Exchange(Counter::TokensInput).index()], 7);
        assert_eq!(t.counters[Stat::Exchange(Counter::TokensOutput).index()], 1);
    }
}
