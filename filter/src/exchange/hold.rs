//! Before a request is forwarded: whether tollgate holds its headers until the decisions on its body are
//! made, how it reads the body, and what it does with a body it cannot read. Pure: the exchange supplies
//! the facts at each callback and the host carries out the answer.
//!
//! What Envoy does, which this rests on (Envoy 1.40 and the proxy-wasm-cpp-host it embeds):
//! - `Pause` from the request-headers callback keeps the headers and still hands the body to the plugin
//!   (`StopIteration`) only when the Wasm filter's `config` sets `allow_on_headers_stop_iteration: true`.
//!   Without it proxy-wasm-cpp-host turns it into `StopAllIterationAndWatermark` (src/context.cc,
//!   `convertVmCallResultToFilterHeadersStatus`): Envoy then buffers the body under flow control and calls
//!   the plugin no more until the plugin resumes the stream. A plugin cannot read the setting (the
//!   properties it can read are listed in source/extensions/filters/common/expr/context.h and
//!   source/extensions/common/wasm/context.cc `Context::findValue`), so tollgate learns it from the first
//!   held requests ([`Support`], [`Probes`]). A native dynamic module's headers callback holds headers and
//!   keeps receiving the body: that host answers `Support::Works` from the start.
//! - `Pause` from a body callback is `StopIterationAndBuffer`: Envoy keeps the body in the stream's buffer,
//!   limited by the listener's `per_connection_buffer_limit_bytes` (1 MiB by default) or the route's
//!   `request_body_buffer_limit`. The Wasm filter adds each new chunk to what it already buffers before it
//!   calls the plugin (source/extensions/common/wasm/context.cc, `Context::decodeData`), and a buffer past the
//!   limit makes Envoy answer 413 at once (`ActiveStreamDecoderFilter::requestDataTooLarge`,
//!   source/common/http/filter_manager.cc). The plugin never gets a say about the chunk that overflows.
//!   So tollgate holds a body only when its declared length fits (`max_request_body`, which must not
//!   exceed Envoy's limit), and never holds a body of unknown length past its first chunk.
//! - `Continue` from a body callback while the headers are held releases both at once
//!   (`ActiveStreamFilterBase::commonHandleAfterDataCallback`): that is how a held request is forwarded.

use crate::config::{Config, OversizedPolicy, SignedPolicy};

/// What the request headers say about the body that follows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Framing {
    /// The headers end the request: no body follows.
    pub end_of_stream: bool,
    /// An HTTP upgrade (WebSocket) or CONNECT: its body flows only after the upstream has answered, so
    /// holding its headers would hang the handshake.
    pub upgrade: bool,
    /// `content-length`, when present and valid.
    pub content_length: Option<u64>,
}

/// How tollgate reads a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// No body follows the headers.
    NoBody,
    /// Its declared length fits: held in Envoy's buffer until complete, then read (and maybe rewritten).
    Whole,
    /// No declared length: read when it arrives whole in its first chunk; otherwise forwarded uninspected.
    Undeclared,
    /// Declared larger than `max_request_body`: passes uninspected.
    TooLarge(u64),
}

/// `content-length` as Envoy validated it (digits only).
pub fn content_length(value: Option<&str>) -> Option<u64> {
    let v = value?.as_bytes().trim_ascii();
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// How the body of a request framed as `f` is read, when tollgate holds at most `max` bytes of it.
pub fn read(f: &Framing, max: usize) -> Read {
    if f.end_of_stream {
        return Read::NoBody;
    }
    match f.content_length {
        Some(0) => Read::Whole,
        Some(n) if n <= u64::try_from(max).unwrap_or(u64::MAX) => Read::Whole,
        Some(n) => Read::TooLarge(n),
        None => Read::Undeclared,
    }
}

/// The decisions on a request body that can refuse it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    /// A budget rule covers the tenant and can deny (not dry-run only).
    pub budget: bool,
    /// `redaction.block` detectors are configured.
    pub block: bool,
    /// Egress redaction is on.
    pub egress: bool,
}

impl Decisions {
    /// Some decision needs the body: what an uninspected body escapes.
    pub fn any(&self) -> bool {
        self.budget || self.block || self.egress
    }
}

