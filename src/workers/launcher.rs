//! The launcher: one process, started with the server when the library is preloaded, that finds
//! the databases to serve and starts the workers in them. A worker serves one database for its
//! life, so the launcher gives each database a number of the `doctrove_embed.workers` slots
//! (`embed_core::worker_pool`) and starts a worker in each free slot a database is short of;
//! a worker whose database holds more than its number leaves after its batch.
//!
//! Connected to no database, it reads the server's databases from `pg_database` every 10 s
//! (and at a reload), keeps those `doctrove_embed.database` lists (every one when empty), and
//! lets each new one be looked at by a worker, which leaves at once where the extension is not
//! installed. Such a database is looked at again every 10 minutes, or at once when an
//! extension is created there; a dropped database, or one taken off the list, is let go.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use embed_core::worker_pool::{database_list, targets, DatabaseDemand};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::prelude::*;

use crate::pg::clock::unix_now_ms;
use crate::pg::database_entry::{entry_mut, DatabaseEntry, Presence, MAX_DATABASES};
use crate::pg::databases::{connectable_databases, Database};
use crate::pg::latch;
use crate::pg::shared_state::{self, Shared};
use crate::settings::gucs;
use crate::workers::signals;

/// How often the list of databases is read again.
const RESCAN: Duration = Duration::from_secs(10);
/// How long a database without the extension waits before it is looked at again. A
/// `CREATE EXTENSION` there is noticed at once (`extension_hook`); this only catches what that
/// cannot see.
const LOOK_AGAIN_MS: i64 = 600_000;
/// How long a database whose worker could not connect waits before it is tried again.
const RETRY_FAILED_START_MS: i64 = 10_000;
/// Longest sleep between two plans (a worker's start or exit wakes the launcher sooner).
const PLAN_EVERY: Duration = Duration::from_secs(1);

