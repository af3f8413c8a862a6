//! How many of the server's workers each database gets. A worker process serves one database
//! for its life (a PostgreSQL backend cannot change database), so the launcher gives each
//! database a number of workers and a worker whose database holds more than its number leaves.
//!
//! When every database that wants a worker can have one, each keeps one (new papers then wake a
//! worker at once through its latch) and the spare workers go to the databases with work, in
//! proportion to the weights of their busy jobs. When there are more such databases than
//! workers, the databases take turns, one worker each: a database keeps its worker while it has
//! work, for up to [`TURN_MS`] when others wait, and gives it up at once when it has nothing to
//! do and another is waiting, so no database waits behind another's backfill for longer than a
//! turn.

/// Longest time a database keeps a worker while others wait for one (when there are more
/// databases than workers).
pub const TURN_MS: i64 = 30_000;

/// What the launcher knows of one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatabaseDemand {
    /// Workers serving it now (started or starting).
    pub holding: usize,
    /// Whether it should keep a worker whenever there is room: the extension is installed
    /// there, or whether it is remains to be seen.
    pub resident: bool,
    /// Sum of the weights of its jobs that have work (0: nothing to do, as far as is known).
    pub busy_weight: u64,
    /// How long (ms) it has held a worker, or waited for one.
    pub for_ms: i64,
    /// Whether it wants a worker only to find out whether the extension is installed there
    /// (taking turns, it comes after the databases known to have work).
    pub probe: bool,
}

impl DatabaseDemand {
    fn wants(&self) -> bool {
        self.busy_weight > 0
    }
}

/// The number of workers each database should have, out of `workers` (same order as
/// `databases`).
pub fn targets(workers: usize, databases: &[DatabaseDemand]) -> Vec<usize> {
    let residents = databases.iter().filter(|d| d.resident).count();
    let contenders = databases
        .iter()
        .filter(|d| d.resident && (d.holding > 0 || d.wants()))
        .count();
    if residents <= workers {
        shares(workers, databases)
    } else if contenders <= workers {
        // Not every database can keep a worker, but every one with work (or a worker) can.
        let mut targets: Vec<usize> = databases
            .iter()
            .map(|d| usize::from(d.resident && (d.holding > 0 || d.wants())))
            .collect();
        // Idle holders give way only when someone waits; here no one does.
        let spare = workers - contenders;
        let busy: Vec<usize> = (0..databases.len())
            .filter(|&i| targets[i] > 0 && databases[i].wants())
            .collect();
        spread(spare, &busy, databases, &mut targets);
        targets
    } else {
        turns(workers, databases)
    }
}

/// One worker for each resident database, the rest spread by busy weight; when none is busy,
/// evenly, so a server with one database keeps all its workers ready.
fn shares(workers: usize, databases: &[DatabaseDemand]) -> Vec<usize> {
    let mut targets: Vec<usize> = databases.iter().map(|d| usize::from(d.resident)).collect();
    let spare = workers - targets.iter().sum::<usize>();
    let busy: Vec<usize> = (0..databases.len())
        .filter(|&i| databases[i].resident && databases[i].wants())
        .collect();
    if busy.is_empty() {
        let evenly: Vec<DatabaseDemand> = databases
            .iter()
            .map(|d| DatabaseDemand {
                busy_weight: u64::from(d.resident),
                ..*d
            })
            .collect();
        let residents: Vec<usize> = (0..databases.len()).filter(|&i| databases[i].resident).collect();
        spread(spare, &residents, &evenly, &mut targets);
    } else {
        spread(spare, &busy, databases, &mut targets);
    }
    targets
}

