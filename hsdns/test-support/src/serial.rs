//! Tests of one binary run on parallel threads. A test whose assertion is
//! a time, a rate, a count of lost queries or a figure of the whole process
//! (CPU time, RSS, open descriptors) would measure its neighbours too: it
//! takes [`exclusive`], and every other test of its binary takes
//! [`shared`], so it runs alone without being weakened. Test binaries
//! themselves run one after another (cargo test), so a lock in the process
//! is enough.
//!
//! An async test takes its guard before it builds its runtime (not with
//! `#[tokio::test]`, whose runtime comes first): a test that lowers a
//! process limit such as RLIMIT_NOFILE fails a runtime built beside it.
//! tokio's lock, for its fairness (first come, first served: an exclusive
//! test is not starved by shared ones).

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOCK: RwLock<()> = RwLock::const_new(());

/// Held by a test that may run beside others but not beside an
/// [`exclusive`] one. Not from inside a runtime.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    LOCK.blocking_read()
}

/// Held by a test that must run alone in its binary (timing, flooding,
/// process-wide figures). Not from inside a runtime.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    LOCK.blocking_write()
}
