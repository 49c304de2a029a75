//! Spec section 2.3, "Records for a Service with ClusterIP":
//!
//! > 2.3.1 `A` Record: `<service>.<ns>.svc.<zone>. <ttl> IN A <cluster-ip>`
//!
//! > 2.3.2 `SRV` Records: for each port in the Service with name `<port>`
//! > and number `<port-number>` using protocol `<proto>`:
//! > `_<port>._<proto>.<service>.<ns>.svc.<zone>. <ttl> IN SRV <weight>
//! > <priority> <port-number> <service>.<ns>.svc.<zone>.`
//! > Unnamed ports do not have an `SRV` record.
//!
//! > 2.3.3 `PTR` Record: `<d>.<c>.<b>.<a>.in-addr.arpa. <ttl> IN PTR
//! > <service>.<ns>.svc.<zone>.`
//!
//! `AAAA` for the IPv6 cluster IP of a dual-stack service, and `ip6.arpa.`
//! PTR names for it, as CoreDNS serves them.

use super::{name, srv_of, table, v4, v6};

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
