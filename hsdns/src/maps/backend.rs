//! Where the syncer's writes go, and how the kernel's maps are addressed
//! (name keys, tiers, answer classes and slots): the contract between the
//! syncer and a map backend. Two backends implement it: the loaded
//! program's maps ([`super::bpf::BpfMaps`]) and the in-memory one the
//! syncer's tests run against, so both are driven by the same code.

use anyhow::Result;
use hickory_proto::{rr::Name, serialize::binary::BinEncodable as _};
use hsdns_common::{AnswerClass, AnswerRef, NameRefs, ref_class, ref_slot};

/// Where the bytes go. The BPF implementation is [`super::bpf::BpfMaps`];
/// tests use an in-memory one.
pub trait Backend {
    /// `stride` is the size of each record when the kernel may rotate them
    /// (see `hsdns_common::AnswerS::stride`), else 0.
    fn put_answer(
        &mut self,
        class: usize,
        slot: u32,
        bytes: &[u8],
        count: u16,
        stride: u16,
    ) -> Result<()>;
    /// `key` is the lowercase wire-format name. `replace`: the name is in
    /// the maps already (a new name must not overwrite another's entry).
    fn put_name(&mut self, key: &[u8], refs: NameRefs, replace: bool) -> Result<()>;
    /// Writes every answer, as [`Self::put_answer`] each. All go into
    /// fresh slots, so their order does not matter.
    fn put_answers(&mut self, answers: &[AnswerWrite]) -> Result<()> {
        for a in answers {
            self.put_answer(a.class, a.slot, &a.bytes, a.count, a.stride)?;
        }
        Ok(())
    }
    /// Writes the names in order, as [`Self::put_name`] each, and returns
    /// the positions of those it did not write, ascending. Of a name that
    /// failed, no later write of the same key may have happened: the caller
    /// writes them again one at a time, in order.
    fn put_names(&mut self, names: &[NameWrite]) -> Vec<usize> {
        (0..names.len())
            .filter(|&i| {
                let n = &names[i];
                self.put_name(&n.key, n.refs, n.replace).is_err()
            })
            .collect()
    }
    fn remove_name(&mut self, key: &[u8]) -> Result<()>;
    fn put_soa(&mut self, index: u32, bytes: &[u8]) -> Result<()>;
    /// Makes negative answers use SOA bank `bank` (see
    /// `hsdns_common::Config::soa_bank`).
    fn set_soa_bank(&mut self, bank: u32) -> Result<()>;
    /// Turns the kernel's NXDOMAIN answers for provably missing names on or
    /// off (see `hsdns_common::Config::nxdomain`); `zone` is the zone's
    /// lowercase wire-format name.
    fn set_nxdomain(&mut self, on: bool, zone: &[u8]) -> Result<()>;
    /// Calls `f` with every name in the maps (lowercase wire format) and
    /// its answer references: what a daemon that adopts pinned maps finds
    /// in them.
    fn for_each_name(&self, f: &mut dyn FnMut(&[u8], NameRefs)) -> Result<()>;
    /// A name's answer references in the maps.
    fn get_name(&self, key: &[u8]) -> Result<Option<NameRefs>>;
    /// What an answer slot holds.
    fn get_answer(&self, class: usize, slot: u32) -> Result<StoredAnswer>;
}

/// What an answer slot holds, as written by [`Backend::put_answer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnswer {
    pub len: u16,
    pub count: u16,
    pub csum: u16,
    pub stride: u16,
    /// The whole slot: the answer, then zeros.
    pub bytes: Vec<u8>,
}

/// One answer for [`Backend::put_answers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerWrite {
    pub class: usize,
    pub slot: u32,
    pub bytes: Vec<u8>,
    pub count: u16,
    pub stride: u16,
}

/// One name for [`Backend::put_names`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameWrite {
    /// The lowercase wire-format name.
    pub key: Vec<u8>,
    pub refs: NameRefs,
    /// The name is in the maps already.
    pub replace: bool,
}

/// The answer map classes, by index.
pub(super) const CLASSES: [AnswerClass; 3] =
    [AnswerClass::Small, AnswerClass::Medium, AnswerClass::Large];

/// The lowercase wire-format name (the kernel keys its dotted form).
pub fn name_key(name: &Name) -> Result<Vec<u8>> {
    let mut n = name.to_lowercase();
    n.set_fqdn(true);
    Ok(n.to_bytes()?)
}

/// The answer class and slot an answer reference points at, if any.
pub fn slot_of(r: AnswerRef) -> Option<(usize, u32)> {
    let class = CLASSES.iter().position(|&c| ref_class(r) == Some(c))?;
    Some((class, ref_slot(r)))
}

/// The name map tier (0..3) of a wire-format name length.
pub fn tier(len: usize) -> usize {
    hsdns_common::NAME_TIERS
        .iter()
        .position(|&t| len <= t)
        .unwrap_or(2)
}
