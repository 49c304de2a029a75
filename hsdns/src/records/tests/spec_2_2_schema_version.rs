//! Spec sections 1, "Schema Version" ("This document describes version
//! 1.1.0 of the schema"), and 2.2, "Record for Schema Version":
//!
//! > There must be a `TXT` record named `dns-version.<zone>.` that
//! > contains the semantic version of the DNS schema in use in this
//! > cluster.
//! > `dns-version.<zone>. <ttl> IN TXT <schema-version>`
//!
//! With it, the other names of the zone that exist without records of
//! their own (the table's completeness invariant needs them listed).

use super::name;
use crate::records::{DNS_SCHEMA_VERSION, DNS_VERSION_TTL, RecordTable, ZoneConfig};
use crate::source::embedded_seed;

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
fn dns_version_announces_schema_1_1_0_in_any_zone_before_any_object() {
    assert_eq!(DNS_SCHEMA_VERSION, "1.1.0");
    // The spec's example TTL, CoreDNS's.
    assert_eq!(DNS_VERSION_TTL, 28800);
    let zone = ZoneConfig::new("Example.Internal", 30).unwrap();
    // A table with no object yet (the live source's first lists still
    // coming in) has the record all the same.
    let t = RecordTable::new(&zone, 1);
    let v = t.get(&name("DNS-Version.example.internal.")).unwrap();
    assert_eq!(v.txt(), Some("1.1.0"));
    assert!(v.a.is_empty() && v.aaaa.is_empty() && v.cname().is_none());
    assert!(t.get(&name("dns-version.cluster.local.")).is_none());
}
