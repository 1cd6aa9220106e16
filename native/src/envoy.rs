//! Safe wrappers over the ABI calls the native host makes (the only file that calls `abi`'s functions).
//!
//! Each wrapper borrows Envoy's memory only for the duration of the current event hook, which is what the ABI
//! guarantees (docs/dynamic-modules-abi.md §7), and passes module memory that lives for the call (Envoy copies
//! it). The unit tests compile `envoy_fake.rs` in its place: the same functions over a recording fake.

use crate::abi::*;

/// Envoy's per-stream filter (`envoy_dynamic_module_type_http_filter_envoy_ptr`), valid during the stream's
/// hooks on its worker thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream(pub FilterEnvoyPtr);

/// Envoy's filter config (`envoy_dynamic_module_type_http_filter_config_envoy_ptr`). Its calls are made on
/// the main thread only (config creation, the config's scheduled events and callout answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigHandle(pub FilterConfigEnvoyPtr);

pub fn log(level: u32, msg: &str) {
    // SAFETY: the message buffer is ours and valid for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(msg.as_bytes())) }
}

pub fn log_enabled(level: u32) -> bool {
    // SAFETY: no pointers.
    unsafe { envoy_dynamic_module_callback_log_enabled(level) }
}

/// Envoy's worker count (`--concurrency`). Main thread only (program init or config creation).
pub fn concurrency() -> u32 {
    // SAFETY: no pointers; called from `config_new` on the main thread.
    unsafe { envoy_dynamic_module_callback_get_concurrency() }
}

impl Stream {
    /// The index of the worker running this stream (0 ..< concurrency).
    pub fn worker_index(self) -> u32 {
        // SAFETY: the running hook's filter pointer.
        unsafe { envoy_dynamic_module_callback_http_filter_get_worker_index(self.0) }
    }

