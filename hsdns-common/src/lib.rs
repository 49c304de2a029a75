//! Types shared by the kernel program and the daemon: the layout of every
//! BPF map, the verdict table, and how names are keyed.
//!
//! Memory drives the layout (150,000 pods, 10,000 services). Names are hash
//! maps keyed by an 8-byte keyed hash of the name ([`NameHash`]); the value
//! holds the full name (as dotted text, so bpftool prints it) for the
//! kernel to verify before any answer, and references to answers. Values
//! come in three sizes by name length, so a typical 40-byte pod name costs
//! a 48-byte name field, not a 256-byte one (see [`NAME_TIERS`] for why
//! these sizes). Answers live in array maps of three size classes, so the
//! common one-address answer costs 40 bytes while a 76-address headless
//! service still fits.
#![no_std]

pub mod name;
pub mod verdict;

pub use name::{HashKey, MAX_LABELS, MAX_NAME_LEN, dotted, name_hash, record_check};
pub use verdict::{Action, Counters, VERDICT_COUNT, Verdict};

/// The largest DNS message the kernel sends, and the UDP payload size it
/// advertises in its OPT record (DNS flag day 2020).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Reply size limit for a client that sent no OPT record (RFC 1035 4.2.1).
pub const PLAIN_UDP_SIZE: u16 = 512;
/// The only port the kernel answers on.
pub const DNS_PORT: u16 = 53;

/// Name field sizes of the three name maps. A name of wire length `n`
/// lives in the first tier with `n <= tier`, NUL padded.
///
/// The sizes follow the kernel's allocator, not round numbers. A name map
/// is a hash map without preallocation: each element is one kmalloc of a
/// 48-byte element header, the 8-byte key, the value (the name field plus
/// 16 bytes of references) and an 8-byte free-list node, so a tier of `t`
/// bytes allocates `t + 80` bytes, rounded up to a kmalloc size class
/// (96, 128, 192, 256, 512). 48 is the largest tier in the 128-byte class
/// (a pod or endpoint name such as `web-0.nginx.default.svc.cluster.local`
/// is under 48 bytes), 112 the largest in the 192-byte class (where a
/// 64-byte tier used to be: names of 49-112 bytes cost what 49-64 did),
/// and 256 holds the longest legal name (512-byte class, as before).
pub const NAME_TIERS: [usize; 3] = [48, 112, 256];

/// Map names, as pinned under [`PIN_DIR`]. The names are older than the
/// tiers' sizes ([`NAME_TIERS`]: `names_64` holds names up to 48 bytes,
/// `names_128` up to 112): pins are an interface (operators' `bpftool`
/// commands), so they were kept.
pub const MAP_NAMES: [&str; 3] = ["names_64", "names_128", "names_256"];
pub const MAP_ANSWERS: [&str; 3] = ["answers_s", "answers_m", "answers_l"];
pub const MAP_SOA: &str = "soa";
pub const MAP_DNS_ADDRS: &str = "dns_addrs";
pub const MAP_CONFIG: &str = "config";
pub const MAP_COUNTERS: &str = "counters";
pub const MAP_LAYOUT: &str = "layout";
/// The XDP entry point (driver-mode interfaces, uplinks).
pub const PROGRAM_NAME: &str = "hsdns";
/// The tc ingress entry point (pod veths).
pub const PROGRAM_TC: &str = "hsdns_tc";
/// Bare reflectors on each hook: the floors of the benchmarks, never
/// attached.
pub const PROGRAM_FLOOR_XDP: &str = "floor_xdp";
pub const PROGRAM_FLOOR_TC: &str = "floor_tc";
pub const PIN_DIR: &str = "/sys/fs/bpf/hsdns";

/// A byte of a name as text. The loader marks this type as a C `char` in
/// the object's BTF before loading (it is `i8` in Rust, used for nothing
/// else), so bpftool prints name fields as strings.
pub type NameChar = i8;

/// Key of the name maps: the keyed hash of the name's dotted form under
/// `Config::hash_key` (see [`name`]).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct NameHash {
    pub hash: u64,
}

