//! The program's attachments as pinned BPF links, one per interface under
//! `<pin dir>/links/<interface>` (dots as colons: bpffs reserves dots): a
//! tcx link for the tc entry point (pod veths, see `crate::hook`), an XDP
//! link elsewhere.
//!
//! A pinned link keeps the program attached after the daemon exits, so the
//! kernel goes on answering across a restart or a crash. A starting daemon
//! finds the links by the interface index the kernel reports for each
//! (names are only labels: an interface can be renamed), replaces their
//! program in one step (BPF_LINK_UPDATE) and never detaches one to attach
//! another. A link whose interface is gone is defunct: its pin is removed.
//!
//! An interface whose link is of the other hook (the attach mode changed,
//! or an older build attached XDP where this one puts tc) moves without a
//! gap: the new link is attached and pinned under a temporary name first,
//! then renamed over the old pin (one atomic step on bpffs), and only then
//! is the old link let go. For a moment both hooks hold a program; XDP
//! runs first, and tc sees only what it passes.
//!
//! During a blue/green upgrade from an older build that had no tc program,
//! the answering programs have no tc entry point: veths keep (or get) the
//! old XDP program until the switch, which then moves them to tc.

use std::{
    collections::HashMap,
    fs,
    io::ErrorKind,
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, Result, anyhow};
use aya::programs::{SchedClassifier, Xdp, links::FdLink};

use super::sys;
use crate::{
    hook::{self, AttachMode, Hook},
    links::Link,
    loader::{self, ModeChoice},
    metrics::Metrics,
};

struct Attached {
    name: String,
    path: PathBuf,
    fd: OwnedFd,
    prog_id: u32,
    /// A tcx link (tc ingress), else XDP.
    tc: bool,
    /// "tcx", "skb", "driver", ... as last seen.
    mode: String,
}

/// The programs links point at, one per hook.
pub struct Programs {
    pub xdp: Xdp,
    /// None: the programs of an older build (XDP only), answering while a
    /// blue/green upgrade from it fills the new maps.
    pub tc: Option<SchedClassifier>,
}

impl Programs {
    /// The program id of a hook, if these programs have that hook.
    fn id(&self, tc: bool) -> Result<Option<u32>> {
        let info = match (tc, &self.tc) {
            (false, _) => self.xdp.info(),
            (true, Some(p)) => p.info(),
            (true, None) => return Ok(None),
        };
        Ok(Some(info.context("reading program info")?.id()))
    }

    fn update(&self, link: &OwnedFd, tc: bool) -> std::io::Result<()> {
        let fd = match (tc, &self.tc) {
            (false, _) => self.xdp.fd(),
            (true, Some(p)) => p.fd(),
            (true, None) => return Err(std::io::Error::other("no tc program")),
        }
        .map_err(std::io::Error::other)?;
        sys::link_update(link.as_fd(), fd.as_fd())
    }
}

/// Every pinned link of this node, by interface index.
pub struct Attachments {
    dir: PathBuf,
    by_index: HashMap<u32, Attached>,
    metrics: Arc<Metrics>,
    /// tcx exists on this kernel (else veths get XDP: see
    /// [`hook::tcx_available`]).
    tcx: bool,
}

/// Suffix of a link's pin while it is being put in place (see the module
/// documentation). Interface names never hold a `~` next to a `:`.
const STAGING: &str = ":~";

impl Attachments {
    /// The links pinned in `dir` (created if missing); defunct ones are
    /// unpinned, and of two links on one interface (a daemon stopped while
    /// moving an interface to the other hook) one is kept.
    pub fn open(dir: PathBuf, metrics: Arc<Metrics>) -> Result<Self> {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut by_index = HashMap::new();
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        // Links under their final names first: of two on one interface,
        // the staged one goes.
        entries.sort_by_key(|p| p.to_string_lossy().ends_with(STAGING));
        for path in entries {
            let name = path
                .file_name()
                .map(|n| {
                    let n = n.to_string_lossy();
                    n.strip_suffix(STAGING).unwrap_or(&n).replace(':', ".")
                })
                .unwrap_or_default();
            let found =
                sys::obj_get(&path).and_then(|fd| Ok((sys::hook_link_info(fd.as_fd())?, fd)));
            match found {
                Ok((Some(info), fd))
                    if info.ifindex != 0 && !by_index.contains_key(&info.ifindex) =>
                {
                    log::info!(
                        "found pinned {} link {} (interface index {}, program {})",
                        if info.tc { "tcx" } else { "XDP" },
                        path.display(),
                        info.ifindex,
                        info.prog_id
                    );
                    by_index.insert(
                        info.ifindex,
                        Attached {
                            name,
                            path,
                            fd,
                            prog_id: info.prog_id,
                            tc: info.tc,
                            mode: if info.tc { "tcx" } else { "unknown" }.into(),
                        },
                    );
                }
                Ok((Some(info), _)) if info.ifindex != 0 => {
                    log::info!(
                        "removing {}: its interface has another link of ours",
                        path.display()
                    );
                    unpin(&path);
                }
                Ok(_) => {
                    log::info!(
                        "removing defunct link pin {} (its interface is gone)",
                        path.display()
                    );
                    unpin(&path);
                }
                Err(e) => {
                    log::warn!("removing {}: not a link ({e})", path.display());
                    unpin(&path);
                }
            }
        }
        let tcx = hook::tcx_available();
        if !tcx {
            log::warn!(
                "no tcx on this kernel (Linux 6.6 and later): veths get XDP, whose replies \
                 can grow only by the sender's tailroom (larger ones go to userspace)"
            );
        }
        Ok(Self {
            dir,
            by_index,
            metrics,
            tcx,
        })
    }

