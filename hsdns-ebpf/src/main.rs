//! The in-kernel half of hsdns: answers DNS queries for names the daemon
//! put into the maps, in place; passes everything else up.
//!
//! Two entry points share every stage: tc ingress on pod veths (the reply
//! grows to any size and goes straight back into the pod through the
//! veth's peer) and XDP for interfaces where driver mode works. The stages,
//! one module each: `parse` (Ethernet, IP, UDP, DNS header), `name` (the
//! question, a word at a time), `lookup` (keyed hash, stored name and check
//! verified), `reply` (rewrite in place), `checksum`; `wire` names the
//! constants, `verifier` holds what the verifier needs spelled out,
//! `packet` the two hooks' differences.
//!
//! The program never decides what an answer is: it copies the bytes the
//! daemon prepared. Anything it cannot answer exactly right goes up.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Inline assembly for unaligned word loads and stores (see mem.rs);
// RUSTC_BOOTSTRAP=1 is set for this crate's build (hsdns/build.rs), as
// aya-ebpf itself needs the same feature.
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod checksum;
#[cfg(target_arch = "bpf")]
mod clock;
#[cfg(target_arch = "bpf")]
mod lookup;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod mem;
#[cfg(target_arch = "bpf")]
mod name;
#[cfg(target_arch = "bpf")]
mod packet;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod profile;
#[cfg(target_arch = "bpf")]
mod reply;
#[cfg(target_arch = "bpf")]
mod verifier;
#[cfg(target_arch = "bpf")]
mod wire;

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::xdp_action,
        helpers::generated::{
            bpf_redirect_peer, bpf_skb_change_tail, bpf_skb_store_bytes, bpf_xdp_adjust_tail,
        },
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use hsdns_common::{
        ANSWER_CLASSES, AnswerClass, Config, EDNS_UDP_SIZE, NameHash, PLAIN_UDP_SIZE, SOA_BYTES,
        SOA_ENTRIES_PER_BANK, VERDICT_COUNT, Verdict,
    };

    use crate::{
        clock,
        lookup::{self, Found},
        maps::{ANSWERS_L, ANSWERS_M, ANSWERS_S, CONFIG, NAMES_64, SCRATCH, SOA, Scratch, count},
        mem::{ld64, st64},
        name::{self, Q_COPY, q_be16, q_byte},
        packet::Packet,
        parse,
        profile::stop,
        reply::{self, Plan, Section},
        verifier::merge,
        wire::*,
    };

    /// A map value of an answer class as a [`Section`]: its fields read
    /// once, its bytes by address.
    macro_rules! section {
        ($ptr:expr) => {{
            let p = $ptr;
            // SAFETY: a valid map value pointer for the program's run.
            unsafe {
                Section {
                    addr: (*p).bytes.as_ptr() as usize,
                    len: (*p).len as usize,
                    csum: (*p).csum,
                    count: (*p).count,
                    stride: (*p).stride,
                }
            }
        }};
    }

    #[xdp]
    pub fn hsdns(ctx: XdpContext) -> u32 {
        let v = process(&ctx);
        count(v);
        ctx.finish(v.action()) as u32
    }

    #[classifier]
    pub fn hsdns_tc(ctx: TcContext) -> i32 {
        let v = process(&ctx);
        count(v);
        ctx.finish(v.action())
    }

    /// Everything between a hook's entry and its return code.
    #[inline(always)]
    fn process<P: Packet>(p: &P) -> Verdict {
        match answer(p) {
            Ok(v) | Err(v) => v,
        }
    }

    #[inline(always)]
    fn answer<P: Packet>(p: &P) -> Result<Verdict, Verdict> {
        let h = parse::headers(p)?;
        stop(1)?;
        let cfg = CONFIG.get(0).ok_or(Verdict::Internal)?;
        if cfg.answering == 0 {
            return Err(Verdict::NotReady);
        }
        let s = SCRATCH.get_ptr_mut(0).ok_or(Verdict::Internal)?;
        // SAFETY: the per-CPU scratch value is this run's alone.
        let s = unsafe { &mut *s };
        // The daemon's heartbeat bounds what a kernel left alone may say.
        // (The clock is read only when a bound is set.)
        let mut nxdomain_fresh = true;
        if cfg.stale_pass_ns != 0 || cfg.stale_nxdomain_ns != 0 {
            let age = cfg.heartbeat_age(clock::boot_ns(s));
            if Config::past(cfg.stale_pass_ns, age) {
                return Err(Verdict::Stale);
            }
            nxdomain_fresh = !Config::past(cfg.stale_nxdomain_ns, age);
        }
        if !h.plain_query() {
            return Err(Verdict::UnsupportedQuery);
        }
        // One range for each header offset, whatever the path (VLAN or
        // not, IPv4 with options or IPv6): every packet access after this
        // is checked against the end again, and the verifier walks the
        // rest once, not once per combination.
        let mut h = h;
        h.l2 = merge(s, 0, h.l2 as u64) as usize;
        h.l3_len = merge(s, 1, h.l3_len as u64) as usize;
        h.l4 = merge(s, 2, h.l4 as u64) as usize;
        h.dns_len = merge(s, 3, h.dns_len as u64) as usize;
        // Values that are a different constant (or range) on each way here
        // and live to the rewrite: the address family, the packet's length
        // (its range follows the IP header's) and the staleness flag. Each
        // would double the states the verifier carries through the name's
        // loops.
        h.v6 = merge(s, 4, h.v6 as u64) != 0;
        let pkt_len = h.pkt_len;
        let nxdomain_fresh = merge(s, 6, nxdomain_fresh as u64) != 0;
        if h.l2 > ETH_HLEN + VLAN_HLEN
            || h.l2 < ETH_HLEN
            || h.l3_len > IPV4_HLEN_MAX
            || h.l3_len < IPV4_HLEN
            || h.l4 > ETH_HLEN + VLAN_HLEN + IPV4_HLEN_MAX
            || h.l4 != h.l2 + h.l3_len
            || h.dns_len < DNS_HLEN
            || h.dns_len > u16::MAX as usize
        {
            return Err(Verdict::Internal);
        }

        stop(2)?;
        // The question and what follows, copied once.
        let qoff = h.dns() + DNS_HLEN;
        let avail = merge(s, 0, (h.dns_len - DNS_HLEN) as u64) as usize;
        if avail < 1 || avail > u16::MAX as usize {
            return Err(Verdict::Malformed);
        }
        // The comparisons below narrow the register they read, differently
        // on each side (avail below or above Q_COPY, a copy of under 8
        // bytes or not), so they read copies and what goes on is merged.
        let a = merge(s, 1, avail as u64) as usize;
        let copy = if a < Q_COPY { a } else { Q_COPY };
        let copy = merge(s, 1, copy as u64) as usize;
        if !(1..=Q_COPY).contains(&copy) {
            return Err(Verdict::Internal);
        }
        if !p.load::<Q_COPY>(qoff, s.q.as_mut_ptr().cast(), copy) {
            return Err(Verdict::Internal);
        }
        let copy = merge(s, 1, copy as u64) as usize;
        if !(1..=Q_COPY).contains(&copy) {
            return Err(Verdict::Internal);
        }
        stop(3)?;
        let (len, labels) = name::walk(s, copy)?;
        stop(4)?;

        let qtype = q_be16(s, len);
        let qclass = q_be16(s, len + 2);
        if qclass != CLASS_IN || (qtype != TYPE_A && qtype != TYPE_AAAA) {
            return Err(Verdict::UnsupportedType);
        }
        let has_opt = h.arcount == 1;
        let mut client_max = PLAIN_UDP_SIZE as usize;
        let mut tail = len + QUESTION_TAIL;
        if has_opt {
            let o = tail;
            if o + OPT_RR_LEN > avail {
                return Err(Verdict::Malformed);
            }
            // Root owner, TYPE OPT, EDNS version 0. Options (a client
            // COOKIE, padding, ECS) are ignored, not echoed, as RFC 6891
            // and RFC 7873 let a server that does not implement them do.
            if q_byte(s, o) != 0
                || q_be16(s, o + OPT_TYPE_OFF) != TYPE_OPT
                || q_byte(s, o + OPT_VERSION_OFF) != 0
            {
                return Err(Verdict::UnsupportedQuery);
            }
            let size = q_be16(s, o + OPT_SIZE_OFF) as usize;
            client_max = size.clamp(PLAIN_UDP_SIZE as usize, EDNS_UDP_SIZE as usize);
            tail = o + OPT_RR_LEN + q_be16(s, o + OPT_RDLEN_OFF) as usize;
        }
        if tail != avail {
            return Err(Verdict::Malformed);
        }
        // With an OPT record or without: one unknown from here on (the
        // flag is live to the rewrite; as a constant it doubled the states
        // through the word pass, the lookup and the reply).
        let has_opt = merge(s, 0, has_opt as u64) != 0;

        stop(5)?;
        let name = name::digest(s, len, labels, &cfg.hash_key)?;
        stop(6)?;
        let qlen = len + QUESTION_TAIL;
        let none = Section {
            addr: 0,
            len: 0,
            csum: 0,
            count: 0,
            stride: 0,
        };
        let mut plan = Plan {
            verdict: Verdict::Internal,
            section: none,
            authority: false,
            rcode: 0,
            truncated: false,
            has_opt,
        };
        match lookup::lookup(s, &name) {
            Found::Crossed => return Err(Verdict::Crossed),
            Found::Missing => {
                if !(nxdomain_fresh && lookup::provably_missing(s, cfg, &name)) {
                    return Err(Verdict::UnknownName);
                }
                plan.verdict = Verdict::AnsweredNxdomain;
                plan.section = soa(s, cfg, len)?;
                plan.authority = true;
                plan.rcode = RCODE_NXDOMAIN;
            }
            Found::Record { a, aaaa } => {
                let (class, slot) = if qtype == TYPE_A { a } else { aaaa };
                plan.verdict = if qtype == TYPE_A {
                    Verdict::AnsweredA
                } else {
                    Verdict::AnsweredAaaa
                };
                plan.section = match class {
                    c if c == AnswerClass::Small as u8 => {
                        // One record (the common answer): its words straight
                        // into scratch, no helper call.
                        let a = ANSWERS_S.get_ptr(slot).ok_or(Verdict::Internal)?;
                        let mut sec = section!(a);
                        // SAFETY: `bytes` of AnswerS sits at offset 8 (8-byte
                        // aligned), 4 words long; `out` holds more.
                        unsafe {
                            let src = (*a).bytes.as_ptr() as *const u64;
                            let dst = s.out.as_mut_ptr();
                            for i in 0..ANSWER_CLASSES[0] / 8 {
                                core::ptr::write_volatile(
                                    dst.add(i),
                                    core::ptr::read_volatile(src.add(i)),
                                );
                            }
                        }
                        sec.addr = 0;
                        sec
                    }
                    c if c == AnswerClass::Medium as u8 => {
                        section!(ANSWERS_M.get_ptr(slot).ok_or(Verdict::Internal)?)
                    }
                    c if c == AnswerClass::Large as u8 => {
                        section!(ANSWERS_L.get_ptr(slot).ok_or(Verdict::Internal)?)
                    }
                    c if c == AnswerClass::Nodata as u8 => {
                        plan.verdict = Verdict::AnsweredNodata;
                        plan.authority = true;
                        soa(s, cfg, len)?
                    }
                    c if c == AnswerClass::Userspace as u8 => {
                        return Err(Verdict::UserspaceOnly);
                    }
                    c if c == AnswerClass::Truncated as u8 => {
                        plan.truncated = true;
                        none
                    }
                    _ => return Err(Verdict::Internal),
                };
            }
        }
        stop(7)?;
        // Plain numbers from here on, whichever way led here (see Plan).
        plan.section = Section {
            addr: merge(s, 0, plan.section.addr as u64) as usize,
            len: merge(s, 1, plan.section.len as u64) as usize,
            csum: merge(s, 2, plan.section.csum as u64) as u16,
            count: merge(s, 3, plan.section.count as u64) as u16,
            stride: merge(s, 4, plan.section.stride as u64) as u16,
        };
        let sec_len = plan.section.len;
        if sec_len > ANSWER_CLASSES[2] || (sec_len == 0 && !plan.truncated) {
            return Err(Verdict::Internal);
        }
        let opt_len = if has_opt { OPT_RR_LEN } else { 0 };
        if plan.truncated || DNS_HLEN + qlen + sec_len + opt_len > client_max {
            // Never a partial record set: the client goes to TCP.
            plan.truncated = true;
            plan.verdict = Verdict::AnsweredTruncated;
            plan.rcode = 0;
        }
        // The rest as plain numbers too, so that LLVM cannot specialise the
        // rewrite for each way here (it did: one copy per case, each walked
        // by the verifier).
        let flags = merge(
            s,
            5,
            plan.truncated as u64
                | (plan.authority as u64) << 1
                | (plan.has_opt as u64) << 2
                | (plan.rcode as u64) << 8,
        );
        plan.truncated = flags & 1 != 0;
        plan.authority = flags & 2 != 0;
        plan.has_opt = flags & 4 != 0;
        plan.rcode = ((flags >> 8) & 0xf) as u16;
        // The verdict too: a different constant for each kind of answer,
        // live to the counter, it had the verifier walk the rewrite once
        // per kind.
        let verdict = verdict_at(merge(s, 6, plan.verdict as u64) as usize)?;
        stop(8)?;
        reply::write(p, s, &h, qlen, name.sum_le, &plan, pkt_len)?;
        Ok(verdict)
    }

    /// The verdict of counter index `i` (`Verdict::from_index` would read
    /// a table in .rodata, a map of its own).
    #[inline(always)]
    fn verdict_at(i: usize) -> Result<Verdict, Verdict> {
        // Verdicts are numbered 0.. in counter order (see hsdns_common).
        const _: () = {
            let mut i = 0;
            while i < VERDICT_COUNT {
                assert!(Verdict::ALL[i] as usize == i);
                i += 1;
            }
        };
        if i >= VERDICT_COUNT {
            return Err(Verdict::Internal);
        }
        // SAFETY: `Verdict` is `repr(u32)` and i is one of its values.
        Ok(unsafe { core::mem::transmute::<u32, Verdict>(i as u32) })
    }

    /// The negative-answer authority section for a question name of `len`
    /// bytes, from the SOA bank in use (the daemon writes a new serial into
    /// the other bank and then flips `soa_bank`, so no reply copies a
    /// half-written SOA).
    ///
    /// Its bytes are copied into scratch here, a fixed number of words
    /// (no helper call: `bpf_probe_read_kernel` costs a call on every
    /// negative answer).
    #[inline(always)]
    fn soa(s: &mut Scratch, cfg: &Config, len: usize) -> Result<Section, Verdict> {
        let idx = (cfg.soa_bank & 1) * SOA_ENTRIES_PER_BANK + len as u32;
        let a = SOA.get_ptr(idx).ok_or(Verdict::Internal)?;
        let mut sec = section!(a);
        // SAFETY: `bytes` of Authority sits at offset 8, SOA_BYTES (a
        // multiple of 8) long; `out` holds more.
        unsafe {
            let src = (*a).bytes.as_ptr() as *const u64;
            let dst = s.out.as_mut_ptr();
            for i in 0..SOA_BYTES / 8 {
                core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i)));
            }
        }
        sec.addr = 0;
        Ok(sec)
    }

    /// Swaps MACs, IPv4 addresses and UDP ports at fixed offsets and sets
    /// QR: the least any responder on this hook does, with no parsing and
    /// no map. False when the packet is too short to hold those headers.
    #[inline(always)]
    fn reflect(start: usize, end: usize) -> bool {
        if start + ETH_HLEN + IPV4_HLEN + UDP_HLEN + DNS_HLEN > end {
            return false;
        }
        let p = start as *mut u8;
        // SAFETY: the 54 bytes were bounds-checked above.
        unsafe {
            for i in 0..ETH_ALEN {
                core::ptr::swap(p.add(i), p.add(ETH_ALEN + i));
            }
            let ip = ETH_HLEN;
            for i in 0..4 {
                core::ptr::swap(
                    p.add(ip + IPV4_SADDR_OFF + i),
                    p.add(ip + IPV4_DADDR_OFF + i),
                );
            }
            let udp = ip + IPV4_HLEN;
            for i in 0..2 {
                core::ptr::swap(p.add(udp + i), p.add(udp + 2 + i));
            }
            // QR set: the checksum's one's complement sum loses 0x8000.
            let dns = udp + UDP_HLEN;
            *p.add(dns + DNS_FLAGS_OFF) |= 0x80;
            let c = p.add(udp + UDP_CSUM_OFF);
            let csum = ((*c as u32) << 8) | *c.add(1) as u32;
            if csum != 0 {
                let mut s = (!csum & 0xffff) + 0x8000;
                s = (s & 0xffff) + (s >> 16);
                let n = !s & 0xffff;
                let n = if n == 0 { 0xffff } else { n };
                *c = (n >> 8) as u8;
                *c.add(1) = n as u8;
            }
        }
        true
    }

    /// The floor of the XDP benchmarks: a bare reflector (never attached
    /// by the daemon).
    #[xdp]
    pub fn floor_xdp(ctx: XdpContext) -> u32 {
        if reflect(ctx.data(), ctx.data_end()) {
            xdp_action::XDP_TX
        } else {
            xdp_action::XDP_PASS
        }
    }

    /// The floor of the tc benchmarks: the same reflector, returned into
    /// the pod through the veth's peer.
    #[classifier]
    pub fn floor_tc(ctx: TcContext) -> i32 {
        if reflect(ctx.data(), ctx.data_end()) {
            // SAFETY: `skb` is the context the kernel passed to this run,
            // valid until it returns; the helper takes only integers.
            unsafe { bpf_redirect_peer((*ctx.skb.skb).ifindex, 0) as i32 }
        } else {
            0
        }
    }

    /// Where the lower bounds read their key: the first 8 bytes of the
    /// question of an untagged IPv4 query without options.
    const BOUND_KEY_OFF: usize = ETH_HLEN + IPV4_HLEN + UDP_HLEN + DNS_HLEN;
    /// What the answer bounds append: one A record with a compressed owner.
    const BOUND_ANSWER: usize = 16;

    /// The record under the 8 bytes at [`BOUND_KEY_OFF`], taken as a key
    /// of `names_64` (the benchmark puts a real name's hash there).
    #[inline(always)]
    fn bound_lookup(start: usize, end: usize) -> Option<*const u8> {
        if start + BOUND_KEY_OFF + 8 > end {
            return None;
        }
        // SAFETY: the 8 bytes were bounds-checked above.
        let hash = unsafe { ld64(start + BOUND_KEY_OFF) };
        NAMES_64.get_ptr(NameHash { hash }).map(|p| p as *const u8)
    }

    // Lower bounds of the benchmarks (never attached by the daemon): the
    // floor plus the least that any program answering from the names map
    // must do on this hook. Each returns the floor's answer code only when
    // the lookup hit (the benchmark checks the code), else a pass.

    /// The floor plus one hash map lookup of an 8-byte key.
    #[xdp]
    pub fn bound_lookup_xdp(ctx: XdpContext) -> u32 {
        let (start, end) = (ctx.data(), ctx.data_end());
        if bound_lookup(start, end).is_some() && reflect(start, end) {
            xdp_action::XDP_TX
        } else {
            xdp_action::XDP_PASS
        }
    }

    /// The floor plus the lookup, growing the frame by one A record and
    /// writing 16 bytes of the record into it: direct stores at a fixed
    /// offset, the cheapest write there is (no helper call).
    #[xdp]
    pub fn bound_answer_xdp(ctx: XdpContext) -> u32 {
        let (start, end) = (ctx.data(), ctx.data_end());
        let Some(rec) = bound_lookup(start, end) else {
            return xdp_action::XDP_PASS;
        };
        if !reflect(start, end) {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: the context the kernel passed to this run, valid until it
        // returns; the packet's bounds are read again after the call.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, BOUND_ANSWER as i32) } != 0 {
            return xdp_action::XDP_PASS;
        }
        let (start, end) = (ctx.data(), ctx.data_end());
        if start + BOUND_KEY_OFF + BOUND_ANSWER > end {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: 16 bytes of the record's name field (48 bytes) into 16
        // bytes of the packet checked above.
        unsafe {
            st64(start + BOUND_KEY_OFF, ld64(rec as usize));
            st64(start + BOUND_KEY_OFF + 8, ld64(rec as usize + 8));
        }
        xdp_action::XDP_TX
    }

    /// The tc floor plus one hash map lookup of an 8-byte key.
    #[classifier]
    pub fn bound_lookup_tc(ctx: TcContext) -> i32 {
        let (start, end) = (ctx.data(), ctx.data_end());
        if bound_lookup(start, end).is_some() && reflect(start, end) {
            // SAFETY: `skb` is the context the kernel passed to this run,
            // valid until it returns; the helper takes only integers.
            unsafe { bpf_redirect_peer((*ctx.skb.skb).ifindex, 0) as i32 }
        } else {
            0
        }
    }

    /// The tc floor plus the lookup, the resize and one store of 16 bytes
    /// from the record at the new tail, through the helper (as every
    /// store on tc must be: a direct write makes the verifier unclone
    /// every skb the program sees, see `reply`).
    #[classifier]
    pub fn bound_answer_tc(ctx: TcContext) -> i32 {
        let (start, end) = (ctx.data(), ctx.data_end());
        let Some(rec) = bound_lookup(start, end) else {
            return 0;
        };
        if !reflect(start, end) {
            return 0;
        }
        let len = ctx.len();
        // SAFETY: the context the kernel passed to this run, valid until it
        // returns; the source is 16 bytes of a map value (the record's name
        // field, 48 bytes).
        unsafe {
            if bpf_skb_change_tail(ctx.skb.skb, len + BOUND_ANSWER as u32, 0) != 0
                || bpf_skb_store_bytes(ctx.skb.skb, len, rec as *const _, BOUND_ANSWER as u32, 0)
                    != 0
            {
                return 0;
            }
            bpf_redirect_peer((*ctx.skb.skb).ifindex, 0) as i32
        }
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
