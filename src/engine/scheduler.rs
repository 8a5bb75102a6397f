//! Who fetches which bytes.
//!
//! Ownership model: every missing byte is either in the queue of unowned
//! pieces or inside exactly one slot's region `[cur, end)`. A slot consumes its
//! region from `cur` with bounded requests and moves `cur` forward as bytes
//! arrive (a *claim*); nobody else ever moves another slot's `cur`. Others may
//! only lower a slot's `end` (steal its tail) under that slot's lock, and never
//! below its `cur`, so two slots never write the same byte.
//!
//! - Start: the missing bytes are cut into equal contiguous pieces, one per
//!   connection; a range shorter than `2 × min_split` is never cut (aria2's
//!   `-k` rule).
//! - A slot that runs out of work takes part of the region with the longest
//!   expected remaining time, split in proportion to the two rates so both
//!   finish together.
//! - A region too small to split but held by a stalled or much slower slot is
//!   taken over whole; the old holder stops and reconnects.
//!
//! The monitor (see `job`) uses [`Scheduler::health_check`] to replace stalled
//! and far-too-slow connections.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::extent::ExtentSet;

/// Why a slot was asked to stop reading its current response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Preempt {
    None = 0,
    /// Its region was taken over; drop the connection and look for work.
    RegionLost = 1,
    /// Too slow or stalled: keep the region, open a new connection.
    Reconnect = 2,
    /// The download is stopping.
    Cancel = 3,
    /// No byte for too long: open a new connection, and count a failed
    /// attempt, so a server that always stalls at the same place ends in a
    /// give-up (exit 2) instead of reconnecting forever.
    Stalled = 4,
}

/// The position of one slot.
#[derive(Clone, Copy, Debug, Default)]
struct Region {
    cur: u64,
    end: u64,
    /// End of the request in flight (`cur <= req_end <= end` when one is).
    req_end: u64,
}

/// One connection's place in the download.
pub struct Slot {
    pub id: usize,
    pub source: usize,
    region: Mutex<Region>,
    preempt: AtomicU8,
    pub wake: Notify,
    /// Bytes per second, smoothed; f64 bits.
    rate: AtomicU64,
    /// Milliseconds since the scheduler started: last byte or last assignment.
    last_progress_ms: AtomicU64,
    /// When the current connection started transferring (for the slow-check grace).
    transfer_since_ms: AtomicU64,
    slow_since_ms: AtomicU64,
    sample: Mutex<(Instant, u64)>,
}

impl Slot {
    /// Takes up to `n` bytes at the slot's position; returns (offset, taken).
    /// Fewer than `n` means the region ended (it may have been stolen).
    pub fn claim(&self, n: u64) -> (u64, u64) {
        let mut r = self.region.lock().unwrap();
        let take = n.min(r.end.saturating_sub(r.cur));
        let at = r.cur;
        r.cur += take;
        (at, take)
    }

    /// The next request: from `cur`, at most `max_len`, within the region.
    pub fn next_request(&self, max_len: u64) -> Option<Range<u64>> {
        let mut r = self.region.lock().unwrap();
        if r.cur >= r.end {
            return None;
        }
        r.req_end = r.end.min(r.cur.saturating_add(max_len.max(1)));
        Some(r.cur..r.req_end)
    }

    /// A request to send ahead: the next at most `max_len` bytes after the
    /// request in flight, which ends at `from`. `None` when the region ends
    /// there (or was cut before it).
    pub fn request_after(&self, from: u64, max_len: u64) -> Option<Range<u64>> {
        let mut r = self.region.lock().unwrap();
        if r.req_end != from || from >= r.end {
            return None;
        }
        r.req_end = r.end.min(from.saturating_add(max_len.max(1)));
        Some(from..r.req_end)
    }

