//! Map sync: the record table in, the difference written into the BPF maps.
//!
//! Invariants the kernel relies on:
//! - an answer slot is never rewritten while a name points at it: a changed
//!   answer goes into a fresh slot, then the name's value is replaced (one
//!   atomic hash-map update), so a query sees the old or the new answer,
//!   never a torn one and never a gap;
//! - a slot freed by that swap is reused only after [`QUARANTINE`], long after
//!   any program run that could still be reading it has finished;
//! - whatever does not fit (map full, answer too large for any UDP reply) is
//!   left to userspace (`REF_PASS` or no entry), never answered wrongly.

pub mod bpf;

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use anyhow::Result;
use hickory_proto::{
    rr::{Name, RecordType},
    serialize::binary::BinEncodable as _,
};
use hsdns_common::{
    ANSWER_CLASSES, AnswerRef, MAX_NAME_LEN, NameRecord, REF_NODATA, REF_PASS, SOA_BYTES,
    answer_ref,
};

use crate::{
    dns::answer::{self, Encoded},
    loader::Capacities,
    records::RecordTable,
};

/// How long a replaced answer slot stays untouched before reuse. XDP runs
/// take microseconds; this is orders of magnitude beyond any RCU grace
/// period a reader could still be inside.
pub const QUARANTINE: Duration = Duration::from_secs(2);

/// Where the bytes go. The BPF implementation is [`bpf::BpfMaps`]; tests use
/// an in-memory one.
pub trait Backend {
    fn put_answer(&mut self, class: usize, slot: u32, bytes: &[u8], count: u16) -> Result<()>;
    /// `key` is the lowercase wire-format name.
    fn put_name(&mut self, key: &[u8], rec: NameRecord) -> Result<()>;
    fn remove_name(&mut self, key: &[u8]) -> Result<()>;
    fn put_soa(&mut self, index: u32, bytes: &[u8]) -> Result<()>;
}

/// What one sync changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub names_written: usize,
    pub names_removed: usize,
    pub answers_written: usize,
    /// Names that did not fit the name maps: passed up to userspace.
    pub names_full: usize,
    /// Answers that did not fit their class: that type passes up.
    pub answers_full: usize,
    /// Answers larger than any UDP reply the kernel sends: passed up.
    pub answers_too_large: usize,
}

struct SlotPool {
    next: u32,
    cap: u32,
    free: Vec<u32>,
    quarantine: VecDeque<(Instant, u32)>,
}

