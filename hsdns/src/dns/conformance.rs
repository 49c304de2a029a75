//! Conformance: what a client sees from the userspace answerer, grouped by
//! section of the Kubernetes DNS specification (schema 1.1.0), and, where
//! the spec is silent, by the CoreDNS kubernetes plugin behaviour it
//! follows (plugin/kubernetes `parseRequest`, `findServices`, `findPods`,
//! `serviceRecordForIP`, plugin/backend_lookup.go). Each case is a
//! question and the records a CoreDNS user would expect back.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::resolver::{PassReason, Verdict, respond, respond_any_type};
use crate::records::{PodMode, RecordTable, TableOptions, ZoneConfig};
use crate::source::parse_manifests;

const CLUSTER: &str = "apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: empty}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  clusterIP: 169.254.7.1
  clusterIPs: [169.254.7.1]
  ports:
  - {name: http, port: 80, protocol: TCP}
  - {port: 9000, protocol: UDP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-x, namespace: shop, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [169.254.10.20]
  targetRef: {kind: Pod, name: api-7d9f-abcde, namespace: shop}
- addresses: [169.254.10.21]
  hostname: api-b
  targetRef: {kind: Pod, name: api-7d9f-fghij, namespace: shop}
- addresses: [169.254.10.22]
  conditions: {ready: false}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: None, ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: db-x, namespace: shop, labels: {kubernetes.io/service-name: db}}
addressType: IPv4
ports: [{name: pg, port: 5432, protocol: TCP}]
endpoints:
- addresses: [169.254.10.30]
  hostname: db-0
- addresses: [169.254.10.31]
  hostname: db-1
";

fn table_with(opts: TableOptions) -> RecordTable {
    RecordTable::build_with(
        &ZoneConfig::default(),
        &opts,
        &parse_manifests("cluster.yaml", CLUSTER).unwrap(),
        77,
    )
}

fn table() -> RecordTable {
    table_with(TableOptions::default())
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 7;
    m.metadata.recursion_desired = true;
    m.add_query(hickory_proto::op::Query::query(
        Name::from_ascii(name).unwrap(),
        qtype,
    ));
    let _ = DNSClass::IN;
    m.to_vec().unwrap()
}

fn ask(t: &RecordTable, name: &str, qtype: RecordType) -> Message {
    match respond_any_type(t, &query(name, qtype), Some(1232)) {
        Verdict::Answer(b) => Message::from_vec(&b).unwrap(),
        v => panic!("{name} {qtype}: {v:?}"),
    }
}

fn passed(t: &RecordTable, name: &str, qtype: RecordType) -> bool {
    matches!(
        respond_any_type(t, &query(name, qtype), Some(1232)),
        Verdict::Pass(_)
    )
}

fn answers(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect();
    v.sort();
    v
}

fn nxdomain(m: &Message) -> bool {
    m.metadata.response_code == ResponseCode::NXDomain
        && m.authorities[0].record_type() == RecordType::SOA
}

fn nodata(m: &Message) -> bool {
    m.metadata.response_code == ResponseCode::NoError
        && m.answers.is_empty()
        && m.authorities[0].record_type() == RecordType::SOA
}

// ---- 2.2 Record for schema version; and the zone's SOA ----

