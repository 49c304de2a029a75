//! `cargo xtask build`: the daemon (with its eBPF object), the demo and
//! the benchmarks, in release mode.

use anyhow::Result;

use crate::cmd::{BENCH_PACKAGE, cargo, run};

pub fn build() -> Result<()> {
    // The daemon on its own: the demo's dev-dependency (hsdns-test-support)
    // turns on hsdns's `testing` feature, and built in one invocation with
    // the demo the daemon binary would carry the test oracles too.
    let mut c = cargo();
    c.args(["build", "--release", "-p", "hsdns", "--bins"]);
    run(c, "building hsdns (release)")?;
    let mut c = cargo();
    c.args(["build", "--release", "-p", "hsdns", "--example", "demo"]);
    run(c, "building the demo (release)")?;
    let mut c = cargo();
    c.args(["build", "--release", "-p", BENCH_PACKAGE, "--bins"]);
    run(c, "building the benchmarks (release)")
}
