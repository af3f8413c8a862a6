//! The launcher's table of databases in shared memory, as the workers and sessions see it:
//! whether the extension is installed in a database, how many workers it should have, whether a
//! commit there asked for a worker. The workers read their database's entry to know whether to
//! leave, and which of them is the first (it does the Batch API duty).

use crate::pg::clock::unix_now_ms;
use crate::pg::database_entry::{entry_mut, Presence};
use crate::pg::shared_state::{self, current_database, Shared};

fn here<R>(f: impl FnOnce(&mut Shared, u32) -> R) -> Option<R> {
    let database = current_database();
    shared_state::update(|s| f(s, database))
}

/// Records whether the extension is installed in this database.
pub fn set_presence_here(present: bool) {
    here(|s, database| {
        entry_mut(&mut s.databases, database, |entry| {
            entry.presence = if present { Presence::Present } else { Presence::Absent };
            entry.looked_at_ms = unix_now_ms();
        })
    });
}

/// Whether worker `index` is the first of this database's workers, which does the Batch API
/// duty.
pub fn leads_here(index: usize) -> bool {
    here(|s, database| shared_state::workers_of(s, database).next() == Some(index)).unwrap_or(false)
}

/// Whether worker `index` should leave its database: the database holds more workers than the
/// launcher gives it (or is no longer served), and this is its last worker by slot.
pub fn should_leave(index: usize) -> bool {
    here(|s, database| {
        let target = s
            .databases
            .iter()
            .find(|e| e.oid == database)
            .map_or(0, |e| e.target as usize);
        let mine: Vec<usize> = shared_state::workers_of(s, database).collect();
        mine.len() > target && mine.last() == Some(&index)
    })
    .unwrap_or(false)
}

/// Notes that worker `index` leaves on purpose (see `WorkerSlot::leaving_cleanly`).
pub fn leave_cleanly(index: usize) {
    shared_state::update(|s| s.workers[index].leaving_cleanly = true);
}

/// Publishes the sum of the weights of worker `index`'s jobs that have work.
pub fn publish_busy_weight(index: usize, weight: u32) {
    shared_state::update(|s| s.workers[index].busy_weight = weight);
}

/// Asks the launcher to read the list of databases again now (one was dropped).
pub fn ask_rescan() {
    shared_state::update(|s| {
        s.rescan_asked = true;
        shared_state::wake_launcher(s);
    });
}

/// An extension was created in this database (at commit): the launcher looks at it again now.
pub fn extension_created_here() {
    here(|s, database| {
        entry_mut(&mut s.databases, database, |entry| {
            if entry.presence == Presence::Absent {
                entry.presence = Presence::Unknown;
            }
            entry.wanted = true;
        });
        s.rescan_asked = true;
        shared_state::wake_launcher(s);
    });
}
