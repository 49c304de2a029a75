//! The cluster DNS found through the API (the in-process API server, with
//! namespaced, field- and label-selected list/watch), and the userspace
//! server's forwarding split: cluster names to its endpoints, never to the
//! node's resolvers, also before it is known; the rest to the node's.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::A},
};
use hsdns::{
    records::{RecordTable, SharedTable, ZoneConfig},
    server::{ClusterServers, Server, ServerConfig, Upstreams},
    source::{self, cluster_dns},
};
use hsdns_test_support::apiserver::{ApiServer, Kind};
use serde_json::{Value, json};
use tokio::{net::UdpSocket, sync::watch};

fn kube_dns_service(ip: &str) -> Value {
    json!({"kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system"},
           "spec": {"clusterIP": ip, "clusterIPs": [ip],
                    "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}})
}

fn kube_dns_slice(name: &str, port: u16, addrs: &[(&str, bool)]) -> Value {
    let eps: Vec<Value> = addrs
        .iter()
        .map(|(a, ready)| json!({"addresses": [a], "conditions": {"ready": ready}}))
        .collect();
    json!({"kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": "kube-system",
                        "labels": {"kubernetes.io/service-name": "kube-dns"}},
           "addressType": "IPv4",
           "ports": [{"name": "dns", "port": port, "protocol": "UDP"},
                     {"name": "dns-tcp", "port": port, "protocol": "TCP"}],
           "endpoints": eps})
}

/// Decoys the selectors must leave out.
fn decoys(api: &ApiServer) {
    api.apply(
        Kind::Service,
        json!({"kind": "Service", "metadata": {"name": "kube-dns", "namespace": "other"},
               "spec": {"clusterIP": "169.254.96.99", "clusterIPs": ["169.254.96.99"]}}),
    );
    api.apply(
        Kind::EndpointSlice,
        json!({"kind": "EndpointSlice",
               "metadata": {"name": "not-dns", "namespace": "kube-system",
                            "labels": {"kubernetes.io/service-name": "metrics"}},
               "addressType": "IPv4", "endpoints": [{"addresses": ["169.254.50.99"]}]}),
    );
}

struct Following {
    servers: watch::Receiver<ClusterServers>,
    ips: watch::Receiver<Vec<IpAddr>>,
}

async fn follow(api: &ApiServer) -> Following {
    let kc = std::env::temp_dir().join(format!(
        "hsdns-cdns-kc-{}-{}",
        std::process::id(),
        api.addr.port()
    ));
    api.kubeconfig(&kc);
    let client = source::kube::client(Some(&kc)).await.unwrap();
    let (stx, servers) = watch::channel(None);
    let (itx, ips) = watch::channel(vec![]);
    tokio::spawn(cluster_dns::follow(
        client,
        "kube-system/kube-dns".parse().unwrap(),
        stx,
        itx,
    ));
    Following { servers, ips }
}

async fn until<T: Clone>(rx: &mut watch::Receiver<T>, what: &str, pred: impl Fn(&T) -> bool) -> T {
    tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|v| pred(v)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_cluster_dns_service_and_its_ready_endpoints_are_followed() {
    let api = ApiServer::start().await;
    decoys(&api);
    api.apply(Kind::Service, kube_dns_service("169.254.96.10"));
    api.apply(
        Kind::EndpointSlice,
        kube_dns_slice(
            "kube-dns-a",
            53,
            &[("169.254.50.2", true), ("169.254.50.3", false)],
        ),
    );
    let mut f = follow(&api).await;
    let s = until(&mut f.servers, "the first endpoints", |s| s.is_some()).await;
    assert_eq!(s, Some(vec!["169.254.50.2:53".parse().unwrap()]));
    assert_eq!(
        *f.ips.borrow(),
        vec!["169.254.96.10".parse::<IpAddr>().unwrap()]
    );
    // CoreDNS scales and moves: a second slice, the first pod ready.
    api.apply(
        Kind::EndpointSlice,
        kube_dns_slice("kube-dns-b", 53, &[("169.254.50.4", true)]),
    );
    api.apply(
        Kind::EndpointSlice,
        kube_dns_slice(
            "kube-dns-a",
            53,
            &[("169.254.50.2", false), ("169.254.50.3", true)],
        ),
    );
    let want: Vec<SocketAddr> = vec![
        "169.254.50.3:53".parse().unwrap(),
        "169.254.50.4:53".parse().unwrap(),
    ];
    until(&mut f.servers, "the moved endpoints", |s| {
        s.as_deref() == Some(&want[..])
    })
    .await;
    // The Service's ClusterIP changes (recreated).
    api.apply(Kind::Service, kube_dns_service("169.254.96.11"));
    until(&mut f.ips, "the new ClusterIP", |i| {
        i == &vec!["169.254.96.11".parse::<IpAddr>().unwrap()]
    })
    .await;
    // Gone: known to have no endpoints (cluster names fail; they never go
    // to the node's resolvers).
    api.delete(Kind::Service, "kube-system", "kube-dns");
    until(&mut f.servers, "no endpoints", |s| {
        s.as_deref() == Some(&[][..])
    })
    .await;
    assert!(f.ips.borrow().is_empty());
}

/// A fake DNS server answering every A question with `ip`, counting.
async fn dns(bind: &str, ip: [u8; 4]) -> (SocketAddr, Arc<AtomicUsize>) {
    let s = UdpSocket::bind(bind).await.unwrap();
    let addr = s.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((len, from)) = s.recv_from(&mut buf).await else {
                continue;
            };
            n2.fetch_add(1, Ordering::SeqCst);
            let q = Message::from_vec(&buf[..len]).unwrap();
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.metadata.message_type = MessageType::Response;
            r.add_query(q.queries[0].clone());
            r.add_answer(Record::from_rdata(
                q.queries[0].name().clone(),
                30,
                RData::A(A(ip.into())),
            ));
            let _ = s.send_to(&r.to_vec().unwrap(), from).await;
        }
    });
    (addr, n)
}

