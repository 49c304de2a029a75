//! The daemon on the live source, in network namespaces: the API server (in
//! process, in the node namespace) changes a headless service again
//! and again while a pod queries it through the kernel; every reply must be
//! the complete old or the complete new set, never NXDOMAIN, empty or mixed.
//!
//! Needs root: run through `cargo xtask test`.
//!
//! The tests run in parallel; those that measure time, count lost queries
//! or read figures of the whole process hold `serial::exclusive()` and run
//! alone, the others `serial::shared()`.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use hsdns_test_support::apiserver::{ApiServer, Kind};
use hsdns_test_support::netns::*;
use hsdns_test_support::serial;
use serde_json::{Value, json};

/// Addresses per version. Generic-mode XDP on a veth has room for replies
/// of about three records (see `Counters::pass_no_room`); larger sets are
/// answered by userspace, whose no-gap property is the table swap.
const N: usize = 3;
const VERSIONS: usize = 30;

/// Version `v` of the service's endpoints: the addresses shift by `v`.
fn addrs(v: usize) -> Vec<Ipv4Addr> {
    (0..N)
        .map(|i| Ipv4Addr::new(169, 254, 40 + (v % 2) as u8, (1 + i + v) as u8))
        .collect()
}

fn slice(v: usize) -> Value {
    let eps: Vec<Value> = addrs(v)
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"addresses": [a.to_string()], "hostname": format!("big-{i}"), "conditions": {"ready": true}}))
        .collect();
    json!({"kind": "EndpointSlice",
           "metadata": {"name": "big-abc", "namespace": "test", "labels": {"kubernetes.io/service-name": "big"}},
           "addressType": "IPv4", "endpoints": eps})
}

