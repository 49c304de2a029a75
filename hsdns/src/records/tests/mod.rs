//! The record table's unit tests, grouped as hickory-dns groups its
//! conformance tests by RFC section: one file per section of the
//! Kubernetes DNS-Based Service Discovery specification
//! (<https://github.com/kubernetes/dns/blob/master/docs/specification.md>),
//! so a reader checking a section finds every test of it in one place,
//! and apart from them the tests of the table's own mechanics (keys,
//! lookups, the negative-answer rule), of hostile input, and the
//! incremental = full build proptests.
//!
//! Section 2.6 (the deprecated `<a>-<b>-<c>-<d>.<ns>.pod.<zone>` records)
//! is tested beside its code, in `records/pods.rs`; the answers on the
//! wire, section by section, in `dns/conformance.rs`.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

use super::{RecordTable, ZoneConfig};
use crate::source::parse_manifests;

mod hostile;
mod incremental;
mod spec_2_1_definitions;
mod spec_2_2_schema_version;
mod spec_2_3_cluster_ip;
mod spec_2_4_headless;
mod spec_2_5_external_name;
mod table;

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

fn srv_of(t: &RecordTable, n: &str) -> Vec<(u16, u16, u16, String)> {
    t.srv(&name(n))
        .unwrap()
        .into_iter()
        .map(|r| (r.priority, r.weight, r.port, r.target.to_ascii()))
        .collect()
}

/// A headless service with two slices: ready, not ready, terminating and
/// unconditioned endpoints, with and without hostnames, an address listed
/// twice, and a slice of another namespace's service of the same name.
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
