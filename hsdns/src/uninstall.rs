//! `hsdns uninstall`: removes what a daemon may leave on a node once its
//! DaemonSet is gone (deploy/uninstall runs it on every node): the pins
//! under the pin directory (maps, programs, links: unpinning a link
//! detaches its program, and the kernel frees what nothing holds any more)
//! and the node-local dummy interface.
//!
//! The lifecycle work (issue 10) owns the full uninstall; this is the part
//! the deploy/ clean-up path needs, so the manifests name a real command.

use std::{fs, io::ErrorKind, path::Path};

use anyhow::{Context as _, Result};
use clap::Args;
use hsdns_common::PIN_DIR;

#[derive(Args, Debug, Clone)]
pub struct UninstallArgs {
    /// The daemon's pin directory.
    #[arg(long, default_value = PIN_DIR)]
    pub pin_dir: std::path::PathBuf,
    /// The dummy interface holding the node-local addresses.
    #[arg(long, default_value = "hsdns0")]
    pub local_interface: String,
}

/// Removes every pin under `dir` (recursively) and the directory; returns
/// how many pins there were. A missing directory is nothing to do.
pub fn remove_pins(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut n = 0;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            n += remove_pins(&path)?;
        } else {
            fs::remove_file(&path).with_context(|| format!("unpinning {}", path.display()))?;
            n += 1;
        }
    }
    fs::remove_dir(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(n)
}

pub fn run(args: &UninstallArgs) -> Result<()> {
    let n = remove_pins(&args.pin_dir)?;
    println!("removed {n} pins under {}", args.pin_dir.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let handle = crate::links::connect()?;
        let links = crate::links::list(&handle).await?;
        match links.iter().find(|l| l.name == args.local_interface) {
            Some(l) => {
                crate::links::delete(&handle, l.index).await?;
                println!("deleted interface {}", args.local_interface);
            }
            None => println!("no interface {}", args.local_interface),
        }
        Ok::<_, anyhow::Error>(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_removed_recursively_and_a_missing_dir_is_fine() {
        let dir = std::env::temp_dir().join(format!("hsdns-uninstall-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("links")).unwrap();
        for p in ["counters", "prog_xdp", "links/veth1"] {
            fs::write(dir.join(p), b"").unwrap();
        }
        assert_eq!(remove_pins(&dir).unwrap(), 3);
        assert!(!dir.exists());
        assert_eq!(remove_pins(&dir).unwrap(), 0);
    }
}
