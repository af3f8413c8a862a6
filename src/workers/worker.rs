//! A background worker: started by the launcher in one database, it runs batches (the same
//! selection and locking as `embed_pending`) in its own transactions, sleeps on its latch when
//! nothing is pending, and leaves when the launcher gives its slot to another database or the
//! extension is dropped.
//!
//! Signals use PostgreSQL's own handlers (`signals`): SIGTERM ends the worker at once,
//! mid-request, and the open transaction (and with it the batch) is rolled back.
//! An ERROR inside a batch (the table's triggers or constraints, the API, the settings) is caught,
//! rolled back, logged and followed by a pause; only SIGTERM and postmaster death end a worker.

use std::time::{Duration, Instant};

use embed_core::progress::{batch_line, found_line, progress_line};
use embed_core::repeated_warnings::RepeatedWarnings;
use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

use crate::errors::UserError;
use crate::live::batch::{run_batch, BatchOutcome};
use crate::pg::database_pool;
use crate::pg::identity::Acting;
use crate::pg::job_figures::{self, JobKey};
use crate::pg::latch;
use crate::pg::shared_state::{self, Phase};
use crate::pg::transaction::in_transaction;
use crate::settings::gucs;
use crate::table::jobs::{prepare, JobChoice, JobDefinition};
use crate::table::pending::{any_pending, count_and_store};
use crate::table::target::{resolve, SETTINGS_JOB};
use crate::workers::batch_api_duty::BatchApiDuty;
use crate::workers::job_turns::{JobTurns, Turn};
use crate::workers::launcher::register_launcher;
use crate::workers::signals;

/// A LOG line in the server log, formatted like `format!`. Not pgrx's `log!`: on PostgreSQL 13
/// it compares LOG with `log_min_messages` numerically and drops every LOG line at the default
/// (WARNING), while the server ranks LOG above WARNING for its log; `errstart`, which `report`
/// calls, decides rightly on every version.
macro_rules! server_log {
    ($($arg:tt)*) => {
        pgrx::pg_sys::panic::ErrorReport::new(
            pgrx::PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!($($arg)*),
            "doctrove_embed worker",
        )
        .report(pgrx::PgLogLevel::LOG)
    };
}

/// Shortest time between two progress lines of one worker.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long a job whose unrecorded batches are still to be looked for waits before it looks
/// again.
const BATCH_CHECK_WAIT: Duration = Duration::from_millis(200);
/// Longest pause after repeated failures.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Registers the launcher, which starts `doctrove_embed.workers` workers among the databases;
/// only from `_PG_init` while preloading.
pub fn register_workers() {
    let workers = gucs::WORKERS.get().max(0);
    if workers == 0 {
        return;
    }
    // SAFETY: reads a setting PostgreSQL has loaded before preloading libraries.
    let slots = unsafe { pg_sys::max_worker_processes };
    if workers + 1 >= slots {
        warning!(
            "doctrove_embed.workers is {workers} but max_worker_processes is {slots}: some workers will not start \
             (raise max_worker_processes to at least {})",
            workers + 2
        );
    }
    register_launcher();
}

/// Shows worker `index`'s phase in `doctrove_embed.workers` and `pg_stat_activity`.
fn show_phase(index: usize, phase: Phase, detail: &str) {
    shared_state::set_phase(index, phase);
    report_activity(phase, detail);
}

/// Shows worker `index`'s phase in a batch of `what`: a retry shows what is retried instead
/// (the state, last_error and pg_stat_activity all say it).
fn show_batch_phase(index: usize, phase: Phase, detail: &str, what: &str) {
    if phase == Phase::Retrying {
        shared_state::set_retrying(index, detail);
        report_activity(phase, detail);
    } else {
        show_phase(index, phase, what);
    }
}

fn report_activity(phase: Phase, detail: &str) {
    let text = std::ffi::CString::new(if detail.is_empty() {
        phase.label().to_string()
    } else {
        format!("{}: {detail}", phase.label())
    })
    .unwrap_or_default();
    let state = if phase == Phase::Idle {
        pg_sys::BackendState::STATE_IDLE
    } else {
        pg_sys::BackendState::STATE_RUNNING
    };
    // SAFETY: copies the text into this backend's status entry.
    unsafe { pg_sys::pgstat_report_activity(state, text.as_ptr()) };
}

