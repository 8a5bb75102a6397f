//! When to try again, and the one loop that waits between attempts.
//!
//! Full-jitter exponential backoff: before attempt `k + 1` sleep a uniform
//! time in `0..min(cap, base × 2^(k-1))`, where `k` counts failures in a row
//! *without progress* (a caller that made progress calls
//! [`Backoff::progressed`]). A server's `Retry-After` is a lower bound, and
//! every wait races the caller's cancellation token, so Ctrl-C never waits
//! out a backoff. A base of zero means no backoff of our own (tests, and
//! `--retry-wait 0`); `Retry-After` is still obeyed.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Failures in a row without progress before giving up; 0 = never.
    pub max_tries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_tries: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt number `failures + 1`, at least `retry_after`.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let floor = retry_after.unwrap_or(Duration::ZERO);
        let exp = self
            .base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.cap);
        exp.mul_f64(fastrand::f64()).max(floor)
    }

    /// True when `failures` failures in a row exhaust the budget.
    pub fn exhausted(&self, failures: u32) -> bool {
        self.max_tries != 0 && failures >= self.max_tries
    }
}

/// Why [`Backoff::failed`] says to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The budget is spent after this many failures in a row.
    Exhausted { attempts: u32 },
    /// The caller's token was cancelled (before or during the wait).
    Cancelled,
}

/// The retry driver: counts failures in a row and waits between attempts.
/// Every loop that retries (the engine's probe, slots and single stream,
/// the Hub API, the bench) goes through one of these.
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    cancel: CancellationToken,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy, cancel: CancellationToken) -> Backoff {
        Backoff {
            policy,
            cancel,
            failures: 0,
        }
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Bytes arrived: the next failure starts a new count.
    pub fn progressed(&mut self) {
        self.failures = 0;
    }

    /// Counts one failure. Stops when the budget is spent; else waits the
    /// backoff (never less than `retry_after`), or only `retry_after` when
    /// `at_once` (a connection that was delivering retries at once).
    pub async fn failed(
        &mut self,
        retry_after: Option<Duration>,
        at_once: bool,
    ) -> Result<(), Stop> {
        self.failures += 1;
        if self.policy.exhausted(self.failures) {
            return Err(Stop::Exhausted {
                attempts: self.failures,
            });
        }
        let delay = if at_once {
            retry_after.unwrap_or(Duration::ZERO)
        } else {
            self.policy.delay(self.failures, retry_after)
        };
        if !delay.is_zero() {
            tracing::debug!("retrying in {delay:?}");
        }
        self.sleep(delay).await
    }

    /// Waits `d`, or stops when cancelled first.
    pub async fn sleep(&self, d: Duration) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        if d.is_zero() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.cancel.cancelled() => Err(Stop::Cancelled),
        }
    }

    /// Runs `f` unless cancelled first: every request of a retry loop races
    /// the token, so a server that went silent never holds up a stop.
    pub async fn attempt<T>(&self, f: impl Future<Output = T>) -> Result<T, Stop> {
        tokio::select! {
            r = f => Ok(r),
            _ = self.cancel.cancelled() => Err(Stop::Cancelled),
        }
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    pub fn cancel(&self) -> &CancellationToken {
        &self.cancel
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
            base: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert_eq!(zero.delay(5, None), Duration::ZERO);
        assert_eq!(
            zero.delay(5, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[tokio::test]
    async fn the_driver_counts_resets_stops_and_is_cancelled() {
        let policy = RetryPolicy {
            max_tries: 3,
            base: Duration::ZERO,
            cap: Duration::ZERO,
        };
        let cancel = CancellationToken::new();
        let mut b = Backoff::new(policy, cancel.clone());
        assert_eq!(b.failed(None, false).await, Ok(()));
        assert_eq!(b.failed(None, false).await, Ok(()));
        b.progressed();
        assert_eq!(b.failed(None, false).await, Ok(()));
        assert_eq!(b.failed(None, false).await, Ok(()));
        assert_eq!(
            b.failed(None, false).await,
            Err(Stop::Exhausted { attempts: 3 })
        );
        // A long Retry-After is cut short by a cancel.
        let mut b = Backoff::new(RetryPolicy::default(), cancel.clone());
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.cancel();
        });
        assert_eq!(
            b.failed(Some(Duration::from_secs(3600)), false).await,
            Err(Stop::Cancelled)
        );
        assert_eq!(
            b.attempt(std::future::pending::<()>()).await,
            Err(Stop::Cancelled)
        );
    }
}
