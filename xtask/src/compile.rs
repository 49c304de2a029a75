//! `cargo xtask build`: the daemon (with its eBPF object), the demo and
//! the benchmarks, in release mode.

use anyhow::Result;

use crate::cmd::{cargo, run};

pub fn build() -> Result<()> {
    let mut c = cargo();
    c.args(["build", "--release", "-p", "hsdns", "--bins", "--examples"]);
    run(c, "building hsdns (release)")
}
