//! Unaligned loads and stores of 2, 4 and 8 bytes as single instructions.
//!
//! In Rust a `u16`/`u32`/`u64` access must be aligned; `read_unaligned`
//! makes the BPF backend split it into byte loads, shifts and ors (ten
//! instructions for a `u32`). The BPF instruction itself need not be
//! aligned: the verifier allows unaligned packet and map value access
//! unless strict alignment is asked for, and the JITs of x86-64 and arm64
//! emit plain loads. So these are inline assembly. Callers check bounds
//! as for any access (the verifier checks them again).

use core::arch::asm;

macro_rules! load {
    ($name:ident, $t:ty, $w:literal) => {
        /// A load at any alignment; `a` must point to readable bytes.
        #[inline(always)]
        pub unsafe fn $name(a: usize) -> $t {
            let v: u64;
            // SAFETY: `a` points to readable bytes, this function's
            // contract; the instruction reads those and writes only `v`.
            unsafe {
                asm!(concat!("{0} = *(", $w, " *)({1} + 0)"), out(reg) v, in(reg) a,
                    options(readonly, nostack, preserves_flags));
            }
            v as $t
        }
    };
}

macro_rules! store {
    ($name:ident, $t:ty, $w:literal) => {
        /// A store at any alignment; `a` must point to writable bytes.
        #[inline(always)]
        pub unsafe fn $name(a: usize, v: $t) {
            // SAFETY: `a` points to writable bytes, this function's
            // contract; the instruction writes those and nothing else.
            unsafe {
                asm!(concat!("*(", $w, " *)({0} + 0) = {1}"), in(reg) a, in(reg) v as u64,
                    options(nostack, preserves_flags));
            }
        }
    };
}

load!(ld16, u16, "u16");
load!(ld32, u32, "u32");
load!(ld64, u64, "u64");
store!(st16, u16, "u16");
store!(st32, u32, "u32");
store!(st64, u64, "u64");

/// `v`, with LLVM unable to see how it was computed.
#[inline(always)]
pub fn opaque(mut v: usize) -> usize {
    // SAFETY: a register moved onto itself (an empty asm block would
    // leave two line infos on one instruction, which the kernel rejects).
    unsafe {
        core::arch::asm!("{0} = {0}", inout(reg) v, options(pure, nomem, nostack, preserves_flags))
    };
    v
}
