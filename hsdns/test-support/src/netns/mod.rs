//! Network-namespace harness for the end-to-end tests and the demo: a node
//! namespace and pod namespaces joined by veth pairs (Calico style), an
//! upstream DNS stub, real clients (dig), and cleanup of namespaces and
//! processes even when a test panics or the demo is interrupted.
//!
//! Addresses: pods 169.254.10.(10+i) and fd00:10::(10+i), the node's side of
//! every veth 169.254.10.1 / fd00:10::1, the node-local DNS address
//! 169.254.20.10 / fd00:20::10. Nothing here sends traffic anywhere else.

use std::{
    collections::BTreeMap,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{RData, Record, RecordType, rdata::A},
};

/// The demo's record source (`hsdns run` needs one).
pub const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/examples/seed.yaml"
);

pub const NODE_LOCAL4: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);
pub const NODE_LOCAL6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x10);
pub const GATEWAY4: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 1);
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 1);

pub fn pod4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(169, 254, 10, 10 + i as u8)
}

pub fn pod6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x10 + i as u16)
}

/// Fails with a clear message instead of skipping: these tests are real.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "this test loads BPF programs and creates network namespaces: run it as root \
             (cargo xtask test); it does not skip"
        );
    }
}

/// What to undo if the process is interrupted before the guards drop.
static REGISTRY: Mutex<Vec<Undo>> = Mutex::new(Vec::new());

#[derive(Clone, PartialEq)]
enum Undo {
    Netns(String),
    Pid(u32),
    Pins(PathBuf),
}

fn register(u: Undo) {
    REGISTRY.lock().unwrap().push(u);
}

fn unregister(u: &Undo) {
    REGISTRY.lock().unwrap().retain(|x| x != u);
}

/// Kills registered processes and deletes registered namespaces. Called
/// from guards' drops and from the interrupt handler.
pub fn undo_all() {
    let items: Vec<Undo> = std::mem::take(&mut *REGISTRY.lock().unwrap());
    for u in items.iter().rev() {
        match u {
            Undo::Pid(pid) => kill_pid(*pid),
            Undo::Netns(name) => {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
            Undo::Pins(dir) => unpin_tree(dir),
        }
    }
}

/// Runs an example's body with cleanup on interrupt, panic and return:
/// every namespace and process it registered is gone when it exits, and a
/// panic exits 1.
pub fn run_cleaning_up(body: impl FnOnce() + std::panic::UnwindSafe) {
    cleanup_on_interrupt();
    let result = std::panic::catch_unwind(body);
    undo_all();
    if result.is_err() {
        std::process::exit(1);
    }
}

/// The daemon beside the running binary: a benchmark's
/// (`target/release/bench_x` -> `target/release/hsdns`) or the demo's
/// (`target/release/examples/demo` -> `target/release/hsdns`), else the
/// release build from the workspace root.
pub fn release_daemon_bin() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(Path::parent);
    [dir, dir.and_then(Path::parent)]
        .into_iter()
        .flatten()
        .map(|d| d.join("hsdns"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("target/release/hsdns"))
}

/// On SIGINT/SIGTERM: clean up, then exit. For the demo (tests unwind).
pub fn cleanup_on_interrupt() {
    // SAFETY: blocking the signals in this (main) thread before any other
    // thread exists makes every later thread inherit the mask; one thread
    // then waits for them synchronously.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            eprintln!("\ninterrupted: cleaning up");
            undo_all();
            std::process::exit(130);
        });
    }
}

