//! When to try again.
//!
//! Full-jitter exponential backoff (sleep a uniform time in
//! `0..min(cap, base × 2^k)`), where `k` counts consecutive failures *without
//! progress*: a connection that delivered bytes since its last failure retries
//! at once. A server's `Retry-After` is a lower bound. Tests set
//! `HFD_TEST_NO_RETRY_DELAY=1` to make our own backoff zero.

use std::time::Duration;

/// The environment variable that turns every retry delay to zero (tests only).
pub const NO_DELAY_ENV: &str = "HFD_TEST_NO_RETRY_DELAY";

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Consecutive failures without progress a connection may have before it
    /// gives up; 0 = never give up.
    pub max_tries: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Zero every delay (from [`NO_DELAY_ENV`]).
    pub no_delay: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_tries: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            no_delay: std::env::var_os(NO_DELAY_ENV).is_some_and(|v| v != "0" && !v.is_empty()),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt number `failures + 1`, at least `retry_after`
    /// (a server's wish is honoured even when tests zero our own backoff).
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let floor = retry_after.unwrap_or(Duration::ZERO);
        if self.no_delay {
            return floor;
        }
        let exp = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.cap);
        let jitter = exp.mul_f64(fastrand::f64());
        jitter.max(floor)
    }

    /// True when `failures` consecutive failures exhaust the budget.
    pub fn exhausted(&self, failures: u32) -> bool {
        self.max_tries != 0 && failures >= self.max_tries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_respect_retry_after() {
        let p = RetryPolicy {
            max_tries: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            no_delay: false,
        };
        for _ in 0..100 {
            assert!(p.delay(1, None) <= Duration::from_millis(100));
            assert!(p.delay(3, None) <= Duration::from_millis(400));
            assert!(p.delay(30, None) <= Duration::from_secs(1));
            assert!(p.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
        assert!(!p.exhausted(2));
        assert!(p.exhausted(3));
        let unlimited = RetryPolicy { max_tries: 0, ..p };
        assert!(!unlimited.exhausted(1000));
        let zero = RetryPolicy {
            no_delay: true,
            ..RetryPolicy::default()
        };
        assert_eq!(zero.delay(5, None), Duration::ZERO);
        assert_eq!(
            zero.delay(5, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }
}