/// A worker's own bookkeeping between batches.
struct WorkerLoop {
    index: usize,
    busy: bool,
    /// Whether this worker logged the current busy period's backlog (and so closes it).
    announced: bool,
    last_log: Option<Instant>,
    last_logged_processed: Option<u64>,
    failures_in_a_row: u32,
    warnings: RepeatedWarnings,
    batch_api: BatchApiDuty,
    turns: JobTurns,
}

impl WorkerLoop {
    fn phase(&self, phase: Phase, detail: &str) {
        show_phase(self.index, phase, detail);
    }

    /// Sum of the weights of this worker's jobs that have work (none while disabled).
    fn busy_weight(&self) -> u32 {
        if gucs::ENABLED.get() {
            self.turns.busy_weight(Instant::now())
        } else {
            0
        }
    }

    /// Counts pending papers (in its own transaction) and stores the figure for the status view.
    fn recount(&self) -> Result<i64, UserError> {
        in_transaction(|| count_and_store(&resolve()?, Acting::TableOwner))
    }

    /// Whether any paper is pending: one probe through the partial index, not a count.
    fn probe(&self) -> Result<bool, UserError> {
        in_transaction(|| {
            let target = resolve()?;
            any_pending(&target, Acting::TableOwner)
        })
    }

    /// Work found after being idle. The backlog is announced ("Found N papers") at most every
    /// 10 s for the whole server, and counted at most once per interval (see
    /// `shared_state::claim_recount`): the worker that announces starts a new progress baseline
    /// and closes it when the backlog is done; the others just work.
    fn start_busy_period(&mut self) {
        self.busy = true;
        self.announced = false;
        if !shared_state::claim_announcement() {
            return;
        }
        let counted = if shared_state::claim_recount() {
            self.recount().ok()
        } else {
            None
        };
        let pending = counted.or_else(|| shared_state::snapshot().map(|s| s.pending)).unwrap_or(0);
        shared_state::update(|s| {
            s.found = pending.max(0) as u64;
            s.embedded_at_found = s.embedded;
        });
        server_log!("doctrove_embed worker {}: {}", self.index, found_line(pending.max(0) as u64));
        // The announced backlog is followed by its first batch line, then at most one every
        // 10 s, and closed by a last progress line.
        self.announced = true;
        self.last_log = None;
    }

