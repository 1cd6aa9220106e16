//! A prototype Envoy dynamic module (`libtollgate.so`) for the native build of tollgate.
//!
//! It is not tollgate: it proves, one by one and against the real Envoy 1.40 binary, the capabilities the
//! native host of tollgate's core needs (native-proto/run_checks.py drives it), and it is the "no-op" and
//! "floor" module of native-proto/measure.py. Its filter_config (src/config.rs) names the operations to
//! perform; with none it only crosses the ABI boundary on each hook.
//!
//! Every function Envoy calls is `extern "C"` and runs its body inside [`guard`]: a panic that unwound out
//! of an `extern "C"` function would abort Envoy, so each hook catches it, logs it, counts it and answers
//! the fail-open value for that hook (`Continue`, or resuming a request the module had paused).

// The hooks are `extern "C"` functions Envoy calls with pointers it owns; the ABI contract, not the Rust
// signature, is what makes dereferencing them sound.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

// The ABI declarations are the native module's (native/src/abi.rs): one declaration of the ABI for both.
#[path = "../../native/src/abi.rs"]
mod abi;
mod config;
mod host;

use abi::*;
use config::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Requests seen by every worker of this process: one plain static, shared because Envoy's workers are
/// threads of one process and the module is loaded once.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
/// Panics caught at the ABI boundary.
static PANICS: AtomicU64 = AtomicU64::new(0);

