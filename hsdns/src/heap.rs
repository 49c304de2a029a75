//! Giving the heap a burst of table work freed back to the system.
//!
//! The first lists and every relist allocate and free about a table's worth
//! of small blocks (list pages parsed, views and names replaced). glibc's
//! malloc keeps freed memory in its arenas and returns only the top of the
//! main heap on its own, so after a burst the daemon's RSS stays near its
//! peak although the live heap is smaller. `malloc_trim(0)` returns every
//! free page inside the arenas too (madvise DONTNEED). It lowers the steady
//! RSS, not the peak (VmHWM): the peak is reached during the burst.
//!
//! It walks the arenas, a few ms at 150,000 pods, so the daemon trims only
//! once a burst is over: on its heartbeat (at most every second), when many
//! names changed since the last trim, on a thread of its own.

/// Objects received and names changed since the last trim after which the
/// next quiet moment trims: a relist or the first lists of a cluster, not
/// single-pod churn (100 changes a second trim every 25 s or so).
pub const TRIM_AFTER_CHANGES: usize = 5_000;

/// Counts the objects and names that went by and says when to trim.
#[derive(Debug, Default)]
pub struct Trimmer {
    changed: usize,
}

impl Trimmer {
    /// `n` more objects received or names changed.
    pub fn note(&mut self, n: usize) {
        self.changed = self.changed.saturating_add(n);
    }

    /// At a quiet moment: trims if a burst happened since the last trim.
    /// Returns whether it trimmed.
    pub fn on_quiet(&mut self) -> bool {
        if self.changed < TRIM_AFTER_CHANGES {
            return false;
        }
        self.changed = 0;
        // Off the caller's thread (the daemon's event loop): a trim takes
        // about 3 ms at 150,000 pods, up to 16 ms measured on a loaded
        // machine, and holds only malloc's own locks meanwhile.
        std::thread::spawn(|| {
            let t = std::time::Instant::now();
            trim();
            log::debug!("heap trimmed in {} us", t.elapsed().as_micros());
        });
        true
    }
}

/// Returns the free pages of every malloc arena to the system.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only touches the allocator's own state, under
    // its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_after_a_burst_not_after_churn() {
        let mut t = Trimmer::default();
        for _ in 0..100 {
            t.note(1);
        }
        assert!(!t.on_quiet(), "single-pod churn");
        t.note(TRIM_AFTER_CHANGES);
        assert!(t.on_quiet(), "a relist's worth");
        assert!(!t.on_quiet(), "once per burst");
    }
}
