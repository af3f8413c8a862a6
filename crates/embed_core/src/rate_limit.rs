//! A token bucket shared by every worker (it lives in shared memory; this is its arithmetic),
//! and the API's `x-ratelimit-*` headers that steer it.
//!
//! The bucket starts empty and refills at the per-minute limit, so a long run settles just under
//! the limit instead of bursting into 429s. A request may take the level below zero (a request
//! is larger than a second's allowance); the next one then waits for the debt to be repaid.
//! Each answer corrects the level by the tokens the API says it counted, and when the API
//! reports few tokens left the level is lowered to match.

use std::time::Duration;

/// One bucket (tokens or requests per minute).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bucket {
    /// Allowance per minute; 0 means unlimited.
    pub per_minute: f64,
    /// Current allowance; may be negative (debt).
    pub level: f64,
    /// When the level was last refilled (unix ms).
    pub updated_ms: i64,
}

impl Bucket {
    /// An unlimited bucket that has seen nothing (for arrays in shared memory).
    pub const NEW: Bucket = Bucket {
        per_minute: 0.0,
        level: 0.0,
        updated_ms: 0,
    };

    /// The share of the bucket's capacity free now, 0 to 1: 1 when unlimited, 0 in debt.
    pub fn free_share(&self) -> f64 {
        if self.per_minute <= 0.0 {
            return 1.0;
        }
        (self.level / self.capacity()).clamp(0.0, 1.0)
    }

    /// Most the level can hold: ten seconds' allowance.
    fn capacity(&self) -> f64 {
        self.per_minute / 6.0
    }

    /// Applies the current limit (a changed setting takes effect at once) and refills.
    pub fn refill(&mut self, per_minute: f64, now_ms: i64) {
        if per_minute != self.per_minute {
            self.per_minute = per_minute;
            self.level = self.level.min(self.capacity());
        }
        let elapsed = (now_ms - self.updated_ms).max(0) as f64 / 60_000.0;
        if self.updated_ms == 0 {
            self.level = 0.0;
        } else {
            self.level = (self.level + elapsed * self.per_minute).min(self.capacity());
        }
        self.updated_ms = now_ms;
    }

    /// How long until the level is out of debt (`None`: no wait, or unlimited). Refills first.
    pub fn wait(&mut self, per_minute: f64, now_ms: i64) -> Option<Duration> {
        if per_minute <= 0.0 {
            return None;
        }
        self.refill(per_minute, now_ms);
        (self.level < 0.0).then(|| Duration::from_secs_f64(-self.level / per_minute * 60.0))
    }

    /// Spends `amount` (after [`Self::wait`] said there is no wait).
    pub fn spend(&mut self, amount: f64) {
        if self.per_minute > 0.0 {
            self.level -= amount;
        }
    }

    /// Corrects an estimate with what the API counted.
    pub fn settle(&mut self, estimated: f64, actual: f64) {
        if self.per_minute > 0.0 {
            self.level += estimated - actual;
        }
    }

    /// Lowers the level when the API reports `remaining` of its own limit, keeping a reserve of
    /// 5% of the limit for the requests already in flight.
    /// The level never goes below one minute of debt, so no header can stall the server for
    /// longer than a minute.
    pub fn observe_remaining(&mut self, remaining: f64, limit: f64) {
        if self.per_minute > 0.0 && limit > 0.0 {
            let reserve = 0.05 * limit.min(self.per_minute);
            self.level = self.level.min(remaining - reserve).max(-self.per_minute);
        }
    }
}

/// Largest count an `x-ratelimit-*` header may give (far above any account's limit); larger,
/// negative, NaN or infinite values are ignored.
pub const MAX_HEADER_COUNT: f64 = 1e12;

/// What an answer's `x-ratelimit-*` headers said.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimitHeaders {
    pub limit_tokens: Option<f64>,
    pub remaining_tokens: Option<f64>,
    pub limit_requests: Option<f64>,
    pub remaining_requests: Option<f64>,
}

impl RateLimitHeaders {
    /// Reads the headers through `get` (a header lookup by lower-case name).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Self {
        // Counts from the network: finite, not negative, and below any real account's limit.
        let number = |name: &str| {
            get(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|n| n.is_finite() && (0.0..=MAX_HEADER_COUNT).contains(n))
        };
        RateLimitHeaders {
            limit_tokens: number("x-ratelimit-limit-tokens"),
            remaining_tokens: number("x-ratelimit-remaining-tokens"),
            limit_requests: number("x-ratelimit-limit-requests"),
            remaining_requests: number("x-ratelimit-remaining-requests"),
        }
    }
}

