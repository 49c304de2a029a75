//! The [`Backend`] over the loaded program's maps: each write of the
//! syncer turned into the value layout of the map it goes to (answer
//! classes, name tiers, the SOA banks, the config word).

use anyhow::{Context as _, Result, bail};
use hsdns_common::{
    AnswerL, AnswerM, AnswerS, Authority, MAP_ANSWERS, NameRecord48, NameRecord112, NameRecord256,
    NameRefs, ZONE_MAX, csum_add_bytes, csum_fold, dotted,
};

use super::super::{AnswerWrite, Backend, NameWrite, StoredAnswer, tier};
use super::BpfMaps;

/// The lowercase wire format of a dotted name (see `hsdns_common::name`),
/// `None` for bytes that are not one.
fn wire_of_dotted(d: &[u8]) -> Option<Vec<u8>> {
    let end = d.iter().position(|&b| b == 0)?;
    let mut w = Vec::with_capacity(end + 1);
    if end > 0 {
        if d[0] != b'.' {
            return None;
        }
        for label in d[1..end].split(|&b| b == b'.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            w.push(label.len() as u8);
            w.extend_from_slice(label);
        }
    }
    w.push(0);
    Some(w)
}

fn fill<const N: usize>(bytes: &[u8]) -> Result<[u8; N]> {
    if bytes.len() > N {
        bail!("{} bytes do not fit a {N}-byte value", bytes.len());
    }
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(bytes);
    Ok(out)
}

/// BPF_NOEXIST / BPF_EXIST (linux/bpf.h).
fn name_flags(replace: bool) -> u64 {
    if replace { 2 } else { 1 }
}

fn csum(bytes: &[u8]) -> u16 {
    csum_fold(csum_add_bytes(0, bytes))
}

macro_rules! answer_value {
    ($name:ident, $ty:ident) => {
        fn $name(bytes: &[u8], count: u16, stride: u16) -> Result<$ty> {
            Ok($ty {
                len: bytes.len() as u16,
                count,
                csum: csum(bytes),
                stride,
                bytes: fill(bytes)?,
            })
        }
    };
}
answer_value!(answer_s, AnswerS);
answer_value!(answer_m, AnswerM);
answer_value!(answer_l, AnswerL);

impl Backend for BpfMaps {
    fn put_answer(
        &mut self,
        class: usize,
        slot: u32,
        bytes: &[u8],
        count: u16,
        stride: u16,
    ) -> Result<()> {
        let r = match class {
            0 => self.answers_s.set(slot, answer_s(bytes, count, stride)?, 0),
            1 => self.answers_m.set(slot, answer_m(bytes, count, stride)?, 0),
            2 => self.answers_l.set(slot, answer_l(bytes, count, stride)?, 0),
            _ => bail!("no answer class {class}"),
        };
        r.with_context(|| format!("writing {} slot {slot}", MAP_ANSWERS[class]))
    }

    fn put_answers(&mut self, answers: &[AnswerWrite]) -> Result<()> {
        let mut by_class: [Vec<&AnswerWrite>; 3] = Default::default();
        for a in answers {
            by_class
                .get_mut(a.class)
                .with_context(|| format!("no answer class {}", a.class))?
                .push(a);
        }
        let [s, m, l] = by_class;
        self.put_answer_batches(0, &s, |a| answer_s(&a.bytes, a.count, a.stride))?;
        self.put_answer_batches(1, &m, |a| answer_m(&a.bytes, a.count, a.stride))?;
        self.put_answer_batches(2, &l, |a| answer_l(&a.bytes, a.count, a.stride))
    }

