//! `cargo xtask build`: the daemon (with its eBPF object), the demo and
//! the benchmarks, in release mode.

use anyhow::Result;

use crate::cmd::{BENCH_PACKAGE, cargo, run};

pub fn build() -> Result<()> {
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "hsdns",
        "--bins",
        "--example",
        "demo",
    ]);
    run(c, "building hsdns (release)")?;
    let mut c = cargo();
    c.args(["build", "--release", "-p", BENCH_PACKAGE, "--bins"]);
    run(c, "building the benchmarks (release)")
}
