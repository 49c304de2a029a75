//! `cargo xtask demo`: runs the demo (built by `cargo xtask build`):
//! network namespaces, the seed scenario, answers from the kernel.

use std::process::Command;

use anyhow::Result;

use crate::cmd::{run, target_dir};

pub fn demo() -> Result<()> {
    let exe = target_dir().join("release/examples/demo");
    run(Command::new(exe), "running the demo")
}