/// Registers the launcher; only from `_PG_init` while preloading, when workers are configured.
pub fn register_launcher() {
    BackgroundWorkerBuilder::new("doctrove_embed launcher")
        .set_type("doctrove_embed launcher")
        .set_library("doctrove_embed")
        .set_function("doctrove_embed_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// A worker the launcher started and has not yet seen exit.
struct Started {
    handle: *mut pg_sys::BackgroundWorkerHandle,
}

impl Started {
    fn stopped(&self) -> bool {
        let mut pid: pg_sys::pid_t = 0;
        // SAFETY: a handle RegisterDynamicBackgroundWorker gave this process.
        let status = unsafe { pg_sys::GetBackgroundWorkerPid(self.handle, &mut pid) };
        status == pg_sys::BgwHandleStatus::BGWH_STOPPED || status == pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // SAFETY: the handle was allocated in TopMemoryContext and is dropped once.
        unsafe { pg_sys::pfree(self.handle.cast()) };
    }
}

#[derive(Default)]
struct Launcher {
    started: HashMap<usize, Started>,
    scanned: Option<Instant>,
    /// Per database: whether it held a worker at the last plan, and since when that was so.
    since: HashMap<u32, (bool, Instant)>,
    warned_full: Option<Instant>,
}

impl Launcher {
    /// Reads the databases again and brings the shared table in line: new ones are added to be
    /// looked at, gone ones removed (their workers leave).
    fn rescan(&mut self) {
        let listed = database_list(&gucs::text(&gucs::DATABASE));
        let mut databases: Vec<Database> = connectable_databases()
            .into_iter()
            .filter(|d| listed.is_empty() || listed.contains(&d.name))
            .collect();
        // Past the table's size, the databases already served keep their place, then by oid:
        // not the catalog's physical order, which any ALTER DATABASE changes.
        let known: Vec<u32> = shared_state::snapshot()
            .map(|s| s.databases.iter().filter(|e| e.oid != 0).map(|e| e.oid).collect())
            .unwrap_or_default();
        databases.sort_by_key(|d| (!known.contains(&d.oid), d.oid));
        if databases.len() > MAX_DATABASES {
            warning!(
                "doctrove_embed launcher: {} databases, only the first {MAX_DATABASES} are served \
                 (list the ones to serve in doctrove_embed.database)",
                databases.len()
            );
            databases.truncate(MAX_DATABASES);
        }
        shared_state::update(|s| {
            for entry in s.databases.iter_mut() {
                if entry.oid != 0 && !databases.iter().any(|d| d.oid == entry.oid) {
                    *entry = DatabaseEntry::default();
                }
            }
            // Workers of a database no longer served leave now, not at their next wake.
            for slot in 0..s.workers.len() {
                let database = s.workers[slot].database;
                if database != 0 && !s.databases.iter().any(|e| e.oid == database) {
                    shared_state::wake_slot(s, slot);
                }
            }
            for database in &databases {
                if !s.databases.iter().any(|e| e.oid == database.oid) {
                    if let Some(free) = s.databases.iter_mut().find(|e| e.oid == 0) {
                        *free = DatabaseEntry {
                            oid: database.oid,
                            ..DatabaseEntry::default()
                        };
                    }
                }
            }
        });
        self.since.retain(|oid, _| databases.iter().any(|d| d.oid == *oid));
        self.scanned = Some(Instant::now());
    }

    /// Forgets the workers that exited. One that exited before it registered (its database
    /// was dropped, or refuses connections) leaves its slot reserved: the slot is freed, the
    /// databases are read again at once, and that database is not tried again for 10 s.
    fn reap(&mut self) {
        let stopped: Vec<usize> = self
            .started
            .iter()
            .filter(|(_, started)| started.stopped())
            .map(|(&slot, _)| slot)
            .collect();
        for slot in stopped {
            self.started.remove(&slot);
            let failed = shared_state::update(|s| {
                let database = s.workers[slot].database;
                if s.workers[slot].pid != 0 || database == 0 {
                    return false;
                }
                s.workers[slot].database = 0;
                entry_mut(&mut s.databases, database, |entry| {
                    entry.presence = Presence::Absent;
                    entry.looked_at_ms = unix_now_ms() - LOOK_AGAIN_MS + RETRY_FAILED_START_MS;
                });
                true
            })
            .unwrap_or(false);
            if failed {
                self.scanned = None;
            }
        }
    }

    /// Gives each database its number of workers and starts the missing ones.
    fn plan(&mut self) {
        let workers = gucs::WORKERS.get().max(0) as usize;
        let now = Instant::now();
        let now_ms = unix_now_ms();
        let naptime_ms = i64::from(gucs::NAPTIME_MS.get());
        let Some(s) = shared_state::snapshot() else { return };
        let entries: Vec<DatabaseEntry> = s.databases.iter().copied().filter(|e| e.oid != 0).collect();
        let demands: Vec<DatabaseDemand> = entries
            .iter()
            .map(|entry| self.demand(&s, entry, workers, now, now_ms, naptime_ms))
            .collect();
        let wanted = targets(workers, &demands);
        let mut to_start: Vec<(u32, usize)> = Vec::new();
        let mut to_wake: Vec<usize> = Vec::new();
        shared_state::update(|s| {
            for (entry, (&target, demand)) in entries.iter().zip(wanted.iter().zip(&demands)) {
                let Some(shared) = s.databases.iter_mut().find(|e| e.oid == entry.oid) else {
                    continue;
                };
                shared.target = target as u32;
                if entry.presence == Presence::Absent && now_ms - entry.looked_at_ms >= LOOK_AGAIN_MS {
                    shared.presence = Presence::Unknown;
                }
                if target > demand.holding {
                    to_start.push((entry.oid, target - demand.holding));
                } else if target < demand.holding {
                    // Its last worker by slot leaves after its batch: wake it if it sleeps.
                    if let Some(last) = shared_state::workers_of(s, entry.oid).last() {
                        to_wake.push(last);
                    }
                }
            }
            for &slot in &to_wake {
                shared_state::wake_slot(s, slot);
            }
        });
        for (oid, count) in to_start {
            for _ in 0..count {
                if !self.start(oid, workers) {
                    break;
                }
            }
        }
    }

    /// What the launcher knows of one database's need for workers.
    fn demand(
        &mut self,
        s: &Shared,
        entry: &DatabaseEntry,
        workers: usize,
        now: Instant,
        now_ms: i64,
        naptime_ms: i64,
    ) -> DatabaseDemand {
        let mine = s.workers[..workers.min(s.workers.len())]
            .iter()
            .filter(|w| w.database == entry.oid);
        let holding = mine.clone().count();
        if holding == 0 && entry.retry_at_ms > now_ms {
            // Its workers keep failing: none until the delay is over.
            return DatabaseDemand::default();
        }
        // A worker not registered yet, or not yet through its first batch, counts as busy.
        let busy_weight = if holding > 0 {
            mine.map(|w| if w.pid == 0 { 1 } else { u64::from(w.busy_weight) })
                .max()
                .unwrap_or(0)
        } else {
            let visit_due = entry.presence == Presence::Present && now_ms - entry.last_served_ms >= naptime_ms;
            u64::from(entry.presence == Presence::Unknown || entry.wanted || visit_due)
        };
        let holds = holding > 0;
        let since = self.since.entry(entry.oid).or_insert((holds, now));
        if since.0 != holds {
            *since = (holds, now);
        }
        DatabaseDemand {
            holding,
            resident: entry.presence != Presence::Absent,
            busy_weight,
            for_ms: now.duration_since(since.1).as_millis() as i64,
            probe: holding == 0 && entry.presence == Presence::Unknown,
        }
    }

    /// Starts a worker for database `oid` in the first free slot; false when none could start.
    fn start(&mut self, oid: u32, workers: usize) -> bool {
        let slot = shared_state::update(|s| {
            let free = (0..workers.min(s.workers.len()))
                .find(|&i| s.workers[i].database == 0 && s.workers[i].pid == 0 && !self.started.contains_key(&i))?;
            s.workers[free].database = oid;
            entry_mut(&mut s.databases, oid, |entry| entry.wanted = false);
            Some(free)
        })
        .flatten();
        let Some(slot) = slot else { return false };
        let builder = BackgroundWorkerBuilder::new(&format!("doctrove_embed worker {slot}"))
            .set_type("doctrove_embed worker")
            .set_library("doctrove_embed")
            .set_function("doctrove_embed_worker_main")
            .set_argument((slot as i32).into_datum())
            .set_extra(&oid.to_string())
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            // SAFETY: reads this process's pid.
            .set_notify_pid(unsafe { pg_sys::MyProcPid });
        let mut worker: pg_sys::BackgroundWorker = (&builder).into();
        let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
        // SAFETY: the handle is allocated in TopMemoryContext, so it outlives this loop's
        // transactions; the postmaster copies the worker's description.
        let registered = unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
            let registered = pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle);
            pg_sys::MemoryContextSwitchTo(previous);
            registered
        };
        if registered {
            self.started.insert(slot, Started { handle });
            return true;
        }
        shared_state::update(|s| s.workers[slot].database = 0);
        if self.warned_full.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            self.warned_full = Some(Instant::now());
            warning!(
                "doctrove_embed launcher: could not start a worker: every background worker slot is in use \
                 (raise max_worker_processes to at least doctrove_embed.workers + 2)"
            );
        }
        false
    }
}

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn doctrove_embed_launcher_main(_arg: pg_sys::Datum) {
    signals::install();
    BackgroundWorker::connect_worker_to_spi(None, None);
    // SAFETY: MyLatch is this process's latch in shared memory.
    let latch_address = unsafe { pg_sys::MyLatch as usize };
    shared_state::update(|s| {
        s.launcher_latch = latch_address;
        // Reservations a previous launcher left for workers that never registered.
        for slot in s.workers.iter_mut().filter(|w| w.pid == 0) {
            slot.database = 0;
        }
    });
    let mut launcher = Launcher::default();
    loop {
        pg_sys::check_for_interrupts!();
        let asked = shared_state::update(|s| std::mem::take(&mut s.rescan_asked)).unwrap_or(false);
        if signals::reload_if_asked() || asked {
            launcher.scanned = None;
        }
        launcher.reap();
        if launcher.scanned.is_none_or(|at| at.elapsed() >= RESCAN) {
            launcher.rescan();
        }
        if gucs::WORKERS.get() > 0 {
            launcher.plan();
        }
        latch::wait(PLAN_EVERY);
    }
}
