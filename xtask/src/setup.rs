//! `cargo xtask setup`: what the build and the tests need on the machine,
//! installed idempotently (a second run changes nothing): rust-src for the
//! stable toolchain, bpf-linker on the toolchain's own LLVM, and Debian
//! packages.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{output, require_root, run};

pub fn setup() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages()?;
    Ok(())
}

/// The stable toolchain builds the XDP object with RUSTC_BOOTSTRAP=1 and
/// `-Z build-std=core`, which needs the standard library's sources.
fn rust_src() -> Result<()> {
    let sysroot = output(Command::new("rustc").args(["+stable", "--print", "sysroot"]))
        .context("rustc +stable is not available: install rustup's stable toolchain")?;
    let src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if src.exists() {
        return Ok(());
    }
    let mut c = Command::new("rustup");
    c.args(["component", "add", "rust-src", "--toolchain", "stable"]);
    run(c, "installing rust-src for the stable toolchain")
}

/// LLVM major version of the stable rustc.
fn rustc_llvm() -> Result<(String, PathBuf)> {
    let vv = output(Command::new("rustc").args(["+stable", "-vV"])).context("rustc -vV")?;
    let llvm = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .context("rustc -vV names no LLVM version")?
        .trim()
        .to_string();
    let sysroot = output(Command::new("rustc").args(["+stable", "--print", "sysroot"]))
        .context("rustc --print sysroot")?;
    Ok((llvm, PathBuf::from(sysroot.trim())))
}

/// bpf-linker must use the LLVM rustc uses. It is built against the
/// toolchain's own libLLVM: LLVM_PREFIX points at a folder whose lib/ links
/// to it twice, as `libLLVM.so` (for the build) and under the library's own
/// file name (the installed binary's rpath looks for that).
fn bpf_linker() -> Result<()> {
    let (llvm, sysroot) = rustc_llvm()?;
    let major = llvm.split('.').next().unwrap_or_default().to_string();
    let libdir = sysroot.join("lib");
    let lib = std::fs::read_dir(&libdir)
        .with_context(|| format!("reading {}", libdir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so")))
        .with_context(|| format!("no libLLVM in {}", libdir.display()))?;
    // Resolve a linker-script stub (libLLVM-22-rust-...so) to the real file.
    let real = std::fs::canonicalize(libdir.join(&lib))?;
    let real_name = real
        .file_name()
        .context("libLLVM file name")?
        .to_string_lossy()
        .into_owned();
    if linked_llvm_ok(&real_name) {
        return Ok(());
    }
    let home = env::var_os("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home).join(".cache/hsdns/llvm");
    let plib = prefix.join("lib");
    std::fs::create_dir_all(&plib)?;
    for name in ["libLLVM.so", real_name.as_str()] {
        let link = plib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    let mut c = Command::new("cargo");
    c.args([
        "+stable",
        "install",
        "--locked",
        "--force",
        "bpf-linker",
        "--no-default-features",
        "--features",
        &format!("llvm-{major}"),
    ])
    .env("LLVM_PREFIX", &prefix);
    run(
        c,
        &format!("building bpf-linker against the toolchain's LLVM {llvm} (about a minute)"),
    )?;
    if !linked_llvm_ok(&real_name) {
        bail!("bpf-linker was installed but does not load {real_name}: is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

/// Whether the bpf-linker on PATH loads exactly the toolchain's libLLVM
/// (its --version does not say which LLVM it uses; the dynamic linker does).
fn linked_llvm_ok(real_name: &str) -> bool {
    let Some(path) = output(Command::new("sh").args(["-c", "command -v bpf-linker"])) else {
        return false;
    };
    output(Command::new("ldd").arg(path.trim()))
        .is_some_and(|l| l.lines().any(|l| l.contains(&format!("{real_name} => /"))))
}

const PACKAGES: [(&str, &str); 4] = [
    ("bpftool", "inspecting the pinned maps (demo, README)"),
    ("dnsperf", "the end-to-end benchmark's load generator"),
    (
        "bind9-dnsutils",
        "dig, the real client of the demo and the network tests",
    ),
    (
        "iproute2",
        "network namespaces and veth pairs for the demo and tests",
    ),
];

fn debian_packages() -> Result<()> {
    install_missing(&PACKAGES)
}

pub fn install_missing(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", p]))
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    require_root("installing Debian packages")?;
    let mut c = Command::new("apt-get");
    c.arg("update").arg("-qq");
    run(c, "apt-get update")?;
    let mut c = Command::new("apt-get");
    c.args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(c, &format!("installing {}", missing.join(" ")))
}
