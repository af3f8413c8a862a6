//! What the background workers and `embed_pending` calls share across processes: one slot per
//! worker (pid, database, phase, counters, last error, latch), the launcher's table of
//! databases (`database_pool`), totals, a per-second rate ring, and the cached pending figure
//! the status view reads without counting.
//!
//! It exists only when the library is preloaded (`shared_preload_libraries`); otherwise
//! [`available`] is false and every accessor does nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use embed_core::progress::RateRing;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use crate::pg::clock::{unix_now, unix_now_ms};
use crate::pg::database_entry::{entry_mut, DatabaseEntry, MAX_DATABASES};
use crate::pg::job_figures::{self, JobKey};
use crate::settings::gucs::MAX_WORKERS;

const SLOTS: usize = MAX_WORKERS as usize;
const ERROR_BYTES: usize = 256;

/// What a worker is doing, shown in `doctrove_embed.workers` and `pg_stat_activity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Stopped,
    Starting,
    Idle,
    Fetching,
    CallingApi,
    Writing,
    Disabled,
    Paused,
    RateLimited,
    Retrying,
    Batches,
}

impl Phase {
    pub fn label(self) -> &'static str {
        match self {
            Phase::Stopped => "stopped",
            Phase::Starting => "starting",
            Phase::Idle => "idle",
            Phase::Fetching => "fetching",
            Phase::CallingApi => "calling API",
            Phase::Writing => "writing",
            Phase::Disabled => "disabled",
            Phase::Paused => "paused after an error",
            Phase::RateLimited => "waiting for the rate limit",
            Phase::Retrying => "retrying",
            Phase::Batches => "submitting and collecting batches",
        }
    }
}

/// One worker's slot.
#[derive(Clone, Copy)]
pub struct WorkerSlot {
    pub pid: i32,
    /// The database the slot's worker serves (0: the slot is free). Set by the launcher when it
    /// starts the worker, so a starting worker already counts for its database.
    pub database: u32,
    /// Sum of the weights of the worker's jobs that have work (0: none), for the launcher.
    pub busy_weight: u32,
    /// Whether the worker is leaving on purpose (its slot given away, the extension gone):
    /// any other exit counts as a failure of its database, and delays the next start there.
    pub leaving_cleanly: bool,
    pub phase: Phase,
    pub batches: u64,
    pub embedded: u64,
    pub failures: u64,
    last_error: [u8; ERROR_BYTES],
    last_error_len: usize,
    /// Microseconds since 2000-01-01 (PostgreSQL's TimestampTz); 0 when none yet.
    pub last_batch_at: i64,
    /// The worker's process latch (an address in shared memory), set to wake it.
    pub latch: usize,
}

impl Default for WorkerSlot {
    fn default() -> Self {
        WorkerSlot {
            pid: 0,
            database: 0,
            busy_weight: 0,
            leaving_cleanly: false,
            phase: Phase::Stopped,
            batches: 0,
            embedded: 0,
            failures: 0,
            last_error: [0; ERROR_BYTES],
            last_error_len: 0,
            last_batch_at: 0,
            latch: 0,
        }
    }
}

impl WorkerSlot {
    pub fn last_error(&self) -> Option<String> {
        (self.last_error_len > 0).then(|| String::from_utf8_lossy(&self.last_error[..self.last_error_len]).into_owned())
    }