    /// Interface indexes with a pinned link.
    pub fn indexes(&self) -> Vec<u32> {
        self.by_index.keys().copied().collect()
    }

    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_index.is_empty()
    }

    /// The hook `link` gets now: the attach mode's choice (see
    /// [`hook::choose`]), XDP where tc cannot be had (no tcx, or
    /// answering programs without a tc entry point).
    fn hook_for(&self, progs: &Programs, link: &Link, mode: AttachMode) -> Result<Hook> {
        let driver =
            loader::driver_name(&link.name).with_context(|| format!("interface {}", link.name))?;
        Ok(match hook::choose(mode, &driver)? {
            Hook::Tc if !self.tcx || progs.tc.is_none() => Hook::Xdp(ModeChoice::Auto),
            h => h,
        })
    }

    /// Makes the program of `link`'s hook (see `hook_for`) the
    /// program on it: an existing link of that hook gets it by
    /// BPF_LINK_UPDATE, an interface without one a new link, pinned. An
    /// interface whose link is of the other hook gets the new link first,
    /// and loses the old one after: no gap.
    pub fn ensure(&mut self, progs: &mut Programs, link: &Link, mode: AttachMode) -> Result<()> {
        let hook = self.hook_for(progs, link, mode)?;
        let tc = hook == Hook::Tc;
        let id = progs
            .id(tc)?
            .ok_or_else(|| anyhow!("no program for the hook"))?;
        let mut replaced = None;
        if let Some(a) = self.by_index.get_mut(&link.index) {
            if a.name != link.name {
                // Renamed: the pin follows, so the name of a pin is the
                // name of its interface.
                let to = self.dir.join(pin_name(&link.name));
                fs::rename(&a.path, &to).with_context(|| {
                    format!("renaming {} to {}", a.path.display(), to.display())
                })?;
                let old = std::mem::replace(&mut a.name, link.name.clone());
                a.path = to;
                self.metrics
                    .state
                    .lock()
                    .expect("metrics lock")
                    .attached
                    .remove(&old);
            }
            if a.tc == tc {
                if a.prog_id != id {
                    progs
                        .update(&a.fd, tc)
                        .with_context(|| format!("updating the program on {}", link.name))?;
                    log::info!(
                        "{}: program {} replaced by {id} in place (BPF_LINK_UPDATE)",
                        link.name,
                        a.prog_id
                    );
                    a.prog_id = id;
                }
                if let (false, Some(m)) = (tc, link.xdp_mode) {
                    a.mode = m.into();
                }
                let (name, mode) = (a.name.clone(), a.mode.clone());
                self.note(name, mode);
                return Ok(());
            }
            // The other hook's link: it stays attached (we hold its
            // descriptor and its pin) until the new one is in place.
            replaced = self.by_index.remove(&link.index);
        }
        let (mode, fd) = match self.attach_new(progs, link, hook) {
            Ok(new) => new,
            Err(e) => {
                // The old link is still pinned and attached: keep it.
                if let Some(old) = replaced {
                    self.by_index.insert(link.index, old);
                }
                return Err(e);
            }
        };
        if let Some(old) = replaced {
            log::info!(
                "{}: moved from {} to {mode}; the old link goes",
                link.name,
                if old.tc { "tcx" } else { "XDP" }
            );
            // Its pin was replaced: closing its descriptor detaches it.
            drop(old);
        }
        self.by_index.insert(
            link.index,
            Attached {
                name: link.name.clone(),
                path: self.dir.join(pin_name(&link.name)),
                fd,
                prog_id: id,
                tc,
                mode: mode.clone(),
            },
        );
        self.note(link.name.clone(), mode);
        Ok(())
    }

    /// Attaches a new link of `hook` to `link` and pins it under the
    /// interface's name, replacing whatever pin was there in one step.
    /// Returns the mode label and the pinned link's descriptor.
    fn attach_new(
        &self,
        progs: &mut Programs,
        link: &Link,
        hook: Hook,
    ) -> Result<(String, OwnedFd)> {
        let (mode, fd_link) = match (hook, progs.tc.as_mut()) {
            (Hook::Tc, Some(prog)) => {
                let link_id = hook::attach_tcx(prog, &link.name)?;
                let tc_link = prog.take_link(link_id).context("taking the new link")?;
                let fd_link = FdLink::try_from(tc_link)
                    .map_err(|e| anyhow!("{}: the tcx link is not a BPF link ({e})", link.name))?;
                ("tcx".to_string(), fd_link)
            }
            (Hook::Tc, None) => return Err(anyhow!("no tc program")),
            (Hook::Xdp(choice), _) => {
                let (mode, link_id) = loader::attach(&mut progs.xdp, &link.name, choice)?;
                let xdp_link = progs
                    .xdp
                    .take_link(link_id)
                    .context("taking the new link")?;
                let fd_link = FdLink::try_from(xdp_link).map_err(|e| {
                    anyhow!(
                        "{}: attached without a BPF link ({e}); it could not outlive the daemon",
                        link.name
                    )
                })?;
                (format!("{mode:?}").to_lowercase(), fd_link)
            }
        };
        let path = self.dir.join(pin_name(&link.name));
        let staging = self.dir.join(format!("{}{STAGING}", pin_name(&link.name)));
        unpin(&staging);
        // Until it is pinned, the new link lives as long as `fd_link`.
        let pinned = fd_link
            .pin(&staging)
            .with_context(|| format!("pinning the link at {}", staging.display()))?;
        // One step from the old pin (if any: the other hook's link, or one
        // left by a renamed or vanished interface) to the new one.
        if let Err(e) = fs::rename(&staging, &path) {
            unpin(&staging);
            return Err(e)
                .with_context(|| format!("renaming {} to {}", staging.display(), path.display()));
        }
        let fd = sys::obj_get(&path).with_context(|| format!("opening {}", path.display()))?;
        drop(pinned);
        Ok((mode, fd))
    }

    /// Moves every link to the program of its hook in `progs`, in place.
    /// Returns the interfaces whose link refused (they keep the program
    /// they had).
    pub fn switch_all(&mut self, progs: &Programs) -> Result<Vec<String>> {
        let mut failed = Vec::new();
        for a in self.by_index.values_mut() {
            let Some(id) = progs.id(a.tc)? else {
                continue;
            };
            if a.prog_id == id {
                continue;
            }
            match progs.update(&a.fd, a.tc) {
                Ok(()) => {
                    log::info!(
                        "{}: program {} replaced by {id} in place",
                        a.name,
                        a.prog_id
                    );
                    a.prog_id = id;
                }
                Err(e) => {
                    log::warn!("{}: switching to the new program: {e}", a.name);
                    failed.push(a.name.clone());
                }
            }
        }
        Ok(failed)
    }

    /// Moves every interface whose link is not of the hook it should have
    /// (see `hook_for`) to that hook, the new link first. Returns
    /// the interfaces that could not be moved (they keep their link).
    pub fn rehook_all(&mut self, progs: &mut Programs, mode: AttachMode) -> Vec<String> {
        let mut failed = Vec::new();
        let links: Vec<Link> = self
            .by_index
            .iter()
            .map(|(&index, a)| Link {
                index,
                name: a.name.clone(),
                kind: None,
                xdp_mode: None,
            })
            .collect();
        for link in links {
            let wrong = match self.hook_for(progs, &link, mode) {
                Ok(h) => self
                    .by_index
                    .get(&link.index)
                    .is_some_and(|a| a.tc != (h == Hook::Tc)),
                Err(e) => {
                    log::warn!("{}: {e:#}", link.name);
                    false
                }
            };
            if wrong && let Err(e) = self.ensure(progs, &link, mode) {
                log::warn!("{}: moving to the other hook: {e:#}", link.name);
                failed.push(link.name);
            }
        }
        failed
    }

    /// The interface is gone: its link went with it; drop the pin.
    pub fn forget(&mut self, index: u32) {
        if let Some(a) = self.by_index.remove(&index) {
            unpin(&a.path);
            self.metrics
                .state
                .lock()
                .expect("metrics lock")
                .attached
                .remove(&a.name);
            log::info!("{} is gone", a.name);
        }
    }

    /// Detaches the program from an interface it should no longer be on
    /// (the selection changed): the link goes with its pin and our
    /// descriptor.
    pub fn detach(&mut self, index: u32) {
        if let Some(a) = self.by_index.remove(&index) {
            unpin(&a.path);
            self.metrics
                .state
                .lock()
                .expect("metrics lock")
                .attached
                .remove(&a.name);
            log::info!("{}: no longer selected, detached", a.name);
        }
    }

    fn note(&self, name: String, mode: String) {
        let mut st = self.metrics.state.lock().expect("metrics lock");
        st.attached.insert(name, mode);
    }
}

/// A link's pin name: the interface's, with its dots (bpffs reserves them)
/// as colons, which interface names never contain.
fn pin_name(iface: &str) -> String {
    iface.replace('.', ":")
}

fn unpin(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => log::warn!("removing {}: {e}", path.display()),
    }
}
