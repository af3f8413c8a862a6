//! How far an import is: lines read (and the share of the file), papers written, the rate and
//! the time left, as a progress bar on a terminal and as a line every 10 seconds otherwise (a
//! log, a pipe, a pg_cron job's output).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use embed_core::progress::{eta, thousands};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Counts;

/// How often a line is written when the output is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// The progress line: lines read (with the share of `total_bytes` read, when known), papers
/// written, lines per second and the time left at that rate.
pub fn progress_line(counts: &Counts, bytes: u64, total_bytes: Option<u64>, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let rate = counts.lines as f64 / seconds;
    let mut line = format!("{} lines read", thousands(counts.lines));
    if let Some(total) = total_bytes.filter(|t| *t > 0) {
        let share = (bytes as f64 / total as f64).min(1.0);
        line.push_str(&format!(" ({:.0}%)", share * 100.0));
        if share > 0.0 && share < 1.0 {
            let left = Duration::from_secs_f64(seconds * (1.0 - share) / share);
            line.push_str(&format!(
                ", {} papers written, {} lines/s, about {} left",
                thousands(counts.written),
                thousands(rate as u64),
                eta(left)
            ));
            return line;
        }
    }
    line.push_str(&format!(
        ", {} papers written, {} lines/s",
        thousands(counts.written),
        thousands(rate as u64)
    ));
    line
}

/// Shows an import's progress.
pub struct Progress {
    started: Instant,
    total_bytes: Option<u64>,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Progress {
    /// A bar when standard error is a terminal, lines every 10 s otherwise; `total_bytes` is
    /// the file's size, when known.
    pub fn new(total_bytes: Option<u64>) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total_bytes.unwrap_or(0));
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} (ETA {eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Progress {
            started: Instant::now(),
            total_bytes,
            bar,
            last_line: Instant::now(),
        }
    }

    /// Notes the counts after `bytes` of the file were read.
    pub fn update(&mut self, counts: &Counts, bytes: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!(
                    "{} lines, {} papers written",
                    thousands(counts.lines),
                    thousands(counts.written)
                ));
            }
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!(
                    "doctrove-import: {}",
                    progress_line(counts, bytes, self.total_bytes, self.started.elapsed())
                );
            }
            None => {}
        }
    }

    /// Clears the bar at the end.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_how_far_how_fast_and_how_long_still() {
        let counts = Counts {
            lines: 1_234_000,
            written: 1_200_500,
            unchanged: 0,
            skipped: 3,
        };
        assert_eq!(
            progress_line(&counts, 250, Some(1000), Duration::from_secs(60)),
            "1,234,000 lines read (25%), 1,200,500 papers written, 20,566 lines/s, about 3m 0s left"
        );
        assert_eq!(
            progress_line(&counts, 0, None, Duration::from_secs(10)),
            "1,234,000 lines read, 1,200,500 papers written, 123,400 lines/s"
        );
    }
}
