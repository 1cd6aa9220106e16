//! Thin safe wrappers over the ABI calls the prototype makes. Each borrows Envoy's memory only for the
//! duration of the current event hook, which is what the ABI guarantees.

use crate::abi::*;

pub fn log(level: u32, msg: &str) {
    // SAFETY: the message buffer is ours and valid for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(msg.as_bytes())) }
}

/// The first value of a header, borrowed from Envoy's map until the end of the current hook.
pub fn header<'a>(f: FilterEnvoyPtr, ty: u32, key: &str) -> Option<&'a [u8]> {
    let mut out = EnvoyBuffer::NULL;
    let mut count = 0usize;
    // SAFETY: `f` is the filter pointer Envoy passed to the running hook; out-params are valid locals.
    let ok = unsafe {
        envoy_dynamic_module_callback_http_get_header(
            f,
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

/// Runs `use_slots` on `n` slots for Envoy to fill: on the stack up to 32, else on the heap.
fn with_slots<T: Copy, R>(n: usize, null: T, use_slots: impl FnOnce(&mut [T]) -> R) -> R {
    let mut stack = [null; 32];
    let mut heap;
    let slots = if n <= stack.len() {
        &mut stack[..n]
    } else {
        heap = vec![null; n];
        &mut heap[..]
    };
    use_slots(slots)
}

/// Visits every header of a map (the whole map in one call, as tollgate reads it) and returns the count.
pub fn for_each_header(f: FilterEnvoyPtr, ty: u32, mut visit: impl FnMut(&[u8], &[u8])) -> usize {
    // SAFETY: `f` is the running hook's filter pointer.
    let n = unsafe { envoy_dynamic_module_callback_http_get_headers_size(f, ty) };
    if n == 0 {
        return 0;
    }
    with_slots(n, EnvoyHttpHeader::NULL, |slots| {
        // SAFETY: `slots` has room for the `n` headers Envoy reported for this map in this hook.
        if !unsafe { envoy_dynamic_module_callback_http_get_headers(f, ty, slots.as_mut_ptr()) } {
            return 0;
        }
        for h in slots.iter() {
            // SAFETY: key and value point into Envoy's header map, valid until the end of the hook.
            let (k, v) = unsafe {
                (
                    EnvoyBuffer {
                        ptr: h.key_ptr,
                        length: h.key_length,
                    }
                    .as_slice(),
                    EnvoyBuffer {
                        ptr: h.value_ptr,
                        length: h.value_length,
                    }
                    .as_slice(),
                )
            };
            visit(k, v);
        }
        n
    })
}

pub fn add_header(f: FilterEnvoyPtr, ty: u32, key: &str, value: &[u8]) -> bool {
    // SAFETY: module buffers valid for the call; Envoy copies them.
    unsafe {
        envoy_dynamic_module_callback_http_add_header(
            f,
            ty,
            ModuleBuffer::of(key.as_bytes()),
            ModuleBuffer::of(value),
        )
    }
}

pub fn set_header(f: FilterEnvoyPtr, ty: u32, key: &str, value: &[u8]) -> bool {
    // SAFETY: as above.
    unsafe {
        envoy_dynamic_module_callback_http_set_header(
            f,
            ty,
            ModuleBuffer::of(key.as_bytes()),
            ModuleBuffer::of(value),
        )
    }
}

pub fn remove_header(f: FilterEnvoyPtr, ty: u32, key: &str) -> bool {
    // SAFETY: a null value asks Envoy to remove the header.
    unsafe {
        envoy_dynamic_module_callback_http_set_header(
            f,
            ty,
            ModuleBuffer::of(key.as_bytes()),
            ModuleBuffer::NULL,
        )
    }
}

/// Visits the slices of a body buffer without copying; returns the total size.
pub fn for_each_body_slice(f: FilterEnvoyPtr, ty: u32, mut visit: impl FnMut(&[u8])) -> usize {
    // SAFETY: `f` is the running hook's filter pointer.
    let n = unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(f, ty) };
    if n == 0 {
        return 0;
    }
    with_slots(n, EnvoyBuffer::NULL, |slots| {
        // SAFETY: room for the `n` slices Envoy reported.
        if !unsafe { envoy_dynamic_module_callback_http_get_body_chunks(f, ty, slots.as_mut_ptr()) }
        {
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

pub fn body_size(f: FilterEnvoyPtr, ty: u32) -> usize {
    // SAFETY: `f` is the running hook's filter pointer.
    unsafe { envoy_dynamic_module_callback_http_get_body_size(f, ty) }
}

pub fn drain_body(f: FilterEnvoyPtr, ty: u32, n: usize) -> bool {
    // SAFETY: as above.
    unsafe { envoy_dynamic_module_callback_http_drain_body(f, ty, n) }
}

pub fn append_body(f: FilterEnvoyPtr, ty: u32, data: &[u8]) -> bool {
    // SAFETY: our buffer, copied by Envoy.
    unsafe { envoy_dynamic_module_callback_http_append_body(f, ty, ModuleBuffer::of(data)) }
}

pub fn send_response(
    f: FilterEnvoyPtr,
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
    details: &str,
) {
    let mut hs: Vec<ModuleHttpHeader> = headers
        .iter()
        .map(|(k, v)| ModuleHttpHeader::of(k.as_bytes(), v.as_bytes()))
        .collect();
    // SAFETY: every pointer refers to memory alive for the call; Envoy copies what it keeps.
    unsafe {
        envoy_dynamic_module_callback_http_send_response(
            f,
            status,
            hs.as_mut_ptr(),
            hs.len(),
            ModuleBuffer::of(body),
            ModuleBuffer::of(details.as_bytes()),
        )
    }
}

pub fn attr_string<'a>(f: FilterEnvoyPtr, id: u32) -> Option<&'a [u8]> {
    let mut out = EnvoyBuffer::NULL;
    // SAFETY: valid out-param; the result is Envoy's, valid until the end of the hook.
    if unsafe { envoy_dynamic_module_callback_http_filter_get_attribute_string(f, id, &mut out) } {
        Some(unsafe { out.as_slice() })
    } else {
        None
    }
}

pub fn attr_int(f: FilterEnvoyPtr, id: u32) -> Option<u64> {
    let mut out = 0u64;
    // SAFETY: valid out-param.
    if unsafe { envoy_dynamic_module_callback_http_filter_get_attribute_int(f, id, &mut out) } {
        Some(out)
    } else {
        None
    }
}

pub fn attr_bool(f: FilterEnvoyPtr, id: u32) -> Option<bool> {
    let mut out = false;
    // SAFETY: valid out-param.
    if unsafe { envoy_dynamic_module_callback_http_filter_get_attribute_bool(f, id, &mut out) } {
        Some(out)
    } else {
        None
    }
}

/// The signature shared by the stream and config callout calls, after their first argument.
type CalloutFn = unsafe extern "C" fn(
    *mut std::ffi::c_void,
    *mut u64,
    ModuleBuffer,
    *mut ModuleHttpHeader,
    usize,
    ModuleBuffer,
    u64,
) -> u32;

fn callout(
    issue: CalloutFn,
    owner: *mut std::ffi::c_void,
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u64,
) -> (u32, u64) {
    let mut hs: Vec<ModuleHttpHeader> = headers
        .iter()
        .map(|(k, v)| ModuleHttpHeader::of(k.as_bytes(), v.as_bytes()))
        .collect();
    let mut id = 0u64;
    // SAFETY: all buffers are alive for the call; Envoy copies the request before returning.
    let r = unsafe {
        issue(
            owner,
            &mut id,
            ModuleBuffer::of(cluster.as_bytes()),
            hs.as_mut_ptr(),
            hs.len(),
            ModuleBuffer::of(body),
            timeout_ms,
        )
    };
    (r, id)
}

/// A one-shot HTTP callout from a stream (answered on its worker); returns the init result and the id.
pub fn stream_callout(
    f: FilterEnvoyPtr,
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u64,
) -> (u32, u64) {
    callout(
        envoy_dynamic_module_callback_http_filter_http_callout,
        f,
        cluster,
        headers,
        body,
        timeout_ms,
    )
}

/// A one-shot HTTP callout from the filter config (main thread only).
pub fn config_callout(
    c: FilterConfigEnvoyPtr,
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u64,
) -> (u32, u64) {
    callout(
        envoy_dynamic_module_callback_http_filter_config_http_callout,
        c,
        cluster,
        headers,
        body,
        timeout_ms,
    )
}

/// Defines a counter (only valid inside `on_http_filter_config_new`); returns its id.
pub fn define_counter(c: FilterConfigEnvoyPtr, name: &str, labels: &[&str]) -> Result<usize, u32> {
    let mut ls: Vec<ModuleBuffer> = labels
        .iter()
        .map(|l| ModuleBuffer::of(l.as_bytes()))
        .collect();
    let mut id = 0usize;
    // SAFETY: buffers alive for the call.
    let r = unsafe {
        envoy_dynamic_module_callback_http_filter_config_define_counter(
            c,
            ModuleBuffer::of(name.as_bytes()),
            ls.as_mut_ptr(),
            ls.len(),
            &mut id,
        )
    };
    if r == metrics_result::SUCCESS {
        Ok(id)
    } else {
        Err(r)
    }
}

pub fn increment_counter(f: FilterEnvoyPtr, id: usize, labels: &[&[u8]], value: u64) -> u32 {
    let mut ls: Vec<ModuleBuffer> = labels.iter().map(|l| ModuleBuffer::of(l)).collect();
    // SAFETY: buffers alive for the call.
    unsafe {
        envoy_dynamic_module_callback_http_filter_increment_counter(
            f,
            id,
            ls.as_mut_ptr(),
            ls.len(),
            value,
        )
    }
}

pub fn config_increment_counter(c: FilterConfigEnvoyPtr, id: usize, value: u64) -> u32 {
    // SAFETY: no labels.
    unsafe {
        envoy_dynamic_module_callback_http_filter_config_increment_counter(
            c,
            id,
            std::ptr::null_mut(),
            0,
            value,
        )
    }
}

/// The OS process and thread ids of the caller, from `/proc/thread-self` (`<pid>/task/<tid>`).
pub fn pid_tid() -> (u64, u64) {
    let link = std::fs::read_link("/proc/thread-self").unwrap_or_default();
    let s = link.to_string_lossy();
    let mut parts = s.split('/');
    let pid = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let tid = parts.nth(1).and_then(|t| t.parse().ok()).unwrap_or(0);
    (pid, tid)
}