/// Runs a hook's body; a panic is caught, logged and counted, and `fallback` is returned instead.
fn guard<R>(hook: &str, fallback: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            PANICS.fetch_add(1, Ordering::Relaxed);
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            // A second panic here (in the logger) would abort; the log callback does not panic.
            let _ = catch_unwind(|| {
                host::log(
                    log_level::ERROR,
                    &format!("tollgate: panic caught in {hook} (failing open): {msg}"),
                )
            });
            fallback
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Program and filter config

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> AbiVersionPtr {
    guard("on_program_init", std::ptr::null(), || {
        ABI_VERSION.as_ptr().cast()
    })
}

struct Counters {
    requests: usize,
    by_tenant: usize,
    response_chunks: usize,
    panics: usize,
    exports_ok: usize,
}

/// The export timer: a module-owned thread that wakes every interval and posts an event to the main
/// thread through the config scheduler (the HTTP filter ABI has no timer of its own).
struct Exporter {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    scheduler: usize,
}

/// One per filter configuration; shared by every worker's streams (hence `Sync`).
struct Config {
    settings: Settings,
    raw: Vec<u8>,
    counters: Option<Counters>,
    budget: AtomicI64,
    exporter: Mutex<Option<Exporter>>,
    exports_sent: AtomicU64,
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: FilterConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> FilterConfigModulePtr {
    guard("on_http_filter_config_new", std::ptr::null(), || {
        // SAFETY: both buffers are Envoy's, valid for this hook; copied before returning.
        let (name, raw) = unsafe { (name.as_slice().to_vec(), config.as_slice().to_vec()) };
        if name != b"tollgate" {
            host::log(
                log_level::ERROR,
                &format!(
                    "tollgate: unknown filter_name {:?}",
                    String::from_utf8_lossy(&name)
                ),
            );
            return std::ptr::null();
        }
        let settings = match config::parse(&raw) {
            Ok(s) => s,
            Err(e) => {
                // Returning null makes Envoy reject the configuration; the reason is in this log line.
                host::log(
                    log_level::ERROR,
                    &format!("tollgate: invalid configuration: {e}"),
                );
                return std::ptr::null();
            }
        };
        let counters = if settings.ops & (COUNTERS | COUNTER_PLAIN) != 0 {
            let define = |n: &str, labels: &[&str]| host::define_counter(config_envoy, n, labels);
            match (|| -> Result<Counters, u32> {
                Ok(Counters {
                    requests: define("requests_total", &[])?,
                    by_tenant: define("requests_by_tenant", &["tenant"])?,
                    response_chunks: define("response_chunks", &[])?,
                    panics: define("panics", &[])?,
                    exports_ok: define("exports_ok", &[])?,
                })
            })() {
                Ok(c) => Some(c),
                Err(r) => {
                    host::log(
                        log_level::ERROR,
                        &format!("tollgate: defining counters failed ({r})"),
                    );
                    return std::ptr::null();
                }
            }
        } else {
            None
        };
        let cfg = Box::new(Config {
            budget: AtomicI64::new(settings.budget as i64),
            settings,
            raw,
            counters,
            exporter: Mutex::new(None),
            exports_sent: AtomicU64::new(0),
        });
        if cfg.settings.ops & EXPORT != 0 {
            start_exporter(&cfg, config_envoy);
        }
        let (pid, tid) = host::pid_tid();
        host::log(
            log_level::INFO,
            &format!("tollgate: config_new pid={pid} tid={tid}"),
        );
        Box::into_raw(cfg) as FilterConfigModulePtr
    })
}

fn start_exporter(cfg: &Config, config_envoy: FilterConfigEnvoyPtr) {
    // SAFETY: called on the main thread inside config_new with Envoy's config pointer.
    let scheduler =
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(config_envoy) }
            as usize;
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let interval = Duration::from_millis(cfg.settings.export_interval_ms.max(10));
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("tollgate-export-timer".into())
        .spawn(move || {
            let (lock, cv) = &*thread_stop;
            let mut seq = 0u64;
            let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                let (g, _) = cv
                    .wait_timeout(stopped, interval)
                    .unwrap_or_else(|p| p.into_inner());
                stopped = g;
                if *stopped {
                    return;
                }
                seq += 1;
                // SAFETY: the scheduler outlives this thread: config_destroy joins the thread before deleting it.
                unsafe {
                    envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                        scheduler as ConfigSchedulerPtr,
                        seq,
                    )
                };
            }
        });
    match thread {
        Ok(t) => {
            *cfg.exporter.lock().unwrap_or_else(|p| p.into_inner()) = Some(Exporter {
                stop,
                thread: Some(t),
                scheduler,
            })
        }
        Err(e) => {
            host::log(
                log_level::ERROR,
                &format!("tollgate: export timer thread: {e}"),
            );
            // SAFETY: created above, never shared.
            unsafe {
                envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                    scheduler as ConfigSchedulerPtr,
                )
            };
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: FilterConfigModulePtr,
) {
    guard("on_http_filter_config_destroy", (), || {
        if config.is_null() {
            return;
        }
        // SAFETY: the pointer config_new returned; Envoy destroys it once, after every stream using it.
        let cfg = unsafe { Box::from_raw(config as *mut Config) };
        let (pid, tid) = host::pid_tid();
        host::log(
            log_level::INFO,
            &format!("tollgate: config_destroy pid={pid} tid={tid}"),
        );
        let exporter = cfg
            .exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut ex) = exporter {
            let (lock, cv) = &*ex.stop;
            *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
            if let Some(t) = ex.thread.take() {
                let _ = t.join();
            }
            // SAFETY: the only committer has exited.
            unsafe {
                envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                    ex.scheduler as ConfigSchedulerPtr,
                )
            };
        }
    })
}

