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
//! The maps are keyed by SipHash-1-3 of the dotted form's 64-bit words,
//! under a key the daemon draws at random when it creates the maps: nobody
//! who can name a Service can aim two names at one key.

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

const fn rotl(x: u64, b: u32) -> u64 {
    x.rotate_left(b)
}

/// One SipRound (SipHash, Aumasson and Bernstein 2012).
#[inline(always)]
pub const fn sip_round(v: [u64; 4]) -> [u64; 4] {
    let [mut v0, mut v1, mut v2, mut v3] = v;
    v0 = v0.wrapping_add(v1);
    v1 = rotl(v1, 13);
    v1 ^= v0;
    v0 = rotl(v0, 32);
    v2 = v2.wrapping_add(v3);
    v3 = rotl(v3, 16);
    v3 ^= v2;
    v0 = v0.wrapping_add(v3);
    v3 = rotl(v3, 21);
    v3 ^= v0;
    v2 = v2.wrapping_add(v1);
    v1 = rotl(v1, 17);
    v1 ^= v2;
    v2 = rotl(v2, 32);
    [v0, v1, v2, v3]
}

/// The initial state for `key`.
#[inline(always)]
pub const fn sip_init(key: [u64; 2]) -> [u64; 4] {
    [
        key[0] ^ 0x736f6d6570736575,
        key[1] ^ 0x646f72616e646f6d,
        key[0] ^ 0x6c7967656e657261,
        key[1] ^ 0x7465646279746573,
    ]
}

/// Absorbs one message word (SipHash-1-3: one round per word).
#[inline(always)]
pub const fn sip_word(v: [u64; 4], m: u64) -> [u64; 4] {
    let [v0, v1, v2, v3] = v;
    let [v0, v1, v2, v3] = sip_round([v0, v1, v2, v3 ^ m]);
    [v0 ^ m, v1, v2, v3]
}

/// Absorbs the length block and finalises (three rounds).
#[inline(always)]
pub const fn sip_finish(v: [u64; 4], len: usize) -> u64 {
    let b = (len as u64) << 56;
    let v = sip_word(v, b);
    let [v0, v1, v2, v3] = v;
    let v = sip_round([v0, v1, v2 ^ 0xff, v3]);
    let v = sip_round(v);
    let [v0, v1, v2, v3] = sip_round(v);
    v0 ^ v1 ^ v2 ^ v3
}

/// The map key of a name given in dotted form (`len` bytes, terminator
/// included; the rest of `dotted` is ignored).
pub fn name_hash(key: [u64; 2], dotted: &[u8], len: usize) -> u64 {
    let mut v = sip_init(key);
    for w in 0..name_words(len) {
        let mut word = [0u8; 8];
        for (i, b) in word.iter_mut().enumerate() {
            let at = w * 8 + i;
            if at < len {
                *b = dotted[at];
            }
        }
        v = sip_word(v, u64::from_le_bytes(word));
    }
    sip_finish(v, len)
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
