//! The name's record: found by keyed hash, verified before any use.
//!
//! A hit is only a hit when the stored name equals the question's dotted
//! name word for word (a hash collision is not an answer) and the record's
//! check word matches its references under this name's hash. The second
//! check is for element reuse: a hash map element can be freed and handed
//! to another name while this program reads it, so what is read must prove
//! it belongs to this name. Each field is read exactly once (volatile), and
//! the check is computed from those very reads.

use core::ptr::read_volatile;

use hsdns_common::{Config, NAME_TIERS, NameHash, ZONE_MAX, record_check, refs_offset};

use crate::{
    maps::{NAMES_64, NAMES_128, NAMES_256, Scratch},
    mem::{ld64, opaque},
    name::{KEY_MASK, Name, first_bytes, key_byte},
    verifier::merge,
};

/// What the maps say about a name.
pub enum Found {
    /// The class byte and slot of its A and AAAA answers.
    Record { a: (u8, u32), aaaa: (u8, u32) },
    /// No record under its hash.
    Missing,
    /// A record under its hash that is not this name's.
    Crossed,
}

/// Compares the stored name with the dotted key and reads the references.
/// `rec` points to a name record of `tier`; `max_words` is its name size.
#[inline(always)]
fn verify(s: &mut Scratch, name: &Name, rec: *const u8, tier: usize, max_words: usize) -> Found {
    let words = rec as *const u64;
    // The bound is a copy (see `name::walk`).
    let n = merge(s, 4, name.words as u64) as usize;
    for w in 0..32 {
        if w >= n || w >= max_words {
            break;
        }
        // SAFETY: w < max_words: inside the record's name field.
        if unsafe { read_volatile(words.add(w)) } != s.key[w & 31] {
            return Found::Crossed;
        }
    }
    let off = refs_offset(tier);
    // SAFETY: the reference fields follow the name field (see
    // hsdns_common::refs_offset); the record is 8-byte aligned.
    let (slots, check, classes) = unsafe {
        (
            read_volatile(rec.add(off) as *const u64),
            read_volatile(rec.add(off + 8) as *const u32),
            read_volatile(rec.add(off + 12) as *const u16),
        )
    };
    if record_check(name.hash, slots, classes) != check {
        return Found::Crossed;
    }
    Found::Record {
        a: (classes as u8, slots as u32),
        aaaa: ((classes >> 8) as u8, (slots >> 32) as u32),
    }
}

#[inline(always)]
pub fn lookup(s: &mut Scratch, name: &Name) -> Found {
    let key = NameHash { hash: name.hash };
    let (rec, tier) = if name.len <= NAME_TIERS[0] {
        (NAMES_64.get_ptr(key).map(|p| p as *const u8), 0)
    } else if name.len <= NAME_TIERS[1] {
        (NAMES_128.get_ptr(key).map(|p| p as *const u8), 1)
    } else {
        (NAMES_256.get_ptr(key).map(|p| p as *const u8), 2)
    };
    match rec {
        None => Found::Missing,
        Some(rec) => match tier {
            0 => verify(s, name, rec, 0, NAME_TIERS[0] / 8),
            1 => verify(s, name, rec, 1, NAME_TIERS[1] / 8),
            _ => verify(s, name, rec, 2, NAME_TIERS[2] / 8),
        },
    }
}

