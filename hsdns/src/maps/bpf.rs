//! The [`Backend`](super::Backend) over the loaded program's maps: opening
//! them (from the loaded object, or pinned by a running daemon), the
//! config word, and reading names and answers back as the kernel reads
//! them. The writers are in `bpf/`: the per-map value layouts
//! (`backend.rs`), batched writes (`batch.rs`) and the DNS address slots
//! (`dns_addrs.rs`).

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd, RawFd},
    path::Path,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
};
use hsdns_common::{
    AnswerL, AnswerM, AnswerS, Authority, Config, Counters, DnsAddr, HashKey, Layout, MAP_ANSWERS,
    MAP_CONFIG, MAP_COUNTERS, MAP_DNS_ADDRS, MAP_LAYOUT, MAP_NAMES, MAP_SOA, NameHash,
    NameRecord48, NameRecord112, NameRecord256, NameRefs, dotted, name_hash,
};

use super::tier;

/// The record of a name in dotted form, for the tier its length picks.
macro_rules! record {
    ($ty:ident, $d:expr, $h:expr, $refs:expr) => {
        $ty::new($d, $h.hash, $refs).context("a name record that does not fit its tier")
    };
}

mod backend;
mod batch;
mod dns_addrs;

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
    /// The counters summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let per_cpu = self.counters.get(&0, 0).context("reading counters")?;
        Ok(sum_counters(per_cpu.iter()))
    }
}
/// The counters of the daemon whose maps are pinned in `pin_dir`, summed
/// over CPUs. Opens the counters pin alone, not every map: during a
/// blue/green upgrade across a map-type change the other pins may be of
/// another layout, and `/metrics` and `hsdns stats` must still read the
/// verdicts (the counters struct only grows at the end, by TYPES_VERSION).
pub fn read_pinned_counters(pin_dir: &Path) -> Result<Counters> {
    let path = pin_dir.join(MAP_COUNTERS);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening {} (is hsdns running?)", path.display()))?;
    let map: PerCpuArray<MapData, Counters> = Map::PerCpuArray(data).try_into()?;
    let per_cpu = map.get(&0, 0).context("reading counters")?;
    Ok(sum_counters(per_cpu.iter()))
}
/// Sums per-CPU counter values field by field.
pub fn sum_counters<'a>(values: impl Iterator<Item = &'a Counters>) -> Counters {
    let mut t = Counters::default();
    for c in values {
        t.add(c);
    }
    t
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
