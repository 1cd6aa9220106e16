//! Held request headers in proxy-wasm: whether this Envoy delivers the body of a request whose headers
//! tollgate holds (`allow_on_headers_stop_iteration`), learned per plugin configuration from the first held
//! requests (`exchange::hold::Probes` keeps the books and decides). This file reads what Envoy received for
//! each noted request in its own context on the root's tick, and resumes the requests the probes release.

use super::stats::Stats;
use super::{abi, log, now_ns};
use crate::exchange::hold::{Probes, Support};
use crate::exchange::host::Counter;
use proxy_wasm::types::LogLevel;
use std::cell::{Cell, RefCell};

/// One per plugin configuration (root context), shared with its exchanges.
#[derive(Default)]
pub struct Holds {
    probes: RefCell<Probes>,
    /// Envoy's 413 to a held body has been logged once for this configuration.
    pub overflow_logged: Cell<bool>,
}

pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// The message an operator reads when the setting is missing.
const UNAVAILABLE: &str = "tollgate: Envoy does not pass the body of a request whose headers tollgate \
     holds: set allow_on_headers_stop_iteration: true in the Wasm filter's config. Until then refusals \
     come after the request reached the provider (tollgate.hold.unavailable)";

impl Holds {
    pub fn support(&self) -> Support {
        self.probes.borrow().support()
    }

    pub fn held(&self, context_id: u32) -> bool {
        self.probes.borrow_mut().held(context_id, now_ms())
    }

    pub fn body_seen(&self, context_id: u32) -> bool {
        self.probes.borrow_mut().body_seen(context_id)
    }

    pub fn forget(&self, context_id: u32) {
        self.probes.borrow_mut().forget(context_id);
    }

    /// Root tick: look at the requests still waiting for their first body callback, each in its own
    /// context. Returns true when it switched the effective context (the caller then restores its own).
    pub fn tick(&self, stats: &Stats) -> bool {
        if !self.probes.borrow().waiting() {
            return false;
        }
        let mut switched = false;
        let tick = self.probes.borrow_mut().tick(now_ms(), &mut |id| {
            switched = true;
            if !abi::set_effective_context(id) {
                return None; // gone
            }
            // The body bytes Envoy received for the stream (`StreamInfo::bytesReceived`, counted before any
            // filter runs) are its total size less its headers.
            let total = abi::property_u64(&["request", "total_size"]);
            let headers = abi::property_u64(&["request", "headers_bytes"]);
            Some(total.zip(headers).map(|(t, h)| t.saturating_sub(h)))
        });
        if tick.unavailable {
            log(LogLevel::Warn, UNAVAILABLE);
        }
        for id in tick.release {
            switched = true;
            if abi::set_effective_context(id) && abi::resume_request() && tick.unavailable {
                stats.count(Counter::HoldUnavailable, 1);
            }
        }
        switched
    }
}
