//! The filter config: one per `envoy.filters.http.dynamic_modules` filter in Envoy's config (one per HTTP
//! connection manager; a listener update makes a new one and destroys the old one after its last stream).
//! Created and destroyed on the main thread, shared by every worker's streams (hence `Sync`).
//!
//! Process-wide state does not live here: the budget store is the module's (`store::STORE`), shared by every
//! config as the Wasm build's shared data is shared by every VM.

use crate::abi::log_level;
use crate::alerts::Alerts;
use crate::core::{exchange, Config, Once, Resource};
use crate::envoy::{self, ConfigHandle, ConfigScheduler};
use crate::export::{Exporter, Io, Transport};
use crate::rlsdebit::Debits;
use crate::stats::{Ids, Own, Pending, Stat, Totals};
use crate::store::STORE;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The only filter name the module serves (`filter_name` in Envoy's config).
pub const FILTER_NAME: &[u8] = b"tollgate";

/// Events committed to the config's scheduler, handled on the main thread.
pub mod event {
    /// The periodic tick: export, rate-limit debits, stats.
    pub const TICK: u64 = 1;
    /// Something waits that should not wait for the tick (a full span batch, a rate-limit debit, an alert).
    pub const WAKE: u64 = 2;
}

pub struct Plugin {
    /// Shared with every stream's exchange.
    pub config: Arc<Config>,
    pub ids: Ids,
    pub exporter: Exporter,
    /// Counts made on the main thread (rate-limit debits).
    pub main: Pending,
    /// Budget alerts waiting for the main thread: OTLP log records and webhook bodies.
    pub alerts: Alerts,
    /// What the alerts' log records are exported under (the first worker's resource).
    alerts_resource: Option<Resource>,
    /// Rate-limit debits waiting for the main thread (`budgets.backend: "rls"`).
    pub debits: Debits,
    scheduler: Option<ConfigScheduler>,
    ticker: Mutex<Option<Ticker>>,
    /// `Once::BufferOverflow` happened under this config.
    overflow_logged: AtomicBool,
}

/// Why a filter config is refused. Logged at error before `config_new` answers NULL (Envoy does not pass a
/// module's reason on: it logs `Failed to initialize dynamic module`).
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl Plugin {
    /// Parse and set up a filter config (main thread, inside `config_new`: the only time stats may be
    /// defined). `workers` is Envoy's concurrency.
    pub fn new(
        handle: ConfigHandle,
        name: &[u8],
        raw: &[u8],
        workers: u32,
        now_ns: u64,
    ) -> Result<Plugin, Refused> {
        if name != FILTER_NAME {
            return Err(Refused(format!(
                "invalid tollgate configuration: filter_name: unknown filter {:?} (this module serves \"tollgate\")",
                String::from_utf8_lossy(name)
            )));
        }
        // The same parser, hence the same errors naming the key, as the Wasm build.
        let config = Config::parse(raw).map_err(|e| Refused(e.to_string()))?;
        // Envoy 1.40's dynamic-modules ABI reads a metadata value by namespace and key only as a scalar (string,
        // number, bool) or a list element; the JWT payload jwt_authn stores is a Struct under its key
        // (docs/native-module.md, "JWT claims").
        let jwt = |s: &tollgate::budget::TenantSource| {
            matches!(s, tollgate::budget::TenantSource::JwtClaim { .. })
        };
        let mut unreadable = Vec::new();
        if jwt(&config.tenant.source) {
            unreadable.push(("tenant.jwt_claim".to_string(), "tenant.default".to_string()));
        }
        for d in config.budgets.iter().flat_map(|b| b.dimensions.iter()) {
            if jwt(&d.source.source) {
                let key = format!("budgets.dimensions.{}", d.name);
                unreadable.push((format!("{key}.jwt_claim"), format!("{key}.default")));
            }
        }
        for (key, default) in unreadable {
            envoy::log(
                log_level::WARN,
                &format!(
                    "tollgate: {key}: the native build cannot read jwt_authn's payload through Envoy 1.40's \
                     dynamic-modules ABI; every request gets {default} (use a header jwt_authn's \
                     claim_to_headers sets)"
                ),
            );
        }
        // The budget ledger's key-creation lock, before traffic flows (as the Wasm build's on_configure).
        exchange::configure(&config, &*STORE, 1);
        let ids = Ids::define(handle, &config.redaction.detector_names);
        let detectors = ids.detectors();
        let exporter = Exporter::new(
            &config,
            usize::try_from(workers).unwrap_or(1).max(1),
            detectors,
            now_ns,
            || crate::core::export::instance_id(crate::host::random_bytes()),
        );
        let scheduler = handle.new_scheduler();
        let plugin = Plugin {
            alerts: Alerts::new(&config),
            alerts_resource: exporter.resource(),
            ids,
            exporter,
            main: Pending::new(detectors),
            debits: Debits::default(),
            scheduler,
            ticker: Mutex::new(None),
            overflow_logged: AtomicBool::new(false),
            config: Arc::new(config),
        };
        Ok(plugin)
    }

    /// The tick period: as the Wasm build's `on_tick` (200 ms or the flush interval when exporting, else 1 s).
    pub fn tick_period(&self) -> Duration {
        Duration::from_millis(
            self.config
                .otlp
                .as_ref()
                .map_or(1_000, |o| o.flush_interval_ms.min(200))
                .max(10),
        )
    }

    /// Start the thread that commits `event::TICK` to the config's scheduler every tick period (the HTTP
    /// filter ABI has no timer of its own; docs/dynamic-modules-abi.md §4).
    pub fn start_ticker(&self) {
        let Some(s) = self.scheduler.as_ref() else {
            envoy::log(
                log_level::ERROR,
                "tollgate: Envoy gave no config scheduler: spans, metrics and stats will not be exported",
            );
            return;
        };
        match Ticker::start(s.share(), self.tick_period()) {
            Ok(t) => *self.ticker.lock().unwrap_or_else(|p| p.into_inner()) = Some(t),
            Err(e) => envoy::log(
                log_level::ERROR,
                &format!("tollgate: could not start the export timer thread: {e}"),
            ),
        }
    }

    /// Whether `what` happens for the first time under this config (any worker).
    pub fn once(&self, what: Once) -> bool {
        match what {
            Once::BufferOverflow => !self.overflow_logged.swap(true, Ordering::Relaxed),
        }
    }

    /// Ask the main thread to run now (from any thread): a full span batch or a debit is waiting.
    pub fn wake(&self) {
        if let Some(s) = &self.scheduler {
            s.commit(event::WAKE);
        }
    }

    /// One tick on the main thread: export what is due, send waiting debits, hand the counts to Envoy.
    pub fn on_tick(&self, handle: ConfigHandle, now_ns: u64, t: &mut dyn Transport) {
        let mut io = Io {
            now_ns,
            jitter: &mut crate::host::random_unit,
            transport: t,
            log: &mut |m: String| envoy::log(log_level::WARN, &m),
        };
        self.exporter.tick(&self.config, &mut io);
        self.flush_alerts(&mut io);
        self.debits.send(&self.config, handle, &self.main);
        self.publish(handle);
    }

    /// Send the budget alerts that are due (main thread).
    pub fn flush_alerts(&self, io: &mut Io) {
        if let Some(r) = self.alerts_resource.as_ref() {
            self.alerts.flush(&self.config, r, io);
        }
    }

    /// Hand every count since the last publication to Envoy (main thread).
    pub fn publish(&self, handle: ConfigHandle) {
        let mut totals = Totals::new(self.ids.detectors());
        self.main.drain_into(&mut totals);
        let depth = self.exporter.drain_stats(&mut totals);
        self.alerts.drain_stats(&mut totals);
        totals.add(
            Stat::Own(Own::NativePanics),
            crate::guard::take_unpublished(),
        );
        self.ids.publish(handle, &totals, depth);
    }

    /// Stop the ticker and free the scheduler (main thread, `config_destroy`). Spans still queued are lost:
    /// Envoy cancels a config's callouts when it destroys the config, so no final flush could complete.
    pub fn shut_down(&mut self) {
        let ticker = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = ticker {
            t.stop();
        }
        if let Some(s) = self.scheduler.take() {
            s.delete();
        }
        let queued: usize = self.exporter.lanes().iter().map(|l| l.queued()).sum();
        if queued > 0 {
            envoy::log(
                log_level::INFO,
                &format!("tollgate: filter config removed with {queued} spans not exported"),
            );
        }
    }
}

/// A module thread that wakes every period and commits a tick to the config scheduler.
struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
}

