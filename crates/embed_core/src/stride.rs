//! Sharing the workers among jobs by weight (stride scheduling): each job has a pass, the next
//! batch goes to the job with the lowest pass that has work, and a batch adds `STRIDE / weight`
//! to its job's pass. Over many batches each busy job gets batches in proportion to its weight,
//! and a small job is never starved behind a large backfill: its pass falls behind and it is
//! picked next. A job with nothing to do rests until a given time and is skipped; one that joins
//! (or wakes) starts at the lowest pass of the others, so time spent idle earns no burst.

use std::time::Instant;

/// What one batch costs a job of weight 1.
pub const STRIDE: u64 = 1 << 20;

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    weight: u32,
    pass: u64,
    resting_until: Option<Instant>,
}

/// The jobs one worker shares its batches among.
#[derive(Debug, Default, Clone)]
pub struct StrideScheduler {
    entries: Vec<Entry>,
}

impl StrideScheduler {
    /// The lowest pass of the jobs not resting at `now` (of all jobs when every one rests).
    fn lowest_busy_pass(&self, now: Instant) -> u64 {
        let busy = self
            .entries
            .iter()
            .filter(|e| e.resting_until.is_none_or(|until| until <= now));
        busy.map(|e| e.pass)
            .min()
            .or_else(|| self.entries.iter().map(|e| e.pass).min())
            .unwrap_or(0)
    }

    /// Sets the jobs (name, weight): known ones keep their pass and rest, new ones start at the
    /// lowest pass of the busy ones, and jobs no longer listed are forgotten. A weight of 0
    /// counts as 1.
    pub fn set_jobs(&mut self, jobs: &[(String, u32)], now: Instant) {
        let start = self.lowest_busy_pass(now);
        let mut entries = Vec::with_capacity(jobs.len());
        for (name, weight) in jobs {
            let known = self.entries.iter().find(|e| &e.name == name);
            entries.push(Entry {
                name: name.clone(),
                weight: (*weight).max(1),
                pass: known.map_or(start, |e| e.pass),
                resting_until: known.and_then(|e| e.resting_until),
            });
        }
        self.entries = entries;
    }

    /// Ends the rests that are over at `now`: each such job starts again no lower than the
    /// lowest pass of the jobs that kept working, so a rest earns no burst.
    pub fn end_rests(&mut self, now: Instant) {
        let busy_lowest = self
            .entries
            .iter()
            .filter(|e| e.resting_until.is_none())
            .map(|e| e.pass)
            .min();
        for e in &mut self.entries {
            if e.resting_until.is_some_and(|until| until <= now) {
                e.resting_until = None;
                if let Some(lowest) = busy_lowest {
                    e.pass = e.pass.max(lowest);
                }
            }
        }
    }

    /// The job to run now: the lowest pass among those not resting (ties by name).
    pub fn pick(&self, now: Instant) -> Option<&str> {
        self.entries
            .iter()
            .filter(|e| e.resting_until.is_none_or(|until| until <= now))
            .min_by(|a, b| a.pass.cmp(&b.pass).then_with(|| a.name.cmp(&b.name)))
            .map(|e| e.name.as_str())
    }

