//! Calls the embeddings API from inside a backend without blocking cancel.
//!
//! The blocking HTTP request runs on a helper thread that never touches PostgreSQL and has
//! every signal blocked (so the backend's signal handlers always run on the main thread,
//! where pgrx requires them). The main thread waits for the answer in short steps on its latch
//! (`pg::latch`), so `pg_cancel_backend()` and `statement_timeout` end the call at once, and the
//! postmaster's death ends the process; the abandoned request finishes or times out on its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use embed_core::{ApiConfig, ApiError};

use crate::errors::{api_error, UserError};
use crate::pg::latch;
/// Runs `spawn` with all signals blocked in the calling thread, so a thread it starts inherits
/// a fully blocked mask; the caller's mask is restored afterwards.
fn with_signals_blocked<R>(spawn: impl FnOnce() -> R) -> R {
    // SAFETY: plain sigset manipulation of the calling thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
        let result = spawn();
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        result
    }
}

/// Runs `work` (which must not touch PostgreSQL) on a helper thread with every signal blocked
/// and waits for its result, checking for interrupts.
pub fn off_thread<T: Send + 'static>(
    url: &str,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let mut result = None;
    streamed(
        url,
        1,
        move |send: &mut dyn FnMut(Result<T, ApiError>) -> bool| {
            send(work());
        },
        &mut |item| {
            result = Some(item);
            true
        },
    )?;
    result.unwrap_or_else(|| Err(ApiError::Malformed("the request thread stopped without an answer".into())))
}

/// Runs `work` on a helper thread (as [`off_thread`]); each item it sends is handed to
/// `on_item` on this thread, which returns `false` to stop taking more. At most `queue` items
/// wait between the two, so memory stays bounded however much the work produces.
pub fn streamed<T: Send + 'static>(
    url: &str,
    queue: usize,
    work: impl FnOnce(&mut dyn FnMut(T) -> bool) + Send + 'static,
    on_item: &mut dyn FnMut(T) -> bool,
) -> Result<(), ApiError> {
    let (sender, receiver) = mpsc::sync_channel::<T>(queue);
    let spawned = with_signals_blocked(|| {
        std::thread::Builder::new().name("doctrove_embed http".into()).spawn(move || {
            work(&mut |item| sender.send(item).is_ok());
        })
    });
    if let Err(e) = spawned {
        return Err(ApiError::Unreachable {
            url: url.to_string(),
            reason: format!("could not start a thread: {e}"),
        });
    }
    loop {
        match receiver.try_recv() {
            Ok(item) => {
                if !on_item(item) {
                    return Ok(());
                }
            }
            Err(mpsc::TryRecvError::Empty) => latch::step(),
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
        }
    }
}

/// Runs `work` with a copy of `config` off the main thread (as [`off_thread`]); an API error
/// comes back as the user's error.
pub fn call_api<T: Send + 'static>(
    config: &ApiConfig,
    work: impl FnOnce(&ApiConfig) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, UserError> {
    call_api_raw(config, work).map_err(|e| api_error(&e))
}

/// Runs `work` with a copy of `config` off the main thread (as [`off_thread`]), the API's error
/// as it is, for a caller that tells some errors apart (a 404) before mapping the rest.
pub fn call_api_raw<T: Send + 'static>(
    config: &ApiConfig,
    work: impl FnOnce(&ApiConfig) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let thread_config = config.clone();
    off_thread(&config.base_url, move || work(&thread_config))
}

/// Runs `work` as [`call_api`] does, handing it a flag that is set once this backend has stopped
/// waiting for it (a cancel, `statement_timeout`, an ERROR: the statement rolls back). Work that
/// would create something on the API checks the flag first, so nothing is created for a statement
/// that is already gone; what it creates after the check is found again by adoption.
pub fn call_api_abandonable<T: Send + 'static>(
    config: &ApiConfig,
    work: impl FnOnce(&ApiConfig, &AtomicBool) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, UserError> {
    /// Sets the flag when dropped while armed: when the wait below ends by unwinding.
    struct Abandon {
        flag: Arc<AtomicBool>,
        armed: bool,
    }
    impl Drop for Abandon {
        fn drop(&mut self) {
            if self.armed {
                self.flag.store(true, Ordering::SeqCst);
            }
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let mut abandon = Abandon {
        flag: Arc::clone(&flag),
        armed: true,
    };
    let thread_config = config.clone();
    let result = off_thread(&config.base_url, move || work(&thread_config, &flag)).map_err(|e| api_error(&e));
    abandon.armed = false;
    result
}
