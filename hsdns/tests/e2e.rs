//! End to end in network namespaces: the daemon attached to pod veths, a
//! real client (dig) in the pods, and a plain upstream listener in the node
//! namespace. Hits are answered by the kernel (its counters move and no
//! userspace socket sees them); misses reach the upstream.
//!
//! Needs root: run through `cargo xtask test`.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use hickory_proto::rr::RecordType;
use hsdns_test_support::netns::*;

const POD0: &str = "nginx-0.nginx-headless.test.svc.cluster.local";
const SVC: &str = "nginx-headless.test.svc.cluster.local";
const EXTERNAL: &str = "example.test";
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 99, 53);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hsdns"))
}

fn upstream(topo: &Topology) -> Stub {
    Stub::start(
        &topo.node,
        &[
            SocketAddr::new(NODE_LOCAL4.into(), 53),
            SocketAddr::new(NODE_LOCAL6.into(), 53),
        ],
        &[(EXTERNAL, EXTERNAL_IP)],
    )
}

fn delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    k: &str,
) -> u64 {
    after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0)
}

#[test]
fn the_kernel_answers_hits_and_misses_reach_the_upstream() {
    let topo = Topology::new(3);
    let stub = upstream(&topo);
    let pins = PinDir::new("e2e");
    let daemon = Daemon::start_with_pins(
        bin(),
        &topo.node,
        &["--dns-addr", "169.254.20.10", "--dns-addr", "fd00:20::10"],
        pins.path.clone(),
    );
    let before = daemon.counters();
    let v4: IpAddr = NODE_LOCAL4.into();
    let v6: IpAddr = NODE_LOCAL6.into();
    for pod in &topo.pods {
        let d = dig(&pod.ns, v4, POD0, "A", &[]);
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        assert!(
            d.flags.contains(&"aa".to_string()),
            "authoritative: {}",
            d.raw
        );
        assert_eq!(d.addresses(), vec![IpAddr::from(pod4(0))], "{}", d.raw);
        let d = dig(&pod.ns, v4, SVC, "A", &[]);
        let got: BTreeSet<IpAddr> = d.addresses().into_iter().collect();
        let want: BTreeSet<IpAddr> = (0..3).map(|i| pod4(i).into()).collect();
        assert_eq!(got, want, "every ready endpoint: {}", d.raw);
        let d = dig(&pod.ns, v6, SVC, "AAAA", &[]);
        let got: BTreeSet<IpAddr> = d.addresses().into_iter().collect();
        let want: BTreeSet<IpAddr> = (0..3).map(|i| pod6(i).into()).collect();
        assert_eq!(got, want, "AAAA over IPv6: {}", d.raw);
        // Plain queries (no EDNS), as glibc sends them, too.
        let d = dig(&pod.ns, v4, POD0, "A", &["+noedns"]);
        assert_eq!(d.addresses(), vec![IpAddr::from(pod4(0))], "{}", d.raw);
    }
    // A name hsdns does not know goes up to the upstream listener.
    let d = dig(&topo.pods[0].ns, v4, EXTERNAL, "A", &[]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.addresses(), vec![IpAddr::from(EXTERNAL_IP)], "{}", d.raw);
    // A search-list miss is answered NXDOMAIN by the kernel itself.
    let miss = "nginx-0.nginx-headless.test.test.svc.cluster.local";
    let d = dig(&topo.pods[1].ns, v4, miss, "A", &[]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);

    let after = daemon.counters();
    assert_eq!(delta(&before, &after, "answered_a"), 3 * 3, "{after:?}");
    assert_eq!(delta(&before, &after, "answered_aaaa"), 3, "{after:?}");
    assert_eq!(delta(&before, &after, "answered_nxdomain"), 1, "{after:?}");
    assert!(
        delta(&before, &after, "pass_unknown_name") >= 1,
        "{after:?}"
    );
    // Userspace saw the miss and nothing the kernel answered.
    let seen = stub.seen();
    assert!(
        seen.iter().all(|(n, _)| n == "example.test."),
        "only the unknown name reached userspace: {seen:?}"
    );
    assert!(seen.contains(&("example.test.".to_string(), RecordType::A)));

    // SIGTERM is not uninstall: the program stays attached and answers
    // from the pinned maps.
    let log = daemon.log();
    let status = daemon.stop();
    assert!(status.success(), "clean exit: {status}\n{log}");
    let counters = pins.path.join("counters");
    assert!(counters.exists(), "pins stay");
    let before = bpftool_counters(&counters);
    let d = dig(&topo.pods[0].ns, v4, POD0, "A", &[]);
    assert_eq!(d.addresses(), vec![IpAddr::from(pod4(0))], "{}", d.raw);
    let after = bpftool_counters(&counters);
    assert_eq!(delta(&before, &after, "answered_a"), 1, "{after:?}");

    // `hsdns uninstall`: detached and unpinned; queries now go up the stack
    // (the node-local address stays: the stub listens on it here).
    let out = topo
        .node
        .cmd(bin())
        .args(["uninstall", "--no-local-interface", "--pin-dir"])
        .arg(&pins.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!pins.path.exists(), "pins removed");
    wait_for(
        "the program to leave the interfaces",
        Duration::from_secs(5),
        || dig(&topo.pods[0].ns, v4, POD0, "A", &["+time=1"]).status == "NXDOMAIN",
    );
    assert!(stub.seen().iter().any(|(n, _)| n == &format!("{POD0}.")));
}