/// An API server on the node namespace's loopback, where the daemon looks
/// for it, holding the headless service `big` at version 0. The runtime
/// serves it; keep it alive as long as the server is needed.
fn api_with_big_service(topo: &Topology) -> (ApiServer, tokio::runtime::Runtime) {
    let path = topo.node.path();
    let (api, rt) = thread::spawn(move || {
        enter(&path);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let api = rt.block_on(ApiServer::start());
        (api, rt)
    })
    .join()
    .unwrap();
    api.apply(
        Kind::Service,
        json!({"kind": "Service", "metadata": {"name": "big", "namespace": "test"},
               "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}),
    );
    api.apply(Kind::EndpointSlice, slice(0));
    (api, rt)
}

#[test]
fn updates_of_a_service_never_open_a_gap() {
    let _serial = serial::exclusive();
    let topo = Topology::new(1);
    let (api, rt) = api_with_big_service(&topo);
    let kc = std::env::temp_dir().join(format!("hsdns-live-kc-{}", std::process::id()));
    api.kubeconfig(&kc);
    let daemon = Daemon::start(
        Path::new(env!("CARGO_BIN_EXE_hsdns")),
        &topo.node,
        &[
            "--dns-addr",
            "169.254.20.10",
            "--kubeconfig",
            kc.to_str().unwrap(),
        ],
    );

    let versions: Vec<BTreeSet<Ipv4Addr>> = (0..VERSIONS)
        .map(|v| addrs(v).into_iter().collect())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let pod_path = topo.pods[0].ns.path();
    let (stop2, versions2) = (stop.clone(), versions.clone());
    let client = thread::spawn(move || {
        enter(&pod_path);
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let server = SocketAddr::from((NODE_LOCAL4, 53));
        let (mut ok, mut wrong) = (0u32, Vec::new());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 2048];
        for id in 0..u16::MAX {
            if stop2.load(Ordering::Relaxed) || Instant::now() > deadline {
                break;
            }
            let mut q = Message::query();
            q.metadata.id = id;
            q.add_query(Query::query(
                Name::from_ascii("big.test.svc.cluster.local.").unwrap(),
                RecordType::A,
            ));
            let mut e = Edns::new();
            e.set_max_payload(1232);
            q.set_edns(e);
            sock.send_to(&q.to_vec().unwrap(), server).unwrap();
            let reply = loop {
                match sock.recv(&mut buf) {
                    Ok(n) => match Message::from_vec(&buf[..n]) {
                        Ok(m) if m.metadata.id == id => break Some(m),
                        _ => continue,
                    },
                    Err(_) => break None,
                }
            };
            let Some(m) = reply else {
                wrong.push(format!("query {id}: no reply"));
                continue;
            };
            let got: BTreeSet<Ipv4Addr> = m
                .answers
                .iter()
                .filter_map(|r| match r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            if m.metadata.response_code == ResponseCode::NoError && versions2.contains(&got) {
                ok += 1;
            } else {
                wrong.push(format!(
                    "query {id}: {} with {} addresses",
                    m.metadata.response_code,
                    got.len()
                ));
            }
        }
        (ok, wrong)
    });
    for v in 1..VERSIONS {
        thread::sleep(Duration::from_millis(60));
        api.apply(Kind::EndpointSlice, slice(v));
    }
    // Let the last version land, then stop the client.
    wait_for(
        "the last version in the kernel",
        Duration::from_secs(15),
        || daemon.log().matches("synced").count() >= 2,
    );
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (ok, wrong) = client.join().unwrap();
    let counters = daemon.counters();
    let log = daemon.log();
    drop(daemon);
    drop(rt);
    let _ = std::fs::remove_file(&kc);
    assert!(
        wrong.is_empty(),
        "{} wrong of {}: {:?}\n{counters:?}\n{log}",
        wrong.len(),
        ok as usize + wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert!(ok > 100, "only {ok} queries");
    assert!(
        counters["answered_a"] >= u64::from(ok),
        "answered by the kernel: {counters:?}"
    );
}

#[test]
fn nothing_is_answered_before_the_first_complete_list() {
    let _serial = serial::shared();
    let topo = Topology::new(1);
    let (api, rt) = api_with_big_service(&topo);
    api.set_down(true);
    let kc = std::env::temp_dir().join(format!("hsdns-live-kc2-{}", std::process::id()));
    api.kubeconfig(&kc);
    let pins = PinDir::new("early");
    let mut daemon = Daemon::spawn(
        Path::new(env!("CARGO_BIN_EXE_hsdns")),
        &topo.node,
        &[
            "--dns-addr",
            "169.254.20.10",
            "--kubeconfig",
            kc.to_str().unwrap(),
        ],
        pins.path.clone(),
    );
    // The program is attached, but with the API server unreachable nothing
    // is answered and the daemon is not ready.
    wait_for("the program attached", Duration::from_secs(20), || {
        daemon.log().contains("attached to hsv0")
    });
    let name = "big.test.svc.cluster.local";
    let d = dig(
        &topo.pods[0].ns,
        NODE_LOCAL4.into(),
        name,
        "A",
        &["+time=1"],
    );
    // No answer: the kernel passes it up, and the userspace server, with
    // the cluster DNS unknown too, fails it rather than ask outside.
    assert!(
        d.status == "NO REPLY" || d.status == "SERVFAIL",
        "{}",
        d.raw
    );
    assert!(!daemon.is_ready());
    assert!(
        daemon.counters()["pass_not_ready"] >= 1,
        "{:?}",
        daemon.counters()
    );
    // Once the API answers: ready, and answered by the kernel.
    api.set_down(false);
    daemon.wait_ready(Duration::from_secs(30));
    let d = dig(&topo.pods[0].ns, NODE_LOCAL4.into(), name, "A", &[]);
    assert_eq!(d.addresses().len(), N, "{}", d.raw);
    assert!(daemon.counters()["answered_a"] >= 1);
    drop(daemon);
    drop(rt);
    let _ = std::fs::remove_file(&kc);
}
