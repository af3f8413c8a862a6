//! Calls the embeddings API from inside a backend without blocking cancel.
//!
//! The blocking HTTP request runs on a helper thread that never touches PostgreSQL and has
//! every signal blocked (so the backend's signal handlers always run on the main thread,
//! where pgrx requires them). The main thread waits for the answer in short steps on its latch
//! and runs `CHECK_FOR_INTERRUPTS` between them, so `pg_cancel_backend()` and
//! `statement_timeout` end the call at once, and the postmaster's death ends the process; the
//! abandoned request finishes or times out on its own.

use std::sync::mpsc;
use std::time::Duration;

use embed_core::retry::{jitter_from, RetryPolicy};
use embed_core::{embed, ApiConfig, ApiError, Embeddings};
use pgrx::pg_sys;

use crate::errors::UserError;
use crate::settings::gucs;

/// How often the waiting backend looks for a cancel.
const INTERRUPT_POLL: Duration = Duration::from_millis(20);

/// Largest key file read.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The key in the file named by `doctrove_embed.api_key_file`. Like PostgreSQL's own key files
/// (`ssl_key_file`), it must belong to the server's operating-system user and be readable by
/// no one else.
fn key_from_file(path: &str) -> Result<String, UserError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let problem = |what: String, hint: &str| {
        UserError::new(pgrx::PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR, format!("doctrove_embed.api_key_file \"{path}\" {what}"))
            .hint(hint.to_string())
    };
    let file = std::fs::File::open(path)
        .map_err(|e| problem(format!("cannot be read: {e}"), "The file must be readable by the PostgreSQL server's operating-system user."))?;
    let meta = file.metadata().map_err(|e| problem(format!("cannot be read: {e}"), "Check the file."))?;
    // SAFETY: reads this process's effective user id.
    let server_user = unsafe { libc::geteuid() };
    let fix = "Make the file belong to the server's operating-system user and readable by it alone: chown postgres FILE; chmod 600 FILE.";
    if meta.uid() != server_user {
        return Err(problem("does not belong to the server's operating-system user".into(), fix));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(problem(format!("is readable by other users (mode {:04o})", meta.mode() & 0o7777), fix));
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| problem(format!("cannot be read: {e}"), "The file must hold the key as text."))?;
    Ok(text.trim().to_string())
}

/// The API settings as they are now. The key comes from `doctrove_embed.api_key`, or else
/// from the file named by `doctrove_embed.api_key_file`.
pub fn current_config() -> Result<ApiConfig, UserError> {
    let mut api_key = crate::settings::api_key::current();
    let key_file = gucs::text(&gucs::API_KEY_FILE);
    if api_key.is_empty() && !key_file.is_empty() {
        api_key = key_from_file(&key_file)?;
    }
    Ok(ApiConfig {
        base_url: gucs::text(&gucs::API_BASE_URL),
        api_key,
        api_key_header: gucs::text(&gucs::API_KEY_HEADER),
        model: gucs::text(&gucs::MODEL),
        dimensions: gucs::DIMENSIONS.get().max(0) as u32,
        timeout: Duration::from_millis(gucs::REQUEST_TIMEOUT_MS.get().max(1) as u64),
    })
}

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
pub fn off_thread<T: Send + 'static>(url: &str, work: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    let mut result = None;
    streamed(url, 1, move |send: &mut dyn FnMut(Result<T, ApiError>) -> bool| {
        send(work());
    }, &mut |item| {
        result = Some(item);
        true
    })?;
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
        return Err(ApiError::Unreachable { url: url.to_string(), reason: format!("could not start a thread: {e}") });
    }
    loop {
        match receiver.try_recv() {
            Ok(item) => {
                if !on_item(item) {
                    return Ok(());
                }
            }
            Err(mpsc::TryRecvError::Empty) => wait_a_step(INTERRUPT_POLL),
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
    let thread_config = config.clone();
    off_thread(&config.base_url, move || work(&thread_config)).map_err(|e| crate::errors::api_error(&e))
}

/// Sends one request of `inputs` and waits for its answer, checking for interrupts.
pub fn embed_interruptibly(config: &ApiConfig, inputs: Vec<String>, dims: Option<usize>) -> Result<Embeddings, ApiError> {
    let thread_config = config.clone();
    off_thread(&config.base_url, move || embed(&thread_config, &inputs, dims))
}

/// Waits up to `step` on the process latch, then acts on interrupts: a cancel or SIGTERM ends
/// the wait at once, and so does the postmaster's death (the process exits).
fn wait_a_step(step: Duration) {
    // SAFETY: the standard latch wait of a backend or background worker.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            step.as_millis().clamp(1, i32::MAX as u128) as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pg_sys::check_for_interrupts!();
}

/// Sleeps `duration` in short steps, checking for interrupts and the postmaster's death.
pub fn sleep_interruptibly(duration: Duration) {
    let end = std::time::Instant::now() + duration;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        wait_a_step(left.min(INTERRUPT_POLL));
    }
}

