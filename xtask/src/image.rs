//! `cargo xtask image`: the OCI image, the static daemon binary and
//! nothing else, built with podman (storage driver vfs) into an OCI
//! archive.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::cmd::{cargo, output, run, target_dir};

/// The image build (and the image test, which unpacks the archive).
pub const IMAGE_PACKAGES: [(&str, &str); 2] = [
    ("podman", "builds the OCI image (cargo xtask image)"),
    (
        "buildah",
        "podman's image builder, used with the vfs storage driver",
    ),
];

/// The target the image's static binary is built for: the host's, named
/// explicitly so the static-linking flags apply to the binary only, not to
/// build scripts and proc macros (which cannot be static).
const IMAGE_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Where `cargo xtask image` writes the archive.
fn image_archive() -> PathBuf {
    target_dir().join("image/hsdns.oci.tar")
}

/// Builds the static binary and the image; returns the archive's path.
///
/// Static glibc (no musl target can be installed here): the daemon makes
/// no NSS look-ups (the in-cluster API address is an IP; the resolvers
/// come from resolv.conf, parsed by the daemon), so nothing it runs needs
/// a shared library at run time.
pub fn image() -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let mut c = cargo();
    c.args([
        "build",
        "--release",
        "-p",
        "hsdns",
        "--bin",
        "hsdns",
        "--target",
        IMAGE_TARGET,
    ])
    .env(
        format!(
            "CARGO_TARGET_{}_RUSTFLAGS",
            IMAGE_TARGET.to_uppercase().replace('-', "_")
        ),
        "-C target-feature=+crt-static",
    );
    run(c, "building the static daemon binary (release)")?;
    let bin = target_dir().join(IMAGE_TARGET).join("release/hsdns");
    let dir = target_dir().join("image");
    let ctx = dir.join("context");
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(&ctx)?;
    let staged = ctx.join("hsdns");
    std::fs::copy(&bin, &staged).with_context(|| format!("copying {}", bin.display()))?;
    // Symbols are for debugging the binary in target/, not for nodes.
    let mut c = Command::new("strip");
    c.arg(&staged);
    run(c, "stripping the image's binary")?;
    let commit = output(Command::new("git").args(["rev-parse", "HEAD"]))
        .unwrap_or_default()
        .trim()
        .to_string();
    std::fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM scratch\n\
             COPY hsdns /hsdns\n\
             LABEL org.opencontainers.image.title=hsdns \\\n      \
             org.opencontainers.image.version={version} \\\n      \
             org.opencontainers.image.revision={commit}\n\
             ENTRYPOINT [\"/hsdns\"]\n"
        ),
    )?;
    // A private store, removed afterwards: nothing left in the machine's
    // container storage, and no clash with other builds.
    let store = dir.join("store");
    let _ = std::fs::remove_dir_all(&store);
    let podman = || {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(store.join("root"))
            .arg("--runroot")
            .arg(store.join("run"))
            .args(["--storage-driver", "vfs"]);
        c
    };
    let tag = format!("localhost/hsdns:{version}");
    let mut c = podman();
    c.args(["build", "--format", "oci", "--pull=never", "-t", &tag])
        .arg("-f")
        .arg(ctx.join("Containerfile"))
        .arg(&ctx);
    run(c, "podman build (vfs)")?;
    let archive = image_archive();
    let _ = std::fs::remove_file(&archive);
    let mut c = podman();
    c.args(["save", "--format", "oci-archive", "-o"])
        .arg(&archive)
        .arg(&tag);
    run(c, "podman save (OCI archive)")?;
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(&store)
        .status();
    let _ = std::fs::remove_dir_all(&store);
    let size = std::fs::metadata(&archive)?.len();
    eprintln!(
        "xtask: image {tag} ({:.1} MiB) in {}",
        size as f64 / 1048576.0,
        archive.display()
    );
    Ok(archive)
}
