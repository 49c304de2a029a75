//! The table's own mechanics, in no spec section: keys and their wire
//! form, the zone configuration and its SOA, and the NXDOMAIN rule the
//! kernel shares (the completeness invariant turned into answers).

use super::name;
use crate::records::{Key, RecordTable, ZoneConfig};
use crate::source::embedded_seed;
use hickory_proto::rr::Name;

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