/// Where an answer is, or why there is none.
///
/// In the name records a class byte and a slot number; in the daemon's
/// bookkeeping both packed into an [`AnswerRef`].
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum AnswerClass {
    /// In `answers_s` (one record).
    #[default]
    Small = 0,
    /// In `answers_m`.
    Medium = 1,
    /// In `answers_l`.
    Large = 2,
    /// The name exists but has no record of this type: NOERROR, no
    /// answer, the zone's SOA in the authority section (NODATA, RFC 2308).
    Nodata = 3,
    /// Records exist but the kernel does not hold them (not addresses, or
    /// the answer maps were full): the query goes up to userspace.
    Userspace = 4,
    /// Records exist but no UDP reply of ours holds them (over 1232
    /// bytes): the kernel answers with TC=1.
    Truncated = 5,
}

impl AnswerClass {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Small,
            1 => Self::Medium,
            2 => Self::Large,
            3 => Self::Nodata,
            4 => Self::Userspace,
            5 => Self::Truncated,
            _ => return None,
        })
    }
}

/// An answer reference packed in 32 bits: `class << 29 | slot`.
pub type AnswerRef = u32;
pub const REF_CLASS_SHIFT: u32 = 29;
pub const REF_SLOT_MASK: u32 = (1 << REF_CLASS_SHIFT) - 1;
pub const REF_NODATA: AnswerRef = answer_ref(AnswerClass::Nodata, 0);
pub const REF_PASS: AnswerRef = answer_ref(AnswerClass::Userspace, 0);
pub const REF_TRUNCATED: AnswerRef = answer_ref(AnswerClass::Truncated, 0);

pub const fn answer_ref(class: AnswerClass, slot: u32) -> AnswerRef {
    ((class as u32) << REF_CLASS_SHIFT) | (slot & REF_SLOT_MASK)
}

/// The class of a packed reference (`None` for values no syncer writes).
pub const fn ref_class(r: AnswerRef) -> Option<AnswerClass> {
    AnswerClass::from_u8((r >> REF_CLASS_SHIFT) as u8)
}

pub const fn ref_slot(r: AnswerRef) -> u32 {
    r & REF_SLOT_MASK
}

/// A name's two answer references, as the daemon hands them to the maps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NameRefs {
    pub a: AnswerRef,
    pub aaaa: AnswerRef,
}

/// Byte offset of the reference fields in every name record (the name
/// field comes first): `a_slot`, `aaaa_slot` as one 8-byte word, then
/// `check`, then the two class bytes.
pub const fn refs_offset(tier: usize) -> usize {
    NAME_TIERS[tier]
}

macro_rules! name_record {
    ($name:ident, $n:expr) => {
        /// Value of a name map: the name, verified by the kernel before it
        /// answers, and where its A and AAAA answers are.
        #[repr(C, align(8))]
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub struct $name {
            /// The lowercase name in dotted form (see [`name`]), NUL padded.
            pub name: [NameChar; $n],
            pub a_slot: u32,
            pub aaaa_slot: u32,
            /// [`record_check`] of the name's hash and the fields around.
            pub check: u32,
            pub a_class: AnswerClass,
            pub aaaa_class: AnswerClass,
            pub _pad: [u8; 2],
        }

        impl $name {
            /// The record for a name in dotted form with `refs`, checked
            /// under `hash`. `None` when the name does not fit.
            pub fn new(dotted: &[u8], hash: u64, refs: NameRefs) -> Option<Self> {
                if dotted.len() > $n {
                    return None;
                }
                let mut name = [0 as NameChar; $n];
                for (d, s) in name.iter_mut().zip(dotted) {
                    *d = *s as NameChar;
                }
                let a_class = ref_class(refs.a)?;
                let aaaa_class = ref_class(refs.aaaa)?;
                let (a_slot, aaaa_slot) = (ref_slot(refs.a), ref_slot(refs.aaaa));
                let slots = (a_slot as u64) | ((aaaa_slot as u64) << 32);
                let classes = (a_class as u16) | ((aaaa_class as u16) << 8);
                Some(Self {
                    name,
                    a_slot,
                    aaaa_slot,
                    check: record_check(hash, slots, classes),
                    a_class,
                    aaaa_class,
                    _pad: [0; 2],
                })
            }

            /// The references, packed.
            pub fn refs(&self) -> NameRefs {
                NameRefs {
                    a: answer_ref(self.a_class, self.a_slot),
                    aaaa: answer_ref(self.aaaa_class, self.aaaa_slot),
                }
            }

            /// The dotted name's bytes, up to its terminator.
            pub fn dotted(&self) -> &[u8] {
                // SAFETY: i8 and u8 have the same layout.
                let bytes: &[u8; $n] = unsafe { &*(&self.name as *const _ as *const [u8; $n]) };
                let end = bytes.iter().position(|&b| b == 0).unwrap_or($n - 1);
                &bytes[..=end]
            }
        }
    };
}
name_record!(NameRecord48, 48);
name_record!(NameRecord112, 112);
name_record!(NameRecord256, 256);

