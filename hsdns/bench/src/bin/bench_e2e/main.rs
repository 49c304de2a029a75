//! End-to-end load in network namespaces: dnsperf in a pod namespace,
//! hsdns on the node, an upstream stub behind the node for external names.
//!
//! Zone: 1,000 headless services x 3 StatefulSet pods, 10,000 ClusterIP
//! services, 50 headless services of 20 endpoints and 10 of 100. Mixes: (a)
//! pod-hostname hits only; (b) hits, multi-address hits, ndots:5
//! search-list misses (NXDOMAIN) and 10% external names; (c) services of
//! 1, 3, 20 and 100 endpoints (40/30/20/10%; 100 addresses fit no UDP
//! reply: TC=1).
//! Servers: the floor of each hook (a bare reflector: swap addresses and
//! ports, set QR, send back), hsdns on each hook (tc, the default on veths,
//! and generic XDP), hsdns's userspace server alone, Knot DNS over AF_XDP
//! and over sockets, and Unbound.
//!
//! Cores (2 here): dnsperf on CPU 1; the server processes on CPU 0; RPS on
//! the node-side veth moves its receive processing, generic XDP included,
//! to CPU 0 (without it, it runs in the softirq of the sending CPU, the
//! client's). One comparison row runs the kernel path without RPS. Each
//! row records per-CPU softirq time, NET_RX counts and XDP runs.
//!
//! Per (server, mix): a saturating run (QPS, average and maximum latency,
//! lost queries) and a fixed-rate run whose per-response latencies give
//! p50/p99. Every run is bounded (`-l` seconds, a watchdog) and cleans up. Run as root: `cargo run --release -p hsdns-bench --bin bench_e2e
//! [seconds]`; prints one JSON object per (server, mix).

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hsdns_test_support::kernel_cases::Hook;
use hsdns_test_support::netns::*;

const HEADLESS: usize = 1000;
const CLUSTER_IP: usize = 10_000;
/// Wide headless services (no hostnames): (count, endpoints each).
const WIDE: [(usize, usize); 2] = [(50, 20), (10, 100)];

/// Index of endpoint `e` of wide service `s` of size `n` (addresses apart
/// from the others').
fn wide_ip(n: usize, s: usize, e: usize) -> String {
    ip(20_000 + n * 1000 + s * n + e)
}

fn ip(i: usize) -> String {
    format!("169.254.{}.{}", 100 + (i / 250) % 100, 1 + i % 250)
}

fn zone() -> PathBuf {
    let mut y = String::new();
    for s in 0..HEADLESS {
        let ns = format!("ns{}", s % 100);
        writeln!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: sts{s}, namespace: {ns}}}\n\
             spec: {{clusterIP: None, clusterIPs: [None]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: sts{s}-x, namespace: {ns}, labels: {{kubernetes.io/service-name: sts{s}}}}}\n\
             addressType: IPv4\nendpoints:"
        )
        .unwrap();
        for p in 0..3 {
            writeln!(
                y,
                "  - addresses: [\"{}\"]\n    hostname: web-{p}\n    conditions: {{ready: true}}",
                ip(s * 3 + p)
            )
            .unwrap();
        }
    }
    for s in 0..CLUSTER_IP {
        let ns = format!("ns{}", s % 100);
        writeln!(
            y,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: svc{s}, namespace: {ns}}}\n\
             spec: {{clusterIP: \"{}\", clusterIPs: [\"{}\"]}}",
            ip(5000 + s),
            ip(5000 + s)
        )
        .unwrap();
    }
    for (count, n) in WIDE {
        for s in 0..count {
            let ns = format!("ns{}", s % 100);
            writeln!(
                y,
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: w{n}x{s}, namespace: {ns}}}\n\
                 spec: {{clusterIP: None, clusterIPs: [None]}}\n---\n\
                 apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {{name: w{n}x{s}-x, namespace: {ns}, labels: {{kubernetes.io/service-name: w{n}x{s}}}}}\n\
                 addressType: IPv4\nendpoints:"
            )
            .unwrap();
            for e in 0..n {
                writeln!(
                    y,
                    "  - addresses: [\"{}\"]\n    conditions: {{ready: true}}",
                    wide_ip(n, s, e)
                )
                .unwrap();
            }
        }
    }
    let path = std::env::temp_dir().join(format!("hsdns-bench-zone-{}.yaml", std::process::id()));
    std::fs::write(&path, y).unwrap();
    path
}

