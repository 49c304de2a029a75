//! Never dark: what outlives a daemon, and how the next one takes it over.
//!
//! Stopping is not uninstalling. The program, its maps and its links stay
//! pinned under the pin directory, and the node-local address stays up, so
//! the kernel goes on answering from the last table while no daemon runs
//! (bounded by the heartbeat, see `hsdns_common::Config`). `hsdns
//! uninstall` removes it all.
//!
//! Under the pin directory (default /sys/fs/bpf/hsdns): the maps by name,
//! the programs as `prog_xdp` and `prog_tc`, one link per interface under
//! `links/` (see [`attach`]), and during an upgrade to new maps the new set
//! under `next/`.
//!
//! A starting daemon [`inspect`]s what is pinned:
//! - nothing: a fresh start;
//! - maps of its own layout (the `layout` record, and every map's type, key
//!   and value size, max_entries and flags as the kernel reports them):
//!   it adopts them as they are, answering never stops, its new program
//!   replaces the old one on every link in place, and once its table is
//!   complete it writes what differs and removes what is gone;
//! - anything else (new capacities, a new map layout): blue/green. New maps
//!   are created and filled under `next/` while the old program keeps
//!   answering from the old ones; once the new ones hold the complete
//!   table, every link switches to the new program in place, and the new
//!   pins replace the old ones.

pub mod attach;
pub mod bpffs;
pub mod sys;
pub mod uninstall;

use std::{
    collections::HashSet,
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf,
    maps::{Array, Map, MapData},
    programs::{SchedClassifier, Xdp},
};
use aya_obj::programs::XdpAttachType;
use hsdns_common::{LAYOUT_MAGIC, Layout, MAP_LAYOUT, NAME_TIERS, TYPES_HASH};

use crate::{
    hook::AttachMode,
    links::Link,
    loader::{self, Capacities},
    metrics::Metrics,
    records::ZoneConfig,
};
use attach::{Attachments, Programs};

/// The XDP program's pin (contract: `hsdns query` test-runs it).
pub const PROG_XDP: &str = "prog_xdp";
/// The pinned tc program (pod veths; see `crate::hook`).
pub const PROG_TC: &str = "prog_tc";
/// The links' directory.
pub const LINKS_DIR: &str = "links";
/// Where a blue/green upgrade builds the new maps.
pub const NEXT_DIR: &str = "next";

/// What a starting daemon does with what it finds pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing pinned.
    Fresh,
    /// Compatible maps: adopt them (with the layout record they hold).
    Adopt(Box<Layout>),
    /// Incompatible maps (why): build new ones beside them.
    Replace(String),
}

/// The layout record of maps made for these capacities and this zone.
pub fn layout(caps: &Capacities, zone: &ZoneConfig, serial: u32) -> Result<Layout> {
    let wire = crate::maps::name_key(&zone.zone)?;
    let mut l = Layout {
        magic: LAYOUT_MAGIC,
        types_hash: TYPES_HASH,
        tiers: NAME_TIERS.map(|t| t as u32),
        name_caps: caps.names,
        answer_caps: caps.answers,
        ttl: zone.ttl,
        serial,
        zone_len: wire.len() as u32,
        ..Layout::default()
    };
    l.zone
        .get_mut(..wire.len())
        .ok_or_else(|| anyhow!("zone name too long"))?
        .copy_from_slice(&wire);
    Ok(l)
}

/// Why two layouts differ, for the log.
fn layout_diff(have: &Layout, want: &Layout) -> String {
    let mut d = Vec::new();
    if have.magic != want.magic {
        d.push("no layout record".to_string());
    }
    if have.types_hash != want.types_hash {
        d.push(format!(
            "map types hash {:#x}, this build {:#x}",
            have.types_hash, want.types_hash
        ));
    }
    if have.tiers != want.tiers {
        d.push(format!("name tiers {:?}, now {:?}", have.tiers, want.tiers));
    }
    if have.name_caps != want.name_caps {
        d.push(format!(
            "name capacity {:?}, now {:?}",
            have.name_caps, want.name_caps
        ));
    }
    if have.answer_caps != want.answer_caps {
        d.push(format!(
            "answer capacity {:?}, now {:?}",
            have.answer_caps, want.answer_caps
        ));
    }
    if have.ttl != want.ttl {
        d.push(format!("TTL {}, now {}", have.ttl, want.ttl));
    }
    if have.zone_len != want.zone_len || have.zone != want.zone {
        d.push("another zone".into());
    }
    d.join("; ")
}

/// Reads the pinned layout record (the map's value size must have been
/// checked against `Layout` first).
fn pinned_layout(path: &Path) -> Result<Layout> {
    let data = MapData::from_pin(path).with_context(|| format!("opening {}", path.display()))?;
    let arr: Array<MapData, Layout> = Map::Array(data).try_into()?;
    arr.get(&0, 0).context("reading the layout record")
}

