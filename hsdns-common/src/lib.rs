//! Types shared by the XDP program and the daemon: the layout of every BPF map.
//!
//! Memory drives the layout (150,000 pods, 10,000 services): names are keys of
//! three hash maps whose key sizes are tiers of the wire-format name length, so
//! a typical 50-byte pod name costs a 64-byte key, not a 256-byte one; answers
//! live in array maps of three size classes, so the common one-address answer
//! costs 56 bytes while a 76-address headless service still fits.
#![no_std]

/// Longest wire-format name (RFC 1035 2.3.4), root label included.
pub const MAX_NAME_LEN: usize = 255;
/// The largest DNS message the XDP program sends, and the UDP payload size it
/// advertises in its OPT record (DNS flag day 2020).
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Reply size limit for a client that sent no OPT record (RFC 1035 4.2.1).
pub const PLAIN_UDP_SIZE: u16 = 512;
/// The only port the XDP program answers on.
pub const DNS_PORT: u16 = 53;

/// Key sizes of the three name maps. A name of wire length `n` lives in the
/// first tier with `n <= tier`, zero padded to the tier size.
pub const NAME_TIERS: [usize; 3] = [64, 128, 256];

/// Map names, as pinned under [`PIN_DIR`].
pub const MAP_NAMES: [&str; 3] = ["names_64", "names_128", "names_256"];
pub const MAP_ANSWERS: [&str; 3] = ["answers_s", "answers_m", "answers_l"];
pub const MAP_SOA: &str = "soa";
pub const MAP_DNS_ADDRS: &str = "dns_addrs";
pub const MAP_CONFIG: &str = "config";
pub const MAP_COUNTERS: &str = "counters";
pub const MAP_LAYOUT: &str = "layout";
pub const PROGRAM_NAME: &str = "hsdns";
pub const PIN_DIR: &str = "/sys/fs/bpf/hsdns";

#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NameKey64 {
    pub name: [u8; 64],
}
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NameKey128 {
    pub name: [u8; 128],
}
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NameKey256 {
    pub name: [u8; 256],
}

/// A reference to an answer: `class << 30 | slot` in the answer map of that
/// class, or one of the sentinels below.
pub type AnswerRef = u32;
/// The name exists but has no record of this type: NOERROR, no answer, the
/// zone's SOA in the authority section (NODATA, RFC 2308).
pub const REF_NODATA: AnswerRef = u32::MAX;
/// Records exist but the kernel must not answer them (too large for any UDP
/// reply, or not stored): pass the query up to userspace.
pub const REF_PASS: AnswerRef = u32::MAX - 1;
pub const REF_CLASS_SHIFT: u32 = 30;
pub const REF_SLOT_MASK: u32 = (1 << REF_CLASS_SHIFT) - 1;

pub const fn answer_ref(class: u32, slot: u32) -> AnswerRef {
    (class << REF_CLASS_SHIFT) | (slot & REF_SLOT_MASK)
}

/// Value of the name maps: what the kernel knows about one name.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct NameRecord {
    /// Answer for QTYPE A.
    pub a: AnswerRef,
    /// Answer for QTYPE AAAA.
    pub aaaa: AnswerRef,
    /// RCODE of the reply (0 NOERROR, 3 NXDOMAIN).
    pub rcode: u8,
    /// Which zone's SOA goes into a negative answer: index `zone * 256 + qname
    /// wire length` of the `soa` map.
    pub zone: u8,
    /// `FLAG_APEX`: this name is the apex of the cluster zone.
    pub flags: u8,
    pub _pad: u8,
}

/// The name is the cluster zone's apex: names below it that are missing
/// from the maps follow the NXDOMAIN rule of `Config::nxdomain`.
pub const FLAG_APEX: u8 = 1;

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
            /// Length of the answer section (of one copy, see `stride`).
            pub len: u16,
            /// ANCOUNT of the reply.
            pub count: u16,
            /// One's complement sum of the answer as if it started at an
            /// even offset (see [`csum_add_bytes`]), so the kernel never loops
            /// over an answer to checksum it.
            pub csum: u16,
            /// Size of each record when all have the same size (they do:
            /// every owner is a pointer to the question): then `bytes` holds
            /// the answer twice in a row, and the kernel rotates the records
            /// by copying `len` bytes from `k * stride`, one helper call
            /// whose bounds the verifier can see. Rotating by whole records
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
answer_class!(AnswerM, 384);
answer_class!(AnswerL, 2432);

