//! One request within the shared rate limit, with retries of transient failures; every wait is
//! cancellable.

use embed_core::retry::{jitter_from, RetryPolicy};
use embed_core::{embed, ApiConfig, ApiError, Embeddings};
use pgrx::pg_sys;

use crate::http::endpoints::Endpoint;
use crate::http::off_thread::off_thread;
use crate::http::rate_limiter;
use crate::pg::{clock, latch};
use crate::settings::gucs;

/// Sends one request of `inputs` and waits for its answer, checking for interrupts.
pub fn embed_interruptibly(config: &ApiConfig, inputs: Vec<String>, dims: Option<usize>) -> Result<Embeddings, ApiError> {
    let thread_config = config.clone();
    off_thread(&config.base_url, move || embed(&thread_config, &inputs, dims))
}

/// The retry policy from the settings.
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: gucs::MAX_RETRIES.get().max(0) as u32,
        ..RetryPolicy::default()
    }
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

/// A seed for the jitter of retry `retry`, different in each process and at each moment.
fn jitter_seed(retry: u32) -> u64 {
    // SAFETY: reads this backend's pid.
    (unsafe { pg_sys::MyProcPid }) as u64 ^ clock::unix_now_ms() as u64 ^ u64::from(retry)
}

/// Runs `work`, a request that changes nothing on the API (a GET), on a helper thread (see
/// `off_thread`), retrying transient failures as the retry policy from the settings says.
pub fn get_with_retries<T: Send + 'static>(
    config: &ApiConfig,
    work: impl Fn(&ApiConfig) -> Result<T, ApiError> + Send + Sync + 'static,
) -> Result<T, ApiError> {
    let policy = retry_policy();
    let work = std::sync::Arc::new(work);
    let mut retry = 0;
    loop {
        let (thread_config, thread_work) = (config.clone(), std::sync::Arc::clone(&work));
        let error = match off_thread(&config.base_url, move || thread_work(&thread_config)) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        retry += 1;
        match policy.delay(retry, &error, jitter_from(jitter_seed(retry))) {
            Some(wait) => latch::sleep(wait),
            None => return Err(error),
        }
    }
}

/// Sends one request of about `tokens` tokens to `endpoint` within its shared rate limit,
/// retrying transient failures as `policy` says (all waits are cancellable). `on_wait` is told
/// about each wait.
pub fn embed_with_retries(
    endpoint: &Endpoint,
    inputs: &[String],
    tokens: usize,
    dims: Option<usize>,
    policy: &RetryPolicy,
    on_wait: &mut dyn FnMut(Wait),
) -> Result<Embeddings, ApiError> {
    let mut retry = 0;
    loop {
        rate_limiter::acquire(endpoint, tokens as f64, &mut || on_wait(Wait::RateLimit));
        let error = match embed_interruptibly(&endpoint.config, inputs.to_vec(), dims) {
            Ok(answer) => {
                rate_limiter::answered(endpoint, tokens as f64, answer.total_tokens, &answer.rate_limits);
                return Ok(answer);
            }
            Err(error) => error,
        };
        retry += 1;
        match policy.delay(retry, &error, jitter_from(jitter_seed(retry))) {
            Some(wait) => {
                rate_limiter::retried(endpoint);
                let text = format!(
                    "retrying after {}, attempt {} of {}, next in {:.1} s",
                    what_failed(&error),
                    retry + 1,
                    policy.max_retries + 1,
                    wait.as_secs_f64()
                );
                pgrx::debug1!("doctrove_embed: {error}; {text}");
                on_wait(Wait::Retry {
                    error: embed_core::bounds::cut_message(&error.to_string(), 200),
                    text,
                });
                latch::sleep(wait);
            }
            None => {
                // A request refused for its input says nothing of the endpoint's health.
                if is_endpoint_fault(&error) {
                    rate_limiter::failed(endpoint);
                } else {
                    rate_limiter::retried(endpoint);
                }
                return Err(error);
            }
        }
    }
}

/// Whether a request's final failure is the endpoint's (down, failing, rate limited, refusing
/// the key, answering nonsense), not its input's: another endpoint may answer it.
pub fn is_endpoint_fault(error: &ApiError) -> bool {
    !matches!(error, ApiError::Rejected { .. } | ApiError::RefusesEverything { .. })
}
