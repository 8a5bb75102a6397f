//! Fault knobs: the ways real servers and networks misbehave, one switch
//! each, so a test can name the pitfall it covers (engine-design §4).
//!
//! Every knob applies to one file (`FileSpec`). Knobs with a `times` count
//! act on the first `times` *eligible* responses and then stop, so a test
//! can check both the failure and the recovery. A response is eligible when
//! the fault can actually happen to it (a cut needs a body longer than the
//! cut point, a stall needs a body covering the stall offset, ...), so a
//! small probe request does not silently use up the count.
//!
//! A request is checked in this order: an expired or tampered signed URL
//! (403), `require_header` (401), `fail`, the method (405 unless GET or
//! HEAD), then ranges and validators; the body faults (`reset_after` before
//! `truncate`, `stall`, `corrupt`, pacing by `drip`, then
//! `slow_connections`, then `throttle`) shape what a GET sends. HEAD
//! requests count against `fail` but no other knob.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::semantics::EmptyRange;

/// The fault knobs of one file. `Faults::default()` is a well-behaved
/// server.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer `200` with the whole file to every request, and send no
    /// `Accept-Ranges` (a server without range support).
    pub ignore_range: bool,
    /// Send no `Content-Length` (HTTP/1.1 chunked encoding). With
    /// `ignore_range` this is a file of unknown length.
    pub chunked: bool,
    /// Bytes per second per TCP connection. One token bucket per connection
    /// is shared by every response on it (keep-alive requests and HTTP/2
    /// streams alike), as a per-flow shaper on a real path would be.
    pub throttle: Option<u64>,
    /// Some connections are much slower than the others (a mirror with a
    /// few bad paths). Overrides `throttle` on the connections it picks.
    pub slow_connections: Option<SlowConns>,
    /// `(bytes, times)`: the first `times` responses are cut after `bytes`
    /// body bytes by an abrupt close (TCP RST via `SO_LINGER` 0). The bytes
    /// before the cut are delivered first.
    pub reset_after: Option<(u64, u32)>,
    /// `(bytes, times)`: like `reset_after`, but a clean FIN after `bytes`
    /// while `Content-Length` promised more.
    pub truncate: Option<(u64, u32)>,
    /// A response stops sending at a given file offset; the connection
    /// stays open.
    pub stall: Option<Stall>,
    /// `(bytes_per_sec, times)`: the first `times` responses trickle at
    /// this rate (slowloris), each on its own clock.
    pub drip: Option<(u64, u32)>,
    /// The first `times` requests get an error status.
    pub fail: Option<Fail>,
    /// `(shift, times)`: the first `times` 206 answers claim a start
    /// shifted by `shift` bytes and carry the bytes of that shifted range
    /// (a broken cache). The shifted range is clamped into the file, keeping
    /// its length.
    pub wrong_content_range: Option<(i64, u32)>,
    /// `(offset, times)`: the first `times` responses whose body covers
    /// file offset `offset` carry that byte inverted (XOR 0xFF).
    pub corrupt: Option<(u64, u32)>,
    /// `(bytes_served_total, new_seed)`: once this many body bytes of the
    /// file have been sent (all responses together), the file becomes
    /// `Content::new(new_seed, same length)` with a new `ETag` and
    /// `Last-Modified`. Responses already under way keep the old bytes, as
    /// a file replaced by rename would on a real server.
    pub change_after: Option<(u64, u64)>,
    /// `(name, value)`: answer 401 unless the request carries this header
    /// with exactly this value (header names are case-insensitive).
    pub require_header: Option<(String, String)>,
    /// Send no `ETag` (then `If-Range` can only use the date).
    pub omit_etag: bool,
    /// Send no `Last-Modified`.
    pub omit_last_modified: bool,
    /// How an empty file answers a range request.
    pub empty_range: EmptyRange,
}

/// Connections whose accept serial number `n` (0-based, per server)
/// satisfies `n % every == every - 1` are served at `rate` bytes/s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowConns {
    pub every: u64,
    pub rate: u64,
}

impl SlowConns {
    /// Whether connection `serial` is one of the slow ones.
    pub fn applies_to(&self, serial: u64) -> bool {
        self.every > 0 && serial % self.every == self.every - 1
    }
}

/// A response whose body covers file offset `at` stops sending when it gets
/// there, for the first `times` such responses. With `for_ = None` it never
/// resumes (the client must time out); otherwise it resumes after `for_`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    pub at: u64,
    pub times: u32,
    pub for_: Option<Duration>,
}

/// The first `times` requests for the file (after the first `after`, which
/// are answered normally) get `status`, plus `Retry-After` when set and
/// any extra `headers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail {
    pub status: u16,
    pub times: u32,
    pub retry_after: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Requests answered normally before the failures start (a refusal in
    /// the middle of a download rather than at its first request).
    pub after: u32,
}

impl Fail {
    /// `status` for the first `times` requests, with no extra headers.
    pub fn new(status: u16, times: u32) -> Fail {
        Fail {
            status,
            times,
            retry_after: None,
            headers: Vec::new(),
            after: 0,
        }
    }

    /// Lets the first `n` requests through before the failures start.
    pub fn after(mut self, n: u32) -> Fail {
        self.after = n;
        self
    }

    /// Adds `Retry-After: value` (seconds or an HTTP date).
    pub fn retry_after(mut self, value: impl Into<String>) -> Fail {
        self.retry_after = Some(value.into());
        self
    }

    /// Adds a header to the failing answers.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Fail {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A counter of remaining fault activations, shared by all connections.
#[derive(Debug)]
pub(crate) struct Countdown(AtomicU32);

impl Countdown {
    pub(crate) fn new(times: Option<u32>) -> Countdown {
        Countdown(AtomicU32::new(times.unwrap_or(0)))
    }

    /// Uses up one activation; false once none are left.
    pub(crate) fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_and_slow_selection() {
        let c = Countdown::new(Some(2));
        assert!(c.take());
        assert!(c.take());
        assert!(!c.take());
        assert!(!Countdown::new(None).take());
        let s = SlowConns { every: 4, rate: 1 };
        let picked: Vec<u64> = (0..12).filter(|&n| s.applies_to(n)).collect();
        assert_eq!(picked, [3, 7, 11]);
        assert!(!SlowConns { every: 0, rate: 1 }.applies_to(0));
    }
}