    /// Charges `name` one batch.
    pub fn charge(&mut self, name: &str) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.name == name) {
            e.pass += STRIDE / u64::from(e.weight);
        }
    }

    /// `name` has nothing to do (or failed) until `until`.
    pub fn rest(&mut self, name: &str, until: Instant) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.name == name) {
            e.resting_until = Some(until);
        }
    }

    /// `name` has work again (new papers, say): it rests no longer, and starts at the lowest pass
    /// of the busy jobs if it fell behind them while resting.
    pub fn wake(&mut self, name: &str, now: Instant) {
        let busy_lowest = self
            .entries
            .iter()
            .filter(|e| e.name != name && e.resting_until.is_none_or(|until| until <= now))
            .map(|e| e.pass)
            .min();
        if let Some(e) = self.entries.iter_mut().find(|e| e.name == name) {
            e.resting_until = None;
            if let Some(lowest) = busy_lowest {
                e.pass = e.pass.max(lowest);
            }
        }
    }

    /// When the first resting job is due, if every job rests.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        if self.pick(now).is_some() {
            return Some(now);
        }
        self.entries.iter().filter_map(|e| e.resting_until).min()
    }

    /// Sum of the weights of the jobs not resting at `now`: how much work this worker has.
    pub fn busy_weight(&self, now: Instant) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.resting_until.is_none_or(|until| until <= now))
            .map(|e| u64::from(e.weight))
            .sum()
    }

    /// The jobs' names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn jobs(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    }

    fn run(s: &mut StrideScheduler, batches: usize, now: Instant) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for _ in 0..batches {
            let name = s.pick(now).expect("a job").to_string();
            s.charge(&name);
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn busy_jobs_share_batches_by_weight() {
        let mut s = StrideScheduler::default();
        s.set_jobs(&jobs(&[("backfill", 9), ("small", 1)]), Instant::now());
        let counts = run(&mut s, 1000, Instant::now());
        assert_eq!(counts["backfill"], 900);
        assert_eq!(counts["small"], 100);
    }

    #[test]
    fn a_resting_job_is_skipped_until_due_and_gets_no_burst_after() {
        let now = Instant::now();
        let mut s = StrideScheduler::default();
        s.set_jobs(&jobs(&[("a", 1), ("b", 1)]), now);
        s.rest("b", now + Duration::from_secs(10));
        let counts = run(&mut s, 50, now);
        assert_eq!(counts.get("b"), None);
        assert_eq!(counts["a"], 50);
        s.wake("b", now);
        // Back at a's pass: the two alternate, b does not run 50 in a row.
        let counts = run(&mut s, 10, now);
        assert_eq!((counts["a"], counts["b"]), (5, 5));
    }

    #[test]
    fn a_rest_that_runs_out_earns_no_burst() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let mut s = StrideScheduler::default();
        s.set_jobs(&jobs(&[("a", 1), ("idle", 1)]), now);
        s.rest("idle", later);
        run(&mut s, 100, now);
        s.end_rests(later);
        let counts = run(&mut s, 10, later);
        assert_eq!((counts["a"], counts["idle"]), (5, 5));
        // A job added while the others rest starts at the lowest busy pass, not at 0.
        s.rest("a", later + Duration::from_secs(60));
        s.set_jobs(&jobs(&[("a", 1), ("idle", 1), ("new", 1)]), later);
        s.rest("idle", later + Duration::from_secs(60));
        let counts = run(&mut s, 3, later);
        assert_eq!(counts["new"], 3);
        s.end_rests(later + Duration::from_secs(60));
        let counts = run(&mut s, 30, later + Duration::from_secs(60));
        assert!(counts.values().all(|&n| n == 10), "{counts:?}");
    }

    #[test]
    fn every_job_resting_gives_the_first_due_time() {
        let now = Instant::now();
        let mut s = StrideScheduler::default();
        s.set_jobs(&jobs(&[("a", 1), ("b", 1)]), now);
        s.rest("a", now + Duration::from_secs(5));
        s.rest("b", now + Duration::from_secs(2));
        assert_eq!(s.pick(now), None);
        assert_eq!(s.next_due(now), Some(now + Duration::from_secs(2)));
        assert_eq!(s.pick(now + Duration::from_secs(3)), Some("b"));
    }

    #[test]
    fn the_busy_weight_counts_the_jobs_not_resting() {
        let now = Instant::now();
        let mut s = StrideScheduler::default();
        s.set_jobs(&jobs(&[("a", 3), ("b", 4), ("c", 0)]), now);
        assert_eq!(s.busy_weight(now), 8);
        s.rest("b", now + Duration::from_secs(5));
        assert_eq!(s.busy_weight(now), 4);
        assert_eq!(s.busy_weight(now + Duration::from_secs(5)), 8);
    }

    #[test]
    fn a_new_job_starts_at_the_lowest_pass_and_a_dropped_one_is_forgotten() {
        let now = Instant::now();
        let mut s = StrideScheduler::default();
        s.set_jobs(&jobs(&[("a", 1)]), now);
        run(&mut s, 100, now);
        s.set_jobs(&jobs(&[("a", 1), ("new", 1)]), now);
        let counts = run(&mut s, 10, now);
        assert_eq!((counts["a"], counts["new"]), (5, 5));
        s.set_jobs(&jobs(&[("new", 1)]), now);
        assert_eq!(s.names().collect::<Vec<_>>(), ["new"]);
    }

    proptest! {
        /// Any weights: over a whole number of rounds each job's share is exact, and no job waits
        /// more than (sum of weights) / (its weight) + 1 batches between two of its own.
        #[test]
        fn shares_follow_weights_and_no_job_starves(weights in proptest::collection::vec(1u32..=1000, 1..6)) {
            let list: Vec<(String, u32)> = weights.iter().enumerate().map(|(i, w)| (format!("j{i}"), *w)).collect();
            let mut s = StrideScheduler::default();
            let now = Instant::now();
            s.set_jobs(&list, now);
            let total: u32 = weights.iter().sum();
            let mut last_seen: HashMap<String, usize> = HashMap::new();
            let mut counts: HashMap<String, u64> = HashMap::new();
            let batches = (total as usize) * 4;
            for step in 0..batches {
                let name = s.pick(now).unwrap().to_string();
                s.charge(&name);
                let (_, w) = list.iter().find(|(n, _)| *n == name).unwrap();
                if let Some(prev) = last_seen.insert(name.clone(), step) {
                    let most = (total as f64 / *w as f64).ceil() as usize + list.len();
                    prop_assert!(step - prev <= most, "{name} waited {} batches (at most {most})", step - prev);
                }
                *counts.entry(name).or_insert(0) += 1;
            }
            for (name, w) in &list {
                let got = counts.get(name).copied().unwrap_or(0) as f64;
                let want = batches as f64 * *w as f64 / total as f64;
                prop_assert!((got - want).abs() <= list.len() as f64 + 1.0, "{name}: {got} batches, {want} expected");
            }
        }
    }
}
