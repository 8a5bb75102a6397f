//! Counters the engine updates and a display reads.
//!
//! Plain atomics: the hot path adds to a counter per frame and never waits for
//! the terminal; whoever draws progress samples these as often as it likes.
//! A child (one file of an hfd repo) also adds into its parent (the repo).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use tokio::sync::Notify;

const UNKNOWN: u64 = u64::MAX;

#[derive(Debug)]
pub struct Progress {
    total: AtomicU64,
    done: AtomicU64,
    received: AtomicU64,
    connections: AtomicUsize,
    /// Every byte has arrived (what follows needs no connection).
    received_all: AtomicBool,
    received_all_notify: Notify,
    parent: Option<Arc<Progress>>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            total: AtomicU64::new(UNKNOWN),
            done: AtomicU64::new(0),
            received: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            received_all: AtomicBool::new(false),
            received_all_notify: Notify::new(),
            parent: None,
        }
    }
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// A progress whose byte and connection counts also go into `parent`.
    /// The parent's total is the caller's business.
    pub fn child(parent: &Arc<Progress>) -> Arc<Progress> {
        Arc::new(Progress {
            parent: Some(parent.clone()),
            ..Progress::default()
        })
    }

    pub fn set_total(&self, total: Option<u64>) {
        self.total.store(total.unwrap_or(UNKNOWN), Relaxed);
    }

    /// Total length, when known.
    pub fn total(&self) -> Option<u64> {
        match self.total.load(Relaxed) {
            UNKNOWN => None,
            t => Some(t),
        }
    }

    /// Bytes present, counting what a resume found already done.
    pub fn done(&self) -> u64 {
        self.done.load(Relaxed)
    }

    /// Bytes received from the network in this run.
    pub fn received(&self) -> u64 {
        self.received.load(Relaxed)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// Bytes found done at the start (a resume); not counted as received.
    pub fn add_existing(&self, n: u64) {
        self.done.fetch_add(n, Relaxed);
        if let Some(p) = &self.parent {
            p.add_existing(n);
        }
    }

    pub fn add_received(&self, n: u64) {
        self.done.fetch_add(n, Relaxed);
        self.received.fetch_add(n, Relaxed);
        if let Some(p) = &self.parent {
            p.add_received(n);
        }
    }

    /// Forgets `n` done bytes (a restart from zero, a discarded corrupt file).
    pub fn discard(&self, n: u64) {
        let _ = self
            .done
            .fetch_update(Relaxed, Relaxed, |d| Some(d.saturating_sub(n)));
        if let Some(p) = &self.parent {
            p.discard(n);
        }
    }

    /// The engine says every byte of the file has arrived: the checksum,
    /// fsync and rename that follow use no connection.
    pub fn all_received(&self) {
        if !self.received_all.swap(true, Relaxed) {
            self.received_all_notify.notify_waiters();
        }
    }

    /// Waits until [`Progress::all_received`] was said.
    pub async fn wait_all_received(&self) {
        loop {
            let notified = self.received_all_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.received_all.load(Relaxed) {
                return;
            }
            notified.await;
        }
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
        if let Some(p) = &self.parent {
            p.connection_opened();
        }
    }

    pub fn connection_closed(&self) {
        let _ = self
            .connections
            .fetch_update(Relaxed, Relaxed, |c| Some(c.saturating_sub(1)));
        if let Some(p) = &self.parent {
            p.connection_closed();
        }
    }
}
