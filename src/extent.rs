//! Sets of byte ranges.
//!
//! Completion is tracked at byte granularity rather than in aria2-style pieces:
//! an [`ExtentSet`] is a sorted list of disjoint, non-touching half-open ranges.
//! Scheduling, the writer's "written" set and the control file all speak in
//! these sets, so a resume never rounds progress down to a piece boundary.

use std::fmt;
use std::ops::Range;

/// A sorted set of disjoint half-open byte ranges; touching ranges are merged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtentSet {
    ranges: Vec<Range<u64>>,
}

impl fmt::Debug for ExtentSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.ranges.iter()).finish()
    }
}

impl ExtentSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// The set holding exactly `r` (empty when `r` is empty).
    pub fn from_range(r: Range<u64>) -> Self {
        let mut s = Self::new();
        s.insert(r);
        s
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of separate ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Total number of bytes covered.
    pub fn covered(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Range<u64>> + '_ {
        self.ranges.iter().cloned()
    }

    /// Index of the first range whose end is at or after `pos`.
    fn first_ending_at_or_after(&self, pos: u64) -> usize {
        self.ranges.partition_point(|r| r.end < pos)
    }

    /// Adds `r`, merging with every range it overlaps or touches.
    pub fn insert(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let i = self.first_ending_at_or_after(r.start);
        let mut j = i;
        let mut merged = r;
        while j < self.ranges.len() && self.ranges[j].start <= merged.end {
            merged.start = merged.start.min(self.ranges[j].start);
            merged.end = merged.end.max(self.ranges[j].end);
            j += 1;
        }
        self.ranges.splice(i..j, std::iter::once(merged));
    }

    /// Removes every byte of `r` from the set.
    pub fn remove(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let i = self.first_ending_at_or_after(r.start + 1);
        let mut j = i;
        let mut keep = Vec::with_capacity(2);
        while j < self.ranges.len() && self.ranges[j].start < r.end {
            let cur = &self.ranges[j];
            if cur.start < r.start {
                keep.push(cur.start..r.start);
            }
            if cur.end > r.end {
                keep.push(r.end..cur.end);
            }
            j += 1;
        }
        self.ranges.splice(i..j, keep);
    }

    /// True when every byte of `r` is in the set (an empty `r` is always contained).
    pub fn contains_range(&self, r: Range<u64>) -> bool {
        if r.start >= r.end {
            return true;
        }
        let i = self.first_ending_at_or_after(r.start + 1);
        self.ranges
            .get(i)
            .is_some_and(|x| x.start <= r.start && x.end >= r.end)
    }

    /// True when `pos` is in the set.
    pub fn contains(&self, pos: u64) -> bool {
        self.contains_range(pos..pos + 1)
    }

    /// The parts of `within` that are *not* in the set, in order.
    pub fn gaps(&self, within: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut pos = within.start;
        let i = self.first_ending_at_or_after(within.start + 1);
        for r in &self.ranges[i.min(self.ranges.len())..] {
            if r.start >= within.end {
                break;
            }
            if r.start > pos {
                out.push(pos..r.start.min(within.end));
            }
            pos = pos.max(r.end);
            if pos >= within.end {
                break;
            }
        }
        if pos < within.end {
            out.push(pos..within.end);
        }
        out
    }

    /// Length of the run that starts at 0 (how much of the file is a done prefix).
    pub fn prefix_len(&self) -> u64 {
        match self.ranges.first() {
            Some(r) if r.start == 0 => r.end,
            _ => 0,
        }
    }

    /// The highest covered offset (exclusive), or 0 when empty.
    pub fn end(&self) -> u64 {
        self.ranges.last().map_or(0, |r| r.end)
    }

    /// The intersection of the set with `within`.
    pub fn clipped(&self, within: Range<u64>) -> ExtentSet {
        let mut out = ExtentSet::new();
        for r in &self.ranges {
            let s = r.start.max(within.start);
            let e = r.end.min(within.end);
            if s < e {
                out.ranges.push(s..e);
            }
        }
        out
    }

    /// Keeps the `max` largest ranges and drops the rest.
    ///
    /// Dropping a range only forgets progress, it never claims bytes that are
    /// not there, so this is how an over-long set is made to fit a fixed-size
    /// control-file slot without ever becoming unsafe.
    pub fn keep_largest(&mut self, max: usize) {
        if self.ranges.len() <= max {
            return;
        }
        let mut by_size: Vec<usize> = (0..self.ranges.len()).collect();
        by_size.sort_by_key(|&i| std::cmp::Reverse(self.ranges[i].end - self.ranges[i].start));
        let mut keep: Vec<usize> = by_size.into_iter().take(max).collect();
        keep.sort_unstable();
        self.ranges = keep.into_iter().map(|i| self.ranges[i].clone()).collect();
    }
}

impl FromIterator<Range<u64>> for ExtentSet {
    fn from_iter<T: IntoIterator<Item = Range<u64>>>(iter: T) -> Self {
        let mut s = ExtentSet::new();
        for r in iter {
            s.insert(r);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the set against a plain bitmap after many random operations.
    #[test]
    fn random_ops_match_a_bitmap() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _round in 0..200 {
            let n = 200u64;
            let mut bits = vec![false; n as usize];
            let mut set = ExtentSet::new();
            for _ in 0..40 {
                let a = rng.u64(0..n);
                let b = rng.u64(a..=n);
                if rng.bool() {
                    set.insert(a..b);
                    bits[a as usize..b as usize].fill(true);
                } else {
                    set.remove(a..b);
                    bits[a as usize..b as usize].fill(false);
                }
                // invariants: sorted, disjoint, not touching, non-empty
                for w in set.ranges.windows(2) {
                    assert!(w[0].end < w[1].start, "{set:?}");
                }
                assert!(set.ranges.iter().all(|r| r.start < r.end));
                assert_eq!(set.covered(), bits.iter().filter(|b| **b).count() as u64);
                let q0 = rng.u64(0..n);
                let q1 = rng.u64(q0..=n);
                let want = bits[q0 as usize..q1 as usize].iter().all(|b| *b);
                assert_eq!(set.contains_range(q0..q1), want, "{set:?} {q0}..{q1}");
                let gaps: u64 = set.gaps(q0..q1).iter().map(|g| g.end - g.start).sum();
                let want_gaps = bits[q0 as usize..q1 as usize]
                    .iter()
                    .filter(|b| !**b)
                    .count();
                assert_eq!(gaps, want_gaps as u64);
                for g in set.gaps(q0..q1) {
                    assert!(bits[g.start as usize..g.end as usize].iter().all(|b| !*b));
                }
            }
        }
    }

    #[test]
    fn merges_touching_ranges_and_reports_prefix() {
        let mut s = ExtentSet::new();
        s.insert(10..20);
        s.insert(0..10);
        assert_eq!(s.len(), 1);
        assert_eq!(s.prefix_len(), 20);
        s.insert(30..40);
        assert_eq!(s.gaps(0..50), vec![20..30, 40..50]);
        assert_eq!(s.end(), 40);
        s.keep_largest(1);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0..20]);
    }

    #[test]
    fn empty_ranges_are_ignored() {
        let mut s = ExtentSet::new();
        s.insert(5..5);
        assert!(s.is_empty());
        assert!(s.contains_range(3..3));
        assert_eq!(s.gaps(0..0), Vec::<Range<u64>>::new());
    }
}
