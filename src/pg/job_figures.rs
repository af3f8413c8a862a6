//! Each job's figures since the server started, in shared memory, for `doctrove_embed.jobs`:
//! papers embedded and failed, tokens, the last pending count (lowered by each batch since), a
//! per-minute rate over the last ten minutes and the last error. A job is keyed by its database
//! and name; the table holds [`JOB_SLOTS`] jobs, the least recently active giving its slot to a
//! new one (its figures start again from zero).
//!
//! Like `shared_state`, it exists only when the library is preloaded.

use std::sync::atomic::{AtomicBool, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::pg::clock::unix_now_ms;

/// Jobs whose figures are kept at once (over every database of the server).
pub const JOB_SLOTS: usize = 128;
const NAME_BYTES: usize = 64;
const ERROR_BYTES: usize = 256;
/// Minutes of the rate window (and one for the minute under way).
const MINUTES: usize = 11;

/// A job's name as stored: at most 63 bytes (job names are checked to fit).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct JobKey {
    database: u32,
    len: u8,
    name: [u8; NAME_BYTES],
}

impl JobKey {
    /// The key of job `name` in the current database.
    pub fn here(name: &str) -> JobKey {
        let mut key = JobKey {
            // SAFETY: reads this backend's database.
            database: unsafe { pg_sys::MyDatabaseId }.to_u32(),
            len: 0,
            name: [0; NAME_BYTES],
        };
        let mut end = name.len().min(NAME_BYTES - 1);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        key.name[..end].copy_from_slice(&name.as_bytes()[..end]);
        key.len = end as u8;
        key
    }

    const EMPTY: JobKey = JobKey {
        database: 0,
        len: 0,
        name: [0; NAME_BYTES],
    };
}

impl Default for JobKey {
    /// No job: figures that belong to none.
    fn default() -> Self {
        JobKey::EMPTY
    }
}

/// Most endpoints whose figures a job keeps (a job names at most eight).
const JOB_ENDPOINTS: usize = 8;

/// What one endpoint did for a job: inputs it answered, requests that failed there.
#[derive(Clone, Copy)]
struct EndpointFigures {
    name: [u8; NAME_BYTES],
    len: u8,
    inputs: u64,
    errors: u64,
}

impl EndpointFigures {
    const EMPTY: EndpointFigures = EndpointFigures {
        name: [0; NAME_BYTES],
        len: 0,
        inputs: 0,
        errors: 0,
    };
}

/// One job's figures.
#[derive(Clone, Copy)]
pub struct JobSlot {
    key: JobKey,
    /// When the slot was last written (unix ms): the least recent gives way.
    touched_ms: i64,
    pub embedded: u64,
    pub failed: u64,
    /// Tokens at the live endpoint's price, and collected from the Batch API at its own.
    pub tokens: u64,
    pub batch_tokens: u64,
    pub pending: Option<i64>,
    pub pending_counted_ms: i64,
    /// How long the last count took (ms), to space counts on large tables.
    last_count_ms: f64,
    pub last_batch_ms: i64,
    /// (minute since the epoch, papers embedded in it).
    minutes: [(i64, u32); MINUTES],
    error: [u8; ERROR_BYTES],
    error_len: usize,
    pub last_error_ms: i64,
    endpoints: [EndpointFigures; JOB_ENDPOINTS],
    /// Whether its database's first worker has looked for its Batch API batches a crash left
    /// unrecorded, since that worker started: until then, the other workers send none of its
    /// papers live (they could be in such a batch).
    batches_checked: bool,
}

impl JobSlot {
    const EMPTY: JobSlot = JobSlot {
        key: JobKey::EMPTY,
        touched_ms: 0,
        embedded: 0,
        failed: 0,
        tokens: 0,
        batch_tokens: 0,
        pending: None,
        pending_counted_ms: 0,
        last_count_ms: 0.0,
        last_batch_ms: 0,
        minutes: [(0, 0); MINUTES],
        error: [0; ERROR_BYTES],
        error_len: 0,
        last_error_ms: 0,
        endpoints: [EndpointFigures::EMPTY; JOB_ENDPOINTS],
        batches_checked: false,
    };

