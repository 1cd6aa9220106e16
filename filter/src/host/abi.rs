//! Non-panicking wrappers over the proxy-wasm ABI for the calls on the data path. The SDK's `hostcalls`
//! panic on any unexpected status (and `get_map_value` unwraps UTF-8, so one non-UTF-8 header value would
//! abort the VM); a panic here takes every request on this worker down, so these return `None`/`false`.

use crate::codec::headers::Headers;
use proxy_wasm::types::{BufferType, MapType, Status, StreamType};
use std::ptr::null_mut;
use std::time::Duration;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_add_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
    fn proxy_continue_stream(stream_type: StreamType) -> Status;
    fn proxy_set_effective_context(context_id: u32) -> Status;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> Status;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> Status;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> Status;
}

/// Take ownership of a host-returned buffer. The host allocates it through the SDK's exported
/// `proxy_on_memory_allocate`, which hands out a `Vec<u8>` of exactly `size` capacity.
unsafe fn owned(ptr: *mut u8, size: usize) -> Vec<u8> {
    if ptr.is_null() {
        Vec::new()
    } else {
        // SAFETY: see above; the host transfers ownership of [ptr, ptr+size) to us.
        unsafe { Vec::from_raw_parts(ptr, size, size) }
    }
}

/// A whole header map in one host call (empty on any host error). Reading several headers this way costs
/// one crossing of the Wasm boundary and one allocation callback instead of one of each per header.
pub fn headers(map: MapType) -> Headers {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: pointers are valid for the call; ownership of the result is taken by `owned`.
    unsafe {
        match proxy_get_header_map_pairs(map, &mut data, &mut size) {
            Status::Ok => Headers::new(owned(data, size)),
            _ => Headers::default(),
        }
    }
}

pub fn set_header(map: MapType, name: &str, value: &str) -> bool {
    // SAFETY: pointers valid for the duration of the call.
    unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
            == Status::Ok
    }
}

/// Add a value to the map (beside any it already has).
pub fn add_header(map: MapType, name: &str, value: &str) -> bool {
    // SAFETY: pointers valid for the duration of the call.
    unsafe {
        proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
            == Status::Ok
    }
}

pub fn remove_header(map: MapType, name: &str) -> bool {
    // SAFETY: pointers valid for the duration of the call.
    unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) == Status::Ok }
}

/// Bytes `[start, start+max)` of a body buffer; empty on any error.
pub fn buffer(kind: BufferType, start: usize, max: usize) -> Vec<u8> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `headers`.
    unsafe {
        match proxy_get_buffer_bytes(kind, start, max, &mut data, &mut size) {
            Status::Ok => owned(data, size),
            _ => Vec::new(),
        }
    }
}

/// Replace bytes `[start, start+size)` of a body buffer with `value`.
pub fn set_buffer(kind: BufferType, start: usize, size: usize, value: &[u8]) -> bool {
    // SAFETY: pointers valid for the duration of the call.
    unsafe { proxy_set_buffer_bytes(kind, start, size, value.as_ptr(), value.len()) == Status::Ok }
}

/// Send a local reply (budget denial, block rule). The exchange then pauses the stream.
pub fn send_reply(reply: &crate::reply::Reply) -> bool {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    send_local_response(u32::from(reply.status), &headers, &reply.body)
}

/// Answer the request locally. The caller then returns `Action::Pause`.
pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let h = crate::codec::headers::serialize(headers);
    // SAFETY: pointers valid for the duration of the call.
    unsafe {
        proxy_send_local_response(
            status,
            null_mut(),
            0,
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            -1,
        ) == Status::Ok
    }
}

/// Let a request paused in a body callback go on (after an asynchronous admission).
pub fn resume_request() -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_continue_stream(StreamType::HttpRequest) == Status::Ok }
}

/// Make `context_id` the context the following host calls act on (for the rest of this callback); false
/// when the context is gone. The SDK's wrapper panics on a status other than `BadArgument`.
pub fn set_effective_context(context_id: u32) -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_set_effective_context(context_id) == Status::Ok }
}

/// An integer property (Envoy serializes integers as 8 little-endian bytes).
pub fn property_u64(path: &[&str]) -> Option<u64> {
    let bytes: [u8; 8] = property(path)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// A unary gRPC call; the token, or None when Envoy refused to start it (unknown cluster, no client).
///
/// This goes through the SDK's `hostcalls::dispatch_grpc_call` on purpose: only it registers the token with
/// the SDK's dispatcher, which is what routes the answer to the calling context's `on_grpc_call_response`
/// (a raw `proxy_grpc_call` here would be answered into the void). It panics only on a status Envoy
/// returns for none of our inputs: `BadArgument` when the gRPC client cannot be built from the
/// `GrpcService` (it can always be for an `envoy_grpc` one, whose cluster is not checked at dispatch) and
/// `InvalidMemoryAccess` (our slices are valid). `upstream` must be the UTF-8 `GrpcService` bytes
/// (`rls::grpc_service`, ASCII for the names config validation admits) or a bare cluster name.
pub fn grpc_call(
    upstream: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Option<u32> {
    proxy_wasm::hostcalls::dispatch_grpc_call(
        upstream,
        service,
        method,
        vec![],
        Some(message),
        timeout,
    )
    .ok()
}

/// Process-wide shared data (all workers of this vm_id): the value and its CAS token; None when absent or
/// on any host error.
pub fn get_shared_data(key: &str) -> Option<(Vec<u8>, u32)> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: as in `headers`.
    unsafe {
        match proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) {
            Status::Ok => Some((owned(data, size), cas)),
            _ => None,
        }
    }
}

/// Outcome of a shared-data write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetShared {
    Ok,
    CasMismatch,
    Failed,
}

/// Write shared data if its CAS token is still `cas` (0 = unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> SetShared {
    // SAFETY: pointers valid for the duration of the call.
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        Status::Ok => SetShared::Ok,
        Status::CasMismatch => SetShared::CasMismatch,
        _ => SetShared::Failed,
    }
}

/// A host property (`["metadata", "filter_metadata", ...]`); None when absent or on any error.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let mut p = Vec::new();
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            p.push(0);
        }
        p.extend_from_slice(part.as_bytes());
    }
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `headers`.
    unsafe {
        match proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size) {
            Status::Ok if !data.is_null() => Some(owned(data, size)),
            _ => None,
        }
    }
}
