//! One's complement sums (RFC 1071) from whole words.
//!
//! Bytes loaded from memory as little-endian words sum to the byte swap of
//! the sum of the big-endian 16-bit words the UDP checksum reads, as long
//! as they start at an even offset; so the question is summed eight bytes
//! at a time while it is copied, and swapped once at the end. Values the
//! program computes (lengths, flags) are summed as big-endian numbers.

use crate::wire::{OPT_RR_LEN, TYPE_OPT};
use hsdns_common::EDNS_UDP_SIZE;

/// Folds a 64-bit accumulator of 16-bit pieces into 16 bits.
#[inline(always)]
pub fn fold(mut sum: u64) -> u64 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (sum & 0xffff) + (sum >> 16)
}

/// Adds a 64-bit word loaded little-endian (at an even offset) to a
/// little-endian accumulator.
#[inline(always)]
pub fn add_le(sum: u64, w: u64) -> u64 {
    sum + (w & 0xffff_ffff) + (w >> 32)
}

/// A little-endian accumulator as a big-endian 16-bit sum.
#[inline(always)]
pub fn le_to_be(sum: u64) -> u64 {
    let s = fold(sum);
    ((s & 0xff) << 8) | (s >> 8)
}

/// A precomputed big-endian sum of bytes meant for an even offset, placed
/// at DNS-relative offset `pos`: at an odd offset every byte changes half.
#[inline(always)]
pub fn at_offset(sum: u16, pos: usize) -> u64 {
    let s = sum as u64;
    if pos & 1 == 0 {
        s
    } else {
        ((s & 0xff) << 8) | (s >> 8)
    }
}

/// Sum of the OPT record the kernel appends (root owner, TYPE OPT, UDP
/// size, zero TTL and RDLENGTH), at an even offset.
pub const OPT_SUM: u16 = {
    let b = opt_record();
    let mut sum = 0u32;
    let mut i = 0;
    while i < OPT_RR_LEN {
        let hi = b[i] as u32;
        let lo = if i + 1 < OPT_RR_LEN {
            b[i + 1] as u32
        } else {
            0
        };
        sum += (hi << 8) | lo;
        i += 2;
    }
    hsdns_common::csum_fold(sum)
};

/// The OPT record of replies to queries that carried one.
pub const fn opt_record() -> [u8; OPT_RR_LEN] {
    let t = TYPE_OPT.to_be_bytes();
    let s = EDNS_UDP_SIZE.to_be_bytes();
    [0, t[0], t[1], s[0], s[1], 0, 0, 0, 0, 0, 0]
}

/// The final checksum field from a big-endian accumulator (zero is sent
/// as 0xffff: a zero UDP checksum means "none").
#[inline(always)]
pub fn finish_udp(sum: u64) -> u16 {
    let c = !(fold(sum) as u16);
    if c == 0 { 0xffff } else { c }
}
