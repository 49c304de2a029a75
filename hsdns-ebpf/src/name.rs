//! The question name, processed a word at a time.
//!
//! The question is copied out of the packet once. One walk over its labels
//! (the only per-label loop: label boundaries are a chain, each found from
//! the one before) validates it, finds its end and marks where labels
//! start. Then one pass over 8-byte words lowercases (SWAR), turns length
//! bytes into `.`, sums the question for the UDP checksum, spots labels
//! holding `.` or NUL, and feeds the keyed hash, all without a byte loop.

use hsdns_common::{Verdict, name};

use crate::{
    checksum::add_le,
    maps::Scratch,
    verifier::merge,
    wire::{LABEL_MAX, QUESTION_TAIL},
};

/// Bytes copied from the question on: the longest name (255), its QTYPE
/// and QCLASS, and an OPT record's fixed part, rounded up to words.
pub const Q_COPY: usize = 272;
/// The copy's buffer: a power of two, so masked indices stay inside.
pub const Q_WORDS: usize = 64;
const Q_MASK: usize = Q_WORDS * 8 - 1;
/// The dotted name's buffer, with room for a word read at any offset
/// below 256.
pub const KEY_WORDS: usize = 40;
pub const KEY_MASK: usize = 255;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
const DOTS: u64 = ONES * b'.' as u64;

pub struct Name {
    /// Wire length, root label included (1..=255).
    pub len: usize,
    /// Labels before the root.
    pub labels: usize,
    /// The keyed hash of the dotted form (the map key).
    pub hash: u64,
    /// Little-endian word sum of the question (name, QTYPE, QCLASS).
    pub sum_le: u64,
    /// Words of the dotted name (`len` bytes).
    pub words: usize,
}

/// A byte of the copied question (bounds are the caller's to check).
#[inline(always)]
pub fn q_byte(s: &Scratch, i: usize) -> u8 {
    // SAFETY: the index is masked into the buffer.
    unsafe { *(s.q.as_ptr() as *const u8).add(i & Q_MASK) }
}

#[inline(always)]
pub fn q_be16(s: &Scratch, i: usize) -> u16 {
    ((q_byte(s, i) as u16) << 8) | q_byte(s, i + 1) as u16
}

/// A byte of the dotted name.
#[inline(always)]
pub fn key_byte(s: &Scratch, i: usize) -> u8 {
    // SAFETY: the index is masked into the buffer.
    unsafe { *(s.key.as_ptr() as *const u8).add(i & KEY_MASK) }
}

/// Walks the labels of the copied question (`avail` bytes valid): its
/// wire length and label count, label starts marked in `s.starts` and
/// `s.label_at`. Malformed: a pointer or extended label type, a name
/// over 255 bytes, or one cut short.
#[inline(always)]
pub fn walk(s: &mut Scratch, avail: usize) -> Result<(usize, usize), Verdict> {
    for w in &mut s.starts {
        // SAFETY: a word of the scratch value; volatile, or LLVM calls the
        // byte-wise memset.
        unsafe { core::ptr::write_volatile(w, 0) };
    }

    let mut pos = 0usize;
    let mut end = usize::MAX;
    let mut labels = 0usize;
    // The loop compares against a copy: a comparison narrows the bound of
    // the register it reads, differently at each exit, and the verifier
    // would carry each narrowing through the rest of the program.
    let limit = merge(s, 6, avail as u64) as usize;
    for j in 0..name::MAX_LABELS + 1 {
        if pos >= limit {
            return Err(Verdict::Malformed);
        }
        let l = q_byte(s, pos);
        if l == 0 {
            end = pos;
            labels = j;
            break;
        }
        if l > LABEL_MAX {
            return Err(Verdict::Malformed);
        }
        if j == name::MAX_LABELS {
            return Err(Verdict::UnsupportedName);
        }
        s.label_at[j] = pos as u8;
        s.starts[(pos >> 6) & 3] |= 1 << (pos & 63);
        pos += l as usize + 1;
        if pos >= name::MAX_NAME_LEN {
            return Err(Verdict::Malformed);
        }
    }
    // One unknown scalar from here on, whichever iteration ended the walk.
    let len = merge(s, 0, end as u64 + 1) as usize;
    let labels = merge(s, 1, labels as u64) as usize;
    if !(1..=name::MAX_NAME_LEN).contains(&len) || labels > name::MAX_LABELS {
        return Err(Verdict::Malformed);
    }
    if len + QUESTION_TAIL > avail {
        return Err(Verdict::Malformed);
    }
    Ok((len, labels))
}

