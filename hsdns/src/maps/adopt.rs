//! Taking over maps a previous daemon filled, and surviving writes the
//! kernel refuses.
//!
//! A restarted daemon finds the pinned maps still answering. It rebuilds
//! which answer slots are in use from the names in them (through the
//! [`Backend`], so the in-memory backend tests the same code), then syncs
//! its table as usual with one difference: a name it has not written
//! itself is looked up in the maps first, and if what is there is exactly
//! what it would write, it takes the slots over without a write. Only once
//! its table is complete does it remove the names the table does not have
//! ([`Syncer::sweep`]): until then the kernel answers from the last
//! complete table, changed only where this daemon already knows better.

use std::{collections::HashSet, time::Instant};

use anyhow::Result;
use hickory_proto::{rr::Name, serialize::binary::BinDecodable as _};
use hsdns_common::{ANSWER_CLASSES, AnswerRef, REF_NODATA, REF_PASS};

use super::{AnswerWrite, Backend, MapRefs, NameWrite, SlotPool, SyncStats, Syncer};
use crate::{
    dns::answer::Encoded,
    maps::{slot_of, tier},
    records::{Key, RecordTable},
};

/// What the maps hold for a name this daemon has not written.
pub(super) enum Adopted {
    /// Exactly what it would write: these slots are its now.
    Same(MapRefs),
    /// Something else: replace it, then free these.
    Differs(MapRefs),
    Absent,
}

/// What adopting found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AdoptStats {
    pub names: usize,
    /// Answer slots in use per class.
    pub slots: [u32; 3],
    /// References to slots out of range, or to a slot another name uses
    /// too: those names are rewritten when the table is synced, and the
    /// shared slots are never reused.
    pub suspect: usize,
}

impl SlotPool {
    /// Marks `used` slots taken; the others below the highest used one go
    /// back to the free list. (The previous daemon's quarantine is long
    /// over: a restart takes far longer than any program run.)
    fn adopt(&mut self, used: &[bool]) {
        let top = used.iter().rposition(|&u| u).map_or(0, |i| i as u32 + 1);
        self.next = top;
        self.free = (0..top).rev().filter(|&s| !used[s as usize]).collect();
        self.quarantine.clear();
    }
}

impl<B: Backend> Syncer<B> {
    /// Takes over the maps as they are: slot ownership and name counts
    /// from the names in them. `nxdomain_on` and `soa_bank` are what the
    /// kernel was last told (the config map); NXDOMAIN stays so until the
    /// table is complete, and the next SOA goes into the other bank, not
    /// before [`super::QUARANTINE`] from now (the previous daemon may have
    /// switched banks just before it stopped). Call before the first sync.
    pub fn adopt(&mut self, nxdomain_on: bool, soa_bank: u32) -> Result<AdoptStats> {
        let caps: Vec<usize> = self.pools.iter().map(|p| p.cap as usize).collect();
        let mut used: Vec<Vec<bool>> = caps.iter().map(|&c| vec![false; c]).collect();
        let mut st = AdoptStats::default();
        let mut counts = [0u32; 3];
        let mut shared = HashSet::new();
        self.backend.for_each_name(&mut |key, rec| {
            st.names += 1;
            counts[tier(key.len())] += 1;
            for r in [rec.a, rec.aaaa] {
                let Some((c, s)) = slot_of(r) else { continue };
                match used.get_mut(c).and_then(|u| u.get_mut(s as usize)) {
                    Some(u) if *u => {
                        st.suspect += 1;
                        shared.insert((c, s));
                    }
                    Some(u) => *u = true,
                    None => st.suspect += 1,
                }
            }
        })?;
        for (pool, used) in self.pools.iter_mut().zip(&used) {
            pool.adopt(used);
        }
        st.slots = self.slots_in_use();
        self.name_counts = counts;
        self.never_reuse.extend(shared);
        self.nxdomain_on = nxdomain_on;
        self.soa_bank = soa_bank & 1;
        self.soa_flipped = Some(Instant::now());
        self.adopting = true;
        Ok(st)
    }

    /// Whether the maps are still being adopted (the table was not yet
    /// complete since [`Self::adopt`]).
    pub fn adopting(&self) -> bool {
        self.adopting
    }

    /// What the maps hold for `key`, against what this daemon would write.
    pub(super) fn adopted(
        &mut self,
        key: &[u8],
        answerable: bool,
        a: &Option<Encoded>,
        aaaa: &Option<Encoded>,
    ) -> Adopted {
        let rec = match self.backend.get_name(key) {
            Ok(Some(rec)) => rec,
            Ok(None) => return Adopted::Absent,
            Err(e) => {
                // Written anew; if it was there, its old slots stay taken.
                log::warn!("reading an adopted name: {e:#}");
                return Adopted::Absent;
            }
        };
        let refs = MapRefs {
            a: rec.a,
            aaaa: rec.aaaa,
        };
        let same = if answerable {
            self.stored_is(rec.a, a, 16) && self.stored_is(rec.aaaa, aaaa, 28)
        } else {
            rec.a == REF_PASS && rec.aaaa == REF_PASS
        };
        if same {
            Adopted::Same(refs)
        } else {
            Adopted::Differs(refs)
        }
    }

