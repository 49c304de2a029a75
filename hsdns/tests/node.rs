//! On the node, in network namespaces: the kernel for hits, hsdns's own
//! userspace server on the node-local address for the rest (table answers
//! over UDP and TCP, forwarding to an upstream of the test's own), the
//! cluster DNS IP intercepted, and an unmodified glibc client with a search
//! list and ndots:5.
//!
//! Needs root: run through `cargo xtask test`.

mod common;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
};

use common::*;

const UPSTREAM: Ipv4Addr = Ipv4Addr::new(169, 254, 30, 53);
/// Stands in for the cluster DNS service IP (10.96.0.10 in a real cluster;
/// only link-local addresses are used here).
const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(169, 254, 96, 10);
const POD0: &str = "nginx-0.nginx-headless.test.svc.cluster.local";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hsdns"))
}

fn delta(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>, k: &str) -> u64 {
    b.get(k).copied().unwrap_or(0) - a.get(k).copied().unwrap_or(0)
}

#[test]
fn userspace_serves_what_the_kernel_passes_up() {
    let topo = Topology::new(2);
    ip(&[
        "-n",
        &topo.node.name,
        "addr",
        "add",
        "169.254.30.53/32",
        "dev",
        "lo",
    ]);
    let stub = Stub::start(
        &topo.node,
        &[SocketAddr::new(UPSTREAM.into(), 53)],
        &[("example.test", Ipv4Addr::new(169, 254, 99, 53))],
    );
    let daemon = Daemon::start(
        bin(),
        &topo.node,
        &[
            "--dns-addr",
            "169.254.20.10",
            "--upstream",
            "169.254.30.53",
            "--intercept-addr",
            "169.254.96.10",
            "--metrics-addr",
            "169.254.20.10:9253",
            "--upstream-timeout-ms",
            "500",
        ],
    );
    let pod = &topo.pods[0].ns;
    let local: IpAddr = NODE_LOCAL4.into();
    let before = daemon.counters();

    // A hit: the kernel.
    let d = dig(pod, local, POD0, "A", &[]);
    assert_eq!(d.addresses(), vec![IpAddr::from(pod4(0))], "{}", d.raw);
    // SRV is not the kernel's: the userspace server answers from the table.
    let d = dig(
        pod,
        local,
        "_web._tcp.nginx-headless.test.svc.cluster.local",
        "SRV",
        &[],
    );
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.answers.len(), 3, "{}", d.raw);
    // Over TCP as well.
    let d = dig(pod, local, POD0, "A", &["+tcp"]);
    assert_eq!(d.addresses(), vec![IpAddr::from(pod4(0))], "{}", d.raw);
    // An external name: forwarded to the upstream.
    let d = dig(pod, local, "example.test", "A", &[]);
    assert_eq!(
        d.addresses(),
        vec![IpAddr::from(Ipv4Addr::new(169, 254, 99, 53))],
        "{}",
        d.raw
    );
    // The cluster DNS IP, intercepted: answered by the kernel from that IP.
    let d = dig(pod, CLUSTER_DNS.into(), POD0, "A", &[]);
    assert_eq!(d.addresses(), vec![IpAddr::from(pod4(0))], "{}", d.raw);
    assert!(d.raw.contains("SERVER: 169.254.96.10#53"), "{}", d.raw);

    let after = daemon.counters();
    assert_eq!(delta(&before, &after, "answered_a"), 2, "{after:?}");
    let seen = stub.seen();
    assert_eq!(
        seen.len(),
        1,
        "only the external name went upstream: {seen:?}"
    );
}

#[test]
fn a_glibc_client_with_a_search_list_resolves_the_short_name() {
    let topo = Topology::new(1);
    let daemon = Daemon::start(bin(), &topo.node, &["--dns-addr", "169.254.20.10"]);
    // `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf: the pod's own
    // resolv.conf, as kubelet writes it for a pod in namespace `test`.
    let pod = &topo.pods[0].ns;
    let dir = Path::new("/etc/netns").join(&pod.name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("resolv.conf"),
        "search test.svc.cluster.local svc.cluster.local cluster.local\n\
         nameserver 169.254.20.10\noptions ndots:5 attempts:1 timeout:2\n",
    )
    .unwrap();
    let before = daemon.counters();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pod.name,
            "getent",
            "ahostsv4",
            "nginx-0.nginx-headless.test",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "getent failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("169.254.10.10"), "{text}");
    let after = daemon.counters();
    // The first search-list candidate is a provable miss, answered NXDOMAIN
    // by the kernel; the second is the hit.
    assert!(
        delta(&before, &after, "answered_nxdomain") >= 1,
        "{after:?}"
    );
    assert!(delta(&before, &after, "answered_a") >= 1, "{after:?}");
}
