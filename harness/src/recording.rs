//! What a stand-in remembers of the requests it answered: a shared, bounded log that the
//! server's handler appends to and the test reads.

use std::sync::{Arc, Mutex, MutexGuard};

/// Most entries a log keeps; beyond it the oldest half is forgotten at once, so trimming stays
/// cheap under load.
pub const MAX_RECORDED: usize = 10_000;

pub struct Recording<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Recording<T> {
    fn clone(&self) -> Self {
        Recording(Arc::clone(&self.0))
    }
}

impl<T> Default for Recording<T> {
    fn default() -> Self {
        Recording(Arc::default())
    }
}

impl<T: Clone> Recording<T> {
    /// A panicking test thread must not make every later read panic too.
    fn entries(&self) -> MutexGuard<'_, Vec<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, item: T) {
        let mut entries = self.entries();
        entries.push(item);
        if entries.len() > MAX_RECORDED {
            let excess = entries.len() - MAX_RECORDED / 2;
            entries.drain(..excess);
        }
    }

    pub fn all(&self) -> Vec<T> {
        self.entries().clone()
    }

    pub fn last(&self) -> Option<T> {
        self.entries().last().cloned()
    }

    pub fn count(&self) -> usize {
        self.entries().len()
    }

    pub fn clear(&self) {
        self.entries().clear();
    }
}