    /// Undoes [`Slot::request_after`] for a request that never went out, so
    /// that a thief does not treat its bytes as spoken for (and cut after
    /// them) while nobody will send them.
    pub fn withdraw_request(&self, range: &Range<u64>) {
        let mut r = self.region.lock().unwrap();
        if r.req_end == range.end {
            r.req_end = range.start.clamp(r.cur, r.end);
        }
    }

    /// Fixes the first request (the probe's answer covers `cur..req_end`).
    pub fn set_request_end(&self, req_end: u64) {
        let mut r = self.region.lock().unwrap();
        r.req_end = req_end.clamp(r.cur, r.end);
    }

    pub fn has_work(&self) -> bool {
        let r = self.region.lock().unwrap();
        r.cur < r.end
    }

    /// `cur..end` of the region.
    pub fn region(&self) -> Range<u64> {
        let r = self.region.lock().unwrap();
        r.cur..r.end
    }

    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate.load(Relaxed))
    }

    /// Takes and clears the pending preemption.
    pub fn take_preempt(&self) -> Preempt {
        match self.preempt.swap(Preempt::None as u8, Relaxed) {
            1 => Preempt::RegionLost,
            2 => Preempt::Reconnect,
            3 => Preempt::Cancel,
            4 => Preempt::Stalled,
            _ => Preempt::None,
        }
    }

    pub fn preempt(&self, why: Preempt) {
        // Cancel is sticky: never downgrade it.
        let _ = self.preempt.fetch_update(Relaxed, Relaxed, |old| {
            if old == Preempt::Cancel as u8 {
                None
            } else {
                Some(why as u8)
            }
        });
        self.wake.notify_one();
    }
}

/// What a slot should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Assignment {
    /// Fetch this region (already recorded as the slot's).
    Work(Range<u64>),
    /// Nothing to take now, but others still work: wait for a change.
    Wait,
    /// Every byte is received.
    Done,
}

/// Tunables of the scheduler (defaults suit both loopback and 300 ms links).
#[derive(Clone, Debug)]
pub struct Tuning {
    /// A region is never split into pieces shorter than this (`-k`).
    pub min_split: u64,
    /// No byte for this long (with a working peer) means stalled.
    pub stall_after: Duration,
    /// A connection below this share of the median rate for `slow_for` is replaced.
    pub slow_ratio: f64,
    pub slow_for: Duration,
    /// Grace after a connection starts before the slow check applies.
    pub slow_grace: Duration,
    /// What a takeover costs (reconnect, slow start): worth it only if it saves more.
    pub takeover_cost: Duration,
}

impl Tuning {
    pub fn new(min_split: u64) -> Tuning {
        Tuning {
            min_split: min_split.max(1),
            stall_after: Duration::from_secs(2),
            slow_ratio: 0.25,
            slow_for: Duration::from_secs(5),
            slow_grace: Duration::from_secs(3),
            takeover_cost: Duration::from_secs(1),
        }
    }
}

struct State {
    queue: VecDeque<Range<u64>>,
    slots: Vec<Arc<Slot>>,
}

pub struct Scheduler {
    total: u64,
    tuning: Tuning,
    state: Mutex<State>,
    /// Bytes not yet received.
    remaining: AtomicU64,
    /// Woken when work appears or the download completes.
    pub changed: Notify,
    started: Instant,
}

/// Cuts the missing bytes into about `n` contiguous pieces of equal size;
/// a run shorter than `2 × min_split` stays whole, no piece is shorter than
/// `min_split` unless its whole run is.
pub fn initial_pieces(missing: &ExtentSet, n: usize, min_split: u64) -> Vec<Range<u64>> {
    let n = n.max(1) as u64;
    let k = min_split.max(1);
    let total: u64 = missing.covered();
    let target = total.div_ceil(n).max(k);
    let mut out = Vec::new();
    for run in missing.iter() {
        let len = run.end - run.start;
        let parts = if len < 2 * k {
            1
        } else {
            // Rounded up: `len / target` is n - 1 whenever n does not
            // divide the length, which left a connection unused.
            len.div_ceil(target).max(1).min(len / k)
        };
        let mut start = run.start;
        for i in 0..parts {
            let end = if i + 1 == parts {
                run.end
            } else {
                run.start + len * (i + 1) / parts
            };
            out.push(start..end);
            start = end;
        }
    }
    out
}