impl Ticker {
    fn start(scheduler: SharedScheduler, period: Duration) -> std::io::Result<Ticker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tollgate-tick".into())
            .spawn(move || {
                // A panic here would only end this thread, but it is guarded like every entry point.
                crate::guard::guard("tick thread", (), || {
                    let (lock, cv) = &*thread_stop;
                    let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                    loop {
                        let (g, _) = cv
                            .wait_timeout(stopped, period)
                            .unwrap_or_else(|p| p.into_inner());
                        stopped = g;
                        if *stopped {
                            return;
                        }
                        scheduler.commit(event::TICK);
                    }
                })
            })?;
        Ok(Ticker { stop, thread })
    }

    /// Stop and join the thread: after this no one commits to the scheduler.
    fn stop(self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        let _ = self.thread.join();
    }
}

/// A copy of the scheduler handle for the ticker thread. Only `commit` (thread-safe) is reachable through it,
/// and the scheduler is deleted only after the thread was joined.
pub struct SharedScheduler(usize);

impl SharedScheduler {
    pub fn commit(&self, event_id: u64) {
        crate::envoy::commit_raw(self.0, event_id);
    }
}

impl ConfigScheduler {
    fn share(&self) -> SharedScheduler {
        SharedScheduler(self.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::fake;

    #[test]
    fn every_jwt_claim_source_is_named_in_a_warning() {
        let json = br#"{"tenant":{"jwt_claim":"sub","default":"anon"},
            "budgets":{"dimensions":{"team":{"header":"x-team"},"user":{"jwt_claim":"sub","default":"nobody"}},
              "rules":[{"user":"*","window":"1h","tokens":10}]}}"#;
        assert!(Plugin::new(fake::config(), FILTER_NAME, json, 1, 0).is_ok());
        let warnings: Vec<String> = fake::logs()
            .into_iter()
            .filter(|(l, m)| *l == log_level::WARN && m.contains("jwt_authn"))
            .map(|(_, m)| m)
            .collect();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("tenant.jwt_claim") && warnings[0].contains("tenant.default"));
        assert!(warnings[1].contains("budgets.dimensions.user.jwt_claim"));
        assert!(warnings[1].contains("budgets.dimensions.user.default"));
    }
}
