//! The boot-time clock the staleness bounds are measured with, read
//! through a per-CPU cache.
//!
//! `bpf_ktime_get_boot_ns` is a helper call (20-30 ns on this CPU, with a
//! return thunk on every kernel function's return), and a deployed daemon
//! sets staleness bounds, so every query to us would pay it.
//! `bpf_jiffies64` is inlined by the verifier into a load of `jiffies_64`:
//! the clock is read again only when the jiffy changed since this CPU last
//! read it, once per 1-10 ms (HZ 1000 to 100) however many queries come.
//! A heartbeat's age is then underestimated by at most one jiffy: a bound
//! of seconds takes effect at most that much later.

use aya_ebpf::helpers::generated::{bpf_jiffies64, bpf_ktime_get_boot_ns};

use crate::maps::Scratch;

/// CLOCK_BOOTTIME in ns, as of at most one jiffy ago.
#[inline(always)]
pub fn boot_ns(s: &mut Scratch) -> u64 {
    // SAFETY: a helper without arguments, callable from any program.
    let j = unsafe { bpf_jiffies64() };
    if j != s.clock_jiffies {
        // SAFETY: as above.
        s.clock_ns = unsafe { bpf_ktime_get_boot_ns() };
        s.clock_jiffies = j;
    }
    s.clock_ns
}
