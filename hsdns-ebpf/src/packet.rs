//! The two hooks behind one interface: the parse, lookup and reply code is
//! generic over [`Packet`], so XDP (driver-mode interfaces) and tc ingress
//! (pod veths) run the same instructions between their entry and exit.

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    helpers::generated::{
        bpf_redirect_peer, bpf_skb_change_tail, bpf_skb_load_bytes, bpf_skb_pull_data,
        bpf_skb_store_bytes, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    programs::{TcContext, XdpContext},
};
use hsdns_common::{Action, Verdict};

use crate::mem::{ld64, opaque, st64};

pub trait Packet {
    /// First and one-past-last byte the program may read directly.
    fn bounds(&self) -> (usize, usize);
    /// The whole packet's length (the directly readable part may be less).
    fn len(&self) -> usize;
    /// Makes the first `n` bytes (or the whole packet, if shorter)
    /// directly readable if the hook can (tc pulls them into the linear
    /// part); `bounds` must be read again.
    fn make_readable(&self, n: usize) -> bool;
    /// Copies `len` bytes at `off` to `dst` (at least `MAX` bytes of
    /// scratch). Nothing but `len <= MAX` is assumed: the bytes are read
    /// directly when they lie in the readable part, else through the
    /// helper, which checks the packet's bounds.
    fn load<const MAX: usize>(&self, off: usize, dst: *mut u8, len: usize) -> bool;
    /// Copies `len` bytes (at most `MAX`) from `src` to `off`.
    fn store<const MAX: usize>(&self, off: usize, src: *const u8, len: usize) -> bool;
    /// Grows or shrinks the packet from `old_len` to `new_len` bytes, at
    /// the tail. Fails with the verdict to count; the packet is then as it
    /// was.
    fn resize(&self, old_len: usize, new_len: usize) -> Result<(), Verdict>;
    /// The hook's return code for what is to become of the packet.
    fn finish(&self, action: Action) -> i32;
}

impl Packet for XdpContext {
    #[inline(always)]
    fn bounds(&self) -> (usize, usize) {
        (self.data(), self.data_end())
    }

    #[inline(always)]
    fn len(&self) -> usize {
        // The program is not loaded with BPF_F_XDP_HAS_FRAGS, so no
        // multi-buffer frame reaches it: the frame is `data..data_end`.
        // (Not bpf_xdp_get_buff_len: a helper call per DNS packet.) Both
        // pointers are hidden from LLVM, which would otherwise fold the
        // difference into arithmetic on the end pointer, which the
        // verifier rejects; the difference of two packet pointers is an
        // unknown scalar to it (allowed with CAP_PERFMON, which the daemon
        // has), checked against the headers' lengths by the caller.
        opaque(self.data_end()) - opaque(self.data())
    }

    #[inline(always)]
    fn make_readable(&self, n: usize) -> bool {
        self.data() + n <= self.data_end()
    }

    #[inline(always)]
    fn load<const MAX: usize>(&self, off: usize, dst: *mut u8, len: usize) -> bool {
        let (start, end) = self.bounds();
        if copy_words::<MAX, true>(start, end, off, dst as usize, len) {
            return true;
        }
        // SAFETY: the helper bounds-checks against the frame; the caller
        // passes a destination of at least `len` bytes.
        unsafe { bpf_xdp_load_bytes(self.ctx, off as u32, dst.cast(), len as u32) == 0 }
    }

    #[inline(always)]
    fn store<const MAX: usize>(&self, off: usize, src: *const u8, len: usize) -> bool {
        // Through the helper, as on tc. Direct writes (`copy_words`) would
        // save a helper call each, but the verifier walks their word loop
        // once for every way into the rewrite (an IPv4 header's option
        // loop leaves several): 169k processed instructions for the header
        // alone, over the 100k budget.
        let _ = MAX;
        // SAFETY: as in `load`.
        unsafe { bpf_xdp_store_bytes(self.ctx, off as u32, src as *mut _, len as u32) == 0 }
    }

    #[inline(always)]
    fn resize(&self, old_len: usize, new_len: usize) -> Result<(), Verdict> {
        let delta = new_len as i32 - old_len as i32;
        // SAFETY: the context the kernel passed to this run, valid until it
        // returns; no packet pointer is used across the call (the verifier
        // rejects one that is).
        if unsafe { bpf_xdp_adjust_tail(self.ctx, delta) } != 0 {
            // Generic (skb) XDP gives the frame only the skb's tailroom.
            return Err(Verdict::NoRoom);
        }
        Ok(())
    }

    #[inline(always)]
    fn finish(&self, action: Action) -> i32 {
        (match action {
            Action::Answer => xdp_action::XDP_TX,
            Action::Pass => xdp_action::XDP_PASS,
            Action::Drop => xdp_action::XDP_DROP,
        }) as i32
    }
}