/// Largest answer section of each answer class, in bytes. A record with a
/// compressed owner takes 16 bytes for A and 28 for AAAA: the small class
/// holds one record (most names: a pod, a ClusterIP service), the others
/// up to 12 and 76 A records.
pub const ANSWER_CLASSES: [usize; 3] = [32, 192, 1216];

macro_rules! answer_class {
    ($name:ident, $n:expr) => {
        /// The wire-format answer section for one (name, type), built by the
        /// daemon with hickory-proto against a question at offset 12.
        #[repr(C)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub struct $name {
            /// Length of the answer section.
            pub len: u16,
            /// ANCOUNT of the reply.
            pub count: u16,
            /// One's complement sum of the section as if it started at an
            /// even offset (see [`csum_add_bytes`]), so the kernel never
            /// loops over an answer to checksum it.
            pub csum: u16,
            /// Size of each record when all have the same even size (they
            /// do: every owner is a pointer to the question): the kernel
            /// then rotates the records, copying `bytes[k * stride..len]`
            /// and then `bytes[..k * stride]`; a rotation by whole records
            /// of even size keeps the checksum. Zero: copy as is.
            pub stride: u16,
            pub bytes: [u8; $n],
        }
        impl Default for $name {
            fn default() -> Self {
                Self {
                    len: 0,
                    count: 0,
                    csum: 0,
                    stride: 0,
                    bytes: [0; $n],
                }
            }
        }
    };
}
answer_class!(AnswerS, 32);
answer_class!(AnswerM, 192);
answer_class!(AnswerL, 1216);

/// Authority section of a negative answer: the zone's SOA with its owner
/// compressed against the question. The pointer depends on where the zone
/// starts in the question, so the daemon stores one per question length,
/// in each of two banks (see [`Config::soa_bank`]).
pub const SOA_BYTES: usize = 184;
/// Entries of one SOA bank: one per question name length.
pub const SOA_ENTRIES_PER_BANK: u32 = 256;
/// Banks of the `soa` map.
pub const SOA_BANKS: u32 = 2;
/// Entries of the `soa` map.
pub const SOA_ENTRIES: u32 = SOA_BANKS * SOA_ENTRIES_PER_BANK;
answer_class!(Authority, 184);

/// Slots of `dns_addrs`: the addresses the kernel answers for (the
/// node-local address, the cluster DNS ClusterIPs, their IPv6 forms, any
/// `--intercept-addr`). An array the program scans, not a hash map: array
/// lookups are inlined by the verifier, a hash lookup is a kernel function
/// call on every UDP/53 packet (20-30 ns on CPUs with return thunks). More
/// addresses than slots: the daemon refuses the configured ones at start
/// and leaves discovered ones to userspace, counted as map write errors.
pub const DNS_ADDR_SLOTS: u32 = 16;

