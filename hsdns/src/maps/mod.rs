//! Map sync: the record table's changes in, written into the BPF maps.
//!
//! Invariants the kernel relies on:
//! - an answer slot is never rewritten while a name points at it: a changed
//!   answer goes into a fresh slot, then the name's value is replaced (one
//!   atomic hash-map update), so a query sees the old or the new answer,
//!   never a torn one and never a gap;
//! - a slot freed by that swap is reused only after [`QUARANTINE`], long after
//!   any program run that could still be reading it has finished;
//! - whatever does not fit the maps is left to userspace (`REF_PASS` or no
//!   entry), never answered wrongly; an answer too large for any UDP reply
//!   of ours is marked so (`REF_TRUNCATED`): the kernel answers it with
//!   TC=1 and the client asks again over TCP;
//! - a write the kernel refuses is counted and its name passed up, never a
//!   reason to stop (see [`SyncStats::write_errors`]).
//!
//! A restarted daemon adopts the maps its predecessor filled (`adopt.rs`).
//!
//! The syncer (here) enforces those invariants against a [`Backend`]
//! (`backend.rs`: the writes, and how the kernel's maps are addressed), so
//! the in-memory backend of the tests runs the very code that writes the
//! kernel's maps; `slots.rs` hands out answer slots and holds freed ones in
//! quarantine; `bpf` is the backend over the loaded program's maps.

mod adopt;
mod backend;
pub mod bpf;
mod slots;

pub use adopt::AdoptStats;
use adopt::Adopted;
use backend::CLASSES;
pub use backend::{AnswerWrite, Backend, NameWrite, StoredAnswer, name_key, slot_of, tier};
use slots::SlotPool;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::Result;
use hickory_proto::rr::RecordType;
use hsdns_common::{
    ANSWER_CLASSES, AnswerRef, MAX_NAME_LEN, NameRefs, REF_NODATA, REF_PASS, REF_TRUNCATED,
    SOA_BYTES, ZONE_MAX, answer_ref,
};

use crate::{
    dns::answer::{self, Encoded},
    loader::Capacities,
    records::{Change, Key, MapRefs, NameEntry, RecordTable, ZoneConfig},
};

/// How long a replaced answer slot stays untouched before reuse. XDP runs
/// take microseconds; this is orders of magnitude beyond any RCU grace
/// period a reader could still be inside.
pub const QUARANTINE: Duration = Duration::from_secs(2);
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
    /// Answers larger than any UDP reply the kernel sends: the kernel
    /// answers them with TC=1.
    pub answers_too_large: usize,
    /// Writes the kernel refused (answers, names, removals, switches):
    /// counted and logged; the names involved pass up to userspace.
    pub write_errors: usize,
    /// Names found in adopted maps exactly as the table has them: taken
    /// over without a write.
    pub names_adopted: usize,
}
/// What a name write held back for [`Syncer::flush`] needs if it fails
/// (the table's key comes from the write's wire key then: no copy per name).
struct NameUndo {
    /// Whether the name was in the maps before (with other slots).
    replaced: bool,
    /// Those slots.
    old: MapRefs,
}

/// Name writes held back at most: one bpf(2) call's worth per tier, and
/// a bound on the bytes waiting.
const PENDING_MAX: usize = 1024;
/// Keeps the BPF maps equal to the record table, one change at a time.
///
/// Memory matters at 150,000 pods, so the syncer keeps no copy of what it
/// wrote: each name's answer slots live in its table entry
/// ([`MapRefs`]), and the table hands over every changed name with the
/// entry it replaced ([`Change`]). The answer bytes are a pure function of
/// a name's entry and the zone, so an unchanged entry means an unchanged
/// answer and needs no work at all.
pub struct Syncer<B> {
    backend: B,
    pools: [SlotPool; 3],
    name_caps: [u32; 3],
    name_counts: [u32; 3],
    /// Names of the table that are not in the maps (they were full).
    missing: usize,
    /// Whether negative answers in the kernel are wanted (configuration).
    nxdomain_wanted: bool,
    /// What the kernel was last told.
    nxdomain_on: bool,
    /// Writes not yet in the maps: answers, then the names pointing at
    /// them (see [`Self::flush`]).
    answers_pending: Vec<AnswerWrite>,
    names_pending: Vec<NameWrite>,
    undo_pending: Vec<NameUndo>,
    /// Set by [`Self::adopt`] until the table is first complete: names the
    /// table does not have yet are looked up in the maps, and nothing the
    /// table lacks is removed before it is complete.
    adopting: bool,
    /// Slots that must never be reused: a name in adopted maps shares
    /// them, or a removal failed and a name may still point at them.
    never_reuse: HashSet<(usize, u32)>,
    /// The SOA bank negative answers use, and when the other one was last
    /// in use (a bank is rewritten only after [`QUARANTINE`]).
    soa_bank: u32,
    soa_flipped: Option<Instant>,
    /// Names changed since the SOA was last written: its serial is due.
    soa_stale: bool,
}