async fn ask(server: SocketAddr, name: &str) -> Message {
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = Message::query();
    q.metadata.id = 7;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    c.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = [0u8; 1500];
    let n = tokio::time::timeout(Duration::from_secs(5), c.recv(&mut buf))
        .await
        .expect("a reply")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test]
async fn cluster_names_go_to_the_discovered_endpoints_and_never_to_the_node_resolvers() {
    // The cluster DNS endpoint on loopback; its port is in the slice.
    let (cluster, cluster_n) = dns("127.0.0.1:0", [169, 254, 50, 50]).await;
    let (node, node_n) = dns("127.0.0.1:0", [169, 254, 99, 99]).await;
    let api = ApiServer::start().await;
    api.set_down(true);
    let f = follow(&api).await;
    let table: SharedTable = Arc::new(RwLock::new(RecordTable::new(&ZoneConfig::default(), 1)));
    let cfg = ServerConfig::new(
        vec!["127.0.0.1:0".parse().unwrap()],
        Duration::from_millis(300),
    );
    let ups = Upstreams::new(
        Name::from_ascii("cluster.local.").unwrap(),
        Some(f.servers.clone()),
        vec![node],
    );
    let server = Server::new(cfg, ups, table);
    let bound = server.bind().await.unwrap();
    let addr = bound.local_addrs()[0];
    tokio::spawn(server.clone().serve(bound));

    // API unreachable: the cluster DNS is unknown. A cluster name fails
    // (SERVFAIL after the wait), and is not asked outside.
    let m = ask(addr, "pod-x.ns.pod.cluster.local.").await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let m = ask(addr, "10.0.254.169.in-addr.arpa.").await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        node_n.load(Ordering::SeqCst),
        0,
        "a cluster name went to the node's resolvers"
    );
    // Other names are not held up by it.
    let m = ask(addr, "example.test.").await;
    assert_eq!(m.answers[0].data, RData::A(A([169, 254, 99, 99].into())));

    // The API comes back with CoreDNS's endpoint.
    api.apply(Kind::Service, kube_dns_service("169.254.96.10"));
    api.apply(
        Kind::EndpointSlice,
        kube_dns_slice("kube-dns-a", cluster.port(), &[("127.0.0.1", true)]),
    );
    api.set_down(false);
    let mut s = f.servers.clone();
    until(&mut s, "discovery", |s| {
        s.as_ref().is_some_and(|s| !s.is_empty())
    })
    .await;
    let m = ask(addr, "pod-x.ns.pod.cluster.local.").await;
    assert_eq!(m.answers[0].data, RData::A(A([169, 254, 50, 50].into())));
    let m = ask(addr, "Other.Example.test.").await;
    assert_eq!(m.answers[0].data, RData::A(A([169, 254, 99, 99].into())));
    assert_eq!(cluster_n.load(Ordering::SeqCst), 1);
    assert_eq!(node_n.load(Ordering::SeqCst), 2);
}

