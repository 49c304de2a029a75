//! The program's attachments as pinned BPF links, one per interface under
//! `<pin dir>/links/<interface>` (dots as colons: bpffs reserves dots): an
//! XDP link, or a tcx link for the tc entry point (pod veths, see
//! `crate::hook`).
//!
//! A pinned link keeps the program attached after the daemon exits, so the
//! kernel goes on answering across a restart or a crash. A starting daemon
//! finds the links by the interface index the kernel reports for each
//! (names are only labels: an interface can be renamed), replaces their
//! program in one step (BPF_LINK_UPDATE) and never detaches one to attach
//! another. A link whose interface is gone is defunct: its pin is removed.

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
    loader,
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
    pub tc: SchedClassifier,
}

impl Programs {
    fn id(&self, tc: bool) -> Result<u32> {
        let info = if tc { self.tc.info() } else { self.xdp.info() };
        Ok(info.context("reading program info")?.id())
    }

    fn update(&self, link: &OwnedFd, tc: bool) -> std::io::Result<()> {
        let fd = if tc { self.tc.fd() } else { self.xdp.fd() }.map_err(std::io::Error::other)?;
        sys::link_update(link.as_fd(), fd.as_fd())
    }
}

/// Every pinned link of this node, by interface index.
pub struct Attachments {
    dir: PathBuf,
    by_index: HashMap<u32, Attached>,
    metrics: Arc<Metrics>,
}

/// The kernel's id of a loaded program.
pub fn prog_id(prog: &Xdp) -> Result<u32> {
    Ok(prog.info().context("reading program info")?.id())
}

impl Attachments {
    /// The links pinned in `dir` (created if missing); defunct ones are
    /// unpinned.
    pub fn open(dir: PathBuf, metrics: Arc<Metrics>) -> Result<Self> {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut by_index = HashMap::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().replace(':', "."))
                .unwrap_or_default();
            let found =
                sys::obj_get(&path).and_then(|fd| Ok((sys::xdp_link_info(fd.as_fd())?, fd)));
            match found {
                Ok((Some(info), fd))
                    if info.ifindex != 0 && !by_index.contains_key(&info.ifindex) =>
                {
                    log::info!(
                        "found pinned link {} (interface index {}, program {})",
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
        Ok(Self {
            dir,
            by_index,
            metrics,
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

    /// Makes the program of `link`'s hook (see [`hook::choose`]) the
    /// program on it: an existing link of that hook gets it by
    /// BPF_LINK_UPDATE, an interface without one a new link, pinned. An
    /// interface whose link is of the other hook (the attach mode changed)
    /// gets the new link first, and loses the old one after: no gap.
    pub fn ensure(&mut self, progs: &mut Programs, link: &Link, mode: AttachMode) -> Result<()> {
        let driver =
            loader::driver_name(&link.name).with_context(|| format!("interface {}", link.name))?;
        let hook = hook::choose(mode, &driver)?;
        let tc = hook == Hook::Tc;
        let id = progs.id(tc)?;
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
            replaced = self.by_index.remove(&link.index);
        }
        let (mode, fd_link) = if tc {
            let (mode, link_id) = hook::attach_tc(&mut progs.tc, &link.name)?;
            let tc_link = progs.tc.take_link(link_id).context("taking the new link")?;
            let fd_link = FdLink::try_from(tc_link).map_err(|e| {
                anyhow!(
                    "{}: attached at tc ingress without a BPF link ({e}: no tcx, Linux 6.6 \
                     and later); it could not outlive the daemon",
                    link.name
                )
            })?;
            (mode.label().to_string(), fd_link)
        } else {
            let (mode, link_id) = loader::attach(&mut progs.xdp, &link.name, hook_choice(hook))?;
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
        };
        let path = self.dir.join(pin_name(&link.name));
        // A pin of that name left by a renamed or vanished interface, or
        // the other hook's link: that one stays attached while we hold its
        // descriptor, until the new link is pinned.
        unpin(&path);
        let pinned = fd_link
            .pin(&path)
            .with_context(|| format!("pinning the link at {}", path.display()))?;
        let fd = sys::obj_get(&path).with_context(|| format!("opening {}", path.display()))?;
        drop(pinned);
        if let Some(old) = replaced {
            log::info!(
                "{}: moved from {} to {mode}; the old link goes",
                link.name,
                if old.tc { "tc" } else { "XDP" }
            );
        }
        self.by_index.insert(
            link.index,
            Attached {
                name: link.name.clone(),
                path,
                fd,
                prog_id: id,
                tc,
                mode: mode.clone(),
            },
        );
        self.note(link.name.clone(), mode);
        Ok(())
    }

    /// Moves every link to the program of its hook in `progs`, in place.
    /// Returns the interfaces whose link refused (they keep the program
    /// they had).
    pub fn switch_all(&mut self, progs: &Programs) -> Result<Vec<String>> {
        let mut failed = Vec::new();
        for a in self.by_index.values_mut() {
            let id = progs.id(a.tc)?;
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

/// The XDP mode choice of an XDP hook.
fn hook_choice(h: Hook) -> loader::ModeChoice {
    match h {
        Hook::Xdp(c) => c,
        Hook::Tc => loader::ModeChoice::Auto,
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