    /// Each endpoint's share of the inputs answered and its failed requests, as
    /// `openai 70% (2 errors), local 30%`; `None` before any request.
    pub fn endpoint_shares(&self) -> Option<String> {
        let used: Vec<&EndpointFigures> = self.endpoints.iter().filter(|e| e.len > 0).collect();
        if used.is_empty() {
            return None;
        }
        let total: u64 = used.iter().map(|e| e.inputs).sum();
        let parts: Vec<String> = used
            .iter()
            .map(|e| {
                let name = String::from_utf8_lossy(&e.name[..e.len as usize]);
                let share = if total > 0 {
                    e.inputs as f64 * 100.0 / total as f64
                } else {
                    0.0
                };
                match e.errors {
                    0 => format!("{name} {share:.0}%"),
                    1 => format!("{name} {share:.0}% (1 error)"),
                    n => format!("{name} {share:.0}% ({n} errors)"),
                }
            })
            .collect();
        Some(parts.join(", "))
    }

    /// Papers per minute over the last ten whole minutes and the one under way.
    pub fn per_minute(&self) -> f64 {
        let now_minute = unix_now_ms() / 60_000;
        let recent: u64 = self
            .minutes
            .iter()
            .filter(|(minute, _)| now_minute - minute < MINUTES as i64)
            .map(|(_, count)| u64::from(*count))
            .sum();
        let elapsed_minutes = (MINUTES - 1) as f64 + (unix_now_ms() % 60_000) as f64 / 60_000.0;
        recent as f64 / elapsed_minutes
    }

    /// The last error's text, if any.
    pub fn last_error(&self) -> Option<String> {
        (self.error_len > 0).then(|| String::from_utf8_lossy(&self.error[..self.error_len]).into_owned())
    }

    fn add_minute(&mut self, now_ms: i64, embedded: u64) {
        let minute = now_ms / 60_000;
        let slot = &mut self.minutes[(minute as usize) % MINUTES];
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 = slot.1.saturating_add(embedded.min(u64::from(u32::MAX)) as u32);
    }
}

#[derive(Clone, Copy)]
pub struct JobFigures {
    slots: [JobSlot; JOB_SLOTS],
}

impl Default for JobFigures {
    fn default() -> Self {
        JobFigures {
            slots: [JobSlot::EMPTY; JOB_SLOTS],
        }
    }
}

// SAFETY: plain data.
unsafe impl PGRXSharedMemory for JobFigures {}

static FIGURES: PgLwLock<JobFigures> = unsafe { PgLwLock::new(c"doctrove_embed_job_figures") };
static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Requests the shared memory; only from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(FIGURES);
    AVAILABLE.store(true, Ordering::SeqCst);
}

/// Runs `f` on job `key`'s slot (taking the least recently written one for a new job).
fn with_slot(key: JobKey, f: impl FnOnce(&mut JobSlot)) {
    if !AVAILABLE.load(Ordering::SeqCst) {
        return;
    }
    let now = unix_now_ms();
    let mut figures = FIGURES.exclusive();
    let index = match figures.slots.iter().position(|s| s.key == key) {
        Some(i) => i,
        None => {
            let (i, _) = figures
                .slots
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.touched_ms)
                .expect("JOB_SLOTS > 0");
            figures.slots[i] = JobSlot { key, ..JobSlot::EMPTY };
            i
        }
    };
    let slot = &mut figures.slots[index];
    slot.touched_ms = now;
    f(slot);
}