    fn set_last_error(&mut self, message: &str) {
        let mut end = message.len().min(ERROR_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.last_error[..end].copy_from_slice(&message.as_bytes()[..end]);
        self.last_error_len = end;
    }
}

/// Everything in shared memory.
#[derive(Clone, Copy)]
pub struct Shared {
    pub workers: [WorkerSlot; SLOTS],
    /// Papers embedded, failed, and tokens used since the server started.
    pub embedded: u64,
    pub failed: u64,
    pub tokens: u64,
    /// Tokens of vectors collected from the Batch API since the server started.
    pub batch_tokens: u64,
    /// The databases the launcher knows, and its latch.
    pub databases: [DatabaseEntry; MAX_DATABASES],
    pub launcher_latch: usize,
    /// An extension was created somewhere: the launcher reads the databases again now (the
    /// database may be new to it).
    pub rescan_asked: bool,
    pub rate: RateRing,
    /// The last pending count, lowered by each batch since; `pending_counted_at` is in unix ms.
    pub pending: i64,
    /// Which database and table the pending figure is of.
    pub pending_of: (u32, u32),
    pub pending_counted_at: i64,
    pub pending_known: bool,
    /// How long the last count took (ms), to space counts on large tables.
    pub last_count_ms: f64,
    /// Backlog at the last "Found" line, and the embedded total then, for "Processed X/Y".
    pub found: u64,
    pub embedded_at_found: u64,
    /// When that line was written (unix ms).
    pub found_at_ms: i64,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            workers: [WorkerSlot::default(); SLOTS],
            embedded: 0,
            failed: 0,
            tokens: 0,
            batch_tokens: 0,
            databases: [DatabaseEntry::default(); MAX_DATABASES],
            launcher_latch: 0,
            rescan_asked: false,
            rate: RateRing::default(),
            pending: 0,
            pending_of: (0, 0),
            pending_counted_at: 0,
            pending_known: false,
            last_count_ms: 0.0,
            found: 0,
            embedded_at_found: 0,
            found_at_ms: 0,
        }
    }
}

// SAFETY: plain data (the latch is stored as an address into shared memory).
unsafe impl PGRXSharedMemory for Shared {}

static SHARED: PgLwLock<Shared> = unsafe { PgLwLock::new(c"doctrove_embed_shared") };
static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Requests the shared memory; only from `_PG_init` while preloading.
pub fn init() {
    pg_shmem_init!(SHARED);
    AVAILABLE.store(true, Ordering::SeqCst);
}

/// Whether the shared state exists in this server (the library was preloaded).
pub fn available() -> bool {
    AVAILABLE.load(Ordering::SeqCst)
}

/// A copy of the whole state, taken under a share lock.
pub fn snapshot() -> Option<Shared> {
    available().then(|| *SHARED.share())
}

/// Runs `f` on the state under the exclusive lock, when it exists.
pub fn update<R>(f: impl FnOnce(&mut Shared) -> R) -> Option<R> {
    available().then(|| f(&mut SHARED.exclusive()))
}

/// The slots of the workers running in `database`, lowest first (the first does the Batch API
/// duty; the last leaves first).
pub fn workers_of(s: &Shared, database: u32) -> impl Iterator<Item = usize> + '_ {
    (0..s.workers.len()).filter(move |&i| s.workers[i].pid != 0 && s.workers[i].database == database)
}

/// Claims slot `index` for the calling worker process, which the launcher started for this
/// database; false when the slot was given to another database meanwhile (a launcher that
/// restarted), and the worker should leave.
pub fn register_worker(index: usize) -> bool {
    // SAFETY: MyLatch points at this process's latch in shared memory; MyProcPid is set.
    let (pid, latch) = unsafe { (pg_sys::MyProcPid, pg_sys::MyLatch as usize) };
    let database = current_database();
    update(|s| {
        if s.workers[index].database != database || s.workers[index].pid != 0 {
            return false;
        }
        let first_here = workers_of(s, database).next().is_none();
        let slot = &mut s.workers[index];
        *slot = WorkerSlot {
            pid,
            latch,
            phase: Phase::Starting,
            // Busy until its first batch says otherwise, so the launcher does not move it on
            // before it has looked.
            busy_weight: 1,
            leaving_cleanly: false,
            ..*slot
        };
        if first_here {
            // The database's first worker: until it has looked for batches a crash left
            // unrecorded, the others send none of the papers of jobs that use the Batch API.
            job_figures::forget_batches_checked(database);
        }
        true
    })
    .unwrap_or(false)
}

/// Longest wait before a database whose workers keep failing gets another.
const MAX_RESTART_DELAY: std::time::Duration = std::time::Duration::from_secs(300);

