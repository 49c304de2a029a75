//! On the node, in network namespaces: the kernel for hits, hsdns's own
//! userspace server on the node-local address for the rest (table answers
//! over UDP and TCP, forwarding to an upstream of the test's own), the
//! cluster DNS IP intercepted, and an unmodified glibc client with a search
//! list and ndots:5.
//!
//! Needs root: run through `cargo xtask test`.
//!
//! The tests run in parallel; those that measure time, count lost queries
//! or read figures of the whole process hold `serial::exclusive()` and run
//! alone, the others `serial::shared()`.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
};

use hsdns_test_support::netns::*;
use hsdns_test_support::serial;

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

/// The seed plus a headless service of 100 ready endpoints.
fn manifests() -> std::path::PathBuf {
    let big = hsdns_test_support::manifests::headless_yaml("test", "big", 100);
    let path = std::env::temp_dir().join(format!("hsdns-node-{}.yaml", std::process::id()));
    std::fs::write(&path, format!("{}\n---\n{big}", hsdns::source::SEED_YAML)).unwrap();
    path
}

fn metrics(node: &Netns) -> String {
    http_get(node, hsdns::metrics::PATH_METRICS)
}

fn http_get(node: &Netns, path: &'static str) -> String {
    node.run(move || {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect("169.254.20.10:9253").unwrap();
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    })
}

#[test]
fn userspace_serves_what_the_kernel_passes_up() {
    let _serial = serial::exclusive();
    let topo = Topology::new(2);
    // The upstream lives in a namespace of its own, reached through the node.
    let up = topo.add_upstream();
    let stub = Stub::start(
        &up,
        &[SocketAddr::new(UPSTREAM.into(), 53)],
        &[("example.test", Ipv4Addr::new(169, 254, 99, 53))],
    );
    let manifests = manifests();
    let daemon = Daemon::start(
        bin(),
        &topo.node,
        &[
            "--manifests",
            manifests.to_str().unwrap(),
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
    let _ = std::fs::remove_file(&manifests);
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
    // 100 addresses: TC over UDP, the whole set over TCP.
    let d = dig(
        pod,
        local,
        "big.test.svc.cluster.local",
        "A",
        &["+ignore", "+bufsize=1232"],
    );
    assert!(
        d.flags.contains(&"tc".to_string()),
        "truncated over UDP: {}",
        d.raw
    );
    let d = dig(pod, local, "big.test.svc.cluster.local", "A", &["+tcp"]);
    assert_eq!(d.addresses().len(), 100, "{}", d.raw);
    // An external name: forwarded to the upstream, then served from the
    // cache within its TTL.
    for _ in 0..2 {
        let d = dig(pod, local, "example.test", "A", &[]);
        let want = vec![IpAddr::from(Ipv4Addr::new(169, 254, 99, 53))];
        assert_eq!(d.addresses(), want, "{}", d.raw);
    }
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
        "only the external name went upstream, once: {seen:?}"
    );

    // The metrics say where the program runs, in which mode, and what the
    // kernel and the userspace server did.
    let text = metrics(&topo.node);
    for want in [
        "hsdns_attached{interface=\"hsv0\",mode=\"tcx\"} 1",
        "hsdns_ready 1",
        "hsdns_kernel_verdicts_total{verdict=\"answered_a\"} 2",
        // The 100-address answer: TC=1 from the kernel (tc on the veth).
        "hsdns_kernel_verdicts_total{verdict=\"answered_truncated\"} 1",
        "hsdns_userspace_queries_total{outcome=\"forwarded\"} 1",
        "hsdns_userspace_queries_total{outcome=\"cache_hit\"} 1",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }

    // The probes' endpoints, served by this process.
    for path in [hsdns::metrics::PATH_HEALTHZ, hsdns::metrics::PATH_READYZ] {
        let r = http_get(&topo.node, path);
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
    }

    // The upstream goes away: SERVFAIL within the timeout, not silence.
    drop(stub);
    let t0 = std::time::Instant::now();
    let d = dig(pod, local, "other.example.test", "A", &[]);
    assert_eq!(d.status, "SERVFAIL", "{}", d.raw);
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(1900),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn a_glibc_client_with_a_search_list_resolves_the_short_name() {
    let _serial = serial::shared();
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

/// Issue 10 item 4: a second daemon binds the same listener (SO_REUSEPORT)
/// while the first serves; the first gets SIGTERM, hands new queries to
/// the second, answers what it took, exits. A pod asking every 5 ms (1 s
/// timeout, no retry) loses nothing. Userspace only, so every query is the
/// listener's (the kernel path has its own restart tests).
#[test]
fn a_new_daemon_takes_over_the_listener_without_losing_a_query() {
    let _serial = serial::exclusive();
    use std::{
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::{Duration, Instant},
    };
    let topo = Topology::new(1);
    let up = topo.add_upstream();
    let _stub = Stub::start(&up, &[SocketAddr::new(UPSTREAM.into(), 53)], &[]);
    let manifests = manifests();
    let args = [
        "--manifests",
        manifests.to_str().unwrap(),
        "--dns-addr",
        "169.254.20.10",
        "--upstream",
        "169.254.30.53",
        "--userspace-only",
        "--no-local-interface",
    ];
    let old = Daemon::start(bin(), &topo.node, &args);
    let stop = Arc::new(AtomicBool::new(false));
    let (stop2, path) = (stop.clone(), topo.pods[0].ns.path());
    let client = std::thread::spawn(move || {
        enter(&path);
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let server = SocketAddr::from((NODE_LOCAL4, 53));
        let (mut sent, mut lost) = (0u32, Vec::new());
        let mut buf = [0u8; 1500];
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            let id = sent as u16;
            let mut q = hickory_proto::op::Message::query();
            q.metadata.id = id;
            q.add_query(hickory_proto::op::Query::query(
                hickory_proto::rr::Name::from_ascii(format!("{POD0}.")).unwrap(),
                hickory_proto::rr::RecordType::A,
            ));
            sock.send_to(&q.to_vec().unwrap(), server).unwrap();
            sent += 1;
            let ok = loop {
                match sock.recv(&mut buf) {
                    Ok(n) => match hickory_proto::op::Message::from_vec(&buf[..n]) {
                        Ok(m) if m.metadata.id == id => break m.answers.len() == 1,
                        _ => continue,
                    },
                    Err(_) => break false,
                }
            };
            if !ok {
                lost.push(id);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (sent, lost)
    });
    std::thread::sleep(Duration::from_millis(300));
    // The new daemon starts beside the old (as a DaemonSet with maxSurge 1
    // starts the new pod before stopping the old one).
    let new = Daemon::start(bin(), &topo.node, &args);
    std::thread::sleep(Duration::from_millis(300));
    let old_log = old.log.clone();
    let status = old.proc.terminate();
    assert!(status.success(), "old daemon: {status}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (sent, lost) = client.join().unwrap();
    let _ = std::fs::remove_file(&manifests);
    let old_log = std::fs::read_to_string(old_log).unwrap_or_default();
    assert!(sent > 150, "only {sent} queries");
    assert!(
        lost.is_empty(),
        "{} of {sent} unanswered: {:?}\nold:\n{old_log}\nnew:\n{}",
        lost.len(),
        &lost[..lost.len().min(10)],
        new.log()
    );
    assert!(
        old_log.contains("new queries go to the successor"),
        "the old daemon saw no successor:\n{old_log}"
    );
}
