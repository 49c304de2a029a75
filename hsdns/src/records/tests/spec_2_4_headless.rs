//! Spec section 2.4, "Records for a Headless Service":
//!
//! > 2.4.1 `A` Records: an `A` record for each _ready_ endpoint of the
//! > headless Service [...]. If there are no _ready_ endpoints for the
//! > headless Service, the answer should be `NXDOMAIN`. [...] There must
//! > also be an `A` record [...] for each _ready_ endpoint with _hostname_
//! > of `<hostname>`: `<hostname>.<service>.<ns>.svc.<zone>. <ttl> IN A
//! > <endpoint-ip>`
//!
//! > 2.4.2 `SRV` Records: for each combination of _ready_ endpoint with
//! > _hostname_ of `<hostname>`, and port in the Service with name `<port>`
//! > [...]: `_<port>._<proto>.<service>.<ns>.svc.<zone>. <ttl> IN SRV
//! > <weight> <priority> <port-number> <hostname>.<service>.<ns>.svc.<zone>.`
//!
//! > 2.4.3 `PTR` Records: given a _ready_ endpoint with _hostname_ of
//! > `<hostname>` and IP address `<a>.<b>.<c>.<d>`:
//! > `<d>.<c>.<b>.<a>.in-addr.arpa. <ttl> IN PTR
//! > <hostname>.<service>.<ns>.svc.<zone>.`
//!
//! The embedded seed is a dual-stack headless service of three pods.

use std::net::IpAddr;

use hickory_proto::rr::Name;

use super::{HEADLESS, name, srv_of, table, v4, v6};
use crate::records::{RecordTable, ZoneConfig};
use crate::source::embedded_seed;

#[test]
fn seed_table_has_the_service_and_each_pod_dual_stack() {
    let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 42);
    assert_eq!(t.serial(), 42);
    // apex, svc, ns.dns, dns-version, the namespace, the service, three
    // pods, `_tcp` and `_web._tcp`.
    assert_eq!(t.len(), 12);
    let svc = t
        .get(&name("nginx-headless.test.svc.cluster.local."))
        .unwrap();
    assert_eq!(
        svc.a,
        [
            v4("169.254.10.10"),
            v4("169.254.10.11"),
            v4("169.254.10.12")
        ]
    );
    assert_eq!(
        svc.aaaa,
        [v6("fd00:10::10"), v6("fd00:10::11"), v6("fd00:10::12")]
    );
    for (i, host) in ["nginx-0", "nginx-1", "nginx-2"].iter().enumerate() {
        let e = t
            .get(&name(&format!(
                "{host}.nginx-headless.test.svc.cluster.local."
            )))
            .unwrap();
        assert_eq!(e.a, [v4(&format!("169.254.10.{}", 10 + i))]);
        assert_eq!(e.aaaa, [v6(&format!("fd00:10::{}", 10 + i))]);
    }
}

#[test]
fn headless_uses_ready_endpoints_of_its_slices_sorted_and_deduplicated() {
    let t = table(HEADLESS);
    let svc = t.get(&name("db.ns.svc.cluster.local.")).unwrap();
    assert_eq!(svc.a, [v4("169.254.0.1"), v4("169.254.0.3")]);
    assert!(svc.aaaa.is_empty());
    assert_eq!(
        t.get(&name("db-0.db.ns.svc.cluster.local.")).unwrap().a,
        [v4("169.254.0.3")]
    );
    // not ready: no hostname record either
    assert!(t.get(&name("db-2.db.ns.svc.cluster.local.")).is_none());
    // the endpoint without a hostname is named after its address
    assert_eq!(
        t.get(&name("169-254-0-1.db.ns.svc.cluster.local."))
            .unwrap()
            .a,
        [v4("169.254.0.1")]
    );
    // fixed names, the namespace, the service, three endpoints (db-0,
    // and the two hostname-less ones: 169.254.0.3 also appears without
    // a hostname in db-2); no ports so no SRV
    assert_eq!(t.len(), 5 + 1 + 1 + 3);
}

#[test]
fn headless_without_ready_endpoints_has_no_name_but_its_namespace_does() {
    let yaml = HEADLESS.replace("ready: true", "ready: false").replace(
        "- addresses: [169.254.0.1]\n",
        "- addresses: [169.254.0.1]\n  conditions: {ready: false}\n",
    );
    let yaml = yaml
        .split("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-2")
        .next()
        .unwrap();
    let t = table(yaml);
    assert!(t.get(&name("db.ns.svc.cluster.local.")).is_none());
    assert!(t.is_nxdomain(&name("db.ns.svc.cluster.local.")));
    assert!(t.get(&name("ns.svc.cluster.local.")).is_some());
    assert_eq!(t.ptr_len(), 0);
}

#[test]
fn seed_srv_and_ptr_follow_the_spec_and_coredns() {
    let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1);
    // 3 endpoints x 2 families: CoreDNS's weight is floor(100 / 6).
    assert_eq!(
        srv_of(&t, "_web._tcp.nginx-headless.test.svc.cluster.local."),
        [0, 1, 2].map(|i| (
            0,
            16,
            80,
            format!("nginx-{i}.nginx-headless.test.svc.cluster.local.")
        ))
    );
    // No such port: no record (and no name, so NXDOMAIN).
    assert_eq!(
        t.srv(&name("_web._udp.nginx-headless.test.svc.cluster.local.")),
        Some(vec![])
    );
    assert!(
        t.get(&name("_web._udp.nginx-headless.test.svc.cluster.local."))
            .is_none()
    );
    // The bare service name lists every port, as CoreDNS does.
    assert_eq!(
        srv_of(&t, "nginx-headless.test.svc.cluster.local."),
        srv_of(&t, "_web._tcp.nginx-headless.test.svc.cluster.local.")
    );
    let pod0 = vec![name("nginx-0.nginx-headless.test.svc.cluster.local.")];
    assert_eq!(
        t.ptr(&name("10.10.254.169.in-addr.arpa.")),
        Some(pod0.clone())
    );
    assert_eq!(
        t.ptr(&name("10.10.254.169.IN-ADDR.arpa")),
        Some(pod0.clone())
    );
    assert_eq!(
        t.ptr(&Name::from(IpAddr::V6(v6("fd00:10::10")))),
        Some(pod0)
    );
    // Not canonical, partial, or unknown: no PTR.
    assert!(t.ptr(&name("010.10.254.169.in-addr.arpa.")).is_none());
    assert!(t.ptr(&name("10.254.169.in-addr.arpa.")).is_none());
    assert!(t.ptr(&name("9.10.254.169.in-addr.arpa.")).is_none());
}
