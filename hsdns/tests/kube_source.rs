//! The live Kubernetes source against an in-process API server speaking the
//! real list/watch protocol to kube-rs's real client.

use std::{sync::Arc, time::Duration};

use hickory_proto::rr::Name;
use hsdns::{
    records::{RecordTable, ZoneConfig},
    source,
};
use hsdns_test_support::apiserver::{ApiServer, Kind};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

fn headless(ns: &str, name: &str, publish_not_ready: bool) -> Value {
    json!({"kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"clusterIP": "None", "clusterIPs": ["None"], "publishNotReadyAddresses": publish_not_ready,
                    "ports": [{"name": "web", "port": 80}]}})
}

fn cluster_ip(ns: &str, name: &str, ip: &str) -> Value {
    json!({"kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"name": "web", "port": 80}]}})
}

/// (hostname, address, ready) endpoints.
fn slice(ns: &str, name: &str, svc: &str, eps: &[(&str, &str, bool)]) -> Value {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|(h, ip, ready)| json!({"addresses": [ip], "hostname": h, "conditions": {"ready": ready}}))
        .collect();
    json!({"kind": "EndpointSlice",
           "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
           "addressType": "IPv4", "ports": [{"name": "web", "port": 80}], "endpoints": endpoints})
}

/// Starts the live source and a consumer applying its updates to a table,
/// as the daemon does; the table is published once complete, after every
/// update.
async fn start(api: &ApiServer) -> watch::Receiver<Option<Arc<RecordTable>>> {
    start_with(api, Default::default()).await
}

async fn start_with(
    api: &ApiServer,
    opts: source::kube::WatchOptions,
) -> watch::Receiver<Option<Arc<RecordTable>>> {
    let dir = std::env::temp_dir().join(format!(
        "hsdns-kc-{}-{}",
        std::process::id(),
        api.addr.port()
    ));
    api.kubeconfig(&dir);
    let client = source::kube::client(Some(&dir)).await.expect("client");
    let (tx, mut updates) = mpsc::channel(1);
    tokio::spawn(source::kube::watch(client, tx, opts));
    let (publish, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut table = RecordTable::new(&ZoneConfig::default(), 1);
        while let Some(update) = updates.recv().await {
            update.apply(&mut table, &mut Vec::new());
            if table.is_complete() && publish.send(Some(Arc::new(table.clone()))).is_err() {
                return;
            }
        }
    });
    rx
}

fn addrs(t: &RecordTable, name: &str) -> Option<Vec<String>> {
    let e = t.get(&Name::from_ascii(name).unwrap())?;
    let mut v: Vec<String> = e.a.iter().map(|a| a.to_string()).collect();
    v.sort();
    Some(v)
}

/// Waits (at most 15 s) for a snapshot whose table satisfies `pred`.
async fn until(
    rx: &mut watch::Receiver<Option<Arc<RecordTable>>>,
    what: &str,
    pred: impl Fn(&RecordTable) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(t) = rx.borrow_and_update().clone()
            && pred(&t)
        {
            return;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the source stopped before: {what}"),
            Err(_) => panic!("timed out waiting for: {what}"),
        }
    }
}

const SVC: &str = "nginx-headless.test.svc.cluster.local.";

fn pod(i: usize) -> String {
    format!("nginx-{i}.nginx-headless.test.svc.cluster.local.")
}

fn seed_slice(n: usize) -> Value {
    let hosts: Vec<(String, String)> = (0..n)
        .map(|i| (format!("nginx-{i}"), format!("169.254.10.{}", 10 + i)))
        .collect();
    let eps: Vec<(&str, &str, bool)> = hosts
        .iter()
        .map(|(h, a)| (h.as_str(), a.as_str(), true))
        .collect();
    slice("test", "nginx-headless-abc", "nginx-headless", &eps)
}

