//! `cargo xtask fuzz`: builds the fuzzer (the `fuzz` binary of the bench
//! crate) in release mode and runs it: the differential fuzzer of the
//! kernel path through BPF_PROG_TEST_RUN (10^6 packets by default, a fresh
//! seed unless one is given), then the userspace parsers. Failing kernel
//! inputs land in hsdns/tests/fuzz-corpus, which `cargo xtask test`
//! replays.

use std::process::Command;

use anyhow::{Result, bail};

use crate::cmd::{BENCH_PACKAGE, cargo, run, target_dir};

/// The flags `cargo xtask fuzz` passes through.
#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seed (decimal or 0x hex); a fresh one each run when absent. The
    /// report prints the command that reproduces the run.
    #[arg(long)]
    seed: Option<String>,
    /// Packets through the kernel path (at least 10^6 for a real run).
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Entry point of the program (xdp, or tc once the object has one);
    /// every one the object has when absent.
    #[arg(long)]
    entry: Option<String>,
    /// Inputs for the userspace resolver (the server, manifests and
    /// resolv.conf get fewer); 0 skips the userspace parsers.
    #[arg(long, default_value_t = 200_000)]
    userspace: u64,
}

pub fn fuzz(args: &FuzzArgs) -> Result<()> {
    let mut c = cargo();
    c.args(["build", "--release", "-p", BENCH_PACKAGE, "--bin", "fuzz"]);
    run(c, "building the fuzzer (release)")?;
    let mut c = Command::new(target_dir().join("release/fuzz"));
    c.args(["--packets", &args.packets.to_string()])
        .args(["--userspace", &args.userspace.to_string()]);
    if let Some(entry) = &args.entry {
        c.args(["--entry", entry]);
    }
    if let Some(seed) = &args.seed {
        c.args(["--seed", seed]);
    }
    eprintln!("xtask: fuzzing");
    let status = c.status()?;
    if !status.success() {
        bail!("the fuzzer found failures (see above), or could not run ({status})");
    }
    Ok(())
}
