//! Locking that outlives a panic elsewhere.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning. Every value the crate keeps behind a
/// mutex is replaced whole or updated in one step, so a thread that
/// panicked while holding the lock cannot have left it half-changed, and
/// one panicking task (or test thread) must not take the others down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