/// Main thread: the export timer fired. Export what the workers counted through a config-level callout.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    event_id: u64,
) {
    guard("on_http_filter_config_scheduled", (), || {
        // SAFETY: Envoy passes the live config created by config_new.
        let cfg = unsafe { &*(config as *const Config) };
        let (pid, tid) = host::pid_tid();
        let body = format!(
            "{{\"seq\":{event_id},\"requests\":{},\"pid\":{pid},\"tid\":{tid},\"panics\":{}}}",
            REQUESTS.load(Ordering::Relaxed),
            PANICS.load(Ordering::Relaxed)
        );
        let (r, _) = host::config_callout(
            config_envoy,
            &cfg.settings.export_cluster,
            &[
                (":method", "POST"),
                (":path", "/export"),
                ("host", "collector"),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
            2000,
        );
        if r == callout_init::SUCCESS {
            cfg.exports_sent.fetch_add(1, Ordering::Relaxed);
        } else {
            host::log(
                log_level::WARN,
                &format!("tollgate: export callout not started ({r})"),
            );
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    _callout_id: u64,
    result: u32,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    _body: *mut EnvoyBuffer,
    _body_size: usize,
) {
    guard("on_http_filter_config_http_callout_done", (), || {
        // SAFETY: the live config.
        let cfg = unsafe { &*(config as *const Config) };
        let ok = result == callout_result::SUCCESS
            && status_of(headers, headers_size) == Some(b"200".as_slice());
        if let (true, Some(c)) = (ok, &cfg.counters) {
            host::config_increment_counter(config_envoy, c.exports_ok, 1);
        }
    })
}

fn status_of<'a>(headers: *mut EnvoyHttpHeader, n: usize) -> Option<&'a [u8]> {
    if headers.is_null() {
        return None;
    }
    // SAFETY: Envoy's array of `n` headers, valid for the running hook.
    let hs = unsafe { std::slice::from_raw_parts(headers, n) };
    hs.iter().find_map(|h| {
        // SAFETY: as above.
        let k = unsafe {
            EnvoyBuffer {
                ptr: h.key_ptr,
                length: h.key_length,
            }
            .as_slice()
        };
        (k == b":status").then(|| unsafe {
            EnvoyBuffer {
                ptr: h.value_ptr,
                length: h.value_length,
            }
            .as_slice()
        })
    })
}

// ------------------------------------------------------------------------------------------------
// Streams

/// One per HTTP stream, used only on the worker thread that owns the stream.
struct Filter {
    config: *const Config,
    held: bool,
    rewrite: Option<bool>, // Some(set content-length?)
    body_callbacks: u32,
    paused_for: Option<&'static str>,
    scheduler: Option<(usize, JoinHandle<()>)>,
    panic_unguarded: bool,
}

impl Filter {
    fn cfg(&self) -> &Config {
        // SAFETY: Envoy keeps the config alive until every filter created from it is destroyed.
        unsafe { &*self.config }
    }
    fn on(&self, op: u32) -> bool {
        self.cfg().settings.ops & op != 0
    }
}

fn filter<'a>(p: FilterModulePtr) -> &'a mut Filter {
    // SAFETY: the pointer on_http_filter_new returned; Envoy calls a stream's hooks on one thread, one at a
    // time, and never after on_http_filter_destroy.
    unsafe { &mut *(p as *mut Filter) }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: FilterConfigModulePtr,
    _filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    guard("on_http_filter_new", std::ptr::null(), || {
        Box::into_raw(Box::new(Filter {
            config: config as *const Config,
            held: false,
            rewrite: None,
            body_callbacks: 0,
            paused_for: None,
            scheduler: None,
            panic_unguarded: false,
        })) as FilterModulePtr
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    let status = guard(
        "on_http_filter_request_headers",
        headers_status::CONTINUE,
        || request_headers(fe, filter(fm), end_of_stream),
    );
    if filter(fm).panic_unguarded {
        // Deliberately outside the guard: what an unguarded hook does to Envoy (run_checks.py, `panic`).
        panic!("tollgate prototype: unguarded panic in on_http_filter_request_headers");
    }
    status
}

fn request_headers(fe: FilterEnvoyPtr, f: &mut Filter, eos: bool) -> u32 {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    const REQ: u32 = header_type::REQUEST_HEADER;
    if f.on(PANIC) {
        match host::header(fe, REQ, "x-proto-panic") {
            Some(b"guarded") => {
                panic!("tollgate prototype: panic in on_http_filter_request_headers")
            }
            Some(b"unguarded") => f.panic_unguarded = true,
            _ => {}
        }
    }
    if let (true, Some(c)) = (f.on(COUNTER_PLAIN), &f.cfg().counters) {
        host::increment_counter(fe, c.requests, &[], 1);
    }
    if let (true, Some(c)) = (f.on(COUNTERS), &f.cfg().counters) {
        let tenant = host::header(fe, REQ, "x-tenant-id")
            .unwrap_or(b"none")
            .to_vec();
        host::increment_counter(fe, c.requests, &[], 1);
        host::increment_counter(fe, c.by_tenant, &[&tenant], 1);
    }
    if f.on(HEADERS) {
        let mut n = 0usize;
        host::for_each_header(fe, REQ, |k, v| n += k.len() + v.len());
        std::hint::black_box(n);
    }
    if f.on(ECHO_CONFIG) {
        let raw = f.cfg().raw.clone();
        host::set_header(fe, REQ, "x-proto-config", &raw);
    }
    if f.on(MUTATE) {
        host::add_header(fe, REQ, "x-proto-added", b"1");
        host::set_header(fe, REQ, "x-proto-replace", b"replaced");
        host::remove_header(fe, REQ, "x-proto-remove");
    }
    if f.on(TRACEPARENT) {
        host::set_header(
            fe,
            REQ,
            "traceparent",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
    }
    if f.on(ATTRS) {
        attributes(fe);
    }
    if f.on(DENY) && host::header(fe, REQ, "x-proto-deny").is_some() {
        return deny(fe, "denied by x-proto-deny");
    }
    if f.on(BUDGET) {
        let ok = f
            .cfg()
            .budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| {
                (r > 0).then(|| r - 1)
            })
            .is_ok();
        if !ok {
            return deny(fe, "budget exhausted");
        }
    }
    if f.on(REWRITE) {
        // `x-proto-rewrite: no-cl` leaves the client's content-length as it was, to show what that does.
        f.rewrite = host::header(fe, REQ, "x-proto-rewrite").map(|v| v != b"no-cl");
    }
    if f.on(CALLOUT) && host::header(fe, REQ, "x-proto-callout").is_some() {
        let (r, id) = host::stream_callout(
            fe,
            &f.cfg().settings.callout_cluster,
            &[
                (":method", "GET"),
                (":path", "/callout"),
                ("host", "sidecar"),
            ],
            b"",
            2000,
        );
        host::set_header(fe, REQ, "x-proto-callout-init", r.to_string().as_bytes());
        if r == callout_init::SUCCESS {
            host::set_header(fe, REQ, "x-proto-callout-id", id.to_string().as_bytes());
            f.paused_for = Some("callout");
            return headers_status::STOP_ITERATION;
        }
    }
    if f.on(SCHEDULE) && host::header(fe, REQ, "x-proto-schedule").is_some() {
        let (_, tid) = host::pid_tid();
        host::set_header(fe, REQ, "x-proto-headers-tid", tid.to_string().as_bytes());
        // SAFETY: the running hook's filter pointer.
        let sched = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(fe) } as usize;
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: the filter joins this thread before deleting the scheduler.
            unsafe {
                envoy_dynamic_module_callback_http_filter_scheduler_commit(
                    sched as FilterSchedulerPtr,
                    42,
                )
            };
        });
        f.scheduler = Some((sched, t));
        f.paused_for = Some("schedule");
        return headers_status::STOP_ITERATION;
    }
    if f.on(BODIES) && !eos {
        f.held = true;
        return headers_status::STOP_ITERATION;
    }
    headers_status::CONTINUE
}

fn deny(fe: FilterEnvoyPtr, why: &str) -> u32 {
    let body = format!(
        "{{\"error\":{{\"message\":\"{why}\",\"type\":\"insufficient_quota\",\"code\":\"tollgate_budget\"}}}}"
    );
    host::send_response(
        fe,
        429,
        &[
            ("content-type", "application/json"),
            ("retry-after", "30"),
            ("x-tollgate-refused", "budget"),
        ],
        body.as_bytes(),
        "tollgate_refused",
    );
    headers_status::STOP_ITERATION
}

fn attributes(fe: FilterEnvoyPtr) {
    const REQ: u32 = header_type::REQUEST_HEADER;
    let strs = [
        ("x-proto-attr-path", attribute_id::REQUEST_PATH),
        ("x-proto-attr-method", attribute_id::REQUEST_METHOD),
        ("x-proto-attr-protocol", attribute_id::REQUEST_PROTOCOL),
        ("x-proto-attr-source", attribute_id::SOURCE_ADDRESS),
        (
            "x-proto-attr-tls-version",
            attribute_id::CONNECTION_TLS_VERSION,
        ),
        (
            "x-proto-attr-subject-peer",
            attribute_id::CONNECTION_SUBJECT_PEER_CERTIFICATE,
        ),
        (
            "x-proto-attr-uri-san-peer",
            attribute_id::CONNECTION_URI_SAN_PEER_CERTIFICATE,
        ),
        (
            "x-proto-attr-dns-san-local",
            attribute_id::CONNECTION_DNS_SAN_LOCAL_CERTIFICATE,
        ),
    ];
    for (h, id) in strs {
        let v = host::attr_string(fe, id)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| b"<none>".to_vec());
        host::set_header(fe, REQ, h, &v);
    }
    let port = host::attr_int(fe, attribute_id::SOURCE_PORT)
        .map(|v| v.to_string())
        .unwrap_or("<none>".into());
    host::set_header(fe, REQ, "x-proto-attr-source-port", port.as_bytes());
    let mtls = host::attr_bool(fe, attribute_id::CONNECTION_MTLS)
        .map(|v| v.to_string())
        .unwrap_or("<none>".into());
    host::set_header(fe, REQ, "x-proto-attr-mtls", mtls.as_bytes());
    if host::header(fe, REQ, "x-proto-attr-scan").is_some() {
        // Every id the enum could hold, logged: what each returns in this Envoy (docs/dynamic-modules-abi.md).
        for id in 0..80u32 {
            let s = host::attr_string(fe, id).map(|b| String::from_utf8_lossy(b).into_owned());
            let i = host::attr_int(fe, id);
            let b = host::attr_bool(fe, id);
            host::log(
                log_level::WARN,
                &format!("tollgate-attr-scan id={id} string={s:?} int={i:?} bool={b:?}"),
            );
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    guard("on_http_filter_request_body", body_status::CONTINUE, || {
        request_body(fe, filter(fm), end_of_stream)
    })
}

fn request_body(fe: FilterEnvoyPtr, f: &mut Filter, eos: bool) -> u32 {
    f.body_callbacks += 1;
    if f.paused_for.is_some() && !eos {
        return body_status::STOP_ITERATION_AND_BUFFER;
    }
    if !f.held {
        return body_status::CONTINUE;
    }
    if !eos {
        return body_status::STOP_ITERATION_AND_BUFFER;
    }
    // The body is whole: what earlier callbacks buffered, then this callback's chunk. The checks digest
    // it; the floor measurement only borrows the slices (what a parser handed them would start from).
    let digest = f.on(REWRITE) || f.on(MUTATE);
    let mut hash = Fnv::new();
    let mut visit = |s: &[u8]| {
        if digest {
            hash.write(s)
        } else {
            std::hint::black_box(s);
        }
    };
    let buffered = host::for_each_body_slice(fe, body_type::BUFFERED_REQUEST, &mut visit);
    let received = host::for_each_body_slice(fe, body_type::RECEIVED_REQUEST, &mut visit);
    let whole = hash.finish();
    if digest {
        let report = format!(
            "callbacks={} buffered={buffered} received={received} fnv={whole:016x} received_is_buffered={}",
            f.body_callbacks,
            // SAFETY: the running hook's filter pointer.
            unsafe { envoy_dynamic_module_callback_http_received_buffered_request_body(fe) }
        );
        host::set_header(
            fe,
            header_type::REQUEST_HEADER,
            "x-proto-body",
            report.as_bytes(),
        );
    }
    if let Some(set_length) = f.rewrite {
        let new_body = format!(
            "{{\"rewritten\":true,\"original_bytes\":{}}}",
            buffered + received
        );
        let b = host::body_size(fe, body_type::BUFFERED_REQUEST);
        let r = host::body_size(fe, body_type::RECEIVED_REQUEST);
        let drained = host::drain_body(fe, body_type::BUFFERED_REQUEST, b)
            && host::drain_body(fe, body_type::RECEIVED_REQUEST, r);
        let appended = host::append_body(fe, body_type::RECEIVED_REQUEST, new_body.as_bytes());
        if set_length {
            host::set_header(
                fe,
                header_type::REQUEST_HEADER,
                "content-length",
                new_body.len().to_string().as_bytes(),
            );
        }
        host::set_header(
            fe,
            header_type::REQUEST_HEADER,
            "x-proto-rewrite-result",
            format!("drained={drained} appended={appended}").as_bytes(),
        );
    }
    f.held = false;
    body_status::CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _fe: FilterEnvoyPtr,
    _fm: FilterModulePtr,
) -> u32 {
    guard(
        "on_http_filter_request_trailers",
        trailers_status::CONTINUE,
        || trailers_status::CONTINUE,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    guard(
        "on_http_filter_response_headers",
        headers_status::CONTINUE,
        || {
            let f = filter(fm);
            const RESP: u32 = header_type::RESPONSE_HEADER;
            if f.on(HEADERS) {
                let mut n = 0usize;
                host::for_each_header(fe, RESP, |k, v| n += k.len() + v.len());
                std::hint::black_box(n);
            }
            if f.on(THREADS) {
                let (pid, tid) = host::pid_tid();
                // SAFETY: the running hook's filter pointer.
                let worker =
                    unsafe { envoy_dynamic_module_callback_http_filter_get_worker_index(fe) };
                host::set_header(fe, RESP, "x-proto-worker", worker.to_string().as_bytes());
                host::set_header(fe, RESP, "x-proto-pid", pid.to_string().as_bytes());
                host::set_header(fe, RESP, "x-proto-tid", tid.to_string().as_bytes());
                host::set_header(
                    fe,
                    RESP,
                    "x-proto-requests",
                    REQUESTS.load(Ordering::Relaxed).to_string().as_bytes(),
                );
            }
            headers_status::CONTINUE
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    guard(
        "on_http_filter_response_body",
        body_status::CONTINUE,
        || {
            let f = filter(fm);
            if f.on(BODIES) {
                // Each chunk as it passes, never held: a stream reaches the client event by event.
                host::for_each_body_slice(fe, body_type::RECEIVED_RESPONSE, |s| {
                    std::hint::black_box(s);
                });
            }
            if let (true, Some(c)) = (f.on(COUNTERS), &f.cfg().counters) {
                host::increment_counter(fe, c.response_chunks, &[], 1);
            }
            body_status::CONTINUE
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _fe: FilterEnvoyPtr,
    _fm: FilterModulePtr,
) -> u32 {
    guard(
        "on_http_filter_response_trailers",
        trailers_status::CONTINUE,
        || trailers_status::CONTINUE,
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
) {
    guard("on_http_filter_stream_complete", (), || {
        let f = filter(fm);
        if let Some(c) = &f.cfg().counters {
            let p = PANICS.swap(0, Ordering::Relaxed);
            if p > 0 {
                host::increment_counter(fe, c.panics, &[], p);
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(fm: FilterModulePtr) {
    guard("on_http_filter_destroy", (), || {
        // SAFETY: the pointer on_http_filter_new returned; destroyed exactly once.
        let mut f = unsafe { Box::from_raw(fm as *mut Filter) };
        if let Some((sched, t)) = f.scheduler.take() {
            let _ = t.join();
            // SAFETY: its committer has exited.
            unsafe {
                envoy_dynamic_module_callback_http_filter_scheduler_delete(
                    sched as FilterSchedulerPtr,
                )
            };
        }
    })
}

/// Worker thread: the stream callout answered. Record the answer in the request and resume it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    _callout_id: u64,
    result: u32,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body: *mut EnvoyBuffer,
    body_size: usize,
) {
    let resumed = guard("on_http_filter_http_callout_done", false, || {
        const REQ: u32 = header_type::REQUEST_HEADER;
        let status = status_of(headers, headers_size)
            .map(<[u8]>::to_vec)
            .unwrap_or_else(|| b"none".to_vec());
        let mut text = Vec::new();
        if !body.is_null() {
            // SAFETY: Envoy's array of `body_size` slices, valid for this hook.
            for s in unsafe { std::slice::from_raw_parts(body, body_size) } {
                text.extend_from_slice(unsafe { s.as_slice() });
            }
        }
        let (_, tid) = host::pid_tid();
        host::set_header(
            fe,
            REQ,
            "x-proto-callout-result",
            result.to_string().as_bytes(),
        );
        host::set_header(fe, REQ, "x-proto-callout-status", &status);
        host::set_header(fe, REQ, "x-proto-callout-body", &text);
        host::set_header(fe, REQ, "x-proto-callout-tid", tid.to_string().as_bytes());
        filter(fm).paused_for = None;
        // SAFETY: the running hook's filter pointer.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(fe) };
        true
    });
    if !resumed {
        // Fail open: a fault must not leave the request paused.
        filter(fm).paused_for = None;
        // SAFETY: as above.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(fe) };
    }
}

/// Worker thread: an event committed from another thread through the stream's scheduler.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    fe: FilterEnvoyPtr,
    fm: FilterModulePtr,
    event_id: u64,
) {
    guard("on_http_filter_scheduled", (), || {
        let f = filter(fm);
        let (_, tid) = host::pid_tid();
        host::set_header(
            fe,
            header_type::REQUEST_HEADER,
            "x-proto-scheduled",
            format!("event={event_id} tid={tid}").as_bytes(),
        );
        if let Some((sched, t)) = f.scheduler.take() {
            let _ = t.join();
            // SAFETY: its committer has exited.
            unsafe {
                envoy_dynamic_module_callback_http_filter_scheduler_delete(
                    sched as FilterSchedulerPtr,
                )
            };
        }
        f.paused_for = None;
        // SAFETY: the running hook's filter pointer.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(fe) };
    })
}

// Hooks Envoy 1.40 requires at load even when the module never uses them; guarded like the others, so
// that a body added later is covered.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _fe: FilterEnvoyPtr,
    _fm: FilterModulePtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
    guard("on_http_filter_http_stream_headers", (), || {})
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _fe: FilterEnvoyPtr,
    _fm: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
    guard("on_http_filter_http_stream_data", (), || {})
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _fe: FilterEnvoyPtr,
    _fm: FilterModulePtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
    guard("on_http_filter_http_stream_trailers", (), || {})
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _fe: FilterEnvoyPtr,
    _fm: FilterModulePtr,
    _stream_id: u64,
) {
    guard("on_http_filter_http_stream_complete", (), || {})
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _fe: FilterEnvoyPtr,
    _fm: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
    guard("on_http_filter_http_stream_reset", (), || {})
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _fe: FilterEnvoyPtr,
    _fm: FilterModulePtr,
) {
    guard(
        "on_http_filter_downstream_above_write_buffer_high_watermark",
        (),
        || {},
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _fe: FilterEnvoyPtr,
    _fm: FilterModulePtr,
) {
    guard(
        "on_http_filter_downstream_below_write_buffer_low_watermark",
        (),
        || {},
    )
}

/// FNV-1a 64: a dependency-free digest the check driver recomputes to compare bodies.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