/// Whether a name missing from the maps provably does not exist (see
/// `Config::nxdomain` for the rule and when it holds). `fresh`: the
/// daemon's heartbeat is within `stale_nxdomain_ns`.
#[inline(always)]
pub fn provably_missing(s: &mut Scratch, cfg: &Config, name: &Name) -> bool {
    if cfg.nxdomain == 0 {
        return false;
    }
    let zone_len = cfg.zone_len as usize;
    let zone_labels = cfg.zone_labels as usize;
    if !(1..=ZONE_MAX).contains(&zone_len) || name.len <= zone_len || name.labels <= zone_labels {
        return false;
    }
    // The zone must end the name and start at one of its labels. (The
    // round trips hide the differences from the verifier, which cannot
    // bound a difference of two ranges; the checks below bound them.)
    let zone_start = merge(s, 2, (name.len - zone_len) as u64) as usize;
    let first_zone_label = merge(s, 3, (name.labels - zone_labels) as u64) as usize;
    if zone_start > 255 || !(1..=63).contains(&first_zone_label) {
        return false;
    }
    // (Masked as well, out of LLVM's sight: it checks a copy, x - 1 <= 62,
    // whose bound the verifier does not carry back to the index.)
    if s.label_at[opaque(first_zone_label) & 63] as usize != zone_start {
        return false;
    }
    if !zone_matches(s, cfg, zone_start, zone_len) {
        return false;
    }
    // The label right before the zone: `svc`, `pod` or anything else.
    let before = first_zone_label - 1;
    let at = s.label_at[before & 63] as usize;
    let len = zone_start - at - 1;
    let is = |w: &[u8; 3]| {
        len == 3
            && key_byte(s, at + 1) == w[0]
            && key_byte(s, at + 2) == w[1]
            && key_byte(s, at + 3) == w[2]
    };
    // pod.<zone> is for userspace. Under `dns` and `hostmaster` the SOA's
    // own names (ns.dns.<zone>, hostmaster.<zone>) would compress into the
    // question differently from the precomputed bytes: no such name
    // exists, but its NXDOMAIN comes from userspace.
    if is(b"pod") || is(b"dns") || is_hostmaster(s, at, len) {
        return false;
    }
    if !is(b"svc") {
        return true;
    }
    // Under svc: NXDOMAIN from two labels before it on (a service, or a
    // name below one); `svc.<zone>` and namespaces are left alone.
    before >= 2
}

/// Whether the dotted key's `zone_len` bytes from `zone_start` (which end
/// the name) are the configured zone: eight bytes at a time, the last
/// word masked to the zone's end (the key's words after the name's are
/// left from earlier questions). A byte loop here was 64 iterations for
/// the verifier and one per byte for every NXDOMAIN.
#[inline(always)]
fn zone_matches(s: &mut Scratch, cfg: &Config, zone_start: usize, zone_len: usize) -> bool {
    let key = s.key.as_ptr() as usize;
    let zone = cfg.zone.as_ptr() as usize;
    // zone_start + zone_len is the name's length (<= 255), so no offset
    // below wraps at the key's mask; the masks are for the verifier.
    let word = |w: usize| {
        // SAFETY: the key buffer holds 256 + 8 bytes and more; the zone
        // field is ZONE_MAX bytes, w < ZONE_MAX / 8.
        unsafe {
            (
                ld64(key + ((zone_start + 8 * w) & KEY_MASK)),
                ld64(zone + 8 * (w & (ZONE_MAX / 8 - 1))),
            )
        }
    };
    // Whole words, then the last one. (The bound is a copy, see
    // `name::walk`.)
    let whole = merge(s, 5, (zone_len as u64 - 1) / 8) as usize;
    for w in 0..ZONE_MAX / 8 {
        if w >= whole {
            break;
        }
        let (a, b) = word(w);
        if a != b {
            return false;
        }
    }
    let last = merge(s, 5, (zone_len as u64 - 1) / 8) as usize;
    if last >= ZONE_MAX / 8 {
        return false;
    }
    let n = zone_len - 8 * last;
    if !(1..=8).contains(&n) {
        return false;
    }
    let (a, b) = word(last);
    (a ^ b) & first_bytes(n) == 0
}

#[inline(always)]
fn is_hostmaster(s: &Scratch, at: usize, len: usize) -> bool {
    const W: &[u8; 10] = b"hostmaster";
    if len != W.len() {
        return false;
    }
    for (i, c) in W.iter().enumerate() {
        if key_byte(s, at + 1 + i) != *c {
            return false;
        }
    }
    true
}