    /// Whether `r` in the maps is what [`Self::place`] would make of
    /// `want`: NODATA for no records, else a slot of a class the answer
    /// may live in holding exactly its bytes, count and stride.
    fn stored_is(&self, r: AnswerRef, want: &Option<Encoded>, record_len: usize) -> bool {
        let Some(Encoded { bytes, count }) = want else {
            return r == REF_NODATA;
        };
        let Some((class, slot)) = slot_of(r) else {
            // A pass for an answer this daemon would store: store it.
            return false;
        };
        let smallest = usize::from(*count > 1);
        if class < smallest
            || class >= ANSWER_CLASSES.len()
            || bytes.len() > ANSWER_CLASSES[class]
            || slot >= self.pools[class].cap
            || self.never_reuse.contains(&(class, slot))
        {
            return false;
        }
        let Ok(stored) = self.backend.get_answer(class, slot) else {
            return false;
        };
        let stride = if class > 0 && *count > 1 && bytes.len() == usize::from(*count) * record_len {
            record_len as u16
        } else {
            0
        };
        let n = bytes.len();
        stored.len as usize == n
            && stored.count == *count
            && stored.stride == stride
            && stored.bytes.get(..n) == Some(&bytes[..])
    }

    /// Removes from the maps every name the (now complete) table does not
    /// hold where the maps have it, and ends the adoption.
    pub(super) fn sweep(
        &mut self,
        table: &RecordTable,
        now: Instant,
        stats: &mut SyncStats,
    ) -> Result<()> {
        let mut gone: Vec<(Vec<u8>, MapRefs)> = Vec::new();
        self.backend.for_each_name(&mut |key, rec| {
            let refs = MapRefs {
                a: rec.a,
                aaaa: rec.aaaa,
            };
            let kept = Name::from_bytes(key)
                .ok()
                .and_then(|n| table.get(&n))
                .is_some_and(|e| e.refs == refs);
            if !kept {
                gone.push((key.to_vec(), refs));
            }
        })?;
        let n = gone.len();
        for (key, refs) in gone {
            self.remove_wire(&key, refs, now, stats);
        }
        self.adopting = false;
        log::info!("adopted maps swept: {n} names the table does not have removed");
        Ok(())
    }

    /// The backend refused a batch of answers: writes them one by one, and
    /// points every name whose answer did not go in at userspace for that
    /// type (its other type and every other name still go in, in order).
    pub(super) fn answers_refused(
        &mut self,
        e: anyhow::Error,
        answers: &[AnswerWrite],
        names: &mut [NameWrite],
        table: &mut RecordTable,
        now: Instant,
        stats: &mut SyncStats,
    ) {
        let failed: HashSet<(usize, u32)> = answers
            .iter()
            .filter(|a| {
                self.backend
                    .put_answer(a.class, a.slot, &a.bytes, a.count, a.stride)
                    .is_err()
            })
            .map(|a| (a.class, a.slot))
            .collect();
        if failed.is_empty() {
            return;
        }
        log::warn!(
            "writing answers: {e:#}; {} answers left to userspace",
            failed.len()
        );
        stats.write_errors += failed.len();
        stats.answers_written = stats.answers_written.saturating_sub(failed.len());
        for n in names.iter_mut() {
            let mut rec = n.refs;
            for r in [&mut rec.a, &mut rec.aaaa] {
                if slot_of(*r).is_some_and(|s| failed.contains(&s)) {
                    self.release(*r, now);
                    *r = REF_PASS;
                }
            }
            if rec == n.refs {
                continue;
            }
            // The table's record of the slots follows, unless a later
            // write of the same name has replaced them.
            let key = Key::from_wire(&n.key).expect("written keys come from table keys");
            if let Some((_, entry)) = table.entry_mut(&key)
                && entry.refs.a == n.refs.a
                && entry.refs.aaaa == n.refs.aaaa
            {
                entry.refs = MapRefs {
                    a: rec.a,
                    aaaa: rec.aaaa,
                };
            }
            n.refs = rec;
        }
    }

    /// A name may still point at these slots: never hand them out again.
    pub(super) fn keep_forever(&mut self, r: MapRefs) {
        for x in [r.a, r.aaaa] {
            if let Some(s) = slot_of(x) {
                self.never_reuse.insert(s);
            }
        }
    }

    /// A free slot of `class` that no name can still point at.
    pub(super) fn alloc(&mut self, class: usize) -> Option<u32> {
        loop {
            let s = self.pools[class].alloc()?;
            if !self.never_reuse.contains(&(class, s)) {
                return Some(s);
            }
        }
    }
}
