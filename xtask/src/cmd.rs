//! What every command uses: where the workspace and its builds are, and
//! running programs.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

/// The crate of the benchmark binaries (and the fuzzer): built by `cargo
/// xtask build`, run by `cargo xtask bench` and `cargo xtask fuzz` from
/// target/release/<name>. `demo` stays hsdns's one example.
pub const BENCH_PACKAGE: &str = "hsdns-bench";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where cargo puts its builds: CARGO_TARGET_DIR (relative to the
/// workspace) when set, else target/.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => workspace().join(d),
        _ => workspace().join("target"),
    }
}

pub fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace());
    c
}

/// Runs a command, failing with its description when it fails.
pub fn run(mut c: Command, what: &str) -> Result<()> {
    eprintln!("xtask: {what}");
    let status = c
        .status()
        .with_context(|| format!("{what}: cannot start {:?}", c.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

pub fn output(c: &mut Command) -> Option<String> {
    let out = c.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!(
            "{what} load BPF programs and create network namespaces: run as root \
             (e.g. sudo -E cargo xtask ...)"
        );
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