/// Decides how to start from what is pinned in `pin_dir`, for a daemon
/// whose maps would have `caps` and layout `want`.
pub fn inspect(pin_dir: &Path, caps: &Capacities, want: &Layout) -> Result<Plan> {
    let specs = loader::expected_maps(caps)?;
    let present: Vec<&str> = specs
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| pin_dir.join(n).exists())
        .collect();
    if present.is_empty() {
        return Ok(Plan::Fresh);
    }
    if present.len() < specs.len() {
        let missing: Vec<&str> = specs
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !present.contains(n))
            .collect();
        return Ok(Plan::Replace(format!(
            "maps not pinned: {}",
            missing.join(", ")
        )));
    }
    for (name, spec) in &specs {
        let got = loader::pinned_map_spec(&pin_dir.join(name))?;
        if got != *spec {
            return Ok(Plan::Replace(format!(
                "{name} is pinned as {got}, this program needs {spec}"
            )));
        }
    }
    let have = pinned_layout(&pin_dir.join(MAP_LAYOUT))?;
    if have.magic != LAYOUT_MAGIC || !have.compatible(want) {
        return Ok(Plan::Replace(layout_diff(&have, want)));
    }
    Ok(Plan::Adopt(Box::new(have)))
}

/// Where the program's maps are pinned for `plan`: the pin directory, or
/// for blue/green a fresh `next/` under it. Whatever an interrupted upgrade
/// left in `next/` is removed first in every case: it was never switched
/// to (or it was, and its pins are already in place).
pub fn map_dir(pin_dir: &Path, plan: &Plan) -> Result<PathBuf> {
    let next = pin_dir.join(NEXT_DIR);
    match fs::remove_dir_all(&next) {
        Ok(()) => log::info!("removed the unfinished upgrade in {}", next.display()),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", next.display())),
    }
    match plan {
        Plan::Replace(_) => {
            fs::create_dir_all(&next).with_context(|| format!("creating {}", next.display()))?;
            Ok(next)
        }
        _ => Ok(pin_dir.to_path_buf()),
    }
}

