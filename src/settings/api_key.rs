//! `doctrove_embed.api_key` never holds the key itself: its check hook keeps the key in the
//! setting's private "extra" data and leaves a constant stand-in, `(hidden)`, as the visible
//! value. So no view or function shows the key, even to superusers, and a reload that changes
//! it writes no `parameter "doctrove_embed.api_key" changed to "..."` line to the server log:
//! PostgreSQL logs a change only when the visible value differs, and the stand-in never does.
//! The GUC machinery keeps each value's extra data with it (SET, RESET, rollback, reload) and
//! calls the assign hook with the one in force, so the key used is always the one set.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::settings::guc_memory;

/// What SHOW, `current_setting()` and `pg_settings` give for the key, set or not.
pub const HIDDEN: &CStr = c"(hidden)";

/// The key in force in this process: the assign hook's extra data (a C string in GUC memory owned
/// by the GUC machinery, freed by it only once no value refers to it).
static CURRENT: AtomicPtr<c_char> = AtomicPtr::new(std::ptr::null_mut());

/// Copies `text` into GUC memory, which the GUC machinery frees. Null when out of memory.
unsafe fn guc_copy(text: &CStr) -> *mut c_char {
    let bytes = text.to_bytes_with_nul();
    let copy = guc_memory::alloc(bytes.len()) as *mut c_char;
    if !copy.is_null() {
        std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, copy, bytes.len());
    }
    copy
}

#[pg_guard]
unsafe extern "C-unwind" fn check_api_key(
    newval: *mut *mut c_char,
    extra: *mut *mut c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let key = if (*newval).is_null() { c"" } else { CStr::from_ptr(*newval) };
    let (kept, hidden) = (guc_copy(key), guc_copy(HIDDEN));
    if kept.is_null() || hidden.is_null() {
        guc_memory::free(kept as *mut c_void);
        guc_memory::free(hidden as *mut c_void);
        return false;
    }
    guc_memory::free(*newval as *mut c_void);
    *newval = hidden;
    *extra = kept as *mut c_void;
    true
}

#[pg_guard]
unsafe extern "C-unwind" fn assign_api_key(_newval: *const c_char, extra: *mut c_void) {
    CURRENT.store(extra as *mut c_char, Ordering::SeqCst);
}

/// Registers `doctrove_embed.api_key` with its hooks.
pub fn define(setting: &'static GucSetting<Option<std::ffi::CString>>) {
    // SAFETY: both hooks are #[pg_guard]ed and only copy strings.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"doctrove_embed.api_key",
            c"API key for the embeddings API (superuser only; always shown as (hidden)).",
            c"",
            setting,
            GucContext::Suset,
            GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
            Some(check_api_key),
            Some(assign_api_key),
            None,
        );
    }
}

/// The key in force, empty when none is set.
pub fn current() -> String {
    let key = CURRENT.load(Ordering::SeqCst);
    if key.is_null() {
        return String::new();
    }
    // SAFETY: the pointer is the extra data of the value in force, alive while it is in force,
    // and only this backend's own thread changes which value that is.
    unsafe { CStr::from_ptr(key) }.to_string_lossy().into_owned()
}