/// Authority section of a negative answer: the zone's SOA with its owner
/// compressed against the question. The pointer depends on where the zone
/// starts in the question, so the daemon stores one per question length.
pub const SOA_BYTES: usize = 184;
pub const SOA_ENTRIES_PER_ZONE: u32 = 256;
pub const MAX_ZONES: u32 = 4;
answer_class!(Authority, 184);

/// Key of `dns_addrs`: an address the program answers for, with its family
/// so that an IPv6 packet to `::ffff:a.b.c.d` never matches an IPv4 entry.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DnsAddr {
    /// 4 or 6.
    pub family: u32,
    /// IPv4 addresses use the first four bytes, the rest zero.
    pub addr: [u8; 16],
}

impl DnsAddr {
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

/// Runtime switches, one entry.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
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
    /// Wire length of the cluster zone's name, root label included. The
    /// zone itself is the name in the maps flagged `FLAG_APEX`.
    pub zone_len: u32,
    pub _pad: u32,
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
}

impl Config {
    /// How long ago (ns) the heartbeat was written, at `now` (boot-time ns).
    /// A heartbeat from the future (cannot happen) counts as fresh.
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
/// changing (sizes and offsets are hashed by themselves).
pub const TYPES_VERSION: u64 = 1;

/// A hash of every type and constant the kernel and the daemon share
/// through the maps: sizes, alignments, field offsets, tiers and classes.
/// Whoever changes a shared map type changes this hash (a new field moves
/// a size or an offset; a new meaning bumps [`TYPES_VERSION`]), and a
/// daemon with a different hash never adopts the pinned maps.
pub const TYPES_HASH: u64 = {
    use core::mem::{align_of, offset_of, size_of};
    let words: &[u64] = &[
        TYPES_VERSION,
        size_of::<NameKey64>() as u64,
        size_of::<NameKey128>() as u64,
        size_of::<NameKey256>() as u64,
        size_of::<NameRecord>() as u64,
        offset_of!(NameRecord, a) as u64,
        offset_of!(NameRecord, aaaa) as u64,
        offset_of!(NameRecord, rcode) as u64,
        offset_of!(NameRecord, zone) as u64,
        offset_of!(NameRecord, flags) as u64,
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
        size_of::<Config>() as u64,
        offset_of!(Config, answering) as u64,
        offset_of!(Config, nxdomain) as u64,
        offset_of!(Config, zone_len) as u64,
        offset_of!(Config, heartbeat_ns) as u64,
        offset_of!(Config, stale_nxdomain_ns) as u64,
        offset_of!(Config, stale_pass_ns) as u64,
        size_of::<Counters>() as u64,
        size_of::<Layout>() as u64,
        NAME_TIERS[0] as u64,
        NAME_TIERS[1] as u64,
        NAME_TIERS[2] as u64,
        ANSWER_CLASSES[0] as u64,
        ANSWER_CLASSES[1] as u64,
        ANSWER_CLASSES[2] as u64,
        REF_CLASS_SHIFT as u64,
        SOA_ENTRIES_PER_ZONE as u64,
        MAX_ZONES as u64,
        FLAG_APEX as u64,
    ];
    // FNV-1a over the words' bytes.
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
    h
};

/// Per-CPU verdict counters, one entry; each field counts packets.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Counters {
    pub answered_a: u64,
    pub answered_aaaa: u64,
    pub answered_nodata: u64,
    pub answered_nxdomain: u64,
    /// Not Ethernet/IP/UDP to port 53: other traffic.
    pub pass_not_dns: u64,
    /// UDP port 53 but not to one of `dns_addrs`.
    pub pass_not_our_addr: u64,
    /// The daemon has not finished its first sync.
    pub pass_not_ready: u64,
    /// IPv4 fragment or IPv6 extension header.
    pub pass_fragment: u64,
    /// Not a plain query: QR=1, OPCODE, TC, counts, an additional record
    /// that is not an EDNS version 0 OPT.
    pub pass_unsupported_query: u64,
    /// Not class IN, or a QTYPE other than A/AAAA.
    pub pass_unsupported_type: u64,
    pub pass_unknown_name: u64,
    /// The answer does not fit what the client accepts.
    pub pass_too_large: u64,
    /// Lengths that do not add up, labels over 63, compression in the
    /// question, names over 255 bytes.
    pub pass_malformed: u64,
    /// The name's records are kept in userspace only.
    pub pass_userspace_only: u64,
    /// A helper failed (adjusting the packet, a dangling answer reference).
    pub pass_internal: u64,
    /// The frame could not grow to the reply's size. On a veth the frame is
    /// the sender's skb buffer. Measured: in generic (skb) mode a reply 59
    /// bytes longer than the query (three A records and an OPT) fit, one 811
    /// bytes longer (50 records) did not; in native (driver) mode not even
    /// one record fit (the skb is used as is when its headroom suffices).
    pub pass_no_room: u64,
    /// The daemon's heartbeat is older than `Config::stale_pass_ns`: the
    /// maps may be stale, so everything goes up.
    pub pass_stale: u64,
    /// A helper failed after the rewrite began (cannot happen with the
    /// bounds checked before it; counted so it would not go unseen).
    pub dropped_internal: u64,
}

