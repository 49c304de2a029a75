//! The operator commands against a running daemon in network namespaces:
//! `hsdns query` (BPF_PROG_TEST_RUN on the pinned program, and the
//! userspace listener) and `hsdns stats` (the pinned counters), as an
//! operator runs them on the node.
//!
//! Needs root: run through `cargo xtask test`.

use std::{net::SocketAddr, path::Path, process::Output};

use hsdns_test_support::netns::*;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hsdns"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn query_and_stats_show_what_the_daemon_does() {
    require_root();
    let topo = Topology::new(1);
    // An upstream on the node-local address: what userspace answers when
    // the kernel passes a query up.
    let _stub = Stub::start(
        &topo.node,
        &[SocketAddr::new(NODE_LOCAL4.into(), 53)],
        &[("example.test", std::net::Ipv4Addr::new(169, 254, 99, 53))],
    );
    let daemon = Daemon::start(bin(), &topo.node, &["--dns-addr", "169.254.20.10"]);
    let pins = daemon.pin_dir.to_str().unwrap().to_string();
    let query = |args: &[&str]| {
        topo.node
            .cmd(bin())
            .arg("query")
            .args(args)
            .args(["--pin-dir", &pins])
            .output()
            .unwrap()
    };

    // A table name: the kernel answers, and says so.
    let o = query(&["nginx-0.nginx-headless.test.svc.cluster.local", "A"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let kernel = out.split(";; userspace").next().unwrap();
    assert!(kernel.contains("status: NOERROR"), "{out}");
    assert!(kernel.contains("flags: qr aa"), "{out}");
    assert!(
        kernel.contains("nginx-0.nginx-headless.test.svc.cluster.local.\t5\tIN\tA\t169.254.10.10"),
        "{out}"
    );
    assert!(out.contains("answered by: kernel"), "{out}");

    // An outside name: passed up, answered by the upstream listener.
    let o = query(&["example.test"]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("passed up (XDP_PASS)"), "{out}");
    assert!(out.contains("169.254.99.53"), "{out}");
    assert!(out.contains("answered by: userspace"), "{out}");

    // stats: the pinned counters, as bpftool reads them.
    let o = topo
        .node
        .cmd(bin())
        .args(["stats", "--json", "--pin-dir", &pins])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let bpftool = daemon.counters();
    assert!(bpftool["answered_a"] >= 1);
    for (k, v) in &bpftool {
        // Counters only grow: stats was read before bpftool.
        assert!(json[k].as_u64().unwrap() <= *v, "{k}");
    }
    let o = topo
        .node
        .cmd(bin())
        .args(["stats", "--pin-dir", &pins])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.starts_with("verdict"), "{table}");
    assert!(table.contains("answered (total)"), "{table}");

    // With no daemon: a clear error, not a panic.
    let o = topo
        .node
        .cmd(bin())
        .args(["stats", "--pin-dir", "/sys/fs/bpf/hsdns-nothing-here"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("is hsdns running?"), "{}", text(&o));
}

/// CoreDNS's answers through the daemon's userspace server, over the wire
/// from a pod, with a setting given as an environment variable as deploy/'s
/// ConfigMap gives it: pod names (`HSDNS_PODS=insecure`), SRV on the bare
/// service name and in CoreDNS's underscore-less spelling, a namespace
/// that does not exist. None of them reaches the upstream.
#[test]
fn coredns_parity_through_the_userspace_server() {
    require_root();
    let topo = Topology::new(1);
    let up = topo.add_upstream();
    let stub = Stub::start(
        &up,
        &[SocketAddr::new(
            std::net::Ipv4Addr::new(169, 254, 30, 53).into(),
            53,
        )],
        &[("example.test", std::net::Ipv4Addr::new(169, 254, 99, 53))],
    );
    // The daemon's environment only: the other tests run beside this one.
    let _daemon = Daemon::start_with_env(
        bin(),
        &topo.node,
        &["--dns-addr", "169.254.20.10", "--upstream", "169.254.30.53"],
        &[("HSDNS_PODS", "insecure")],
    );
    let pod = &topo.pods[0].ns;
    let local = NODE_LOCAL4.into();

    let d = dig(pod, local, "169-254-10-10.test.pod.cluster.local", "A", &[]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.flags.contains(&"aa".to_string()), "{}", d.raw);
    assert_eq!(
        d.addresses(),
        vec![std::net::IpAddr::from(pod4(0))],
        "{}",
        d.raw
    );
    for name in [
        "nginx-headless.test.svc.cluster.local",
        "web.tcp.nginx-headless.test.svc.cluster.local",
    ] {
        let d = dig(pod, local, name, "SRV", &[]);
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        assert_eq!(d.answers.len(), 3, "{}", d.raw);
    }
    let d = dig(pod, local, "nope.svc.cluster.local", "A", &[]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    let d = dig(pod, local, "test.svc.cluster.local", "A", &[]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.answers.is_empty(), "{}", d.raw);
    // And the rest still goes upstream.
    let d = dig(pod, local, "example.test", "A", &[]);
    assert_eq!(
        d.addresses(),
        vec![std::net::IpAddr::from([169, 254, 99, 53])],
        "{}",
        d.raw
    );
    let seen = stub.seen();
    assert!(
        seen.iter().all(|(n, _)| n == "example.test."),
        "only the outside name went upstream: {seen:?}"
    );
}
