//! No panic reaches Envoy. A panic that unwound out of an `extern "C"` hook would abort the whole proxy
//! (docs/dynamic-modules-abi.md §8), so every hook runs its body through [`guard`]: a panic is caught, logged
//! at error on Envoy's `dynamic_modules` logger with its message and location, counted in
//! `tollgate.native.panics`, and the hook answers its fail-open value instead. This needs `panic = "unwind"`
//! (native/Cargo.toml); with `abort` no guard could run.
//!
//! A panic that cannot unwind still ends the process: an allocation failure, a stack overflow, a panic while
//! panicking. Those are bugs to fix, not conditions to handle.

use crate::abi::log_level;
use crate::envoy;
use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Panics caught and not yet handed to Envoy's `tollgate.native.panics` counter (the next tick of any filter
/// config takes them, so each is counted once however many configs there are).
static UNPUBLISHED: AtomicU64 = AtomicU64::new(0);
/// Panics caught since the module was loaded.
static TOTAL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Where the last panic on this thread happened, recorded by the panic hook for the guard to log.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Replace the default panic hook (which writes to Envoy's stderr) with one that remembers the location for
/// the guard's log line. The hook is this module's own: the Rust runtime is linked into the module, so no
/// other module or Envoy itself is affected.
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            // try_with: the thread-local may be gone if a thread panics while exiting.
            let _ = LOCATION.try_with(|l| {
                if let Ok(mut slot) = l.try_borrow_mut() {
                    *slot = Some(at);
                }
            });
        }));
    });
}

/// Runs a hook's body; a panic is caught, logged and counted, and `fallback` is returned instead.
pub fn guard<R>(hook: &str, fallback: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            caught(hook, payload.as_ref());
            fallback
        }
    }
}

/// Count and log a caught panic.
pub fn caught(hook: &str, payload: &(dyn Any + Send)) {
    UNPUBLISHED.fetch_add(1, Ordering::Relaxed);
    TOTAL.fetch_add(1, Ordering::Relaxed);
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let at = LOCATION
        .try_with(|l| l.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten()
        .unwrap_or_default();
    // Logging must not panic in turn (a panic here would not be caught): the log call does not, and a
    // second guard makes sure.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        envoy::log(
            log_level::ERROR,
            &format!("tollgate: panic in {hook} at {at}: {msg}; failing open for this request"),
        )
    }));
}

/// Panics caught since the last call (for the stats tick).
pub fn take_unpublished() -> u64 {
    UNPUBLISHED.swap(0, Ordering::Relaxed)
}

/// Panics caught since the module was loaded.
#[cfg(test)]
pub fn total() -> u64 {
    TOTAL.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::fake;

    #[test]
    fn a_panic_is_caught_logged_and_counted() {
        install_panic_hook();
        let before = total();
        let r = guard("on_test_hook", 7u32, || -> u32 { panic!("boom {}", 42) });
        assert_eq!(r, 7);
        assert_eq!(total(), before + 1);
        let logs = fake::logs();
        let line = logs
            .iter()
            .find(|(_, m)| m.contains("on_test_hook"))
            .expect("logged");
        assert_eq!(line.0, log_level::ERROR);
        assert!(line.1.contains("boom 42"), "{line:?}");
        assert!(line.1.contains("guard.rs:"), "the location: {line:?}");
        assert_eq!(guard("on_test_hook", 0, || 5), 5);
    }
}
