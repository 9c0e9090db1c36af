//! Locks on state that a panic cannot leave half-changed.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex` even if a holder panicked. For state whose every change
/// is one step (an insert, a remove, a replaced value) completed before
/// its guard drops: a poisoned lock still guards sound data, and refusing
/// it would turn one panic into a stopped service.
pub fn lock_unpoisoned<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
