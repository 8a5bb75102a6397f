//! The adaptive connection count: what `hfget` does when `-x` is not given.
//!
//! Mirrors that throttle each connection reward more connections almost
//! linearly; an unthrottled server or a saturated link rewards them with
//! nothing but CPU and memory. So the download starts with a moderate count
//! and, every window, adds half as many again while the last addition paid
//! for itself. "Paid" means the rate grew by at least half of what the new
//! connections would bring if they were as fast as the old ones: strict
//! enough that noise on a saturated link stops the growth, loose enough
//! that slow-starting new connections on a throttled mirror still count.
//! A step that did not pay is measured over one more window before it is
//! taken back and growth stops there: its first window carries the new
//! connections' start, and on a loaded machine one starved window is
//! common enough to end a climb that was paying (seen on a 2-core VM under
//! CPU steal: 4 -> 6 -> 9, then undone).
//! Shrinking under pressure is not decided here: 429/503 already halve a source's limit
//! ([`super::source::Source::lower_conn_limit`]), and growth never goes
//! past that limit.

use std::time::{Duration, Instant};

/// The knobs of adaptive growth.
#[derive(Clone, Debug, PartialEq)]
pub struct Adaptive {
    /// Connections at the start.
    pub start: usize,
    /// How long each count is measured before deciding.
    pub window: Duration,
}

impl Default for Adaptive {
    fn default() -> Self {
        // 16 is aria2c's ceiling and our fixed default before; two seconds
        // lets new connections get past TCP slow start and the first
        // (small) range request, so their rate is measured, not their ramp.
        Adaptive {
            start: 16,
            window: Duration::from_secs(2),
        }
    }
}

/// Decides, window by window, whether to add connections.
#[derive(Debug)]
pub struct Growth {
    window: Duration,
    max: usize,
    /// Connections during the current window.
    current: usize,
    /// Start of the current window and the bytes received by then.
    since: Option<(Instant, u64)>,
    /// Rate and count of the previous window, to judge the last step.
    previous: Option<(f64, usize)>,
    /// The last step has already had its second window.
    second_look: bool,
    stopped: bool,
}

impl Growth {
    pub fn new(opts: &Adaptive, start: usize, max: usize) -> Growth {
        Growth {
            window: opts.window,
            max,
            current: start,
            since: None,
            previous: None,
            second_look: false,
            stopped: start >= max,
        }
    }

    /// Has growth stopped for good?
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Stops growth for good (the caller knows the end is near).
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// The rate over the current window, once it is at least 200 ms long:
    /// a few KiB over a few µs is no rate.
    pub fn window_rate(&self, now: Instant, received: u64) -> Option<f64> {
        let (t0, b0) = self.since?;
        let dt = now.duration_since(t0).as_secs_f64();
        (dt >= 0.2).then(|| received.saturating_sub(b0) as f64 / dt)
    }