    /// The batch line (when a batch is given) and the progress line, at most every 10 s
    /// unless `force`d.
    fn log_progress(&mut self, outcome: Option<&BatchOutcome>, force: bool) {
        if !force && self.last_log.is_some_and(|t| t.elapsed() < LOG_INTERVAL) {
            return;
        }
        self.last_log = Some(Instant::now());
        let Some(s) = shared_state::snapshot() else { return };
        if let Some(outcome) = outcome {
            let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1000.0);
            let updated = outcome.successful.max(0) as u64;
            server_log!(
                "doctrove_embed worker {}: {}",
                self.index,
                batch_line(
                    ms(outcome.fetch_ms + outcome.api_ms + outcome.db_ms),
                    ms(outcome.api_ms),
                    ms(outcome.fetch_ms + outcome.db_ms),
                    updated,
                    updated,
                    outcome.failed.max(0) as u64
                )
            );
        }
        let processed = s.embedded.saturating_sub(s.embedded_at_found);
        if outcome.is_none() && self.last_logged_processed == Some(processed) {
            return; // the closing line would repeat the one just written
        }
        self.last_logged_processed = Some(processed);
        let total = s.found.max(processed);
        server_log!(
            "doctrove_embed worker {}: {}",
            self.index,
            progress_line(processed, total, s.progress_rate())
        );
    }

    /// Records `text` as the worker's last error, and logs it after `context` as a WARNING, once a
    /// minute at most while it repeats.
    fn report_error(&mut self, context: &str, text: String) {
        shared_state::record_error(self.index, &text);
        self.warn_repeated(context, text);
    }

    /// Logs `text` after `context` as a WARNING, once a minute at most while it repeats.
    fn warn_repeated(&mut self, context: &str, text: String) {
        if self.warnings.should_log(&text, Instant::now(), Duration::from_secs(60)) {
            warning!("doctrove_embed worker {}: {context}{text}", self.index);
        }
    }

    fn on_error(&mut self, error: &UserError) -> Duration {
        self.failures_in_a_row += 1;
        self.report_error("batch failed, nothing written: ", error.summary());
        // 2 s, 4 s, 8 s, ... up to 5 minutes, whatever the naptime: a worker that met an error
        // is not woken by new papers (the error would likely repeat), so it looks again itself.
        embed_core::retry::pause_after_failures(self.failures_in_a_row, MAX_PAUSE)
    }

    fn pause_after(&mut self, error: UserError) -> Duration {
        let pause = self.on_error(&error);
        self.phase(Phase::Paused, &error.summary());
        pause
    }

    /// One batch of the job whose turn it is; returns how long to sleep before the next (zero
    /// when a job has more to do).
    fn step(&mut self) -> Duration {
        let naptime = Duration::from_millis(gucs::NAPTIME_MS.get() as u64);
        if !gucs::ENABLED.get() {
            self.phase(Phase::Disabled, "");
            return naptime;
        }
        let now = Instant::now();
        self.turns.refresh(now);
        let uses_batches = gucs::BATCH_API.get() || self.turns.any_uses_batch_api();
        if self.batch_api.due(self.index, uses_batches) {
            self.poll_batches();
        }
        match self.turns.next(now) {
            Some(Turn::Settings) if gucs::BATCH_API.get() && self.waits_for_batch_check(SETTINGS_JOB) => {
                self.turns.idle(SETTINGS_JOB, now, BATCH_CHECK_WAIT);
            }
            Some(Turn::Recorded(job)) if job.use_batch_api && self.waits_for_batch_check(&job.spec.job) => {
                self.turns.idle(&job.spec.job, now, BATCH_CHECK_WAIT);
            }
            Some(Turn::Settings) => {
                let pause = self.settings_step(naptime);
                if pause.is_zero() {
                    self.turns.ran(SETTINGS_JOB);
                } else if self.failures_in_a_row > 0 {
                    self.turns.failing_for(SETTINGS_JOB, now, pause);
                } else {
                    self.turns.idle(SETTINGS_JOB, now, pause);
                }
            }
            Some(Turn::Recorded(job)) => self.job_step(&job, naptime),
            None => {}
        }
        // An idle first worker still wakes for its next poll of the batches.
        let poll = self.batch_api.next_in(self.index, uses_batches).unwrap_or(naptime);
        self.turns.wait(Instant::now(), naptime).min(poll)
    }

    /// Whether job `name`'s live batches wait: it uses the Batch API, and the database's first
    /// worker has not yet looked for its batches a crash may have left unrecorded (whose papers
    /// must not be sent again live before they are adopted).
    fn waits_for_batch_check(&self, name: &str) -> bool {
        let waits = !database_pool::leads_here(self.index) && !job_figures::batches_checked(JobKey::here(name));
        if waits {
            self.phase(
                Phase::Batches,
                &format!("job {name}: waiting for this database's first worker to look for batches left unrecorded"),
            );
        }
        waits
    }

    /// The Batch API duty of the database's first worker: every job's batches collected and
    /// submitted (see `batch_api_duty`). The live path goes on whatever the Batch API does (an
    /// endpoint without one, such as the local model server, answers 404 there).
    fn poll_batches(&mut self) {
        self.phase(Phase::Batches, "");
        let polled = self.batch_api.run();
        let (collected, submitted) = (&polled.collected, &polled.submitted);
        if collected.batches > 0 || submitted.batches > 0 || collected.adopted > 0 {
            server_log!(
                "doctrove_embed worker {}: Batch API: collected {} batches ({} papers written, {} failed, {} released), \
                 submitted {} batches of {} papers, adopted {}, {} still open",
                self.index,
                collected.batches,
                collected.totals.written,
                collected.totals.failed,
                collected.totals.released,
                submitted.batches,
                submitted.papers,
                collected.adopted,
                collected.still_open + submitted.batches
            );
        }
        // Not counted as the live path's failures: a failed poll neither pauses the live batches
        // nor keeps a commit from waking them.
        for (job, error) in &polled.errors {
            let text = format!("Batch API: {}", error.summary());
            if *job == SETTINGS_JOB {
                self.report_error("", text);
            } else {
                // The job's figures keep its error, not the worker's (`failures`, `last_error`
                // in `doctrove_embed.workers`), which would count one failure a poll.
                job_figures::record_error(JobKey::here(job), &error.summary());
                self.warn_repeated("", format!("job {job}: {text}"));
            }
        }
    }

    /// One batch of a recorded job, as its table's owner.
    fn job_step(&mut self, job: &JobDefinition, naptime: Duration) {
        let name = job.spec.job.clone();
        let index = self.index;
        let batch = job.batch_size;
        let choice = JobChoice::Named(name.clone());
        let result = in_transaction(|| {
            let what = format!("job {name}: batch of up to {batch} papers");
            run_batch(batch, &choice, Acting::TableOwner, &mut |phase, detail| {
                show_batch_phase(index, phase, detail, &what)
            })
        });
        let now = Instant::now();
        match result {
            Ok(mut outcome) if outcome.successful + outcome.failed > 0 => {
                shared_state::record_batch(Some(self.index), &outcome.figures());
                self.recount_job_when_due(&choice);
                match outcome.stopped_by.take() {
                    Some(error) => self.job_failed(&name, &error, now),
                    None => self.turns.ran(&name),
                }
            }
            Ok(_) => {
                self.recount_job_when_due(&choice);
                self.turns.ran(&name);
                self.turns.idle(&name, now, naptime);
                self.phase(Phase::Idle, "");
            }
            Err(error) => self.job_failed(&name, &error, now),
        }
    }

    fn job_failed(&mut self, name: &str, error: &UserError, now: Instant) {
        let text = format!("job {name}: {}", error.summary());
        shared_state::record_error(self.index, &text);
        job_figures::record_error(JobKey::here(name), &error.summary());
        let (rest, count) = self.turns.failed(name, now);
        if count == 1 || rest == Duration::from_secs(300) {
            warning!("doctrove_embed worker {}: batch failed, nothing written: {text}", self.index);
        }
        self.phase(Phase::Paused, &text);
    }

    /// Counts a recorded job's pending papers for `doctrove_embed.jobs` when this worker claims
    /// the count (see `job_figures::claim_recount`).
    fn recount_job_when_due(&mut self, choice: &JobChoice) {
        if !job_figures::claim_recount(JobKey::here(choice.name())) {
            return;
        }
        let _ = in_transaction(|| {
            let prepared = prepare(choice, Acting::TableOwner)?;
            count_and_store(&prepared.target()?, prepared.acting)
        });
    }

    /// One step of the settings' job, as in 0.3.0 (with its progress lines).
    fn settings_step(&mut self, naptime: Duration) -> Duration {
        if !self.busy {
            match self.probe() {
                Ok(false) => {
                    self.phase(Phase::Idle, "");
                    return naptime;
                }
                Ok(true) => self.start_busy_period(),
                Err(error) => return self.pause_after(error),
            }
        }
        let batch = gucs::BATCH_SIZE.get();
        let index = self.index;
        let result = in_transaction(|| {
            let what = format!("batch of up to {batch} papers");
            run_batch(batch, &JobChoice::Settings, Acting::TableOwner, &mut |phase, detail| {
                show_batch_phase(index, phase, detail, &what)
            })
        });
        match result {
            Ok(mut outcome) if outcome.successful + outcome.failed > 0 => {
                // Counted only now that the batch's transaction has committed.
                shared_state::record_batch(Some(self.index), &outcome.figures());
                self.log_progress(Some(&outcome), false);
                if shared_state::claim_recount() {
                    let _ = self.recount();
                }
                match outcome.stopped_by.take() {
                    // What was answered is written; the API failed for the rest: pause.
                    Some(error) => self.pause_after(error),
                    None => {
                        self.failures_in_a_row = 0;
                        Duration::ZERO
                    }
                }
            }
            Ok(_) => {
                // Nothing left that no one else holds: the backlog is done for now.
                self.failures_in_a_row = 0;
                self.busy = false;
                if self.announced {
                    self.log_progress(None, true);
                }
                if shared_state::claim_recount() {
                    let _ = self.recount();
                }
                self.phase(Phase::Idle, "");
                naptime
            }
            Err(error) => self.pause_after(error),
        }
    }
}