/// A slot of `dns_addrs`: an address the program answers for, with its
/// family so that an IPv6 packet to `::ffff:a.b.c.d` never matches an IPv4
/// entry. Family 0: an empty slot. The daemon changes a slot in two writes
/// that each change only one part (the address while the family is 0, then
/// the family), so a program reading a slot mid-write never sees a mixture
/// of two addresses as a valid entry.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DnsAddr {
    /// 4 or 6.
    pub family: u32,
    /// IPv4 addresses use the first four bytes, the rest zero.
    pub addr: [u8; 16],
}

impl DnsAddr {
    /// An empty slot.
    pub const EMPTY: Self = Self {
        family: 0,
        addr: [0; 16],
    };
    pub const fn v4(octets: [u8; 4]) -> Self {
        let mut addr = [0u8; 16];
        addr[0] = octets[0];
        addr[1] = octets[1];
        addr[2] = octets[2];
        addr[3] = octets[3];
        Self { family: 4, addr }
    }
    pub const fn v6(octets: [u8; 16]) -> Self {
        Self {
            family: 6,
            addr: octets,
        }
    }
}

/// Longest zone (dotted form, terminator included) the kernel answers
/// NXDOMAIN under; longer zones get their negative answers from userspace.
pub const ZONE_MAX: usize = 64;

/// Runtime switches, one entry.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    /// Zero until the daemon has written a complete record set: until then the
    /// kernel passes every query up, so partial data never looks authoritative.
    pub answering: u32,
    /// Non-zero: a name missing from the maps that provably does not exist
    /// gets NXDOMAIN from the kernel. The daemon sets it only while the maps
    /// hold every name of the zone (nothing left out for lack of room), as
    /// absence then proves non-existence. The rule: under the zone, not under
    /// `pod.<zone>`, and either the label before the zone is not `svc`, or at
    /// least two labels stand before `svc` (a service or a name below one).
    pub nxdomain: u32,
    /// Wire length of the cluster zone's name, root label included.
    pub zone_len: u32,
    /// Which of two SOA banks negative answers use: entry
    /// `soa_bank * SOA_ENTRIES_PER_BANK + qname length` of `soa` (0 or 1).
    /// The SOA serial changes with the table: the daemon writes the new
    /// SOA into the bank not in use, then flips this word, so no reply ever
    /// copies a half-written SOA; a bank is rewritten only after the
    /// syncer's quarantine since it was last in use.
    pub soa_bank: u32,
    /// CLOCK_BOOTTIME (the clock of `bpf_ktime_get_boot_ns`) in ns of the
    /// daemon's last heartbeat. The daemon writes it periodically while its
    /// table is complete in the maps; a dead or stuck daemon stops writing
    /// it, and the two bounds below limit how stale an answer can get.
    pub heartbeat_ns: u64,
    /// Heartbeat older than this: the kernel answers no NXDOMAIN for missing
    /// names (they go up as unknown names). 0: no bound.
    pub stale_nxdomain_ns: u64,
    /// Heartbeat older than this: every query passes up, counted as
    /// `pass_stale`. 0: no bound.
    pub stale_pass_ns: u64,
    /// The key of the name maps' hash ([`NameHash`]), drawn at random
    /// when the maps are created and never changed while they live.
    pub hash_key: HashKey,
    /// Labels of the zone, the root not counted (`cluster.local`: 2).
    pub zone_labels: u32,
    pub _pad2: u32,
    /// The zone in dotted form (see [`name`]), NUL padded.
    pub zone: [NameChar; ZONE_MAX],
}

impl Default for Config {
    fn default() -> Self {
        Self {
            answering: 0,
            nxdomain: 0,
            zone_len: 0,
            soa_bank: 0,
            heartbeat_ns: 0,
            stale_nxdomain_ns: 0,
            stale_pass_ns: 0,
            hash_key: HashKey::default(),
            zone_labels: 0,
            _pad2: 0,
            zone: [0; ZONE_MAX],
        }
    }
}

impl Config {
    /// How long ago (ns) the heartbeat was written, at `now` (boot-time ns).
    /// A heartbeat from the future counts as fresh (the kernel reads a
    /// clock up to one jiffy old, see hsdns-ebpf/src/clock.rs).
    #[inline(always)]
    pub const fn heartbeat_age(&self, now: u64) -> u64 {
        now.saturating_sub(self.heartbeat_ns)
    }