/// How many connections are worth opening for these pieces.
pub fn useful_connections(pieces: &[Range<u64>], wanted: usize) -> usize {
    pieces.len().min(wanted).max(1)
}

impl Scheduler {
    /// A schedule over `missing` (a subset of `0..total`), pre-cut for `n` slots.
    pub fn new(total: u64, missing: &ExtentSet, n: usize, tuning: Tuning) -> Scheduler {
        let pieces = initial_pieces(missing, n, tuning.min_split);
        Scheduler {
            total,
            remaining: AtomicU64::new(missing.covered()),
            tuning,
            state: Mutex::new(State {
                queue: pieces.into(),
                slots: Vec::new(),
            }),
            changed: Notify::new(),
            started: Instant::now(),
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn min_split(&self) -> u64 {
        self.tuning.min_split
    }

    pub fn remaining(&self) -> u64 {
        self.remaining.load(Relaxed)
    }

    pub fn is_done(&self) -> bool {
        self.remaining() == 0
    }

    /// Number of pieces waiting for a slot.
    pub fn queued(&self) -> usize {
        self.state.lock().unwrap().queue.len()
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Adds a slot fetching from `source`.
    pub fn add_slot(&self, source: usize) -> Arc<Slot> {
        let mut st = self.state.lock().unwrap();
        let now = self.now_ms();
        let slot = Arc::new(Slot {
            id: st.slots.len(),
            source,
            region: Mutex::new(Region::default()),
            preempt: AtomicU8::new(0),
            wake: Notify::new(),
            rate: AtomicU64::new(0f64.to_bits()),
            last_progress_ms: AtomicU64::new(now),
            transfer_since_ms: AtomicU64::new(now),
            slow_since_ms: AtomicU64::new(0),
            sample: Mutex::new((Instant::now(), 0)),
        });
        st.slots.push(slot.clone());
        slot
    }

    /// Gives `slot` the bytes its probe already asked for: the queued piece
    /// that starts there, stretched over (and trimmed out of) later pieces
    /// when the probe asked for more than that piece.
    pub fn take_for_probe(&self, slot: &Slot, probe: Range<u64>) {
        let mut st = self.state.lock().unwrap();
        let mut end = probe.end;
        if let Some(i) = st.queue.iter().position(|p| p.start == probe.start) {
            let piece = st.queue.remove(i).expect("index from position");
            end = end.max(piece.end);
        }
        let claimed = probe.start..end;
        let mut queue = VecDeque::with_capacity(st.queue.len());
        for p in st.queue.drain(..) {
            if p.end <= claimed.start || p.start >= claimed.end {
                queue.push_back(p);
                continue;
            }
            if p.start < claimed.start {
                queue.push_back(p.start..claimed.start);
            }
            if p.end > claimed.end {
                queue.push_back(claimed.end..p.end);
            }
        }
        st.queue = queue;
        drop(st);
        self.give(slot, claimed);
        slot.set_request_end(probe.end);
    }

    fn give(&self, slot: &Slot, piece: Range<u64>) {
        let mut r = slot.region.lock().unwrap();
        *r = Region {
            cur: piece.start,
            end: piece.end,
            req_end: piece.start,
        };
        let now = self.now_ms();
        slot.last_progress_ms.store(now, Relaxed);
    }

    /// Records `n` bytes received by `slot` (after a successful claim).
    pub fn received(&self, slot: &Slot, n: u64) {
        slot.last_progress_ms.store(self.now_ms(), Relaxed);
        let mut s = slot.sample.lock().unwrap();
        s.1 += n;
        let dt = s.0.elapsed();
        if dt >= Duration::from_millis(200) {
            let inst = s.1 as f64 / dt.as_secs_f64();
            let old = slot.rate();
            let new = if old == 0.0 {
                inst
            } else {
                old * 0.7 + inst * 0.3
            };
            slot.rate.store(new.to_bits(), Relaxed);
            *s = (Instant::now(), 0);
        }
        drop(s);
        if self.remaining.fetch_sub(n, Relaxed) == n {
            self.changed.notify_waiters();
        }
    }

    /// Marks the start of a transfer on a fresh connection (resets the rate
    /// sample window, starts the slow-check grace).
    pub fn transfer_started(&self, slot: &Slot, new_connection: bool) {
        let now = self.now_ms();
        slot.last_progress_ms.store(now, Relaxed);
        if new_connection {
            // The rate window spans the requests of one connection (one
            // request may take well under the 200 ms sample period); a new
            // connection starts a new window.
            *slot.sample.lock().unwrap() = (Instant::now(), 0);
            slot.transfer_since_ms.store(now, Relaxed);
            slot.slow_since_ms.store(0, Relaxed);
        }
    }

    /// Gives the rest of `slot`'s region back to the queue (the slot stops).
    pub fn release(&self, slot: &Slot) {
        let mut st = self.state.lock().unwrap();
        let mut r = slot.region.lock().unwrap();
        if r.cur < r.end {
            let piece = r.cur..r.end;
            let pos = st.queue.partition_point(|p| p.start < piece.start);
            st.queue.insert(pos, piece);
        }
        r.end = r.cur;
        drop(r);
        st.slots.retain(|s| s.id != slot.id);
        drop(st);
        self.changed.notify_waiters();
    }

    /// Next work for an idle `slot`: a queued piece, else a share of the
    /// slowest region, else a takeover of a stalled one.
    pub fn assign(&self, slot: &Slot) -> Assignment {
        if self.is_done() {
            return Assignment::Done;
        }
        let mut st = self.state.lock().unwrap();
        if let Some(piece) = st.queue.pop_front() {
            self.give(slot, piece.clone());
            return Assignment::Work(piece);
        }
        match self.steal(&st, slot) {
            Some(piece) => {
                self.give(slot, piece.clone());
                Assignment::Work(piece)
            }
            None => {
                drop(st);
                if self.is_done() {
                    Assignment::Done
                } else {
                    Assignment::Wait
                }
            }
        }
    }

    fn stall_ms(&self) -> u64 {
        self.tuning.stall_after.as_millis() as u64
    }

    fn median_rate(st: &State, except: usize) -> f64 {
        let mut rates: Vec<f64> = st
            .slots
            .iter()
            .filter(|s| s.id != except && s.has_work())
            .map(|s| s.rate())
            .filter(|r| *r > 0.0)
            .collect();
        if rates.is_empty() {
            return 0.0;
        }
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    }

    fn steal(&self, st: &State, thief: &Slot) -> Option<Range<u64>> {
        let median = Self::median_rate(st, thief.id);
        let own = thief.rate();
        let thief_rate = if own > 0.0 { own } else { median };
        let (victim, eta) = self.victim(st, thief, median)?;
        let stalled = eta.is_infinite();
        let mut r = victim.region.lock().unwrap();
        let rem = r.end.saturating_sub(r.cur);
        if rem == 0 {
            return None;
        }
        if rem >= 2 * self.tuning.min_split {
            let rv = if stalled {
                0.0
            } else if victim.rate() > 0.0 {
                victim.rate()
            } else {
                median
            };
            let split = self.split_point(&r, rv, thief_rate);
            let piece = split..r.end;
            r.end = split;
            tracing::debug!(
                "slot {} takes {:?} from slot {} (rates {:.0} / {:.0} B/s)",
                thief.id,
                piece,
                victim.id,
                thief_rate,
                rv
            );
            return Some(piece);
        }
        // Too small to split: take it over whole if that finishes sooner,
        // judged only on measured rates.
        let worth = stalled
            || (thief_rate > 0.0
                && victim.rate() > 0.0
                && eta > rem as f64 / thief_rate + self.tuning.takeover_cost.as_secs_f64());
        if !worth {
            return None;
        }
        let piece = r.cur..r.end;
        r.end = r.cur;
        drop(r);
        victim.preempt(Preempt::RegionLost);
        tracing::debug!(
            "slot {} takes over {:?} from slot {}",
            thief.id,
            piece,
            victim.id
        );
        Some(piece)
    }

    /// The region that would take longest at its holder's rate, and that
    /// time (infinite for a stalled holder). A holder whose rate is not
    /// measured yet is assumed typical (`median`); only a holder without
    /// progress for a while counts as stalled.
    fn victim<'a>(&self, st: &'a State, thief: &Slot, median: f64) -> Option<(&'a Arc<Slot>, f64)> {
        let now = self.now_ms();
        let mut best: Option<(&Arc<Slot>, f64, u64)> = None;
        for v in st.slots.iter().filter(|v| v.id != thief.id) {
            let rem = {
                let r = v.region.lock().unwrap();
                r.end.saturating_sub(r.cur)
            };
            if rem == 0 {
                continue;
            }
            let stalled = now.saturating_sub(v.last_progress_ms.load(Relaxed)) > self.stall_ms();
            let rate = if v.rate() > 0.0 { v.rate() } else { median };
            let eta = if stalled {
                f64::INFINITY
            } else if rate > 0.0 {
                rem as f64 / rate
            } else {
                0.0
            };
            let better = match best {
                None => true,
                Some((_, e, r)) => eta > e || (eta == e && rem > r),
            };
            if better {
                best = Some((v, eta, rem));
            }
        }
        best.map(|(v, eta, _)| (v, eta))
    }

    /// Where to cut region `r` so both holders finish together at rates
    /// `victim` and `thief`, keeping both pieces at least `-k` long. A cut
    /// inside the victim's request in flight costs it its connection, so the
    /// request's end is preferred when the thief still gets a fair share.
    fn split_point(&self, r: &Region, victim: f64, thief: f64) -> u64 {
        let k = self.tuning.min_split;
        let rem = r.end - r.cur;
        let keep = if victim + thief > 0.0 {
            (rem as f64 * victim / (victim + thief)) as u64
        } else {
            rem / 2
        };
        let split = r.cur + keep.clamp(k, rem - k);
        if split < r.req_end && r.end.saturating_sub(r.req_end) >= k.max((r.end - split) / 2) {
            r.req_end
        } else {
            split
        }
    }

    /// Periodic check: asks stalled and far-too-slow connections to reconnect.
    /// `absolute_timeout` applies when no connection at all makes progress.
    /// Returns the slots preempted.
    pub fn health_check(&self, absolute_timeout: Duration) -> Vec<usize> {
        let st = self.state.lock().unwrap();
        let now = self.now_ms();
        let working: Vec<&Arc<Slot>> = st.slots.iter().filter(|s| s.has_work()).collect();
        let any_recent = working
            .iter()
            .any(|s| now.saturating_sub(s.last_progress_ms.load(Relaxed)) < 1000);
        let mut out = Vec::new();
        for s in &working {
            let idle = now.saturating_sub(s.last_progress_ms.load(Relaxed));
            let stalled = if any_recent {
                idle > (self.stall_ms() * 5 / 2)
            } else {
                idle > absolute_timeout.as_millis() as u64
            };
            if stalled {
                s.preempt(Preempt::Stalled);
                s.last_progress_ms.store(now, Relaxed);
                out.push(s.id);
                continue;
            }
            // Slow: far below the median of the others for a while.
            let since = s.transfer_since_ms.load(Relaxed);
            if now.saturating_sub(since) < self.tuning.slow_grace.as_millis() as u64
                || working.len() < 3
            {
                continue;
            }
            let median = Self::median_rate(&st, s.id);
            if median > 0.0 && s.rate() < median * self.tuning.slow_ratio {
                let first = s.slow_since_ms.load(Relaxed);
                if first == 0 {
                    s.slow_since_ms.store(now.max(1), Relaxed);
                } else if now - first > self.tuning.slow_for.as_millis() as u64 {
                    tracing::debug!(
                        "slot {} is slow ({:.0} B/s against a median of {:.0}); reconnecting",
                        s.id,
                        s.rate(),
                        median
                    );
                    s.slow_since_ms.store(0, Relaxed);
                    s.preempt(Preempt::Reconnect);
                    out.push(s.id);
                }
            } else {
                s.slow_since_ms.store(0, Relaxed);
            }
        }
        out
    }

    /// Asks every slot to stop.
    pub fn cancel_all(&self) {
        let st = self.state.lock().unwrap();
        for s in &st.slots {
            s.preempt(Preempt::Cancel);
        }
        drop(st);
        self.changed.notify_waiters();
    }
}

/// Size of the next request: enough transfer at the slot's rate that the
/// gap between requests (one round trip, `ttfb`) costs about 2.5%, and at
/// least two seconds' worth; yet the un-requested rest of the region stays
/// stealable without breaking the connection. On a 100 ms link the gap also
/// lets TCP's window shrink back (slow start after idle), so long links get
/// longer requests: 4 s at 100 ms instead of 2 s.
pub fn request_size(rate: f64, ttfb: Duration) -> u64 {
    scaled_request_size(rate, ttfb, 1)
}

/// [`request_size`] `scale` times over, bounds included: what a source whose
/// signed URLs expired asks for, so that a URL that lasts only a few
/// requests is not spent on small ones.
pub fn scaled_request_size(rate: f64, ttfb: Duration, scale: u64) -> u64 {
    const MIN: u64 = 1 << 20;
    const MAX: u64 = 64 << 20;
    let scale = scale.max(1);
    let secs = (ttfb.as_secs_f64() * 40.0).max(2.0);
    ((rate * secs) as u64)
        .saturating_mul(scale)
        .clamp(MIN * scale, MAX * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[Range<u64>]) -> ExtentSet {
        ranges.iter().cloned().collect()
    }

    #[test]
    fn pieces_are_equal_and_respect_min_split() {
        let p = initial_pieces(&ExtentSet::from_range(0..1000), 4, 10);
        assert_eq!(p, vec![0..250, 250..500, 500..750, 750..1000]);
        // shorter than 2k: never split
        assert_eq!(
            initial_pieces(&ExtentSet::from_range(0..19), 8, 10),
            vec![0..19]
        );
        // exactly 2k: two pieces of k
        assert_eq!(
            initial_pieces(&ExtentSet::from_range(0..20), 8, 10),
            vec![0..10, 10..20]
        );
        // fragmented resume: each gap cut on its own, none below k
        let p = initial_pieces(&set(&[0..5, 100..300]), 4, 40);
        assert!(
            p.iter().all(|r| r.end - r.start >= 40 || r == &(0..5)),
            "{p:?}"
        );
        let covered: u64 = p.iter().map(|r| r.end - r.start).sum();
        assert_eq!(covered, 205);
        assert_eq!(
            useful_connections(&initial_pieces(&ExtentSet::from_range(0..19), 8, 10), 8),
            1
        );
    }

    #[test]
    fn a_whole_file_gets_every_connection_asked_for() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..2000 {
            let k = rng.u64(1..5000);
            let len = rng.u64(2 * k..2_000_000);
            let n = rng.usize(1..70);
            let pieces = initial_pieces(&ExtentSet::from_range(0..len), n, k);
            let want = (n as u64).min(len / k) as usize;
            assert_eq!(pieces.len(), want, "len={len} n={n} k={k}");
        }
        assert_eq!(
            initial_pieces(&ExtentSet::from_range(0..1001), 4, 10).len(),
            4
        );
    }

    #[test]
    fn pieces_cover_everything_exactly_once() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..500 {
            let total = rng.u64(1..10_000);
            let mut missing = ExtentSet::from_range(0..total);
            for _ in 0..rng.usize(0..5) {
                let a = rng.u64(0..total);
                missing.remove(a..(a + rng.u64(0..500)).min(total));
            }
            let n = rng.usize(1..70);
            let k = rng.u64(1..2000);
            let pieces = initial_pieces(&missing, n, k);
            let rebuilt: ExtentSet = pieces.iter().cloned().collect();
            assert_eq!(rebuilt, missing);
            let sum: u64 = pieces.iter().map(|r| r.end - r.start).sum();
            assert_eq!(sum, missing.covered());
            for p in &pieces {
                let run_len = missing
                    .iter()
                    .find(|r| r.start <= p.start && p.end <= r.end)
                    .map(|r| r.end - r.start)
                    .unwrap();
                assert!(
                    p.end - p.start >= k || run_len == p.end - p.start,
                    "{p:?} k={k}"
                );
            }
        }
    }

