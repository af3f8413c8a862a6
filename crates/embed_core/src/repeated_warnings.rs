//! Which of a worker's warnings reach the server log: each text once per window while it
//! repeats, whatever other texts come between (several jobs failing at once each keep their
//! own line). A failed poll every 300 ms would otherwise fill the log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Texts kept at most: a few per job and endpoint that can fail at once.
const MOST_TEXTS: usize = 256;

/// The texts logged within the window, with when.
#[derive(Debug, Default)]
pub struct RepeatedWarnings {
    logged: HashMap<String, Instant>,
}

impl RepeatedWarnings {
    /// Whether `text` is to be logged at `now`: not when the same text was logged less than
    /// `window` before. Texts older than the window are forgotten, and at most [`MOST_TEXTS`]
    /// are kept (the oldest goes first).
    pub fn should_log(&mut self, text: &str, now: Instant, window: Duration) -> bool {
        self.logged.retain(|_, at| now.saturating_duration_since(*at) < window);
        if self.logged.contains_key(text) {
            return false;
        }
        if self.logged.len() >= MOST_TEXTS {
            // Texts that differ every time (an API's answer with a request id in it) gain
            // nothing from being kept: the oldest goes.
            let oldest = self.logged.iter().min_by_key(|(_, at)| **at).map(|(t, _)| t.clone());
            oldest.map(|t| self.logged.remove(&t));
        }
        self.logged.insert(text.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_text_is_logged_once_a_window_while_others_come_between() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut warnings = RepeatedWarnings::default();
        let logged: Vec<bool> = [
            ("job a: Batch API: 404", 0),
            ("job b: Batch API: 404", 0),
            ("job a: Batch API: 404", 1),
            ("job b: Batch API: 404", 1),
            ("job a: Batch API: 500", 2),
            ("job a: Batch API: 404", 59),
            ("job a: Batch API: 404", 60),
            ("job b: Batch API: 404", 61),
            ("job a: Batch API: 404", 100),
        ]
        .iter()
        .map(|&(text, s)| warnings.should_log(text, at(s), MINUTE))
        .collect();
        assert_eq!(logged, [true, true, false, false, true, false, true, true, false]);
    }

    #[test]
    fn the_texts_of_past_windows_are_forgotten() {
        let start = Instant::now();
        let mut warnings = RepeatedWarnings::default();
        for i in 0..1000u64 {
            assert!(warnings.should_log(&format!("error {i}"), start + Duration::from_secs(i), MINUTE));
        }
        assert_eq!(warnings.logged.len(), 60);
    }

    #[test]
    fn at_most_256_texts_are_kept_and_the_oldest_goes_first() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut warnings = RepeatedWarnings::default();
        for i in 0..300u64 {
            assert!(warnings.should_log(&format!("request {i} failed"), at(i), MINUTE));
        }
        assert_eq!(warnings.logged.len(), 256);
        // The first 44 were let go, so they would be logged again; the last are still held.
        assert!(warnings.should_log("request 0 failed", at(300), MINUTE));
        assert!(!warnings.should_log("request 299 failed", at(301), MINUTE));
    }
}