impl Packet for TcContext {
    #[inline(always)]
    fn bounds(&self) -> (usize, usize) {
        (self.data(), self.data_end())
    }

    #[inline(always)]
    fn len(&self) -> usize {
        self.len() as usize
    }

    #[inline(always)]
    fn make_readable(&self, n: usize) -> bool {
        if self.data() + n <= self.data_end() {
            return true;
        }
        let len = self.len() as usize;
        let n = if n < len { n } else { len };
        // SAFETY: the context the kernel passed to this run, valid until it
        // returns. The helper may move the packet; no packet pointer is
        // used across the call (the verifier rejects one that is).
        unsafe { bpf_skb_pull_data(self.skb.skb, n as u32) == 0 }
    }

    #[inline(always)]
    fn load<const MAX: usize>(&self, off: usize, dst: *mut u8, len: usize) -> bool {
        // Direct reads of the linear part (reads, unlike writes, need no
        // private copy of the skb's head).
        let (start, end) = self.bounds();
        if copy_words::<MAX, true>(start, end, off, dst as usize, len) {
            return true;
        }
        // SAFETY: the helper bounds-checks against the skb (linear or not).
        unsafe {
            bpf_skb_load_bytes(self.skb.skb as *const _, off as u32, dst.cast(), len as u32) == 0
        }
    }

    #[inline(always)]
    fn store<const MAX: usize>(&self, off: usize, src: *const u8, len: usize) -> bool {
        // Never a direct write on tc: one anywhere in the program makes the
        // verifier give it a prologue that unclones every skb it sees (see
        // `reply`).
        // SAFETY: as in `load`; the helper makes the skb writable first.
        unsafe {
            bpf_skb_store_bytes(self.skb.skb, off as u32, src as *const _, len as u32, 0) == 0
        }
    }

    #[inline(always)]
    fn resize(&self, _old_len: usize, new_len: usize) -> Result<(), Verdict> {
        // Grows the skb to any size (reallocating it if needed), unlike
        // generic XDP on a veth.
        // SAFETY: as in `make_readable`.
        if unsafe { bpf_skb_change_tail(self.skb.skb, new_len as u32, 0) } != 0 {
            return Err(Verdict::Internal);
        }
        Ok(())
    }

    #[inline(always)]
    fn finish(&self, action: Action) -> i32 {
        match action {
            // Straight into the ingress of the veth's peer, the pod's end:
            // no backlog queue, no second pass through the host's stack.
            // SAFETY: `skb` is the context the kernel passed to this run,
            // valid until it returns; the helper takes only integers.
            Action::Answer => unsafe { bpf_redirect_peer((*self.skb.skb).ifindex, 0) as i32 },
            // "Next": the programs after this one (a CNI's) run as they
            // would without it, and the packet goes up as it came.
            Action::Pass => TC_ACT_UNSPEC,
            Action::Drop => TC_ACT_SHOT,
        }
    }
}

/// Copies `len` bytes between the packet (at `off` from `start`, direct
/// access up to `end`) and scratch memory at `mem`, eight bytes at a time
/// with the last word overlapping the one before: no helper call (each
/// costs tens of ns on machines that mitigate return-stack attacks, with a
/// return thunk on every kernel function's return). `READ`: packet to
/// `mem`, else `mem` to packet. False (nothing or part copied, the caller
/// falls back to the helper) when `len` is outside `8..=MAX` or the bytes
/// are not all directly accessible.
#[inline(always)]
fn copy_words<const MAX: usize, const READ: bool>(
    start: usize,
    end: usize,
    off: usize,
    mem: usize,
    len: usize,
) -> bool {
    if !(8..=MAX).contains(&len) || off > u16::MAX as usize {
        return false;
    }
    let p = start + off;
    let n = len / 8;
    let copy = |a: usize, m: usize| {
        // SAFETY: `a + 8 <= end` was checked by the caller; `m` is inside
        // the caller's `MAX` bytes of scratch.
        unsafe {
            if READ {
                st64(m, ld64(a))
            } else {
                st64(a, ld64(m))
            }
        }
    };
    for w in 0..MAX / 8 {
        if w >= n {
            break;
        }
        // The check the verifier needs for each word (the one above is in
        // a variable length it cannot carry over).
        let a = p + 8 * w;
        if a + 8 > end {
            return false;
        }
        copy(a, mem + 8 * w);
    }
    // LLVM would fold `a + 8` into `p + len`, a pointer of its own for the
    // verifier, whose check says nothing about `a`: hide where `a` came from.
    let a = opaque(p + (len - 8));
    if a + 8 > end {
        return false;
    }
    copy(a, mem + (len - 8));
    true
}