/// The zone's A records, as (owner, address), for the other servers.
fn records() -> Vec<(String, String)> {
    let mut r = Vec::new();
    for s in 0..HEADLESS {
        let ns = s % 100;
        for p in 0..3 {
            r.push((
                format!("web-{p}.sts{s}.ns{ns}.svc.cluster.local."),
                ip(s * 3 + p),
            ));
            r.push((format!("sts{s}.ns{ns}.svc.cluster.local."), ip(s * 3 + p)));
        }
    }
    for s in 0..CLUSTER_IP {
        r.push((
            format!("svc{s}.ns{}.svc.cluster.local.", s % 100),
            ip(5000 + s),
        ));
    }
    for (count, n) in WIDE {
        for s in 0..count {
            for e in 0..n {
                r.push((
                    format!("w{n}x{s}.ns{}.svc.cluster.local.", s % 100),
                    wide_ip(n, s, e),
                ));
            }
        }
    }
    r
}

/// Knot DNS: authoritative for cluster.local (external names are REFUSED);
/// with `xdp`, answering UDP over AF_XDP on that interface (its own XDP
/// program hands the packets to knotd's AF_XDP sockets).
fn knot(dir: &std::path::Path, xdp: Option<&str>) -> Command {
    let mut zone = String::from(
        "$ORIGIN cluster.local.\n$TTL 5\n@ IN SOA ns.dns hostmaster 1 7200 1800 86400 5\n@ IN NS ns.dns\nns.dns IN A 169.254.20.10\n",
    );
    for (n, a) in records() {
        writeln!(zone, "{n} IN A {a}").unwrap();
    }
    std::fs::write(dir.join("cluster.local.zone"), zone).unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("knot.conf"),
        format!(
            "server:\n  listen: 169.254.20.10@53\n  rundir: {d}\n  background-workers: 1\n\
             database:\n  storage: {d}\n\
             template:\n  - id: default\n    storage: {d}\n    semantic-checks: off\n\
             zone:\n  - domain: cluster.local\n    file: {d}/cluster.local.zone\n{}",
            xdp.map(|i| format!("xdp:\n  listen: {i}@53\n  udp: on\n  route-check: off\n"))
                .unwrap_or_default()
        ),
    )
    .unwrap();
    let mut c = Command::new("knotd");
    c.arg("-c").arg(dir.join("knot.conf"));
    c
}

/// Unbound: cluster.local as a static local zone, example.test forwarded
/// to the upstream stub; everything else refused (no recursion anywhere).
fn unbound(dir: &std::path::Path) -> Command {
    let mut conf = String::from(
        "server:\n  interface: 169.254.20.10\n  port: 53\n  access-control: 0.0.0.0/0 allow\n\
         do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n  pidfile: \"\"\n  num-threads: 1\n\
         use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n\
         local-zone: \".\" refuse\n  local-zone: \"example.test.\" transparent\n\
         local-zone: \"cluster.local.\" static\n",
    );
    for (n, a) in records() {
        writeln!(conf, "  local-data: \"{n} 5 IN A {a}\"").unwrap();
    }
    conf.push_str("forward-zone:\n  name: \"example.test.\"\n  forward-addr: 169.254.30.53\n");
    std::fs::write(dir.join("unbound.conf"), conf).unwrap();
    let mut c = Command::new("unbound");
    c.arg("-c").arg(dir.join("unbound.conf")).arg("-d");
    c
}

