//! One database's entry in the launcher's table in shared memory (see `database_pool`).

/// Databases the launcher serves at once; more are left out with a warning.
pub const MAX_DATABASES: usize = 64;

/// Whether the extension is installed in a database, as far as the workers have seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Presence {
    /// Not looked at yet (or looked at again after a `CREATE EXTENSION` there).
    #[default]
    Unknown,
    Present,
    Absent,
}

/// One database's entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct DatabaseEntry {
    /// 0: the entry is free.
    pub oid: u32,
    pub presence: Presence,
    /// When the presence was last found (unix ms).
    pub looked_at_ms: i64,
    /// A commit there added papers, or created an extension, while no worker served it.
    pub wanted: bool,
    /// Workers the launcher gives it.
    pub target: u32,
    /// When its last worker left (unix ms).
    pub last_served_ms: i64,
    /// Its workers' exits in a row that were not clean leaves, and when it may have another.
    pub failures: u32,
    pub retry_at_ms: i64,
}

/// Runs `f` on the entry of `database`, if the launcher has one.
pub fn entry_mut(entries: &mut [DatabaseEntry], database: u32, f: impl FnOnce(&mut DatabaseEntry)) {
    if database == 0 {
        return;
    }
    if let Some(entry) = entries.iter_mut().find(|e| e.oid == database) {
        f(entry);
    }
}
