//! Network-namespace harness for the end-to-end tests and the demo: a node
//! namespace and pod namespaces joined by veth pairs (Calico style), an
//! upstream DNS stub, real clients (dig), and cleanup of namespaces and
//! processes even when a test panics or the demo is interrupted.
//!
//! Addresses: pods 169.254.10.(10+i) and fd00:10::(10+i), the node's side of
//! every veth 169.254.10.1 / fd00:10::1, the node-local DNS address
//! 169.254.20.10 / fd00:20::10. Nothing here sends traffic anywhere else.

use std::{
    fs,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

mod daemon;
mod dns;
mod host;
mod topology;

pub use daemon::{Daemon, bpftool_counters};
pub use dns::{Dig, Stub, dig};
pub use host::{set_rps, ticks_per_cpu};
pub use topology::{Pod, Topology};

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

pub(crate) static SEQ: AtomicUsize = AtomicUsize::new(0);

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
