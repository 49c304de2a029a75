//! The in-kernel half of hsdns: answers UDP DNS queries for names the daemon
//! put into the maps, in place, with XDP_TX; passes everything else up.
//!
//! The program never decides what an answer is. It parses, lowercases the
//! name, looks it up, copies the bytes userspace prepared and fixes lengths
//! and checksums. Anything it cannot answer exactly right is XDP_PASS.
//!
//! Verifier notes: the packet's first bytes are copied into a per-CPU scratch
//! buffer once (`bpf_xdp_load_bytes`) and parsed there with masked indices, so
//! no packet-pointer range tracking is needed; the reply is written back with
//! `bpf_xdp_store_bytes`. Values that differ per path (name length, header
//! sizes) go through a volatile round trip in the scratch map, which merges
//! the verifier's paths (see EBPF-NOTES: "path explosion").
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::{BPF_F_NO_PREALLOC, xdp_action},
        btf_maps::{Array, HashMap, PerCpuArray},
        helpers::generated::{
            bpf_ktime_get_boot_ns, bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_get_buff_len,
            bpf_xdp_load_bytes, bpf_xdp_store_bytes,
        },
        macros::{btf_map, xdp},
        programs::XdpContext,
    };
    use core::ptr::{read_volatile, write_volatile};
    use hsdns_common::*;

    const NO_PREALLOC: usize = BPF_F_NO_PREALLOC as usize;

    // Default capacities; the daemon sets the real ones at load time.
    #[btf_map(name = "names_64")]
    static NAMES_64: HashMap<NameKey64, NameRecord, 65536, NO_PREALLOC> = HashMap::new();
    #[btf_map(name = "names_128")]
    static NAMES_128: HashMap<NameKey128, NameRecord, 16384, NO_PREALLOC> = HashMap::new();
    #[btf_map(name = "names_256")]
    static NAMES_256: HashMap<NameKey256, NameRecord, 1024, NO_PREALLOC> = HashMap::new();
    #[btf_map(name = "answers_s")]
    static ANSWERS_S: Array<AnswerS, 65536> = Array::new();
    #[btf_map(name = "answers_m")]
    static ANSWERS_M: Array<AnswerM, 8192> = Array::new();
    #[btf_map(name = "answers_l")]
    static ANSWERS_L: Array<AnswerL, 1024> = Array::new();
    #[btf_map(name = "soa")]
    static SOA: Array<Authority, { (SOA_ENTRIES_PER_ZONE * MAX_ZONES) as usize }> = Array::new();
    #[btf_map(name = "dns_addrs")]
    static DNS_ADDRS: HashMap<DnsAddr, u32, 64> = HashMap::new();
    #[btf_map(name = "config")]
    static CONFIG: Array<Config, 1> = Array::new();
    #[btf_map(name = "counters")]
    static COUNTERS: PerCpuArray<Counters, 1> = PerCpuArray::new();
    /// What the maps were made for; written and read by the daemon only
    /// (see `hsdns_common::Layout`).
    #[btf_map(name = "layout")]
    static LAYOUT: Array<Layout, 1> = Array::new();
    #[btf_map(name = "scratch")]
    static SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

    /// Bytes of the packet parsed from the scratch copy. No query we answer is
    /// longer: 18 (Ethernet + VLAN) + 60 (IPv4 with options) + 8 + 282 (header,
    /// 255-byte name, type, class, OPT).
    const PKT_MAX: usize = 512;
    const PKT_MASK: usize = PKT_MAX - 1;
    const OUT_MAX: usize = 128;
    const OUT_MASK: usize = OUT_MAX - 1;

    #[repr(C)]
    pub struct Scratch {
        pkt: [u8; PKT_MAX],
        /// The lowercased name, zeroed past it. Only the first half is ever
        /// written, so the second stays zero: a suffix of the name starting at
        /// any label can be used as a key in place, up to 256 bytes long.
        key: [u8; 512],
        /// 1 at the offset of each label's length byte, 0 elsewhere.
        is_start: [u8; 256],
        /// For each label start but the first, the start of the label before
        /// it: the name read backwards, which wire format does not allow.
        /// Entries are valid only where `is_start` is set.
        prev: [u8; 256],
        /// New Ethernet/IP/UDP/DNS headers of the reply, written as one block.
        out: [u8; OUT_MAX],
        opt: [u8; 16],
        merge: [u32; 8],
        /// The destination address as a `dns_addrs` key.
        dst: DnsAddr,
        /// Per-CPU round-robin position for rotating multi-record answers.
        rot: u32,
    }

    /// Why a packet went up, or what was answered: a field of `Counters`.
    #[derive(Clone, Copy)]
    enum Verdict {
        AnsweredA,
        AnsweredAaaa,
        AnsweredNodata,
        AnsweredNxdomain,
        NotDns,
        NotOurAddr,
        NotReady,
        Fragment,
        UnsupportedQuery,
        UnsupportedType,
        UnknownName,
        TooLarge,
        Malformed,
        UserspaceOnly,
        Internal,
        /// The frame has no room for the reply.
        NoRoom,
        /// The daemon's heartbeat is past `Config::stale_pass_ns`.
        Stale,
        /// The packet was already being rewritten when a helper failed:
        /// it can no longer go up as it came.
        Dropped,
    }

    #[xdp]
    pub fn hsdns(ctx: XdpContext) -> u32 {
        let verdict = match try_hsdns(&ctx) {
            Ok(v) | Err(v) => v,
        };
        count(verdict);
        match verdict {
            Verdict::AnsweredA
            | Verdict::AnsweredAaaa
            | Verdict::AnsweredNodata
            | Verdict::AnsweredNxdomain => xdp_action::XDP_TX,
            Verdict::Dropped => xdp_action::XDP_DROP,
            _ => xdp_action::XDP_PASS,
        }
    }

    /// The floor for any XDP responder, for benchmarks only (never attached):
    /// swaps MACs, IPv4 addresses and UDP ports of the packet in place and
    /// bounces it, with no parsing beyond fixed offsets and no map lookup.
    #[xdp]
    pub fn hsdns_floor(ctx: XdpContext) -> u32 {
        let (start, end) = (ctx.data(), ctx.data_end());
        if start + 14 + 20 + 8 > end {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: the 42 bytes were bounds-checked above.
        unsafe {
            let p = start as *mut u8;
            for i in 0..6 {
                core::ptr::swap(p.add(i), p.add(6 + i));
            }
            for i in 0..4 {
                core::ptr::swap(p.add(26 + i), p.add(30 + i));
            }
            for i in 0..2 {
                core::ptr::swap(p.add(34 + i), p.add(36 + i));
            }
        }
        xdp_action::XDP_TX
    }

    #[inline(always)]
    fn count(v: Verdict) {
        let Some(c) = COUNTERS.get_ptr_mut(0) else {
            return;
        };
        // SAFETY: a per-CPU map value, valid for the whole program run.
        let c = unsafe { &mut *c };
        let field = match v {
            Verdict::AnsweredA => &mut c.answered_a,
            Verdict::AnsweredAaaa => &mut c.answered_aaaa,
            Verdict::AnsweredNodata => &mut c.answered_nodata,
            Verdict::AnsweredNxdomain => &mut c.answered_nxdomain,
            Verdict::NotDns => &mut c.pass_not_dns,
            Verdict::NotOurAddr => &mut c.pass_not_our_addr,
            Verdict::NotReady => &mut c.pass_not_ready,
            Verdict::Fragment => &mut c.pass_fragment,
            Verdict::UnsupportedQuery => &mut c.pass_unsupported_query,
            Verdict::UnsupportedType => &mut c.pass_unsupported_type,
            Verdict::UnknownName => &mut c.pass_unknown_name,
            Verdict::TooLarge => &mut c.pass_too_large,
            Verdict::Malformed => &mut c.pass_malformed,
            Verdict::UserspaceOnly => &mut c.pass_userspace_only,
            Verdict::Internal => &mut c.pass_internal,
            Verdict::NoRoom => &mut c.pass_no_room,
            Verdict::Stale => &mut c.pass_stale,
            Verdict::Dropped => &mut c.dropped_internal,
        };
        *field += 1;
    }

    #[inline(always)]
    fn b(buf: &[u8; PKT_MAX], i: usize) -> u32 {
        buf[i & PKT_MASK] as u32
    }

    #[inline(always)]
    fn be16(buf: &[u8; PKT_MAX], i: usize) -> u32 {
        (b(buf, i) << 8) | b(buf, i + 1)
    }

    /// Adds one byte at DNS-relative position `pos` to a checksum accumulator:
    /// the high half of a 16-bit word at even positions, the low half at odd.
    #[inline(always)]
    fn csum_byte(sum: u32, byte: u32, pos: usize) -> u32 {
        sum + (byte << (((pos & 1) ^ 1) * 8))
    }

    /// Adds a precomputed sum of bytes that start at DNS-relative `pos`:
    /// one's complement sums are byte-order independent, so data at an odd
    /// position contributes its byte-swapped even-position sum (RFC 1071).
    #[inline(always)]
    fn csum_block(sum: u32, block: u16, pos: usize) -> u32 {
        sum + if pos & 1 == 0 {
            block as u32
        } else {
            block.swap_bytes() as u32
        }
    }

    /// Round-trips a value through map memory so the verifier forgets which
    /// path produced it and stops walking the rest of the program per value.
    #[inline(always)]
    fn merge(s: &mut Scratch, slot: usize, v: u32) -> u32 {
        let p = &mut s.merge[slot & 7] as *mut u32;
        // SAFETY: p points into the scratch map value.
        unsafe {
            write_volatile(p, v);
            read_volatile(p)
        }
    }

    struct Answer {
        bytes: *const u8,
        len: usize,
        count: u16,
        csum: u16,
        stride: u16,
        class: u32,
    }

    #[inline(always)]
    fn try_hsdns(ctx: &XdpContext) -> Result<Verdict, Verdict> {
        let s = SCRATCH.get_ptr_mut(0).ok_or(Verdict::Internal)?;
        // SAFETY: the per-CPU scratch value is ours for the whole run.
        let s = unsafe { &mut *s };

        // SAFETY: ctx.ctx is the program's context.
        let pkt_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) } as usize;
        if pkt_len < 14 + 20 + 8 {
            return Err(Verdict::NotDns);
        }
        let mut copy = pkt_len;
        if copy > PKT_MAX {
            copy = PKT_MAX;
        }
        let copy = merge(s, 0, copy as u32) as usize;
        if copy < 1 || copy > PKT_MAX {
            return Err(Verdict::Internal);
        }
        // SAFETY: the helper bounds-checks against the packet; the buffer
        // holds PKT_MAX bytes.
        if unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, s.pkt.as_mut_ptr().cast(), copy as u32) } != 0 {
            return Err(Verdict::Internal);
        }
        let p = &s.pkt;

        // Ethernet, optionally one 802.1Q tag.
        let mut l2 = 14usize;
        let mut ethertype = be16(p, 12);
        if ethertype == 0x8100 {
            ethertype = be16(p, 16);
            l2 = 18;
        }
        let v6 = match ethertype {
            0x0800 => false,
            0x86dd => true,
            _ => return Err(Verdict::NotDns),
        };

        // IP: the destination as a `dns_addrs` key; the UDP header's offset.
        // SAFETY: the key's 20 bytes as five in-bounds words of the scratch
        // value; volatile, for the same reason as above.
        unsafe {
            let w = &mut s.dst as *mut DnsAddr as *mut u32;
            for i in 0..5 {
                write_volatile(w.add(i), 0);
            }
        }
        let p = &s.pkt;
        let dst = &mut s.dst;
        dst.family = 6;
        let l3_len;
        if v6 {
            l3_len = 40usize;
            if copy < l2 + 40 + 8 || b(p, l2) >> 4 != 6 {
                return Err(Verdict::NotDns);
            }
            let next = b(p, l2 + 6);
            if next != 17 {
                // Fragment header (44) or any other extension header: the
                // kernel stack deals with those.
                return Err(if next == 6 || next == 58 {
                    Verdict::NotDns
                } else {
                    Verdict::Fragment
                });
            }
            let payload = be16(p, l2 + 4) as usize;
            if l2 + 40 + payload != pkt_len {
                return Err(Verdict::Malformed);
            }
            for i in 0..16 {
                dst.addr[i] = p[(l2 + 24 + i) & PKT_MASK];
            }
        } else {
            if copy < l2 + 20 + 8 || b(p, l2) >> 4 != 4 {
                return Err(Verdict::NotDns);
            }
            let ihl = ((b(p, l2) & 0xf) * 4) as usize;
            if ihl < 20 {
                return Err(Verdict::Malformed);
            }
            l3_len = ihl;
            if b(p, l2 + 9) != 17 {
                return Err(Verdict::NotDns);
            }
            // MF set or a fragment offset: reassembly is the stack's job.
            if be16(p, l2 + 6) & 0x3fff != 0 {
                return Err(Verdict::Fragment);
            }
            let total = be16(p, l2 + 2) as usize;
            if l2 + total != pkt_len || total < ihl + 8 {
                return Err(Verdict::Malformed);
            }
            dst.family = 4;
            for i in 0..4 {
                dst.addr[i] = p[(l2 + 16 + i) & PKT_MASK];
            }
        }
        let l4 = merge(s, 1, (l2 + l3_len) as u32) as usize;
        if l4 > 18 + 60 {
            return Err(Verdict::Internal);
        }
        let p = &s.pkt;
        if copy < l4 + 8 {
            return Err(Verdict::NotDns);
        }
        if be16(p, l4 + 2) != DNS_PORT as u32 {
            return Err(Verdict::NotDns);
        }
        // SAFETY: a read-only lookup; the key lives on the stack.
        if unsafe { DNS_ADDRS.get(&s.dst) }.is_none() {
            return Err(Verdict::NotOurAddr);
        }
        let sport = be16(p, l4);
        if sport == 0 {
            return Err(Verdict::Malformed);
        }
        let udp_len = be16(p, l4 + 4) as usize;
        if l4 + udp_len != pkt_len || udp_len < 8 + 12 {
            return Err(Verdict::Malformed);
        }
        match CONFIG.get(0) {
            Some(c) if c.answering != 0 => {
                // The maps are only as fresh as the daemon's last heartbeat:
                // past this bound nothing is answered from them (past the
                // NXDOMAIN bound, see `provably_missing`, absence proves
                // nothing). Nothing computed here lives on: a value carried
                // through the rest would double the verifier's paths.
                // SAFETY: a helper without arguments.
                let age = c.heartbeat_age(unsafe { bpf_ktime_get_boot_ns() });
                if Config::past(c.stale_pass_ns, age) {
                    return Err(Verdict::Stale);
                }
            }
            _ => return Err(Verdict::NotReady),
        }
        if pkt_len > copy {
            // Longer than any query we answer (EDNS options, more records).
            return Err(Verdict::UnsupportedQuery);
        }
        let dns = l4 + 8;
        let dns_len = udp_len - 8;

        // DNS header: a standard query with one question and at most an OPT.
        let flags = be16(p, dns + 2);
        // QR, OPCODE, TC.
        if flags & 0xfa00 != 0 {
            return Err(Verdict::UnsupportedQuery);
        }
        let arcount = be16(p, dns + 10);
        if be16(p, dns + 4) != 1 || be16(p, dns + 6) != 0 || be16(p, dns + 8) != 0 || arcount > 1 {
            return Err(Verdict::UnsupportedQuery);
        }

        // The question name: lowercased into the key, summed for the UDP
        // checksum as sent (its bytes stay in the packet unchanged).
        // Word stores, volatile so LLVM does not turn them into a call to
        // the byte-wise memset the BPF target links in (measured: most of
        // the per-packet cost).
        for i in 0..32 {
            // SAFETY: in-bounds word slots of the scratch map value.
            unsafe {
                write_volatile(&mut s.key_words()[i], 0);
                write_volatile(&mut s.start_words()[i], 0);
            }
        }
        let q = dns + 12;
        let end = dns + dns_len;
        let mut next = 0usize;
        let mut name_len = 0usize;
        let mut name_sum = 0u32;
        let mut last_start = 0usize;
        for i in 0..MAX_NAME_LEN {
            if q + i >= end {
                return Err(Verdict::Malformed);
            }
            let c = s.pkt[(q + i) & PKT_MASK];
            name_sum = csum_byte(name_sum, c as u32, i);
            if i == next {
                if c == 0 {
                    name_len = i + 1;
                    break;
                }
                // 0xC0 is a compression pointer, 0x40/0x80 extended label
                // types: none belong in a question we answer.
                if c > 63 {
                    return Err(Verdict::Malformed);
                }
                next = i + 1 + c as usize;
                s.key[i] = c;
                // Indexed by the loop counter only: an index derived from
                // packet data here would multiply the verifier's states.
                s.is_start[i] = 1;
                s.prev[i] = last_start as u8;
                last_start = i;
            } else {
                s.key[i] = if c.is_ascii_uppercase() { c | 0x20 } else { c };
            }
        }
        let name_len = merge(s, 2, name_len as u32) as usize;
        if name_len < 1 || name_len > MAX_NAME_LEN {
            // The loop ran out: the name is longer than 255 bytes.
            return Err(Verdict::Malformed);
        }
        let p = &s.pkt;
        let qt = q + name_len;
        if qt + 4 > end {
            return Err(Verdict::Malformed);
        }
        let qtype = be16(p, qt);
        let qclass = be16(p, qt + 2);
        if qclass != 1 || (qtype != 1 && qtype != 28) {
            return Err(Verdict::UnsupportedType);
        }
        let mut client_max = PLAIN_UDP_SIZE as usize;
        let has_opt = arcount == 1;
        let mut tail = qt + 4;
        if has_opt {
            let o = tail;
            if o + 11 > end {
                return Err(Verdict::Malformed);
            }
            // Root owner, TYPE OPT, EDNS version 0. Options (a client
            // COOKIE, padding, ECS) are ignored, not echoed, as RFC 6891 and
            // RFC 7873 let a server that does not implement them do.
            if b(p, o) != 0 || be16(p, o + 1) != 41 || b(p, o + 6) != 0 {
                return Err(Verdict::UnsupportedQuery);
            }
            let size = be16(p, o + 3) as usize;
            if size > client_max {
                client_max = size;
            }
            if client_max > EDNS_UDP_SIZE as usize {
                client_max = EDNS_UDP_SIZE as usize;
            }
            tail = o + 11 + be16(p, o + 9) as usize;
        }
        if tail != end {
            return Err(Verdict::Malformed);
        }

        let rec = match lookup_name(s, name_len) {
            Some(rec) => rec,
            None if provably_missing(s, name_len) => NameRecord {
                a: REF_NODATA,
                aaaa: REF_NODATA,
                rcode: 3,
                zone: 0,
                flags: 0,
                _pad: 0,
            },
            None => return Err(Verdict::UnknownName),
        };
        let r = if qtype == 1 { rec.a } else { rec.aaaa };
        let rcode = rec.rcode as u32;
        let zone = rec.zone as u32;
        if r == REF_PASS {
            return Err(Verdict::UserspaceOnly);
        }
        let ans = if r == REF_NODATA {
            let idx = zone * SOA_ENTRIES_PER_ZONE + name_len as u32;
            let a = SOA.get(idx).ok_or(Verdict::Internal)?;
            if a.len == 0 {
                return Err(Verdict::Internal);
            }
            Answer {
                bytes: a.bytes.as_ptr(),
                len: a.len as usize,
                count: 0,
                csum: a.csum,
                stride: 0,
                class: 3,
            }
        } else {
            answer(r).ok_or(Verdict::Internal)?
        };
        let verdict = if r == REF_NODATA {
            if rcode == 3 {
                Verdict::AnsweredNxdomain
            } else {
                Verdict::AnsweredNodata
            }
        } else if qtype == 1 {
            Verdict::AnsweredA
        } else {
            Verdict::AnsweredAaaa
        };

        let ans_len = merge(s, 3, ans.len as u32) as usize;
        if ans_len < 1 || ans_len > ANSWER_CLASSES[2] {
            return Err(Verdict::Internal);
        }
        // Clients take the first address: start each reply of a multi-record
        // answer one record further (CoreDNS's loadbalance plugin does the
        // same in userspace). The doubled copy makes it one contiguous read.
        let mut rot_off = 0usize;
        if ans.stride != 0 && ans.count > 1 {
            s.rot = s.rot.wrapping_add(1);
            rot_off = ((s.rot % ans.count as u32) * ans.stride as u32) as usize;
        }
        let rot_off = merge(s, 6, rot_off as u32) as usize;
        if rot_off > ANSWER_CLASSES[2] {
            return Err(Verdict::Internal);
        }
        let opt_len = if has_opt { 11 } else { 0 };
        let reply_len = 12 + name_len + 4 + ans_len + opt_len;
        if reply_len > client_max {
            return Err(Verdict::TooLarge);
        }

        let plan = Reply {
            ans,
            rot_off,
            ans_len,
            name_len,
            name_sum,
            has_opt,
            qflags: flags,
            rcode,
            v6,
            l2,
            l3_old: l3_len,
            reply_len,
            pkt_len,
        };
        write_reply(ctx, s, &plan)?;
        Ok(verdict)
    }

    impl Scratch {
        #[inline(always)]
        fn key_words(&mut self) -> &mut [u64; 32] {
            // SAFETY: the first 256 bytes of `key`; the map value is 8-byte
            // aligned and `key` sits at offset 512.
            unsafe { &mut *(self.key.as_mut_ptr() as *mut [u64; 32]) }
        }

        #[inline(always)]
        fn start_words(&mut self) -> &mut [u64; 32] {
            // SAFETY: as above, `is_start` sits at offset 1024.
            unsafe { &mut *(self.is_start.as_mut_ptr() as *mut [u64; 32]) }
        }
    }

    #[inline(always)]
    fn lookup_name(s: &Scratch, name_len: usize) -> Option<NameRecord> {
        lookup_key(s, 0, name_len)
    }

    /// Looks up the name (or suffix of it) of wire length `len` that starts
    /// at `at` in the key buffer.
    #[inline(always)]
    fn lookup_key(s: &Scratch, at: usize, len: usize) -> Option<NameRecord> {
        if at > 255 {
            return None;
        }
        // SAFETY: at + 256 <= 512 bytes of key buffer, zero past the name, so
        // each tier reads its own key size from it.
        unsafe {
            let key = s.key.as_ptr().add(at);
            if len <= NAME_TIERS[0] {
                NAMES_64.get(&*(key as *const NameKey64)).copied()
            } else if len <= NAME_TIERS[1] {
                NAMES_128.get(&*(key as *const NameKey128)).copied()
            } else {
                NAMES_256.get(&*(key as *const NameKey256)).copied()
            }
        }
    }

    /// Whether a name missing from the maps provably does not exist (see
    /// `Config::nxdomain` for the rule and when it holds).
    #[inline(always)]
    fn provably_missing(s: &mut Scratch, name_len: usize) -> bool {
        let Some(cfg) = CONFIG.get(0) else {
            return false;
        };
        if cfg.nxdomain == 0 {
            return false;
        }
        // SAFETY: a helper without arguments.
        let age = cfg.heartbeat_age(unsafe { bpf_ktime_get_boot_ns() });
        if Config::past(cfg.stale_nxdomain_ns, age) {
            return false;
        }
        let zone_len = cfg.zone_len as usize;
        if zone_len < 2 || name_len <= zone_len {
            return false;
        }
        // The zone must end the name and start at one of its labels. (The
        // round trip hides the subtraction from the verifier, which cannot
        // bound a difference of two ranges; the check below bounds it.)
        let zone_start = merge(s, 7, (name_len - zone_len) as u32) as usize;
        if zone_start > 255 || s.is_start[zone_start] != 1 {
            return false;
        }
        // The suffix from there is a key in place (the key buffer is zero
        // past the name), and must be the apex.
        match lookup_key(s, zone_start, zone_len) {
            Some(r) if r.flags & FLAG_APEX != 0 => {}
            _ => return false,
        }
        // The label right before the zone: `svc`, `pod` or anything else.
        let at = s.prev[zone_start & 255] as usize;
        let is = |w: &[u8; 3]| {
            s.key[at & 511] == 3
                && s.key[(at + 1) & 511] == w[0]
                && s.key[(at + 2) & 511] == w[1]
                && s.key[(at + 3) & 511] == w[2]
        };
        // pod.<zone> is for userspace. Under `dns` and `hostmaster` the SOA's
        // own names (ns.dns.<zone>, hostmaster.<zone>) would compress into
        // the question differently from the precomputed bytes: no such name
        // exists, but its NXDOMAIN comes from userspace.
        if is(b"pod") || is(b"dns") || is_hostmaster(s, at) {
            return false;
        }
        if !is(b"svc") {
            return true;
        }
        // Under svc: NXDOMAIN from two labels before it on (a service, or a
        // name below one); `svc.<zone>` and namespaces are left alone. The
        // first label starts at 0, so two labels stand before `svc` exactly
        // when the one right before it does not start at 0.
        at > 0 && s.prev[at & 255] > 0
    }

    #[inline(always)]
    fn is_hostmaster(s: &Scratch, at: usize) -> bool {
        const W: &[u8; 10] = b"hostmaster";
        if s.key[at & 511] != 10 {
            return false;
        }
        for i in 0..10 {
            if s.key[(at + 1 + i) & 511] != W[i] {
                return false;
            }
        }
        true
    }

    #[inline(always)]
    fn answer(r: AnswerRef) -> Option<Answer> {
        let slot = r & REF_SLOT_MASK;
        match r >> REF_CLASS_SHIFT {
            0 => ANSWERS_S.get(slot).map(|a| Answer {
                bytes: a.bytes.as_ptr(),
                len: a.len as usize,
                count: a.count,
                csum: a.csum,
                stride: 0,
                class: 0,
            }),
            1 => ANSWERS_M.get(slot).map(|a| Answer {
                bytes: a.bytes.as_ptr(),
                len: a.len as usize,
                count: a.count,
                csum: a.csum,
                stride: a.stride,
                class: 1,
            }),
            2 => ANSWERS_L.get(slot).map(|a| Answer {
                bytes: a.bytes.as_ptr(),
                len: a.len as usize,
                count: a.count,
                csum: a.csum,
                stride: a.stride,
                class: 2,
            }),
            _ => None,
        }
    }

    #[inline(always)]
    fn put16(out: &mut [u8; OUT_MAX], i: usize, v: u32) {
        out[i & OUT_MASK] = (v >> 8) as u8;
        out[(i + 1) & OUT_MASK] = v as u8;
    }

    /// Everything the rewrite needs, decided before the packet is touched.
    struct Reply {
        ans: Answer,
        /// Where in the (doubled) answer bytes the rotated copy starts.
        rot_off: usize,
        ans_len: usize,
        name_len: usize,
        /// Checksum contribution of the question name as sent.
        name_sum: u32,
        has_opt: bool,
        qflags: u32,
        rcode: u32,
        v6: bool,
        l2: usize,
        l3_old: usize,
        /// DNS message length of the reply.
        reply_len: usize,
        pkt_len: usize,
    }

    #[inline(always)]
    fn write_reply(ctx: &XdpContext, s: &mut Scratch, r: &Reply) -> Result<(), Verdict> {
        let Reply {
            ref ans,
            rot_off,
            ans_len,
            name_len,
            name_sum,
            has_opt,
            qflags,
            rcode,
            v6,
            l2,
            l3_old,
            reply_len,
            pkt_len,
        } = *r;
        let l3 = if v6 { 40 } else { 20 };
        let hdr = l2 + l3 + 8;
        let udp_len = 8 + reply_len;
        let new_len = hdr + reply_len;
        let strip = l3_old - l3;

        // Ethernet: MACs swapped, VLAN tag and EtherType kept.
        {
            let p = &s.pkt;
            let o = &mut s.out;
            for i in 0..6 {
                o[i] = p[6 + i];
                o[6 + i] = p[i];
            }
            for i in 12..18 {
                o[i] = p[i];
            }
        }
        let mut sum: u32 = 0;
        // IP header, addresses swapped, fresh TTL; IPv4 options dropped.
        if v6 {
            let p = &s.pkt;
            let o = &mut s.out;
            for i in 0..4 {
                o[(l2 + i) & OUT_MASK] = p[(l2 + i) & PKT_MASK];
            }
            put16(o, l2 + 4, udp_len as u32);
            o[(l2 + 6) & OUT_MASK] = 17;
            o[(l2 + 7) & OUT_MASK] = 64;
            for i in 0..16 {
                let src = p[(l2 + 8 + i) & PKT_MASK];
                let dst = p[(l2 + 24 + i) & PKT_MASK];
                o[(l2 + 8 + i) & OUT_MASK] = dst;
                o[(l2 + 24 + i) & OUT_MASK] = src;
            }
            for i in 0..16 {
                sum = csum_byte(sum, p[(l2 + 8 + i) & PKT_MASK] as u32, i);
                sum = csum_byte(sum, p[(l2 + 24 + i) & PKT_MASK] as u32, i);
            }
        } else {
            let p = &s.pkt;
            let o = &mut s.out;
            o[l2 & OUT_MASK] = 0x45;
            o[(l2 + 1) & OUT_MASK] = 0;
            put16(o, l2 + 2, (20 + udp_len) as u32);
            // Keep the query's ID; DF, as the stack's UDP replies carry.
            o[(l2 + 4) & OUT_MASK] = p[(l2 + 4) & PKT_MASK];
            o[(l2 + 5) & OUT_MASK] = p[(l2 + 5) & PKT_MASK];
            put16(o, l2 + 6, 0x4000);
            o[(l2 + 8) & OUT_MASK] = 64;
            o[(l2 + 9) & OUT_MASK] = 17;
            put16(o, l2 + 10, 0);
            for i in 0..4 {
                let src = p[(l2 + 12 + i) & PKT_MASK];
                let dst = p[(l2 + 16 + i) & PKT_MASK];
                o[(l2 + 12 + i) & OUT_MASK] = dst;
                o[(l2 + 16 + i) & OUT_MASK] = src;
            }
            let mut ipsum = 0u32;
            for i in 0..20 {
                ipsum = csum_byte(ipsum, o[(l2 + i) & OUT_MASK] as u32, i);
            }
            put16(o, l2 + 10, (!csum_fold(ipsum)) as u32 & 0xffff);
            for i in 0..4 {
                sum = csum_byte(sum, p[(l2 + 12 + i) & PKT_MASK] as u32, i);
                sum = csum_byte(sum, p[(l2 + 16 + i) & PKT_MASK] as u32, i);
            }
        }
        // Pseudo-header: protocol and UDP length (addresses summed above).
        sum += 17 + udp_len as u32;

        // UDP: ports swapped.
        let l4_old = l2 + l3_old;
        let u = l2 + l3;
        {
            let p = &s.pkt;
            let o = &mut s.out;
            let sport = be16(p, l4_old);
            let dport = be16(p, l4_old + 2);
            put16(o, u, dport);
            put16(o, u + 2, sport);
            put16(o, u + 4, udp_len as u32);
            sum += sport + dport + udp_len as u32;
        }
        // DNS header: same ID, QR AA, RD and CD copied, counts.
        let dns_old = l4_old + 8;
        let d = u + 8;
        {
            let p = &s.pkt;
            let id = be16(p, dns_old);
            let flags = 0x8400 | (qflags & 0x0110) | (rcode & 0xf);
            let (an, ns) = if ans.class == 3 {
                (0, 1)
            } else {
                (ans.count as u32, 0)
            };
            let ar = if has_opt { 1 } else { 0 };
            let o = &mut s.out;
            put16(o, d, id);
            put16(o, d + 2, flags);
            put16(o, d + 4, 1);
            put16(o, d + 6, an);
            put16(o, d + 8, ns);
            put16(o, d + 10, ar);
            sum += id + flags + 1 + an + ns + ar;
        }
        // Question (unchanged in the packet), then the copied sections.
        sum += name_sum;
        {
            let p = &s.pkt;
            let qt = dns_old + 12 + name_len;
            for i in 0..4 {
                sum = csum_byte(sum, b(p, qt + i), name_len + i);
            }
        }
        let ans_pos = 12 + name_len + 4;
        sum = csum_block(sum, ans.csum, ans_pos);
        let opt_pos = ans_pos + ans_len;
        if has_opt {
            let o = &mut s.opt;
            // SAFETY: two in-bounds, aligned words of the scratch value;
            // volatile keeps LLVM from calling its byte-wise memset.
            unsafe {
                let w = o.as_mut_ptr() as *mut u64;
                write_volatile(w, 0);
                write_volatile(w.add(1), 0);
            }
            o[2] = 41;
            o[3] = (EDNS_UDP_SIZE >> 8) as u8;
            o[4] = EDNS_UDP_SIZE as u8;
            let opt_sum = csum_fold(csum_add_bytes_11(o));
            sum = csum_block(sum, opt_sum, opt_pos);
        }
        let mut csum = !csum_fold(sum);
        if csum == 0 {
            csum = 0xffff;
        }
        put16(&mut s.out, u + 6, csum as u32);

        // Resize: fit the tail first, then drop IPv4 options at the front;
        // if that fails, restore the tail so the packet goes up untouched.
        let strip = merge(s, 4, strip as u32) as usize;
        if strip > 40 {
            return Err(Verdict::Internal);
        }
        let delta = new_len as i32 + strip as i32 - pkt_len as i32;
        // SAFETY: ctx.ctx is the program's context; no packet pointer is
        // held across these helpers (all access goes through load/store).
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
            // Generic (skb) XDP gives the frame only the skb's own tailroom
            // (see Counters::pass_no_room): larger answers go up.
            return Err(Verdict::NoRoom);
        }
        if strip > 0 && unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) } != 0 {
            if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -delta) } != 0 {
                return Err(Verdict::Dropped);
            }
            return Err(Verdict::Internal);
        }
        let hdr_len = merge(s, 5, (hdr + 12) as u32) as usize;
        if hdr_len < 14 + 20 + 8 + 12 || hdr_len > OUT_MAX {
            return Err(Verdict::Dropped);
        }
        let dns_new = hdr;
        // SAFETY: the helpers bounds-check offsets against the packet, and
        // each length is bounded by its source buffer.
        unsafe {
            if bpf_xdp_store_bytes(ctx.ctx, 0, s.out.as_mut_ptr().cast(), hdr_len as u32) != 0 {
                return Err(Verdict::Dropped);
            }
            let at = (dns_new + ans_pos) as u32;
            let src = ans.bytes.add(rot_off) as *mut _;
            let rc = match ans.class {
                0 if rot_off == 0 && ans_len <= ANSWER_CLASSES[0] => {
                    bpf_xdp_store_bytes(ctx.ctx, at, src, ans_len as u32)
                }
                1 if rot_off <= ANSWER_CLASSES[1] && ans_len <= ANSWER_CLASSES[1] => {
                    bpf_xdp_store_bytes(ctx.ctx, at, src, ans_len as u32)
                }
                2 if rot_off <= ANSWER_CLASSES[2] && ans_len <= ANSWER_CLASSES[2] => {
                    bpf_xdp_store_bytes(ctx.ctx, at, src, ans_len as u32)
                }
                3 if rot_off == 0 && ans_len <= SOA_BYTES => {
                    bpf_xdp_store_bytes(ctx.ctx, at, src, ans_len as u32)
                }
                _ => -1,
            };
            if rc != 0 {
                return Err(Verdict::Dropped);
            }
            if has_opt
                && bpf_xdp_store_bytes(
                    ctx.ctx,
                    (dns_new + opt_pos) as u32,
                    s.opt.as_mut_ptr().cast(),
                    11,
                ) != 0
            {
                return Err(Verdict::Dropped);
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn csum_add_bytes_11(o: &[u8; 16]) -> u32 {
        let mut sum = 0u32;
        for i in 0..11 {
            sum = csum_byte(sum, o[i] as u32, i);
        }
        sum
    }

    #[cfg(not(test))]
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}
