//! The BPF filesystem under the pin directory, and who owns it.
//!
//! A fresh node may have no bpffs mounted at /sys/fs/bpf (measured on CI
//! machines): the daemon mounts one itself, as Cilium's agent does, rather
//! than failing on its first pin. One daemon at a time writes the pinned
//! maps: it holds an exclusive `flock` on the pin directory. A second one
//! (a DaemonSet update that surges a new pod before the old one stops)
//! asks for the maps by creating `<pin dir>/takeover`; the owner sees it,
//! stops writing and releases the lock, and the new one adopts the maps.

use std::{
    ffi::CString,
    fs,
    io::ErrorKind,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// `statfs(2)` f_type of a BPF filesystem (linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Whether `path` (which must exist) lies on a BPF filesystem.
pub fn is_bpffs(path: &Path) -> Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes()).context("path")?;
    // SAFETY: all-zero is a valid statfs; statfs writes into it only.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string, st a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statfs {}", path.display()));
    }
    Ok(st.f_type as i64 == BPF_FS_MAGIC)
}

/// Makes sure `pin_dir` can hold pins: if neither it nor its parent is on
/// a BPF filesystem, mounts one on the parent (the pin path's root:
/// /sys/fs/bpf for the default /sys/fs/bpf/hsdns). Returns the mount point
/// when it mounted one.
pub fn ensure_mounted(pin_dir: &Path) -> Result<Option<PathBuf>> {
    let root = pin_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .context("the pin directory needs a parent to mount bpffs on")?;
    for p in [pin_dir, root] {
        if p.exists() && is_bpffs(p)? {
            return Ok(None);
        }
    }
    if pin_dir.exists() {
        bail!(
            "{} exists but is not on a BPF filesystem, and {} is not one either",
            pin_dir.display(),
            root.display()
        );
    }
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let target = CString::new(root.as_os_str().as_bytes()).context("path")?;
    // SAFETY: valid C strings; a plain mount(2) of a new bpffs instance.
    let r = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "no BPF filesystem at {}, and mounting one failed (that needs \
                 CAP_SYS_ADMIN; in a container, the host's /sys/fs/bpf must be a bpffs \
                 mounted in: deploy/'s mount-bpffs init container makes sure of it)",
                root.display()
            )
        });
    }
    log::info!(
        "no BPF filesystem was mounted at {}: mounted one there",
        root.display()
    );
    Ok(Some(root.to_path_buf()))
}

/// `hsdns mount-bpffs`: [`ensure_mounted`], saying what it found.
pub fn mount_for(pin_dir: &Path) -> Result<()> {
    match ensure_mounted(pin_dir)? {
        Some(root) => println!("mounted a BPF filesystem at {}", root.display()),
        None => println!("{} is on a BPF filesystem already", pin_dir.display()),
    }
    Ok(())
}

/// The exclusive right to write the pinned state under a pin directory.
/// Released when dropped (or when the process dies: the kernel drops the
/// lock with the descriptor).
#[derive(Debug)]
pub struct PinLock {
    _dir: OwnedFd,
    takeover: PathBuf,
}

/// The directory a waiting daemon creates to ask the owner to hand over.
pub const TAKEOVER: &str = "takeover";

impl PinLock {
    /// Takes the lock if it is free. Creates `pin_dir` if needed.
    pub fn try_acquire(pin_dir: &Path) -> Result<Option<PinLock>> {
        fs::create_dir_all(pin_dir).with_context(|| format!("creating {}", pin_dir.display()))?;
        let c = CString::new(pin_dir.as_os_str().as_bytes()).context("path")?;
        // SAFETY: a valid C string; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("opening {}", pin_dir.display()));
        }
        // SAFETY: fd is a fresh descriptor of ours.
        let dir = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: flock on our own descriptor.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Ok(None);
            }
            return Err(e).with_context(|| format!("locking {}", pin_dir.display()));
        }
        Ok(Some(PinLock {
            _dir: dir,
            takeover: pin_dir.join(TAKEOVER),
        }))
    }

    /// Takes the lock, asking its owner to hand over if another daemon
    /// holds it, and waits (polling) until it does.
    pub async fn acquire(pin_dir: &Path) -> Result<PinLock> {
        let takeover = pin_dir.join(TAKEOVER);
        let started = Instant::now();
        let mut asked = false;
        let mut last_log = Instant::now();
        loop {
            if let Some(l) = Self::try_acquire(pin_dir)? {
                if asked {
                    log::info!(
                        "the previous hsdns handed {} over after {} ms",
                        pin_dir.display(),
                        started.elapsed().as_millis()
                    );
                }
                // Ours now; a leftover request (its author gone) is void.
                match fs::remove_dir(&takeover) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => log::warn!("removing {}: {e}", takeover.display()),
                }
                return Ok(l);
            }
            if !asked {
                log::info!(
                    "another hsdns owns {}: asking it to hand the maps over",
                    pin_dir.display()
                );
                match fs::create_dir(&takeover) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("creating {}", takeover.display()));
                    }
                }
                asked = true;
            } else if last_log.elapsed() > Duration::from_secs(10) {
                log::warn!(
                    "still waiting for the hsdns that owns {} ({} s)",
                    pin_dir.display(),
                    started.elapsed().as_secs()
                );
                last_log = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether another daemon asked for the maps.
    pub fn takeover_requested(&self) -> bool {
        self.takeover.exists()
    }
}
