//! `hsdns uninstall`: everything a daemon leaves running on purpose when it
//! stops (program, links, maps, the node-local address and interface)
//! removed, for a node that should no longer run hsdns.

use std::{fs, io::ErrorKind, path::Path};

use anyhow::{Context as _, Result, bail};

use super::{LINKS_DIR, bpffs};
use crate::{cli::UninstallArgs, links};

pub fn run(args: &UninstallArgs) -> Result<()> {
    let mut removed = unpin_all(&args.pin_dir)?;
    if !args.no_local_interface {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        removed.extend(rt.block_on(async {
            let netlink = links::connect()?;
            links::remove_local(&netlink, &args.local_interface, &args.dns_addrs).await
        })?);
    }
    if removed.is_empty() {
        println!("nothing to remove");
    }
    for r in removed {
        println!("removed {r}");
    }
    Ok(())
}

/// Unpins every link (the program leaves each interface with its last
/// reference), then the program and the maps, then the directory.
fn unpin_all(pin_dir: &Path) -> Result<Vec<String>> {
    // No bpffs, or no directory: nothing was pinned here (and mounting a
    // filesystem just to find it empty would be a change of its own).
    if !pin_dir.exists() {
        return Ok(vec![]);
    }
    if !bpffs::is_bpffs(pin_dir)? {
        bail!("{} is not on a BPF filesystem", pin_dir.display());
    }
    let Some(lock) = bpffs::PinLock::try_acquire(pin_dir)? else {
        bail!(
            "an hsdns daemon is running on {}: stop it first (uninstalling under it would \
             take the maps it writes away)",
            pin_dir.display()
        );
    };
    let mut removed = Vec::new();
    let links = pin_dir.join(LINKS_DIR);
    if let Ok(entries) = fs::read_dir(&links) {
        for e in entries {
            let p = e?.path();
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            removed.push(format!("link {}", p.display()));
        }
    }
    remove_tree(pin_dir, &mut removed)?;
    drop(lock);
    Ok(removed)
}

fn remove_tree(dir: &Path, removed: &mut Vec<String>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            remove_tree(&p, removed)?;
        } else {
            fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            removed.push(format!("pin {}", p.display()));
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nested pins (links/, next/) all go, and the directories with them.
    #[test]
    fn pins_are_removed_recursively() {
        let dir = std::env::temp_dir().join(format!("hsdns-uninstall-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("links")).unwrap();
        fs::create_dir_all(dir.join("next")).unwrap();
        for p in ["counters", "prog_xdp", "links/veth1", "next/names_64"] {
            fs::write(dir.join(p), b"").unwrap();
        }
        let mut removed = Vec::new();
        remove_tree(&dir, &mut removed).unwrap();
        assert_eq!(removed.len(), 4, "{removed:?}");
        assert!(!dir.exists());
    }

    /// Nothing pinned (or no bpffs at all): nothing to do, not an error.
    #[test]
    fn a_missing_pin_dir_is_nothing_to_remove() {
        let dir = std::env::temp_dir().join(format!("hsdns-uninstall-none-{}", std::process::id()));
        assert_eq!(unpin_all(&dir).unwrap(), Vec::<String>::new());
    }
}
