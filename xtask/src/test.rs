//! `cargo xtask test`: format check, clippy (the host crates and the eBPF
//! crate on its own target), the image, and every test.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::{
    cmd::{cargo, run, target_dir, workspace},
    image,
    setup::install_missing,
};

pub fn test() -> Result<()> {
    let mut c = cargo();
    c.args(["fmt", "--all", "--check"]);
    run(c, "checking formatting")?;
    let mut c = cargo();
    c.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(c, "clippy")?;
    // The eBPF crate compiles to nothing on the host: check it on its own
    // target, as aya-build builds it (stable with RUSTC_BOOTSTRAP=1 and a
    // core built from source), in its own target dir.
    // (Through rustup: the cargo running xtask takes no +toolchain.)
    let mut c = Command::new("rustup");
    c.current_dir(workspace());
    c.args([
        "run",
        "stable",
        "cargo",
        "clippy",
        "-p",
        "hsdns-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
        "--target-dir",
    ])
    .arg(target_dir().join("ebpf-clippy"))
    .args(["--", "-D", "warnings"])
    .env("RUSTC_BOOTSTRAP", "1");
    run(c, "clippy on the eBPF target")?;
    // The image test unpacks the real image and runs its binary: build it
    // first (the static release build is the cost: about 4 minutes cold on
    // 2 cores, seconds when only hsdns changed).
    install_missing(&image::IMAGE_PACKAGES)?;
    let archive = image::image()?;
    // Test threads as many as cores: every privileged test makes its own
    // namespaces, pin directory and addresses, and the ones that measure
    // time, losses or the whole process take hsdns-test-support's
    // `serial::exclusive()` guard and run alone in their binary.
    let mut c = cargo();
    c.args(["test", "--workspace"]).env("HSDNS_IMAGE", &archive);
    eprintln!("xtask: running every test");
    // Stream cargo's output and add up its per-binary results, so the run
    // closes with one total line rather than the last binary's (often a
    // doc-test binary with nothing in it).
    c.stdout(std::process::Stdio::piped());
    let mut child = c.spawn().context("running cargo test")?;
    let out = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let num = |what: &str| {
                rest.split(';')
                    .find_map(|p| {
                        let n = p.trim().strip_suffix(what)?.trim();
                        n.rsplit(' ').next()?.parse::<u64>().ok()
                    })
                    .unwrap_or(0)
            };
            passed += num("passed");
            failed += num("failed");
            ignored += num("ignored");
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}
