//! How often a warning that the network can repeat at will is written: a flood of bad input
//! must not flood a router's small log ring, and must not hide either. The first line of a
//! cause is written at once, then at most one per period, each saying how many were left out.

use std::cell::Cell;
use std::time::{Duration, Instant};

pub struct Throttle {
    every: Duration,
    last: Cell<Option<Instant>>,
    skipped: Cell<u32>,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: Cell::new(None),
            skipped: Cell::new(0),
        }
    }

    /// `Some(n)` when a line may be written now, `n` being the lines left out since the last
    /// one; `None` (counted) when it must be left out.
    pub fn allow(&self, now: Instant) -> Option<u32> {
        let due = self
            .last
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if !due {
            self.skipped.set(self.skipped.get().saturating_add(1));
            return None;
        }
        self.last.set(Some(now));
        Some(self.skipped.replace(0))
    }
}

/// The note a throttled line ends with: empty when nothing was left out.
pub fn skipped_note(n: u32) -> String {
    match n {
        0 => String::new(),
        n => format!(" ({n} more like it not logged)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_the_count_of_the_rest() {
        let t = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(t.allow(start), Some(0));
        for ms in [1, 200, 999] {
            assert_eq!(t.allow(start + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.allow(start + Duration::from_millis(1000)), Some(3));
        assert_eq!(t.allow(start + Duration::from_millis(1500)), None);
        assert_eq!(t.allow(start + Duration::from_secs(60)), Some(1));
        assert_eq!(skipped_note(0), "");
        assert_eq!(skipped_note(3), " (3 more like it not logged)");
    }
}
