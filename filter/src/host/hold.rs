//! Held request headers: whether this Envoy delivers the body of a request whose headers tollgate holds
//! (`allow_on_headers_stop_iteration`), learned from the first held requests of a plugin configuration.
//! The decisions are `crate::hold`'s; this file only reads what Envoy received and resumes streams.
//!
//! While the answer is unknown, each held request is noted here. Its first body callback proves the setting
//! ([`Holds::body_seen`]). Without the setting Envoy calls the plugin no more after the held headers, so the
//! root's tick looks at each noted request in its own context: body bytes Envoy received but never handed
//! to the plugin prove the setting missing. tollgate then says so in Envoy's log, resumes those requests
//! (their body then reaches the plugin and is decided as before, after the headers left) and stops holding
//! headers for this configuration, counting each request that would have been held
//! (`tollgate.hold.unavailable`).

use super::abi;
use super::stats::Stats;
use super::{log, now_ns};
use crate::hold::{self, Probe, Support};
use proxy_wasm::types::LogLevel;
use std::cell::{Cell, RefCell};

/// One per plugin configuration (root context), shared with its exchanges.
#[derive(Default)]
pub struct Holds {
    support: Cell<Support>,
    /// Held requests not yet seen in a body callback, with when they were held (ms).
    waiting: RefCell<Vec<(u32, u64)>>,
    /// Envoy's 413 to a held body has been logged once for this configuration.
    overflow_logged: Cell<bool>,
}

fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// The message an operator reads when the setting is missing.
const UNAVAILABLE: &str = "tollgate: Envoy does not pass the body of a request whose headers tollgate \
     holds: set allow_on_headers_stop_iteration: true in the Wasm filter's config. Until then refusals \
     come after the request reached the provider (tollgate.hold.unavailable)";

impl Holds {
    pub fn support(&self) -> Support {
        self.support.get()
    }

    /// A request's headers are held. Returns whether it is noted (the answer is still unknown).
    pub fn held(&self, context_id: u32) -> bool {
        if self.support.get() != Support::Unknown {
            return false;
        }
        self.waiting.borrow_mut().push((context_id, now_ms()));
        true
    }

    /// The first body callback of a noted request: true when it was still waiting (the setting works);
    /// false when the tick had already released it.
    pub fn body_seen(&self, context_id: u32) -> bool {
        let was_waiting = self.take(context_id);
        if was_waiting && self.support.get() == Support::Unknown {
            self.support.set(Support::Works);
        }
        was_waiting
    }

    /// True the first time Envoy answers 413 to a body tollgate held (log it once per configuration).
    pub fn first_overflow(&self) -> bool {
        !self.overflow_logged.replace(true)
    }

    /// The exchange is over.
    pub fn forget(&self, context_id: u32) {
        self.take(context_id);
    }

    fn take(&self, context_id: u32) -> bool {
        let mut w = self.waiting.borrow_mut();
        let before = w.len();
        w.retain(|(id, _)| *id != context_id);
        w.len() != before
    }

    /// Root tick: look at the requests still waiting for their first body callback. Returns true when it
    /// switched the effective context (the caller then restores its own).
    pub fn tick(&self, stats: &Stats) -> bool {
        if self.waiting.borrow().is_empty() {
            return false;
        }
        if self.support.get() == Support::Works {
            // Their body callbacks will come as for any held request.
            self.waiting.borrow_mut().clear();
            return false;
        }
        let now = now_ms();
        let mut unavailable = false;
        let mut release = Vec::new();
        self.waiting.borrow_mut().retain(|&(id, since)| {
            if !abi::set_effective_context(id) {
                return false; // gone
            }
            // The body bytes Envoy received for the stream (`StreamInfo::bytesReceived`, counted before any
            // filter runs) are its total size less its headers.
            let total = abi::property_u64(&["request", "total_size"]);
            let headers = abi::property_u64(&["request", "headers_bytes"]);
            let received = total.zip(headers).map(|(t, h)| t.saturating_sub(h));
            match hold::probe(received, now.saturating_sub(since)) {
                Probe::Wait => true,
                Probe::Unavailable => {
                    unavailable = true;
                    release.push(id);
                    false
                }
                Probe::Release => {
                    release.push(id);
                    false
                }
            }
        });
        if unavailable {
            self.support.set(Support::Unavailable);
            log(LogLevel::Warn, UNAVAILABLE);
            release.extend(self.waiting.borrow_mut().drain(..).map(|(id, _)| id));
        }
        for id in release {
            if abi::set_effective_context(id) && abi::resume_request() && unavailable {
                stats.hold_unavailable.add(1);
            }
        }
        true
    }
}
