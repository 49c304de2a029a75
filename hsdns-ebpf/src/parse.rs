//! Ethernet, IP, UDP and the DNS header, read in place.
//!
//! Everything that is not a DNS query to one of our addresses leaves here,
//! after a few reads at fixed offsets: that is the cost the pod's other
//! traffic pays.

use hsdns_common::{DNS_PORT, DnsAddr, Verdict};

use crate::{maps::DNS_ADDRS, packet::Packet, wire::*};

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
    // The `dns_addrs` key, written as words: LLVM would turn a struct
    // literal into a call to the byte-wise memset the BPF target links in.
    let mut dst = core::mem::MaybeUninit::<[u32; 5]>::uninit();
    let d = dst.as_mut_ptr() as *mut u32;
    let set = |i: usize, v: u32| {
        // SAFETY: i < 5, inside `dst`.
        unsafe { core::ptr::write_volatile(d.add(i), v) }
    };
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
            set(0, 4);
            set(1, rd32(ip + IPV4_DADDR_OFF));
            set(2, 0);
            set(3, 0);
            set(4, 0);
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
            set(0, 6);
            for i in 0..4 {
                set(1 + i, rd32(ip + IPV6_DADDR_OFF + 4 * i));
            }
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
    // The key lives on the stack; [u32; 5] has DnsAddr's layout (family,
    // then 16 address bytes).
    // SAFETY: every word was written on the paths that get here.
    let dst = unsafe { dst.assume_init() };
    // SAFETY: [u32; 5] has DnsAddr's size and alignment.
    let key = unsafe { &*(dst.as_ptr() as *const DnsAddr) };
    // SAFETY: a read-only lookup.
    if unsafe { DNS_ADDRS.get(key) }.is_none() {
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
        v6: dst[0] == 6,
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