    fn sched(total: u64, n: usize, k: u64) -> Scheduler {
        Scheduler::new(total, &ExtentSet::from_range(0..total), n, Tuning::new(k))
    }

    #[test]
    fn claims_never_overlap_under_stealing() {
        let s = sched(1_000_000, 4, 1000);
        let slots: Vec<_> = (0..6).map(|_| s.add_slot(0)).collect();
        let mut got = ExtentSet::new();
        let mut rng = fastrand::Rng::with_seed(11);
        let mut rounds = 0;
        while !s.is_done() {
            rounds += 1;
            assert!(rounds < 100_000, "no progress");
            let sl = &slots[rng.usize(0..slots.len())];
            if !sl.has_work() {
                let _ = s.assign(sl);
                continue;
            }
            let (at, n) = sl.claim(rng.u64(1..5000));
            if n > 0 {
                assert!(!got.contains_range(at..at + n) || n == 0);
                for r in got.clone().iter() {
                    assert!(r.end <= at || r.start >= at + n, "overlap {r:?} {at}+{n}");
                }
                got.insert(at..at + n);
                s.received(sl, n);
            }
        }
        assert_eq!(got, ExtentSet::from_range(0..1_000_000));
        assert_eq!(s.assign(&slots[0]), Assignment::Done);
    }

