//! Each endpoint's state, shared by every worker and session of the server: its rate-limit
//! buckets (so jobs that use one endpoint share its limits), the requests in flight to it, and
//! its rest after failures (so one job's failures steer the others away too). Keyed by the
//! endpoint's name; [`ENDPOINT_SLOTS`] endpoints at once, the least recently used giving way.
//!
//! Like `shared_state`, it exists only when the library is preloaded; without it there is no
//! shared limit and every endpoint counts as free.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use embed_core::endpoints::Capacity;
use embed_core::rate_limit::{Bucket, RateLimitHeaders};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::pg::clock::unix_now_ms;

/// Endpoints whose state is kept at once.
pub const ENDPOINT_SLOTS: usize = 32;
const NAME_BYTES: usize = 64;

#[derive(Clone, Copy)]
struct Slot {
    name: [u8; NAME_BYTES],
    len: u8,
    used_ms: i64,
    tokens: Bucket,
    requests: Bucket,
    in_flight: u32,
    failures_in_a_row: u32,
    resting_until_ms: i64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        name: [0; NAME_BYTES],
        len: 0,
        used_ms: 0,
        tokens: Bucket::NEW,
        requests: Bucket::NEW,
        in_flight: 0,
        failures_in_a_row: 0,
        resting_until_ms: 0,
    };

    fn is(&self, name: &str) -> bool {
        self.len > 0 && &self.name[..self.len as usize] == name.as_bytes()
    }
}

#[derive(Clone, Copy)]
pub struct Endpoints {
    slots: [Slot; ENDPOINT_SLOTS],
}

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            slots: [Slot::EMPTY; ENDPOINT_SLOTS],
        }
    }
}

// SAFETY: plain data.
unsafe impl PGRXSharedMemory for Endpoints {}

static STATE: PgLwLock<Endpoints> = unsafe { PgLwLock::new(c"doctrove_embed_endpoints") };
static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Requests the shared memory; only from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(STATE);
    AVAILABLE.store(true, Ordering::SeqCst);
}

/// Runs `f` on endpoint `name`'s slot under the exclusive lock, when the state exists. Names are
/// at most 63 bytes (checked where they are defined).
fn with_slot<R>(name: &str, f: impl FnOnce(&mut Slot, i64) -> R) -> Option<R> {
    if !AVAILABLE.load(Ordering::SeqCst) || name.is_empty() || name.len() >= NAME_BYTES {
        return None;
    }
    let now = unix_now_ms();
    let mut state = STATE.exclusive();
    let index = match state.slots.iter().position(|s| s.is(name)) {
        Some(i) => i,
        None => {
            let i = (0..ENDPOINT_SLOTS).min_by_key(|&i| state.slots[i].used_ms).unwrap_or(0);
            let mut slot = Slot::EMPTY;
            slot.name[..name.len()].copy_from_slice(name.as_bytes());
            slot.len = name.len() as u8;
            state.slots[i] = slot;
            i
        }
    };
    let slot = &mut state.slots[index];
    slot.used_ms = now;
    Some(f(slot, now))
}

/// How free endpoint `name` is now, with limits `tpm` and `rpm` per minute (0: none).
pub fn capacity(name: &str, tpm: f64, rpm: f64) -> Capacity {
    with_slot(name, |slot, now| {
        slot.tokens.refill(tpm, now);
        slot.requests.refill(rpm, now);
        Capacity {
            free: slot.tokens.free_share().min(slot.requests.free_share()),
            in_flight: slot.in_flight,
            resting_until_ms: slot.resting_until_ms,
        }
    })
    .unwrap_or(Capacity {
        free: 1.0,
        in_flight: 0,
        resting_until_ms: 0,
    })
}

/// Takes `tokens` and one request from endpoint `name`'s buckets and counts the request in
/// flight, or says how long to wait first.
pub fn try_acquire(name: &str, tpm: f64, rpm: f64, tokens: f64) -> Option<Duration> {
    with_slot(name, |slot, now| {
        let wait = slot.tokens.wait(tpm, now).max(slot.requests.wait(rpm, now));
        if wait.is_none() {
            slot.tokens.spend(tokens);
            slot.requests.spend(1.0);
            slot.in_flight += 1;
        }
        wait
    })
    .flatten()
}

/// How a request to an endpoint ended.
pub enum Ended<'a> {
    /// Answered: its token estimate is corrected with the API's count and headers.
    Answered {
        estimated: f64,
        actual: u64,
        headers: &'a RateLimitHeaders,
    },
    /// Failed, and tried again.
    Retried,
    /// Failed for good: the endpoint rests, longer after each failure in a row.
    Failed,
}

/// A request to endpoint `name` ended as `ended` says.
pub fn finished(name: &str, ended: Ended) {
    with_slot(name, |slot, now| {
        slot.in_flight = slot.in_flight.saturating_sub(1);
        match ended {
            Ended::Answered {
                estimated,
                actual,
                headers,
            } => {
                slot.failures_in_a_row = 0;
                slot.resting_until_ms = 0;
                if actual > 0 {
                    slot.tokens.settle(estimated, actual as f64);
                }
                if let (Some(remaining), Some(limit)) = (headers.remaining_tokens, headers.limit_tokens) {
                    slot.tokens.observe_remaining(remaining, limit);
                }
                if let (Some(remaining), Some(limit)) = (headers.remaining_requests, headers.limit_requests) {
                    slot.requests.observe_remaining(remaining, limit);
                }
            }
            Ended::Retried => {}
            Ended::Failed => {
                slot.failures_in_a_row = slot.failures_in_a_row.saturating_add(1);
                slot.resting_until_ms = now + embed_core::endpoints::rest_ms(slot.failures_in_a_row);
            }
        }
    });
}
