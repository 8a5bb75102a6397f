//! Locking that outlives a panic elsewhere (the same helper as the
//! product's private `hfd::sync`, which this crate cannot reach).

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning. Every value the server keeps behind a
/// mutex is replaced whole or updated in one step, so a thread that
/// panicked while holding the lock cannot have left it half-changed, and
/// one panicking handler (or test thread) must not take the others down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
