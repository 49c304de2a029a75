//! Spec section 2.1, "Definitions": the words the record sections use.
//!
//! > _hostname_: In order of precedence, the _hostname_ of an endpoint is:
//! > the value of the endpoint's `hostname` field; a unique,
//! > system-assigned identifier for the endpoint. [...]
//!
//! > _ready_: An endpoint is considered _ready_ if its address is in the
//! > `addresses` field of the EndpointSubset object, or the corresponding
//! > service has the `service.alpha.kubernetes.io/tolerate-unready-endpoints`
//! > annotation set to `true`.
//!
//! > All comparisons between query data and data in Kubernetes are
//! > **case-insensitive**.
//!
//! The identifier of an endpoint without a hostname is CoreDNS's: its
//! dashed address. "Ready" is read from EndpointSlice conditions, and the
//! annotation's successor is `publishNotReadyAddresses`.

use super::{HEADLESS, name, srv_of, table, v4, v6};
use crate::records::{RecordTable, ZoneConfig, dashed};
use crate::source::embedded_seed;

#[test]
fn lookups_ignore_case_and_keys_are_lowercase_fqdns() {
    let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1);
    assert!(
        t.get(&name("NGINX-0.Nginx-Headless.TEST.svc.Cluster.Local."))
            .is_some()
    );
    assert!(
        t.get(&name("nginx-0.nginx-headless.test.svc.cluster.local"))
            .is_some()
    );
    assert!(
        t.get(&name("nginx-3.nginx-headless.test.svc.cluster.local."))
            .is_none()
    );
    for (n, _) in t.iter() {
        assert!(n.is_fqdn());
        assert!(n.eq_case(&n.to_lowercase()), "{n}");
    }
}

#[test]
fn publish_not_ready_addresses_publishes_every_endpoint() {
    let yaml = HEADLESS.replace(
        "spec: {clusterIP: None}",
        "spec: {clusterIP: None, publishNotReadyAddresses: true}",
    );
    let t = table(&yaml);
    let svc = t.get(&name("db.ns.svc.cluster.local.")).unwrap();
    assert_eq!(
        svc.a,
        [
            v4("169.254.0.1"),
            v4("169.254.0.2"),
            v4("169.254.0.3"),
            v4("169.254.0.4")
        ]
    );
    assert_eq!(
        t.get(&name("db-2.db.ns.svc.cluster.local.")).unwrap().a,
        [v4("169.254.0.2")]
    );
}

const NAMELESS: &str = "apiVersion: v1
kind: Service
metadata: {name: h, namespace: ns}
spec: {clusterIP: None, ports: [{name: web, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: h-4, namespace: ns, labels: {kubernetes.io/service-name: h}}
addressType: IPv4
ports: [{name: web, port: 8080, protocol: TCP}, {port: 9}]
endpoints:
- addresses: [169.254.10.10]
- addresses: [169.254.10.11]
  hostname: h-1
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: h-6, namespace: ns, labels: {kubernetes.io/service-name: h}}
addressType: IPv6
ports: [{name: web, port: 8080, protocol: TCP}]
endpoints:
- addresses: ['fd00:10::']
- addresses: ['fd00::1:0:0:10']
";

#[test]
fn endpoints_without_hostname_are_named_after_their_address() {
    assert_eq!(dashed("169.254.10.10".parse().unwrap()), "169-254-10-10");
    assert_eq!(dashed("fd00:10::10".parse().unwrap()), "fd00-10--10");
    assert_eq!(dashed("fd00:10::".parse().unwrap()), "fd00-10--0");
    let t = table(NAMELESS);
    let get = |n: &str| t.get(&name(n)).unwrap();
    assert_eq!(
        get("169-254-10-10.h.ns.svc.cluster.local.").a,
        [v4("169.254.10.10")]
    );
    assert_eq!(get("h-1.h.ns.svc.cluster.local.").a, [v4("169.254.10.11")]);
    assert_eq!(
        get("fd00-10--0.h.ns.svc.cluster.local.").aaaa,
        [v6("fd00:10::")]
    );
    assert_eq!(
        get("fd00--1-0-0-10.h.ns.svc.cluster.local.").aaaa,
        [v6("fd00::1:0:0:10")]
    );
    // Headless SRV carries the slices' (pod) ports, as CoreDNS's does;
    // four endpoints: weight 25.
    assert_eq!(
        srv_of(&t, "_web._tcp.h.ns.svc.cluster.local."),
        [
            "h-1.h.ns.svc.cluster.local.",
            "169-254-10-10.h.ns.svc.cluster.local.",
            "fd00--1-0-0-10.h.ns.svc.cluster.local.",
            "fd00-10--0.h.ns.svc.cluster.local.",
        ]
        .map(|n| (0, 25, 8080, n.to_owned()))
    );
    assert_eq!(
        t.ptr_targets("169.254.10.10".parse().unwrap()),
        Some(vec![name("169-254-10-10.h.ns.svc.cluster.local.")])
    );
}
