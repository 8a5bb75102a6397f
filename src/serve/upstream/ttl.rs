//! A small map whose entries expire: upstream answers kept briefly, so a
//! burst of clients asking the same thing costs upstream one request, and
//! a change upstream (a branch moved, access revoked) shows within the
//! time-to-live. In memory only: nothing here touches the disk.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// Entries kept at most; past it, expired ones go, then all (a flood of
/// distinct keys must not grow memory without bound).
const MAX_ENTRIES: usize = 4096;

pub struct TtlMap<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    pub fn new(ttl: Duration) -> TtlMap<K, V> {
        TtlMap {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The value, if stored less than the time-to-live ago.
    pub fn get(&self, k: &K) -> Option<V> {
        let map = lock(&self.map);
        let (at, v) = map.get(k)?;
        (at.elapsed() < self.ttl).then(|| v.clone())
    }

    pub fn put(&self, k: K, v: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = lock(&self.map);
        if map.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(k, (Instant::now(), v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_a_zero_ttl_keeps_nothing() {
        let m = TtlMap::new(Duration::from_millis(50));
        m.put(1, "a");
        assert_eq!(m.get(&1), Some("a"));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(m.get(&1), None);
        let z = TtlMap::new(Duration::ZERO);
        z.put(1, "a");
        assert_eq!(z.get(&1), None);
    }
}
