//! Loading the XDP program, sizing its maps (pinned or not), pinning the
//! program, attaching it.

use std::{
    ffi::CString,
    fs,
    io::ErrorKind,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, Xdp, XdpMode, xdp::XdpLinkId},
};
use hsdns_common::{
    MAP_ANSWERS, MAP_CONFIG, MAP_COUNTERS, MAP_DNS_ADDRS, MAP_LAYOUT, MAP_NAMES, MAP_SOA,
    PROGRAM_NAME, PROGRAM_TC,
};

/// The eBPF object built by `hsdns/build.rs` from the hsdns-ebpf crate
/// (XDP and tc entry points, their floors, the maps).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/hsdns"));

/// The eBPF object's bytes, for tests and benchmarks.
pub fn object() -> &'static [u8] {
    OBJECT
}

/// An object named on a command line (the profiling and load-time
/// examples): `builtin` is this build's, anything else a file (a build of
/// another commit, or with a stage stop).
pub fn object_named(path: &str) -> Result<Vec<u8>> {
    if path == "builtin" {
        return Ok(object().to_vec());
    }
    std::fs::read(path).with_context(|| format!("reading {path}"))
}

/// Map capacities. Hash maps are created without preallocation, so unused
/// name capacity costs only hash buckets; answer arrays are preallocated and
/// cost `capacity * value size` whether used or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub names: [u32; 3],
    pub answers: [u32; 3],
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            names: [65_536, 65_536, 1_024],
            answers: [65_536, 8_192, 1_024],
        }
    }
}

/// Loads and verifies the programs (XDP and tc) with the given
/// capacities. Nothing is attached or pinned (tests and benchmarks).
pub fn load(caps: &Capacities) -> Result<Ebpf> {
    load_with(caps, None, OBJECT)
}

/// [`load`] for another build of the object (profiling builds with a
/// stage stop, see `examples/profile_kernel.rs`).
pub fn load_object(caps: &Capacities, object: &[u8]) -> Result<Ebpf> {
    load_with(caps, None, object)
}

/// Loads and verifies the program against the maps pinned in `map_dir`:
/// those already there are reused as they are (the caller has checked that
/// they are compatible, see `lifecycle::inspect`), missing ones are created
/// and pinned there. Nothing is attached.
pub fn load_pinned(caps: &Capacities, map_dir: &Path) -> Result<Ebpf> {
    load_with(caps, Some(map_dir), OBJECT)
}

fn load_with(caps: &Capacities, map_dir: Option<&Path>, object: &[u8]) -> Result<Ebpf> {
    if object.is_empty() {
        bail!("this hsdns was built with AYA_BUILD_SKIP=1 and carries no eBPF program");
    }
    let mut loader = EbpfLoader::new();
    for (name, n) in MAP_NAMES.iter().zip(caps.names) {
        loader.map_max_entries(name, n);
    }
    for (name, n) in MAP_ANSWERS.iter().zip(caps.answers) {
        loader.map_max_entries(name, n);
    }
    if let Some(dir) = map_dir {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for name in PINNED_MAPS {
            loader.map_pin_path(name, dir.join(name));
        }
    }
    let mut ebpf = loader
        .load(object)
        .context("loading the hsdns eBPF object")?;
    load_both(&mut ebpf)?;
    Ok(ebpf)
}

/// Loads the XDP and the tc entry point at the same time, each on its own
/// thread: BPF_PROG_LOAD verifies in the calling thread, privileged loads
/// take no lock across verification, and the two programs are verified
/// independently (about 13 ms each here), so on two cores the load costs
/// one verification instead of two. Both are loaded always: `hsdns query`,
/// blue/green upgrades and the pins (`prog_xdp`, `prog_tc`) use both.
fn load_both(ebpf: &mut Ebpf) -> Result<()> {
    let (mut xdp, mut tc) = (None, None);
    for (name, p) in ebpf.programs_mut() {
        match name {
            PROGRAM_NAME => xdp = Some(p),
            PROGRAM_TC => tc = Some(p),
            _ => {}
        }
    }
    let xdp: &mut Xdp = xdp
        .ok_or_else(|| anyhow!("no program {PROGRAM_NAME} in the object"))?
        .try_into()
        .context("program type")?;
    let tc: &mut SchedClassifier = tc
        .ok_or_else(|| anyhow!("no program {PROGRAM_TC} in the object"))?
        .try_into()
        .context("program type")?;
    let (x, t) = std::thread::scope(|s| {
        let t = s.spawn(|| tc.load());
        let x = xdp.load();
        (x, t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    x.context("the kernel rejected the XDP program")?;
    t.context("the kernel rejected the tc program")?;
    Ok(())
}

/// The tc ingress entry point (pod veths).
pub fn program_tc(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
    ebpf.program_mut(PROGRAM_TC)
        .ok_or_else(|| anyhow!("no program {PROGRAM_TC} in the object"))?
        .try_into()
        .context("program type")
}

pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or_else(|| anyhow!("no program {PROGRAM_NAME} in the object"))?
        .try_into()
        .context("program type")
}

/// Every map that lives beyond one daemon, by its pinned name: what the
/// kernel answers from, what operators dump, and the layout record. (The
/// per-CPU scratch map is the program's own and not pinned.)
pub const PINNED_MAPS: [&str; 11] = [
    MAP_NAMES[0],
    MAP_NAMES[1],
    MAP_NAMES[2],
    MAP_ANSWERS[0],
    MAP_ANSWERS[1],
    MAP_ANSWERS[2],
    MAP_SOA,
    MAP_DNS_ADDRS,
    MAP_CONFIG,
    MAP_COUNTERS,
    MAP_LAYOUT,
];

/// A map as the kernel describes it (BPF_OBJ_GET_INFO_BY_FD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl std::fmt::Display for MapSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "type {} key {} value {} max_entries {} flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.flags
        )
    }
}

