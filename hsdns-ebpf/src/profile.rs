//! Stage stops for profiling, compiled out of every shipped build.
//!
//! Built by hand with `HSDNS_STOP_AFTER=<stage>` (the benchmarks'
//! `profile_kernel.sh` builds one object per stage, and their
//! `profile_kernel` runs them side by side), the program returns right
//! after that stage, so test runs of the variants show what each stage
//! costs. Unset (always, in builds through `hsdns/build.rs`, which clears
//! it), `STOP_AFTER` is 0 and every check is a constant `false` that LLVM
//! removes.

use hsdns_common::Verdict;

/// The stage to stop after, 0 for none.
pub const STOP_AFTER: u32 = match option_env!("HSDNS_STOP_AFTER") {
    None => 0,
    Some(s) => parse(s.as_bytes()),
};

const fn parse(s: &[u8]) -> u32 {
    let mut n = 0u32;
    let mut i = 0;
    while i < s.len() {
        assert!(s[i].is_ascii_digit(), "HSDNS_STOP_AFTER must be a number");
        n = n * 10 + (s[i] - b'0') as u32;
        i += 1;
    }
    n
}

/// Ends the run after `stage` in a profiling build (as a pass, so test
/// runs with `repeat` see the same packet every time).
#[inline(always)]
pub fn stop(stage: u32) -> Result<(), Verdict> {
    if STOP_AFTER != 0 && STOP_AFTER == stage {
        Err(Verdict::Internal)
    } else {
        Ok(())
    }
}
