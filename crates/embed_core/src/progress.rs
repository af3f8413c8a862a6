//! The progress figures and log lines operators read: thousands separators, durations, ETA,
//! and papers-per-minute from per-second counts.

use std::time::Duration;

/// `13332459` → `13,332,459`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Seconds with one decimal: `7.2s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// A remaining time in its two largest units: `3d 17h`, `5h 2m`, `4m 10s`, `12s`.
pub fn eta(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {secs}s")
    } else {
        format!("{secs}s")
    }
}

/// The time left for `remaining` papers at `per_minute`; `None` when nothing is moving.
pub fn eta_for(remaining: u64, per_minute: f64) -> Option<Duration> {
    (per_minute > 0.0).then(|| Duration::from_secs_f64(remaining as f64 / per_minute * 60.0))
}

/// `Found 13,332,459 papers needing embeddings`
pub fn found_line(pending: u64) -> String {
    format!("Found {} papers needing embeddings", thousands(pending))
}

/// `Batch completed in 7.2s (API: 4.4s, DB: 2.8s) - 250 papers updated, 250 successful, 0 failed`
pub fn batch_line(total: Duration, api: Duration, db: Duration, updated: u64, successful: u64, failed: u64) -> String {
    format!(
        "Batch completed in {} (API: {}, DB: {}) - {} papers updated, {} successful, {} failed",
        seconds(total),
        seconds(api),
        seconds(db),
        thousands(updated),
        thousands(successful),
        thousands(failed)
    )
}

/// `Processed 1,500/13,332,459 (0.01%) - 2,480 papers/min, ETA 3d 17h`
pub fn progress_line(processed: u64, total: u64, per_minute: f64) -> String {
    let percent = if total == 0 {
        100.0
    } else {
        processed as f64 * 100.0 / total as f64
    };
    let remaining = total.saturating_sub(processed);
    let eta_text = eta_for(remaining, per_minute).map(eta).unwrap_or_else(|| "unknown".into());
    format!(
        "Processed {}/{} ({percent:.2}%) - {} papers/min, ETA {eta_text}",
        thousands(processed),
        thousands(total),
        thousands(per_minute.round() as u64)
    )
}

/// Papers per second over a window, kept as one bucket per second in a ring, so that
/// papers/min over the last minute and the last ten minutes cost a fixed-size sum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateRing {
    seconds: [i64; RateRing::SLOTS],
    counts: [u32; RateRing::SLOTS],
}

impl Default for RateRing {
    fn default() -> Self {
        RateRing {
            seconds: [i64::MIN; RateRing::SLOTS],
            counts: [0; RateRing::SLOTS],
        }
    }
}

impl RateRing {
    /// Ten minutes of one-second buckets.
    pub const SLOTS: usize = 600;

    /// Counts `n` papers done at unix second `now`.
    pub fn add(&mut self, now: i64, n: u32) {
        let slot = now.rem_euclid(Self::SLOTS as i64) as usize;
        if self.seconds[slot] != now {
            self.seconds[slot] = now;
            self.counts[slot] = 0;
        }
        self.counts[slot] = self.counts[slot].saturating_add(n);
    }

    /// Papers per minute over the `window` seconds up to `now` (at most ten minutes).
    pub fn per_minute(&self, now: i64, window: i64) -> f64 {
        let window = window.clamp(1, Self::SLOTS as i64);
        let total: u64 = (0..Self::SLOTS)
            .filter(|&i| self.seconds[i] > now - window && self.seconds[i] <= now)
            .map(|i| u64::from(self.counts[i]))
            .sum();
        total as f64 * 60.0 / window as f64
    }
}

/// Whether a pending count is due again: none yet, or the last one is older than `floor_ms`
/// and than 20 times what it took (so counting a huge backlog never costs more than about 5%
/// of one worker).
pub fn recount_due(counted: bool, age_ms: i64, last_count_ms: f64, floor_ms: f64) -> bool {
    !counted || age_ms as f64 > floor_ms.max(20.0 * last_count_ms)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_recount_waits_for_the_floor_and_twenty_times_the_last_count() {
        assert!(recount_due(false, 0, 0.0, 10_000.0), "never counted");
        assert!(!recount_due(true, 9_000, 100.0, 10_000.0));
        assert!(recount_due(true, 11_000, 100.0, 10_000.0));
        assert!(!recount_due(true, 11_000, 1_000.0, 10_000.0), "a 1 s count waits 20 s");
        assert!(recount_due(true, 21_000, 1_000.0, 10_000.0));
    }

    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(13_332_459), "13,332,459");
    }

    #[test]
    fn the_lines_have_the_operators_shape() {
        assert_eq!(found_line(13_332_459), "Found 13,332,459 papers needing embeddings");
        assert_eq!(
            batch_line(
                Duration::from_millis(7200),
                Duration::from_millis(4400),
                Duration::from_millis(2800),
                250,
                250,
                0
            ),
            "Batch completed in 7.2s (API: 4.4s, DB: 2.8s) - 250 papers updated, 250 successful, 0 failed"
        );
        assert_eq!(
            progress_line(1500, 13_332_459, 2480.0),
            "Processed 1,500/13,332,459 (0.01%) - 2,480 papers/min, ETA 3d 17h"
        );
    }

    #[test]
    fn eta_uses_the_two_largest_units() {
        assert_eq!(eta(Duration::from_secs(5 * 3600 + 120)), "5h 2m");
        assert_eq!(eta(Duration::from_secs(250)), "4m 10s");
        assert_eq!(eta(Duration::from_secs(12)), "12s");
    }

    #[test]
    fn no_rate_means_no_eta() {
        assert!(progress_line(0, 10, 0.0).ends_with("ETA unknown"));
    }

    #[test]
    fn the_rate_ring_sums_its_window() {
        let mut ring = RateRing::default();
        ring.add(1000, 100); // 100 s before now: outside the last minute
        ring.add(1090, 30);
        ring.add(1100, 30);
        assert_eq!(ring.per_minute(1100, 60), 60.0);
        assert_eq!(ring.per_minute(1100, 600), 160.0 / 10.0);
    }

    #[test]
    fn a_reused_bucket_forgets_its_old_second() {
        let mut ring = RateRing::default();
        ring.add(5, 7);
        ring.add(605, 1);
        assert_eq!(ring.per_minute(605, 600), 0.1);
    }
}
