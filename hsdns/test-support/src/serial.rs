//! Tests of one binary run on parallel threads. A test whose assertion is
//! a time, a rate, a count of lost queries or a figure of the whole process
//! (CPU time, RSS, open descriptors) would measure its neighbours too: it
//! takes [`exclusive`], and every other test of its binary takes
//! [`shared`], so it runs alone without being weakened. Test binaries
//! themselves run one after another (cargo test), so a lock in the process
//! is enough.
//!
//! tokio's lock, fair (first come, first served: an exclusive test is not
//! starved by shared ones) and meant to be held across `.await` in the
//! async tests, which take it with the `_async` twins.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOCK: RwLock<()> = RwLock::const_new(());

/// Held by a test that may run beside others but not beside an
/// [`exclusive`] one. Not from inside a runtime: see [`shared_async`].
pub fn shared() -> RwLockReadGuard<'static, ()> {
    LOCK.blocking_read()
}

/// Held by a test that must run alone in its binary (timing, flooding,
/// process-wide figures). Not from inside a runtime: see
/// [`exclusive_async`].
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    LOCK.blocking_write()
}

/// [`shared`] for an async test.
pub async fn shared_async() -> RwLockReadGuard<'static, ()> {
    LOCK.read().await
}

/// [`exclusive`] for an async test.
pub async fn exclusive_async() -> RwLockWriteGuard<'static, ()> {
    LOCK.write().await
}
