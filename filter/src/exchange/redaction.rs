//! Redaction and content capture for one exchange. The exchange calls these at fixed points of the
//! request-body pipeline (block check, egress rewrite), the response (output redaction) and the end of the
//! exchange (evidence for the span, counters, attribute scrubbing).

use super::host::{Counter, Host, Map};
use crate::call::Call;
use crate::call::Findings;
use crate::call::OutputCapture;
use crate::capture;
use crate::config::Config;
use crate::redact::{security_flags, FieldSelector, SseOutputRedactor};
use crate::reply::{Denial, Refusal};
use crate::stream::Framing;

/// User text gathered for the prompt-injection heuristics is capped (the flags need no more).
const MAX_FLAG_TEXT: usize = 256 * 1024;

#[derive(Default)]
pub struct Redaction {
    active: bool,
    input: Option<capture::Input>,
    request_findings: Findings,
    flags: Vec<&'static str>,
    egress_body: Option<Vec<u8>>,
    sse: Option<SseOutputRedactor>,
    json_output: bool,
    output_findings: Findings,
    /// Output was redacted on the data path (its findings are the output's; capture adds none).
    output_redacted: bool,
    /// The request was refused locally; the reply is ours and is not edited.
    blocked: bool,
}

/// Whether redaction or capture does any work for this configuration.
pub fn enabled(cfg: &Config) -> bool {
    cfg.redaction.configured || cfg.capture_content
}

/// The request body may be rewritten (then the headers callback removes `content-length`).
pub fn may_rewrite_request(cfg: &Config) -> bool {
    cfg.redaction.egress
}

impl Redaction {
    /// Request headers of a detected call: output redaction can only edit identity-encoded responses,
    /// so ask the provider for one.
    pub fn on_request_headers<H: Host>(&mut self, host: &mut H, cfg: &Config) {
        if cfg.redaction.output {
            host.remove_header(Map::RequestHeaders, "accept-encoding");
        }
    }

    /// The whole request body, after the provider parsed it. Scans the user text once (findings, egress
    /// rewrite, flags), starts content capture, and answers the request locally when a `block` detector
    /// matched: returns true when it did (the caller returns `Action::Pause`).
    pub fn on_request_body<H: Host>(
        &mut self,
        host: &mut H,
        cfg: &Config,
        body: &[u8],
        call: &mut Call,
    ) -> bool {
        if !enabled(cfg) {
            return false;
        }
        self.active = true;
        let settings = &cfg.redaction;
        let r = settings.redactor();
        if cfg.capture_content {
            self.input = call
                .route
                .as_ref()
                .and_then(|r| crate::providers::capture_input(r, body));
            call.response.content = OutputCapture::new(cfg.max_content_bytes);
        }
        // One walk of the body: findings, the egress rewrite, and the user text for the flags.
        let mut text = String::new();
        let mut gather = |t: &str| {
            if text.len() < MAX_FLAG_TEXT {
                text.push_str(t);
                text.push('\n');
            }
        };
        if let Some((rewritten, f)) =
            r.redact_json_strings_observed(body, FieldSelector::REQUEST, &mut gather)
        {
            self.request_findings = f;
            if settings.egress {
                self.egress_body = Some(rewritten);
            }
        }
        self.flags = security_flags(&text);
        let blocked = self.request_findings.blocked_by(&settings.block);
        if blocked.is_empty() {
            return false;
        }
        // Name the detector types, never the matched text.
        let msg = format!(
            "request blocked by the gateway's data protection policy: it contains {}",
            blocked.join(", ")
        );
        let Some(route) = call.route.as_ref() else {
            return false;
        };
        let reply = crate::providers::reply(route, &Denial::new(Refusal::ContentBlocked, msg));
        host.count(Counter::RedactionBlocked, 1);
        self.blocked = true;
        call.http_status = Some(reply.status);
        call.response.error_type = Some(Refusal::ContentBlocked.code().to_owned());
        host.send_reply(&reply)
    }

    /// The egress-redacted body, when `egress` is on and something was redacted.
    pub fn take_egress_body(&mut self) -> Option<Vec<u8>> {
        self.egress_body.take()
    }

    /// Response headers: decide how output is redacted. Returns true when `content-length` must go.
    pub fn on_response_headers<H: Host>(
        &mut self,
        host: &mut H,
        cfg: &Config,
        framing: Framing,
        identity: bool,
    ) -> bool {
        if !self.active || self.blocked || !cfg.redaction.output {
            return false;
        }
        if !identity {
            host.count(Counter::RedactionOutputUnsupported, 1);
            return false;
        }
        match framing {
            Framing::Sse => {
                self.sse = Some(SseOutputRedactor::new(cfg.redaction.hold_back));
                self.output_redacted = true;
                true
            }
            Framing::Whole => {
                self.json_output = true;
                self.output_redacted = true;
                true
            }
            Framing::Ndjson | Framing::JsonArray | Framing::AwsEventStream => {
                host.count(Counter::RedactionOutputUnsupported, 1);
                false
            }
        }
    }

    /// A whole JSON response is buffered so it can be redacted as one document.
    pub fn buffers_response(&self) -> bool {
        self.json_output
    }

    /// Redact a whole JSON response body; None when nothing changed.
    pub fn redact_json_response(&mut self, cfg: &Config, body: &[u8]) -> Option<Vec<u8>> {
        let (out, f) = cfg
            .redaction
            .redactor()
            .redact_json_strings(body, FieldSelector::RESPONSE)?;
        self.output_findings.merge(&f);
        Some(out)
    }

    /// Redact client-bound stream bytes (after any other stream edit). None when output redaction is off.
    pub fn redact_stream(&mut self, cfg: &Config, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        let sse = self.sse.as_mut()?;
        let r = cfg.redaction.redactor();
        let mut out = sse.push(r, chunk);
        if end {
            out.extend(sse.finish(r));
        }
        Some(out)
    }

    /// `on_log`: put the evidence on the call and count findings per detector.
    pub fn finish<H: Host>(&mut self, host: &mut H, cfg: &Config, call: &mut Call) {
        if !self.active {
            return;
        }
        let mut findings = std::mem::take(&mut self.request_findings);
        if let Some(sse) = &self.sse {
            findings.merge(&sse.findings());
        }
        findings.merge(&self.output_findings);
        let ev = &mut call.evidence;
        if cfg.capture_content {
            let rendered = capture::render(
                self.input.as_ref(),
                &call.response,
                cfg.redaction.redactor(),
                cfg.max_content_bytes,
            );
            if !self.output_redacted {
                findings.merge(&rendered.output_findings);
            }
            ev.content = rendered.attributes;
            ev.truncated = rendered.truncated;
        }
        for (detector, n) in findings.per_type() {
            host.count_detection(detector, u64::from(n));
        }
        ev.active = true;
        ev.findings = findings;
        ev.flags = std::mem::take(&mut self.flags);
    }

    /// The redactor for the span's other user-text attributes (applied as the span is built), when on.
    pub fn scrubber<'c>(&self, cfg: &'c Config) -> Option<&'c crate::redact::Redactor> {
        self.active.then(|| cfg.redaction.redactor())
    }
}
