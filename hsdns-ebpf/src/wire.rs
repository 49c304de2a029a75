//! Wire constants: Ethernet (IEEE 802.3, 802.1Q), IPv4 (RFC 791), IPv6
//! (RFC 8200), UDP (RFC 768), DNS (RFC 1035, 6891).

pub const ETH_HLEN: usize = 14;
pub const ETH_ALEN: usize = 6;
/// Offset of the EtherType, and of the inner one behind an 802.1Q tag.
pub const ETH_TYPE_OFF: usize = 12;
pub const VLAN_HLEN: usize = 4;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;

pub const IPV4_HLEN: usize = 20;
pub const IPV4_HLEN_MAX: usize = 60;
pub const IPV4_TOT_LEN_OFF: usize = 2;
pub const IPV4_ID_OFF: usize = 4;
pub const IPV4_FRAG_OFF: usize = 6;
pub const IPV4_TTL_OFF: usize = 8;
pub const IPV4_PROTO_OFF: usize = 9;
pub const IPV4_CSUM_OFF: usize = 10;
pub const IPV4_SADDR_OFF: usize = 12;
pub const IPV4_DADDR_OFF: usize = 16;
/// More-fragments flag and fragment offset.
pub const IPV4_FRAG_MASK: u16 = 0x3fff;
/// Don't fragment: set on replies, as the stack's UDP replies carry it.
pub const IPV4_DF: u16 = 0x4000;
/// Option type "no operation": replies keep the query's header length
/// and replace its options by these.
pub const IPOPT_NOP: u8 = 1;

pub const IPV6_HLEN: usize = 40;
pub const IPV6_PLEN_OFF: usize = 4;
pub const IPV6_NEXT_OFF: usize = 6;
pub const IPV6_HOP_OFF: usize = 7;
pub const IPV6_SADDR_OFF: usize = 8;
pub const IPV6_DADDR_OFF: usize = 24;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
/// TTL / hop limit of replies.
pub const REPLY_TTL: u8 = 64;

pub const UDP_HLEN: usize = 8;
pub const UDP_SPORT_OFF: usize = 0;
pub const UDP_DPORT_OFF: usize = 2;
pub const UDP_LEN_OFF: usize = 4;
pub const UDP_CSUM_OFF: usize = 6;

pub const DNS_HLEN: usize = 12;
pub const DNS_ID_OFF: usize = 0;
pub const DNS_FLAGS_OFF: usize = 2;
pub const DNS_QDCOUNT_OFF: usize = 4;
pub const DNS_ANCOUNT_OFF: usize = 6;
pub const DNS_NSCOUNT_OFF: usize = 8;
pub const DNS_ARCOUNT_OFF: usize = 10;
/// Header flags, as the big-endian word at offset 2.
pub const DNS_QR: u16 = 0x8000;
pub const DNS_OPCODE: u16 = 0x7800;
pub const DNS_AA: u16 = 0x0400;
pub const DNS_TC: u16 = 0x0200;
pub const DNS_RD: u16 = 0x0100;
pub const DNS_CD: u16 = 0x0010;
pub const RCODE_NXDOMAIN: u16 = 3;
/// QTYPE and QCLASS after the question name.
pub const QUESTION_TAIL: usize = 4;
pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;
/// A label's length byte is at most 63; above are pointers (0xC0) and
/// extended label types.
pub const LABEL_MAX: u8 = 63;
/// An OPT record without options: root owner (1), TYPE (2), CLASS = UDP
/// payload size (2), TTL = extended RCODE, version, flags (4), RDLENGTH (2).
pub const OPT_RR_LEN: usize = 11;
pub const OPT_TYPE_OFF: usize = 1;
pub const OPT_SIZE_OFF: usize = 3;
pub const OPT_VERSION_OFF: usize = 6;
pub const OPT_RDLEN_OFF: usize = 9;