impl<B: Backend> Syncer<B> {
    pub fn new(backend: B, caps: &Capacities) -> Self {
        Self {
            backend,
            pools: caps.answers.map(SlotPool::new),
            name_caps: caps.names,
            name_counts: [0; 3],
            missing: 0,
            nxdomain_wanted: false,
            nxdomain_on: false,
            answers_pending: Vec::new(),
            names_pending: Vec::new(),
            undo_pending: Vec::new(),
            adopting: false,
            never_reuse: HashSet::new(),
            soa_bank: 0,
            soa_flipped: None,
            soa_stale: false,
        }
    }

    /// Whether the kernel should answer NXDOMAIN for names that provably do
    /// not exist. Takes effect at the next sync, and only while every name
    /// of the table is in the maps: a name left out for lack of room would
    /// otherwise get NXDOMAIN while it exists.
    pub fn set_nxdomain(&mut self, wanted: bool) {
        self.nxdomain_wanted = wanted;
    }

    /// Whether the kernel currently answers NXDOMAIN.
    pub fn nxdomain_active(&self) -> bool {
        self.nxdomain_on
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Writes the negative-answer authority sections for zone 0, one per
    /// question length, into the bank in use, before answering starts (on
    /// fresh maps: nothing reads them yet). Later serials go into the other
    /// bank ([`Self::refresh_soa`]), so no answer is ever torn.
    pub fn write_soa(&mut self, table: &RecordTable) -> Result<usize> {
        let n = self.write_soa_bank(table, table.serial(), self.soa_bank)?;
        self.backend.set_soa_bank(self.soa_bank)?;
        Ok(n)
    }

    fn write_soa_bank(&mut self, table: &RecordTable, serial: u32, bank: u32) -> Result<usize> {
        let mut n = 0;
        let base = bank * hsdns_common::SOA_ENTRIES_PER_BANK;
        for len in 1..=MAX_NAME_LEN {
            if let Some(bytes) = answer::soa_authority(table.zone(), serial, len)
                && bytes.len() <= SOA_BYTES
            {
                self.backend.put_soa(base + len as u32, &bytes)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Gives the SOA the serial of the table's latest change, as CoreDNS's
    /// serial follows its last change: `serial` (unix seconds, above the
    /// last one) goes into the SOA bank not in use, negative answers switch
    /// to it in one word, and the table (which userspace answers from)
    /// takes the same serial. A bank in use less than [`QUARANTINE`] ago is
    /// not rewritten: then nothing changes and the time it may be is
    /// returned, to call again then.
    pub fn refresh_soa(
        &mut self,
        table: &mut RecordTable,
        serial: u32,
        now: Instant,
    ) -> Result<Option<Instant>> {
        if !self.soa_stale {
            return Ok(None);
        }
        if let Some(t) = self.soa_flipped
            && now.duration_since(t) < QUARANTINE
        {
            return Ok(Some(t + QUARANTINE));
        }
        let serial = serial.max(table.serial().wrapping_add(1));
        let next = self.soa_bank ^ 1;
        self.write_soa_bank(table, serial, next)?;
        self.backend.set_soa_bank(next)?;
        self.soa_bank = next;
        self.soa_flipped = Some(now);
        self.soa_stale = false;
        table.set_serial(serial);
        Ok(None)
    }

    /// The SOA bank negative answers use.
    pub fn soa_bank(&self) -> u32 {
        self.soa_bank
    }

    /// Installs every name of a table this syncer has not written before
    /// (a fresh syncer, or maps emptied of names).
    ///
    /// What [`Self::apply`] of [`RecordTable::all_changes`] does, walking
    /// the table in place instead: at 150,000 names a key copy and a
    /// second B-tree lookup per name were a good part of the first sync.
    pub fn sync_new(&mut self, table: &mut RecordTable) -> Result<SyncStats> {
        self.sync_new_at(table, Instant::now())
    }

    /// [`Self::sync_new`] at a given time.
    pub fn sync_new_at(&mut self, table: &mut RecordTable, now: Instant) -> Result<SyncStats> {
        for p in &mut self.pools {
            p.mature(now);
        }
        let mut stats = SyncStats::default();
        // Chunks of held-back writes; each resumes after the last key of
        // the one before (one key copy per chunk).
        let mut after: Option<Key> = None;
        loop {
            let (zone, entries) = table.entries_after_mut(after.as_ref());
            let mut last = None;
            for (key, entry) in entries {
                self.soa_stale = true;
                let refs = self.install(zone, key, entry, None, now, &mut stats)?;
                if refs == MapRefs::NONE {
                    self.missing += 1;
                }
                entry.refs = refs;
                if self.names_pending.len() >= PENDING_MAX {
                    last = Some(key.clone());
                    break;
                }
            }
            self.flush(table, now, &mut stats)?;
            match last {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        self.finish(table, now, stats)
    }

    /// Writes `changes` (just made to `table`) into the maps.
    pub fn apply(&mut self, table: &mut RecordTable, changes: Vec<Change>) -> Result<SyncStats> {
        self.apply_at(table, changes, Instant::now())
    }

    /// [`Self::apply`] at a given time (slot quarantine is measured from it).
    pub fn apply_at(
        &mut self,
        table: &mut RecordTable,
        changes: Vec<Change>,
        now: Instant,
    ) -> Result<SyncStats> {
        for p in &mut self.pools {
            p.mature(now);
        }
        if !changes.is_empty() {
            self.soa_stale = true;
        }
        let mut stats = SyncStats::default();
        // A namespace's name is the one name two services share: one
        // batch can take it out (its last service deleted) and put it back
        // (another one added). The first change's `old` is what the maps
        // hold, and it is written against the final entry; a later change
        // of the same name would install it a second time.
        let ns_depth = table.zone().zone.num_labels() as usize + 2;
        let mut namespaces_seen: HashSet<Key> = HashSet::new();
        for Change { key, old } in changes {
            if key.labels().count() == ns_depth && !namespaces_seen.insert(key.clone()) {
                continue;
            }
            let old = old.map(|o| o.refs);
            if old == Some(MapRefs::NONE) {
                self.missing -= 1;
            }
            let Some((zone, entry)) = table.entry_mut(&key) else {
                if let Some(r) = old {
                    // After the writes before it: one of them may be the
                    // same name.
                    self.flush(table, now, &mut stats)?;
                    self.remove(&key, r, now, &mut stats)?;
                }
                continue;
            };
            let refs = self.install(zone, &key, entry, old, now, &mut stats)?;
            if refs == MapRefs::NONE {
                self.missing += 1;
            }
            entry.refs = refs;
            if self.names_pending.len() >= PENDING_MAX {
                self.flush(table, now, &mut stats)?;
            }
        }
        self.flush(table, now, &mut stats)?;
        self.finish(table, now, stats)
    }

    /// What every sync ends with, after its writes are flushed.
    fn finish(
        &mut self,
        table: &mut RecordTable,
        now: Instant,
        mut stats: SyncStats,
    ) -> Result<SyncStats> {
        if self.adopting && table.is_complete() {
            self.sweep(table, now, &mut stats)?;
        }
        // While adopting, the maps hold the last complete table (with what
        // this one changed so far): negative answers stay as they were.
        let complete =
            self.missing == 0 && (table.is_complete() || (self.adopting && self.nxdomain_on));
        self.apply_nxdomain(self.nxdomain_wanted && complete, table.zone(), &mut stats);
        if stats.names_full + stats.answers_full > 0 {
            // Once per sync, not per name: at scale a full map would flood.
            log::warn!(
                "maps full: {} names and {} answers are answered from userspace \
                 (name capacity {:?}, answer capacity {:?}; raise --name-capacity / \
                 --answer-capacity)",
                stats.names_full,
                stats.answers_full,
                self.name_caps,
                self.pools.iter().map(|p| p.cap).collect::<Vec<_>>(),
            );
        }
        Ok(stats)
    }

    /// Tells the kernel; a refused write is counted and tried again at
    /// the next sync (what the kernel was told stays as it was).
    fn apply_nxdomain(&mut self, on: bool, zone: &ZoneConfig, stats: &mut SyncStats) {
        let wire = match name_key(&zone.zone) {
            Ok(w) => w,
            Err(e) => {
                log::warn!("the zone's wire form: {e:#}");
                return;
            }
        };
        // A zone too long for the kernel's copy: negative answers come
        // from userspace.
        let on = on && wire.len() <= ZONE_MAX;
        if on != self.nxdomain_on {
            if let Err(e) = self.backend.set_nxdomain(on, &wire) {
                log::warn!("switching kernel NXDOMAIN answers: {e:#}");
                stats.write_errors += 1;
                return;
            }
            self.nxdomain_on = on;
            log::info!("kernel NXDOMAIN answers {}", if on { "on" } else { "off" });
        }
    }

    fn remove(&mut self, key: &Key, r: MapRefs, now: Instant, stats: &mut SyncStats) -> Result<()> {
        if r == MapRefs::NONE {
            return Ok(());
        }
        self.remove_wire(&key.wire(), r, now, stats);
        Ok(())
    }

    /// Takes a name out of the maps and frees its slots. If the kernel
    /// refuses, the name may still point at them: they are never reused
    /// (and the name keeps its last answers, which beats a wrong one).
    fn remove_wire(&mut self, key: &[u8], r: MapRefs, now: Instant, stats: &mut SyncStats) {
        if let Err(e) = self.backend.remove_name(key) {
            log::warn!("removing a name from the maps: {e:#}");
            stats.write_errors += 1;
            for x in [r.a, r.aaaa] {
                if let Some(slot) = slot_of(x) {
                    self.never_reuse.insert(slot);
                }
            }
            return;
        }
        self.name_counts[tier(key.len())] -= 1;
        self.release(r.a, now);
        self.release(r.aaaa, now);
        stats.names_removed += 1;
    }

    /// Writes a new or changed name: answers into fresh slots, then the
    /// name's value in one update, both held back until [`Self::flush`].
    fn install(
        &mut self,
        zone: &ZoneConfig,
        table_key: &Key,
        entry: &NameEntry,
        old: Option<MapRefs>,
        now: Instant,
        stats: &mut SyncStats,
    ) -> Result<MapRefs> {
        let mut old = old.filter(|r| *r != MapRefs::NONE);
        let key = table_key.wire();
        let t = tier(key.len());
        // ExternalName CNAMEs and the like: the name exists, but its A/AAAA
        // answers are not the kernel's to give.
        let answerable = entry.kernel_answerable();
        let (a_enc, aaaa_enc) = if answerable {
            (
                answer::records_answer_section(zone, entry, RecordType::A),
                answer::records_answer_section(zone, entry, RecordType::AAAA),
            )
        } else {
            (None, None)
        };
        if old.is_none() && self.adopting {
            // Not written by this daemon yet: what its predecessor left.
            match self.adopted(&key, answerable, &a_enc, &aaaa_enc) {
                Adopted::Same(refs) => {
                    stats.names_adopted += 1;
                    return Ok(refs);
                }
                Adopted::Differs(refs) => old = Some(refs),
                Adopted::Absent => {}
            }
        }
        if old.is_none() && self.name_counts[t] >= self.name_caps[t] {
            stats.names_full += 1;
            // Absence no longer proves anything: stop negative answers now,
            // not at the end of the sync.
            self.apply_nxdomain(false, zone, stats);
            return Ok(MapRefs::NONE);
        }
        let (a, aaaa) = if answerable {
            (
                self.place(a_enc, 16, stats)?,
                self.place(aaaa_enc, 28, stats)?,
            )
        } else {
            (REF_PASS, REF_PASS)
        };
        // Held back, to go into the maps with others in one call. Counted
        // as written meanwhile; the flush undoes what fails. The old
        // slots may go into quarantine before the name leaves them: none
        // is reused before the next sync, and this one ends with the flush.
        self.names_pending.push(NameWrite {
            key,
            refs: NameRefs { a, aaaa },
            replace: old.is_some(),
        });
        self.undo_pending.push(NameUndo {
            replaced: old.is_some(),
            old: old.unwrap_or(MapRefs::NONE),
        });
        stats.names_written += 1;
        match old {
            Some(o) => {
                self.release(o.a, now);
                self.release(o.aaaa, now);
            }
            None => self.name_counts[t] += 1,
        }
        Ok(MapRefs { a, aaaa })
    }

    /// Writes what is held back: the answers first, then the names that
    /// point at them, so no name ever points at a slot not yet written. A
    /// name the backend could not write is withdrawn to userspace: the
    /// kernel keeps whatever it had, and better no entry than a stale one.
    fn flush(
        &mut self,
        table: &mut RecordTable,
        now: Instant,
        stats: &mut SyncStats,
    ) -> Result<()> {
        if self.names_pending.is_empty() && self.answers_pending.is_empty() {
            return Ok(());
        }
        let answers = std::mem::take(&mut self.answers_pending);
        let mut names = std::mem::take(&mut self.names_pending);
        let undo = std::mem::take(&mut self.undo_pending);
        if let Err(e) = self.backend.put_answers(&answers) {
            self.answers_refused(e, &answers, &mut names, table, now, stats);
        }
        for i in self.backend.put_names(&names) {
            let NameWrite { key, refs, replace } = &names[i];
            let Err(e) = self.backend.put_name(key, *refs, *replace) else {
                continue;
            };
            let NameUndo { replaced, old } = &undo[i];
            let table_key = Key::from_wire(key).expect("written keys come from table keys");
            log::warn!(
                "writing {} failed ({e:#}); withdrawing it to userspace",
                table_key.name()
            );
            self.apply_nxdomain(false, table.zone(), stats);
            self.release(refs.a, now);
            self.release(refs.aaaa, now);
            if *replaced {
                // It still points at its old slots, which are in
                // quarantine now: take it out (or keep them forever).
                if let Err(e) = self.backend.remove_name(key) {
                    log::warn!("removing {}: {e:#}", table_key.name());
                    stats.write_errors += 1;
                    self.keep_forever(*old);
                }
            }
            self.name_counts[tier(key.len())] -= 1;
            // Saturating: after a sync that failed half way, its held-back
            // writes go out with the next one, which did not count them.
            stats.names_written = stats.names_written.saturating_sub(1);
            stats.names_full += 1;
            // Unless a later write of the same name has replaced them.
            if let Some((_, entry)) = table.entry_mut(&table_key)
                && entry.refs.a == refs.a
                && entry.refs.aaaa == refs.aaaa
            {
                entry.refs = MapRefs::NONE;
                self.missing += 1;
            }
        }
        Ok(())
    }

    /// Puts one answer into a fresh slot of the smallest class with room.
    /// `record_len` is the size of one of its records with a compressed
    /// owner (16 for A, 28 for AAAA).
    fn place(
        &mut self,
        want: Option<Encoded>,
        record_len: usize,
        stats: &mut SyncStats,
    ) -> Result<AnswerRef> {
        let Some(Encoded { bytes, count }) = want else {
            return Ok(REF_NODATA);
        };
        // The small class holds single records only, which keeps the most
        // common answer (one pod) at 40 bytes.
        let first = usize::from(count > 1);
        let Some(class) = (first..ANSWER_CLASSES.len()).find(|&c| bytes.len() <= ANSWER_CLASSES[c])
        else {
            // No UDP reply of ours holds it: the kernel says TC=1.
            stats.answers_too_large += 1;
            return Ok(REF_TRUNCATED);
        };
        // A full small class spills upward.
        let Some((class, slot)) =
            (class..ANSWER_CLASSES.len()).find_map(|c| self.alloc(c).map(|s| (c, s)))
        else {
            stats.answers_full += 1;
            return Ok(REF_PASS);
        };
        let stride = if class > 0 && count > 1 && bytes.len() == usize::from(count) * record_len {
            record_len as u16
        } else {
            0
        };
        self.answers_pending.push(AnswerWrite {
            class,
            slot,
            bytes,
            count,
            stride,
        });
        stats.answers_written += 1;
        Ok(answer_ref(CLASSES[class], slot))
    }

    fn release(&mut self, r: AnswerRef, now: Instant) {
        let Some((class, slot)) = slot_of(r) else {
            return;
        };
        if class >= self.pools.len() || self.never_reuse.contains(&(class, slot)) {
            return;
        }
        self.pools[class].release(slot, now);
    }

    /// Answer slots in use per class (quarantined ones excluded).
    pub fn slots_in_use(&self) -> [u32; 3] {
        [
            self.pools[0].in_use(),
            self.pools[1].in_use(),
            self.pools[2].in_use(),
        ]
    }

    /// Names the kernel answers (in the name maps).
    pub fn names_installed(&self) -> usize {
        self.name_counts.iter().map(|&c| c as usize).sum()
    }
}

#[cfg(test)]
mod tests;