/// Whether a decision on the body may refuse the request, so that its headers must wait for it.
/// `compressed`: its `content-encoding` is not identity (egress redaction then refuses what it would have
/// rewritten); `signed_body`: a signature covers the body (see `crate::codec::sigv4`).
pub fn may_refuse(
    cfg: &Config,
    d: &Decisions,
    read: Read,
    compressed: bool,
    signed_body: bool,
) -> bool {
    let egress_refuses =
        d.egress && (compressed || signed_body && cfg.signed_requests == SignedPolicy::Refuse);
    let undeclared_refused =
        cfg.oversized_requests == OversizedPolicy::Refuse && d.any() && read == Read::Undeclared;
    d.budget || d.block || egress_refuses || undeclared_refused
}

/// What Envoy does with headers tollgate pauses (`allow_on_headers_stop_iteration`), learned per plugin
/// configuration from the first held requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Support {
    /// No held request has shown it yet.
    #[default]
    Unknown,
    /// A held request's body reached the plugin: Envoy holds headers and delivers bodies.
    Works,
    /// A held request's body reached Envoy but not the plugin: the setting is missing. Requests are then
    /// forwarded before the body decisions (a refusal resets the upstream stream) and counted.
    Unavailable,
}

/// Whether tollgate holds this request's headers until its body decisions are made. Never for a request
/// without a body, an upgrade, or a body too large to hold (those are decided from the headers alone).
pub fn hold(may_refuse: bool, read: Read, upgrade: bool, support: Support) -> bool {
    may_refuse
        && !upgrade
        && matches!(read, Read::Whole | Read::Undeclared)
        && support != Support::Unavailable
}

/// What a request-body callback does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep the chunk in Envoy's buffer (`Pause`) and wait for the rest.
    Wait,
    /// The body is complete and buffered: read it, decide, then forward or refuse.
    Inspect,
    /// Forward it uninspected (too large to hold, or of undeclared length and not whole in its first
    /// chunk, where holding more could overflow Envoy's buffer).
    Pass,
}

/// The step for a body callback with `size` bytes (buffered so far plus this chunk), `first` for the first
/// callback of the request.
pub fn body_step(read: Read, first: bool, size: usize, end_of_stream: bool, max: usize) -> Step {
    match read {
        // Declared and fitting; a body longer than declared cannot pass Envoy's codecs, but never hold more.
        Read::Whole if size > max => Step::Pass,
        Read::Whole if end_of_stream => Step::Inspect,
        Read::Whole => Step::Wait,
        Read::Undeclared if first && end_of_stream && size <= max => Step::Inspect,
        Read::Undeclared | Read::NoBody | Read::TooLarge(_) => Step::Pass,
    }
}

/// How long the tick waits on a held request whose received bytes Envoy does not report before it
/// releases it anyway.
pub const PROBE_GIVE_UP_MS: u64 = 2_000;

/// The tick's verdict on a held request that has had no body callback yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing to conclude yet: the client has not sent body bytes.
    Wait,
    /// Body bytes reached Envoy and not the plugin: the setting is missing. Release every held request.
    Unavailable,
    /// Envoy does not say what it received and the request has waited long enough: release it.
    Release,
}

/// `received`: the body bytes Envoy has received for the request (`request.total_size` less
/// `request.headers_bytes`), None when it does not say; `waited_ms`: since the headers were held.
pub fn probe(received: Option<u64>, waited_ms: u64) -> Probe {
    match received {
        Some(0) => Probe::Wait,
        Some(_) => Probe::Unavailable,
        None if waited_ms >= PROBE_GIVE_UP_MS => Probe::Release,
        None => Probe::Wait,
    }
}

/// Per plugin configuration: whether the proxy passes the body of held requests, learned from the first
/// ones. While that is unknown each held request is noted; its first body callback proves the setting
/// (`body_seen`). Without it the proxy calls the plugin no more after the held headers, so the host's
/// tick looks at each noted request (`tick`): body bytes the proxy received but never handed over prove
/// the setting missing; then every noted request is released and no request is held any more under this
/// configuration. Pure bookkeeping: the host supplies the stream ids, the clock and what the proxy received
/// (`host/hold.rs`), and resumes the streams `tick` releases.
#[derive(Debug, Default)]
pub struct Probes {
    support: Support,
    /// Held requests not yet seen in a body callback, with when they were held (ms).
    waiting: Vec<(u32, u64)>,
}

/// What a tick found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// The requests to resume.
    pub release: Vec<u32>,
    /// The proxy does not pass the body of held requests: say so in its log, and count each released
    /// request in `tollgate.hold.unavailable`.
    pub unavailable: bool,
}

