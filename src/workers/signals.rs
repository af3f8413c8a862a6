//! PostgreSQL's own signal handlers for the launcher and the workers: SIGTERM is `die`, so the
//! `CHECK_FOR_INTERRUPTS` in any wait ends the process at once (an open transaction is rolled
//! back); SIGHUP marks the configuration for reload, done between batches.

use pgrx::prelude::*;

unsafe extern "C-unwind" {
    #[link_name = "SignalHandlerForConfigReload"]
    fn signal_handler_for_config_reload(postgres_signal_arg: std::ffi::c_int);
    #[link_name = "die"]
    fn die(postgres_signal_arg: std::ffi::c_int);
}

/// Installs a PostgreSQL signal handler: `pqsignal` up to 17; from 18 on the backend's is
/// `pqsignal_be` (`pqsignal` is a macro for it there).
unsafe fn set_signal_handler(signal: std::ffi::c_int, handler: unsafe extern "C-unwind" fn(std::ffi::c_int)) {
    #[cfg(not(feature = "pg18"))]
    pg_sys::pqsignal(signal, Some(handler));
    #[cfg(feature = "pg18")]
    pg_sys::pqsignal_be(signal, Some(handler));
}

/// The standard handlers of a background worker, then signals unblocked, then the
/// configuration read again: a reload the postmaster signalled between starting this process
/// and its handler being installed was ignored (PostgreSQL ignores SIGHUP there), and this
/// process began with the postmaster's settings of before it.
pub fn install() {
    // SAFETY: PostgreSQL's own handlers, installed before the process does anything else; then
    // the configuration file read as a SIGHUP would.
    unsafe {
        set_signal_handler(libc::SIGHUP, signal_handler_for_config_reload);
        set_signal_handler(libc::SIGTERM, die);
        pg_sys::BackgroundWorkerUnblockSignals();
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
    }
}

/// Reloads the configuration if a SIGHUP asked for it; true when it did.
pub fn reload_if_asked() -> bool {
    // SAFETY: reads and clears the flag set by SignalHandlerForConfigReload.
    unsafe {
        if pg_sys::ConfigReloadPending == 0 {
            return false;
        }
        pg_sys::ConfigReloadPending = 0;
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
    }
    true
}
