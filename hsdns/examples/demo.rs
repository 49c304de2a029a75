//! The demo (`cargo xtask demo`): the scenario hsdns exists for, on this
//! machine, in network namespaces.
//!
//! A node namespace and three pod namespaces (the StatefulSet `nginx` of
//! deploy/examples/seed.yaml: nginx-0..2 at 169.254.10.10-12), hsdns on the
//! node with its embedded seed records, a plain upstream listener on the
//! node-local address for names hsdns does not know. From pod nginx-0 it
//! resolves the pod name, the headless service, and an unknown name, then
//! shows the kernel's counters: which queries the XDP program answered.
//! Everything is removed at the end, also when interrupted.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
};

use hsdns_test_support::netns::*;

fn main() {
    run_cleaning_up(run);
}

fn show(title: &str, d: &Dig) {
    println!("\n$ dig {title}");
    println!("  status {}, flags [{}]", d.status, d.flags.join(" "));
    for (name, t, data) in &d.answers {
        println!("  {name} {t} {data}");
    }
}

fn run() {
    let bin = release_daemon_bin();
    println!("== hsdns demo: node namespace, 3 pod namespaces (StatefulSet nginx), seed manifests");
    let topo = Topology::new(3);
    let stub = Stub::start(
        &topo.node,
        &[
            SocketAddr::new(NODE_LOCAL4.into(), 53),
            SocketAddr::new(NODE_LOCAL6.into(), 53),
        ],
        &[("example.test", Ipv4Addr::new(169, 254, 99, 53))],
    );
    println!("upstream listener (userspace) on 169.254.20.10:53 and [fd00:20::10]:53");
    // Removed at the end (and on Ctrl-C) even if `hsdns uninstall` is not
    // reached.
    let pins = PinDir::at(PathBuf::from(hsdns_common::PIN_DIR));
    let daemon = Daemon::start_with_pins(
        &bin,
        &topo.node,
        &["--dns-addr", "169.254.20.10", "--dns-addr", "fd00:20::10"],
        pins.path.clone(),
    );
    for line in daemon
        .log()
        .lines()
        .filter(|l| l.contains("mounted one there"))
    {
        println!("  {}", line.split("] ").nth(1).unwrap_or(line));
    }
    println!(
        "hsdns running in the node namespace (pid {}), XDP on:",
        daemon.proc.pid()
    );
    for line in daemon.log().lines().filter(|l| l.contains("attached to")) {
        println!("  {}", line.split("] ").nth(1).unwrap_or(line));
    }
    let pod = &topo.pods[0].ns;
    let v4: IpAddr = NODE_LOCAL4.into();
    let v6: IpAddr = NODE_LOCAL6.into();
    let queries = [
        (
            "nginx-0.nginx-headless.test.svc.cluster.local A",
            v4,
            "nginx-0.nginx-headless.test.svc.cluster.local",
            "A",
        ),
        (
            "nginx-headless.test.svc.cluster.local A",
            v4,
            "nginx-headless.test.svc.cluster.local",
            "A",
        ),
        (
            "@fd00:20::10 nginx-headless.test.svc.cluster.local AAAA",
            v6,
            "nginx-headless.test.svc.cluster.local",
            "AAAA",
        ),
        (
            "nginx-0.nginx-headless.test.test.svc.cluster.local A (a search-list miss)",
            v4,
            "nginx-0.nginx-headless.test.test.svc.cluster.local",
            "A",
        ),
        (
            "example.test A (not a cluster name)",
            v4,
            "example.test",
            "A",
        ),
    ];
    for (title, server, name, qtype) in queries {
        show(title, &dig(pod, server, name, qtype, &[]));
    }
    println!("\nqueries that reached the userspace listener:");
    for (name, t) in stub.seen() {
        println!("  {name} {t}");
    }
    println!(
        "\n$ bpftool map dump pinned {}/counters   (summed over CPUs)",
        hsdns_common::PIN_DIR
    );
    for (k, v) in daemon.counters().iter().filter(|(_, v)| **v > 0) {
        println!("  {k}: {v}");
    }
    let out = Command::new("bpftool")
        .args(["map", "dump", "pinned"])
        .arg(format!("{}/names_64", hsdns_common::PIN_DIR))
        .output()
        .expect("bpftool");
    let dump = String::from_utf8_lossy(&out.stdout);
    println!(
        "\n$ bpftool map dump pinned {}/names_64 | head   ({} names)",
        hsdns_common::PIN_DIR,
        dump.matches("\"key\"").count()
    );
    for line in dump.lines().take(12) {
        println!("  {line}");
    }
    let status = daemon.stop();
    println!("\nhsdns stopped ({status}): stopping is not uninstalling");
    show(
        "nginx-0.nginx-headless.test.svc.cluster.local A (no daemon running)",
        &dig(
            pod,
            v4,
            "nginx-0.nginx-headless.test.svc.cluster.local",
            "A",
            &[],
        ),
    );
    println!("  (answered by the kernel from the pinned maps)");
    println!("\n$ hsdns uninstall --no-local-interface");
    let out = topo
        .node
        .cmd(&bin)
        .args(["uninstall", "--no-local-interface", "--pin-dir"])
        .arg(&pins.path)
        .output()
        .expect("hsdns uninstall");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    println!("\nnamespaces removed");
}
