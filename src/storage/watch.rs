//! Which bytes of a download's data file are written, told as they are
//! written, to someone who reads the file meanwhile (`hfd serve` answers a
//! client from a file still arriving from upstream).
//!
//! A byte is in the set once the call that put it into the file returned:
//! it is then in the page cache, and any other handle on the same file
//! reads it. That is the writer's own notion of "written"
//! ([`super::writer::Storage::written`]), not the control file's
//! "durable", which lags by a checkpoint. Every start of the writer (a
//! new attempt, a restart from zero after the remote file changed) begins
//! a new `generation` with the set the attempt starts from, so a reader
//! can tell that what it saw before may no longer be there.

use std::ops::Range;
use std::sync::Arc;

use tokio::sync::watch;

use crate::extent::ExtentSet;

/// The written bytes of the data file, as of now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Counts the writer's starts; 0 before the first.
    pub generation: u64,
    pub set: ExtentSet,
}

/// The sending side, shared by the download's writer and whoever made it.
#[derive(Clone, Debug)]
pub struct WrittenWatch(Arc<watch::Sender<Written>>);

impl Default for WrittenWatch {
    fn default() -> Self {
        WrittenWatch(Arc::new(watch::channel(Written::default()).0))
    }
}

impl WrittenWatch {
    pub fn new() -> WrittenWatch {
        WrittenWatch::default()
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<Written> {
        self.0.subscribe()
    }

    /// The writer starts, with `done` already in the file.
    pub fn start(&self, done: &ExtentSet) {
        self.0.send_modify(|w| {
            w.generation += 1;
            w.set = done.clone();
        });
    }

    /// A write of `r` returned.
    pub fn add(&self, r: Range<u64>) {
        self.0.send_modify(|w| w.set.insert(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_is_a_new_generation_with_its_own_set() {
        let w = WrittenWatch::new();
        let rx = w.subscribe();
        w.start(&ExtentSet::from_range(0..10));
        w.add(10..20);
        assert_eq!(rx.borrow().generation, 1);
        assert!(rx.borrow().set.contains_range(0..20));
        w.start(&ExtentSet::new());
        assert_eq!(rx.borrow().generation, 2);
        assert!(rx.borrow().set.is_empty());
    }
}
