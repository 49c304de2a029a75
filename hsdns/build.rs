use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

#[path = "src/btf_char.rs"]
#[allow(
    dead_code,
    reason = "the crate uses the whole module; the build script only patches the object"
)]
mod btf_char;

/// `HSDNS_GIT_COMMIT` for `hsdns --version`: the commit the source was
/// built from (with `-dirty` for uncommitted changes), or the variable's
/// value when set (builds from a tarball), or `unknown`.
fn git_commit() {
    println!("cargo:rerun-if-env-changed=HSDNS_GIT_COMMIT");
    let commit = env::var("HSDNS_GIT_COMMIT").ok().or_else(|| {
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git").args(args).output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        // Rebuild when HEAD moves: HEAD itself, and the file of the branch
        // it names (a worktree's git dir is not the repository's).
        if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
            println!("cargo:rerun-if-changed={head}");
        }
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"])
            && let Some(path) = git(&["rev-parse", "--git-path", &r])
        {
            // A packed ref has no file of its own (and a missing path
            // would rerun this script on every build).
            let packed = git(&["rev-parse", "--git-path", "packed-refs"]);
            for p in [Some(path), packed].into_iter().flatten() {
                if std::path::Path::new(&p).exists() {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    println!(
        "cargo:rustc-env=HSDNS_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}

fn main() -> anyhow::Result<()> {
    git_commit();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let obj = out_dir.join("hsdns");
    // AYA_BUILD_SKIP=1 builds the daemon without its eBPF object (aya-build
    // honours it); an empty placeholder keeps the crate compiling, and loading
    // then fails at run time with a clear error.
    if env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1") && !obj.exists() {
        fs::write(&obj, b"").context("placeholder eBPF object")?;
    }
    let ebpf_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?)
        .parent()
        .ok_or_else(|| anyhow!("no workspace root"))?
        .join("hsdns-ebpf");
    let ebpf_dir = ebpf_dir.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    // Stable rustc with RUSTC_BOOTSTRAP=1 (aya-build then adds -Z build-std):
    // the object is compiled by the same LLVM bpf-linker was built against
    // (xtask setup), and a fresh machine needs no nightly toolchain.
    // SAFETY: the build script is single-threaded here.
    unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    // The profiling stage stop (hsdns-ebpf/src/profile.rs) is for objects
    // built by hand only: never in the object this crate carries.
    // SAFETY: as above.
    unsafe { env::remove_var("HSDNS_STOP_AFTER") };
    aya_build::build_ebpf(
        [Package {
            name: "hsdns-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::Custom("stable"),
    )?;
    // Name fields print as text in bpftool (see src/btf_char.rs).
    let mut bytes = fs::read(&obj).with_context(|| format!("reading {}", obj.display()))?;
    if !bytes.is_empty() {
        let n = btf_char::mark_char(&mut bytes, "i8").map_err(|e| anyhow!("patching BTF: {e}"))?;
        if n == 0 {
            anyhow::bail!("the eBPF object's BTF has no i8 type to mark as char");
        }
        // A new file renamed over the old: the old may be a hard link to
        // the eBPF crate's own build output.
        let tmp = out_dir.join("hsdns.patched");
        fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &obj).with_context(|| format!("replacing {}", obj.display()))?;
    }
    Ok(())
}