/// dnsperf input files for the two mixes.
fn mixes() -> Vec<(&'static str, PathBuf)> {
    let mut a = String::new();
    for s in 0..HEADLESS {
        for p in 0..3 {
            writeln!(a, "web-{p}.sts{s}.ns{}.svc.cluster.local A", s % 100).unwrap();
        }
    }
    let mut b = String::new();
    for i in 0..3000 {
        let s = i % HEADLESS;
        let ns = s % 100;
        match i % 10 {
            // 40% pod hits, 20% headless (3 addresses) and ClusterIP hits.
            0..=3 => writeln!(b, "web-{}.sts{s}.ns{ns}.svc.cluster.local A", i % 3),
            4 => writeln!(b, "sts{s}.ns{ns}.svc.cluster.local A"),
            5 => writeln!(
                b,
                "svc{}.ns{}.svc.cluster.local A",
                i % CLUSTER_IP,
                (i % CLUSTER_IP) % 100
            ),
            // 30%: what an ndots:5 client in namespace ns<n> sends first for
            // `web-0.sts<s>.ns<n>`: provable misses.
            6 => writeln!(b, "web-0.sts{s}.ns{ns}.ns{ns}.svc.cluster.local A"),
            7 => writeln!(
                b,
                "web-0.sts{s}.ns{ns}.svc.cluster.local.svc.cluster.local A"
            ),
            8 => writeln!(b, "web-0.sts{s}.ns{ns}.cluster.local A"),
            // 10% external.
            _ => writeln!(b, "ext{}.example.test A", i % 50),
        }
        .unwrap();
    }
    // Services by endpoint count: 40% one (ClusterIP), 30% three, 20%
    // twenty, 10% a hundred (TC=1: no UDP reply holds them).
    let mut c = String::new();
    for i in 0..3000 {
        let ns = |s: usize| s % 100;
        match i % 10 {
            0..=3 => {
                let s = (i * 7) % CLUSTER_IP;
                writeln!(c, "svc{s}.ns{}.svc.cluster.local A", ns(s))
            }
            4..=6 => {
                let s = (i * 7) % HEADLESS;
                writeln!(c, "sts{s}.ns{}.svc.cluster.local A", ns(s))
            }
            7 | 8 => {
                let s = i % WIDE[0].0;
                writeln!(c, "w20x{s}.ns{}.svc.cluster.local A", ns(s))
            }
            _ => {
                let s = i % WIDE[1].0;
                writeln!(c, "w100x{s}.ns{}.svc.cluster.local A", ns(s))
            }
        }
        .unwrap();
    }
    let dir = std::env::temp_dir();
    let pa = dir.join(format!("hsdns-bench-a-{}", std::process::id()));
    let pb = dir.join(format!("hsdns-bench-b-{}", std::process::id()));
    let pc = dir.join(format!("hsdns-bench-c-{}", std::process::id()));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    std::fs::write(&pc, c).unwrap();
    vec![
        ("a: pod-hostname hits", pa),
        ("b: realistic mix", pb),
        ("c: 1/3/20/100 endpoints", pc),
    ]
}

/// What answers the queries.
#[derive(Clone, Copy)]
enum Server {
    /// `hsdns run` with these arguments.
    Hsdns(&'static [&'static str]),
    /// The bare reflector of a hook (hsdns-ebpf's floor programs).
    Floor(Hook),
    Knot {
        xdp: bool,
    },
    Unbound,
}