/// Adds `spare` workers to the databases `among`, in proportion to their busy weights (largest
/// remainder; ties to the earlier database).
fn spread(spare: usize, among: &[usize], databases: &[DatabaseDemand], targets: &mut [usize]) {
    let total: u128 = among.iter().map(|&i| u128::from(databases[i].busy_weight)).sum();
    if spare == 0 || total == 0 {
        return;
    }
    let mut given = 0;
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(among.len());
    for &i in among {
        let exact = spare as u128 * u128::from(databases[i].busy_weight);
        let whole = (exact / total) as usize;
        targets[i] += whole;
        given += whole;
        remainders.push((exact % total, i));
    }
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders.into_iter().take(spare - given) {
        targets[i] += 1;
    }
}

/// More databases with work than workers: one worker each, by turns.
fn turns(workers: usize, databases: &[DatabaseDemand]) -> Vec<usize> {
    // Rank: holders within their turn, then those waiting with work (longest first), then
    // those waiting to be looked at, then holders whose turn is over (longest held last), then
    // idle holders.
    let rank = |d: &DatabaseDemand| -> (u8, i64) {
        match (d.holding > 0, d.wants()) {
            (true, true) if d.for_ms < TURN_MS => (0, 0),
            (false, true) if !d.probe => (1, -d.for_ms),
            (false, true) => (2, -d.for_ms),
            (true, true) => (3, d.for_ms),
            (true, false) => (4, d.for_ms),
            (false, false) => (5, 0),
        }
    };
    let mut order: Vec<usize> = (0..databases.len())
        .filter(|&i| databases[i].resident && (databases[i].holding > 0 || databases[i].wants()))
        .collect();
    order.sort_by_key(|&i| (rank(&databases[i]), i));
    let mut targets = vec![0; databases.len()];
    for &i in order.iter().take(workers) {
        targets[i] = 1;
    }
    targets
}

