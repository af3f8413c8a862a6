//! The figures behind the `doctrove_embed.status` and `doctrove_embed.workers` views, read from
//! shared memory so they answer in milliseconds however large the table: the views never count
//! the table themselves (and so need no right on it). The pending figure is the last count
//! taken, by a worker or by `get_papers_needing_embeddings_count()`, lowered by each batch
//! since; `pending_counted_at` says how old it is.

use crate::pg::clock::unix_now;
use crate::pg::job_figures::{self, JobKey};
use crate::pg::shared_state::{self, Phase};
use crate::settings::gucs;
use crate::table::similarity::hnsw_index;
use crate::table::target::Target;

/// PostgreSQL timestamps count microseconds from 2000-01-01; unix time from 1970-01-01.
const POSTGRES_EPOCH_IN_UNIX_SECONDS: f64 = 946_684_800.0;

pub struct Status {
    /// `None` until the table has been counted since the server started.
    pub pending: Option<i64>,
    pub pending_counted_at: Option<f64>,
    pub embedded: i64,
    pub failed: i64,
    pub per_minute_1m: f64,
    pub per_minute_10m: f64,
    pub eta_seconds: Option<f64>,
    pub tokens: i64,
    pub workers_running: i32,
    pub workers_configured: i32,
    pub enabled: bool,
    /// The HNSW index on the embedding column, if any.
    pub hnsw_index: Option<String>,
}

pub struct WorkerRow {
    pub worker: i32,
    pub pid: i32,
    /// The database it serves (its oid), while it runs or starts.
    pub database: Option<u32>,
    pub state: String,
    pub batches: i64,
    pub embedded: i64,
    pub failures: i64,
    pub last_error: Option<String>,
    pub last_batch_at: Option<f64>,
}

/// The status row. Without shared memory (library not preloaded) nothing but the settings is
/// known.
/// `target` is `None` when the session's settings name no usable table: the figures that do not
/// depend on it are still shown, so the view never fails.
pub fn status(target: Option<&Target>) -> Status {
    let hnsw_index = target.and_then(hnsw_index);
    let Some(s) = shared_state::snapshot() else {
        return Status {
            pending: None,
            pending_counted_at: None,
            embedded: 0,
            failed: 0,
            per_minute_1m: 0.0,
            per_minute_10m: 0.0,
            eta_seconds: None,
            tokens: 0,
            workers_running: 0,
            workers_configured: gucs::WORKERS.get(),
            enabled: gucs::ENABLED.get(),
            hnsw_index,
        };
    };
    let workers_running = s.workers.iter().filter(|w| w.pid != 0).count();
    // The job's own figure: each database's settings job has its own.
    let counted = target
        .and_then(|t| job_figures::of(JobKey::here(&t.job)))
        .and_then(|job| Some((job.pending?, job.pending_counted_ms)));
    let pending = counted.map(|(pending, _)| pending);
    let now = unix_now();
    let per_minute_1m = s.rate.per_minute(now, 60);
    let per_minute_10m = s.rate.per_minute(now, 600);
    let rate = if per_minute_1m > 0.0 { per_minute_1m } else { per_minute_10m };
    Status {
        pending,
        pending_counted_at: counted.map(|(_, at)| at as f64 / 1000.0),
        embedded: s.embedded as i64,
        failed: s.failed as i64,
        per_minute_1m,
        per_minute_10m,
        eta_seconds: pending
            .and_then(|p| embed_core::progress::eta_for(p.max(0) as u64, rate))
            .map(|d| d.as_secs_f64()),
        tokens: s.tokens as i64,
        workers_running: workers_running as i32,
        workers_configured: gucs::WORKERS.get(),
        enabled: gucs::ENABLED.get(),
        hnsw_index,
    }
}

/// One row per configured worker.
pub fn workers() -> Vec<WorkerRow> {
    let Some(s) = shared_state::snapshot() else {
        return Vec::new();
    };
    s.workers
        .iter()
        .take(gucs::WORKERS.get().max(0) as usize)
        .enumerate()
        .map(|(i, w)| WorkerRow {
            worker: i as i32,
            pid: w.pid,
            database: (w.database != 0).then_some(w.database),
            state: match (w.pid, w.phase) {
                (0, _) => Phase::Stopped.label().to_string(),
                // While retrying, the last error holds what is retried and when.
                (_, Phase::Retrying) => w
                    .last_error()
                    .map(|e| e.split(" (").next().unwrap_or("").to_string())
                    .unwrap_or_default(),
                (_, phase) => phase.label().to_string(),
            },
            batches: w.batches as i64,
            embedded: w.embedded as i64,
            failures: w.failures as i64,
            last_error: w.last_error(),
            last_batch_at: (w.last_batch_at != 0).then(|| w.last_batch_at as f64 / 1e6 + POSTGRES_EPOCH_IN_UNIX_SECONDS),
        })
        .collect()
}