unsafe extern "C-unwind" fn on_worker_exit(_code: i32, arg: pg_sys::Datum) {
    shared_state::unregister_worker(arg.value());
}

/// Whether the extension is installed in this database: a catalog lookup by name, no SQL (the
/// database's own search_path never resolves anything for a worker).
fn extension_installed() -> bool {
    // SAFETY: a catalog lookup by name (missing_ok) inside the transaction.
    in_transaction(|| Ok(unsafe { pg_sys::get_extension_oid(c"doctrove_embed".as_ptr(), true) } != pg_sys::InvalidOid))
        .unwrap_or(false)
}

/// Settings a database's owner may set for its sessions (`ALTER DATABASE ... SET`) that a
/// worker, running as the bootstrap superuser, must not take: a `search_path` would let the
/// owner's objects resolve the worker's names (every statement of the extension qualifies its
/// names, and this makes sure), and `exit_on_error` would turn each caught ERROR into a restart.
fn override_database_settings() {
    for (name, value) in [(c"search_path", c""), (c"exit_on_error", c"off")] {
        // SAFETY: sets a setting of this process, as autovacuum does for its workers.
        unsafe {
            pg_sys::SetConfigOption(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_OVERRIDE,
            )
        };
    }
}

/// The name of the database this process is connected to.
fn database_name() -> String {
    in_transaction(|| {
        // SAFETY: looks up this backend's database inside the transaction; the name is copied
        // before it ends.
        let name = unsafe { pg_sys::get_database_name(pg_sys::MyDatabaseId) };
        Ok(if name.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated name palloc'd by get_database_name.
            unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned()
        })
    })
    .unwrap_or_default()
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn doctrove_embed_worker_main(arg: pg_sys::Datum) {
    let index = arg.value();
    signals::install();
    let Ok(oid) = BackgroundWorker::get_extra().parse::<u32>() else {
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(oid)), None);
    override_database_settings();
    if !shared_state::register_worker(index) {
        return; // the slot went to another database meanwhile
    }
    // SAFETY: runs on_worker_exit with our slot index when this process exits.
    unsafe { pg_sys::before_shmem_exit(Some(on_worker_exit), pg_sys::Datum::from(index)) };
    let database = database_name();
    if !extension_installed() {
        database_pool::set_presence_here(false);
        database_pool::leave_cleanly(index);
        server_log!("doctrove_embed worker {index}: database \"{database}\" has no doctrove_embed extension, leaving");
        return;
    }
    database_pool::set_presence_here(true);
    server_log!("doctrove_embed worker {index} started in database \"{database}\"");

    let mut worker = WorkerLoop {
        index,
        busy: false,
        announced: false,
        last_log: None,
        last_logged_processed: None,
        failures_in_a_row: 0,
        warnings: RepeatedWarnings::default(),
        batch_api: Default::default(),
        turns: JobTurns::default(),
    };
    loop {
        pg_sys::check_for_interrupts!();
        signals::reload_if_asked();
        // Before each step (one catalog lookup), so a dropped extension ends no batch in errors.
        if !extension_installed() {
            database_pool::set_presence_here(false);
            database_pool::leave_cleanly(index);
            server_log!("doctrove_embed worker {index}: the extension was dropped from database \"{database}\", leaving");
            return;
        }
        let pause = worker.step();
        database_pool::publish_busy_weight(index, worker.busy_weight());
        // The latch is set by a commit that added papers (or a reload): resting jobs look again.
        // A step's own waits (an HTTP answer, a retry's pause) may have seen it set, and a commit
        // just after the step found nothing sets it before this wait; both count as a wake.
        // (PostgreSQL's own waits inside a statement, such as for a lock, reset it unseen.)
        let mut woken = latch::take_set();
        if !woken && !pause.is_zero() && !database_pool::should_leave(index) {
            latch::wait(pause);
            woken = latch::take_set();
        }
        if woken {
            worker.turns.woken(Instant::now());
        }
        // Its slot goes to another database (more databases than workers), or this database is
        // no longer served.
        if database_pool::should_leave(index) {
            database_pool::leave_cleanly(index);
            server_log!("doctrove_embed worker {index}: leaving database \"{database}\"");
            return;
        }
    }
}
