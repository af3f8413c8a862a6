//! Memory for setting values and their extra data, which the GUC machinery later frees itself:
//! plain `malloc`/`free` up to PostgreSQL 15, `guc_malloc`/`guc_free` from 16 on (16 moved GUC
//! values into a memory context of their own). A hook that used the wrong pair would corrupt
//! the heap on the first SET.

use std::ffi::c_void;

#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
use pgrx::pg_sys;

/// `len` bytes the GUC machinery may free; null when out of memory (never raises).
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
pub unsafe fn alloc(len: usize) -> *mut c_void {
    libc::malloc(len)
}

/// Frees what `alloc` gave (null is allowed).
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
pub unsafe fn free(ptr: *mut c_void) {
    libc::free(ptr)
}

/// `len` bytes the GUC machinery may free; null when out of memory (at LOG level, which only
/// logs: a check hook must return false rather than raise).
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
pub unsafe fn alloc(len: usize) -> *mut c_void {
    pg_sys::guc_malloc(pg_sys::LOG as i32, len)
}

/// Frees what `alloc` gave (null is allowed).
#[cfg(not(any(feature = "pg13", feature = "pg14", feature = "pg15")))]
pub unsafe fn free(ptr: *mut c_void) {
    if !ptr.is_null() {
        pg_sys::guc_free(ptr)
    }
}
