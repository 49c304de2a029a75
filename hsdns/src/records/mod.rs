//! The record table: a pure function from Kubernetes objects (plus zone
//! configuration) to the names the responder answers, following the
//! Kubernetes DNS-Based Service Discovery specification (schema 1.1.0).
//!
//! The table is kept up to date one service at a time
//! ([`RecordTable::update_service`]): a service's names are exactly the
//! names under `<svc>.<ns>.svc.<zone>`, one contiguous range of the
//! canonically ordered table, so a change to one service costs the size of
//! that service, not of the cluster. The manifest loader and the API watcher
//! both feed that one function ([`RecordTable::build`] and
//! [`RecordTable::set_objects`] are loops over it), so the table never
//! depends on where the objects came from.

mod addrs;
mod entry;
mod key;
mod lookup;
mod pods;
mod ptr;
mod spec;
mod srv;
mod table;
mod view;
mod zone;
pub use addrs::V4Addrs;
pub use entry::{MapRefs, NameEntry};
pub use key::Key;
pub use lookup::NXDOMAIN_MIN_LABELS_BEFORE_SVC;
pub use pods::{PodAnswer, PodMode};
pub use spec::{dashed, slice_service};
pub use table::{Change, RecordTable, ServiceKey, SharedTable};
pub use view::{EndpointAddr, NamedPort, ServiceKind, ServiceView, SliceView};
pub use zone::{
    DNS_SCHEMA_VERSION, DNS_VERSION_TTL, SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, TableOptions,
    ZoneConfig,
};

