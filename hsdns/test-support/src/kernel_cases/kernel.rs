//! The program under the table: loaded, its maps filled from [`table`],
//! put in the state a case needs, and run once per packet on a hook (or
//! on its floor and lower bounds, for the benchmark).

use std::{net::IpAddr, time::Duration};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use hickory_proto::rr::RecordType;
use hsdns::{
    frame::{DNS4, DNS6, Frame, query},
    loader::{self, Capacities},
    maps::{Syncer, bpf::BpfMaps},
    records::RecordTable,
};
use hsdns_common::{Counters, PROGRAM_FLOOR_TC, PROGRAM_FLOOR_XDP};

use super::{Hook, POD, Setup, Staleness, table};

/// The program loaded, its maps filled from [`table`].
pub struct Kernel {
    pub ebpf: Ebpf,
    pub syncer: Syncer<BpfMaps>,
    pub table: RecordTable,
    setup: Setup,
    /// Whether `setup` has been written to the maps.
    fresh: bool,
}

impl Kernel {
    /// Loads the program (root only) and syncs the table; answering, with
    /// negative answers off.
    pub fn load() -> Result<Self> {
        Self::load_object(loader::object())
    }

    /// [`Kernel::load`] with another build of the object.
    pub fn load_object(object: &[u8]) -> Result<Self> {
        let caps = Capacities::default();
        let mut ebpf =
            loader::load_object(&caps, object).context("loading the program (root only)")?;
        let mut maps = BpfMaps::take(&mut ebpf)?;
        maps.add_dns_addr(IpAddr::V4(DNS4))?;
        maps.add_dns_addr(IpAddr::V6(DNS6))?;
        let mut table = table();
        let mut syncer = Syncer::new(maps, &caps);
        syncer.write_soa(&table)?;
        syncer.sync_new(&mut table)?;
        syncer.backend_mut().set_answering(true)?;
        let mut k = Self {
            ebpf,
            syncer,
            table,
            setup: Setup::default(),
            fresh: false,
        };
        k.apply(Setup::default())?;
        Ok(k)
    }

    /// Puts the kernel in the state `setup` describes.
    pub fn apply(&mut self, setup: Setup) -> Result<()> {
        if setup == self.setup && self.fresh {
            return Ok(());
        }
        self.fresh = true;
        self.syncer.set_nxdomain(setup.nxdomain);
        // The syncer applies the switch with its next sync.
        let mut changes = Vec::new();
        self.table.set_complete(true);
        self.syncer
            .apply(&mut self.table, std::mem::take(&mut changes))?;
        let maps = self.syncer.backend_mut();
        // Stale: a heartbeat at boot time zero, older than any bound of
        // 1 ns. Fresh: bounds set and a heartbeat of now, as a deployed
        // daemon keeps them (so the kernel reads its clock as it does
        // there; the bounds are long enough for any test).
        const HOUR: u64 = 3_600_000_000_000;
        let (nx, pass, heartbeat) = match setup.stale {
            None => (HOUR, 24 * HOUR, hsdns::lifecycle::sys::boot_ns()),
            Some(Staleness::Nxdomain) => (1, 0, 0),
            Some(Staleness::Pass) => (0, 1, 0),
        };
        maps.set_stale_bounds(nx, pass)?;
        maps.set_heartbeat(heartbeat, !setup.not_ready)?;
        self.setup = setup;
        Ok(())
    }

    pub fn counters(&self) -> Result<Counters> {
        self.syncer.backend().counters()
    }

    /// One BPF_PROG_TEST_RUN of `hook`'s program: return code, output
    /// packet, the kernel's duration.
    pub fn run(&self, hook: Hook, pkt: &[u8]) -> Result<(u32, Vec<u8>, Duration)> {
        run_program(&self.ebpf, hook, false, pkt)
    }
}

/// One test run of a hook's program (or its floor, the bare reflector).
pub fn run_program(
    ebpf: &Ebpf,
    hook: Hook,
    floor: bool,
    pkt: &[u8],
) -> Result<(u32, Vec<u8>, Duration)> {
    let name = match (hook, floor) {
        (Hook::Xdp, false) => hsdns_common::PROGRAM_NAME,
        (Hook::Xdp, true) => PROGRAM_FLOOR_XDP,
        (Hook::Tc, false) => hsdns_common::PROGRAM_TC,
        (Hook::Tc, true) => PROGRAM_FLOOR_TC,
    };
    run_named(ebpf, hook, name, pkt)
}

/// The benchmark's lower bounds, per hook: the floor plus the least a
/// program answering from the names map must do (see hsdns-ebpf's
/// main.rs): (row name, XDP program, tc program).
pub const BOUNDS: [(&str, &str, &str); 2] = [
    (
        "bound: floor + name lookup",
        "bound_lookup_xdp",
        "bound_lookup_tc",
    ),
    (
        "bound: floor + lookup, resize, store",
        "bound_answer_xdp",
        "bound_answer_tc",
    ),
];

/// The frame the lower bounds answer: a query whose question starts with
/// the names map key of [`POD`] (the bound programs read their key there).
pub fn bound_frame(k: &Kernel) -> Result<Vec<u8>> {
    let cfg = k.syncer.backend().config();
    use hickory_proto::serialize::binary::BinEncodable as _;
    let wire = hickory_proto::rr::Name::from_ascii(POD)?
        .to_lowercase()
        .to_bytes()?;
    let mut d = vec![0u8; wire.len()];
    let len = hsdns_common::dotted(&wire, &mut d).context("dotted name")?;
    let hash = hsdns_common::name_hash(&cfg.hash_key, &d, len);
    let mut f = Frame::v4(query(POD, RecordType::A, None)).bytes();
    // Ethernet, IPv4 without options, UDP, the DNS header.
    f[54..62].copy_from_slice(&hash.to_le_bytes());
    Ok(f)
}

/// One test run of the program called `name`, of `hook`'s type.
pub fn run_named(
    ebpf: &Ebpf,
    hook: Hook,
    name: &str,
    pkt: &[u8],
) -> Result<(u32, Vec<u8>, Duration)> {
    let mut out = vec![0u8; 4096];
    let opts = TestRunOptions {
        data_in: Some(pkt),
        data_out: Some(&mut out),
        ..Default::default()
    };
    let prog = ebpf
        .program(name)
        .with_context(|| format!("no program {name}"))?;
    let r = match hook {
        Hook::Xdp => <&Xdp>::try_from(prog)?.test_run(opts),
        Hook::Tc => <&SchedClassifier>::try_from(prog)?.test_run(opts),
    }
    .context("BPF_PROG_TEST_RUN")?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, out, r.duration))
}

/// Loads the floors (bare reflectors on each hook) into a loaded object.
pub fn load_floors(ebpf: &mut Ebpf) -> Result<()> {
    let p: &mut Xdp = ebpf
        .program_mut(PROGRAM_FLOOR_XDP)
        .context("floor")?
        .try_into()?;
    p.load()?;
    let p: &mut SchedClassifier = ebpf
        .program_mut(PROGRAM_FLOOR_TC)
        .context("floor")?
        .try_into()?;
    p.load()?;
    Ok(())
}

/// Loads the lower bounds ([`BOUNDS`]) into a loaded object.
pub fn load_bounds(ebpf: &mut Ebpf) -> Result<()> {
    for (_, xdp, tc) in BOUNDS {
        let p: &mut Xdp = ebpf.program_mut(xdp).context("bound")?.try_into()?;
        p.load()?;
        let p: &mut SchedClassifier = ebpf.program_mut(tc).context("bound")?.try_into()?;
        p.load()?;
    }
    Ok(())
}