/// Adds a committed batch of job `key`.
pub fn record_batch(key: JobKey, embedded: u64, failed: u64, tokens: u64, batch_tokens: u64) {
    let now = unix_now_ms();
    with_slot(key, |slot| {
        slot.embedded += embedded;
        slot.failed += failed;
        slot.tokens += tokens;
        slot.batch_tokens += batch_tokens;
        slot.last_batch_ms = now;
        slot.add_minute(now, embedded);
        if let Some(pending) = slot.pending.as_mut() {
            *pending = (*pending - embedded as i64).max(0);
        }
    });
}

/// Adds what each endpoint did in one batch of job `key`: (name, inputs answered, errors).
pub fn record_endpoints(key: JobKey, tallies: &[(&str, u64, u64)]) {
    with_slot(key, |slot| {
        for &(name, inputs, errors) in tallies {
            if name.is_empty() || name.len() >= NAME_BYTES || (inputs == 0 && errors == 0) {
                continue;
            }
            let found = slot
                .endpoints
                .iter()
                .position(|e| e.len > 0 && &e.name[..e.len as usize] == name.as_bytes());
            let free = slot.endpoints.iter().position(|e| e.len == 0);
            let Some(i) = found.or(free) else { continue };
            let e = &mut slot.endpoints[i];
            if found.is_none() {
                e.name[..name.len()].copy_from_slice(name.as_bytes());
                e.len = name.len() as u8;
            }
            e.inputs += inputs;
            e.errors += errors;
        }
    });
}

/// Stores a fresh pending count of job `key`.
/// Stores a fresh pending count of job `key` that took `took_ms`.
pub fn store_pending(key: JobKey, pending: i64, took_ms: f64) {
    let now = unix_now_ms();
    with_slot(key, |slot| {
        slot.pending = Some(pending);
        slot.pending_counted_ms = now;
        slot.last_count_ms = took_ms;
    });
}

/// Claims the next count of job `key` for the caller when its figure is older than a minute
/// (and than 20 times its last count took), so only one worker counts it.
pub fn claim_recount(key: JobKey) -> bool {
    let mut claimed = false;
    with_slot(key, |slot| {
        let age_ms = unix_now_ms() - slot.pending_counted_ms;
        if embed_core::progress::recount_due(slot.pending_counted_ms > 0, age_ms, slot.last_count_ms, 60_000.0) {
            // Marked fresh now so other workers do not count at the same time.
            slot.pending_counted_ms = unix_now_ms();
            claimed = true;
        }
    });
    claimed
}

/// Records the error that stopped a batch of job `key`.
pub fn record_error(key: JobKey, message: &str) {
    let now = unix_now_ms();
    with_slot(key, |slot| {
        let mut end = message.len().min(ERROR_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        slot.error[..end].copy_from_slice(&message.as_bytes()[..end]);
        slot.error_len = end;
        slot.last_error_ms = now;
    });
}

/// Notes that job `key`'s unrecorded batches have been looked for.
pub fn mark_batches_checked(key: JobKey) {
    with_slot(key, |slot| slot.batches_checked = true);
}

/// Whether job `key`'s unrecorded batches have been looked for since its database's first
/// worker started (a slot given to another job forgets it: the safe side).
pub fn batches_checked(key: JobKey) -> bool {
    of(key).is_some_and(|slot| slot.batches_checked)
}

/// Forgets that the batches of database `database`'s jobs were looked for: its first worker
/// changed, and the new one looks again before the others send those jobs' papers live.
pub fn forget_batches_checked(database: u32) {
    if !AVAILABLE.load(Ordering::SeqCst) {
        return;
    }
    for slot in FIGURES.exclusive().slots.iter_mut().filter(|s| s.key.database == database) {
        slot.batches_checked = false;
    }
}

/// A copy of job `key`'s figures, if it has any.
pub fn of(key: JobKey) -> Option<JobSlot> {
    if !AVAILABLE.load(Ordering::SeqCst) {
        return None;
    }
    FIGURES.share().slots.iter().find(|s| s.key == key).copied()
}
