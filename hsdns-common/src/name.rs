//! How a name is keyed in the maps: its dotted form, a keyed hash of that
//! form, and the check word that binds a stored record to its name.
//!
//! The dotted form of a lowercase wire-format name is the same bytes with
//! every label's length byte replaced by `.` (the root's zero stays, as the
//! text's terminator): `\x07cluster\x05local\x00` is `.cluster.local\0`.
//! Positions are the wire positions, so the kernel builds it in place from
//! the question, and bpftool prints it as text. It is injective for names
//! whose labels hold no `.` byte; the kernel passes those up.
//!
//! The maps are keyed by a keyed universal hash of the dotted form's 64-bit
//! words ([`hash_word`]), under a key the daemon draws at random when it
//! creates the maps: nobody who can name a Service can aim two names at
//! one key.

/// Longest wire-format name (RFC 1035 2.3.4), root label included.
pub const MAX_NAME_LEN: usize = 255;
/// Most labels (the root not counted) of a name the kernel answers: the
/// walk over labels is unrolled for the verifier, and 32 is far more than
/// any name under a cluster zone has. Longer names go up.
pub const MAX_LABELS: usize = 32;

/// Replaces the label lengths of a wire-format name by `.`, writing `out`
/// (zero-padded). Returns the name's length, or `None` when `wire` is not
/// one uncompressed name, or `out` is too short.
pub fn dotted(wire: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let len = *wire.get(pos)? as usize;
        if len > 63 || pos >= out.len() {
            return None;
        }
        if len == 0 {
            out[pos] = 0;
            for b in &mut out[pos + 1..] {
                *b = 0;
            }
            return (pos + 1 == wire.len()).then_some(pos + 1);
        }
        let label = wire.get(pos + 1..pos + 1 + len)?;
        if pos + 1 + len >= out.len() || label.contains(&b'.') {
            return None;
        }
        out[pos] = b'.';
        out[pos + 1..pos + 1 + len].copy_from_slice(label);
        pos += 1 + len;
    }
}

/// Words the hash reads: the name's bytes as little-endian 64-bit words,
/// zero past the name.
pub const fn name_words(len: usize) -> usize {
    len.div_ceil(8)
}

/// Keys per hash instance: one constant, two per 64-bit word of a name
/// (255 bytes: 32 words), one for the length.
pub const HASH_KEYS: usize = 2 + 2 * 32;
const HASH_LEN_KEY: usize = HASH_KEYS - 1;

/// The key of the name maps' hash: two independent sets of random 64-bit
/// multipliers, drawn when the maps are created.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HashKey {
    pub k: [[u64; HASH_KEYS]; 2],
}

impl Default for HashKey {
    fn default() -> Self {
        Self {
            k: [[0; HASH_KEYS]; 2],
        }
    }
}

/// Absorbs word `w` (index `i`) of a name into the two accumulators:
/// multilinear hashing (Lemire and Kaser, "Strongly universal string
/// hashing is fast", 2014) of the word's two 32-bit halves with 64-bit
/// keys. Four multiplications and four additions a word, where SipHash
/// took about 120 BPF instructions: the cost of the hash is most of the
/// cost of a lookup.
#[inline(always)]
pub fn hash_word(acc: [u64; 2], key: &HashKey, i: usize, w: u64) -> [u64; 2] {
    let (lo, hi) = (w & 0xffff_ffff, w >> 32);
    let j = 1 + 2 * (i & 31);
    [
        acc[0]
            .wrapping_add(key.k[0][j].wrapping_mul(lo))
            .wrapping_add(key.k[0][j + 1].wrapping_mul(hi)),
        acc[1]
            .wrapping_add(key.k[1][j].wrapping_mul(lo))
            .wrapping_add(key.k[1][j + 1].wrapping_mul(hi)),
    ]
}

/// The accumulators' start.
#[inline(always)]
pub fn hash_init(key: &HashKey) -> [u64; 2] {
    [key.k[0][0], key.k[1][0]]
}

/// The map key from the accumulators of a name of `len` bytes: the top
/// half of each (each strongly universal: two distinct names collide with
/// probability 2^-32 per half, 2^-64 for both, over the random key).
#[inline(always)]
pub fn hash_finish(acc: [u64; 2], key: &HashKey, len: usize) -> u64 {
    let a = acc[0].wrapping_add(key.k[0][HASH_LEN_KEY].wrapping_mul(len as u64));
    let b = acc[1].wrapping_add(key.k[1][HASH_LEN_KEY].wrapping_mul(len as u64));
    (a & 0xffff_ffff_0000_0000) | (b >> 32)
}

/// The map key of a name given in dotted form (`len` bytes, terminator
/// included; the rest of `dotted` is ignored).
pub fn name_hash(key: &HashKey, dotted: &[u8], len: usize) -> u64 {
    let mut acc = hash_init(key);
    for w in 0..name_words(len) {
        let mut word = [0u8; 8];
        for (i, b) in word.iter_mut().enumerate() {
            let at = w * 8 + i;
            if at < len {
                *b = dotted[at];
            }
        }
        acc = hash_word(acc, key, w, u64::from_le_bytes(word));
    }
    hash_finish(acc, key, len)
}

/// The check word of a name record: binds its answer references (`slots`,
/// the two slot fields as one little-endian word, and `classes`, the two
/// class bytes) to the name's hash. The kernel reads the record once and
/// recomputes this from what it read: a record that changed under it (the
/// map element freed and reused for another name between the lookup and
/// the read) fails the check, since the other name's hash differs.
#[inline(always)]
pub const fn record_check(hash: u64, slots: u64, classes: u16) -> u32 {
    let mut x = hash ^ slots ^ ((classes as u64) << 48 | (classes as u64) << 8);
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x ^ (x >> 32)) as u32
}
