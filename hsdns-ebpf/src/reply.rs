//! The reply, written over the query in place.
//!
//! Header sizes stay as they were (an IPv4 query's options become NOPs), so
//! the question stays where it is, byte for byte as the client sent it,
//! 0x20 case included. The new headers and the bytes after the question
//! (section, OPT) are put together in scratch; then the packet is resized
//! once (if that fails, nothing was written and the query goes up intact)
//! and the two pieces are stored, one helper call each.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use hsdns_common::{ANSWER_CLASSES, Verdict};

use crate::{
    checksum::{OPT_SUM, add_le, at_offset, finish_udp, fold, le_to_be, opt_record},
    maps::Scratch,
    mem::{ld16, ld32, st16, st32, st64},
    packet::Packet,
    parse::Headers,
    profile::stop,
    verifier::merge,
    wire::*,
};

/// Precomputed bytes going into the reply, in a map value: where they
/// are, as a plain address (see [`Plan`]), and what the value says of them.
#[derive(Clone, Copy)]
pub struct Section {
    /// 0: the bytes are in `Scratch::out` already.
    pub addr: usize,
    pub len: usize,
    pub csum: u16,
    pub count: u16,
    pub stride: u16,
}

/// What the reply says, decided before the packet is touched.
///
/// Every way to a reply (an answer of each size class, NODATA, NXDOMAIN,
/// TC) ends in the same plan, of plain numbers: the section's bytes are
/// copied into scratch by address (`bpf_probe_read_kernel`), not stored
/// from a map value pointer, whose type (which map) would make the
/// verifier walk the rewrite once per map.
pub struct Plan {
    pub verdict: Verdict,
    /// Answer or authority bytes; `len` 0 in a truncated reply.
    pub section: Section,
    /// The section is the SOA of a negative answer (authority section).
    pub authority: bool,
    pub rcode: u16,
    pub truncated: bool,
    pub has_opt: bool,
}

/// The scratch copy of the headers (Ethernet to the DNS header): at most
/// a tagged Ethernet header, IPv4 with 40 bytes of options, UDP and DNS.
pub const HDR_MAX: usize = ETH_HLEN + VLAN_HLEN + IPV4_HLEN_MAX + UDP_HLEN + DNS_HLEN;
const HDR_MASK: usize = 127;

// The header accessors: single (unaligned) loads and stores, see `mem`.

#[inline(always)]
fn rd16(b: *const u8, off: usize) -> u16 {
    // SAFETY: off is masked into the header buffer (128 bytes, 8 spare).
    u16::from_be(unsafe { ld16(b.add(off & HDR_MASK) as usize) })
}

#[inline(always)]
fn wr16(b: *mut u8, off: usize, v: u16) {
    // SAFETY: as in `rd16`.
    unsafe { st16(b.add(off & HDR_MASK) as usize, v.to_be()) }
}

#[inline(always)]
fn rd32(b: *const u8, off: usize) -> u32 {
    // SAFETY: as in `rd16`.
    unsafe { ld32(b.add(off & HDR_MASK) as usize) }
}

#[inline(always)]
fn wr32(b: *mut u8, off: usize, v: u32) {
    // SAFETY: as in `rd16`.
    unsafe { st32(b.add(off & HDR_MASK) as usize, v) }
}

#[inline(always)]
fn wr8(b: *mut u8, off: usize, v: u8) {
    // SAFETY: as in `rd16`.
    unsafe { *b.add(off & HDR_MASK) = v }
}

