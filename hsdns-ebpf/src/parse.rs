//! Ethernet, IP, UDP and the DNS header, read in place.
//!
//! Everything that is not a DNS query to one of our addresses leaves here,
//! after a few reads at fixed offsets: that is the cost the pod's other
//! traffic pays.

use hsdns_common::{DNS_ADDR_SLOTS, DNS_PORT, Verdict};

use crate::{
    maps::DNS_ADDRS,
    mem::{ld32, ld64},
    packet::Packet,
    wire::*,
};

/// Where the headers are, and what the question needs from them.
pub struct Headers {
    /// Ethernet header length (14, or 18 with an 802.1Q tag).
    pub l2: usize,
    pub v6: bool,
    /// IP header length (IPv4 with options, or 40).
    pub l3_len: usize,
    /// Offset of the UDP header.
    pub l4: usize,
    /// Length of the DNS message.
    pub dns_len: usize,
    /// Length of the whole packet.
    pub pkt_len: usize,
    /// The DNS header's flags word and counts.
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Headers {
    #[inline(always)]
    pub fn dns(&self) -> usize {
        self.l4 + UDP_HLEN
    }

    /// A standard query with one question and at most an OPT record.
    #[inline(always)]
    pub fn plain_query(&self) -> bool {
        self.flags & (DNS_QR | DNS_OPCODE | DNS_TC) == 0
            && self.qdcount == 1
            && self.ancount == 0
            && self.nscount == 0
            && self.arcount <= 1
    }
}

#[inline(always)]
fn be16(p: usize) -> u16 {
    // SAFETY: callers check p + 2 against the packet end first.
    unsafe { u16::from_be(core::ptr::read_unaligned(p as *const u16)) }
}

#[inline(always)]
fn rd32(p: usize) -> u32 {
    // SAFETY: callers check p + 4 against the packet end first.
    unsafe { core::ptr::read_unaligned(p as *const u32) }
}

#[inline(always)]
fn byte(p: usize) -> u8 {
    // SAFETY: as above.
    unsafe { *(p as *const u8) }
}

/// Whether `dst` (a [`hsdns_common::DnsAddr`] as three little-endian words: family and
/// the address's first four bytes, the next eight, the last four) is in
/// `dns_addrs`. A scan of the array's slots: each slot's lookup is inlined
/// by the verifier (a bounds check and an add), no call, where a hash map
/// lookup would be a kernel function call on every UDP/53 packet. Empty
/// slots (family 0) never match.
#[inline(always)]
fn ours(dst: &[u64; 3]) -> bool {
    for i in 0..DNS_ADDR_SLOTS {
        let Some(slot) = DNS_ADDRS.get_ptr(i) else {
            return false;
        };
        let a = slot as usize;
        // SAFETY: a `DnsAddr` (20 bytes) of the map's memory; the loads
        // are single unaligned instructions (see `mem`).
        unsafe {
            if ld64(a) == dst[0] && ld64(a + 8) == dst[1] && ld32(a + 16) as u64 == dst[2] {
                return true;
            }
        }
    }
    false
}

/// Reads Ethernet, IP and UDP; Ok only for UDP to port 53 of one of our
/// addresses, with lengths that add up. The packet's length (a helper
/// call on XDP) is asked only once the packet is UDP to port 53.
#[inline(always)]
pub fn headers<P: Packet>(p: &P) -> Result<Headers, Verdict> {
    // Room for Ethernet with a tag and an IPv6 or option-less IPv4 header
    // with UDP and DNS headers, if the packet is that long.
    p.make_readable(ETH_HLEN + VLAN_HLEN + IPV6_HLEN + UDP_HLEN + DNS_HLEN);
    let (start, end) = p.bounds();
    if start + ETH_HLEN + IPV4_HLEN + 4 > end {
        return Err(Verdict::NotDns);
    }
    let mut l2 = ETH_HLEN;
    let mut ethertype = be16(start + ETH_TYPE_OFF);
    if ethertype == ETH_P_8021Q {
        if start + ETH_HLEN + VLAN_HLEN + IPV4_HLEN + 4 > end {
            return Err(Verdict::NotDns);
        }
        ethertype = be16(start + ETH_TYPE_OFF + VLAN_HLEN);
        l2 = ETH_HLEN + VLAN_HLEN;
    }
    let ip = start + l2;
    // The destination as a `dns_addrs` slot reads (see `ours`).
    let mut dst = [0u64; 3];
    let (l3_len, ip_len) = match ethertype {
        ETH_P_IP => {
            // 20 bytes readable, checked above for either l2.
            if byte(ip) >> 4 != 4 {
                return Err(Verdict::NotDns);
            }
            let ihl = ((byte(ip) & 0xf) as usize) * 4;
            if ihl < IPV4_HLEN {
                return Err(Verdict::Malformed);
            }
            if byte(ip + IPV4_PROTO_OFF) != IPPROTO_UDP {
                return Err(Verdict::NotDns);
            }
            // MF set or a fragment offset: reassembly is the stack's job.
            if be16(ip + IPV4_FRAG_OFF) & IPV4_FRAG_MASK != 0 {
                return Err(Verdict::Fragment);
            }
            let total = be16(ip + IPV4_TOT_LEN_OFF) as usize;
            dst[0] = 4 | (rd32(ip + IPV4_DADDR_OFF) as u64) << 32;
            (ihl, total)
        }
        ETH_P_IPV6 => {
            if ip + IPV6_HLEN > end || byte(ip) >> 4 != 6 {
                return Err(Verdict::NotDns);
            }
            let next = byte(ip + IPV6_NEXT_OFF);
            if next != IPPROTO_UDP {
                // A fragment header (44) or any other extension header:
                // the kernel stack deals with those.
                return Err(if next == IPPROTO_TCP || next == IPPROTO_ICMPV6 {
                    Verdict::NotDns
                } else {
                    Verdict::Fragment
                });
            }
            let payload = be16(ip + IPV6_PLEN_OFF) as usize;
            let a = ip + IPV6_DADDR_OFF;
            dst[0] = 6 | (rd32(a) as u64) << 32;
            dst[1] = rd32(a + 4) as u64 | (rd32(a + 8) as u64) << 32;
            dst[2] = rd32(a + 12) as u64;
            (IPV6_HLEN, IPV6_HLEN + payload)
        }
        _ => return Err(Verdict::NotDns),
    };
    let l4 = l2 + l3_len;
    if l4 > ETH_HLEN + VLAN_HLEN + IPV4_HLEN_MAX {
        return Err(Verdict::Internal);
    }
    // IPv4 options push the UDP header past what was made readable.
    p.make_readable(l4 + UDP_HLEN + DNS_HLEN);
    let (start, end) = p.bounds();
    let udp = start + l4;
    if udp + UDP_HLEN > end {
        return Err(Verdict::NotDns);
    }
    if be16(udp + UDP_DPORT_OFF) != DNS_PORT {
        return Err(Verdict::NotDns);
    }
    let pkt_len = p.len();
    if l2 + ip_len != pkt_len || ip_len < l3_len + UDP_HLEN {
        return Err(Verdict::Malformed);
    }
    if !ours(&dst) {
        return Err(Verdict::NotOurAddr);
    }
    if be16(udp + UDP_SPORT_OFF) == 0 {
        return Err(Verdict::Malformed);
    }
    let udp_len = be16(udp + UDP_LEN_OFF) as usize;
    if l4 + udp_len != pkt_len || udp_len < UDP_HLEN + DNS_HLEN {
        return Err(Verdict::Malformed);
    }
    let dns = udp + UDP_HLEN;
    if dns + DNS_HLEN > end {
        return Err(Verdict::Malformed);
    }
    Ok(Headers {
        l2,
        v6: dst[0] as u32 == 6,
        l3_len,
        l4,
        dns_len: udp_len - UDP_HLEN,
        pkt_len,
        flags: be16(dns + DNS_FLAGS_OFF),
        qdcount: be16(dns + DNS_QDCOUNT_OFF),
        ancount: be16(dns + DNS_ANCOUNT_OFF),
        nscount: be16(dns + DNS_NSCOUNT_OFF),
        arcount: be16(dns + DNS_ARCOUNT_OFF),
    })
}