    /// Whether a heartbeat this old is past `bound` (0: never).
    #[inline(always)]
    pub const fn past(bound: u64, age: u64) -> bool {
        bound != 0 && age > bound
    }
}

/// The `layout` map's one entry: what the pinned maps were created for. A
/// starting daemon adopts pinned maps only when their layout equals its own
/// (and each map's type, key and value size, max_entries and flags are what
/// its program declares, as the kernel reports them); otherwise it builds
/// new maps beside the old ones and switches over (blue/green).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Layout {
    /// [`LAYOUT_MAGIC`].
    pub magic: u64,
    /// [`TYPES_HASH`] of the program that created the maps.
    pub types_hash: u64,
    pub tiers: [u32; 3],
    pub name_caps: [u32; 3],
    pub answer_caps: [u32; 3],
    /// TTL in every stored answer and the SOA minimum.
    pub ttl: u32,
    /// The SOA serial of the negative answers stored in `soa`. Not part of
    /// the compatibility check: an adopting daemon takes it over, so its
    /// userspace replies stay equal to the kernel's byte for byte.
    pub serial: u32,
    /// Wire length of `zone`.
    pub zone_len: u32,
    /// The cluster zone in lowercase wire format, zero padded.
    pub zone: [u8; 256],
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            magic: 0,
            types_hash: 0,
            tiers: [0; 3],
            name_caps: [0; 3],
            answer_caps: [0; 3],
            ttl: 0,
            serial: 0,
            zone_len: 0,
            zone: [0; 256],
        }
    }
}

impl Layout {
    /// Whether maps made for `self` serve a daemon that wants `o`: equal
    /// but for the serial.
    pub fn compatible(&self, o: &Layout) -> bool {
        Layout { serial: 0, ..*self } == Layout { serial: 0, ..*o }
    }
}

/// "hsdnsLAY".
pub const LAYOUT_MAGIC: u64 = u64::from_be_bytes(*b"hsdnsLAY");

/// Bump when the meaning of a shared type changes without its layout
/// changing (sizes and offsets are hashed by themselves). 2: `Config`'s
/// `_pad` became `soa_bank` (same offset, new meaning: a program of
/// version 1 would ignore a flipped bank and copy a stale SOA). 3: names
/// keyed by a keyed hash with the dotted name in the value, the verdict
/// table, answers no longer stored twice for rotation, SOA banks without
/// zones. 4: name tiers of 48, 112 and 256 bytes (kmalloc size classes,
/// see [`NAME_TIERS`]); the tiers and record sizes are hashed too, the
/// bump says so for a reader of this list. 5: `dns_addrs` an array of
/// [`DNS_ADDR_SLOTS`] slots holding [`DnsAddr`] values, scanned by the
/// program (it was a hash map keyed by `DnsAddr`: same struct, another map).
pub const TYPES_VERSION: u64 = 5;