fn kill_pid(pid: u32) {
    let pid = pid as libc::pid_t;
    // SAFETY: signalling a child we started; waitpid reaps it.
    unsafe {
        if libc::kill(pid, libc::SIGTERM) != 0 {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut status = 0;
            let r = libc::waitpid(pid, &mut status, libc::WNOHANG);
            if r == pid || r < 0 {
                return;
            }
            if Instant::now() > deadline {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `ip` with arguments, panicking with the command on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A network namespace of this process; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Self {
        remove_stale();
        let name = format!(
            "hsdns-t{}-{}{}",
            std::process::id(),
            role,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        register(Undo::Netns(name.clone()));
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Self { name }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A command that runs inside the namespace. nsenter --net changes only
    /// the network namespace; `ip netns exec` would also remount /sys, and
    /// /sys/fs/bpf (where the daemon pins its maps) would vanish.
    pub fn cmd(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path())).arg("--").arg(prog);
        c
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        thread::spawn(move || {
            enter(&path);
            f()
        })
        .join()
        .expect("thread in namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        unregister(&Undo::Netns(self.name.clone()));
    }
}

/// Moves the calling thread into a network namespace.
pub fn enter(path: &str) {
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // SAFETY: setns on a valid namespace fd affects only this thread.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Removes every pin under `dir`, and the directory: a link goes with its
/// pin (the interface loses the program), a map or program with its last
/// reference. What `hsdns uninstall` does, for when the binary is not at
/// hand or a test failed half way.
pub fn unpin_tree(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
}

/// A private pin directory under /sys/fs/bpf for one or more daemons in a
/// row; everything pinned there is removed on drop. The daemon leaves its
/// pins on purpose when it stops (the kernel keeps answering), so without
/// this every test would leave its maps behind.
pub struct PinDir {
    pub path: PathBuf,
}

impl PinDir {
    pub fn new(role: &str) -> Self {
        remove_stale();
        let path = PathBuf::from(format!(
            "/sys/fs/bpf/hsdns-test-{}-{role}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        Self::at(path)
    }

    /// A given pin directory, removed on drop (and on Ctrl-C).
    pub fn at(path: PathBuf) -> Self {
        register(Undo::Pins(path.clone()));
        Self { path }
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        unpin_tree(&self.path);
        unregister(&Undo::Pins(self.path.clone()));
    }
}

/// Namespaces and pin directories left by runs that were killed: their pid
/// is gone.
fn remove_stale() {
    if let Ok(entries) = fs::read_dir("/sys/fs/bpf") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("hsdns-test-") else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
                unpin_tree(&e.path());
            }
        }
    }
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("hsdns-t") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A process killed (TERM, then KILL) and reaped on drop.
pub struct Guarded {
    pub child: Child,
}

impl Guarded {
    pub fn spawn(mut c: Command) -> Self {
        use std::os::unix::process::CommandExt as _;
        // SAFETY: only async-signal-safe calls between fork and exec. The
        // demo blocks SIGINT/SIGTERM in its own threads to handle them in
        // one place; children must not inherit that mask.
        unsafe {
            c.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGINT);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let child = c.spawn().unwrap_or_else(|e| panic!("spawning {c:?}: {e}"));
        register(Undo::Pid(child.id()));
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().expect("waiting") {
                unregister(&Undo::Pid(pid as u32));
                return s;
            }
            assert!(Instant::now() < deadline, "process {pid} ignored SIGTERM");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            kill_pid(self.child.id());
        }
        unregister(&Undo::Pid(self.child.id()));
    }
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A pod: a namespace with eth0 whose peer sits in the node namespace.
pub struct Pod {
    pub ns: Netns,
    pub index: usize,
    /// The veth end in the node namespace, where XDP runs.
    pub host_if: String,
}

impl Pod {
    pub fn v4(&self) -> Ipv4Addr {
        pod4(self.index)
    }
    pub fn v6(&self) -> Ipv6Addr {
        pod6(self.index)
    }
}

/// A node namespace with pods. The node-local DNS addresses are on the
/// node's loopback (the daemon uses a dummy interface where the kernel has
/// them; this one does not).
pub struct Topology {
    pub pods: Vec<Pod>,
    pub node: Netns,
}

impl Topology {
    pub fn new(pods: usize) -> Self {
        require_root();
        let node = Netns::new("node");
        ip(&[
            "-n",
            &node.name,
            "addr",
            "add",
            "169.254.20.10/32",
            "dev",
            "lo",
        ]);
        ip(&[
            "-n",
            &node.name,
            "addr",
            "add",
            "fd00:20::10/128",
            "dev",
            "lo",
            "nodad",
        ]);
        let mut t = Self {
            pods: Vec::new(),
            node,
        };
        for _ in 0..pods {
            t.add_pod();
        }
        t
    }

    /// Adds a pod (also after the daemon started).
    pub fn add_pod(&mut self) -> &Pod {
        let index = self.pods.len();
        let ns = Netns::new(&format!("pod{index}-"));
        let host_if = format!("hsv{index}");
        let n = self.node.name.clone();
        ip(&[
            "-n", &n, "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns",
            &ns.name,
        ]);
        ip(&["-n", &n, "addr", "add", "169.254.10.1/32", "dev", &host_if]);
        ip(&[
            "-n",
            &n,
            "addr",
            "add",
            "fd00:10::1/128",
            "dev",
            &host_if,
            "nodad",
        ]);
        ip(&["-n", &n, "link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &n,
            "route",
            "add",
            &format!("{}/32", pod4(index)),
            "dev",
            &host_if,
        ]);
        ip(&[
            "-n",
            &n,
            "-6",
            "route",
            "add",
            &format!("{}/128", pod6(index)),
            "dev",
            &host_if,
        ]);
        let p = ns.name.clone();
        ip(&[
            "-n",
            &p,
            "addr",
            "add",
            &format!("{}/32", pod4(index)),
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n",
            &p,
            "addr",
            "add",
            &format!("{}/128", pod6(index)),
            "dev",
            "eth0",
            "nodad",
        ]);
        ip(&["-n", &p, "link", "set", "eth0", "up"]);
        ip(&["-n", &p, "route", "add", "169.254.10.1", "dev", "eth0"]);
        ip(&[
            "-n",
            &p,
            "route",
            "add",
            "default",
            "via",
            "169.254.10.1",
            "dev",
            "eth0",
        ]);
        ip(&["-n", &p, "-6", "route", "add", "fd00:10::1", "dev", "eth0"]);
        ip(&[
            "-n",
            &p,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:10::1",
            "dev",
            "eth0",
        ]);
        self.pods.push(Pod { ns, index, host_if });
        self.pods.last().expect("just pushed")
    }
}

impl Topology {
    /// A further namespace behind the node (the upstream DNS server's
    /// host): `eth0` 169.254.30.53, reached from the node over veth `hsup0`.
    pub fn add_upstream(&self) -> Netns {
        let ns = Netns::new("up");
        let n = self.node.name.clone();
        ip(&[
            "-n", &n, "link", "add", "hsup0", "type", "veth", "peer", "name", "eth0", "netns",
            &ns.name,
        ]);
        ip(&["-n", &n, "addr", "add", "169.254.30.1/32", "dev", "hsup0"]);
        ip(&["-n", &n, "link", "set", "hsup0", "up"]);
        ip(&["-n", &n, "route", "add", "169.254.30.53/32", "dev", "hsup0"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            "169.254.30.53/32",
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns.name, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &ns.name,
            "route",
            "add",
            "169.254.30.1",
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n",
            &ns.name,
            "route",
            "add",
            "default",
            "via",
            "169.254.30.1",
            "dev",
            "eth0",
        ]);
        ns
    }
}

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

/// A plain upstream DNS server on a thread inside a namespace: answers A
/// queries for its names, NXDOMAIN otherwise, and records every query it
/// sees, so tests can tell which queries reached userspace.
pub struct Stub {
    pub seen: Arc<Mutex<Vec<(String, RecordType)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Stub {
    pub fn start(ns: &Netns, listen: &[SocketAddr], names: &[(&str, Ipv4Addr)]) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let fqdn = |n: &str| format!("{}.", n.trim_end_matches('.').to_lowercase());
        let names: Arc<Vec<(String, Ipv4Addr)>> =
            Arc::new(names.iter().map(|(n, a)| (fqdn(n), *a)).collect());
        let mut threads = Vec::new();
        for addr in listen {
            let (path, addr) = (ns.path(), *addr);
            let (seen, stop, names) = (seen.clone(), stop.clone(), names.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(thread::spawn(move || {
                enter(&path);
                let sock =
                    UdpSocket::bind(addr).unwrap_or_else(|e| panic!("stub bind {addr}: {e}"));
                sock.set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                tx.send(()).unwrap();
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(q) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let Some(query) = q.queries.first().cloned() else {
                        continue;
                    };
                    let qname = query.name().to_ascii().to_lowercase();
                    seen.lock()
                        .unwrap()
                        .push((qname.clone(), query.query_type()));
                    let mut r = Message::response(q.metadata.id, OpCode::Query);
                    r.metadata.message_type = MessageType::Response;
                    r.metadata.recursion_desired = q.metadata.recursion_desired;
                    r.metadata.recursion_available = true;
                    r.add_query(query.clone());
                    match names.iter().find(|(n, _)| *n == qname) {
                        Some((_, a)) if query.query_type() == RecordType::A => {
                            r.add_answer(Record::from_rdata(
                                query.name().clone(),
                                30,
                                RData::A(A(*a)),
                            ));
                        }
                        Some(_) => {}
                        None => r.metadata.response_code = ResponseCode::NXDomain,
                    }
                    let _ = sock.send_to(&r.to_vec().unwrap(), from);
                }
            }));
            rx.recv_timeout(Duration::from_secs(5))
                .expect("stub listening");
        }
        Self {
            seen,
            stop,
            threads,
        }
    }

    pub fn seen(&self) -> Vec<(String, RecordType)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What dig printed, parsed.
#[derive(Debug, Clone)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    /// (name, type, data) of the answer section, in order.
    pub answers: Vec<(String, String, String)>,
    pub raw: String,
}

impl Dig {
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.answers
            .iter()
            .filter_map(|(_, t, d)| (t == "A" || t == "AAAA").then(|| d.parse().ok()).flatten())
            .collect()
    }
}

/// Runs dig inside `ns` against `server` (one try, 2 s) and parses it.
pub fn dig(ns: &Netns, server: IpAddr, name: &str, qtype: &str, extra: &[&str]) -> Dig {
    let out = ns
        .cmd("dig")
        .args([&format!("@{server}"), name, qtype, "+tries=1", "+time=2"])
        .args(extra)
        .output()
        .expect("running dig (bind9-dnsutils)");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = raw
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("NO REPLY")
        .to_string();
    let flags = raw
        .split(";; flags: ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .map(|f| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in raw.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            in_answer = true;
            continue;
        }
        if in_answer {
            if line.trim().is_empty() || line.starts_with(";;") {
                in_answer = false;
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                answers.push((f[0].to_string(), f[3].to_string(), f[4..].join(" ")));
            }
        }
    }
    Dig {
        status,
        flags,
        answers,
        raw,
    }
}

/// Sets the RPS mask of the node-side veth's receive queue. `ip netns exec`
/// remounts /sys for the namespace, so /sys/class/net shows its devices.
pub fn set_rps(node: &Netns, dev: &str, mask: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", &node.name, "sh", "-c"])
        .arg(format!(
            "echo {mask} > /sys/class/net/{dev}/queues/rx-0/rps_cpus && \
             cat /sys/class/net/{dev}/queues/rx-0/rps_cpus"
        ))
        .output()
        .expect("ip netns exec");
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && u64::from_str_radix(got.trim(), 16).ok() == mask.parse().ok(),
        "setting rps_cpus of {dev} to {mask}: {got} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (non-idle, softirq) ticks per CPU, from /proc/stat (user nice system
/// idle iowait irq softirq steal; busy is all but idle and iowait).
pub fn ticks_per_cpu() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let busy =
                v.iter().take(8).sum::<u64>() - v.get(3).unwrap_or(&0) - v.get(4).unwrap_or(&0);
            (busy, v.get(6).copied().unwrap_or(0))
        })
        .collect()
}
