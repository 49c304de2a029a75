//! The [`Backend`] over the loaded program's maps.

use std::{
    io,
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, RawFd},
    path::Path,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
};
use hsdns_common::{
    AnswerL, AnswerM, AnswerS, Authority, Config, Counters, DNS_ADDR_SLOTS, DnsAddr, HashKey,
    Layout, MAP_ANSWERS, MAP_CONFIG, MAP_COUNTERS, MAP_DNS_ADDRS, MAP_LAYOUT, MAP_NAMES, MAP_SOA,
    NameHash, NameRecord48, NameRecord112, NameRecord256, NameRefs, ZONE_MAX, csum_add_bytes,
    csum_fold, dotted, name_hash,
};

use super::{AnswerWrite, Backend, NameWrite, tier};

/// The record of a name in dotted form, for the tier its length picks.
macro_rules! record {
    ($ty:ident, $d:expr, $h:expr, $refs:expr) => {
        $ty::new($d, $h.hash, $refs).context("a name record that does not fit its tier")
    };
}

pub struct BpfMaps {
    names64: HashMap<MapData, NameHash, NameRecord48>,
    names128: HashMap<MapData, NameHash, NameRecord112>,
    names256: HashMap<MapData, NameHash, NameRecord256>,
    answers_s: Array<MapData, AnswerS>,
    answers_m: Array<MapData, AnswerM>,
    answers_l: Array<MapData, AnswerL>,
    soa: Array<MapData, Authority>,
    config: Array<MapData, Config>,
    dns_addrs: Array<MapData, DnsAddr>,
    counters: PerCpuArray<MapData, Counters>,
    layout: Array<MapData, Layout>,
    /// What `config` holds: every change rewrites the whole entry. Its
    /// `hash_key` keys the name maps.
    shadow: Config,
    /// The descriptors of the name and answer maps above, owned by them,
    /// for batch writes (aya's typed maps do not hand them out). Not
    /// duplicates: a second descriptor would count the maps' memory twice
    /// wherever it is summed per descriptor (bpftool, the benchmarks).
    names_fds: [RawFd; 3],
    answers_fds: [RawFd; 3],
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("no map {name} in the object"))
}

/// A map and its descriptor (which stays the map's: see `names_fds`).
fn with_fd(map: Map, name: &str) -> Result<(Map, RawFd)> {
    let fd = match &map {
        Map::HashMap(d) | Map::Array(d) => d.fd().as_fd().as_raw_fd(),
        _ => bail!("map {name} is neither a hash map nor an array"),
    };
    Ok((map, fd))
}

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

pub use super::StoredAnswer;