#[tokio::test]
async fn snapshots_follow_the_cluster() {
    let api = ApiServer::start().await;
    api.apply(Kind::Service, headless("test", "nginx-headless", false));
    api.apply(Kind::EndpointSlice, seed_slice(3));
    let mut rx = start(&api).await;
    until(&mut rx, "the seed", |t| {
        addrs(t, SVC).is_some_and(|a| a.len() == 3)
    })
    .await;
    // Scale up and down.
    api.apply(Kind::EndpointSlice, seed_slice(5));
    until(&mut rx, "nginx-4 after scale up", |t| {
        addrs(t, &pod(4)).is_some()
    })
    .await;
    api.apply(Kind::EndpointSlice, seed_slice(1));
    until(&mut rx, "scale down to one", |t| {
        addrs(t, &pod(1)).is_none() && addrs(t, SVC) == Some(vec!["169.254.10.10".into()])
    })
    .await;
    // A not-ready endpoint is left out until publishNotReadyAddresses.
    api.apply(
        Kind::EndpointSlice,
        slice(
            "test",
            "nginx-headless-abc",
            "nginx-headless",
            &[
                ("nginx-0", "169.254.10.10", true),
                ("nginx-1", "169.254.10.11", false),
            ],
        ),
    );
    until(&mut rx, "nginx-1 not ready", |t| {
        addrs(t, &pod(0)).is_some() && addrs(t, &pod(1)).is_none()
    })
    .await;
    api.apply(Kind::Service, headless("test", "nginx-headless", true));
    until(&mut rx, "publishNotReadyAddresses", |t| {
        addrs(t, &pod(1)).is_some()
    })
    .await;
    // Headless becomes ClusterIP: the service name is its cluster IP; its
    // endpoints keep their names (as CoreDNS names a ClusterIP service's
    // endpoints), the not-ready one now without publishNotReadyAddresses.
    api.apply(
        Kind::Service,
        cluster_ip("test", "nginx-headless", "169.254.96.20"),
    );
    until(&mut rx, "ClusterIP", |t| {
        addrs(t, SVC) == Some(vec!["169.254.96.20".into()])
            && addrs(t, &pod(0)) == Some(vec!["169.254.10.10".into()])
            && addrs(t, &pod(1)).is_none()
    })
    .await;
    // The namespace goes away.
    api.delete_namespace("test");
    until(&mut rx, "namespace deleted", |t| addrs(t, SVC).is_none()).await;
}

#[tokio::test]
async fn order_and_several_slices_do_not_matter() {
    let api = ApiServer::start().await;
    // The slices arrive before their service, split in two.
    api.apply(
        Kind::EndpointSlice,
        slice("test", "a", "web", &[("web-0", "169.254.11.1", true)]),
    );
    api.apply(
        Kind::EndpointSlice,
        slice("test", "b", "web", &[("web-1", "169.254.11.2", true)]),
    );
    let mut rx = start(&api).await;
    until(&mut rx, "first snapshot", |_| true).await;
    api.apply(Kind::Service, headless("test", "web", false));
    until(&mut rx, "both slices", |t| {
        addrs(t, "web.test.svc.cluster.local.").is_some_and(|a| a.len() == 2)
    })
    .await;
    // web-1 moves from slice b to slice a.
    api.apply(
        Kind::EndpointSlice,
        slice(
            "test",
            "a",
            "web",
            &[
                ("web-0", "169.254.11.1", true),
                ("web-1", "169.254.11.2", true),
            ],
        ),
    );
    api.apply(Kind::EndpointSlice, slice("test", "b", "web", &[]));
    until(&mut rx, "moved", |t| {
        addrs(t, "web-1.web.test.svc.cluster.local.") == Some(vec!["169.254.11.2".into()])
            && addrs(t, "web.test.svc.cluster.local.").is_some_and(|a| a.len() == 2)
    })
    .await;
}