    #[test]
    fn steal_splits_in_proportion_to_rates() {
        let s = sched(100_000, 1, 10);
        let fast = s.add_slot(0);
        let slow = s.add_slot(0);
        assert_eq!(s.assign(&slow), Assignment::Work(0..100_000));
        // the slow slot has a known rate of 1000 B/s, the thief 3000 B/s
        slow.rate.store(1000f64.to_bits(), Relaxed);
        fast.rate.store(3000f64.to_bits(), Relaxed);
        match s.assign(&fast) {
            Assignment::Work(r) => assert_eq!(r, 25_000..100_000),
            other => panic!("{other:?}"),
        }
        assert_eq!(slow.region(), 0..25_000);
    }

    #[test]
    fn small_region_is_not_split_but_stalled_one_is_taken_over() {
        let mut t = Tuning::new(1000);
        t.stall_after = Duration::from_millis(50);
        let s = Scheduler::new(1500, &ExtentSet::from_range(0..1500), 2, t);
        let a = s.add_slot(0);
        let b = s.add_slot(0);
        assert_eq!(s.assign(&a), Assignment::Work(0..1500));
        a.rate.store(1_000_000f64.to_bits(), Relaxed);
        s.received(&a, 0);
        // fast holder, small region: b waits
        assert_eq!(s.assign(&b), Assignment::Wait);
        std::thread::sleep(Duration::from_millis(80));
        // a stalled: b takes the whole region and a is told it lost it
        assert_eq!(s.assign(&b), Assignment::Work(0..1500));
        assert_eq!(a.take_preempt(), Preempt::RegionLost);
        assert_eq!(a.claim(10), (0, 0));
    }

