//! The maps the daemon fills (names, answers, SOA, addresses, config) and
//! the program's own (counters, per-CPU scratch). Capacities here are
//! defaults; the loader sets the real ones.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    btf_maps::{Array, HashMap, PerCpuArray},
    macros::btf_map,
};
use hsdns_common::*;

use crate::name::{KEY_WORDS, Q_WORDS};

const NO_PREALLOC: usize = BPF_F_NO_PREALLOC as usize;

#[btf_map(name = "names_64")]
pub static NAMES_64: HashMap<NameHash, NameRecord48, 65536, NO_PREALLOC> = HashMap::new();
#[btf_map(name = "names_128")]
pub static NAMES_128: HashMap<NameHash, NameRecord112, 16384, NO_PREALLOC> = HashMap::new();
#[btf_map(name = "names_256")]
pub static NAMES_256: HashMap<NameHash, NameRecord256, 1024, NO_PREALLOC> = HashMap::new();
#[btf_map(name = "answers_s")]
pub static ANSWERS_S: Array<AnswerS, 65536> = Array::new();
#[btf_map(name = "answers_m")]
pub static ANSWERS_M: Array<AnswerM, 8192> = Array::new();
#[btf_map(name = "answers_l")]
pub static ANSWERS_L: Array<AnswerL, 1024> = Array::new();
#[btf_map(name = "soa")]
pub static SOA: Array<Authority, { SOA_ENTRIES as usize }> = Array::new();
#[btf_map(name = "dns_addrs")]
pub static DNS_ADDRS: Array<DnsAddr, { DNS_ADDR_SLOTS as usize }> = Array::new();
#[btf_map(name = "config")]
pub static CONFIG: Array<Config, 1> = Array::new();
#[btf_map(name = "counters")]
pub static COUNTERS: PerCpuArray<Counters, 1> = PerCpuArray::new();
/// What the maps were made for; written and read by the daemon only
/// (see `hsdns_common::Layout`).
#[btf_map(name = "layout")]
pub static LAYOUT: Array<Layout, 1> = Array::new();
#[btf_map(name = "scratch")]
pub static SCRATCH: PerCpuArray<Scratch, 1> = PerCpuArray::new();

pub const OUT_WORDS: usize = 2 * ANSWER_CLASSES[2] / 8 + 2;

/// Per-CPU working memory: the 512-byte stack cannot hold a name beside
/// everything else, and map memory can be indexed with masked offsets.
#[repr(C)]
pub struct Scratch {
    /// The question and what follows it, as copied from the packet. Only
    /// the copied bytes are valid: every reader masks at the name's end.
    pub q: [u64; Q_WORDS],
    /// The name in dotted lowercase form, zero past it: the map key's
    /// input and what the stored name is compared with.
    pub key: [u64; KEY_WORDS],
    /// One bit per wire position: set where a label's length byte is
    /// (cleared for each question).
    pub starts: [u64; 4],
    /// Start of each label, by label index (for the NXDOMAIN rule).
    pub label_at: [u8; 64],
    /// Slots for [`crate::verifier::merge`].
    pub merge: [u64; 8],
    /// The bytes after the question: the section (rotated, for a
    /// multi-record answer: two pieces of at most one class's size each),
    /// then the OPT record, stored into the packet in one call. Words, for
    /// the alignment of word copies.
    pub out: [u64; OUT_WORDS],
    /// The reply's headers, Ethernet to DNS, put together before they are
    /// stored (see `reply`).
    pub hdr: [u64; 16],
    /// The jiffy of `clock_ns`, see `clock`.
    pub clock_jiffies: u64,
    /// CLOCK_BOOTTIME ns read at `clock_jiffies`.
    pub clock_ns: u64,
    /// Round-robin position for rotating multi-record answers.
    pub rot: u32,
    pub _pad: u32,
}

/// Counts one packet under its verdict.
#[inline(always)]
pub fn count(v: Verdict) {
    // Hidden from LLVM, which knows a `Verdict` is in range and would drop
    // the check; the verifier does not (a merged verdict is any number).
    let i = crate::mem::opaque(v as usize);
    if i >= VERDICT_COUNT {
        return;
    }
    let Some(c) = COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `Counters` is VERDICT_COUNT u64 fields in verdict order
    // (see hsdns_common::verdict), a per-CPU map value valid for the run.
    unsafe {
        let c = c as *mut u64;
        *c.add(i) += 1;
    }
}