impl Counters {
    /// Every counter with its field name, in declaration order (for
    /// metrics and summing per-CPU values without listing fields again).
    pub fn fields(&self) -> [(&'static str, u64); 18] {
        [
            ("answered_a", self.answered_a),
            ("answered_aaaa", self.answered_aaaa),
            ("answered_nodata", self.answered_nodata),
            ("answered_nxdomain", self.answered_nxdomain),
            ("pass_not_dns", self.pass_not_dns),
            ("pass_not_our_addr", self.pass_not_our_addr),
            ("pass_not_ready", self.pass_not_ready),
            ("pass_fragment", self.pass_fragment),
            ("pass_unsupported_query", self.pass_unsupported_query),
            ("pass_unsupported_type", self.pass_unsupported_type),
            ("pass_unknown_name", self.pass_unknown_name),
            ("pass_too_large", self.pass_too_large),
            ("pass_malformed", self.pass_malformed),
            ("pass_userspace_only", self.pass_userspace_only),
            ("pass_internal", self.pass_internal),
            ("pass_no_room", self.pass_no_room),
            ("pass_stale", self.pass_stale),
            ("dropped_internal", self.dropped_internal),
        ]
    }

    /// Field-wise sum, for per-CPU values.
    pub fn add(&mut self, o: &Counters) {
        self.answered_a += o.answered_a;
        self.answered_aaaa += o.answered_aaaa;
        self.answered_nodata += o.answered_nodata;
        self.answered_nxdomain += o.answered_nxdomain;
        self.pass_not_dns += o.pass_not_dns;
        self.pass_not_our_addr += o.pass_not_our_addr;
        self.pass_not_ready += o.pass_not_ready;
        self.pass_fragment += o.pass_fragment;
        self.pass_unsupported_query += o.pass_unsupported_query;
        self.pass_unsupported_type += o.pass_unsupported_type;
        self.pass_unknown_name += o.pass_unknown_name;
        self.pass_too_large += o.pass_too_large;
        self.pass_malformed += o.pass_malformed;
        self.pass_userspace_only += o.pass_userspace_only;
        self.pass_internal += o.pass_internal;
        self.pass_no_room += o.pass_no_room;
        self.pass_stale += o.pass_stale;
        self.dropped_internal += o.dropped_internal;
    }
}

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
    unsafe impl aya::Pod for NameKey64 {}
    unsafe impl aya::Pod for NameKey128 {}
    unsafe impl aya::Pod for NameKey256 {}
    unsafe impl aya::Pod for NameRecord {}
    unsafe impl aya::Pod for AnswerS {}
    unsafe impl aya::Pod for AnswerM {}
    unsafe impl aya::Pod for AnswerL {}
    unsafe impl aya::Pod for Authority {}
    unsafe impl aya::Pod for DnsAddr {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for Layout {}
}
