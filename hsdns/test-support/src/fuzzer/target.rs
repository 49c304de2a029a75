//! The program under test, seen from outside: load the object, fill its
//! maps from a record table, run one frame through BPF_PROG_TEST_RUN, read
//! the verdict, the output frame and the counters. Nothing here knows how
//! the program parses or answers; this file is the only one that touches
//! the loader and the map sync, so a new program or entry point changes
//! this file alone.

use std::{fmt, net::IpAddr, str::FromStr};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    programs::{ProgramType, SchedClassifier, TestRun as _, TestRunOptions, Xdp},
};
use hsdns::{
    frame::{DNS4, DNS6},
    loader::{self, Capacities},
    maps::{Syncer, bpf::BpfMaps},
    records::RecordTable,
};
use hsdns_common::Counters;

/// Which of the object's programs runs the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPoint {
    /// The XDP program (`hsdns_common::PROGRAM_NAME`).
    Xdp,
    /// The object's tc (sched_cls) program, once it has one.
    Tc,
}

/// The tc entry point's name: `hsdns_common::PROGRAM_TC` in the object
/// that has one (beside it, bare reflectors for the benchmarks, also of
/// type sched_cls, so the type alone does not tell).
pub fn tc_program_name() -> String {
    format!("{}_tc", hsdns_common::PROGRAM_NAME)
}

impl FromStr for EntryPoint {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "xdp" => Ok(Self::Xdp),
            "tc" => Ok(Self::Tc),
            _ => bail!("unknown entry point {s:?} (xdp or tc)"),
        }
    }
}

impl EntryPoint {
    /// The entry points the built object has: XDP, and tc once there is a
    /// sched_cls program.
    pub fn available() -> Result<Vec<EntryPoint>> {
        let ebpf = loader::load(&Capacities::default()).context("loading the program")?;
        let mut v = vec![EntryPoint::Xdp];
        if ebpf
            .program(&tc_program_name())
            .is_some_and(|p| p.prog_type() == ProgramType::SchedClassifier)
        {
            v.push(EntryPoint::Tc);
        }
        Ok(v)
    }
}

impl fmt::Display for EntryPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Xdp => "xdp",
            Self::Tc => "tc",
        })
    }
}

/// What the program did with a frame, whatever its hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Up the stack (XDP_PASS; TC_ACT_OK or TC_ACT_UNSPEC).
    Pass,
    /// Sent back out as a reply (XDP_TX; TC_ACT_REDIRECT).
    Reply,
    /// XDP_DROP, TC_ACT_SHOT.
    Drop,
    /// XDP_ABORTED.
    Aborted,
    /// Anything else (XDP_REDIRECT, TC_ACT_STOLEN, ...), by its raw value.
    Other(u32),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => f.write_str("pass"),
            Self::Reply => f.write_str("reply"),
            Self::Drop => f.write_str("drop"),
            Self::Aborted => f.write_str("aborted"),
            Self::Other(v) => write!(f, "other({v})"),
        }
    }
}

impl EntryPoint {
    fn action(self, ret: u32) -> Action {
        match (self, ret) {
            (Self::Xdp, 0) => Action::Aborted,
            (Self::Xdp, 1) => Action::Drop,
            (Self::Xdp, 2) => Action::Pass,
            (Self::Xdp, 3) => Action::Reply,
            // TC_ACT_UNSPEC (-1), TC_ACT_OK.
            (Self::Tc, u32::MAX | 0) => Action::Pass,
            (Self::Tc, 2) => Action::Drop,
            (Self::Tc, 7) => Action::Reply,
            (_, v) => Action::Other(v),
        }
    }
}

/// Runtime settings the daemon writes into the maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Settings {
    /// The first sync is complete: the kernel answers.
    pub answering: bool,
    /// NXDOMAIN for provably missing names.
    pub nxdomain: bool,
}

impl Settings {
    pub const ALL: [Settings; 3] = [
        Settings {
            answering: true,
            nxdomain: true,
        },
        Settings {
            answering: true,
            nxdomain: false,
        },
        Settings {
            answering: false,
            nxdomain: true,
        },
    ];
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "answering={} nxdomain={}",
            u8::from(self.answering),
            u8::from(self.nxdomain)
        )
    }
}

impl FromStr for Settings {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut r = Settings {
            answering: true,
            nxdomain: true,
        };
        for kv in s.split_whitespace() {
            let (k, v) = kv.split_once('=').context("settings: key=value")?;
            let v = match v {
                "0" => false,
                "1" => true,
                _ => bail!("settings: {k}={v}: 0 or 1"),
            };
            match k {
                "answering" => r.answering = v,
                "nxdomain" => r.nxdomain = v,
                _ => bail!("settings: unknown key {k}"),
            }
        }
        Ok(r)
    }
}

