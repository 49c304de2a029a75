//! The program's attachments as pinned BPF links, one per interface under
//! `<pin dir>/links/<interface>` (dots as colons: bpffs reserves dots).
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
use aya::programs::{Xdp, links::FdLink};

use super::sys;
use crate::{
    links::Link,
    loader::{self, ModeChoice},
    metrics::Metrics,
};

struct Attached {
    name: String,
    path: PathBuf,
    fd: OwnedFd,
    prog_id: u32,
    /// "skb", "driver", ... as last seen.
    mode: String,
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
                            mode: "unknown".into(),
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

    /// Makes `prog` the program on `link`: an existing link gets it by
    /// BPF_LINK_UPDATE, an interface without one a new link, pinned.
    pub fn ensure(&mut self, prog: &mut Xdp, link: &Link, choice: ModeChoice) -> Result<()> {
        let id = prog_id(prog)?;
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
            if a.prog_id != id {
                sys::link_update(a.fd.as_fd(), prog.fd()?.as_fd())
                    .with_context(|| format!("updating the program on {}", link.name))?;
                log::info!(
                    "{}: program {} replaced by {id} in place (BPF_LINK_UPDATE)",
                    link.name,
                    a.prog_id
                );
                a.prog_id = id;
            }
            if let Some(m) = link.xdp_mode {
                a.mode = m.into();
            }
            let (name, mode) = (a.name.clone(), a.mode.clone());
            self.note(name, mode);
            return Ok(());
        }
        let (mode, link_id) = loader::attach(prog, &link.name, choice)?;
        let xdp_link = prog.take_link(link_id).context("taking the new link")?;
        let fd_link = FdLink::try_from(xdp_link).map_err(|e| {
            anyhow!(
                "{}: attached without a BPF link ({e}); it could not outlive the daemon",
                link.name
            )
        })?;
        let path = self.dir.join(pin_name(&link.name));
        // A pin of that name left by a renamed or vanished interface.
        unpin(&path);
        let pinned = fd_link
            .pin(&path)
            .with_context(|| format!("pinning the link at {}", path.display()))?;
        let fd = sys::obj_get(&path).with_context(|| format!("opening {}", path.display()))?;
        drop(pinned);
        let mode = format!("{mode:?}").to_lowercase();
        self.by_index.insert(
            link.index,
            Attached {
                name: link.name.clone(),
                path,
                fd,
                prog_id: id,
                mode: mode.clone(),
            },
        );
        self.note(link.name.clone(), mode);
        Ok(())
    }

    /// Moves every link to `prog` in place. Returns the interfaces whose
    /// link refused (they keep the program they had).
    pub fn switch_all(&mut self, prog: &Xdp) -> Result<Vec<String>> {
        let id = prog_id(prog)?;
        let fd = prog.fd()?;
        let mut failed = Vec::new();
        for a in self.by_index.values_mut() {
            if a.prog_id == id {
                continue;
            }
            match sys::link_update(a.fd.as_fd(), fd.as_fd()) {
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