/// Writes the reply. `qlen` is the question's length (name, QTYPE,
/// QCLASS); `q_sum_le` its little-endian word sum.
#[inline(always)]
pub fn write<P: Packet>(
    p: &P,
    s: &mut Scratch,
    h: &Headers,
    qlen: usize,
    q_sum_le: u64,
    plan: &Plan,
    pkt_len: usize,
) -> Result<(), Verdict> {
    let l2 = h.l2;
    let l4 = h.l4;
    let dns = l4 + UDP_HLEN;
    let sec = plan.section;
    let sec_len = if plan.truncated { 0 } else { sec.len };
    let sec_len = merge(s, 4, sec_len as u64) as usize;
    if sec_len > ANSWER_CLASSES[2] {
        return Err(Verdict::Internal);
    }
    let opt_len = if plan.has_opt { OPT_RR_LEN } else { 0 };
    let dns_len = DNS_HLEN + qlen + sec_len + opt_len;
    let udp_len = UDP_HLEN + dns_len;
    let new_len = dns + dns_len;

    // The section into scratch. Multi-record answers rotate (round robin,
    // as CoreDNS's loadbalance plugin does: clients take the first
    // address), as two pieces.
    let mut off = 0usize;
    if sec_len > 0 && sec.stride != 0 && sec.count > 1 {
        s.rot = s.rot.wrapping_add(1);
        off = ((s.rot % sec.count as u32) * sec.stride as u32) as usize;
    }
    let off = merge(s, 5, off as u64) as usize;
    if off > sec_len {
        return Err(Verdict::Internal);
    }
    let head = merge(s, 6, (sec_len - off) as u64) as usize;
    if head > ANSWER_CLASSES[2] || off > ANSWER_CLASSES[2] {
        return Err(Verdict::Internal);
    }
    let out = s.out.as_mut_ptr() as *mut u8;
    // SAFETY: the source is the section's map memory, by address (the
    // helper checks it and cannot fault); the destination is `out`,
    // 2 * ANSWER_CLASSES[2] bytes, and head, off <= ANSWER_CLASSES[2].
    unsafe {
        if sec_len > 0
            && sec.addr != 0
            && (bpf_probe_read_kernel(out.cast(), head as u32, (sec.addr + off) as *const _) != 0
                || (off > 0
                    && bpf_probe_read_kernel(
                        out.add(head).cast(),
                        off as u32,
                        sec.addr as *const _,
                    ) != 0))
        {
            return Err(Verdict::Internal);
        }
    }

    // The resize comes first: if it fails, nothing has been written.
    // The headers, Ethernet to DNS, are rewritten in scratch and stored in
    // one call: a direct write into the packet would make the verifier
    // give the tc program a prologue that unclones every skb it sees,
    // copying the head of every TCP segment the pod sends (measured: TCP
    // over the veth at half its speed).
    let hdr_len = merge(s, 6, (dns + DNS_HLEN) as u64) as usize;
    if !(ETH_HLEN + IPV4_HLEN + UDP_HLEN + DNS_HLEN..=HDR_MAX).contains(&hdr_len) {
        return Err(Verdict::Internal);
    }
    if !p.load::<HDR_MAX>(0, s.hdr.as_mut_ptr().cast(), hdr_len) {
        return Err(Verdict::Internal);
    }
    let hb = s.hdr.as_mut_ptr() as *mut u8;

    // Ethernet: MACs swapped, VLAN tag and EtherType kept.
    let (d0, d1, s0, s1) = (rd32(hb, 0), rd16(hb, 4), rd32(hb, 6), rd16(hb, 10));
    wr32(hb, 0, s0);
    wr16(hb, 4, s1);
    wr32(hb, 6, d0);
    wr16(hb, 10, d1);

    // IP: addresses swapped (their sum, for the pseudo-header, does not
    // change), fresh length and TTL.
    let mut addr_le = 0u64;
    if h.v6 {
        wr16(hb, l2 + IPV6_PLEN_OFF, udp_len as u16);
        wr8(hb, l2 + IPV6_HOP_OFF, REPLY_TTL);
        for i in 0..4 {
            let a = l2 + IPV6_SADDR_OFF + 4 * i;
            let b = l2 + IPV6_DADDR_OFF + 4 * i;
            let (x, y) = (rd32(hb, a), rd32(hb, b));
            wr32(hb, a, y);
            wr32(hb, b, x);
            addr_le = add_le(addr_le, x as u64);
            addr_le = add_le(addr_le, y as u64);
        }
    } else {
        let ihl = h.l3_len;
        let (x, y) = (rd32(hb, l2 + IPV4_SADDR_OFF), rd32(hb, l2 + IPV4_DADDR_OFF));
        wr32(hb, l2 + IPV4_SADDR_OFF, y);
        wr32(hb, l2 + IPV4_DADDR_OFF, x);
        addr_le = add_le(addr_le, x as u64);
        addr_le = add_le(addr_le, y as u64);
        let vihl = 0x4000 | ((ihl as u16 / 4) << 8);
        let total = (ihl + udp_len) as u16;
        let id = rd16(hb, l2 + IPV4_ID_OFF);
        let ttl_proto = ((REPLY_TTL as u16) << 8) | IPPROTO_UDP as u16;
        wr16(hb, l2, vihl);
        wr16(hb, l2 + IPV4_TOT_LEN_OFF, total);
        wr16(hb, l2 + IPV4_FRAG_OFF, IPV4_DF);
        wr16(hb, l2 + IPV4_TTL_OFF, ttl_proto);
        // Options (rare: Record Route and the like) are not echoed: NOPs
        // keep the header length, so nothing after it moves.
        let nop_word = u32::from_le_bytes([IPOPT_NOP; 4]);
        for i in 0..(IPV4_HLEN_MAX - IPV4_HLEN) / 4 {
            if IPV4_HLEN + 4 * i >= ihl {
                break;
            }
            wr32(hb, l2 + IPV4_HLEN + 4 * i, nop_word);
        }
        let nops = (ihl - IPV4_HLEN) as u64;
        let sum = vihl as u64 + total as u64 + id as u64 + IPV4_DF as u64 + ttl_proto as u64;
        let sum = sum + (nops / 2) * ((IPOPT_NOP as u64) << 8 | IPOPT_NOP as u64);
        let sum = sum + le_to_be(addr_le);
        wr16(hb, l2 + IPV4_CSUM_OFF, !(fold(sum) as u16));
    }

    // UDP: ports swapped.
    let (sport, dport) = (rd16(hb, l4 + UDP_SPORT_OFF), rd16(hb, l4 + UDP_DPORT_OFF));
    wr16(hb, l4 + UDP_SPORT_OFF, dport);
    wr16(hb, l4 + UDP_DPORT_OFF, sport);
    wr16(hb, l4 + UDP_LEN_OFF, udp_len as u16);

    // DNS header: same ID; QR AA, RD and CD copied; counts.
    let id = rd16(hb, dns + DNS_ID_OFF);
    let flags = DNS_QR
        | DNS_AA
        | (h.flags & (DNS_RD | DNS_CD))
        | if plan.truncated { DNS_TC } else { 0 }
        | plan.rcode;
    let (an, ns) = if sec_len == 0 {
        (0, 0)
    } else if plan.authority {
        (0, 1)
    } else {
        (sec.count, 0)
    };
    let ar = plan.has_opt as u16;
    wr16(hb, dns + DNS_FLAGS_OFF, flags);
    wr16(hb, dns + DNS_ANCOUNT_OFF, an);
    wr16(hb, dns + DNS_NSCOUNT_OFF, ns);
    wr16(hb, dns + DNS_ARCOUNT_OFF, ar);

    // The question stays as sent; the section and the OPT record follow
    // it.
    let sec_at = dns + DNS_HLEN + qlen;
    let opt_at = sec_at + sec_len;
    if plan.has_opt {
        // Eleven bytes as two overlapping words (a byte loop became a
        // call to the BPF target's byte-wise memset for the zeros).
        let o = opt_record();
        let w0 = u64::from_le_bytes([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]);
        let w1 = u64::from_le_bytes([o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10]]);
        // SAFETY: sec_len <= ANSWER_CLASSES[2]: inside `out`, which holds
        // two pieces of that size.
        unsafe {
            st64(out.add(sec_len) as usize, w0);
            st64(out.add(sec_len + 3) as usize, w1);
        }
    }

    // UDP checksum, in full (IPv6 requires one; a veth query's own is
    // usually only partial): pseudo-header, UDP and DNS headers, and the
    // sums of the question, the section and the OPT record.
    let mut sum = IPPROTO_UDP as u64 + 2 * udp_len as u64 + sport as u64 + dport as u64;
    sum += id as u64 + flags as u64 + 1 + an as u64 + ns as u64 + ar as u64;
    sum += le_to_be(add_le(q_sum_le, 0) + addr_le);
    if sec_len > 0 {
        sum += at_offset(sec.csum, DNS_HLEN + qlen);
    }
    if plan.has_opt {
        sum += at_offset(OPT_SUM, opt_at - dns);
    }
    wr16(hb, l4 + UDP_CSUM_OFF, finish_udp(sum));

    // Into the packet: resized first (if that fails, nothing was written),
    // then the headers and the tail in two stores.
    stop(9)?;
    p.resize(pkt_len, new_len)?;
    stop(10)?;
    let tail = merge(s, 7, (sec_len + opt_len) as u64) as usize;
    if tail > ANSWER_CLASSES[2] + OPT_RR_LEN {
        return Err(Verdict::Dropped);
    }
    if !p.store::<HDR_MAX>(0, s.hdr.as_ptr() as *const u8, hdr_len)
        || (tail > 0
            && !p.store::<{ ANSWER_CLASSES[2] + OPT_RR_LEN }>(
                sec_at,
                s.out.as_ptr() as *const u8,
                tail,
            ))
    {
        return Err(Verdict::Dropped);
    }
    Ok(())
}