#[test]
fn pods_created_after_start_are_attached_and_answered() {
    let mut topo = Topology::new(1);
    let stub = upstream(&topo);
    let daemon = Daemon::start(bin(), &topo.node, &["--dns-addr", "169.254.20.10"]);
    let pod = topo.add_pod();
    let name = pod.host_if.clone();
    wait_for(
        "the new veth to be attached",
        Duration::from_secs(10),
        || daemon.log().contains(&format!("attached to {name} ")),
    );
    let before = daemon.counters();
    let d = dig(&pod.ns, NODE_LOCAL4.into(), POD0, "A", &[]);
    assert_eq!(d.addresses(), vec![IpAddr::from(pod4(0))], "{}", d.raw);
    let after = daemon.counters();
    assert_eq!(
        delta(&before, &after, "answered_a"),
        1,
        "{before:?} {after:?}\n{}",
        daemon.log()
    );
    assert!(
        stub.seen().is_empty(),
        "answered in the kernel: {:?}",
        stub.seen()
    );
}

#[test]
fn bad_manifests_and_flags_fail_clearly() {
    require_root();
    let dir = std::env::temp_dir().join(format!("hsdns-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {name: web-abc, namespace: shop, labels: {kubernetes.io/service-name: web}}\n\
         addressType: IPv4\nendpoints:\n- addresses: [\"10.1.2\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["records", "--manifests"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.yaml") && err.contains("shop/web-abc") && err.contains("10.1.2"),
        "{err}"
    );
    let out = std::process::Command::new(bin())
        .args(["run", "--interface", "x", "--xdp-mode", "turbo"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("turbo"));
    // No record source: a daemon must not serve made-up records.
    let out = std::process::Command::new(bin())
        .args(["run", "--interface", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--manifests") && err.contains("--kubeconfig") && err.contains("--kube"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// On a veth the tc hook answers replies of any size: 40 addresses (a
/// 684-byte reply) come from the kernel, as does the TC=1 for 100; with
/// generic XDP on the same veth the 40 did not fit the sender's tailroom.
#[test]
fn tc_answers_replies_generic_xdp_has_no_room_for() {
    require_root();
    let dir = std::env::temp_dir().join(format!("hsdns-tc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let zone = dir.join("zone.yaml");
    std::fs::write(
        &zone,
        format!(
            "{}\n---\n{}\n---\n{}",
            include_str!("../../deploy/examples/seed.yaml"),
            hsdns_test_support::manifests::headless_yaml("big", "big40", 40),
            hsdns_test_support::manifests::headless_yaml("big", "big100", 100)
        ),
    )
    .unwrap();
    let v4: IpAddr = NODE_LOCAL4.into();
    let big40 = "big40.big.svc.cluster.local";
    for (mode, kernel_answers) in [("auto", true), ("skb", false)] {
        let topo = Topology::new(1);
        let stub = upstream(&topo);
        let daemon = Daemon::start(
            bin(),
            &topo.node,
            &[
                "--dns-addr",
                "169.254.20.10",
                "--manifests",
                zone.to_str().unwrap(),
                "--attach-mode",
                mode,
            ],
        );
        let pod = &topo.pods[0].ns;
        let before = daemon.counters();
        let d = dig(
            pod,
            v4,
            big40,
            "A",
            &["+bufsize=1232", "+time=1", "+tries=1"],
        );
        let after = daemon.counters();
        if kernel_answers {
            assert_eq!(d.addresses().len(), 40, "{}", d.raw);
            assert!(d.flags.contains(&"aa".to_string()), "{}", d.raw);
            assert_eq!(delta(&before, &after, "answered_a"), 1, "{after:?}");
            // Too large for any UDP reply, and too large for a client
            // without EDNS: TC=1 from the kernel, the client goes to TCP.
            for (name, extra) in [
                ("big100.big.svc.cluster.local", &["+bufsize=4096"][..]),
                (big40, &["+noedns"][..]),
            ] {
                let mut args = vec!["+ignore", "+time=1", "+tries=1"];
                args.extend_from_slice(extra);
                let d = dig(pod, v4, name, "A", &args);
                assert!(d.flags.contains(&"tc".to_string()), "{}", d.raw);
                assert!(d.addresses().is_empty(), "no partial record set: {}", d.raw);
            }
            let end = daemon.counters();
            assert_eq!(delta(&after, &end, "answered_truncated"), 2, "{end:?}");
            assert!(
                stub.seen().is_empty(),
                "all from the kernel: {:?}",
                stub.seen()
            );
        } else {
            // Generic XDP on a veth: no room, the query goes up (to no
            // userspace server here).
            assert_eq!(delta(&before, &after, "pass_no_room"), 1, "{after:?}");
            assert_eq!(delta(&before, &after, "answered_a"), 0, "{after:?}");
        }
        drop(stub);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