impl BpfMaps {
    /// Takes the maps out of the loaded object (pin them first). Maps just
    /// created get their name maps keyed: a random hash key goes into
    /// `config` before any name is written; adopted maps keep theirs (the
    /// names in them are under it).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let mut maps = Self::from_maps(|name| take(ebpf, name))?;
        if maps.shadow.hash_key == HashKey::default() {
            maps.shadow.hash_key = random_key()?;
            maps.write_config()?;
        }
        Ok(maps)
    }

    /// The maps a running daemon pinned in `pin_dir`, as bpftool sees
    /// them (the benchmarks read the kernel's view through this).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self> {
        Self::from_maps(|name| {
            let path = pin_dir.join(name);
            let data =
                MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
            Ok(Map::from_map_data(data)?)
        })
    }

    fn from_maps(mut map: impl FnMut(&str) -> Result<Map>) -> Result<Self> {
        let (names64, n64) = with_fd(map(MAP_NAMES[0])?, MAP_NAMES[0])?;
        let (names128, n128) = with_fd(map(MAP_NAMES[1])?, MAP_NAMES[1])?;
        let (names256, n256) = with_fd(map(MAP_NAMES[2])?, MAP_NAMES[2])?;
        let (answers_s, a_s) = with_fd(map(MAP_ANSWERS[0])?, MAP_ANSWERS[0])?;
        let (answers_m, a_m) = with_fd(map(MAP_ANSWERS[1])?, MAP_ANSWERS[1])?;
        let (answers_l, a_l) = with_fd(map(MAP_ANSWERS[2])?, MAP_ANSWERS[2])?;
        let mut maps = Self {
            names64: names64.try_into()?,
            names128: names128.try_into()?,
            names256: names256.try_into()?,
            answers_s: answers_s.try_into()?,
            answers_m: answers_m.try_into()?,
            answers_l: answers_l.try_into()?,
            names_fds: [n64, n128, n256],
            answers_fds: [a_s, a_m, a_l],
            soa: map(MAP_SOA)?.try_into()?,
            config: map(MAP_CONFIG)?.try_into()?,
            dns_addrs: map(MAP_DNS_ADDRS)?.try_into()?,
            counters: map(MAP_COUNTERS)?.try_into()?,
            layout: map(MAP_LAYOUT)?.try_into()?,
            shadow: Config::default(),
        };
        // What the maps hold (zeros when just created; what the previous
        // daemon wrote when adopted, the hash key among it), so every write
        // keeps the rest.
        maps.shadow = maps.config.get(&0, 0).context("reading config")?;
        Ok(maps)
    }

    /// The config entry as last written.
    pub fn config(&self) -> Config {
        self.shadow
    }

    /// Writes the heartbeat (CLOCK_BOOTTIME ns) and, with it, whether the
    /// kernel answers: one write, so the kernel never sees answering on
    /// with an old heartbeat.
    pub fn set_heartbeat(&mut self, boot_ns: u64, answering: bool) -> Result<()> {
        self.shadow.heartbeat_ns = boot_ns;
        self.shadow.answering = answering.into();
        self.write_config()
    }

    /// The staleness bounds in ns (0: none), see `Config`.
    pub fn set_stale_bounds(&mut self, nxdomain_ns: u64, pass_ns: u64) -> Result<()> {
        self.shadow.stale_nxdomain_ns = nxdomain_ns;
        self.shadow.stale_pass_ns = pass_ns;
        self.write_config()
    }

    /// The layout record (zeros in maps just created).
    pub fn layout(&self) -> Result<Layout> {
        self.layout.get(&0, 0).context("reading layout")
    }

    pub fn write_layout(&mut self, l: &Layout) -> Result<()> {
        self.layout.set(0, *l, 0).context("writing layout")
    }

    /// Puts `addrs` into `dns_addrs`; with `exact`, first removes the ones
    /// an earlier daemon answered for that are no longer wanted. More
    /// addresses than the map has slots is an error, before any write.
    pub fn set_dns_addrs(&mut self, addrs: &[IpAddr], exact: bool) -> Result<()> {
        let mut keys: Vec<DnsAddr> = Vec::new();
        for k in addrs.iter().map(|a| dns_addr(*a)) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        if keys.len() > DNS_ADDR_SLOTS as usize {
            bail!(
                "{} DNS addresses configured (--dns-addr and --intercept-addr), but the kernel \
                 answers for at most {DNS_ADDR_SLOTS}",
                keys.len()
            );
        }
        let slots = self.dns_slots()?;
        let others = slots
            .iter()
            .filter(|s| s.family != 0 && !keys.contains(s))
            .count();
        // Without `exact`, an earlier daemon's addresses stay, unless they
        // would leave a configured one without a slot: configured first.
        if exact || keys.len() + others > DNS_ADDR_SLOTS as usize {
            for (i, slot) in slots.into_iter().enumerate() {
                if slot.family != 0 && !keys.contains(&slot) {
                    self.clear_dns_slot(i as u32, slot)?;
                }
            }
        }
        for addr in addrs {
            self.add_dns_addr(*addr)?;
        }
        Ok(())
    }

    /// The addresses in `dns_addrs`, in slot order.
    pub fn dns_addrs(&self) -> Result<Vec<IpAddr>> {
        Ok(self
            .dns_slots()?
            .into_iter()
            .filter_map(|a| match a.family {
                4 => Some(IpAddr::from([a.addr[0], a.addr[1], a.addr[2], a.addr[3]])),
                6 => Some(IpAddr::from(a.addr)),
                _ => None,
            })
            .collect())
    }

    fn dns_slots(&self) -> Result<Vec<DnsAddr>> {
        (0..DNS_ADDR_SLOTS)
            .map(|i| self.dns_addrs.get(&i, 0).context("reading dns_addrs"))
            .collect()
    }

    /// Writes `a` into the empty slot `i`: the address first, under family
    /// 0, then the family (see `DnsAddr`: a reader never sees half of it).
    fn put_dns_slot(&mut self, i: u32, a: DnsAddr) -> Result<()> {
        self.dns_addrs.set(i, DnsAddr { family: 0, ..a }, 0)?;
        self.dns_addrs.set(i, a, 0)?;
        Ok(())
    }

    /// Empties slot `i`, which holds `a`: the family first, then the address.
    fn clear_dns_slot(&mut self, i: u32, a: DnsAddr) -> Result<()> {
        self.dns_addrs
            .set(i, DnsAddr { family: 0, ..a }, 0)
            .context("removing a DNS address")?;
        self.dns_addrs
            .set(i, DnsAddr::EMPTY, 0)
            .context("removing a DNS address")?;
        Ok(())
    }

    /// Until this is on, the kernel passes every query up.
    pub fn set_answering(&mut self, on: bool) -> Result<()> {
        self.shadow.answering = on.into();
        self.write_config()
    }

    /// Whether the kernel is told to answer.
    pub fn answering(&self) -> bool {
        self.shadow.answering != 0
    }

    /// Writes a record under the hash of `key` (a short lowercase
    /// wire-format name) that holds `stored` as its name, with `refs`, and
    /// the right check word or `check`. For tests: what a hash collision or
    /// a map element reused for another name looks like to the kernel.
    #[doc(hidden)]
    pub fn put_raw_record(
        &mut self,
        key: &[u8],
        stored: &[u8],
        refs: NameRefs,
        check: Option<u32>,
    ) -> Result<()> {
        let (h, _) = self.key_of(key)?;
        let (_, d) = self.key_of(stored)?;
        let mut rec = record!(NameRecord48, &d, h, refs)?;
        if let Some(c) = check {
            rec.check = c;
        }
        self.names64.insert(h, rec, 0).context("writing a record")
    }

    fn write_config(&mut self) -> Result<()> {
        self.config.set(0, self.shadow, 0).context("writing config")
    }

    /// Adds `addr` to `dns_addrs` (nothing when it is there already). Fails
    /// when every slot is taken: queries to `addr` then go up to userspace.
    pub fn add_dns_addr(&mut self, addr: IpAddr) -> Result<()> {
        let key = dns_addr(addr);
        let slots = self.dns_slots()?;
        if slots.contains(&key) {
            return Ok(());
        }
        let Some(free) = slots.iter().position(|s| s.family == 0) else {
            bail!(
                "adding DNS address {addr}: the kernel answers for at most {DNS_ADDR_SLOTS} \
                 addresses and all are taken; queries to {addr} go up to userspace"
            );
        };
        self.put_dns_slot(free as u32, key)
            .with_context(|| format!("adding DNS address {addr}"))
    }

    pub fn remove_dns_addr(&mut self, addr: IpAddr) -> Result<()> {
        let key = dns_addr(addr);
        for (i, slot) in self.dns_slots()?.into_iter().enumerate() {
            if slot == key {
                self.clear_dns_slot(i as u32, slot)
                    .with_context(|| format!("removing DNS address {addr}"))?;
            }
        }
        Ok(())
    }

    /// The map key of a name (`wire` the lowercase wire-format name) and
    /// its dotted form.
    fn key_of(&self, wire: &[u8]) -> Result<(NameHash, Vec<u8>)> {
        let mut d = vec![0u8; wire.len()];
        let len = dotted(wire, &mut d)
            .with_context(|| format!("{wire:?} is not a name the kernel can hold"))?;
        Ok((
            NameHash {
                hash: name_hash(&self.shadow.hash_key, &d, len),
            },
            d,
        ))
    }

    /// A name's answer references in the maps (`key` the lowercase
    /// wire-format name), read as the kernel reads them: the record under
    /// the name's hash, if it holds this name.
    pub fn name(&self, key: &[u8]) -> Result<Option<NameRefs>> {
        let (h, d) = self.key_of(key)?;
        macro_rules! get {
            ($map:expr) => {
                match $map.get(&h, 0) {
                    Ok(r) if r.dotted() == d.as_slice() => Some(r.refs()),
                    Ok(_) | Err(aya::maps::MapError::KeyNotFound) => None,
                    Err(e) => return Err(e).context("reading a name"),
                }
            };
        }
        Ok(match tier(key.len()) {
            0 => get!(self.names64),
            1 => get!(self.names128),
            _ => get!(self.names256),
        })
    }

    /// The record of a name as stored (for tests and diagnostics).
    pub fn name_record_check(&self, key: &[u8]) -> Result<Option<u32>> {
        let (h, _) = self.key_of(key)?;
        let r = match tier(key.len()) {
            0 => self.names64.get(&h, 0).map(|r| r.check),
            1 => self.names128.get(&h, 0).map(|r| r.check),
            _ => self.names256.get(&h, 0).map(|r| r.check),
        };
        match r {
            Ok(c) => Ok(Some(c)),
            Err(aya::maps::MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e).context("reading a name"),
        }
    }

    fn names_fd(&self, tier: usize) -> BorrowedFd<'_> {
        // SAFETY: the descriptor belongs to a name map of `self`, open
        // for as long as `self` is.
        unsafe { BorrowedFd::borrow_raw(self.names_fds[tier]) }
    }

    fn answers_fd(&self, class: usize) -> BorrowedFd<'_> {
        // SAFETY: as in `names_fd`.
        unsafe { BorrowedFd::borrow_raw(self.answers_fds[class]) }
    }

    /// What an answer slot holds.
    pub fn answer(&self, class: usize, slot: u32) -> Result<StoredAnswer> {
        macro_rules! stored {
            ($map:expr) => {{
                let a = $map.get(&slot, 0).context("reading an answer")?;
                StoredAnswer {
                    len: a.len,
                    count: a.count,
                    csum: a.csum,
                    stride: a.stride,
                    bytes: a.bytes.to_vec(),
                }
            }};
        }
        Ok(match class {
            0 => stored!(self.answers_s),
            1 => stored!(self.answers_m),
            2 => stored!(self.answers_l),
            _ => bail!("no answer class {class}"),
        })
    }

    /// Writes `writes` (all of one answer class) in batches; what a batch
    /// leaves undone goes one at a time, for the error of the one failing.
    fn put_answer_batches<V>(
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
    /// written on its own ([`Backend::put_name`]) is strict.
    fn put_name_batches<V>(
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

    /// The counters summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let per_cpu = self.counters.get(&0, 0).context("reading counters")?;
        Ok(sum_counters(per_cpu.iter()))
    }
}

fn dns_addr(addr: IpAddr) -> DnsAddr {
    match addr {
        IpAddr::V4(a) => DnsAddr::v4(a.octets()),
        IpAddr::V6(a) => DnsAddr::v6(a.octets()),
    }
}

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

/// Sums per-CPU counter values field by field.
pub fn sum_counters<'a>(values: impl Iterator<Item = &'a Counters>) -> Counters {
    let mut t = Counters::default();
    for c in values {
        t.add(c);
    }
    t
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

/// A fresh hash key from the kernel's random pool.
fn random_key() -> Result<HashKey> {
    let mut key = HashKey::default();
    for k in key.k.iter_mut().flatten() {
        let mut buf = [0u8; 8];
        // SAFETY: getrandom writes at most buf.len() bytes into buf.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n != buf.len() as isize {
            bail!("getrandom: {}", io::Error::last_os_error());
        }
        *k = u64::from_le_bytes(buf);
    }
    Ok(key)
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