    /// The first value of a header, borrowed from Envoy's map until the end of the current hook.
    pub fn header<'a>(self, ty: u32, key: &str) -> Option<&'a [u8]> {
        let mut out = EnvoyBuffer::NULL;
        let mut count = 0usize;
        // SAFETY: the running hook's filter pointer; out-params are valid locals.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                ty,
                ModuleBuffer::of(key.as_bytes()),
                &mut out,
                0,
                &mut count,
            )
        };
        if ok && count > 0 && !out.ptr.is_null() {
            // SAFETY: Envoy's buffer, valid until the end of the hook.
            Some(unsafe { out.as_slice() })
        } else {
            None
        }
    }

    /// Visits every header of a map (the whole map in one call) and returns the count.
    pub fn for_each_header(self, ty: u32, mut visit: impl FnMut(&[u8], &[u8])) -> usize {
        // SAFETY: the running hook's filter pointer.
        let n = unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.0, ty) };
        if n == 0 {
            return 0;
        }
        with_slots(n, EnvoyHttpHeader::NULL, |slots| {
            // SAFETY: `slots` has room for the `n` headers Envoy reported for this map in this hook.
            if !unsafe {
                envoy_dynamic_module_callback_http_get_headers(self.0, ty, slots.as_mut_ptr())
            } {
                return 0;
            }
            for h in slots.iter() {
                // SAFETY: key and value point into Envoy's header map, valid until the end of the hook.
                let (k, v) = unsafe {
                    (
                        slice(h.key_ptr, h.key_length),
                        slice(h.value_ptr, h.value_length),
                    )
                };
                visit(k, v);
            }
            n
        })
    }

    /// A whole header map as (name, value) slices into Envoy's map, valid until the end of the current hook.
    pub fn headers<'a>(self, ty: u32) -> Vec<(&'a [u8], &'a [u8])> {
        let mut out = Vec::new();
        self.for_each_header(ty, |k, v| {
            // SAFETY: the slices point into Envoy's map, which outlives this call until the hook returns;
            // re-borrowing them for 'a only drops the closure's shorter lifetime.
            out.push(unsafe { (slice(k.as_ptr(), k.len()), slice(v.as_ptr(), v.len())) })
        });
        out
    }

    /// Appends a value (an existing header keeps its values).
    pub fn add_header(self, ty: u32, key: &str, value: &[u8]) -> bool {
        // SAFETY: module buffers valid for the call; Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.0,
                ty,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    /// Replaces every value of a header.
    pub fn set_header(self, ty: u32, key: &str, value: &[u8]) -> bool {
        // SAFETY: as above.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                ty,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    pub fn remove_header(self, ty: u32, key: &str) -> bool {
        // SAFETY: a null value asks Envoy to remove the header.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                ty,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::NULL,
            )
        }
    }

    /// Visits the slices of a body buffer without copying; returns the total size.
    pub fn for_each_body_slice(self, ty: u32, mut visit: impl FnMut(&[u8])) -> usize {
        // SAFETY: the running hook's filter pointer.
        let n = unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, ty) };
        if n == 0 {
            return 0;
        }
        with_slots(n, EnvoyBuffer::NULL, |slots| {
            // SAFETY: room for the `n` slices Envoy reported.
            if !unsafe {
                envoy_dynamic_module_callback_http_get_body_chunks(self.0, ty, slots.as_mut_ptr())
            } {
                return 0;
            }
            let mut total = 0;
            for s in slots.iter() {
                // SAFETY: Envoy's slice, valid until the end of the hook.
                let bytes = unsafe { s.as_slice() };
                total += bytes.len();
                visit(bytes);
            }
            total
        })
    }

    pub fn body_size(self, ty: u32) -> usize {
        // SAFETY: the running hook's filter pointer.
        unsafe { envoy_dynamic_module_callback_http_get_body_size(self.0, ty) }
    }

    pub fn drain_body(self, ty: u32, n: usize) -> bool {
        // SAFETY: as above.
        unsafe { envoy_dynamic_module_callback_http_drain_body(self.0, ty, n) }
    }

    pub fn append_body(self, ty: u32, data: &[u8]) -> bool {
        // SAFETY: our buffer, copied by Envoy.
        unsafe {
            envoy_dynamic_module_callback_http_append_body(self.0, ty, ModuleBuffer::of(data))
        }
    }

    /// A local reply: Envoy answers the client with it and the request goes no further.
    pub fn send_response(self, status: u32, headers: &[(&str, &[u8])], body: &[u8], details: &str) {
        let mut hs: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader::of(k.as_bytes(), v))
            .collect();
        // SAFETY: every pointer refers to memory alive for the call; Envoy copies what it keeps.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                hs.as_mut_ptr(),
                hs.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            )
        }
    }

    /// Resume a request the filter paused (returned a Stop status for) from a later event.
    pub fn continue_decoding(self) {
        // SAFETY: the running hook's filter pointer.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    /// Resume a response the filter paused.
    pub fn continue_encoding(self) {
        // SAFETY: as above.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_encoding(self.0) }
    }

    pub fn attr_string<'a>(self, id: u32) -> Option<&'a [u8]> {
        let mut out = EnvoyBuffer::NULL;
        // SAFETY: valid out-param; the result is Envoy's, valid until the end of the hook.
        if unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(self.0, id, &mut out)
        } {
            // SAFETY: as above.
            Some(unsafe { out.as_slice() })
        } else {
            None
        }
    }

    pub fn attr_int(self, id: u32) -> Option<u64> {
        let mut out = 0u64;
        // SAFETY: valid out-param.
        if unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_int(self.0, id, &mut out)
        } {
            Some(out)
        } else {
            None
        }
    }

    /// Adds `value` to a counter the stream's config defined (any worker: Envoy's counters are atomic).
    pub fn increment_counter(self, id: usize, value: u64) -> u32 {
        // SAFETY: no labels; the filter pointer of the running hook.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                value,
            )
        }
    }

    /// Starts a streamed callout to `cluster` from this stream. The answer arrives in the stream's
    /// `on_http_filter_http_stream_*` hooks, on this worker; the callout dies with the stream. Returns
    /// Envoy's `http_callout_init_result` and the stream id.
    pub fn start_http_stream(
        self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        end_stream: bool,
        timeout_ms: u64,
    ) -> (u32, u64) {
        request(cluster, headers, body, |id, cluster, hs, n, body| {
            // SAFETY: the running hook's filter pointer; buffers alive for the call; Envoy copies the headers
            // and the body before returning.
            unsafe {
                envoy_dynamic_module_callback_http_filter_start_http_stream(
                    self.0, id, cluster, hs, n, body, end_stream, timeout_ms,
                )
            }
        })
    }

    pub fn reset_http_stream(self, stream_id: u64) {
        // SAFETY: the running hook's filter pointer; an unknown id is ignored by Envoy.
        unsafe { envoy_dynamic_module_callback_http_filter_reset_http_stream(self.0, stream_id) }
    }
}

impl ConfigHandle {
    /// Defines a counter (only valid inside `on_http_filter_config_new`); returns its id.
    pub fn define_counter(self, name: &str) -> Result<usize, u32> {
        self.define(
            envoy_dynamic_module_callback_http_filter_config_define_counter,
            name,
        )
    }

    /// Defines a gauge (only valid inside `on_http_filter_config_new`); returns its id.
    pub fn define_gauge(self, name: &str) -> Result<usize, u32> {
        self.define(
            envoy_dynamic_module_callback_http_filter_config_define_gauge,
            name,
        )
    }

    fn define(self, define: DefineFn, name: &str) -> Result<usize, u32> {
        let mut id = 0usize;
        // SAFETY: the config pointer Envoy passed to the running hook; buffers alive for the call; no labels.
        let r = unsafe {
            define(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        if r == metrics_result::SUCCESS {
            Ok(id)
        } else {
            Err(r)
        }
    }

    /// Adds `value` to a counter this config defined (main thread).
    pub fn increment_counter(self, id: usize, value: u64) -> u32 {
        // SAFETY: no labels; the config pointer of the running hook.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                value,
            )
        }
    }

