//! Which server a client connection tries next: a passive circuit breaker over the configured
//! servers, as shadowsocks-go chooses.
//!
//! Every server has a failure count: a failed connect (or a server that closed before
//! answering) adds one, up to [`MAX_FAILURES`]; a success clears it. Connections start at the
//! next server in turn, so load spreads over healthy servers. A server with `f` failures is
//! tried only with probability 1 / (f + [`BASE`]): it is found again soon after it recovers,
//! and while it is down it costs about one connect in twenty. A connection that failed on one
//! server moves to the next it has not tried; when only servers it skipped are left, the one
//! with the fewest failures goes first, so with every server down each is still tried once.

/// Where a failure count stops growing: a server down for hours is rediscovered as fast as
/// one down for a minute.
pub const MAX_FAILURES: u16 = 30;

/// Added to the failure count for the odds of trying a failing server anyway.
pub const BASE: u32 = 20;

/// The count after one more failure.
pub fn failed(failures: u16) -> u16 {
    failures.saturating_add(1).min(MAX_FAILURES)
}

/// Whether a server with `failures` is tried this time; `draw` is a uniform random number.
pub fn worth_trying(failures: u16, draw: u32) -> bool {
    failures == 0 || draw.is_multiple_of(u32::from(failures) + BASE)
}

/// The next server for a connection that started at `start` and has tried `tried` (in order)
/// among `n` servers whose failure counts `failures` gives; `None` when all were tried.
///
/// The first call (nothing tried) costs O(1) while the server at `start` is healthy.
pub fn next(
    n: usize,
    start: usize,
    tried: &[usize],
    failures: impl Fn(usize) -> u16,
    mut draw: impl FnMut() -> u32,
) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let untried = |i: &usize| !tried.contains(i);
    let mut order = (0..n).map(|k| (start + k) % n).filter(untried);
    if let Some(i) = order.find(|&i| worth_trying(failures(i), draw())) {
        return Some(i);
    }
    (0..n)
        .map(|k| (start + k) % n)
        .filter(untried)
        .min_by_key(|&i| failures(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(n: usize, start: usize, f: &[u16], mut draws: impl FnMut() -> u32) -> Vec<usize> {
        let mut tried = Vec::new();
        while let Some(i) = next(n, start, &tried, |i| f[i], &mut draws) {
            tried.push(i);
        }
        tried
    }

    #[test]
    fn healthy_servers_are_taken_in_turn_from_the_start() {
        let f = [0, 0, 0];
        assert_eq!(all(3, 0, &f, || 1), [0, 1, 2]);
        assert_eq!(all(3, 2, &f, || 1), [2, 0, 1]);
        assert_eq!(next(0, 0, &[], |_| 0, || 0), None);
    }

    #[test]
    fn a_failing_server_is_skipped_unless_the_draw_picks_it_and_then_tried_last() {
        let f = [5, 0, 0];
        // 1 is never a multiple of 25: server 0 waits until every other was tried.
        assert_eq!(all(3, 0, &f, || 1), [1, 2, 0]);
        // A draw of 0 (probability 1/25) tries it in its turn.
        assert_eq!(all(3, 0, &f, || 0), [0, 1, 2]);
    }

    #[test]
    fn with_every_server_failing_the_least_failed_goes_first() {
        let f = [9, 3, 30, 3];
        assert_eq!(all(4, 0, &f, || 1), [1, 3, 0, 2]);
        assert_eq!(all(4, 2, &f, || 1), [3, 1, 0, 2]);
    }

    #[test]
    fn failures_are_capped_and_the_odds_follow_them() {
        let mut f = 0;
        for _ in 0..100 {
            f = failed(f);
        }
        assert_eq!(f, MAX_FAILURES);
        let picked = |f: u16| (0..10_000).filter(|&d| worth_trying(f, d)).count();
        assert_eq!(picked(0), 10_000);
        assert_eq!(picked(1), 477); // ⌈10000 / 21⌉
        assert_eq!(picked(MAX_FAILURES), 200);
    }
}