/// One run's result.
pub struct Run {
    pub action: Action,
    /// The frame as the program left it.
    pub out: Vec<u8>,
}

/// The loaded program with its maps filled from a record table.
pub struct Kernel {
    ebpf: Ebpf,
    syncer: Syncer<BpfMaps>,
    pub table: RecordTable,
    pub entry: EntryPoint,
    /// The tc program's name in the object.
    tc_name: Option<String>,
    settings: Settings,
    out: Vec<u8>,
}

/// The addresses queries are sent to (the maps' `dns_addrs`).
pub fn dns_addrs() -> Vec<IpAddr> {
    vec![IpAddr::V4(DNS4), IpAddr::V6(DNS6)]
}

impl Kernel {
    pub fn load(entry: EntryPoint, mut table: RecordTable, settings: Settings) -> Result<Self> {
        let caps = Capacities::default();
        let mut ebpf = loader::load(&caps).context("loading the program (run as root)")?;
        let tc_name = match entry {
            EntryPoint::Xdp => None,
            EntryPoint::Tc => {
                let name = tc_program_name();
                if ebpf.program(&name).is_none() {
                    bail!("the object has no tc program {name}");
                }
                let prog: &mut SchedClassifier =
                    ebpf.program_mut(&name).context("tc program")?.try_into()?;
                if prog.fd().is_err() {
                    prog.load().context("loading the tc program")?;
                }
                Some(name)
            }
        };
        let mut maps = BpfMaps::take(&mut ebpf)?;
        for a in dns_addrs() {
            maps.add_dns_addr(a)?;
        }
        let mut syncer = Syncer::new(maps, &caps);
        syncer.set_nxdomain(settings.nxdomain);
        syncer.write_soa(&table)?;
        let stats = syncer.sync_new(&mut table)?;
        if stats.names_full + stats.answers_full > 0 {
            bail!("the fuzz table does not fit the maps: {stats:?}");
        }
        syncer.backend_mut().set_answering(settings.answering)?;
        let mut k = Self {
            ebpf,
            syncer,
            table,
            entry,
            tc_name,
            settings,
            out: vec![0; 8192],
        };
        k.set(settings)?;
        Ok(k)
    }

    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Changes the runtime settings (as the daemon would).
    pub fn set(&mut self, s: Settings) -> Result<()> {
        self.syncer.set_nxdomain(s.nxdomain);
        self.syncer.apply(&mut self.table, Vec::new())?;
        if self.syncer.nxdomain_active() != s.nxdomain {
            bail!(
                "NXDOMAIN did not turn {}",
                if s.nxdomain { "on" } else { "off" }
            );
        }
        self.syncer.backend_mut().set_answering(s.answering)?;
        self.settings = s;
        Ok(())
    }

    /// Whether BPF_PROG_TEST_RUN takes `frame` at this entry point. XDP
    /// takes any frame of an Ethernet header or more; the skb test run
    /// (tc) refuses with EINVAL a frame shorter than the IPv4 or IPv6
    /// header its EtherType announces (measured: below 14 + 20 and
    /// 14 + 40 bytes). Such frames are the test harness's limit, not the
    /// program's: the campaign counts them apart.
    pub fn runnable(&self, frame: &[u8]) -> bool {
        if frame.len() < 14 {
            return false;
        }
        match (self.entry, u16::from_be_bytes([frame[12], frame[13]])) {
            (EntryPoint::Tc, 0x0800) => frame.len() >= 14 + 20,
            (EntryPoint::Tc, 0x86dd) => frame.len() >= 14 + 40,
            _ => true,
        }
    }

    /// Runs one frame (see [`Self::runnable`]; up to a page).
    pub fn run(&mut self, frame: &[u8]) -> Result<Run> {
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut self.out),
            ..Default::default()
        };
        let r = match self.entry {
            EntryPoint::Xdp => {
                let prog: &Xdp = loader::program(&mut self.ebpf)?;
                prog.test_run(opts)
            }
            EntryPoint::Tc => {
                let name = self.tc_name.as_deref().context("tc program")?;
                let prog: &SchedClassifier =
                    self.ebpf.program(name).context("tc program")?.try_into()?;
                prog.test_run(opts)
            }
        }
        .with_context(|| format!("BPF_PROG_TEST_RUN of a {}-byte frame", frame.len()))?;
        let n = (r.data_size_out as usize).min(self.out.len());
        Ok(Run {
            action: self.entry.action(r.return_value),
            out: self.out[..n].to_vec(),
        })
    }

    /// The program's verdict counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters> {
        self.syncer.backend().counters()
    }
}
