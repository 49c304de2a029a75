//! End-to-end load in network namespaces: dnsperf in a pod namespace,
//! hsdns on the node, an upstream stub behind the node for external names.
//!
//! Zone: 1,000 headless services x 3 StatefulSet pods and 10,000 ClusterIP
//! services. Mixes: (a) pod-hostname hits only; (b) hits, multi-address
//! hits, ndots:5 search-list misses (NXDOMAIN) and 10% external names.
//! Servers: hsdns with XDP (kernel path), and hsdns with XDP detached (its
//! userspace server alone). Every run is bounded (`-l` seconds) and cleans
//! up. Run as root: `cargo run --release -p hsdns --example bench_e2e
//! [seconds]`; prints one JSON object per (server, mix).

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::*;

const HEADLESS: usize = 1000;
const CLUSTER_IP: usize = 10_000;

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
    r
}

/// Knot DNS: authoritative for cluster.local (external names are REFUSED).
fn knot(dir: &std::path::Path) -> Command {
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
             zone:\n  - domain: cluster.local\n    file: {d}/cluster.local.zone\n"
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
    let dir = std::env::temp_dir();
    let pa = dir.join(format!("hsdns-bench-a-{}", std::process::id()));
    let pb = dir.join(format!("hsdns-bench-b-{}", std::process::id()));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    vec![("a: pod-hostname hits", pa), ("b: realistic mix", pb)]
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

fn softirq_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    s.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(7))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn field(out: &str, key: &str) -> String {
    out.lines()
        .find(|l| l.trim_start().starts_with(key))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

fn main() {
    cleanup_on_interrupt();
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let r = std::panic::catch_unwind(|| run(secs));
    undo_all();
    if r.is_err() {
        std::process::exit(1);
    }
}

fn run(secs: u64) {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("hsdns")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("target/release/hsdns"));
    let zone = zone();
    let mixes = mixes();
    let hz = 100.0; // USER_HZ
    let work = std::env::temp_dir().join(format!("hsdns-bench-peers-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let servers: Vec<(&str, Option<&[&str]>)> = vec![
        (
            "hsdns, XDP (kernel path)",
            Some(&["--exclude", "hsup*"][..]),
        ),
        (
            "hsdns, XDP detached (userspace server)",
            Some(&["--userspace-only"][..]),
        ),
        ("Knot DNS 3.2 (authoritative; external names REFUSED)", None),
        ("Unbound 1.17 (local zone, external forwarded)", None),
    ];
    for (server, hsdns_args) in servers {
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
        let (pid, _guard): (u32, Box<dyn std::any::Any>) = match hsdns_args {
            Some(extra) => {
                let mut args = vec![
                    "--manifests",
                    zone.to_str().unwrap(),
                    "--dns-addr",
                    "169.254.20.10",
                    "--upstream",
                    "169.254.30.53",
                ];
                args.extend_from_slice(extra);
                let d = Daemon::start(&bin, &topo.node, &args);
                (d.proc.pid(), Box::new(d))
            }
            None => {
                let which = if server.starts_with("Knot") {
                    knot(&work)
                } else {
                    unbound(&work)
                };
                let mut c = topo.node.cmd(which.get_program());
                c.args(which.get_args())
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
                (pid, Box::new(g))
            }
        };
        for (mix, file) in &mixes {
            let (c0, s0, t0) = (cpu_ticks(pid), softirq_ticks(), Instant::now());
            let out = topo.pods[0]
                .ns
                .cmd("taskset")
                .args(["-c", "1", "dnsperf", "-s", "169.254.20.10", "-d"])
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
                .output()
                .expect("dnsperf (Debian package dnsperf)");
            let wall = t0.elapsed().as_secs_f64();
            let (c1, s1) = (cpu_ticks(pid), softirq_ticks());
            let text = String::from_utf8_lossy(&out.stdout);
            let lost = field(&text, "Queries lost");
            let qps = field(&text, "Queries per second");
            let lat = field(&text, "Average Latency (s)");
            let max = lat
                .split("max ")
                .nth(1)
                .unwrap_or("")
                .trim_end_matches(')')
                .to_string();
            let avg = lat.split_whitespace().next().unwrap_or("").to_string();
            println!(
                "{{\"server\":\"{server}\",\"mix\":\"{mix}\",\"seconds\":{secs},\"qps\":\"{qps}\",\
                 \"latency_avg_s\":\"{avg}\",\"latency_max_s\":\"{max}\",\"lost\":\"{lost}\",\
                 \"daemon_cpu_s\":{:.2},\"softirq_cpu_s\":{:.2},\"wall_s\":{wall:.1}}}",
                (c1 - c0) as f64 / hz,
                (s1 - s0) as f64 / hz,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_file(&zone);
    for (_, f) in mixes {
        let _ = std::fs::remove_file(f);
    }
}