    #[test]
    fn steal_avoids_cutting_the_request_in_flight() {
        let s = sched(10_000, 1, 100);
        let v = s.add_slot(0);
        let t = s.add_slot(0);
        assert_eq!(s.assign(&v), Assignment::Work(0..10_000));
        assert_eq!(v.next_request(4000), Some(0..4000));
        v.rate.store(1000f64.to_bits(), Relaxed);
        t.rate.store(1000f64.to_bits(), Relaxed);
        // ideal split is 5000; the request ends at 4000 and the rest is fair
        match s.assign(&t) {
            Assignment::Work(r) => assert_eq!(r, 5000..10_000),
            other => panic!("{other:?}"),
        }
        let s = sched(10_000, 1, 100);
        let v = s.add_slot(0);
        let t = s.add_slot(0);
        s.assign(&v);
        assert_eq!(v.next_request(6000), Some(0..6000));
        v.rate.store(1000f64.to_bits(), Relaxed);
        t.rate.store(1000f64.to_bits(), Relaxed);
        // split at the request end (6000) leaves the thief 4000 >= half of 5000
        match s.assign(&t) {
            Assignment::Work(r) => assert_eq!(r, 6000..10_000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_withdrawn_request_ahead_no_longer_moves_the_cut() {
        let s = sched(10_000, 1, 100);
        let v = s.add_slot(0);
        let t = s.add_slot(0);
        s.assign(&v);
        assert_eq!(v.next_request(4000), Some(0..4000));
        let ahead = v.request_after(4000, 2000).unwrap();
        assert_eq!(ahead, 4000..6000);
        // It could not be sent: the next one may be asked for again ...
        v.withdraw_request(&ahead);
        assert_eq!(v.request_after(4000, 2000), Some(4000..6000));
        v.withdraw_request(&(4000..6000));
        v.rate.store(1000f64.to_bits(), Relaxed);
        t.rate.store(1000f64.to_bits(), Relaxed);
        // ... and the thief gets the fair split at 5000, not 6000..10_000.
        match s.assign(&t) {
            Assignment::Work(r) => assert_eq!(r, 5000..10_000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn release_returns_the_rest_to_the_queue() {
        let s = sched(1000, 2, 10);
        let a = s.add_slot(0);
        assert_eq!(s.assign(&a), Assignment::Work(0..500));
        assert_eq!(a.claim(100), (0, 100));
        s.received(&a, 100);
        s.release(&a);
        let b = s.add_slot(0);
        assert_eq!(s.assign(&b), Assignment::Work(100..500));
    }

    #[test]
    fn probe_range_longer_than_a_piece_is_carved_out() {
        let s = sched(1000, 4, 10);
        let a = s.add_slot(0);
        s.take_for_probe(&a, 0..300);
        assert_eq!(a.region(), 0..300);
        let b = s.add_slot(0);
        assert_eq!(s.assign(&b), Assignment::Work(300..500));
        let c = s.add_slot(0);
        assert_eq!(s.assign(&c), Assignment::Work(500..750));
        let s = sched(1000, 4, 10);
        let a = s.add_slot(0);
        s.take_for_probe(&a, 0..100);
        assert_eq!(a.region(), 0..250);
        assert_eq!(a.next_request(u64::MAX), Some(0..250));
    }

    #[test]
    fn request_size_bounds() {
        let lan = Duration::from_millis(1);
        assert_eq!(request_size(0.0, lan), 1 << 20);
        assert_eq!(request_size(8e6, lan), 16_000_000);
        assert_eq!(request_size(1e10, lan), 64 << 20);
        // 100 ms away: four seconds' worth per request.
        assert_eq!(request_size(8e6, Duration::from_millis(100)), 32_000_000);
        // After re-resolves: larger, bounds included.
        assert_eq!(scaled_request_size(0.0, lan, 4), 4 << 20);
        assert_eq!(scaled_request_size(8e6, lan, 2), 32_000_000);
        assert_eq!(scaled_request_size(1e10, lan, 16), 1 << 30);
    }
}