#[test]
fn s2_2_schema_version_and_the_soa() {
    let t = table();
    let m = ask(&t, "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(answers(&m), ["TXT 1.1.0"]);
    // CoreDNS: the SOA record's TTL is min(ttl, 300), its minimum the TTL.
    let cfg = ZoneConfig::new("cluster.local", 3600).unwrap();
    let long = RecordTable::build(&cfg, &parse_manifests("c", CLUSTER).unwrap(), 1);
    let m = ask(&long, "nope.shop.svc.cluster.local.", RecordType::A);
    assert!(nxdomain(&m));
    assert_eq!(m.authorities[0].ttl, 300);
    let RData::SOA(soa) = &m.authorities[0].data else {
        panic!()
    };
    assert_eq!(soa.minimum, 3600);
    let m = ask(&t, "nope.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.authorities[0].ttl, 5);
}

// ---- 2.3 Records for a Service with ClusterIP ----

#[test]
fn s2_3_1_cluster_ip_a_record() {
    let t = table();
    let m = ask(&t, "api.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(&m), ["A 169.254.7.1"]);
    assert!(nodata(&ask(
        &t,
        "api.shop.svc.cluster.local.",
        RecordType::AAAA
    )));
}

#[test]
fn s2_3_2_srv_records_in_every_spelling_coredns_accepts() {
    let t = table();
    let target = "api.shop.svc.cluster.local.";
    // The spec's name, and CoreDNS's underscore-less and mixed-case ones.
    for n in [
        "_http._tcp.api.shop.svc.cluster.local.",
        "http.tcp.api.shop.svc.cluster.local.",
        "_HTTP.tcp.api.shop.svc.cluster.local.",
        "http._TCP.api.shop.svc.cluster.local.",
    ] {
        let m = ask(&t, n, RecordType::SRV);
        assert_eq!(answers(&m), [format!("SRV 0 100 80 {target}")], "{n}");
        assert_eq!(
            m.additionals
                .iter()
                .map(|r| r.data.to_string())
                .collect::<Vec<_>>(),
            ["169.254.7.1"],
            "{n}"
        );
    }
    // The bare service name: one record per port, the unnamed one too
    // (two ports x one cluster IP: weight 50).
    let m = ask(&t, target, RecordType::SRV);
    assert_eq!(
        answers(&m),
        [
            format!("SRV 0 50 80 {target}"),
            format!("SRV 0 50 9000 {target}")
        ]
    );
    // No such port or protocol.
    assert!(nxdomain(&ask(
        &t,
        "_http._udp.api.shop.svc.cluster.local.",
        RecordType::SRV
    )));
    // CoreDNS answers address questions for the SRV name with the
    // targets' addresses (the kernel passes these up).
    let m = ask(&t, "_http._tcp.api.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(&m), ["A 169.254.7.1"]);
    assert_eq!(
        respond(
            &t,
            &query("_http._tcp.api.shop.svc.cluster.local.", RecordType::A)
        ),
        Verdict::Pass(PassReason::UserspaceOnly)
    );
}

#[test]
fn s2_3_3_ptr_and_coredns_endpoint_names_of_cluster_ip_services() {
    let t = table();
    let m = ask(&t, "1.7.254.169.in-addr.arpa.", RecordType::PTR);
    assert_eq!(answers(&m), ["PTR api.shop.svc.cluster.local."]);
    // CoreDNS names a ClusterIP service's ready endpoints too: hostname,
    // else the dashed address; the not-ready one has no name.
    let m = ask(&t, "api-b.api.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(&m), ["A 169.254.10.21"]);
    let m = ask(
        &t,
        "169-254-10-20.api.shop.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(answers(&m), ["A 169.254.10.20"]);
    assert!(nxdomain(&ask(
        &t,
        "169-254-10-22.api.shop.svc.cluster.local.",
        RecordType::A
    )));
    let m = ask(&t, "21.10.254.169.in-addr.arpa.", RecordType::PTR);
    assert_eq!(answers(&m), ["PTR api-b.api.shop.svc.cluster.local."]);
    let m = ask(&t, "20.10.254.169.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        answers(&m),
        ["PTR 169-254-10-20.api.shop.svc.cluster.local."]
    );
    // SRV of an endpoint name: its slice's ports, itself as target.
    let m = ask(&t, "api-b.api.shop.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        answers(&m),
        ["SRV 0 100 8080 api-b.api.shop.svc.cluster.local."]
    );
    // endpoint_pod_names: named after the pod when it has no hostname.
    let t = table_with(TableOptions {
        endpoint_pod_names: true,
        ..TableOptions::default()
    });
    let m = ask(
        &t,
        "api-7d9f-abcde.api.shop.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(answers(&m), ["A 169.254.10.20"]);
    // A hostname still wins over the pod's name.
    assert!(nxdomain(&ask(
        &t,
        "api-7d9f-fghij.api.shop.svc.cluster.local.",
        RecordType::A
    )));
    let m = ask(&t, "20.10.254.169.in-addr.arpa.", RecordType::PTR);
    assert_eq!(
        answers(&m),
        ["PTR api-7d9f-abcde.api.shop.svc.cluster.local."]
    );
}

// ---- 2.4 Records for a Headless Service ----

#[test]
fn s2_4_headless_srv_bare_and_named() {
    let t = table();
    for n in [
        "db.shop.svc.cluster.local.",
        "_pg._tcp.db.shop.svc.cluster.local.",
        "pg.tcp.db.shop.svc.cluster.local.",
    ] {
        let m = ask(&t, n, RecordType::SRV);
        assert_eq!(
            answers(&m),
            [
                "SRV 0 50 5432 db-0.db.shop.svc.cluster.local.",
                "SRV 0 50 5432 db-1.db.shop.svc.cluster.local."
            ],
            "{n}"
        );
        assert_eq!(m.additionals.len(), 2, "{n}");
    }
    let m = ask(&t, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(&m), ["A 169.254.10.30", "A 169.254.10.31"]);
    let m = ask(&t, "db-1.db.shop.svc.cluster.local.", RecordType::SRV);
    assert_eq!(
        answers(&m),
        ["SRV 0 100 5432 db-1.db.shop.svc.cluster.local."]
    );
}

// ---- Namespaces (CoreDNS: NODATA if it exists, NXDOMAIN otherwise) ----

#[test]
fn namespaces_exist_with_or_without_services() {
    let t = table();
    assert!(nodata(&ask(&t, "shop.svc.cluster.local.", RecordType::A)));
    assert!(nodata(&ask(&t, "empty.svc.cluster.local.", RecordType::A)));
    assert!(nxdomain(&ask(&t, "nope.svc.cluster.local.", RecordType::A)));
    // The kernel passes namespace-level names up: they are userspace's.
    assert_eq!(
        respond(&t, &query("nope.svc.cluster.local.", RecordType::A)),
        Verdict::Pass(PassReason::UnknownName)
    );
    // Manifests without Namespace objects: unknown, passed on.
    let t = RecordTable::build(
        &ZoneConfig::default(),
        &parse_manifests("c", &CLUSTER.replace("kind: Namespace", "kind: ConfigMap")).unwrap(),
        1,
    );
    assert!(nodata(&ask(&t, "shop.svc.cluster.local.", RecordType::A)));
    assert!(passed(&t, "empty.svc.cluster.local.", RecordType::A));
}

// ---- Pods (CoreDNS's `pods` option) ----

#[test]
fn pod_names_follow_the_pod_mode() {
    let name = "169-254-10-20.shop.pod.cluster.local.";
    // Default: pod names are the cluster DNS's.
    let t = table();
    assert!(passed(&t, name, RecordType::A));
    assert!(nodata(&ask(&t, "pod.cluster.local.", RecordType::A)));

    let t = table_with(TableOptions {
        pods: PodMode::Insecure,
        ..TableOptions::default()
    });
    assert_eq!(answers(&ask(&t, name, RecordType::A)), ["A 169.254.10.20"]);
    // Any address, even one no pod has; v6 by its dashed form.
    let m = ask(&t, "169-254-99-1.empty.pod.cluster.local.", RecordType::A);
    assert_eq!(answers(&m), ["A 169.254.99.1"]);
    let m = ask(&t, "fd00-10--10.shop.pod.cluster.local.", RecordType::AAAA);
    assert_eq!(answers(&m), ["AAAA fd00:10::10"]);
    assert!(nodata(&ask(&t, name, RecordType::AAAA)));
    assert!(nodata(&ask(&t, "shop.pod.cluster.local.", RecordType::A)));
    for n in [
        "169-254-10-20.nope.pod.cluster.local.",
        "nginx.shop.pod.cluster.local.",
        "nope.pod.cluster.local.",
        "a.b.c.169-254-10-20.shop.pod.cluster.local.",
    ] {
        assert!(nxdomain(&ask(&t, n, RecordType::A)), "{n}");
    }

    let mut t = table_with(TableOptions {
        pods: PodMode::Verified,
        ..TableOptions::default()
    });
    assert!(nxdomain(&ask(&t, name, RecordType::A)));
    t.set_pod_address("shop", "169.254.10.20".parse().unwrap(), true);
    assert_eq!(answers(&ask(&t, name, RecordType::A)), ["A 169.254.10.20"]);
    // Only in its own namespace.
    assert!(nxdomain(&ask(
        &t,
        "169-254-10-20.empty.pod.cluster.local.",
        RecordType::A
    )));
    t.set_pod_address("shop", "169.254.10.20".parse().unwrap(), false);
    assert!(nxdomain(&ask(&t, name, RecordType::A)));
}

// ---- Negative answers ----

#[test]
fn no_nxdomain_passes_missing_names_on_in_userspace_too() {
    let t = table_with(TableOptions {
        nxdomain: false,
        pods: PodMode::Insecure,
        ..TableOptions::default()
    });
    for n in [
        "nope.shop.svc.cluster.local.",
        "nope.svc.cluster.local.",
        "example.com.cluster.local.",
        "169-254-10-20.nope.pod.cluster.local.",
    ] {
        assert!(passed(&t, n, RecordType::A), "{n}");
    }
    // Existing names are still answered.
    let m = ask(&t, "api.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(&m), ["A 169.254.7.1"]);
}
