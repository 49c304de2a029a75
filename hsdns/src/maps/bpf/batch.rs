//! Batched writes: BPF_MAP_UPDATE_BATCH through a raw bpf(2) call, and
//! the writers that group the syncer's writes into batches per map. A
//! third of a full sync at 150,000 pods was the per-call cost of single
//! updates; the price is that a batch cannot refuse to overwrite
//! (see [`BpfMaps::put_name_batches`]).

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use anyhow::Result;
use hsdns_common::NameHash;

use super::super::{AnswerWrite, Backend as _, NameWrite};
use super::BpfMaps;

/// Elements per BPF_MAP_UPDATE_BATCH call: the kernel walks them without
/// a break (it only reschedules between them), and the values of the
/// largest answer class take 2.4 KB each.
const BATCH: usize = 256;

/// bpf(2) command BPF_MAP_UPDATE_BATCH (linux/bpf.h, Linux 5.6).
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr` (linux/bpf.h). The kernel
/// accepts an attr shorter than its own and reads the rest as zero.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `keys[i]` -> `values[i]` in order in one bpf(2) call, as as many
/// BPF_MAP_UPDATE_ELEM calls with `elem_flags` would (the kernel runs the same
/// update per element): a third of the time of a full sync at 150,000
/// pods was the per-call cost of single updates. aya 0.14 has no batch
/// operations, hence the raw call.
///
/// `K` and `V` must be the map's key and value types (their sizes are the
/// map's, as aya checked when it typed the map): the kernel steps through
/// the arrays by its key and value sizes.
///
/// On failure, returns how many elements were written, all before the
/// first that failed. That is 0 when the kernel does not say (a kernel
/// without batch operations, say): writing them again is harmless.
fn update_batch<K, V>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
    elem_flags: u64,
) -> Result<(), (usize, io::Error)> {
    assert_eq!(keys.len(), values.len());
    if keys.is_empty() {
        return Ok(());
    }
    let count = u32::try_from(keys.len()).expect("batches are small");
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count,
        map_fd: fd.as_raw_fd() as u32,
        elem_flags,
        ..BatchAttr::default()
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for this command, the
    // kernel reads `count` keys and values from the two slices (their
    // element sizes are the map's, see above) and writes back only
    // `attr.count`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &raw mut attr,
            size_of::<BatchAttr>(),
        )
    };
    if r == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // The kernel writes back the number done on failures within the
    // batch; on earlier ones `count` is still ours.
    let done = if attr.count < count {
        attr.count as usize
    } else {
        0
    };
    Err((done, err))
}

impl BpfMaps {
    /// Writes `writes` (all of one answer class) in batches; what a batch
    /// leaves undone goes one at a time, for the error of the one failing.
    pub(super) fn put_answer_batches<V>(
        &mut self,
        class: usize,
        writes: &[&AnswerWrite],
        value: impl Fn(&AnswerWrite) -> Result<V>,
    ) -> Result<()> {
        for chunk in writes.chunks(BATCH) {
            let keys: Vec<u32> = chunk.iter().map(|a| a.slot).collect();
            let values = chunk.iter().map(|a| value(a)).collect::<Result<Vec<V>>>()?;
            if let Err((done, _)) = update_batch(self.answers_fd(class), &keys, &values, 0) {
                for a in &chunk[done..] {
                    self.put_answer(a.class, a.slot, &a.bytes, a.count, a.stride)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the names at `indexes` (all of one tier) in batches, in
    /// order; adds to `failed` those not written. After a failure none of
    /// the tier's later names is tried: one of them could be a later write
    /// of the same name, which must not land before the earlier one.
    ///
    /// The kernel takes no BPF_NOEXIST in a batch (only BPF_F_LOCK), so a
    /// new name written here would overwrite another name's entry if their
    /// 64-bit keyed hashes collided (about one chance in 10^9 over 150,000
    /// names, and nobody can aim for it without the key): the kernel then
    /// finds a record that is not the other name's and passes its queries
    /// up (`pass_crossed`), which userspace answers correctly. A name
    /// written on its own ([`Backend::put_name`](super::super::Backend::put_name))
    /// is strict.
    pub(super) fn put_name_batches<V>(
        &self,
        tier: usize,
        names: &[NameWrite],
        indexes: &[usize],
        value: impl Fn(&NameWrite) -> Result<(NameHash, V)>,
        failed: &mut Vec<usize>,
    ) {
        let mut at = 0;
        while at < indexes.len() {
            let run = (indexes.len() - at).min(BATCH);
            let chunk = &indexes[at..at + run];
            let kv: Result<Vec<(NameHash, V)>> = chunk.iter().map(|&i| value(&names[i])).collect();
            let done = match kv {
                Ok(kv) => {
                    let (keys, values): (Vec<NameHash>, Vec<V>) = kv.into_iter().unzip();
                    match update_batch(self.names_fd(tier), &keys, &values, 0) {
                        Ok(()) => {
                            at += run;
                            continue;
                        }
                        Err((done, _)) => done,
                    }
                }
                Err(_) => 0,
            };
            failed.extend_from_slice(&indexes[at + done..]);
            return;
        }
    }
}
