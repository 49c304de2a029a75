//! The OCI image `cargo xtask image` builds (cargo xtask test builds it
//! first and names it in HSDNS_IMAGE): unpacked layer by layer as a
//! container runtime would, it holds the static daemon binary and nothing
//! else, and that binary, run from the unpacked root filesystem (chroot,
//! its own mount namespace with /proc, /sys and a fresh bpffs, as a
//! container gets them; containers themselves cannot run here), answers a
//! pod's query from the kernel in a network namespace.
//!
//! Needs root: run through `cargo xtask test`.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hsdns_test_support::netns::*;

fn archive() -> PathBuf {
    let path = std::env::var_os("HSDNS_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/image/hsdns.oci.tar"
            ))
        });
    assert!(
        path.exists(),
        "{} is missing: build the image with `cargo xtask image` (`cargo xtask test` does)",
        path.display()
    );
    path
}

fn tar(args: &[&str], dir: &Path) {
    let out = Command::new("tar")
        .args(args)
        .arg("-C")
        .arg(dir)
        .output()
        .expect("tar");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// Unpacks the archive's image into `rootfs`; returns its config.
fn unpack(archive: &Path, work: &Path, rootfs: &Path) -> serde_json::Value {
    let layout = work.join("layout");
    fs::create_dir_all(&layout).unwrap();
    fs::create_dir_all(rootfs).unwrap();
    tar(&["-xf", archive.to_str().unwrap()], &layout);
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap()
    };
    let index = read(layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "one image in the archive");
    let manifest = read(blob(&layout, manifests[0]["digest"].as_str().unwrap()));
    for layer in manifest["layers"].as_array().unwrap() {
        let path = blob(&layout, layer["digest"].as_str().unwrap());
        let gz = layer["mediaType"].as_str().unwrap().ends_with("+gzip");
        tar(
            &[if gz { "-xzf" } else { "-xf" }, path.to_str().unwrap()],
            rootfs,
        );
    }
    read(blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
}

/// Every file and directory under `dir`, relative.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let rel = p.strip_prefix(dir).unwrap().display().to_string();
        if p.is_dir() {
            out.extend(tree(&p).into_iter().map(|s| format!("{rel}/{s}")));
        }
        out.push(rel);
    }
    out.sort();
    out
}

/// A command that runs `args` as the image's entrypoint would, in
/// `rootfs`: its own mount namespace with /proc, /sys and a bpffs mounted
/// (what a container runtime and the DaemonSet's volume give it), then
/// chroot. `netns`: the network namespace to run in.
fn in_image(rootfs: &Path, netns: Option<&Netns>, args: &[&str]) -> Command {
    let r = rootfs.display();
    let script = format!(
        "set -e; mount -t proc proc {r}/proc; mount -t sysfs sysfs {r}/sys; \
         mkdir -p {r}/sys/fs/bpf; mount -t bpf bpf {r}/sys/fs/bpf; \
         exec chroot {r} /hsdns \"$@\""
    );
    let mut c = match netns {
        Some(ns) => ns.cmd("unshare"),
        None => Command::new("unshare"),
    };
    c.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "hsdns",
    ])
    .args(args);
    c
}

#[test]
fn the_image_holds_one_static_binary_that_answers_from_the_kernel() {
    require_root();
    let work = std::env::temp_dir().join(format!("hsdns-image-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let rootfs = work.join("rootfs");
    let config = unpack(&archive(), &work, &rootfs);

    // Nothing but the binary, and it is the entrypoint.
    assert_eq!(tree(&rootfs), ["hsdns"], "the image's files");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/hsdns"])
    );
    let file = Command::new("file").arg(rootfs.join("hsdns")).output();
    if let Ok(out) = file {
        let desc = String::from_utf8_lossy(&out.stdout);
        assert!(
            desc.contains("statically linked") || desc.contains("static-pie"),
            "{desc}"
        );
    }

    // Mount points a runtime would create, and the demo's records.
    for d in ["proc", "sys", "tmp"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy(SEED, rootfs.join("seed.yaml")).unwrap();

    // `hsdns --version` names the version and the commit built.
    let out = in_image(&rootfs, None, &["--version"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert!(
        version.starts_with(&format!("hsdns {}", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(
        version.contains(&format!("(git {head})")),
        "{version} (HEAD is {head}: rebuild the image)"
    );

    // The daemon from the image, in a node namespace with pod veths. No
    // upstream: only the kernel can answer.
    let topo = Topology::new(1);
    let log = work.join("daemon.log");
    let mut c = in_image(
        &rootfs,
        Some(&topo.node),
        &[
            "run",
            "--manifests",
            "/seed.yaml",
            "--dns-addr",
            "169.254.20.10",
            "--ready-file",
            "/tmp/ready",
        ],
    );
    c.stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap());
    let mut daemon = Guarded::spawn(c);
    let ready = rootfs.join("tmp/ready");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            panic!(
                "the image's daemon exited ({status}):\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "not ready:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let d = dig(
        &topo.pods[0].ns,
        NODE_LOCAL4.into(),
        "nginx-0.nginx-headless.test.svc.cluster.local",
        "A",
        &[],
    );
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.addresses(), vec![IpAddr::from(pod4(0))], "{}", d.raw);
    let status = daemon.terminate();
    assert!(
        status.success(),
        "clean exit: {status}\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    let _ = fs::remove_dir_all(&work);
}
