//! Bandwidth caps (`--max-download-limit`, `--max-overall-download-limit`).
//!
//! A cap is a schedule of when bytes may arrive: before a reader takes in
//! up to `n` bytes it books the next `n / rate` seconds of the cap's time
//! and waits until its booking comes; then it settles the booking to what
//! it actually read. Bookings are served in arrival order, so connections
//! that read alike share the cap alike; and a reader that waits leaves its
//! socket unread, so TCP slows the server down (the cap holds at the
//! sender, not only here; a small socket receive buffer under a cap keeps
//! the kernel from taking in a burst first). A little credit (a twentieth
//! of a second) absorbs the jitter of timers, so a steady reader is never
//! held below the rate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One cap, shared by everything it covers (a download's connections, or
/// every download of a run).
#[derive(Debug)]
pub struct RateLimit {
    /// Bytes per second.
    rate: f64,
    /// When the cap's time is booked until.
    booked_until: Mutex<Instant>,
}

/// How much unused time may be spent at once after an idle spell.
const CREDIT: Duration = Duration::from_millis(50);

impl RateLimit {
    /// A cap of `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        RateLimit {
            rate: bytes_per_sec.max(1) as f64,
            booked_until: Mutex::new(Instant::now()),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The most a reader should take in at once: a twentieth of a second's
    /// worth (at least 16 KiB), so bookings stay short and turns alternate.
    pub fn piece(&self) -> usize {
        ((self.rate / 20.0) as usize).max(16 << 10)
    }

    /// Books `n` bytes; returns how long to wait before taking them in.
    pub fn book(&self, n: usize) -> Duration {
        let now = Instant::now();
        let mut until = self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
        let start = (*until).max(now.checked_sub(CREDIT).unwrap_or(now));
        *until = start + Duration::from_secs_f64(n as f64 / self.rate);
        until.saturating_duration_since(now + CREDIT)
    }

    /// Settles a booking of `booked` bytes of which `read` were taken in:
    /// the difference is given back (or, for more, taken).
    pub fn settle(&self, booked: usize, read: usize) {
        if booked == read {
            return;
        }
        let mut until = self.booked_until.lock().unwrap_or_else(|e| e.into_inner());
        let d = Duration::from_secs_f64(booked.abs_diff(read) as f64 / self.rate);
        *until = if read > booked {
            *until + d
        } else {
            until.checked_sub(d).unwrap_or(*until)
        };
    }
}

/// Books `n` bytes with every cap in `limits`; returns when they may be
/// taken in (`None`: at once).
pub fn book(limits: &[Arc<RateLimit>], n: usize) -> Option<Instant> {
    let wait = limits.iter().map(|l| l.book(n)).max()?;
    (!wait.is_zero()).then(|| Instant::now() + wait)
}

/// Settles the bookings of [`book`] to what was read.
pub fn settle(limits: &[Arc<RateLimit>], booked: usize, read: usize) {
    for l in limits {
        l.settle(booked, read);
    }
}

/// The largest piece to read at once under `limits` (`None`: no cap).
pub fn piece(limits: &[Arc<RateLimit>]) -> Option<usize> {
    limits.iter().map(|l| l.piece()).min()
}

/// Waits until `at`, if there is one.
pub async fn until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookings_add_up_to_the_rate_and_settle() {
        let l = RateLimit::new(1 << 20);
        // A twentieth of a second's worth is credit: no wait.
        assert_eq!(l.book(50 << 10), Duration::ZERO);
        // Ten more pieces of 100 KiB book about a second ahead.
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            last = l.book(100 << 10);
        }
        let want = (50.0 + 1000.0) / 1024.0 - 0.05;
        assert!(
            (last.as_secs_f64() - want).abs() < 0.03,
            "{last:?}, want about {want} s"
        );
        // Giving back a booking read short moves the schedule back.
        l.settle(100 << 10, 0);
        let after = l.book(0);
        assert!(
            (after.as_secs_f64() - (want - 100.0 / 1024.0)).abs() < 0.03,
            "{after:?}"
        );
        assert_eq!(l.piece(), 52428);
    }
}
