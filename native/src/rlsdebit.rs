//! Usage debits to the rate-limit service (`budgets.backend: "rls"`), sent from the main thread.
//!
//! A debit is made after the response, when the request's stream is about to go: a callout started from the
//! stream would die with it (Envoy resets a filter's callouts when the filter is destroyed). The worker
//! therefore queues the encoded `RateLimitRequest` here and wakes the main thread, which sends it as a
//! config-level gRPC call (`grpc.rs`) and reads the answer, counting an error answer in
//! `tollgate.budget_rls_debit_errors` (the Wasm build cannot see those: its debit's answer arrives after the
//! exchange is gone).

use crate::core::{Config, Counter};
use crate::envoy::ConfigHandle;
use crate::grpc;
use crate::stats::{Own, Pending, Stat};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Debits held while the main thread is busy; beyond, a debit is dropped and counted as a failure.
pub const MAX_WAITING: usize = 10_000;

#[derive(Default)]
pub struct Debits {
    waiting: Mutex<Vec<Vec<u8>>>,
    /// Main thread only: the calls in flight and their answers so far.
    in_flight: Mutex<HashMap<u64, grpc::Answer>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Debits {
    /// Queue an encoded `RateLimitRequest` (worker). False when the queue is full (the caller counts it).
    pub fn push(&self, message: Vec<u8>) -> bool {
        let mut w = lock(&self.waiting);
        if w.len() >= MAX_WAITING {
            return false;
        }
        w.push(message);
        true
    }

    /// Send every waiting debit (main thread).
    pub fn send(&self, cfg: &Config, handle: ConfigHandle, main: &Pending) {
        let waiting = std::mem::take(&mut *lock(&self.waiting));
        if waiting.is_empty() {
            return;
        }
        let Some(rls) = cfg.budgets.as_ref().and_then(|b| b.rls.as_ref()) else {
            return;
        };
        let headers = grpc::request_headers(
            crate::core::rls::SERVICE,
            crate::core::rls::METHOD,
            &rls.authority,
            rls.timeout_ms,
        );
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        for message in waiting {
            let (r, id) = handle.start_http_stream(
                &rls.cluster,
                &headers,
                &grpc::frame(&message),
                rls.timeout_ms,
            );
            // `tollgate.budget_rls_debits` was counted when the exchange queued the debit.
            if r == crate::abi::callout_init::SUCCESS {
                lock(&self.in_flight).insert(id, grpc::Answer::default());
            } else {
                main.add(Stat::Exchange(Counter::RlsDebitFailures), 1);
            }
        }
    }

    /// A piece of a debit's answer arrived (main thread); `f` feeds it to the call's answer.
    pub fn answer_part(&self, id: u64, f: impl FnOnce(&mut grpc::Answer)) {
        if let Some(a) = lock(&self.in_flight).get_mut(&id) {
            f(a);
        }
    }

    /// A debit's stream ended (main thread): `reset` is the reset reason when it did not complete.
    pub fn finished(&self, id: u64, reset: Option<u32>, main: &Pending) {
        let Some(mut a) = lock(&self.in_flight).remove(&id) else {
            return;
        };
        let status = match reset {
            Some(reason) => grpc::Answer::reset(reason),
            None => a.complete().0,
        };
        if status != grpc::code::OK {
            main.add(Stat::Own(Own::RlsDebitErrors), 1);
        }
    }

    pub fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::fake;

    #[test]
    fn debits_are_sent_from_the_main_thread_and_answers_counted() {
        let cfg = Config::parse(
            br#"{"tenant":{"header":"x-tenant"},"budgets":{"backend":"rls","rules":[{"tenant":"*","window":"1h","tokens":10}],"rls":{"cluster":"ratelimit","domain":"d","timeout_ms":300}}}"#,
        )
        .unwrap();
        let d = Debits::default();
        let main = Pending::new(0);
        assert!(d.push(b"one".to_vec()));
        assert!(d.push(b"two".to_vec()));
        let h = fake::config();
        d.send(&cfg, h, &main);
        assert_eq!(d.waiting(), 0);
        let streams = fake::config_streams();
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].0, "ratelimit");
        assert_eq!(streams[0].2, grpc::frame(b"one"));
        assert!(streams[0].1.contains(&(
            ":path".to_string(),
            b"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit".to_vec()
        )));
        assert_eq!(streams[0].3, 300);
        let (a, b) = (streams[0].4, streams[1].4);
        d.answer_part(a, |x| {
            x.headers(&[(b":status", b"200"), (b"grpc-status", b"0")])
        });
        d.answer_part(a, |x| x.data(&grpc::frame(b"")));
        d.finished(a, None, &main);
        d.finished(
            b,
            Some(crate::abi::stream_reset_reason::CONNECTION_FAILURE),
            &main,
        );
        let mut t = crate::stats::Totals::new(0);
        main.drain_into(&mut t);
        // Dispatched debits were counted when queued (the exchange counts them); errors here.
        assert_eq!(t.counters[Stat::Exchange(Counter::RlsDebits).index()], 0);
        assert_eq!(
            t.counters[Stat::Exchange(Counter::RlsDebitFailures).index()],
            0
        );
        assert_eq!(t.counters[Stat::Own(Own::RlsDebitErrors).index()], 1);
    }
}
