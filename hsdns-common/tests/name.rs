//! The shared name keying and the verdict table, as both sides use them.

use hsdns_common::{
    AnswerClass, HashKey, NameRecord48, NameRefs, REF_NODATA, Verdict, answer_ref, dotted,
    name::{self, HASH_KEYS},
    name_hash, record_check,
};

fn key(seed: u64) -> HashKey {
    // A splitmix64 stream: any fixed key will do for these properties.
    let mut x = seed;
    let mut k = HashKey::default();
    for v in k.k.iter_mut().flatten() {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        *v = z ^ (z >> 31);
    }
    k
}

#[test]
fn dotted_form_replaces_label_lengths() {
    let mut out = [0xffu8; 20];
    assert_eq!(dotted(b"\x07cluster\x05local\x00", &mut out), Some(15));
    assert_eq!(&out[..15], b".cluster.local\0");
    assert!(out[15..].iter().all(|&b| b == 0), "zero padded");
    assert_eq!(dotted(b"\x00", &mut out), Some(1));
    assert_eq!(out[0], 0);
    // Not a name the kernel can hold: a dot or a pointer in a label,
    // trailing bytes, cut short, no room.
    assert_eq!(dotted(b"\x03a.b\x00", &mut out), None);
    assert_eq!(dotted(b"\xc0\x0c", &mut out), None);
    assert_eq!(dotted(b"\x01a\x00junk", &mut out), None);
    assert_eq!(dotted(b"\x05ab", &mut out), None);
    assert_eq!(dotted(b"\x07cluster\x05local\x00", &mut out[..10]), None);
}

#[test]
fn the_hash_depends_on_every_byte_the_length_and_the_key() {
    let k = key(1);
    let name = b".nginx-0.nginx-headless.test.svc.cluster.local\0";
    let h = name_hash(&k, name, name.len());
    let mut seen = std::collections::HashSet::new();
    seen.insert(h);
    for i in 0..name.len() {
        let mut m = *name;
        m[i] ^= 1;
        assert!(seen.insert(name_hash(&k, &m, m.len())), "byte {i}");
    }
    // Bytes past the length do not count; the length does.
    let mut longer = name.to_vec();
    longer.push(b'x');
    assert_eq!(name_hash(&k, &longer, name.len()), h);
    assert_ne!(name_hash(&k, &longer, name.len() + 1), h);
    // Another key, another hash.
    assert_ne!(name_hash(&key(2), name, name.len()), h);
    assert_eq!(HASH_KEYS, 66);
}

#[test]
fn no_collisions_among_many_similar_names() {
    let k = key(7);
    let mut seen = std::collections::HashSet::new();
    for ns in 0..20 {
        for svc in 0..50 {
            for pod in 0..100 {
                let n = format!(".web-{pod}.sts{svc}.ns{ns}.svc.cluster.local\0");
                assert!(seen.insert(name_hash(&k, n.as_bytes(), n.len())), "{n}");
            }
        }
    }
    assert_eq!(seen.len(), 100_000);
    let _ = name::name_words(1);
}

#[test]
fn a_record_checks_only_under_its_own_hash_and_references() {
    let refs = NameRefs {
        a: answer_ref(AnswerClass::Small, 17),
        aaaa: REF_NODATA,
    };
    let r = NameRecord48::new(b".a.cluster.local\0", 42, refs).unwrap();
    assert_eq!(r.refs(), refs);
    assert_eq!(r.dotted(), b".a.cluster.local\0");
    let slots = u64::from(r.a_slot) | u64::from(r.aaaa_slot) << 32;
    let classes = r.a_class as u16 | (r.aaaa_class as u16) << 8;
    assert_eq!(record_check(42, slots, classes), r.check);
    assert_ne!(
        record_check(43, slots, classes),
        r.check,
        "another name's hash"
    );
    assert_ne!(
        record_check(42, slots ^ 1, classes),
        r.check,
        "another slot"
    );
    assert_ne!(
        record_check(42, slots, classes ^ 1),
        r.check,
        "another class"
    );
    assert!(
        NameRecord48::new(&[b'x'; 49], 1, refs).is_none(),
        "too long for the tier"
    );
    assert!(NameRecord48::new(&[b'x'; 48], 1, refs).is_some());
}

/// What a name map element costs the kernel: one kmalloc of the 48-byte
/// element header, the key, the value and an 8-byte free-list node
/// (non-preallocated hash map, bpf_mem_alloc), rounded up to a kmalloc
/// size class. The tiers are chosen to fill their class: a field added to
/// the record would move every pod's name into the next class (+64 bytes
/// a name, 10 MB at 150,000 pods) without changing any answer.
#[test]
fn name_records_fill_their_kmalloc_class() {
    use std::mem::size_of;
    let alloc = |value: usize| 48 + size_of::<hsdns_common::NameHash>() + value + 8;
    let class = |n: usize| {
        *[96, 128, 192, 256, 512]
            .iter()
            .find(|&&c| n <= c)
            .expect("a kmalloc class")
    };
    let records = [
        size_of::<NameRecord48>(),
        size_of::<hsdns_common::NameRecord112>(),
        size_of::<hsdns_common::NameRecord256>(),
    ];
    for (tier, (&size, want)) in records.iter().zip([128, 192, 512]).enumerate() {
        assert_eq!(
            size,
            hsdns_common::NAME_TIERS[tier] + 16,
            "tier {tier}: a name field and 16 bytes of references"
        );
        assert_eq!(class(alloc(size)), want, "tier {tier}'s kmalloc class");
        // (The last tier holds the longest legal name, whatever it costs.)
        assert!(
            tier == 2 || class(alloc(size + 8)) > want,
            "tier {tier} could hold 8 more bytes of name in the same class"
        );
    }
}

#[test]
fn verdicts_and_counters_line_up() {
    let mut c = hsdns_common::Counters::default();
    assert_eq!(c.fields().len(), Verdict::ALL.len());
    for (i, v) in Verdict::ALL.iter().enumerate() {
        assert_eq!(*v as usize, i, "discriminants are counter indexes");
        assert_eq!(Verdict::from_index(i), Some(*v));
        assert_eq!(c.fields()[i].0, v.name());
    }
    // The kernel counts by index into the struct: field i is verdict i.
    // SAFETY: `Counters` is repr(C) with VERDICT_COUNT u64 fields and no
    // padding (its size is asserted below), and `c` stays borrowed while
    // `words` lives.
    let words =
        unsafe { std::slice::from_raw_parts_mut(&mut c as *mut _ as *mut u64, Verdict::ALL.len()) };
    words[Verdict::AnsweredNxdomain as usize] += 3;
    assert_eq!(c.answered_nxdomain, 3);
    assert_eq!(c.get(Verdict::AnsweredNxdomain), 3);
    assert_eq!(size_of::<hsdns_common::Counters>(), 8 * Verdict::ALL.len());
}