    fn put_names(&mut self, names: &[NameWrite]) -> Vec<usize> {
        // Names of different tiers are different names: only the order
        // within a tier matters.
        let mut by_tier: [Vec<usize>; 3] = Default::default();
        for (i, n) in names.iter().enumerate() {
            by_tier[tier(n.key.len())].push(i);
        }
        let mut failed = Vec::new();
        self.put_name_batches(
            0,
            names,
            &by_tier[0],
            |n| {
                let (h, d) = self.key_of(&n.key)?;
                Ok((h, record!(NameRecord48, &d, h, n.refs)?))
            },
            &mut failed,
        );
        self.put_name_batches(
            1,
            names,
            &by_tier[1],
            |n| {
                let (h, d) = self.key_of(&n.key)?;
                Ok((h, record!(NameRecord112, &d, h, n.refs)?))
            },
            &mut failed,
        );
        self.put_name_batches(
            2,
            names,
            &by_tier[2],
            |n| {
                let (h, d) = self.key_of(&n.key)?;
                Ok((h, record!(NameRecord256, &d, h, n.refs)?))
            },
            &mut failed,
        );
        failed.sort_unstable();
        failed
    }

    fn put_name(&mut self, key: &[u8], refs: NameRefs, replace: bool) -> Result<()> {
        let (h, d) = self.key_of(key)?;
        let flags = name_flags(replace);
        let r = match tier(key.len()) {
            0 => self
                .names64
                .insert(h, record!(NameRecord48, &d, h, refs)?, flags),
            1 => self
                .names128
                .insert(h, record!(NameRecord112, &d, h, refs)?, flags),
            _ => self
                .names256
                .insert(h, record!(NameRecord256, &d, h, refs)?, flags),
        };
        r.context("writing a name")
    }

    fn remove_name(&mut self, key: &[u8]) -> Result<()> {
        // Only this name's own entry: after a collision (see
        // `put_name_batches`) the key may hold another name's.
        if self.name(key)?.is_none() {
            return Ok(());
        }
        let (h, _) = self.key_of(key)?;
        let r = match tier(key.len()) {
            0 => self.names64.remove(&h),
            1 => self.names128.remove(&h),
            _ => self.names256.remove(&h),
        };
        r.context("removing a name")
    }

    fn put_soa(&mut self, index: u32, bytes: &[u8]) -> Result<()> {
        let a = Authority {
            len: bytes.len() as u16,
            count: 1,
            csum: csum(bytes),
            stride: 0,
            bytes: fill(bytes)?,
        };
        self.soa.set(index, a, 0).context("writing soa")
    }

    fn for_each_name(&self, f: &mut dyn FnMut(&[u8], NameRefs)) -> Result<()> {
        macro_rules! walk {
            ($map:expr) => {
                for item in $map.iter() {
                    let (k, rec) = item.context("reading a name map")?;
                    // A record that is no name, or not under its own key,
                    // cannot have come from a daemon; skipping it leaves it
                    // to no one (the kernel never answers from it either).
                    let Some(wire) = wire_of_dotted(rec.dotted()) else {
                        continue;
                    };
                    if self.key_of(&wire).is_ok_and(|(h, _)| h == k) {
                        f(&wire, rec.refs());
                    }
                }
            };
        }
        walk!(self.names64);
        walk!(self.names128);
        walk!(self.names256);
        Ok(())
    }

    fn get_name(&self, key: &[u8]) -> Result<Option<NameRefs>> {
        self.name(key)
    }

    fn get_answer(&self, class: usize, slot: u32) -> Result<StoredAnswer> {
        self.answer(class, slot)
    }

    fn set_nxdomain(&mut self, on: bool, zone: &[u8]) -> Result<()> {
        let mut d = [0u8; ZONE_MAX];
        let len = dotted(zone, &mut d).with_context(|| {
            format!(
                "the zone ({} bytes) is too long for kernel NXDOMAIN",
                zone.len()
            )
        })?;
        self.shadow.nxdomain = on.into();
        self.shadow.zone_len = len as u32;
        self.shadow.zone_labels = d[..len].iter().filter(|&&b| b == b'.').count() as u32;
        for (z, b) in self.shadow.zone.iter_mut().zip(d) {
            *z = b as i8;
        }
        self.write_config()
    }

    fn set_soa_bank(&mut self, bank: u32) -> Result<()> {
        self.shadow.soa_bank = bank;
        self.write_config()
    }
}