/// Moves the staged pins over the old ones (each rename replaces one pin
/// atomically), removes old pins the new set does not have, and the
/// staging directory.
fn promote(pin_dir: &Path, staged: &Path) -> Result<()> {
    let mut moved = HashSet::new();
    for entry in fs::read_dir(staged).with_context(|| format!("reading {}", staged.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name();
        fs::rename(entry.path(), pin_dir.join(&name))
            .with_context(|| format!("moving {} into place", entry.path().display()))?;
        moved.insert(name);
    }
    for entry in fs::read_dir(pin_dir).with_context(|| format!("reading {}", pin_dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() || moved.contains(&entry.file_name()) {
            continue;
        }
        log::info!(
            "removing {} (not in the new layout)",
            entry.path().display()
        );
        fs::remove_file(entry.path())
            .with_context(|| format!("removing {}", entry.path().display()))?;
    }
    fs::remove_dir_all(staged).with_context(|| format!("removing {}", staged.display()))
}

/// How often the daemon writes its heartbeat: a few times within the
/// tighter bound, at most every second (one map write each).
pub fn heartbeat_interval(bounds: &[Duration]) -> Duration {
    bounds
        .iter()
        .filter(|b| !b.is_zero())
        .map(|b| *b / 4)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// This node's pinned program and links, as one daemon runs them.
pub struct Node {
    pin_dir: PathBuf,
    /// Blue/green: the staged maps' directory, until the switch.
    staged: Option<PathBuf>,
    /// Blue/green: the programs to switch the links to.
    next: Option<Programs>,
    /// The programs new links get: the answering ones.
    active: Programs,
    attachments: Attachments,
    mode: AttachMode,
}

fn xdp_from_pin(path: &Path) -> Result<Xdp> {
    Xdp::from_pin(path, XdpAttachType::Interface)
        .with_context(|| format!("opening the program pinned at {}", path.display()))
}

fn tc_from_pin(path: &Path) -> Result<SchedClassifier> {
    SchedClassifier::from_pin(path)
        .with_context(|| format!("opening the program pinned at {}", path.display()))
}

/// Both programs pinned in `dir`.
fn programs_from_pin(dir: &Path) -> Result<Programs> {
    Ok(Programs {
        xdp: xdp_from_pin(&dir.join(PROG_XDP))?,
        tc: Some(tc_from_pin(&dir.join(PROG_TC))?),
    })
}

impl Node {
    /// Pins the loaded program beside its maps and finds the pinned links.
    /// For blue/green, the old pinned program stays the active one until
    /// [`Self::switch`].
    pub fn start(
        pin_dir: &Path,
        plan: &Plan,
        map_dir: &Path,
        ebpf: &mut Ebpf,
        metrics: Arc<Metrics>,
        mode: AttachMode,
    ) -> Result<Node> {
        loader::pin_program(loader::program(ebpf)?, &map_dir.join(PROG_XDP))?;
        loader::pin_program_tc(loader::program_tc(ebpf)?, &map_dir.join(PROG_TC))?;
        let new = programs_from_pin(map_dir)?;
        let attachments = Attachments::open(pin_dir.join(LINKS_DIR), metrics)?;
        let (active, next, staged) = match plan {
            Plan::Replace(_) => match xdp_from_pin(&pin_dir.join(PROG_XDP)) {
                Ok(old_xdp) => {
                    // An older build without a tc program: its XDP program
                    // answers on veths too until the switch (the new tc
                    // program passes everything up until its maps are
                    // complete), which moves them to tc.
                    let old = Programs {
                        xdp: old_xdp,
                        tc: tc_from_pin(&pin_dir.join(PROG_TC)).ok(),
                    };
                    (old, Some(new), Some(map_dir.to_path_buf()))
                }
                // Nothing answering to keep: the new program, which passes
                // everything up until its maps are complete.
                Err(_) => (new, None, Some(map_dir.to_path_buf())),
            },
            _ => (new, None, None),
        };
        Ok(Node {
            pin_dir: pin_dir.to_path_buf(),
            staged,
            next,
            active,
            attachments,
            mode,
        })
    }

    /// Puts the active program on `link` (a pinned link's program is
    /// replaced in place).
    pub fn attach(&mut self, link: &Link) -> Result<()> {
        self.attachments.ensure(&mut self.active, link, self.mode)
    }

    pub fn forget(&mut self, index: u32) {
        self.attachments.forget(index)
    }

    /// Detaches from every pinned interface for which `keep` is false.
    pub fn detach_unless(&mut self, keep: impl Fn(u32) -> bool) {
        for i in self.attachments.indexes() {
            if !keep(i) {
                self.attachments.detach(i);
            }
        }
    }

    pub fn attached(&self) -> usize {
        self.attachments.len()
    }

    /// Whether a blue/green switch waits for a complete table.
    pub fn switch_pending(&self) -> bool {
        self.staged.is_some()
    }

    /// Blue/green, once the new maps hold the complete table and answer:
    /// every link to the new program in place, then the new pins over the
    /// old ones. Returns the interfaces whose link refused the switch.
    pub fn switch(&mut self) -> Result<Vec<String>> {
        let mut failed = Vec::new();
        if let Some(next) = self.next.take() {
            failed = self.attachments.switch_all(&next)?;
            self.active = next;
            // Interfaces the old programs could not give their hook (veths
            // on XDP under a build without tc): the new link first.
            failed.extend(self.attachments.rehook_all(&mut self.active, self.mode));
        }
        if let Some(staged) = self.staged.take() {
            promote(&self.pin_dir, &staged)?;
            log::info!(
                "upgrade done: the new maps are pinned in {}",
                self.pin_dir.display()
            );
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_compatible_only_when_equal_but_for_the_serial() {
        let zone = ZoneConfig::default();
        let caps = Capacities::default();
        let a = layout(&caps, &zone, 1).unwrap();
        let b = layout(&caps, &zone, 2).unwrap();
        assert!(a.compatible(&b), "the serial is taken over, not compared");
        let bigger = Capacities {
            names: [1, 2, 3],
            ..caps
        };
        let c = layout(&bigger, &zone, 1).unwrap();
        assert!(!a.compatible(&c));
        assert!(layout_diff(&a, &c).contains("name capacity"));
        let other = ZoneConfig::new("cluster.test", zone.ttl).unwrap();
        let d = layout(&caps, &other, 1).unwrap();
        assert!(!a.compatible(&d));
        assert_eq!(layout_diff(&a, &d), "another zone");
        let e = Layout {
            types_hash: TYPES_HASH ^ 1,
            ..a
        };
        assert!(!a.compatible(&e));
        assert!(layout_diff(&e, &a).contains("map types hash"));
    }

    #[test]
    fn the_heartbeat_beats_within_the_tighter_bound() {
        let s = Duration::from_secs;
        assert_eq!(heartbeat_interval(&[s(30), s(300)]), s(1));
        assert_eq!(
            heartbeat_interval(&[Duration::from_millis(800), s(0)]),
            Duration::from_millis(200)
        );
        assert_eq!(heartbeat_interval(&[s(0), s(0)]), s(1));
    }
}