#[cfg(test)]
mod incremental_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{embedded_seed, parse_manifests};
    use hickory_proto::rr::Name;
    use std::net::Ipv4Addr;
    use std::net::{IpAddr, Ipv6Addr};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn table(yaml: &str) -> RecordTable {
        RecordTable::build(
            &ZoneConfig::default(),
            &parse_manifests("t.yaml", yaml).unwrap(),
            1,
        )
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// The syncer finds a failed write's table entry from its wire key.
    #[test]
    fn keys_come_back_from_their_wire_form() {
        for n in ["cluster.local.", "Web-0.web.App.svc.cluster.local.", "."] {
            let k = Key::of(&name(n)).unwrap();
            assert_eq!(Key::from_wire(&k.wire()), Some(k));
        }
        assert_eq!(Key::from_wire(&[3, b'a', b'b']), None, "cut short");
        assert_eq!(Key::from_wire(&[1, 0, 0]), None, "a zero byte in a label");
    }

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

    const HEADLESS: &str = "apiVersion: v1
kind: Service
metadata: {name: db, namespace: ns}
spec: {clusterIP: None}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: ns
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [169.254.0.3]
  hostname: db-0
  conditions: {ready: true}
- addresses: [169.254.0.1]
- addresses: [169.254.0.2]
  hostname: db-2
  conditions: {ready: false}
- addresses: [169.254.0.4]
  conditions: {ready: true, terminating: true}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-2
  namespace: ns
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [169.254.0.3, 169.254.0.1]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: other
  namespace: other-ns
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [169.254.0.9]
";

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

    #[test]
    fn cluster_ip_services_use_cluster_ips_and_skip_external_name() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: ns}\n\
            spec: {clusterIP: 169.254.7.1, clusterIPs: [169.254.7.1, 'fd00::7:1']}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: old, namespace: ns}\nspec: {clusterIP: 169.254.7.2}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: ns}\nspec: {type: ExternalName, externalName: x.example}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: pending, namespace: ns}\nspec: {ports: [{port: 80}]}\n";
        let t = table(yaml);
        let api = t.get(&name("api.ns.svc.cluster.local.")).unwrap();
        assert_eq!(api.a, [v4("169.254.7.1")]);
        assert_eq!(api.aaaa, [v6("fd00::7:1")]);
        assert_eq!(
            t.get(&name("old.ns.svc.cluster.local.")).unwrap().a,
            [v4("169.254.7.2")]
        );
        let ext = t.get(&name("ext.ns.svc.cluster.local.")).unwrap();
        assert_eq!(ext.cname(), Some(&name("x.example.")));
        assert!(!ext.kernel_answerable() && ext.a.is_empty() && ext.aaaa.is_empty());
        assert!(t.get(&name("pending.ns.svc.cluster.local.")).is_none());
        // fixed names, the namespace, api, old, ext
        assert_eq!(t.len(), 5 + 1 + 3);
    }

    #[test]
    fn zone_and_ttl_come_from_config_and_are_normalised() {
        let cfg = ZoneConfig {
            zone: Name::from_ascii("Example.Internal").unwrap(),
            ttl: 30,
        };
        let t = RecordTable::build(&cfg, &embedded_seed(), 1);
        assert!(t.zone().zone.eq_case(&name("example.internal.")));
        assert_eq!(t.zone().ttl, 30);
        assert!(
            t.get(&name("nginx-headless.test.svc.example.internal."))
                .is_some()
        );
        assert!(
            t.get(&name("nginx-headless.test.svc.cluster.local."))
                .is_none()
        );
        assert!(ZoneConfig::new(".", 5).is_err());
        let long = vec!["a".repeat(60); 4].join(".");
        assert!(ZoneConfig::new(&long, 5).is_err());
        assert_eq!(
            ZoneConfig::new("Cluster.Local", 5).unwrap(),
            ZoneConfig::default()
        );
    }

    #[test]
    fn unvalidated_objects_with_bad_names_are_skipped_not_fatal() {
        let mut objects = embedded_seed();
        let mut bad = objects.services[0].clone();
        bad.metadata.name = Some("Bad_Name".into());
        objects.services.push(bad);
        objects.slices[0].endpoints[0].hostname = Some("x".repeat(64));
        let t = RecordTable::build(&ZoneConfig::default(), &objects, 1);
        assert!(
            t.get(&name("nginx-0.nginx-headless.test.svc.cluster.local."))
                .is_some()
        ); // via the IPv6 slice
        assert!(
            t.get(&name("nginx-0.nginx-headless.test.svc.cluster.local."))
                .unwrap()
                .a
                .is_empty()
        );
        // the bad hostname's address still belongs to the service
        assert_eq!(
            t.get(&name("nginx-headless.test.svc.cluster.local."))
                .unwrap()
                .a
                .len(),
            3
        );
        assert_eq!(t.len(), 12);
    }

    #[test]
    fn soa_follows_the_zone_case_given() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 77);
        let soa = t.soa(&name("Cluster.LOCAL."));
        assert!(soa.mname.eq_case(&name("ns.dns.Cluster.LOCAL.")));
        assert!(soa.rname.eq_case(&name("hostmaster.Cluster.LOCAL.")));
        assert_eq!(
            (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
            (77, 7200, 1800, 86400, 5)
        );
    }

    fn srv_of(t: &RecordTable, n: &str) -> Vec<(u16, u16, u16, String)> {
        t.srv(&name(n))
            .unwrap()
            .into_iter()
            .map(|r| (r.priority, r.weight, r.port, r.target.to_ascii()))
            .collect()
    }

    #[test]
    fn fixed_names_exist_without_addresses() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1);
        for n in [
            "cluster.local.",
            "svc.cluster.local.",
            "test.svc.cluster.local.",
            "_tcp.nginx-headless.test.svc.cluster.local.",
        ] {
            let e = t.get(&name(n)).unwrap();
            assert!(
                e.a.is_empty() && e.aaaa.is_empty() && e.kernel_answerable(),
                "{n}"
            );
        }
        let v = t.get(&name("dns-version.cluster.local.")).unwrap();
        assert_eq!(v.txt(), Some("1.1.0"));
        assert!(v.kernel_answerable());
        let ns = t.get(&name("ns.dns.cluster.local.")).unwrap();
        assert!(ns.upstream_only() && !ns.kernel_answerable());
        assert!(t.get(&name("dns.cluster.local.")).is_none());
        // CoreDNS answers NODATA for `pod.<zone>`; names below it are the
        // pod modes' (records::pods).
        assert!(t.get(&name("pod.cluster.local.")).is_some());
        // Only names under the zone are iterated (PTR names are apart).
        assert!(t.iter().all(|(n, _)| t.zone().zone.zone_of(&n)));
        assert_eq!(t.ptr_len(), 6);
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

    const CLUSTER_IP: &str = "apiVersion: v1