/// A bare reflector attached to the node side of a pod veth for as long
/// as this lives: a thread in the node namespace holds the loaded object.
struct Floor {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Floor {
    fn attach(node: &Netns, dev: &str, hook: Hook) -> Self {
        use aya::programs::{SchedClassifier, Xdp, XdpMode};
        let (path, dev) = (node.path(), dev.to_string());
        let (stop, wait) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::spawn(move || {
            enter(&path);
            let attach = || -> anyhow::Result<aya::Ebpf> {
                let mut ebpf = aya::EbpfLoader::new().load(hsdns::loader::object())?;
                match hook {
                    Hook::Tc => {
                        let p: &mut SchedClassifier = ebpf
                            .program_mut(hsdns_common::PROGRAM_FLOOR_TC)
                            .expect("floor")
                            .try_into()?;
                        p.load()?;
                        hsdns::hook::attach_tc(p, &dev)?;
                    }
                    Hook::Xdp => {
                        let p: &mut Xdp = ebpf
                            .program_mut(hsdns_common::PROGRAM_FLOOR_XDP)
                            .expect("floor")
                            .try_into()?;
                        p.load()?;
                        p.attach(&dev, XdpMode::Skb)?;
                    }
                }
                Ok(ebpf)
            };
            match attach() {
                Ok(ebpf) => {
                    let _ = ready_tx.send(Ok(()));
                    let _ = wait.recv();
                    drop(ebpf);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                }
            }
        });
        ready
            .recv()
            .expect("floor thread")
            .unwrap_or_else(|e| panic!("attaching the floor: {e}"));
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The load generator always runs on CPU 1. Where the node's receive
/// processing runs is the question: generic (skb-mode) XDP on a veth runs
/// where the node-side veth receives, and without RPS that is the softirq
/// of the sending CPU, dnsperf's own.
#[derive(Clone, Copy, PartialEq)]
enum Cores {
    /// RPS on the node-side veth steers its receive processing (generic XDP
    /// included) to CPU 0; the server processes are pinned to CPU 0 too.
    Split,
    /// No RPS: the node-side veth receives in the softirq of CPU 1, beside
    /// the client (how this benchmark ran before). Server on CPU 0.
    Shared,
}

impl Cores {
    fn label(self) -> &'static str {
        match self {
            Cores::Split => "client CPU 1; veth RX (RPS) and server CPU 0",
            Cores::Shared => "client and veth RX CPU 1 (no RPS); server CPU 0",
        }
    }
}

const CLIENT_CPU: &str = "1";
/// The fixed-rate run for latency percentiles: below every server's
/// saturation, so the figures are the path's and the server's, not the
/// queue a saturating closed-loop client builds (and dnsperf's `-v`
/// printing, 1 line per response, stays a small load on the client).
const LATENCY_QPS: u32 = 20_000;
const LATENCY_SECS: u64 = 3;
/// CPU seconds other processes may use during a saturating run before it
/// is measured again.
const MAX_FOREIGN_S: f64 = 0.3;
const SERVER_CPU: &str = "0";

/// Pins every thread of a process (and the threads it starts later) to a
/// CPU, and checks that each one now allows only that CPU.
fn pin(pid: u32, cpu: &str) {
    let st = Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("taskset");
    assert!(st.success(), "taskset -a -p -c {cpu} {pid}");
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("threads")
        .flatten()
    {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim();
        assert_eq!(
            allowed,
            cpu,
            "thread {:?} of {pid} not pinned",
            t.file_name()
        );
    }
}

/// Pins the calling thread (and so every thread and child started after
/// it) to the client's CPU: the harness, the upstream stub and the parser
/// of dnsperf's output stay off the server's core.
fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; after the ')' they are 12 and 13.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Per-CPU counters at one moment.
#[derive(Default)]
struct Snap {
    /// (non-idle ticks, softirq ticks) per CPU, from /proc/stat.
    cpu: Vec<(u64, u64)>,
    /// NET_RX softirq invocations per CPU, from /proc/softirqs.
    net_rx: Vec<u64>,
    /// XDP program runs per CPU (every verdict counter), from the pinned
    /// per-CPU counters map; empty when XDP is not attached.
    xdp: Vec<u64>,
    server: u64,
    /// CPU ticks of every process that is neither this benchmark (with
    /// the children it reaped), nor the server, nor ksoftirqd, by pid.
    foreign: std::collections::HashMap<u32, u64>,
}

fn snap(pid: u32, counters: Option<&std::path::Path>) -> Snap {
    let cpu = ticks_per_cpu();
    let net_rx = std::fs::read_to_string("/proc/softirqs")
        .unwrap_or_default()
        .lines()
        .find(|l| l.trim_start().starts_with("NET_RX:"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let xdp = counters.map(xdp_runs_per_cpu).unwrap_or_default();
    Snap {
        cpu,
        net_rx,
        xdp,
        server: cpu_ticks(pid),
        foreign: foreign_ticks(pid),
    }
}

/// utime + stime + cutime + cstime of every other process (children that
/// exit are folded into their parent's cutime/cstime, so a build's short
/// compiler processes still show). Another job on this shared machine
/// makes the figures meaningless; this is how a run notices it.
fn foreign_ticks(server: u32) -> std::collections::HashMap<u32, u64> {
    let me = std::process::id();
    let mut m = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || pid == server {
            continue;
        }
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if st.contains("(ksoftirqd/") {
            continue;
        }
        let f: Vec<u64> = st
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|v| v.parse().ok())
            .collect();
        m.insert(pid, f.iter().sum());
    }
    m
}

/// Foreign CPU seconds between two snapshots (a process new in the second
/// counts in full), and the command names of the largest users.
fn foreign_s(a: &Snap, b: &Snap, hz: f64) -> (f64, String) {
    let mut d: Vec<(u64, u32)> = b
        .foreign
        .iter()
        .map(|(pid, t)| (t.saturating_sub(*a.foreign.get(pid).unwrap_or(&0)), *pid))
        .filter(|(t, _)| *t > 0)
        .collect();
    d.sort_unstable_by(|x, y| y.cmp(x));
    let who = d
        .iter()
        .take(3)
        .map(|(t, pid)| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{} (pid {pid}) {:.2} s", comm.trim(), *t as f64 / hz)
        })
        .collect::<Vec<_>>()
        .join(", ");
    (d.iter().map(|x| x.0).sum::<u64>() as f64 / hz, who)
}

/// Sum of every verdict counter (one per program run) for each CPU.
fn xdp_runs_per_cpu(pinned: &std::path::Path) -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(pinned)
        .output()
        .expect("bpftool");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut per_cpu = Vec::new();
    for entry in v.as_array().into_iter().flatten() {
        let entry = entry.get("formatted").unwrap_or(entry);
        for c in entry["values"].as_array().into_iter().flatten() {
            let i = c["cpu"].as_u64().unwrap_or(0) as usize;
            if per_cpu.len() <= i {
                per_cpu.resize(i + 1, 0);
            }
            per_cpu[i] += c["value"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, n)| n.as_u64().unwrap_or(0))
                .sum::<u64>();
        }
    }
    per_cpu
}

