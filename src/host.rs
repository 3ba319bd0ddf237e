//! Non-panicking host calls.
//!
//! Thin bindings to the proxy-wasm host functions. They hand back raw bytes and report failures
//! as `Err(status)`: request data may hold any byte Envoy lets through, and a panic would kill the
//! worker's VM and fail every later request on it. (The proxy-wasm SDK 0.2.5 panics on statuses it
//! does not expect and on header values that are not UTF-8.)

use std::ptr::{null, null_mut};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_log(level: u32, message: *const u8, message_size: usize) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_define_metric(metric_type: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

/// What `proxy_on_request_headers` answers (Envoy's `FilterHeadersStatus`).
pub const CONTINUE: u32 = 0;
pub const STOP_ITERATION: u32 = 1;

pub const REQUEST_HEADERS: u32 = 0;
pub const CALL_RESPONSE_HEADERS: u32 = 6;
pub const BUFFER_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
const STREAM_REQUEST: u32 = 0;

pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_GAUGE: u32 = 1;
pub const METRIC_HISTOGRAM: u32 = 2;

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate` (the SDK's
/// allocator, a `Vec<u8>` with capacity == length).
unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        Vec::from_raw_parts(data, size, size)
    }
}

/// The `(name, value)` pairs of a header map, on the stack for a typical request (a browser
/// request behind an authenticating proxy carries 15-30 lines).
pub type HeaderPairs<'m> = smallvec::SmallVec<[(&'m [u8], &'m [u8]); 32]>;

/// A serialized header map as the host returns it; parsed lazily into borrowed slices.
pub struct HeaderMap {
    bytes: Vec<u8>,
}

impl HeaderMap {
    /// `(name, value)` pairs borrowed from the buffer. A malformed buffer yields the pairs that
    /// could be read; it never panics.
    pub fn pairs(&self) -> HeaderPairs<'_> {
        let bytes = &self.bytes;
        let read_u32 = |at: usize| -> Option<usize> {
            let slice = bytes.get(at..at + 4)?;
            let array: [u8; 4] = slice.try_into().ok()?;
            Some(u32::from_le_bytes(array) as usize)
        };
        let Some(count) = read_u32(0) else {
            return HeaderPairs::new();
        };
        let count = count.min(bytes.len() / 8);
        let mut pairs = HeaderPairs::new();
        let mut data_at = 4 + count * 8;
        for index in 0..count {
            let (Some(name_len), Some(value_len)) =
                (read_u32(4 + index * 8), read_u32(8 + index * 8))
            else {
                break;
            };
            let Some(name) = bytes.get(data_at..data_at + name_len) else {
                break;
            };
            data_at += name_len + 1;
            let Some(value) = bytes.get(data_at..data_at + value_len) else {
                break;
            };
            data_at += value_len + 1;
            pairs.push((name, value));
        }
        pairs
    }
}

pub fn get_header_map(map_type: u32) -> Result<HeaderMap, u32> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer it allocated with our allocator and its length.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    if status != OK {
        return Err(status);
    }
    Ok(HeaderMap {
        bytes: unsafe { take_host_buffer(data, size) },
    })
}

pub fn remove_header(map_type: u32, name: &[u8]) -> Result<(), u32> {
    let status = unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) };
    status_result(status)
}

pub fn replace_header(map_type: u32, name: &[u8], value: &[u8]) -> Result<(), u32> {
    let status = unsafe {
        proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    status_result(status)
}

/// Adds a header line, keeping any with the same name.
pub fn add_header(map_type: u32, name: &[u8], value: &[u8]) -> Result<(), u32> {
    let status = unsafe {
        proxy_add_header_map_value(map_type, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    };
    status_result(status)
}

pub fn get_buffer(buffer_type: u32, max_size: usize) -> Result<Vec<u8>, u32> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status = unsafe { proxy_get_buffer_bytes(buffer_type, 0, max_size, &mut data, &mut size) };
    match status {
        OK => Ok(unsafe { take_host_buffer(data, size) }),
        NOT_FOUND => Ok(Vec::new()),
        other => Err(other),
    }
}

/// A property such as `source.principal`: `path` holds the segments.
pub fn get_property(path: &[&str]) -> Option<Vec<u8>> {
    let mut serialized = Vec::new();
    for segment in path {
        serialized.extend_from_slice(segment.as_bytes());
        serialized.push(0);
    }
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    let bytes = unsafe { take_host_buffer(data, size) };
    (status == OK).then_some(bytes)
}

/// Sets a filter-state property readable in access logs as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), u32> {
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    status_result(status)
}

/// `(value, cas)`; `Ok(None)` when the key does not exist yet.
pub fn get_shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, u32> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    let bytes = unsafe { take_host_buffer(data, size) };
    match status {
        OK => Ok(Some((bytes, cas))),
        NOT_FOUND => Ok(None),
        other => Err(other),
    }
}

pub enum SetShared {
    Stored,
    CasMismatch,
}

/// The `cas` that makes [`set_shared_data`] create a missing key but never overwrite an existing
/// one, which `0` would. The host (proxy-wasm-cpp-host `src/shared_data.cc`, `SharedData::set`,
/// which Envoy uses) compares a non-zero cas with an existing key's and refuses on a mismatch,
/// but creates a missing key whatever the cas; it hands out cas values from one counter that
/// starts at 1 (`nextCas`), so no key holds `u32::MAX` before four billion writes.
pub const CREATE_ONLY: u32 = u32::MAX;

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<SetShared, u32> {
    let status = unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    };
    match status {
        OK => Ok(SetShared::Stored),
        CAS_MISMATCH => Ok(SetShared::CasMismatch),
        other => Err(other),
    }
}

pub fn resume_request() -> Result<(), u32> {
    status_result(unsafe { proxy_continue_stream(STREAM_REQUEST) })
}

pub fn send_local_response(status: u32, headers: &[(&str, &str)], body: &[u8]) -> Result<(), u32> {
    let pairs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
        .collect();
    let serialized = serialize_pairs(&pairs);
    let details = "kiali_header_auth";
    let status = unsafe {
        proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            if body.is_empty() { null() } else { body.as_ptr() },
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    };
    status_result(status)
}

pub fn log(level: u32, message: &str) {
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Sends an HTTP request to `cluster`; the answer arrives at the calling root context's
/// `on_http_call_response`. `headers` must hold `:method`, `:path` and `:authority`.
pub fn dispatch_http_call(
    cluster: &str,
    headers: &[(&[u8], &[u8])],
    body: &[u8],
    timeout_ms: u32,
) -> Result<u32, u32> {
    let headers = serialize_pairs(headers);
    let trailers = serialize_pairs(&[]);
    let mut token: u32 = 0;
    let status = unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    };
    status_result(status).map(|()| token)
}

pub fn set_effective_context(context_id: u32) -> Result<(), u32> {
    status_result(unsafe { proxy_set_effective_context(context_id) })
}

pub fn now_ms() -> u64 {
    let mut nanos: u64 = 0;
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
    if status == OK {
        nanos / 1_000_000
    } else {
        0
    }
}

pub fn set_tick_period_ms(period: u32) {
    let _ = unsafe { proxy_set_tick_period_milliseconds(period) };
}

pub fn define_metric(metric_type: u32, name: &str) -> Option<u32> {
    let mut id: u32 = 0;
    let status = unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

pub fn increment_metric(id: u32, offset: i64) {
    let _ = unsafe { proxy_increment_metric(id, offset) };
}

pub fn record_metric(id: u32, value: u64) {
    let _ = unsafe { proxy_record_metric(id, value) };
}

fn status_result(status: u32) -> Result<(), u32> {
    if status == OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// The proxy-wasm header map encoding: count, (name length, value length) per pair, then each
/// name and value followed by a NUL. Only for rare calls (local replies, token callouts).
fn serialize_pairs(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}