kind: Service
metadata: {name: api, namespace: ns}
spec:
  clusterIP: 169.254.7.1
  clusterIPs: [169.254.7.1, 'fd00::7:1']
  ports:
  - {name: HTTPS, port: 443}
  - {name: dns, port: 53, protocol: UDP}
  - {port: 8080}
";

    #[test]
    fn cluster_ip_srv_targets_the_service_and_ptr_names_it() {
        let t = table(CLUSTER_IP);
        // Two cluster IPs: CoreDNS merges two identical records, weight 50.
        assert_eq!(
            srv_of(&t, "_https._tcp.api.ns.svc.cluster.local."),
            [(0, 50, 443, "api.ns.svc.cluster.local.".to_owned())]
        );
        assert_eq!(
            srv_of(&t, "_dns._udp.api.ns.svc.cluster.local."),
            [(0, 50, 53, "api.ns.svc.cluster.local.".to_owned())]
        );
        assert!(t.get(&name("_udp.api.ns.svc.cluster.local.")).is_some());
        // Unnamed ports have no SRV record.
        assert_eq!(t.iter().filter(|(_, e)| e.has_srv()).count(), 2);
        let api = Some(vec![name("api.ns.svc.cluster.local.")]);
        assert_eq!(t.ptr_targets("169.254.7.1".parse().unwrap()), api);
        assert_eq!(t.ptr_targets("fd00::7:1".parse().unwrap()), api);
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

    #[test]
    fn headless_without_ready_endpoints_has_no_name_but_its_namespace_does() {
        let yaml = HEADLESS.replace("ready: true", "ready: false").replace(
            "- addresses: [169.254.0.1]\n",
            "- addresses: [169.254.0.1]\n  conditions: {ready: false}\n",
        );
        let yaml = yaml.split("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-2").next().unwrap();
        let t = table(yaml);
        assert!(t.get(&name("db.ns.svc.cluster.local.")).is_none());
        assert!(t.is_nxdomain(&name("db.ns.svc.cluster.local.")));
        assert!(t.get(&name("ns.svc.cluster.local.")).is_some());
        assert_eq!(t.ptr_len(), 0);
    }

    #[test]
    fn is_nxdomain_follows_the_kernel_rule() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1);
        let nx = |n: &str| t.is_nxdomain(&name(n));
        // The search-list misses of `nginx-0.nginx-headless.test` (ndots:5,
        // search test.svc.cluster.local svc.cluster.local cluster.local):
        // the first is tried before the hit, the others when it is absent.
        assert!(nx("nginx-0.nginx-headless.test.test.svc.cluster.local."));
        assert!(!nx("nginx-0.nginx-headless.test.svc.cluster.local.")); // the hit
        assert!(nx("nginx-0.nginx-headless.test.cluster.local."));
        // `example.com` from namespace test.
        assert!(nx("example.com.test.svc.cluster.local."));
        assert!(nx("example.com.svc.cluster.local."));
        assert!(nx("example.com.cluster.local."));
        assert!(nx("nginx-9.nginx-headless.test.svc.cluster.local."));
        assert!(nx("_web._udp.nginx-headless.test.svc.cluster.local."));
        assert!(nx("dns.cluster.local."));
        // Left alone: pod names, namespace levels, the apex, other zones.
        for n in [
            "169-254-10-10.test.pod.cluster.local.",
            "pod.cluster.local.",
            "other.svc.cluster.local.",
            "svc.cluster.local.",
            "cluster.local.",
            "local.",
            "example.com.",
            "10.10.254.169.in-addr.arpa.",
        ] {
            assert!(!nx(n), "{n}");
        }
        // Existing names never are, in any case.
        for (n, _) in t.iter() {
            assert!(!t.is_nxdomain(&n), "{n}");
            assert!(
                !t.is_nxdomain(&n.to_ascii().to_uppercase().parse().unwrap()),
                "{n}"
            );
        }
    }
}