/// What this build's program declares for each pinned map, with the
/// capacities applied as [`load_pinned`] applies them: what pinned maps
/// must be for this program to use them.
pub fn expected_maps(caps: &Capacities) -> Result<Vec<(&'static str, MapSpec)>> {
    if OBJECT.is_empty() {
        bail!("this hsdns was built with AYA_BUILD_SKIP=1 and carries no eBPF program");
    }
    let obj = aya_obj::Object::parse(OBJECT).context("parsing the hsdns XDP object")?;
    PINNED_MAPS
        .iter()
        .map(|&name| {
            let m = obj
                .maps
                .get(name)
                .ok_or_else(|| anyhow!("no map {name} in the object"))?;
            let max = MAP_NAMES
                .iter()
                .zip(caps.names)
                .chain(MAP_ANSWERS.iter().zip(caps.answers))
                .find(|(n, _)| **n == name)
                .map_or(m.max_entries(), |(_, c)| c);
            Ok((
                name,
                MapSpec {
                    map_type: m.map_type(),
                    key_size: m.key_size(),
                    value_size: m.value_size(),
                    max_entries: max,
                    flags: m.map_flags(),
                },
            ))
        })
        .collect()
}

/// A pinned map as the kernel reports it.
pub fn pinned_map_spec(path: &Path) -> Result<MapSpec> {
    let info = aya::maps::MapInfo::from_pin(path)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(MapSpec {
        map_type: info.map_type().map(|t| t as u32).unwrap_or(u32::MAX),
        key_size: info.key_size(),
        value_size: info.value_size(),
        max_entries: info.max_entries(),
        flags: info.map_flags(),
    })
}

/// Pins the loaded program at `path`, replacing what is there in one
/// rename (a reader of the pin, `hsdns query` say, finds the old program
/// or the new one, never none).
pub fn pin_program(prog: &mut Xdp, path: &Path) -> Result<()> {
    pin_replacing(path, |tmp| prog.pin(tmp).map_err(Into::into))
}

/// [`pin_program`] for the tc program.
pub fn pin_program_tc(prog: &mut SchedClassifier, path: &Path) -> Result<()> {
    pin_replacing(path, |tmp| prog.pin(tmp).map_err(Into::into))
}

fn pin_replacing(path: &Path, pin: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    // bpffs reserves names with a dot.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push("_new");
    let tmp = std::path::PathBuf::from(tmp);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", tmp.display())),
    }
    pin(&tmp).with_context(|| format!("pinning the program at {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeChoice {
    /// Driver mode where it delivers replies, skb mode otherwise (veth).
    Auto,
    Driver,
    Skb,
}

/// Attaches the program to `iface`, returning the mode used.
pub fn attach(prog: &mut Xdp, iface: &str, choice: ModeChoice) -> Result<(XdpMode, XdpLinkId)> {
    let driver = driver_name(iface).with_context(|| format!("interface {iface}"))?;
    let modes: &[XdpMode] = match choice {
        ModeChoice::Driver => &[XdpMode::Driver],
        ModeChoice::Skb => &[XdpMode::Skb],
        // Measured here: in driver mode on a veth, XDP_TX frames reach the
        // peer only if the peer has an XDP program too (the kernel wakes the
        // peer's NAPI only then); replies are lost otherwise. skb mode
        // delivers them on its own.
        ModeChoice::Auto if driver == "veth" => &[XdpMode::Skb],
        ModeChoice::Auto => &[XdpMode::Driver, XdpMode::Skb],
    };
    let mut last = None;
    for &mode in modes {
        match prog.attach(iface, mode) {
            Ok(id) => {
                log::info!("attached to {iface} (driver {driver}) in {mode:?} mode");
                return Ok((mode, id));
            }
            Err(e) => {
                log::info!("{iface}: {mode:?} mode not available: {e}");
                last = Some(e);
            }
        }
    }
    Err(anyhow!(
        "attaching XDP to {iface}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// The kernel driver behind an interface (ETHTOOL_GDRVINFO), read in the
/// caller's network namespace, which /sys/class/net might not show.
pub fn driver_name(iface: &str) -> Result<String> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    let name = CString::new(iface).context("interface name")?;
    if name.as_bytes().len() >= libc::IFNAMSIZ {
        bail!("interface name too long");
    }
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket");
    }
    // SAFETY: fd is a fresh, valid descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid bit pattern for these C structs.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    // SAFETY: as above.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: SIOCETHTOOL with a GDRVINFO request writes into `info` only.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENODEV) {
            bail!("no such interface in this network namespace");
        }
        // Devices without ethtool support (dummy, lo) answer EOPNOTSUPP.
        return Ok(String::new());
    }
    let end = info.driver.iter().position(|&c| c == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}
