//! The proxy-wasm ABI (0.2.1) entry points, exactly the ones this filter needs.
//!
//! The proxy-wasm Rust SDK exports every `proxy_on_*` callback, so Envoy enters the VM for each
//! of them on every stream (response headers, body, trailers, log, done, delete), and its
//! dispatcher does map lookups for each. Measured on the `direct_response` bench route, a no-op
//! filter built on the SDK cost about 5 µs more per request than one that exports only what it
//! uses. Exporting only `context_create`, `request_headers` and `delete` on the stream side, Envoy
//! skips the rest (proxy-wasm-cpp-host treats a missing export as "continue").

use std::cell::RefCell;
use std::collections::HashMap;

use crate::host;
use crate::http::RequestContext;
use crate::root::Root;

thread_local! {
    static ROOTS: RefCell<HashMap<u32, Root>> = RefCell::new(HashMap::new());
    static STREAMS: RefCell<HashMap<u32, RequestContext>> = RefCell::new(HashMap::new());
}

/// What `proxy_on_request_headers` answers (Envoy's `FilterHeadersStatus`).
pub const CONTINUE: u32 = 0;
pub const STOP_ITERATION: u32 = 1;

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    unsafe {
        __wasm_call_ctors();
    }
    crate::logger::install();
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Buffers the host hands over are allocated here, as a `Vec<u8>` with capacity == length, so
/// `host::take_host_buffer` can own them.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer: Vec<u8> = Vec::with_capacity(size);
    let pointer = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    pointer
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
    if parent_id == 0 {
        ROOTS.with(|roots| {
            roots.borrow_mut().insert(context_id, Root::new(context_id));
        });
        return;
    }
    let stream = ROOTS.with(|roots| {
        roots
            .borrow()
            .get(&parent_id)
            .and_then(|root| root.create_http_context(context_id))
    });
    if let Some(stream) = stream {
        STREAMS.with(|streams| {
            streams.borrow_mut().insert(context_id, stream);
        });
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_id: u32, _vm_configuration_size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_id: u32, _plugin_configuration_size: usize) -> u32 {
    let configured = ROOTS.with(|roots| {
        roots
            .borrow_mut()
            .get_mut(&root_id)
            .map(|root| root.on_configure())
    });
    u32::from(configured.unwrap_or(false))
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_id: u32) {
    ROOTS.with(|roots| {
        if let Some(root) = roots.borrow_mut().get_mut(&root_id) {
            root.on_tick();
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    root_id: u32,
    call_id: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    ROOTS.with(|roots| {
        if let Some(root) = roots.borrow_mut().get_mut(&root_id) {
            root.on_http_call_response(call_id, num_headers, body_size);
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _num_headers: usize, _end_of_stream: u32) -> u32 {
    let handled = STREAMS.with(|streams| {
        streams
            .borrow_mut()
            .get_mut(&context_id)
            .map(RequestContext::on_request_headers)
    });
    match handled {
        Some(status) => status,
        // No stream context means the plugin is not configured: fail closed.
        None => {
            let _ = host::send_local_response(
                503,
                &[("content-type", "application/json")],
                br#"{"error":"kiali-header-auth is not configured","reason":"token_unavailable"}"#,
            );
            STOP_ITERATION
        }
    }
}

/// Root contexts are done at once; nothing is pending that Envoy would have to wait for.
#[no_mangle]
pub extern "C" fn proxy_on_done(_context_id: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let stream = STREAMS.with(|streams| streams.borrow_mut().remove(&context_id));
    if let Some(mut stream) = stream {
        stream.on_delete();
        return;
    }
    ROOTS.with(|roots| {
        roots.borrow_mut().remove(&context_id);
    });
}