#[tokio::test]
async fn dropped_connections_and_410_gone_lose_nothing() {
    let api = ApiServer::start().await;
    api.apply(Kind::Service, headless("test", "nginx-headless", false));
    api.apply(Kind::EndpointSlice, seed_slice(2));
    let mut rx = start(&api).await;
    until(&mut rx, "the seed", |t| addrs(t, &pod(1)).is_some()).await;
    // The watch breaks; a change made meanwhile still arrives.
    api.drop_watches();
    api.apply(Kind::EndpointSlice, seed_slice(3));
    until(&mut rx, "change across a reconnect", |t| {
        addrs(t, &pod(2)).is_some()
    })
    .await;
    // History compacted: resuming gets 410 Gone, the watcher relists.
    api.compact();
    api.drop_watches();
    api.apply(Kind::EndpointSlice, seed_slice(4));
    until(&mut rx, "change after a relist", |t| {
        addrs(t, &pod(3)).is_some()
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_api_server_publishes_nothing_until_it_answers() {
    let api = ApiServer::start().await;
    api.apply(Kind::Service, headless("test", "nginx-headless", false));
    api.apply(Kind::EndpointSlice, seed_slice(1));
    api.set_down(true);
    let mut rx = start(&api).await;
    let early = tokio::time::timeout(Duration::from_millis(1500), rx.changed()).await;
    assert!(early.is_err(), "no snapshot while the API server is down");
    assert!(rx.borrow().is_none());
    api.set_down(false);
    until(&mut rx, "the first list once it is back", |t| {
        addrs(t, &pod(0)).is_some()
    })
    .await;
    // Down mid-run: the last good state stays, changes arrive after.
    api.set_down(true);
    api.apply(Kind::EndpointSlice, seed_slice(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rx.borrow()
            .as_ref()
            .is_some_and(|t| addrs(t, &pod(0)).is_some())
    );
    api.set_down(false);
    until(&mut rx, "the change after recovery", |t| {
        addrs(t, &pod(1)).is_some()
    })
    .await;
}

#[tokio::test]
async fn dual_stack_and_clusterip_to_headless() {
    let api = ApiServer::start().await;
    api.apply(Kind::Service, cluster_ip("test", "web", "169.254.96.30"));
    let mut v6 = slice("test", "web-v6", "web", &[("web-0", "fd00:10::20", true)]);
    v6["addressType"] = json!("IPv6");
    api.apply(
        Kind::EndpointSlice,
        slice("test", "web-v4", "web", &[("web-0", "169.254.12.1", true)]),
    );
    api.apply(Kind::EndpointSlice, v6);
    let mut rx = start(&api).await;
    let dual = |t: &RecordTable| {
        t.get(&Name::from_ascii("web-0.web.test.svc.cluster.local.").unwrap())
            .is_some_and(|e| e.a.len() == 1 && e.aaaa.len() == 1)
    };
    // The endpoint is named under a ClusterIP service too (CoreDNS).
    until(&mut rx, "the ClusterIP", |t| {
        addrs(t, "web.test.svc.cluster.local.") == Some(vec!["169.254.96.30".into()]) && dual(t)
    })
    .await;
    // ClusterIP becomes headless: the service name holds both families.
    api.apply(Kind::Service, headless("test", "web", false));
    until(&mut rx, "dual-stack endpoint names", |t| {
        dual(t)
            && t.get(&Name::from_ascii("web.test.svc.cluster.local.").unwrap())
                .is_some_and(|e| e.a.len() == 1 && e.aaaa.len() == 1)
    })
    .await;
}

#[tokio::test]
async fn a_cluster_larger_than_a_list_page_is_listed_whole() {
    // kube-rs lists 500 objects a page; 1,201 services and their slices
    // take three pages each, and an object at a page boundary must be in
    // exactly one of them.
    const N: usize = 1201;
    let api = ApiServer::start().await;
    for i in 0..N {
        let name = format!("s{i:04}");
        let ip = format!("169.254.{}.{}", 100 + i / 250, 1 + i % 250);
        api.apply(Kind::Service, headless("test", &name, false));
        api.apply(
            Kind::EndpointSlice,
            slice("test", &format!("{name}-x"), &name, &[("p", &ip, true)]),
        );
    }
    let mut rx = start(&api).await;
    until(&mut rx, "every service listed", |t| {
        (0..N).all(|i| {
            let ip = format!("169.254.{}.{}", 100 + i / 250, 1 + i % 250);
            addrs(t, &format!("p.s{i:04}.test.svc.cluster.local.")) == Some(vec![ip])
        })
    })
    .await;
    assert!(
        api.lists() >= 6,
        "two kinds of three pages each, got {} list requests",
        api.lists()
    );
}

/// (API group, resource, namespace or cluster-wide, verb).
type Access = std::collections::BTreeSet<(String, String, Option<String>, String)>;

/// The API collections and verbs the watchers really use, from the requests
/// the API server saw: what deploy/'s RBAC must grant (tests/deploy.rs holds
/// the manifests to `watched_resources`, this holds `watched_resources` to
/// the watchers).
fn used(api: &ApiServer) -> Access {
    api.requests()
        .into_iter()
        .map(|(path, watch)| {
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let (group, ns, resource) = match parts[..] {
                ["api", "v1", "namespaces", ns, r] => ("", Some(ns), r),
                ["api", "v1", r] => ("", None, r),
                ["apis", g, _, "namespaces", ns, r] => (g, Some(ns), r),
                ["apis", g, _, r] => (g, None, r),
                _ => panic!("unexpected request {path}"),
            };
            let verb = if watch { "watch" } else { "list" };
            (
                group.to_string(),
                resource.to_string(),
                ns.map(str::to_string),
                verb.to_string(),
            )
        })
        .collect()
}

fn declared(
    opts: source::kube::WatchOptions,
    cluster_dns: Option<&source::cluster_dns::ServiceRef>,
) -> Access {
    source::kube::watched_resources(opts, cluster_dns)
        .into_iter()
        .flat_map(|w| {
            w.verbs.map(|v| {
                (
                    w.group.to_string(),
                    w.resource.to_string(),
                    w.namespace.clone(),
                    v.to_string(),
                )
            })
        })
        .collect()
}

/// Starts the cluster DNS follower against `api`, as the daemon's
/// frontend does with the live source.
async fn follow_cluster_dns(
    api: &ApiServer,
    svc: source::cluster_dns::ServiceRef,
) -> (
    watch::Receiver<hsdns::server::ClusterServers>,
    watch::Receiver<Vec<std::net::IpAddr>>,
) {
    let dir = std::env::temp_dir().join(format!(
        "hsdns-kc-dns-{}-{}",
        std::process::id(),
        api.addr.port()
    ));
    api.kubeconfig(&dir);
    let client = source::kube::client(Some(&dir)).await.expect("client");
    let (servers_tx, servers) = watch::channel(None);
    let (ips_tx, ips) = watch::channel(Vec::new());
    tokio::spawn(source::cluster_dns::follow(client, svc, servers_tx, ips_tx));
    (servers, ips)
}

/// Waits (at most 15 s) until every watch is open, then compares.
async fn assert_used_is_declared(api: &ApiServer, want: Access) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while used(api) != want && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(used(api), want);
}

#[tokio::test]
async fn namespaces_pods_and_the_cluster_dns_are_watched_and_are_all_rbac_needs() {
    let api = ApiServer::start().await;
    api.apply(Kind::Service, headless("test", "nginx-headless", false));
    api.apply(Kind::EndpointSlice, seed_slice(1));
    api.apply(
        Kind::Namespace,
        json!({"kind": "Namespace", "metadata": {"name": "test"}}),
    );
    api.apply(
        Kind::Namespace,
        json!({"kind": "Namespace", "metadata": {"name": "quiet"}}),
    );
    api.apply(
        Kind::Pod,
        json!({"kind": "Pod", "metadata": {"name": "nginx-0", "namespace": "test"},
               "status": {"podIP": "169.254.10.10", "podIPs": [{"ip": "169.254.10.10"}]}}),
    );
    let opts = source::kube::WatchOptions {
        pods: true,
        ..Default::default()
    };
    let mut rx = start_with(&api, opts).await;
    let kube_dns: source::cluster_dns::ServiceRef = "kube-system/kube-dns".parse().unwrap();
    let followers = follow_cluster_dns(&api, kube_dns.clone()).await;
    until(&mut rx, "namespaces and the pod", |t| {
        t.namespace_exists("quiet") && t.pod_addresses() == 1
    })
    .await;
    // A namespace going away, and the pod.
    api.delete(Kind::Namespace, "", "quiet");
    api.delete(Kind::Pod, "test", "nginx-0");
    until(&mut rx, "both gone", |t| {
        !t.namespace_exists("quiet") && t.namespace_exists("test") && t.pod_addresses() == 0
    })
    .await;
    // Wait for every watch to be open, then compare: the record source
    // and the cluster DNS follower, as the daemon runs them.
    assert_used_is_declared(&api, declared(opts, Some(&kube_dns))).await;
    drop(followers);
    // Without verified pods, no pod is ever asked for; without discovery
    // (--no-cluster-dns, --cluster-upstream), nothing namespaced.
    let api = ApiServer::start().await;
    let mut rx = start(&api).await;
    until(&mut rx, "an empty cluster", |_| true).await;
    assert_used_is_declared(&api, declared(Default::default(), None)).await;
}