/// An estimate of a text's tokens when it was not counted: about four bytes a token.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_free_share_is_the_level_over_ten_seconds_allowance() {
        let mut b = Bucket::NEW;
        assert_eq!(b.free_share(), 1.0, "unlimited");
        b.refill(600.0, 1_000);
        assert_eq!(b.free_share(), 0.0, "a limited bucket starts empty");
        b.refill(600.0, 6_000);
        assert!((b.free_share() - 0.5).abs() < 1e-9, "{}", b.free_share());
        b.spend(1000.0);
        assert_eq!(b.free_share(), 0.0, "in debt");
    }

    use super::*;

    #[test]
    fn an_unlimited_bucket_never_waits() {
        let mut b = Bucket::default();
        assert_eq!(b.wait(0.0, 1000), None);
        b.spend(1e9);
        assert_eq!(b.wait(0.0, 1000), None);
    }

    #[test]
    fn a_new_bucket_starts_empty_and_refills_at_the_limit() {
        let mut b = Bucket::default();
        assert_eq!(b.wait(6000.0, 1_000), None, "level 0 is not debt");
        b.spend(100.0);
        // Level is now -100; at 100 a second it takes one second to repay.
        assert_eq!(b.wait(6000.0, 1_000), Some(Duration::from_secs(1)));
        assert_eq!(b.wait(6000.0, 2_000), None);
    }

    #[test]
    fn over_a_long_run_the_rate_stays_at_the_limit() {
        let mut b = Bucket::default();
        let (per_minute, mut now, mut taken) = (60_000.0, 1_000i64, 0.0);
        while now < 1_000 + 120_000 {
            match b.wait(per_minute, now) {
                None => {
                    b.spend(700.0);
                    taken += 700.0;
                }
                Some(wait) => now += wait.as_millis().max(1) as i64,
            }
        }
        let rate = taken / 2.0;
        assert!(rate <= per_minute * 1.01 && rate >= per_minute * 0.98, "{rate} per minute");
    }

    #[test]
    fn the_level_never_exceeds_ten_seconds_of_allowance() {
        let mut b = Bucket::default();
        b.refill(600.0, 1);
        b.refill(600.0, 1_000_000);
        assert_eq!(b.level, 100.0);
    }

    #[test]
    fn settling_corrects_an_estimate() {
        let mut b = Bucket {
            per_minute: 60.0,
            level: 0.0,
            updated_ms: 1,
        };
        b.settle(100.0, 130.0);
        assert_eq!(b.level, -30.0);
    }

    #[test]
    fn few_remaining_tokens_lower_the_level() {
        let mut b = Bucket {
            per_minute: 1000.0,
            level: 100.0,
            updated_ms: 1,
        };
        b.observe_remaining(60.0, 1000.0);
        assert_eq!(b.level, 10.0);
    }

    #[test]
    fn absurd_header_values_are_ignored() {
        let h = RateLimitHeaders::read(|name| match name {
            "x-ratelimit-limit-tokens" => Some("inf".into()),
            "x-ratelimit-remaining-tokens" => Some("NaN".into()),
            "x-ratelimit-limit-requests" => Some("1e400".into()),
            "x-ratelimit-remaining-requests" => Some("-5".into()),
            _ => None,
        });
        assert_eq!(h, RateLimitHeaders::default());
    }

    #[test]
    fn a_huge_limit_with_nothing_remaining_costs_at_most_a_minute() {
        let mut b = Bucket {
            per_minute: 1000.0,
            level: 100.0,
            updated_ms: 1,
        };
        b.observe_remaining(0.0, 1e12);
        assert_eq!(b.level, -50.0, "5% of the configured limit held back, not 5% of 1e12");
        b.observe_remaining(-1e12, 1000.0);
        assert_eq!(b.level, -1000.0, "never more than a minute of debt");
        assert_eq!(b.wait(1000.0, 1), Some(Duration::from_secs(60)));
    }

    #[test]
    fn headers_are_read() {
        let h = RateLimitHeaders::read(|name| match name {
            "x-ratelimit-limit-tokens" => Some("1000000".into()),
            "x-ratelimit-remaining-tokens" => Some("999000".into()),
            _ => None,
        });
        assert_eq!(h.limit_tokens, Some(1_000_000.0));
        assert_eq!(h.remaining_tokens, Some(999_000.0));
        assert_eq!(h.remaining_requests, None);
    }
}
