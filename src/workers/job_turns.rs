//! Which job a worker runs next: the job `default` (the settings) and every enabled job of
//! `doctrove_embed.job_definitions` in the worker's database, shared by weight (stride
//! scheduling, `embed_core::stride`). The list is read again every few seconds (an idle worker
//! wakes for it) and when a commit wakes the worker, so a job created, paused, resumed or
//! dropped is picked up or let go without a restart. A job with
//! nothing pending rests for the naptime; one whose batch failed rests longer after each
//! failure in a row (2 s up to 5 minutes) and is not woken by new papers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use embed_core::stride::StrideScheduler;

use crate::pg::transaction::in_transaction;
use crate::table::jobs::{enabled_jobs, JobDefinition};
use crate::table::target::{resolve, SETTINGS_JOB};

/// How often the list of jobs is read again.
const REFRESH: Duration = Duration::from_secs(5);
/// Longest rest after failures in a row.
const MAX_FAILURE_REST: Duration = Duration::from_secs(300);

/// One worker's turns among the jobs.
#[derive(Default)]
pub struct JobTurns {
    scheduler: StrideScheduler,
    /// The recorded jobs, by name (the settings' job is not here).
    recorded: HashMap<String, JobDefinition>,
    refreshed: Option<Instant>,
    /// Failures in a row per job, and until when a failed job rests (new papers do not wake it).
    failures: HashMap<String, (u32, Instant)>,
    woken_at: Option<Instant>,
}

/// What the worker runs next.
pub enum Turn {
    /// The settings' job (with the Batch API duty and the progress lines of 0.3.0).
    Settings,
    /// A recorded job.
    Recorded(Box<JobDefinition>),
}

impl JobTurns {
    /// Reads the jobs again when due. The settings' job takes part unless recorded jobs exist
    /// and the settings name no usable table (a server that uses jobs only).
    pub fn refresh(&mut self, now: Instant) {
        if self.refreshed.is_some_and(|at| now.duration_since(at) < REFRESH) {
            return;
        }
        self.refreshed = Some(now);
        // No jobs table (the extension is not installed here, or not updated): no recorded jobs.
        let recorded = in_transaction(enabled_jobs).unwrap_or_default();
        let settings_usable = recorded.is_empty() || in_transaction(|| resolve().map(|_| ())).is_ok();
        let mut list: Vec<(String, u32)> = Vec::new();
        if settings_usable && !recorded.iter().any(|job| job.spec.job == SETTINGS_JOB) {
            list.push((SETTINGS_JOB.to_string(), 1));
        }
        list.extend(recorded.iter().map(|job| (job.spec.job.clone(), job.weight.max(1) as u32)));
        self.scheduler.set_jobs(&list, now);
        self.recorded = recorded.into_iter().map(|job| (job.spec.job.clone(), job)).collect();
        self.failures.retain(|name, _| list.iter().any(|(n, _)| n == name));
    }

    /// The job to run now, if any is not resting.
    pub fn next(&mut self, now: Instant) -> Option<Turn> {
        self.scheduler.end_rests(now);
        let name = self.scheduler.pick(now)?;
        Some(match self.recorded.get(name) {
            Some(job) => Turn::Recorded(Box::new(job.clone())),
            None => Turn::Settings,
        })
    }

    /// How long until a job is due or the list is read again (`naptime` at most).
    pub fn wait(&self, now: Instant, naptime: Duration) -> Duration {
        let refresh = self
            .refreshed
            .map_or(Duration::ZERO, |at| (at + REFRESH).saturating_duration_since(now));
        self.scheduler
            .next_due(now)
            .map_or(naptime, |due| due.saturating_duration_since(now))
            .min(naptime)
            .min(refresh)
    }

    /// Whether a recorded job uses the Batch API.
    pub fn any_uses_batch_api(&self) -> bool {
        self.recorded.values().any(|job| job.use_batch_api)
    }

    /// Sum of the weights of the jobs that have work now.
    pub fn busy_weight(&self, now: Instant) -> u32 {
        self.scheduler.busy_weight(now).min(u64::from(u32::MAX)) as u32
    }

    /// `name` ran a batch that did something.
    pub fn ran(&mut self, name: &str) {
        self.scheduler.charge(name);
        self.failures.remove(name);
    }

    /// `name` has nothing to do for `pause`.
    pub fn idle(&mut self, name: &str, now: Instant, pause: Duration) {
        self.scheduler.rest(name, now + pause);
    }

    /// `name` failed: it rests 2 s, 4 s, ... up to 5 minutes after failures in a row. Returns
    /// the rest and the number of failures in a row.
    pub fn failed(&mut self, name: &str, now: Instant) -> (Duration, u32) {
        let count = self.failures.get(name).map_or(0, |(count, _)| *count) + 1;
        let rest = embed_core::retry::pause_after_failures(count, MAX_FAILURE_REST);
        self.failures.insert(name.to_string(), (count, now + rest));
        self.scheduler.rest(name, now + rest);
        (rest, count)
    }

    /// `name` failed and handles its own pause (the settings' job): it rests `pause` and is not
    /// woken by new papers meanwhile.
    pub fn failing_for(&mut self, name: &str, now: Instant, pause: Duration) {
        let count = self.failures.get(name).map_or(0, |(count, _)| *count) + 1;
        self.failures.insert(name.to_string(), (count, now + pause));
        self.scheduler.rest(name, now + pause);
    }

    /// The worker was woken (new papers): every job that rests for want of work looks again.
    pub fn woken(&mut self, now: Instant) {
        // The list is read again at most once a second: commits to a busy table wake often.
        // (Each commit wakes one idle worker, or the busy ones, which look at each job once.)
        if self
            .woken_at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            self.woken_at = Some(now);
            self.refreshed = None;
        }
        let names: Vec<String> = self.scheduler.names().map(str::to_string).collect();
        for name in names {
            let failing = self.failures.get(&name).is_some_and(|(_, until)| *until > now);
            if !failing {
                self.scheduler.wake(&name, now);
            }
        }
    }
}
