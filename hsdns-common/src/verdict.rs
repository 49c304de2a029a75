//! The verdict table: every outcome of a packet in the kernel, in one list.
//!
//! The kernel program counts each packet under exactly one verdict, the
//! userspace resolver (the kernel's oracle) names its passes with the same
//! values, and the per-CPU `counters` map is a struct with one field per
//! verdict, in this order, so the kernel counts with one indexed add and
//! bpftool prints every counter by name. Adding a verdict here adds it
//! everywhere.

/// What the entry point does with the packet after the verdict.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// The packet was rewritten into the reply: XDP_TX, or a redirect into
    /// the pod on the tc hook.
    Answer,
    /// Up the stack as it came: XDP_PASS, or TC_ACT_UNSPEC on tc, so the
    /// programs after this one (a CNI's) run as they would without it.
    Pass,
    /// Dropped: the rewrite had begun when a helper failed.
    Drop,
}

macro_rules! verdicts {
    ($( $(#[doc = $doc:literal])* $variant:ident = $field:ident => $action:ident, )*) => {
        /// Why a packet went up, or what was answered: a field of
        /// [`Counters`] (see the module documentation).
        #[repr(u32)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
        pub enum Verdict {
            $( $(#[doc = $doc])* $variant, )*
        }

        /// Number of verdicts (and of counter fields).
        pub const VERDICT_COUNT: usize = [$(Verdict::$variant),*].len();

        /// Per-CPU verdict counters, one entry; each field counts packets.
        #[repr(C)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        impl Verdict {
            /// Every verdict, in counter order.
            pub const ALL: [Verdict; VERDICT_COUNT] = [$(Verdict::$variant),*];

            /// The counter field's name (also the metrics label).
            pub const fn name(self) -> &'static str {
                match self { $(Verdict::$variant => stringify!($field),)* }
            }

            pub const fn action(self) -> Action {
                match self { $(Verdict::$variant => Action::$action,)* }
            }
        }

        impl Counters {
            pub fn get(&self, v: Verdict) -> u64 {
                match v { $(Verdict::$variant => self.$field,)* }
            }

            /// Every counter with its field name, in declaration order (for
            /// metrics and summing per-CPU values without listing fields).
            pub fn fields(&self) -> [(&'static str, u64); VERDICT_COUNT] {
                [$((stringify!($field), self.$field),)*]
            }

            /// Field-wise sum, for per-CPU values.
            pub fn add(&mut self, o: &Counters) {
                $(self.$field += o.$field;)*
            }
        }
    };
}

verdicts! {
    /// An A question answered with its records.
    AnsweredA = answered_a => Answer,
    /// An AAAA question answered with its records.
    AnsweredAaaa = answered_aaaa => Answer,
    /// A known name without records of the asked type: NOERROR, the SOA.
    AnsweredNodata = answered_nodata => Answer,
    /// A name that provably does not exist: NXDOMAIN, the SOA.
    AnsweredNxdomain = answered_nxdomain => Answer,
    /// The answer does not fit what the client accepts over UDP (512
    /// bytes without EDNS, its EDNS size up to 1232 with): the header and
    /// question with TC=1 and no records, so the client retries over TCP
    /// at once instead of getting a partial record set.
    AnsweredTruncated = answered_truncated => Answer,
    /// Not Ethernet/IP/UDP to port 53: other traffic.
    NotDns = pass_not_dns => Pass,
    /// UDP port 53 but not to one of `dns_addrs`.
    NotOurAddr = pass_not_our_addr => Pass,
    /// The daemon has not finished its first sync.
    NotReady = pass_not_ready => Pass,
    /// The daemon's heartbeat is older than `Config::stale_pass_ns`.
    Stale = pass_stale => Pass,
    /// IPv4 fragment or IPv6 extension header.
    Fragment = pass_fragment => Pass,
    /// Not a plain query: QR=1, OPCODE, TC, counts, an additional record
    /// that is not an EDNS version 0 OPT.
    UnsupportedQuery = pass_unsupported_query => Pass,
    /// Not class IN, or a QTYPE other than A/AAAA.
    UnsupportedType = pass_unsupported_type => Pass,
    /// Not in the maps, and not provably missing.
    UnknownName = pass_unknown_name => Pass,
    /// Lengths that do not add up, labels over 63, compression in the
    /// question, names over 255 bytes.
    Malformed = pass_malformed => Pass,
    /// The name's A/AAAA answers are kept in userspace (a CNAME, or the
    /// answer maps were full).
    UserspaceOnly = pass_userspace_only => Pass,
    /// A label holds a `.` or NUL byte, which the kernel's dotted form of
    /// names cannot tell from a label boundary or the end, or the name has
    /// more than 32 labels (no such name is ever in the table).
    UnsupportedName = pass_unsupported_name => Pass,
    /// The keyed hash found a record whose stored name or check word does
    /// not match the question: a hash collision, or a map element reused
    /// for another name while it was read. Never an answer, never NXDOMAIN.
    Crossed = pass_crossed => Pass,
    /// A helper or a map read failed before the packet was touched.
    Internal = pass_internal => Pass,
    /// The frame could not grow to the reply's size: generic (skb) XDP on
    /// a veth has only the sender's tailroom (about 59 bytes). The tc hook
    /// grows the packet to any size.
    NoRoom = pass_no_room => Pass,
    /// A helper failed after the rewrite began (cannot happen with the
    /// bounds checked before it; counted so it would not go unseen).
    Dropped = dropped_internal => Drop,
}

impl Verdict {
    /// The verdict with counter index `i`.
    pub const fn from_index(i: usize) -> Option<Verdict> {
        if i < VERDICT_COUNT {
            Some(Verdict::ALL[i])
        } else {
            None
        }
    }
}