    /// Sets a gauge this config defined (main thread).
    pub fn set_gauge(self, id: usize, value: u64) -> u32 {
        // SAFETY: as above.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                value,
            )
        }
    }

    /// A one-shot HTTP callout from the config (main thread only: Envoy resolves the cluster through the
    /// calling thread's cluster manager). The answer arrives in `on_http_filter_config_http_callout_done`.
    /// Returns Envoy's `http_callout_init_result` and the callout id.
    pub fn http_callout(
        self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> (u32, u64) {
        request(cluster, headers, body, |id, cluster, hs, n, body| {
            // SAFETY: the config pointer of the running hook; buffers alive for the call; Envoy copies the
            // request before returning.
            unsafe {
                envoy_dynamic_module_callback_http_filter_config_http_callout(
                    self.0, id, cluster, hs, n, body, timeout_ms,
                )
            }
        })
    }

    /// A streamed callout from the config (main thread only), sent whole (`end_stream`); the answer arrives
    /// in `on_http_filter_config_http_stream_*`.
    pub fn start_http_stream(
        self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> (u32, u64) {
        request(cluster, headers, body, |id, cluster, hs, n, body| {
            // SAFETY: as above.
            unsafe {
                envoy_dynamic_module_callback_http_filter_config_start_http_stream(
                    self.0, id, cluster, hs, n, body, true, timeout_ms,
                )
            }
        })
    }

    /// A scheduler whose `commit` (from any thread) runs `on_http_filter_config_scheduled` on the main
    /// thread. Main thread only.
    pub fn new_scheduler(self) -> Option<ConfigScheduler> {
        // SAFETY: the config pointer of the running hook.
        let p = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        (!p.is_null()).then_some(ConfigScheduler(p as usize))
    }
}

type DefineFn = unsafe extern "C" fn(
    FilterConfigEnvoyPtr,
    ModuleBuffer,
    *mut ModuleBuffer,
    usize,
    *mut usize,
) -> u32;

/// A config scheduler Envoy allocated for the module (`..._config_scheduler_module_ptr`). `commit` is
/// thread-safe (abi.h); the module deletes it once no thread can commit any more.
#[derive(Debug)]
pub struct ConfigScheduler(usize);

impl ConfigScheduler {
    /// The pointer, for a copy that only commits (`plugin::SharedScheduler`).
    pub fn raw(&self) -> usize {
        self.0
    }

    pub fn commit(&self, event_id: u64) {
        // SAFETY: a live scheduler (deleted only by `delete`, after every committer stopped).
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                self.0 as ConfigSchedulerPtr,
                event_id,
            )
        }
    }

    /// Frees it. The caller guarantees no thread commits any more.
    pub fn delete(self) {
        // SAFETY: created by `new_scheduler`, deleted once (this consumes it).
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                self.0 as ConfigSchedulerPtr,
            )
        }
    }
}

/// Commit to a config scheduler known by its raw pointer (from another thread; commit is thread-safe).
pub fn commit_raw(scheduler: usize, event_id: u64) {
    // SAFETY: the caller holds a scheduler that is deleted only after every committer stopped.
    unsafe {
        envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
            scheduler as ConfigSchedulerPtr,
            event_id,
        )
    }
}

fn module_headers(headers: &[(&str, &[u8])]) -> Vec<ModuleHttpHeader> {
    headers
        .iter()
        .map(|(k, v)| ModuleHttpHeader::of(k.as_bytes(), v))
        .collect()
}

/// The arguments every callout call takes, made from ours: `issue` gets the id out-parameter, the cluster,
/// the header array and its length, and the body; the result is Envoy's init result and the id.
fn request(
    cluster: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    issue: impl FnOnce(*mut u64, ModuleBuffer, *mut ModuleHttpHeader, usize, ModuleBuffer) -> u32,
) -> (u32, u64) {
    let mut hs = module_headers(headers);
    let mut id = 0u64;
    let r = issue(
        &mut id,
        ModuleBuffer::of(cluster.as_bytes()),
        hs.as_mut_ptr(),
        hs.len(),
        ModuleBuffer::of(body),
    );
    (r, id)
}

/// Runs `use_slots` on `n` slots for Envoy to fill: on the stack up to 32, else on the heap.
fn with_slots<T: Copy, R>(n: usize, null: T, use_slots: impl FnOnce(&mut [T]) -> R) -> R {
    let mut stack = [null; 32];
    let mut heap;
    let slots = match stack.get_mut(..n) {
        Some(s) => s,
        None => {
            heap = vec![null; n];
            &mut heap[..]
        }
    };
    use_slots(slots)
}