/// A hash of every type and constant the kernel and the daemon share
/// through the maps: sizes, alignments, field offsets, tiers and classes.
/// Whoever changes a shared map type changes this hash (a new field moves
/// a size or an offset; a new meaning bumps [`TYPES_VERSION`]), and a
/// daemon with a different hash never adopts the pinned maps.
pub const TYPES_HASH: u64 = {
    use core::mem::{align_of, offset_of, size_of};
    let words: &[u64] = &[
        TYPES_VERSION,
        size_of::<NameHash>() as u64,
        size_of::<NameRecord48>() as u64,
        size_of::<NameRecord112>() as u64,
        size_of::<NameRecord256>() as u64,
        align_of::<NameRecord48>() as u64,
        offset_of!(NameRecord48, a_slot) as u64,
        offset_of!(NameRecord48, aaaa_slot) as u64,
        offset_of!(NameRecord48, check) as u64,
        offset_of!(NameRecord48, a_class) as u64,
        offset_of!(NameRecord48, aaaa_class) as u64,
        size_of::<AnswerS>() as u64,
        size_of::<AnswerM>() as u64,
        size_of::<AnswerL>() as u64,
        size_of::<Authority>() as u64,
        align_of::<AnswerS>() as u64,
        offset_of!(AnswerS, len) as u64,
        offset_of!(AnswerS, count) as u64,
        offset_of!(AnswerS, csum) as u64,
        offset_of!(AnswerS, stride) as u64,
        offset_of!(AnswerS, bytes) as u64,
        size_of::<DnsAddr>() as u64,
        DNS_ADDR_SLOTS as u64,
        size_of::<Config>() as u64,
        offset_of!(Config, answering) as u64,
        offset_of!(Config, nxdomain) as u64,
        offset_of!(Config, zone_len) as u64,
        offset_of!(Config, soa_bank) as u64,
        offset_of!(Config, heartbeat_ns) as u64,
        offset_of!(Config, stale_nxdomain_ns) as u64,
        offset_of!(Config, stale_pass_ns) as u64,
        offset_of!(Config, hash_key) as u64,
        offset_of!(Config, zone_labels) as u64,
        offset_of!(Config, zone) as u64,
        size_of::<name::HashKey>() as u64,
        size_of::<Counters>() as u64,
        VERDICT_COUNT as u64,
        size_of::<Layout>() as u64,
        NAME_TIERS[0] as u64,
        NAME_TIERS[1] as u64,
        NAME_TIERS[2] as u64,
        ANSWER_CLASSES[0] as u64,
        ANSWER_CLASSES[1] as u64,
        ANSWER_CLASSES[2] as u64,
        REF_CLASS_SHIFT as u64,
        SOA_ENTRIES_PER_BANK as u64,
        SOA_BANKS as u64,
        ZONE_MAX as u64,
        name::MAX_LABELS as u64,
        name::HASH_KEYS as u64,
        offset_of!(NameRecord48, name) as u64,
        offset_of!(Layout, types_hash) as u64,
        offset_of!(Layout, serial) as u64,
        offset_of!(Layout, zone) as u64,
        AnswerClass::Small as u64,
        AnswerClass::Medium as u64,
        AnswerClass::Large as u64,
        AnswerClass::Nodata as u64,
        AnswerClass::Userspace as u64,
        AnswerClass::Truncated as u64,
    ];
    // FNV-1a over the words' bytes, then over the verdicts' names in
    // counter order (a verdict added, removed or moved changes what a
    // counter field means without changing the struct's size).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < words.len() {
        let b = words[i].to_le_bytes();
        let mut j = 0;
        while j < 8 {
            h ^= b[j] as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            j += 1;
        }
        i += 1;
    }
    let mut v = 0;
    while v < VERDICT_COUNT {
        let name = Verdict::ALL[v].name().as_bytes();
        let mut j = 0;
        while j < name.len() {
            h ^= name[j] as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
            j += 1;
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
        v += 1;
    }
    h
};

/// Adds `bytes` to a 32-bit one's complement accumulator as 16-bit big-endian
/// words, the way the UDP checksum reads them when `bytes` starts at an even
/// offset. The caller folds with [`csum_fold`].
pub fn csum_add_bytes(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Folds a 32-bit accumulator into a 16-bit one's complement sum.
pub const fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

#[cfg(feature = "user")]
mod user {
    use super::*;

    /// The map keys and values, which aya copies to and from the kernel as
    /// bytes.
    macro_rules! pod {
        ($($t:ty),* $(,)?) => {$(
            // SAFETY: repr(C), Copy, and made of integers and integer arrays
            // only, with every gap an explicit `_pad` field, so no byte is
            // uninitialised padding. The one field that not every byte
            // value fits is a name record's `AnswerClass` (0..=5); the
            // name maps' only writer is the daemon, which writes
            // `AnswerClass` values, and pinned maps of another layout are
            // never adopted (`Layout`).
            unsafe impl aya::Pod for $t {}
        )*};
    }

    pod!(
        NameHash,
        NameRecord48,
        NameRecord112,
        NameRecord256,
        AnswerS,
        AnswerM,
        AnswerL,
        Authority,
        DnsAddr,
        Config,
        Counters,
        Layout,
    );
}
