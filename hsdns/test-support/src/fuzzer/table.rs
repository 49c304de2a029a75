//! The record table the fuzzer runs against: every kind of name the kernel
//! path treats differently, and names at each boundary the program has.

use hsdns::{
    k8s::Objects,
    records::{RecordTable, ZoneConfig},
    source,
};

use crate::manifests::headless_yaml;

/// Serial of the SOA in negative answers (any fixed value).
const SERIAL: u32 = 2024;

/// The seed scenario plus:
/// - headless services of 12, 13, 40, 76, 77 and 100 IPv4 addresses (the
///   edges of the answer classes and of what fits a UDP reply);
/// - a dual-stack headless service with 6 and one with 7 IPv6 addresses
///   (the medium class holds 6 AAAA records);
/// - a ClusterIP service (IPv4 and IPv6), an ExternalName service (a CNAME:
///   userspace only), a headless service without ready endpoints (no name);
/// - pod names whose wire length is 47, 48, 49, 111, 112, 113 (around the
///   name tiers), 63, 64, 65, 127, 128, 129 (around the tiers before
///   TYPES_VERSION 4) and the longest the Kubernetes name rules allow
///   (211).
pub fn table() -> RecordTable {
    RecordTable::build(&ZoneConfig::default(), &objects(), SERIAL)
}

pub fn objects() -> Objects {
    let mut objects = source::embedded_seed();
    let mut add = |origin: &str, yaml: &str| {
        let o = source::parse_manifests(origin, yaml)
            .unwrap_or_else(|e| panic!("fuzz table {origin}: {e:#}"));
        objects.services.extend(o.services);
        objects.slices.extend(o.slices);
    };
    for n in [12, 13, 40, 76, 77, 100] {
        let name = format!("h{n}");
        add(&name, &headless_yaml("big", &name, n));
    }
    add("v6-6", &dual_stack("v6six", 6));
    add("v6-7", &dual_stack("v6seven", 7));
    add("misc", MISC);
    // `<h>.t.tiers.svc.cluster.local.` is h + 28 bytes long in wire
    // format; under a 63-byte namespace and service `t2`, h + 87; under a
    // 63-byte namespace and a 63-byte service, h + 148.
    let ns63 = format!("n{}", "s".repeat(62));
    let svc63 = format!("s{}", "v".repeat(62));
    add(
        "tiers",
        &hostnames("tiers", "t", &[19, 20, 21, 35, 36, 37], 1, "169.254.40"),
    );
    add(
        "tiers2",
        &hostnames(&ns63, "t2", &[24, 25, 26, 40, 41, 42], 1, "169.254.41"),
    );
    add("tiers3", &hostnames(&ns63, &svc63, &[63], 1, "169.254.42"));
    objects
}

const MISC: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec:
  clusterIP: 169.254.50.1
  clusterIPs: [169.254.50.1, fd00:50::1]
  ipFamilies: [IPv4, IPv6]
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: prod}
spec: {type: ExternalName, externalName: www.example.test}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: prod}
spec: {clusterIP: None, clusterIPs: [None]}
";

/// A dual-stack headless service with `n` IPv4 and `n` IPv6 endpoints.
fn dual_stack(name: &str, n: usize) -> String {
    let mut v4 = String::new();
    let mut v6 = String::new();
    for i in 0..n {
        v4.push_str(&format!(
            "  - addresses: [\"169.254.60.{}\"]\n    conditions: {{ready: true}}\n",
            1 + i
        ));
        v6.push_str(&format!(
            "  - addresses: [\"fd00:60::{:x}\"]\n    conditions: {{ready: true}}\n",
            1 + i
        ));
    }
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: dual}}\n\
         spec: {{clusterIP: None, clusterIPs: [None], ipFamilies: [IPv4, IPv6]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-4, namespace: dual, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nendpoints:\n{v4}---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-6, namespace: dual, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv6\nendpoints:\n{v6}"
    )
}

/// A headless service `svc` in `ns` whose endpoints have hostnames of the
/// given lengths, `per` addresses each, from `net`.1 on.
fn hostnames(ns: &str, svc: &str, lengths: &[usize], per: usize, net: &str) -> String {
    let mut eps = String::new();
    let mut n = 0;
    for (i, &len) in lengths.iter().enumerate() {
        let host = format!("{}{}", (b'a' + i as u8) as char, "h".repeat(len - 1));
        for _ in 0..per {
            n += 1;
            eps.push_str(&format!(
                "  - addresses: [\"{net}.{n}\"]\n    hostname: {host}\n    conditions: {{ready: true}}\n"
            ));
        }
    }
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: {ns}}}\n\
         spec: {{clusterIP: None, clusterIPs: [None], ports: [{{name: web, port: 80}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {svc}-x, namespace: {ns}, labels: {{kubernetes.io/service-name: {svc}}}}}\n\
         addressType: IPv4\nports: [{{name: web, port: 80}}]\nendpoints:\n{eps}"
    )
}
