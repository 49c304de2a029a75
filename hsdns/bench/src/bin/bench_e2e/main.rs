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
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hsdns_test_support::kernel_cases::Hook;
use hsdns_test_support::netns::*;

mod cpu;
mod inputs;
mod perf;

use cpu::{foreign_s, pin, pin_self, snap};
use inputs::{knot, mixes, unbound, zone};
use perf::dnsperf;

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