/// Frees slot `index` when its worker exits. An exit that was not a clean leave (a FATAL
/// error, a terminated worker) delays the database's next worker: 2 s, doubling up to 5
/// minutes while its workers keep failing.
pub fn unregister_worker(index: usize) {
    update(|s| {
        let database = s.workers[index].database;
        let clean = s.workers[index].leaving_cleanly;
        let was_first = workers_of(s, database).next() == Some(index);
        if was_first && database != 0 {
            // The next worker in line takes the Batch API duty: it looks again first (this one
            // may have died between creating a batch and recording it).
            job_figures::forget_batches_checked(database);
        }
        let slot = &mut s.workers[index];
        slot.pid = 0;
        slot.latch = 0;
        slot.database = 0;
        slot.busy_weight = 0;
        slot.leaving_cleanly = false;
        slot.phase = Phase::Stopped;
        let now = unix_now_ms();
        entry_mut(&mut s.databases, database, |entry| {
            entry.last_served_ms = now;
            if clean {
                entry.failures = 0;
            } else {
                entry.failures = entry.failures.saturating_add(1);
                let delay = embed_core::retry::pause_after_failures(entry.failures, MAX_RESTART_DELAY);
                entry.retry_at_ms = now + delay.as_millis() as i64;
            }
        });
        wake_launcher(s);
    });
}