impl Probes {
    pub fn support(&self) -> Support {
        self.support
    }

    /// Request `id`'s headers are held at `now_ms`. Returns whether it is noted (the answer is unknown).
    pub fn held(&mut self, id: u32, now_ms: u64) -> bool {
        if self.support != Support::Unknown {
            return false;
        }
        self.waiting.push((id, now_ms));
        true
    }

    /// The first body callback of a noted request: true when it was still waiting (the setting works);
    /// false when a tick had already released it.
    pub fn body_seen(&mut self, id: u32) -> bool {
        let was_waiting = self.take(id);
        if was_waiting && self.support == Support::Unknown {
            self.support = Support::Works;
        }
        was_waiting
    }

    /// The exchange of a noted request is over.
    pub fn forget(&mut self, id: u32) {
        self.take(id);
    }

    fn take(&mut self, id: u32) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|(w, _)| *w != id);
        self.waiting.len() != before
    }

    /// Whether a tick has requests to look at.
    pub fn waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Look at the requests still waiting for their first body callback at `now_ms`. `received(id)`:
    /// None when the stream is gone, else the body bytes the proxy received for it (None when it does
    /// not say).
    pub fn tick(
        &mut self,
        now_ms: u64,
        received: &mut dyn FnMut(u32) -> Option<Option<u64>>,
    ) -> Tick {
        let mut tick = Tick::default();
        if self.support == Support::Works {
            // Their body callbacks will come as for any held request.
            self.waiting.clear();
            return tick;
        }
        self.waiting.retain(|&(id, since)| {
            let Some(received) = received(id) else {
                return false; // gone
            };
            match probe(received, now_ms.saturating_sub(since)) {
                Probe::Wait => true,
                Probe::Unavailable => {
                    tick.unavailable = true;
                    tick.release.push(id);
                    false
                }
                Probe::Release => {
                    tick.release.push(id);
                    false
                }
            }
        });
        if tick.unavailable {
            self.support = Support::Unavailable;
            tick.release
                .extend(self.waiting.drain(..).map(|(id, _)| id));
        }
        tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MAX: usize = 1 << 20;

    fn framing(cl: Option<u64>) -> Framing {
        Framing {
            content_length: cl,
            ..Framing::default()
        }
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(content_length(Some("1048576")), Some(1 << 20));
        assert_eq!(content_length(Some(" 12 ")), Some(12));
        for bad in ["", "-1", "1e3", "12,13", "0x10", "99999999999999999999999"] {
            assert_eq!(content_length(Some(bad)), None, "{bad}");
        }
        assert_eq!(content_length(None), None);
    }

    #[test]
    fn read_mode_by_declared_length() {
        assert_eq!(read(&framing(Some(MAX as u64)), MAX), Read::Whole);
        assert_eq!(read(&framing(Some(0)), MAX), Read::Whole);
        assert_eq!(
            read(&framing(Some(MAX as u64 + 1)), MAX),
            Read::TooLarge(MAX as u64 + 1)
        );
        assert_eq!(read(&framing(None), MAX), Read::Undeclared);
        let eos = Framing {
            end_of_stream: true,
            ..framing(Some(5))
        };
        assert_eq!(read(&eos, MAX), Read::NoBody);
    }

    #[test]
    fn refusals_that_need_the_headers_held() {
        let cfg = Config::default();
        let none = Decisions::default();
        assert!(!may_refuse(&cfg, &none, Read::Whole, true, true));
        let budget = Decisions {
            budget: true,
            ..none
        };
        assert!(may_refuse(&cfg, &budget, Read::Whole, false, false));
        let block = Decisions {
            block: true,
            ..none
        };
        assert!(may_refuse(&cfg, &block, Read::Whole, false, false));
        let egress = Decisions {
            egress: true,
            ..none
        };
        // Egress redaction rewrites a plain body and never refuses it; a compressed or signed one it refuses.
        assert!(!may_refuse(&cfg, &egress, Read::Whole, false, false));
        assert!(may_refuse(&cfg, &egress, Read::Whole, true, false));
        assert!(may_refuse(&cfg, &egress, Read::Whole, false, true));
        let forward = Config::parse(br#"{"signed_requests":"forward"}"#).unwrap();
        assert!(!may_refuse(&forward, &egress, Read::Whole, false, true));
        let strict = Config::parse(br#"{"oversized_requests":"refuse"}"#).unwrap();
        assert!(may_refuse(&strict, &egress, Read::Undeclared, false, false));
        assert!(!may_refuse(&strict, &none, Read::Undeclared, false, false));
    }

    #[test]
    fn never_hold_what_cannot_be_held() {
        assert!(hold(true, Read::Whole, false, Support::Unknown));
        assert!(hold(true, Read::Undeclared, false, Support::Works));
        assert!(!hold(false, Read::Whole, false, Support::Works));
        assert!(
            !hold(true, Read::Whole, true, Support::Works),
            "an upgrade's handshake would hang"
        );
        assert!(!hold(true, Read::NoBody, false, Support::Works));
        assert!(!hold(true, Read::TooLarge(9), false, Support::Works));
        assert!(!hold(true, Read::Whole, false, Support::Unavailable));
    }

    #[test]
    fn a_body_is_held_only_while_it_provably_fits() {
        use Step::*;
        assert_eq!(body_step(Read::Whole, true, 10, false, MAX), Wait);
        assert_eq!(body_step(Read::Whole, false, MAX, true, MAX), Inspect);
        assert_eq!(body_step(Read::Whole, false, MAX + 1, false, MAX), Pass);
        // Unknown length: read only what arrives whole at once; never pause on it.
        assert_eq!(body_step(Read::Undeclared, true, 10, true, MAX), Inspect);
        assert_eq!(body_step(Read::Undeclared, true, 10, false, MAX), Pass);
        assert_eq!(body_step(Read::Undeclared, true, MAX + 1, true, MAX), Pass);
        assert_eq!(body_step(Read::Undeclared, false, 20, true, MAX), Pass);
        assert_eq!(body_step(Read::TooLarge(5), true, 5, true, MAX), Pass);
    }

    #[test]
    fn probe_concludes_only_from_bytes_envoy_received() {
        assert_eq!(probe(Some(0), 60_000), Probe::Wait);
        assert_eq!(probe(Some(1), 0), Probe::Unavailable);
        assert_eq!(probe(None, PROBE_GIVE_UP_MS - 1), Probe::Wait);
        assert_eq!(probe(None, PROBE_GIVE_UP_MS), Probe::Release);
    }

    #[test]
    fn probes_learn_support_from_the_first_held_requests() {
        let mut p = Probes::default();
        assert!(p.held(1, 0) && p.held(2, 0));
        assert!(p.waiting());
        // The first body callback proves holding works: later requests are not noted.
        assert!(p.body_seen(1));
        assert_eq!(p.support(), Support::Works);
        assert!(!p.held(3, 10));
        // The tick drops the rest: their body callbacks come as for any held request.
        assert_eq!(p.tick(10, &mut |_| Some(Some(5))), Tick::default());
        assert!(!p.waiting());
        assert!(!p.body_seen(2));
    }

    #[test]
    fn probes_release_every_held_request_once_one_shows_the_body_stuck() {
        let mut p = Probes::default();
        for id in [1, 2, 3, 4] {
            assert!(p.held(id, 0));
        }
        p.forget(4);
        // 1 has sent nothing yet, 2 is gone, 3's body reached the proxy and not the plugin.
        let mut seen = Vec::new();
        let tick = p.tick(100, &mut |id| {
            seen.push(id);
            match id {
                1 => Some(Some(0)),
                2 => None,
                _ => Some(Some(10)),
            }
        });
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(
            tick,
            Tick {
                release: vec![3, 1],
                unavailable: true
            }
        );
        assert_eq!(p.support(), Support::Unavailable);
        assert!(!p.held(5, 200));
        // A released request's late first body callback: it was not waiting any more.
        assert!(!p.body_seen(1));
        assert_eq!(p.support(), Support::Unavailable);
    }

    #[test]
    fn probes_give_up_on_a_proxy_that_does_not_say() {
        let mut p = Probes::default();
        assert!(p.held(7, 1_000));
        let tick = p.tick(1_000 + PROBE_GIVE_UP_MS - 1, &mut |_| Some(None));
        assert_eq!(tick, Tick::default());
        let tick = p.tick(1_000 + PROBE_GIVE_UP_MS, &mut |_| Some(None));
        assert_eq!(
            tick,
            Tick {
                release: vec![7],
                unavailable: false
            }
        );
        assert_eq!(p.support(), Support::Unknown);
    }
}