    /// Called often (every few hundred ms) with the bytes received so far,
    /// the slots alive and the most the sources allow now; returns the new
    /// connection count when it changes.
    pub fn tick(
        &mut self,
        now: Instant,
        received: u64,
        live: usize,
        allowed: usize,
    ) -> Option<usize> {
        if self.stopped {
            return None;
        }
        let Some((t0, b0)) = self.since else {
            // The first window starts once bytes flow.
            if received > 0 {
                self.since = Some((now, received));
            }
            return None;
        };
        let elapsed = now.duration_since(t0);
        if elapsed < self.window {
            return None;
        }
        // Judged only at the end of a window: slots just spawned take a
        // moment to count themselves in.
        if live < self.current || allowed < self.current {
            // Slots left (429/503 lowered the limit, or out of work): the
            // count measured is no longer the one chosen. The server or the
            // file has said enough.
            tracing::debug!(
                "adaptive: {live} slots live, {allowed} allowed, {} chosen; staying",
                self.current
            );
            self.stopped = true;
            return None;
        }
        let rate = (received - b0) as f64 / elapsed.as_secs_f64();
        if let Some((prev_rate, prev_n)) = self.previous {
            let ideal_gain = self.current as f64 / prev_n as f64 - 1.0;
            let gain = rate / prev_rate.max(1.0) - 1.0;
            if gain < ideal_gain / 2.0 {
                let second = std::mem::replace(&mut self.second_look, true);
                tracing::debug!(
                    "adaptive: {prev_n} -> {} connections gained {:.0}% (needed {:.0}%); {}",
                    self.current,
                    gain * 100.0,
                    ideal_gain * 50.0,
                    if second { "undone" } else { "one more window" }
                );
                if !second {
                    self.since = Some((now, received));
                    return None;
                }
                self.stopped = true;
                self.current = prev_n;
                return Some(prev_n);
            }
        }
        let next = (self.current + self.current.div_ceil(2))
            .min(self.max)
            .min(allowed);
        if next <= self.current {
            self.stopped = true;
            return None;
        }
        tracing::debug!(
            "adaptive: {:.1} MB/s with {} connections; trying {next}",
            rate / 1e6,
            self.current
        );
        self.previous = Some((rate, self.current));
        self.second_look = false;
        self.current = next;
        self.since = Some((now, received));
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates a server where each connection gets `per_conn` bytes/s up
    /// to a link limit of `link`, ticking every 250 ms for `secs` seconds;
    /// returns the connection count reached.
    fn simulate(per_conn: f64, link: f64, secs: u64) -> usize {
        let opts = Adaptive::default();
        let mut g = Growth::new(&opts, opts.start, 64);
        let t0 = Instant::now();
        let mut n = opts.start;
        let mut received = 0.0;
        for i in 1..=secs * 4 {
            received += (n as f64 * per_conn).min(link) * 0.25;
            let now = t0 + Duration::from_millis(250 * i);
            if let Some(next) = g.tick(now, received as u64, n, 64) {
                n = next;
            }
        }
        n
    }

    #[test]
    fn a_per_connection_throttle_is_climbed_to_the_maximum() {
        // 8 MB/s per connection, no link limit: 16 -> 24 -> 36 -> 54 -> 64.
        assert_eq!(simulate(8e6, f64::INFINITY, 30), 64);
    }

    #[test]
    fn a_saturated_link_takes_back_the_one_step_it_tried() {
        // 16 connections already fill the link: 24 is tried, then undone.
        assert_eq!(simulate(100e6, 1e9, 30), 16);
    }

    #[test]
    fn growth_stops_near_the_link_limit() {
        // 8 MB/s each, link 300 MB/s: 36 (288 MB/s) is worth it, 54 is not.
        assert_eq!(simulate(8e6, 300e6, 30), 36);
    }

    #[test]
    fn one_starved_window_does_not_end_a_climb_that_pays() {
        // 10 MB/s per connection, but the first window at 24 delivers only
        // what 16 did (a stalled machine, slow new connections).
        let opts = Adaptive::default();
        let mut g = Growth::new(&opts, 16, 64);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut received = 1;
        assert_eq!(g.tick(t0, received, 16, 64), None);
        received += 2 * 160_000_000;
        assert_eq!(g.tick(at(2), received, 16, 64), Some(24));
        received += 2 * 160_000_000;
        assert_eq!(g.tick(at(4), received, 24, 64), None, "a second window");
        assert!(!g.stopped());
        received += 2 * 240_000_000;
        assert_eq!(g.tick(at(6), received, 24, 64), Some(36));
        // The next step gets its own second look, and then is undone.
        received += 2 * 240_000_000;
        assert_eq!(g.tick(at(8), received, 36, 64), None);
        received += 2 * 240_000_000;
        assert_eq!(g.tick(at(10), received, 36, 64), Some(24));
        assert!(g.stopped());
    }

    #[test]
    fn growth_never_passes_what_the_sources_allow() {
        let opts = Adaptive::default();
        let mut g = Growth::new(&opts, 16, 64);
        let t0 = Instant::now();
        assert_eq!(g.tick(t0, 1, 16, 20), None);
        let next = g.tick(t0 + Duration::from_secs(3), 100_000_000, 16, 20);
        assert_eq!(next, Some(20), "16 + 8 capped at the allowed 20");
    }

    #[test]
    fn slots_not_yet_started_do_not_stop_the_growth() {
        // The first ticks come before the spawned slots count themselves.
        let opts = Adaptive::default();
        let mut g = Growth::new(&opts, 16, 64);
        let t0 = Instant::now();
        assert_eq!(g.tick(t0, 0, 0, 64), None);
        assert_eq!(g.tick(t0 + Duration::from_millis(10), 1, 3, 64), None);
        assert!(!g.stopped());
        let next = g.tick(t0 + Duration::from_secs(3), 100_000_000, 16, 64);
        assert_eq!(next, Some(24));
    }

    #[test]
    fn slots_leaving_stop_the_growth() {
        let opts = Adaptive::default();
        let mut g = Growth::new(&opts, 16, 64);
        let t0 = Instant::now();
        g.tick(t0, 1, 16, 64);
        assert_eq!(g.tick(t0 + Duration::from_secs(3), 1 << 30, 12, 64), None);
        assert!(g.stopped());
    }
}
