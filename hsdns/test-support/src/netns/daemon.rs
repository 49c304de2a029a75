//! The daemon as a child process in the node namespace, and its kernel
//! counters as an operator reads them (bpftool).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::Ordering,
    thread,
    time::{Duration, Instant},
};

use super::{Guarded, Netns, PinDir, SEED, SEQ};

/// The daemon, started in the node namespace; stopped on drop (and its
/// pins removed, when it made its own pin directory).
pub struct Daemon {
    pub proc: Guarded,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
    ready: PathBuf,
    /// Dropped after `proc`: the process is gone before its pins.
    own_pins: Option<PinDir>,
}

impl Daemon {
    /// Starts `hsdns run` with `args` (plus a private pin directory and a
    /// ready file) and waits until it says it is ready.
    pub fn start(bin: &Path, node: &Netns, args: &[&str]) -> Self {
        Self::start_with_env(bin, node, args, &[])
    }

    /// [`Daemon::start`] with environment variables for the daemon alone
    /// (settings as deploy/'s ConfigMap gives them). Never set in the test
    /// process: its other tests run beside it and spawn daemons too.
    pub fn start_with_env(bin: &Path, node: &Netns, args: &[&str], env: &[(&str, &str)]) -> Self {
        let pins = PinDir::new("d");
        let mut d = Self::spawn_with_env(bin, node, args, pins.path.clone(), env);
        d.own_pins = Some(pins);
        d.wait_ready(Duration::from_secs(60));
        d
    }

    pub fn start_with_pins(bin: &Path, node: &Netns, args: &[&str], pin_dir: PathBuf) -> Self {
        let mut d = Self::spawn(bin, node, args, pin_dir);
        d.wait_ready(Duration::from_secs(60));
        d
    }

    /// Starts the daemon without waiting for it to be ready.
    pub fn spawn(bin: &Path, node: &Netns, args: &[&str], pin_dir: PathBuf) -> Self {
        Self::spawn_with_env(bin, node, args, pin_dir, &[])
    }

    fn spawn_with_env(
        bin: &Path,
        node: &Netns,
        args: &[&str],
        pin_dir: PathBuf,
        env: &[(&str, &str)],
    ) -> Self {
        let tag = format!(
            "{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ready = std::env::temp_dir().join(format!("hsdns-ready-{tag}"));
        let log = std::env::temp_dir().join(format!("hsdns-log-{tag}"));
        let _ = fs::remove_file(&ready);
        let mut c = node.cmd(bin);
        // `hsdns run` needs a record source: the demo's seed unless the
        // caller names one.
        let has_source = args
            .iter()
            .any(|a| ["--manifests", "--kubeconfig", "--kube"].contains(a));
        c.arg("run").args(args).envs(env.iter().copied());
        if !has_source {
            c.arg("--manifests").arg(SEED);
        }
        c.arg("--pin-dir")
            .arg(&pin_dir)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("daemon log file"));
        let proc = Guarded::spawn(c);
        Self {
            proc,
            pin_dir,
            log,
            ready,
            own_pins: None,
        }
    }

    /// SIGTERM, and the exit status; the pins stay (the kernel goes on
    /// answering from them).
    pub fn stop(self) -> std::process::ExitStatus {
        self.proc.terminate()
    }

    /// SIGKILL, as a crash or the OOM killer would.
    pub fn kill(mut self) {
        // SAFETY: our own child.
        unsafe { libc::kill(self.proc.pid() as libc::pid_t, libc::SIGKILL) };
        let _ = self.proc.child.wait();
    }

    pub fn is_ready(&self) -> bool {
        self.ready.exists()
    }

    /// Waits for the ready file, failing with the daemon's log.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.is_ready() {
            if let Some(status) = self.proc.child.try_wait().expect("waiting") {
                panic!(
                    "hsdns exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "hsdns not ready within {timeout:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The kernel's counters, summed over CPUs, read from the pinned map
    /// with bpftool (as an operator would).
    pub fn counters(&self) -> BTreeMap<String, u64> {
        bpftool_counters(&self.pin_dir.join("counters"))
    }
}

/// Sums the per-CPU `counters` map dumped by bpftool as named JSON fields.
pub fn bpftool_counters(pinned: &Path) -> BTreeMap<String, u64> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(pinned)
        .output()
        .expect("running bpftool");
    assert!(
        out.status.success(),
        "bpftool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let mut sums = BTreeMap::new();
    for entry in v.as_array().into_iter().flatten() {
        // With -j, bpftool gives raw bytes and, where BTF allows, a
        // "formatted" view with named fields.
        let entry = entry.get("formatted").unwrap_or(entry);
        for cpu in entry["values"].as_array().into_iter().flatten() {
            for (k, n) in cpu["value"].as_object().into_iter().flatten() {
                *sums.entry(k.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
            }
        }
    }
    sums
}