/// With the live source, the daemon finds the cluster DNS Service and the
/// kernel answers on its ClusterIP in its place (what pods whose
/// resolv.conf names the ClusterIP hit, with no kubelet change): in a node
/// namespace with a pod, against the in-process API server. Nothing on the
/// node holds that address or listens on it, so an answer comes from the
/// XDP program (and its counters say so). When the Service's ClusterIP
/// changes, the kernel follows: the new address is answered, the old one
/// no longer.
#[test]
fn the_kernel_answers_on_the_discovered_cluster_dns_cluster_ip() {
    use hsdns_test_support::netns::*;
    use std::{net::Ipv4Addr, thread};

    require_root();
    let topo = Topology::new(1);
    let node = topo.node.path();
    let (api, rt) = thread::spawn(move || {
        enter(&node);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let api = rt.block_on(ApiServer::start());
        (api, rt)
    })
    .join()
    .unwrap();
    api.apply(
        Kind::Service,
        json!({"kind": "Service", "metadata": {"name": "web", "namespace": "test"},
               "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}),
    );
    api.apply(
        Kind::EndpointSlice,
        json!({"kind": "EndpointSlice",
               "metadata": {"name": "web-abc", "namespace": "test",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["169.254.40.1"], "hostname": "web-0"}]}),
    );
    api.apply(Kind::Service, kube_dns_service("169.254.96.10"));
    api.apply(
        Kind::EndpointSlice,
        kube_dns_slice("kube-dns-a", 53, &[("169.254.96.53", true)]),
    );
    let kc = std::env::temp_dir().join(format!("hsdns-cdns-node-kc-{}", std::process::id()));
    api.kubeconfig(&kc);
    let d = Daemon::start(
        bin(),
        &topo.node,
        &[
            "--dns-addr",
            "169.254.20.10",
            "--kubeconfig",
            kc.to_str().unwrap(),
        ],
    );
    wait_for(
        "the ClusterIP in the kernel",
        Duration::from_secs(30),
        || {
            d.log()
                .contains("kernel answers for the cluster DNS ClusterIP 169.254.96.10")
        },
    );
    let pod = &topo.pods[0].ns;
    const WEB0: &str = "web-0.web.test.svc.cluster.local.";
    let ask = |ip: [u8; 4]| dig(pod, Ipv4Addr::from(ip).into(), WEB0, "A", &[]);
    let before = d.counters();
    let got = ask([169, 254, 96, 10]);
    assert_eq!(got.status, "NOERROR", "{}\n{}", got.raw, d.log());
    assert_eq!(got.addresses(), vec![IpAddr::from([169, 254, 40, 1])]);
    assert!(got.flags.contains(&"aa".to_string()), "{}", got.raw);
    let after = d.counters();
    assert_eq!(
        after["answered_a"] - before["answered_a"],
        1,
        "answered by the program"
    );
    // Nothing else could have: the address is on no interface of the node.
    let held = topo.node.cmd("ip").args(["-o", "addr"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&held.stdout).contains("169.254.96.10"));

    // The Service moves to another ClusterIP: the kernel follows.
    api.apply(Kind::Service, kube_dns_service("169.254.96.11"));
    wait_for("the new ClusterIP", Duration::from_secs(30), || {
        ask([169, 254, 96, 11]).addresses() == vec![IpAddr::from([169, 254, 40, 1])]
    });
    assert_eq!(
        ask([169, 254, 96, 10]).status,
        "NO REPLY",
        "the old one is gone"
    );
    drop(d);
    drop(rt);
    let _ = std::fs::remove_file(&kc);
}

fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_hsdns"))
}