/// The retry policy from the settings.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy { max_retries: gucs::MAX_RETRIES.get().max(0) as u32, ..RetryPolicy::default() }
}

/// A wait of a request, told to whoever shows the caller's state.
pub enum Wait {
    /// The shared rate limit is spent.
    RateLimit,
    /// A failed attempt is retried: `retrying after HTTP 503, attempt 3 of 6, next in 4.0 s`.
    Retry { error: String, text: String },
}

/// `HTTP 503`, `a timeout`, ...: what a failed attempt met, in a few words.
fn what_failed(error: &ApiError) -> String {
    match error {
        ApiError::Unreachable { .. } => "a connection error".into(),
        ApiError::Timeout { .. } => "a timeout".into(),
        ApiError::Unauthorized { status, .. } | ApiError::Rejected { status, .. } | ApiError::ServerError { status, .. } => {
            format!("HTTP {status}")
        }
        ApiError::RateLimited { .. } => "HTTP 429".into(),
        ApiError::Redirected { status, .. } => format!("HTTP {status}"),
        ApiError::WrongShape { .. } => "an answer that does not fit".into(),
        ApiError::RefusesEverything { .. } | ApiError::Malformed(_) => "an invalid answer".into(),
    }
}

/// Sends one request of about `tokens` tokens within the shared rate limit, retrying transient
/// failures as `policy` says (all waits are cancellable). `on_wait` is told about each wait.
pub fn embed_with_retries(
    config: &ApiConfig,
    inputs: &[String],
    tokens: usize,
    dims: Option<usize>,
    policy: &RetryPolicy,
    on_wait: &mut dyn FnMut(Wait),
) -> Result<Embeddings, ApiError> {
    let mut retry = 0;
    loop {
        crate::http::rate_limiter::acquire(tokens as f64, &mut || on_wait(Wait::RateLimit));
        let error = match embed_interruptibly(config, inputs.to_vec(), dims) {
            Ok(answer) => {
                crate::http::rate_limiter::settle(tokens as f64, answer.total_tokens, &answer.rate_limits);
                return Ok(answer);
            }
            Err(error) => error,
        };
        retry += 1;
        // SAFETY: reads this backend's pid.
        let seed = unsafe { pg_sys::MyProcPid } as u64 ^ crate::pg::shared_state::unix_now_ms() as u64 ^ u64::from(retry);
        match policy.delay(retry, &error, jitter_from(seed)) {
            Some(wait) => {
                let text = format!(
                    "retrying after {}, attempt {} of {}, next in {:.1} s",
                    what_failed(&error),
                    retry + 1,
                    policy.max_retries + 1,
                    wait.as_secs_f64()
                );
                pgrx::debug1!("doctrove_embed: {error}; {text}");
                on_wait(Wait::Retry { error: embed_core::bounds::cut_message(&error.to_string(), 200), text });
                sleep_interruptibly(wait);
            }
            None => return Err(error),
        }
    }
}
