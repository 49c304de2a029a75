//! The benchmark's zone (hsdns's manifests, and the same records for Knot
//! DNS and Unbound), the peers' command lines, and dnsperf's query mixes.

use std::{fmt::Write as _, path::PathBuf, process::Command};

pub(crate) const HEADLESS: usize = 1000;
pub(crate) const CLUSTER_IP: usize = 10_000;
/// Wide headless services (no hostnames): (count, endpoints each).
pub(crate) const WIDE: [(usize, usize); 2] = [(50, 20), (10, 100)];

/// Index of endpoint `e` of wide service `s` of size `n` (addresses apart
/// from the others').
pub(crate) fn wide_ip(n: usize, s: usize, e: usize) -> String {
    ip(20_000 + n * 1000 + s * n + e)
}

pub(crate) fn ip(i: usize) -> String {
    format!("169.254.{}.{}", 100 + (i / 250) % 100, 1 + i % 250)
}

pub(crate) fn zone() -> PathBuf {
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
pub(crate) fn records() -> Vec<(String, String)> {
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
pub(crate) fn knot(dir: &std::path::Path, xdp: Option<&str>) -> Command {
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
pub(crate) fn unbound(dir: &std::path::Path) -> Command {
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
pub(crate) fn mixes() -> Vec<(&'static str, PathBuf)> {
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
