//! What the extension does when a transaction commits, and only then: wake the background
//! workers after papers were added or edited (a worker woken earlier would not see the rows yet,
//! and an aborted insert wakes no one), tell the launcher of a created extension, and add a
//! session's batches to the server-wide figures (an `embed_pending()` whose transaction rolls
//! back embedded nothing).

use std::cell::{Cell, RefCell};

use pgrx::prelude::*;

use crate::pg::database_pool;
use crate::pg::shared_state::{self, BatchFigures};

thread_local! {
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
    static WAKE: Cell<bool> = const { Cell::new(false) };
    /// Extensions created in the transaction (their oids), and whether one is this one.
    static EXTENSIONS_CREATED: RefCell<Vec<pg_sys::Oid>> = const { RefCell::new(Vec::new()) };
    static EXTENSION_CREATED: Cell<bool> = const { Cell::new(false) };
    static DATABASE_DROPPED: Cell<bool> = const { Cell::new(false) };
    /// The session's batches, added to the server-wide figures when the transaction commits.
    static BATCHES: RefCell<Vec<BatchFigures>> = const { RefCell::new(Vec::new()) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT => {
            // The catalog can still be read: is one of the created extensions this one?
            for oid in EXTENSIONS_CREATED.with(|e| std::mem::take(&mut *e.borrow_mut())) {
                // SAFETY: a catalog lookup inside the committing transaction.
                let name = unsafe { pg_sys::get_extension_name(oid) };
                // SAFETY: a NUL-terminated name palloc'd by get_extension_name, or NULL.
                if !name.is_null() && unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes() == b"doctrove_embed" {
                    EXTENSION_CREATED.with(|c| c.set(true));
                }
            }
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT => {
            for figures in BATCHES.with(|b| std::mem::take(&mut *b.borrow_mut())) {
                shared_state::record_batch(None, &figures);
            }
            if WAKE.with(|w| w.replace(false)) {
                shared_state::wake_for_new_papers();
            }
            if EXTENSION_CREATED.with(|c| c.replace(false)) {
                database_pool::extension_created_here();
            }
            if DATABASE_DROPPED.with(|c| c.replace(false)) {
                database_pool::ask_rescan();
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            WAKE.with(|w| w.set(false));
            EXTENSION_CREATED.with(|c| c.set(false));
            EXTENSIONS_CREATED.with(|e| e.borrow_mut().clear());
            DATABASE_DROPPED.with(|c| c.set(false));
            BATCHES.with(|b| b.borrow_mut().clear());
        }
        _ => {}
    }
}

fn register() {
    if !CALLBACK_REGISTERED.with(|r| r.replace(true)) {
        // SAFETY: registers a callback that lives as long as the library.
        unsafe { pg_sys::RegisterXactCallback(Some(on_transaction_end), std::ptr::null_mut()) };
    }
}

/// Asks for the workers to be woken (see `shared_state::wake_for_new_papers`) when the current
/// transaction commits.
pub fn wake_a_worker() {
    if !shared_state::available() {
        return; // no workers in this server
    }
    register();
    WAKE.with(|w| w.set(true));
}

/// Notes that extension `oid` was created in this database: if it is this one, the launcher is
/// told when the current transaction commits.
pub fn extension_created(oid: pg_sys::Oid) {
    if !shared_state::available() {
        return;
    }
    register();
    EXTENSIONS_CREATED.with(|e| e.borrow_mut().push(oid));
}

/// Tells the launcher, when the current transaction commits, that a database was dropped.
pub fn database_dropped() {
    if !shared_state::available() {
        return;
    }
    register();
    DATABASE_DROPPED.with(|c| c.set(true));
}

/// Adds a session batch's figures to the server-wide ones when the transaction commits.
pub fn record_batch(figures: BatchFigures) {
    if !shared_state::available() {
        return;
    }
    register();
    BATCHES.with(|b| b.borrow_mut().push(figures));
}