/// A mask of the first `n` bytes of a word, for `n` in 1..=8 (no branch:
/// each branch in the word loop would double the verifier's paths).
#[inline(always)]
pub fn first_bytes(n: usize) -> u64 {
    u64::MAX >> (64 - 8 * (n as u32 & 15))
}

/// A mask of the first `n` bytes, for `n` in 0..=7.
#[inline(always)]
fn below(n: usize) -> u64 {
    (1u64 << (8 * (n as u32 & 7))) - 1
}

/// Non-zero when any byte of `x` is zero (a mask, not a bool: a bool
/// would be a branch).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// ASCII uppercase letters to lowercase, eight bytes at once (the same
/// trick as core's `make_ascii_lowercase`). Length bytes (at most 63) are
/// never letters, so whole wire-format words can go through it.
#[inline(always)]
fn lower(x: u64) -> u64 {
    let heptets = x & !HIGHS;
    let gt_z = heptets.wrapping_add(ONES * (0x7f - b'Z') as u64);
    let ge_a = heptets.wrapping_add(ONES * (0x80 - b'A') as u64);
    let upper = !x & (ge_a ^ gt_z) & HIGHS;
    x | (upper >> 2)
}

/// One word of the name: `bytes` (zero past the name), `st` the length
/// byte positions, `label` the positions of label bytes. Returns the
/// dotted lowercase word and the bad-byte mask.
#[inline(always)]
fn dot_word(bytes: u64, st: u64, label: u64) -> (u64, u64) {
    let t = bytes | !label;
    let bad = zero_bytes(t) | zero_bytes(t ^ DOTS);
    ((lower(bytes) & !st) | (DOTS & st), bad)
}

/// 0xff in every byte whose bit is set in `bits` (bit i, byte i).
#[inline(always)]
fn spread(bits: u64) -> u64 {
    let x = (bits & 0xff).wrapping_mul(ONES) & 0x8040_2010_0804_0201;
    let high = (x + 0x7f7f_7f7f_7f7f_7f7f) & HIGHS;
    (high >> 7).wrapping_mul(0xff)
}

/// The length-byte mask of word `w`.
#[inline(always)]
fn starts_of(s: &Scratch, w: usize) -> u64 {
    spread(s.starts[(w >> 3) & 3] >> ((w & 7) * 8))
}

/// The word pass over a walked name of `len` bytes: dotted key into
/// `s.key`, hash, question sum. `Err(UnsupportedName)` when a label holds
/// a `.` or NUL byte.
#[inline(always)]
pub fn digest(
    s: &mut Scratch,
    len: usize,
    labels: usize,
    key: &name::HashKey,
) -> Result<Name, Verdict> {
    let nw = len.div_ceil(8);
    let mut v = name::hash_init(key);
    let mut sum = 0u64;
    let mut bad = 0u64;
    // Whole words: every byte is a label byte or a length byte. (The bound
    // is a copy, see `walk`.)
    let whole = merge(s, 3, nw as u64 - 1) as usize;
    for w in 0..31 {
        if w >= whole {
            break;
        }
        let raw = s.q[w];
        sum = add_le(sum, raw);
        let st = starts_of(s, w);
        let (k, b) = dot_word(raw, st, !st);
        bad |= b;
        s.key[w] = k;
        v = name::hash_word(v, key, w, k);
    }
    // The last word holds the root: one unknown index from here on,
    // whichever iteration ended the loop.
    let last = merge(s, 2, nw as u64 - 1) as usize;
    if last > 31 {
        return Err(Verdict::Internal);
    }
    let n = len - 8 * last;
    if !(1..=8).contains(&n) {
        return Err(Verdict::Internal);
    }
    let raw = s.q[last];
    let st = starts_of(s, last);
    let (k, b) = dot_word(raw & first_bytes(n), st, below(n - 1) & !st);
    bad |= b;
    s.key[last] = k;
    v = name::hash_word(v, key, last, k);
    // The question's sum goes on past the name, over QTYPE and QCLASS.
    let qn = n + QUESTION_TAIL;
    if qn <= 8 {
        sum = add_le(sum, raw & first_bytes(qn));
    } else {
        sum = add_le(sum, raw);
        sum = add_le(sum, s.q[(last + 1) & 63] & first_bytes(qn - 8));
    }
    if bad != 0 {
        return Err(Verdict::UnsupportedName);
    }
    Ok(Name {
        len,
        labels,
        hash: name::hash_finish(v, key, len),
        sum_le: sum,
        words: nw,
    })
}
