//! The [`Backend`] over the loaded program's maps.

use std::net::IpAddr;

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
};
use hsdns_common::{
    AnswerL, AnswerM, AnswerS, Authority, Config, Counters, DnsAddr, MAP_ANSWERS, MAP_CONFIG,
    MAP_COUNTERS, MAP_DNS_ADDRS, MAP_NAMES, MAP_SOA, NameKey64, NameKey128, NameKey256, NameRecord,
    csum_add_bytes, csum_fold,
};

use super::{Backend, tier};

pub struct BpfMaps {
    names64: HashMap<MapData, NameKey64, NameRecord>,
    names128: HashMap<MapData, NameKey128, NameRecord>,
    names256: HashMap<MapData, NameKey256, NameRecord>,
    answers_s: Array<MapData, AnswerS>,
    answers_m: Array<MapData, AnswerM>,
    answers_l: Array<MapData, AnswerL>,
    soa: Array<MapData, Authority>,
    config: Array<MapData, Config>,
    dns_addrs: HashMap<MapData, DnsAddr, u32>,
    counters: PerCpuArray<MapData, Counters>,
    /// What `config` holds: every change rewrites the whole entry.
    shadow: Config,
}

fn take(ebpf: &mut Ebpf, name: &str) -> Result<Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("no map {name} in the object"))
}

impl BpfMaps {
    /// Takes the maps out of the loaded object (pin them first).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Self {
            names64: take(ebpf, MAP_NAMES[0])?.try_into()?,
            names128: take(ebpf, MAP_NAMES[1])?.try_into()?,
            names256: take(ebpf, MAP_NAMES[2])?.try_into()?,
            answers_s: take(ebpf, MAP_ANSWERS[0])?.try_into()?,
            answers_m: take(ebpf, MAP_ANSWERS[1])?.try_into()?,
            answers_l: take(ebpf, MAP_ANSWERS[2])?.try_into()?,
            soa: take(ebpf, MAP_SOA)?.try_into()?,
            config: take(ebpf, MAP_CONFIG)?.try_into()?,
            dns_addrs: take(ebpf, MAP_DNS_ADDRS)?.try_into()?,
            counters: take(ebpf, MAP_COUNTERS)?.try_into()?,
            shadow: Config::default(),
        })
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

    fn write_config(&mut self) -> Result<()> {
        self.config.set(0, self.shadow, 0).context("writing config")
    }

    pub fn add_dns_addr(&mut self, addr: IpAddr) -> Result<()> {
        let key = match addr {
            IpAddr::V4(a) => DnsAddr::v4(a.octets()),
            IpAddr::V6(a) => DnsAddr::v6(a.octets()),
        };
        self.dns_addrs
            .insert(key, 1, 0)
            .with_context(|| format!("adding DNS address {addr}"))
    }

    /// The counters summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        let per_cpu = self.counters.get(&0, 0).context("reading counters")?;
        Ok(sum_counters(per_cpu.iter()))
    }
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

fn csum(bytes: &[u8]) -> u16 {
    csum_fold(csum_add_bytes(0, bytes))
}

impl Backend for BpfMaps {
    fn put_answer(
        &mut self,
        class: usize,
        slot: u32,
        bytes: &[u8],
        count: u16,
        stride: u16,
    ) -> Result<()> {
        let (len, csum) = (bytes.len() as u16, csum(bytes));
        // With a stride the kernel rotates by copying from `k * stride`, so
        // the answer is stored twice in a row.
        let stored = if stride != 0 {
            [bytes, bytes].concat()
        } else {
            bytes.to_vec()
        };
        let r = match class {
            0 => self.answers_s.set(
                slot,
                AnswerS {
                    len,
                    count,
                    csum,
                    stride,
                    bytes: fill(&stored)?,
                },
                0,
            ),
            1 => self.answers_m.set(
                slot,
                AnswerM {
                    len,
                    count,
                    csum,
                    stride,
                    bytes: fill(&stored)?,
                },
                0,
            ),
            2 => self.answers_l.set(
                slot,
                AnswerL {
                    len,
                    count,
                    csum,
                    stride,
                    bytes: fill(&stored)?,
                },
                0,
            ),
            _ => bail!("no answer class {class}"),
        };
        r.with_context(|| format!("writing {} slot {slot}", MAP_ANSWERS[class]))
    }

    fn put_name(&mut self, key: &[u8], rec: NameRecord) -> Result<()> {
        let r = match tier(key.len()) {
            0 => self.names64.insert(NameKey64 { name: fill(key)? }, rec, 0),
            1 => self
                .names128
                .insert(NameKey128 { name: fill(key)? }, rec, 0),
            _ => self
                .names256
                .insert(NameKey256 { name: fill(key)? }, rec, 0),
        };
        r.context("writing a name")
    }

    fn remove_name(&mut self, key: &[u8]) -> Result<()> {
        let r = match tier(key.len()) {
            0 => self.names64.remove(&NameKey64 { name: fill(key)? }),
            1 => self.names128.remove(&NameKey128 { name: fill(key)? }),
            _ => self.names256.remove(&NameKey256 { name: fill(key)? }),
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

    fn set_nxdomain(&mut self, on: bool, zone_len: u32) -> Result<()> {
        self.shadow.nxdomain = on.into();
        self.shadow.zone_len = zone_len;
        self.write_config()
    }
}