/// What one dnsperf run measured.
struct Perf {
    qps: f64,
    avg_s: f64,
    max_s: f64,
    p99_s: f64,
    p50_s: f64,
    sent: u64,
    lost: u64,
}

fn field(out: &str, key: &str) -> String {
    out.lines()
        .find(|l| l.trim_start().starts_with(key))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

/// Runs dnsperf pinned to the client CPU. Without `rate` it sends as fast
/// as it can (at most 200 queries outstanding) and its own statistics give
/// QPS, average and maximum latency and lost queries. With `rate` it sends
/// at that fixed rate with `-v`, which prints one line per response with its
/// latency (`> NOERROR name A 0.000123`); the lines are read as they come
/// into a 1 µs histogram (nothing is kept per query) for the percentiles.
/// Lost queries have no line and no latency: they are counted apart.
fn dnsperf(ns: &Netns, file: &std::path::Path, secs: u64, rate: Option<u32>) -> Perf {
    use std::io::BufRead as _;
    let mut c = ns.cmd("taskset");
    c.args(["-c", CLIENT_CPU, "dnsperf", "-s", "169.254.20.10", "-d"])
        .arg(file)
        .args([
            "-l",
            &secs.to_string(),
            "-c",
            "4",
            "-q",
            "200",
            "-t",
            "2",
            "-e",
        ])
        .args(
            rate.map(|r| ["-Q".to_string(), r.to_string(), "-v".into()])
                .into_iter()
                .flatten(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut g = Guarded::spawn(c);
    // Bounded: dnsperf stops itself after -l seconds plus the -t timeout;
    // if it does not, it is killed and the run fails.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = g.pid() as libc::pid_t;
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(secs + 30);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if Instant::now() > deadline {
                    // SAFETY: our own child, not yet reaped (we reap it
                    // only after setting `done`).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    const MAX_US: usize = 1_000_000;
    let mut hist = vec![0u64; MAX_US + 1];
    let mut n = 0u64;
    let mut text = String::new();
    let out = g.child.stdout.take().expect("dnsperf stdout");
    for line in std::io::BufReader::with_capacity(1 << 20, out).lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix("> ") {
            if let Some(s) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                hist[((s * 1e6).round() as usize).min(MAX_US)] += 1;
                n += 1;
            }
            continue;
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = g.child.wait().expect("waiting for dnsperf");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watchdog.join();
    assert!(status.success(), "dnsperf failed ({status}):\n{text}");
    let pct = |p: f64| -> f64 {
        let want = ((n as f64) * p).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (us, k) in hist.iter().enumerate() {
            acc += k;
            if acc >= want {
                return us as f64 / 1e6;
            }
        }
        f64::NAN
    };
    let num = |key: &str| -> f64 {
        field(&text, key)
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let lat = field(&text, "Average Latency (s)");
    let max_s = lat
        .split("max ")
        .nth(1)
        .and_then(|v| v.trim_end_matches(')').parse().ok())
        .unwrap_or(f64::NAN);
    let p = Perf {
        qps: num("Queries per second"),
        avg_s: num("Average Latency (s)"),
        max_s,
        p99_s: pct(0.99),
        p50_s: pct(0.50),
        sent: num("Queries sent") as u64,
        lost: num("Queries lost") as u64,
    };
    assert!(p.qps.is_finite(), "dnsperf printed no statistics:\n{text}");
    p
}

fn main() {
    pin_self(CLIENT_CPU.parse().unwrap());
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    run_cleaning_up(|| run(secs));
}

fn run(secs: u64) {
    let bin = release_daemon_bin();
    let zone = zone();
    let mixes = mixes();
    let hz = 100.0; // USER_HZ
    let work = std::env::temp_dir().join(format!("hsdns-bench-peers-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let only = std::env::var("HSDNS_BENCH_ONLY").unwrap_or_default();
    let servers: Vec<(&str, Server)> = vec![
        (
            "floor, tc: bare reflector (bpf_redirect_peer)",
            Server::Floor(Hook::Tc),
        ),
        (
            "hsdns, tc (kernel path)",
            Server::Hsdns(&["--exclude", "hsup*", "--attach-mode", "tc"]),
        ),
        (
            "floor, XDP skb: bare reflector (XDP_TX)",
            Server::Floor(Hook::Xdp),
        ),
        (
            "hsdns, XDP skb (kernel path)",
            Server::Hsdns(&["--exclude", "hsup*", "--attach-mode", "skb"]),
        ),
        (
            "hsdns, userspace server alone",
            Server::Hsdns(&["--userspace-only"]),
        ),
        (
            "Knot DNS 3.2 over AF_XDP (authoritative; external names REFUSED)",
            Server::Knot { xdp: true },
        ),
        (
            "Knot DNS 3.2 (authoritative; external names REFUSED)",
            Server::Knot { xdp: false },
        ),
        (
            "Unbound 1.17 (local zone, external forwarded)",
            Server::Unbound,
        ),
    ];
    for (server, kind) in servers {
        if !server.contains(only.as_str()) {
            continue;
        }
        let topo = Topology::new(1);
        let up = topo.add_upstream();
        let names: Vec<(String, Ipv4Addr)> = (0..50)
            .map(|i| {
                (
                    format!("ext{i}.example.test"),
                    Ipv4Addr::new(169, 254, 99, i as u8),
                )
            })
            .collect();
        let refs: Vec<(&str, Ipv4Addr)> = names.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        let _stub = Stub::start(
            &up,
            &[SocketAddr::new(Ipv4Addr::new(169, 254, 30, 53).into(), 53)],
            &refs,
        );
        let dev = topo.pods[0].host_if.clone();
        let (pid, counters, _guard): (u32, Option<PathBuf>, Box<dyn std::any::Any>) = match kind {
            Server::Hsdns(extra) => {
                let mut args = vec![
                    "--manifests",
                    zone.to_str().unwrap(),
                    "--dns-addr",
                    "169.254.20.10",
                    "--upstream",
                    "169.254.30.53",
                    // One client address sends everything here: the
                    // userspace server's per-client budget (a defence
                    // against one pod, 2,000/s by default) would drop most
                    // of it.
                    "--client-qps",
                    "0",
                ];
                args.extend_from_slice(extra);
                let d = Daemon::start(&bin, &topo.node, &args);
                pin(d.proc.pid(), SERVER_CPU);
                let counters =
                    (!extra.contains(&"--userspace-only")).then(|| d.pin_dir.join("counters"));
                (d.proc.pid(), counters, Box::new(d))
            }
            Server::Floor(hook) => {
                // No server process: the reflector is all there is.
                let f = Floor::attach(&topo.node, &dev, hook);
                (std::process::id(), None, Box::new(f))
            }
            Server::Knot { .. } | Server::Unbound => {
                let which = match kind {
                    Server::Knot { xdp } => knot(&work, xdp.then_some(dev.as_str())),
                    _ => unbound(&work),
                };
                let mut c = topo.node.cmd("taskset");
                c.args(["-c", SERVER_CPU])
                    .arg(which.get_program())
                    .args(which.get_args())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let g = Guarded::spawn(c);
                let pid = g.pid();
                let probe = "web-0.sts0.ns0.svc.cluster.local";
                wait_for(server, Duration::from_secs(60), || {
                    !dig(
                        &topo.pods[0].ns,
                        NODE_LOCAL4.into(),
                        probe,
                        "A",
                        &["+time=1"],
                    )
                    .addresses()
                    .is_empty()
                });
                // Knot pins its UDP workers one per CPU itself: pin
                // every thread again once it is up.
                pin(pid, SERVER_CPU);
                if matches!(kind, Server::Knot { xdp: true }) {
                    // Knot answers over sockets too: make sure this row
                    // is AF_XDP (its XDP program on the veth).
                    let out = Command::new("ip")
                        .args(["-n", &topo.node.name, "-d", "link", "show", "dev", &dev])
                        .output()
                        .expect("ip link");
                    let text = String::from_utf8_lossy(&out.stdout);
                    assert!(
                        text.contains("prog/xdp"),
                        "knotd attached no XDP program to {dev}:\n{text}"
                    );
                }
                (pid, None, Box::new(g))
            }
        };
        // The floor's "server" is this process (pinned to the client's
        // CPU): its CPU time is not a server's.
        let floor = matches!(kind, Server::Floor(_));
        let mut runs: Vec<(&str, &PathBuf, Cores)> =
            mixes.iter().map(|(m, f)| (*m, f, Cores::Split)).collect();
        if server.starts_with("hsdns, XDP") {
            // The comparison row: generic XDP with its softirq work on the
            // client's core, as without RPS.
            runs.push((mixes[0].0, &mixes[0].1, Cores::Shared));
        }
        if floor {
            // A reflector answers every query alike: one mix is enough.
            runs.truncate(1);
        }
        for (mix, file, cores) in runs {
            set_rps(
                &topo.node,
                &dev,
                if cores == Cores::Split { "1" } else { "0" },
            );
            // Measured again (up to twice) when another job took CPU time.
            let mut attempt = 0;
            let (s0, s1, p, wall, foreign) = loop {
                attempt += 1;
                let (s0, t0) = (snap(pid, counters.as_deref()), Instant::now());
                let p = dnsperf(&topo.pods[0].ns, file, secs, None);
                let wall = t0.elapsed().as_secs_f64();
                let s1 = snap(pid, counters.as_deref());
                let (foreign, who) = foreign_s(&s0, &s1, hz);
                if foreign <= MAX_FOREIGN_S || attempt == 3 {
                    break (s0, s1, p, wall, foreign);
                }
                eprintln!(
                    "bench_e2e: {server}, {mix}: other processes used {foreign:.2} CPU s \
                     during the run ({who}); measuring again"
                );
                std::thread::sleep(Duration::from_secs(5));
            };
            let l = dnsperf(&topo.pods[0].ns, file, LATENCY_SECS, Some(LATENCY_QPS));
            let d = |a: &[u64], b: &[u64], i: usize| {
                b.get(i)
                    .unwrap_or(&0)
                    .saturating_sub(*a.get(i).unwrap_or(&0))
            };
            let busy = |i: usize| {
                let a: Vec<u64> = s0.cpu.iter().map(|c| c.0).collect();
                let b: Vec<u64> = s1.cpu.iter().map(|c| c.0).collect();
                d(&a, &b, i) as f64 / hz
            };
            let soft = |i: usize| {
                let a: Vec<u64> = s0.cpu.iter().map(|c| c.1).collect();
                let b: Vec<u64> = s1.cpu.iter().map(|c| c.1).collect();
                d(&a, &b, i) as f64 / hz
            };
            let xdp = |i: usize| -> String {
                if counters.is_some() {
                    d(&s0.xdp, &s1.xdp, i).to_string()
                } else {
                    "null".into()
                }
            };
            println!(
                "{{\"server\":\"{server}\",\"mix\":\"{mix}\",\"cores\":\"{}\",\"seconds\":{secs},\
                 \"qps\":{:.0},\"latency_avg_ms\":{:.3},\"latency_max_ms\":{:.3},\
                 \"sent\":{},\"lost\":{},\"fixed_rate_qps\":{LATENCY_QPS},\
                 \"fixed_rate_achieved_qps\":{:.0},\"fixed_rate_avg_ms\":{:.3},\
                 \"latency_p50_ms\":{:.3},\"latency_p99_ms\":{:.3},\
                 \"fixed_rate_max_ms\":{:.3},\"fixed_rate_lost\":{},\
                 \"server_cpu_s\":{:.2},\"softirq_cpu_s\":{:.2},\
                 \"busy_cpu0_s\":{:.2},\"busy_cpu1_s\":{:.2},\
                 \"softirq_cpu0_s\":{:.2},\"softirq_cpu1_s\":{:.2},\
                 \"net_rx_cpu0\":{},\"net_rx_cpu1\":{},\"xdp_runs_cpu0\":{},\"xdp_runs_cpu1\":{},\
                 \"cpu0_us_per_query\":{:.2},\"cpu_us_per_query\":{:.2},\
                 \"foreign_cpu_s\":{foreign:.2},\"attempts\":{attempt},\"wall_s\":{wall:.1}}}",
                cores.label(),
                p.qps,
                p.avg_s * 1e3,
                p.max_s * 1e3,
                p.sent,
                p.lost,
                l.qps,
                l.avg_s * 1e3,
                l.p50_s * 1e3,
                l.p99_s * 1e3,
                l.max_s * 1e3,
                l.lost,
                if floor {
                    0.0
                } else {
                    (s1.server - s0.server) as f64 / hz
                },
                soft(0) + soft(1),
                busy(0),
                busy(1),
                soft(0),
                soft(1),
                d(&s0.net_rx, &s1.net_rx, 0),
                d(&s0.net_rx, &s1.net_rx, 1),
                xdp(0),
                xdp(1),
                busy(0) / (p.qps * wall).max(1.0) * 1e6,
                (busy(0) + busy(1)) / (p.qps * wall).max(1.0) * 1e6,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_file(&zone);
    for (_, f) in mixes {
        let _ = std::fs::remove_file(f);
    }
}