/// The database names of a comma-separated list (`doctrove_embed.database`): each name as
/// written, spaces around it dropped; a name holding a comma or spaces at its ends is written
/// in double quotes (`""` for a quote inside). Names are not folded to lower case: a database
/// name is matched exactly, as `psql -d` does. Empty items are skipped.
pub fn database_list(setting: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = setting.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { return names };
        let mut name = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() != Some(&'"') {
                        break;
                    }
                    chars.next();
                }
                name.push(c);
            }
            names.push(name);
            // Anything between the closing quote and the next comma is ignored.
            if !chars.by_ref().any(|c| c == ',') {
                return names;
            }
        } else {
            let mut more = false;
            for c in chars.by_ref() {
                if c == ',' {
                    more = true;
                    break;
                }
                name.push(c);
            }
            if !name.trim().is_empty() {
                names.push(name.trim().to_string());
            }
            if !more {
                return names;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn db(holding: usize, busy_weight: u64, for_ms: i64) -> DatabaseDemand {
        DatabaseDemand {
            holding,
            resident: true,
            busy_weight,
            for_ms,
            probe: false,
        }
    }

    #[test]
    fn database_lists_keep_names_as_written() {
        assert_eq!(database_list(""), Vec::<String>::new());
        assert_eq!(database_list(" papers , ArxivScope,,"), vec!["papers", "ArxivScope"]);
        assert_eq!(database_list(r#""a, b" , "say ""hi""""#), vec!["a, b", r#"say "hi""#]);
        assert_eq!(database_list("postgres"), vec!["postgres"]);
    }

    #[test]
    fn each_database_keeps_one_and_the_spare_go_by_weight() {
        // 6 workers, 3 databases: one each, 3 spare split 1:2 between the busy two.
        let t = targets(6, &[db(1, 1, 0), db(1, 0, 0), db(1, 2, 0)]);
        assert_eq!(t, vec![2, 1, 3]);
    }

    #[test]
    fn idle_databases_share_the_workers_evenly() {
        assert_eq!(targets(4, &[db(1, 0, 0)]), vec![4]);
        assert_eq!(targets(5, &[db(1, 0, 0), db(1, 0, 0)]), vec![3, 2]);
    }

    #[test]
    fn a_database_without_the_extension_gets_none() {
        let absent = DatabaseDemand::default();
        assert_eq!(targets(2, &[absent, db(0, 1, 0)]), vec![0, 2]);
    }

    #[test]
    fn more_busy_databases_than_workers_take_turns() {
        // One worker; the holder is within its turn: it keeps it.
        assert_eq!(targets(1, &[db(1, 1, 1_000), db(0, 1, 5_000)]), vec![1, 0]);
        // Its turn is over while the other waits: it gives way.
        assert_eq!(targets(1, &[db(1, 1, TURN_MS), db(0, 1, 5_000)]), vec![0, 1]);
        // Idle while the other waits: it gives way at once.
        assert_eq!(targets(1, &[db(1, 0, 10), db(0, 1, 0)]), vec![0, 1]);
        // The one that waited longest comes first.
        assert_eq!(targets(1, &[db(0, 1, 10), db(0, 1, 500), db(0, 1, 20)]), vec![0, 1, 0]);
        // One with work comes before one only to be looked at, however long that waited.
        let probe = DatabaseDemand {
            probe: true,
            ..db(0, 1, 90_000)
        };
        assert_eq!(targets(1, &[probe, db(0, 1, 10), db(1, 1, 1_000)]), vec![0, 0, 1]);
        assert_eq!(targets(2, &[probe, db(0, 1, 10), db(1, 1, 1_000)]), vec![0, 1, 1]);
    }

    #[test]
    fn an_idle_holder_keeps_its_worker_when_no_one_waits() {
        let idle_absent_resident = db(0, 0, 0);
        assert_eq!(targets(1, &[db(1, 0, 90_000), idle_absent_resident]), vec![1, 0]);
    }

    fn demand() -> impl Strategy<Value = DatabaseDemand> {
        (
            0usize..4,
            any::<bool>(),
            prop_oneof![Just(0u64), 1u64..10],
            0i64..100_000,
            any::<bool>(),
        )
            .prop_map(|(holding, resident, busy_weight, for_ms, probe)| DatabaseDemand {
                holding: if resident { holding } else { 0 },
                resident,
                busy_weight: if resident { busy_weight } else { 0 },
                for_ms,
                probe: probe && holding == 0,
            })
    }

    proptest! {
        #[test]
        fn never_more_than_the_workers(workers in 0usize..12, dbs in prop::collection::vec(demand(), 0..20)) {
            let t = targets(workers, &dbs);
            prop_assert_eq!(t.len(), dbs.len());
            prop_assert!(t.iter().sum::<usize>() <= workers);
            for (target, d) in t.iter().zip(&dbs) {
                if !d.resident {
                    prop_assert_eq!(*target, 0);
                }
            }
        }

        #[test]
        fn every_resident_keeps_one_when_there_is_room(workers in 0usize..12, dbs in prop::collection::vec(demand(), 0..20)) {
            let residents = dbs.iter().filter(|d| d.resident).count();
            prop_assume!(residents <= workers);
            let t = targets(workers, &dbs);
            for (target, d) in t.iter().zip(&dbs) {
                if d.resident {
                    prop_assert!(*target >= 1);
                }
            }
            // No worker is left unused.
            if residents > 0 {
                prop_assert_eq!(t.iter().sum::<usize>(), workers);
            }
        }

        #[test]
        fn no_one_waits_behind_an_idle_or_finished_turn(workers in 1usize..6, dbs in prop::collection::vec(demand(), 0..20)) {
            let t = targets(workers, &dbs);
            let waiting = dbs.iter().zip(&t).any(|(d, &t)| d.resident && d.busy_weight > 0 && d.holding == 0 && t == 0);
            if waiting {
                // A waiting database goes without only while every worker is in a busy turn.
                for (d, &target) in dbs.iter().zip(&t) {
                    if target > 0 && d.holding > 0 {
                        prop_assert!(d.busy_weight > 0 && d.for_ms < TURN_MS, "{d:?} kept a worker while another waited");
                    }
                }
            }
        }
    }
}