/// Sets worker `index`'s latch, if it runs.
pub fn wake_slot(s: &Shared, index: usize) {
    let latch = s.workers[index].latch;
    if latch != 0 {
        // SAFETY: the address is a PGPROC latch in shared memory, valid for the server's life.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// Sets the launcher's latch (it plans again at once).
pub fn wake_launcher(s: &Shared) {
    if s.launcher_latch != 0 {
        // SAFETY: the address is the launcher's PGPROC latch, valid for the server's life.
        unsafe { pg_sys::SetLatch(s.launcher_latch as *mut pg_sys::Latch) };
    }
}

pub fn set_phase(index: usize, phase: Phase) {
    update(|s| s.workers[index].phase = phase);
}

/// What one batch (live, or a collected Batch API job) adds to the figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchFigures {
    pub embedded: u64,
    /// Papers recorded in `doctrove_embed.failures`.
    pub failed: u64,
    /// Tokens paid at the live endpoint's price.
    pub tokens: u64,
    /// Tokens of vectors collected from the Batch API (paid at its price).
    pub batch_tokens: u64,
    /// The table (oid) the batch worked on.
    pub relid: u32,
    /// The job it ran (no job: none of the per-job figures).
    pub job: JobKey,
}

/// Adds a finished batch to the totals (and to worker `index`'s slot, for a worker).
pub fn record_batch(index: Option<usize>, figures: &BatchFigures) {
    // SAFETY: reads the current time.
    let now_ts = unsafe { pg_sys::GetCurrentTimestamp() };
    update(|s| {
        let embedded = figures.embedded;
        s.embedded += embedded;
        s.failed += figures.failed;
        s.tokens += figures.tokens;
        s.batch_tokens += figures.batch_tokens;
        s.rate.add(unix_now(), embedded as u32);
        if s.pending_of == (current_database(), figures.relid) {
            s.pending = (s.pending - embedded as i64).max(0);
        }
        if figures.job != JobKey::default() {
            job_figures::record_batch(figures.job, embedded, figures.failed, figures.tokens, figures.batch_tokens);
        }
        if let Some(i) = index {
            let slot = &mut s.workers[i];
            slot.batches += 1;
            slot.embedded += embedded;
            slot.failures += figures.failed;
            slot.last_batch_at = now_ts;
        }
    });
}

/// Worker `index` waits to send a request again: `text` says after what, which attempt, and
/// when (`retrying after HTTP 503, attempt 3 of 6, next in 4.0 s (...)`), shown as its state
/// and last error.
pub fn set_retrying(index: usize, text: &str) {
    update(|s| {
        let slot = &mut s.workers[index];
        slot.phase = Phase::Retrying;
        slot.set_last_error(text);
    });
}

/// Notes a failed batch of worker `index`.
pub fn record_error(index: usize, message: &str) {
    update(|s| {
        let slot = &mut s.workers[index];
        slot.failures += 1;
        slot.set_last_error(message);
    });
}

/// Wakes this database's workers for papers a commit added (see [`slots_to_wake`]). A database
/// that no worker serves now (more databases than workers) asks the launcher for one.
pub fn wake_for_new_papers() {
    let database = current_database();
    let latches = update(|s| match slots_to_wake(&mut s.workers, database) {
        Some(slots) => slots.into_iter().map(|i| s.workers[i].latch).collect(),
        None => {
            entry_mut(&mut s.databases, database, |entry| entry.wanted = true);
            wake_launcher(s);
            Vec::new()
        }
    })
    .unwrap_or_default();
    for latch in latches {
        // SAFETY: the address is a PGPROC latch in shared memory, valid for the server's life.
        unsafe { pg_sys::SetLatch(latch as *mut pg_sys::Latch) };
    }
}

/// The slots of `database`'s running workers a commit that added papers wakes: its first idle
/// worker, marked as fetching at once so the next commit wakes another; or, when none is idle,
/// all of them. A busy worker may have found nothing left a moment before the commit and be on
/// its way to idle with the new rows unseen: its latch, set now, makes it look once more
/// (setting the latch of one that goes on to another batch anyway costs nothing). A disabled
/// worker (`doctrove_embed.enabled` off) is left asleep. `None`: no worker serves the database.
pub fn slots_to_wake(workers: &mut [WorkerSlot], database: u32) -> Option<Vec<usize>> {
    if !workers.iter().any(|w| w.database == database) {
        return None;
    }
    let running = |w: &WorkerSlot| w.pid != 0 && w.latch != 0 && w.database == database;
    if let Some(idle) = workers.iter().position(|w| running(w) && w.phase == Phase::Idle) {
        workers[idle].phase = Phase::Fetching;
        return Some(vec![idle]);
    }
    Some(
        (0..workers.len())
            .filter(|&i| running(&workers[i]) && workers[i].phase != Phase::Disabled)
            .collect(),
    )
}

/// The database this backend is connected to.
pub fn current_database() -> u32 {
    // SAFETY: reads this backend's database oid.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// Stores a fresh pending count of table `relid` (in this database) that took `took_ms`.
pub fn store_pending_count(relid: u32, pending: i64, took_ms: f64) {
    update(|s| {
        s.pending_of = (current_database(), relid);
        s.pending = pending;
        s.pending_known = true;
        s.pending_counted_at = unix_now_ms();
        s.last_count_ms = took_ms;
    });
}

/// Claims the next "Found N papers" line for the caller: at most one every 10 s for the whole
/// server, however many workers start on work at once.
pub fn claim_announcement() -> bool {
    update(|s| {
        let now = unix_now_ms();
        if s.found_at_ms != 0 && now - s.found_at_ms < 10_000 {
            return false;
        }
        s.found_at_ms = now;
        true
    })
    .unwrap_or(false)
}

/// Whether the pending figure is stale: older than 10 s, or than 20 times its last count took
/// (so counting a huge backlog never costs more than about 5% of one worker).
pub fn pending_is_stale(s: &Shared) -> bool {
    let age_ms = unix_now_ms() - s.pending_counted_at;
    embed_core::progress::recount_due(s.pending_known, age_ms, s.last_count_ms, 10_000.0)
}

/// Claims the next recount for the caller when the figure is stale (so only one worker counts).
pub fn claim_recount() -> bool {
    update(|s| {
        if pending_is_stale(s) {
            // Mark it fresh now so other workers do not count at the same time.
            s.pending_counted_at = unix_now_ms();
            s.pending_known = true;
            true
        } else {
            false
        }
    })
    .unwrap_or(false)
}

impl Shared {
    /// Papers per minute for progress lines: over the last minute, or since the last "Found"
    /// line when that is more recent (so the first lines of a backlog are not understated).
    pub fn progress_rate(&self) -> f64 {
        let since_found_ms = unix_now_ms() - self.found_at_ms;
        if since_found_ms > 0 && since_found_ms < 60_000 {
            self.embedded.saturating_sub(self.embedded_at_found) as f64 * 60_000.0 / since_found_ms as f64
        } else {
            self.rate.per_minute(unix_now(), 60)
        }
    }
}
