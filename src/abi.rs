//! The proxy-wasm ABI (0.2.1) entry points, exactly the ones this filter needs.
//!
//! The proxy-wasm Rust SDK exports every `proxy_on_*` callback, so Envoy enters the VM for each
//! of them on every stream (response headers, body, trailers, log, done, delete), and its
//! dispatcher does map lookups for each. Measured on the `direct_response` bench route, a no-op
//! filter built on the SDK cost about 5 µs more per request than one that exports only what it
//! uses. On the stream side this module exports only `context_create` and `request_headers`;
//! Envoy skips the rest (proxy-wasm-cpp-host treats a missing export as "continue" / "done").
//!
//! No `proxy_on_done` / `proxy_on_delete`: Envoy would call both on every stream. Nothing here
//! keeps per-stream state that would need them: `proxy_on_request_headers` finds the stream's
//! root from the parent recorded by `proxy_on_context_create` (Envoy creates the stream's context
//! right before its request headers), and the few requests that wait for a token are tracked by
//! their root, whose tick drops those whose stream is gone. A root context is never deleted from
//! `ROOTS` (Envoy deletes one only when a listener update replaces the plugin): a few KB per
//! configuration update, kept for the life of the VM.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::host;
use crate::http;
use crate::host::STOP_ITERATION;
use crate::root::Root;
use crate::vm_state::VmState;

thread_local! {
    static ROOTS: RefCell<HashMap<u32, Root>> = RefCell::new(HashMap::new());
    /// The newest stream context and its root: `(context_id, root_id)`.
    static NEWEST_STREAM: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

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
    NEWEST_STREAM.with(|newest| newest.set((context_id, parent_id)));
}

/// The configuration a stream runs under: its root's, found from the parent recorded at context
/// creation, or the only root of this VM (one plugin per VM, the usual case). `None` when the
/// plugin is not configured, or when several plugins share this VM and the stream's parent is
/// unknown: the caller fails closed.
fn vm_state_of(context_id: u32) -> Option<Rc<VmState>> {
    let (newest, parent) = NEWEST_STREAM.with(Cell::get);
    ROOTS.with(|roots| {
        let roots = roots.borrow();
        let root = if newest == context_id {
            roots.get(&parent)
        } else if roots.len() == 1 {
            roots.values().next()
        } else {
            None
        };
        root.and_then(Root::vm_state)
    })
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
    match vm_state_of(context_id) {
        Some(vm) => http::on_request_headers(context_id, &vm),
        // No configured root for this stream: fail closed.
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