impl SlotPool {
    fn new(cap: u32) -> Self {
        Self {
            next: 0,
            cap,
            free: Vec::new(),
            quarantine: VecDeque::new(),
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        (self.next < self.cap).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    fn release(&mut self, slot: u32, now: Instant) {
        self.quarantine.push_back((now, slot));
    }

    fn mature(&mut self, now: Instant) {
        while let Some(&(t, s)) = self.quarantine.front() {
            if now.duration_since(t) < QUARANTINE {
                break;
            }
            self.quarantine.pop_front();
            self.free.push(s);
        }
    }

    fn in_use(&self) -> u32 {
        self.next - self.free.len() as u32 - self.quarantine.len() as u32
    }
}

/// One type's answer as installed: the bytes (to diff against) and where
/// they live.
#[derive(Clone, PartialEq, Eq)]
struct Installed {
    bytes: Option<Box<[u8]>>,
    aref: AnswerRef,
}

struct InstalledName {
    a: Installed,
    aaaa: Installed,
}

pub struct Syncer<B> {
    backend: B,
    pools: [SlotPool; 3],
    installed: HashMap<Box<[u8]>, InstalledName>,
    name_caps: [u32; 3],
    name_counts: [u32; 3],
}

/// The lowercase wire-format name: the kernel's key.
pub fn name_key(name: &Name) -> Result<Vec<u8>> {
    let mut n = name.to_lowercase();
    n.set_fqdn(true);
    Ok(n.to_bytes()?)
}

/// The name map tier (0..3) of a wire-format name length.
pub fn tier(len: usize) -> usize {
    hsdns_common::NAME_TIERS
        .iter()
        .position(|&t| len <= t)
        .unwrap_or(2)
}

impl<B: Backend> Syncer<B> {
    pub fn new(backend: B, caps: &Capacities) -> Self {
        Self {
            backend,
            pools: caps.answers.map(SlotPool::new),
            installed: HashMap::new(),
            name_caps: caps.names,
            name_counts: [0; 3],
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Writes the negative-answer authority sections for zone 0, one per
    /// question length. They never change while the daemon runs (the SOA
    /// serial is fixed at start), so they are written once, before answering
    /// starts, and never torn.
    pub fn write_soa(&mut self, table: &RecordTable) -> Result<usize> {
        let mut n = 0;
        for len in 1..=MAX_NAME_LEN {
            if let Some(bytes) = answer::soa_authority(table.zone(), table.serial(), len)
                && bytes.len() <= SOA_BYTES
            {
                self.backend.put_soa(len as u32, &bytes)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Brings the maps to `table`, touching only what differs.
    pub fn sync(&mut self, table: &RecordTable) -> Result<SyncStats> {
        self.sync_at(table, Instant::now())
    }

    /// [`Self::sync`] at a given time (slot quarantine is measured from it).
    pub fn sync_at(&mut self, table: &RecordTable, now: Instant) -> Result<SyncStats> {
        for p in &mut self.pools {
            p.mature(now);
        }
        let mut stats = SyncStats::default();
        let mut seen: HashMap<Box<[u8]>, ()> = HashMap::with_capacity(table.len());
        for (name, _) in table.iter() {
            let key: Box<[u8]> = name_key(name)?.into();
            let a = answer::answer_section(table, name, RecordType::A);
            let aaaa = answer::answer_section(table, name, RecordType::AAAA);
            seen.insert(key.clone(), ());
            self.sync_name(key, a, aaaa, now, &mut stats)?;
        }
        let gone: Vec<Box<[u8]>> = self
            .installed
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(old) = self.installed.remove(&key) {
                self.backend.remove_name(&key)?;
                self.name_counts[tier(key.len())] -= 1;
                self.release(&old.a, now);
                self.release(&old.aaaa, now);
                stats.names_removed += 1;
            }
        }
        Ok(stats)
    }

    fn sync_name(
        &mut self,
        key: Box<[u8]>,
        want_a: Option<Encoded>,
        want_aaaa: Option<Encoded>,
        now: Instant,
        stats: &mut SyncStats,
    ) -> Result<()> {
        let old = self.installed.get(&key);
        let same = |o: Option<&Installed>, w: &Option<Encoded>| {
            o.is_some_and(|o| o.bytes.as_deref() == w.as_ref().map(|e| &e.bytes[..]))
        };
        if same(old.map(|o| &o.a), &want_a) && same(old.map(|o| &o.aaaa), &want_aaaa) {
            return Ok(());
        }
        let t = tier(key.len());
        if old.is_none() && self.name_counts[t] >= self.name_caps[t] {
            stats.names_full += 1;
            log::warn!(
                "name map {} is full ({} entries): {} is answered from userspace",
                hsdns_common::MAP_NAMES[t],
                self.name_caps[t],
                String::from_utf8_lossy(&key)
            );
            return Ok(());
        }
        let old_a = old.map(|o| o.a.clone());
        let old_aaaa = old.map(|o| o.aaaa.clone());
        let a = self.place(old_a.as_ref(), want_a, stats)?;
        let aaaa = self.place(old_aaaa.as_ref(), want_aaaa, stats)?;
        let rec = NameRecord {
            a: a.aref,
            aaaa: aaaa.aref,
            rcode: 0,
            zone: 0,
            _pad: [0; 2],
        };
        if let Err(e) = self.backend.put_name(&key, rec) {
            // The kernel keeps whatever it had; better to withdraw the name
            // entirely than to leave it answering stale records.
            log::warn!("writing a name failed ({e:#}); withdrawing it to userspace");
            self.release_if_new(&a, old_a.as_ref(), now);
            self.release_if_new(&aaaa, old_aaaa.as_ref(), now);
            if let Some(o) = self.installed.remove(&key) {
                self.backend.remove_name(&key)?;
                self.name_counts[t] -= 1;
                self.release(&o.a, now);
                self.release(&o.aaaa, now);
            }
            stats.names_full += 1;
            return Ok(());
        }
        stats.names_written += 1;
        if let Some(o) = old_a
            && o.aref != a.aref
        {
            self.release(&o, now);
        }
        if let Some(o) = old_aaaa
            && o.aref != aaaa.aref
        {
            self.release(&o, now);
        }
        if !self.installed.contains_key(&key) {
            self.name_counts[t] += 1;
        }
        self.installed.insert(key, InstalledName { a, aaaa });
        Ok(())
    }

    /// Puts one answer into a fresh slot unless it is unchanged.
    fn place(
        &mut self,
        old: Option<&Installed>,
        want: Option<Encoded>,
        stats: &mut SyncStats,
    ) -> Result<Installed> {
        if let Some(o) = old
            && o.bytes.as_deref() == want.as_ref().map(|e| &e.bytes[..])
        {
            return Ok(o.clone());
        }
        let Some(Encoded { bytes, count }) = want else {
            return Ok(Installed {
                bytes: None,
                aref: REF_NODATA,
            });
        };
        let pass = |bytes: Vec<u8>| Installed {
            bytes: Some(bytes.into()),
            aref: REF_PASS,
        };
        let Some(class) = ANSWER_CLASSES.iter().position(|&c| bytes.len() <= c) else {
            stats.answers_too_large += 1;
            return Ok(pass(bytes));
        };
        // The smallest class with room: a full small class spills upward.
        let mut slot = None;
        for c in class..ANSWER_CLASSES.len() {
            if let Some(s) = self.pools[c].alloc() {
                slot = Some((c, s));
                break;
            }
        }
        let Some((class, slot)) = slot else {
            stats.answers_full += 1;
            log::warn!("answer maps are full: an answer is served from userspace");
            return Ok(pass(bytes));
        };
        self.backend.put_answer(class, slot, &bytes, count)?;
        stats.answers_written += 1;
        Ok(Installed {
            bytes: Some(bytes.into()),
            aref: answer_ref(class as u32, slot),
        })
    }

    fn release(&mut self, i: &Installed, now: Instant) {
        if i.aref == REF_NODATA || i.aref == REF_PASS {
            return;
        }
        let class = (i.aref >> hsdns_common::REF_CLASS_SHIFT) as usize;
        self.pools[class].release(i.aref & hsdns_common::REF_SLOT_MASK, now);
    }

    fn release_if_new(&mut self, new: &Installed, old: Option<&Installed>, now: Instant) {
        if old.is_none_or(|o| o.aref != new.aref) {
            self.release(new, now);
        }
    }

    /// Answer slots in use per class (quarantined ones excluded).
    pub fn slots_in_use(&self) -> [u32; 3] {
        [
            self.pools[0].in_use(),
            self.pools[1].in_use(),
            self.pools[2].in_use(),
        ]
    }

    pub fn names_installed(&self) -> usize {
        self.installed.len()
    }
}

#[cfg(test)]
mod tests;
