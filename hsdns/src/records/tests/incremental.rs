//! The incremental table against the full build: whatever sequence of
//! cluster states the table is walked through, one service at a time, it
//! must end equal to a table built from scratch, and every update must
//! report exactly the names whose entries differ (the syncer writes only
//! those, so a missed one would leave the kernel answering stale records).

use std::collections::BTreeMap;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{ObjectReference, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;

use crate::k8s::{Objects, SERVICE_NAME_LABEL};
use crate::records::*;

/// One service of the generated cluster.
#[derive(Clone, Debug)]
enum Kind {
    Headless { publish_not_ready: bool },
    ClusterIp(u8),
    ExternalName,
    NoAddress,
}

/// An endpoint: (hostname index or none, address index, ready).
type Ep = (Option<u8>, u8, bool);

#[derive(Clone, Debug)]
struct Svc {
    ns: u8,
    name: u8,
    kind: Option<Kind>,
    /// Slices by name index: (IPv6?, named port?, endpoints).
    slices: BTreeMap<u8, (bool, bool, Vec<Ep>)>,
}

fn meta(ns: u8, name: String, svc: Option<u8>) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(format!("ns{ns}")),
        name: Some(name),
        labels: svc.map(|s| [(SERVICE_NAME_LABEL.to_string(), format!("s{s}"))].into()),
        ..Default::default()
    }
}

/// A cluster state: its services, and which of the namespaces ns0..ns2
/// have a Namespace object.
type Cluster = (Vec<Svc>, [bool; 3]);

/// The objects of a state; `listed`: the source lists Namespaces (a source
/// either always does or never does).
fn objects(cluster: &Cluster, listed: bool) -> Objects {
    let (cluster, namespaces) = cluster;
    let mut o = Objects {
        namespaces: listed.then_some(*namespaces).map(|present| {
            (0..3)
                .filter(|&i| present[i])
                .map(|i| format!("ns{i}"))
                .collect()
        }),
        ..Objects::default()
    };
    for s in cluster {
        if let Some(kind) = &s.kind {
            let mut spec = ServiceSpec {
                // A named and an unnamed port: SRV names, and the bare
                // name's SRV records.
                ports: Some(vec![
                    ServicePort {
                        name: Some("web".into()),
                        port: 80,
                        ..Default::default()
                    },
                    ServicePort {
                        port: 9,
                        protocol: Some("UDP".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            };
            match kind {
                Kind::Headless { publish_not_ready } => {
                    spec.cluster_ip = Some("None".into());
                    spec.publish_not_ready_addresses = Some(*publish_not_ready);
                }
                // Few addresses, so services share them (PTR records with
                // several targets).
                Kind::ClusterIp(ip) => {
                    spec.cluster_ip = Some(format!("169.254.9.{}", ip % 4));
                }
                Kind::ExternalName => {
                    spec.type_ = Some("ExternalName".into());
                    spec.external_name = Some("example.test".into());
                }
                Kind::NoAddress => {}
            }
            o.services.push(Service {
                metadata: meta(s.ns, format!("s{}", s.name), None),
                spec: Some(spec),
                ..Default::default()
            });
        }
        for (i, (v6, port, eps)) in &s.slices {
            o.slices.push(EndpointSlice {
                metadata: meta(s.ns, format!("s{}-{i}", s.name), Some(s.name)),
                address_type: if *v6 { "IPv6" } else { "IPv4" }.into(),
                ports: port.then(|| {
                    vec![EndpointPort {
                        name: Some("web".into()),
                        port: Some(8080),
                        ..Default::default()
                    }]
                }),
                endpoints: eps
                    .iter()
                    .map(|(host, ip, ready)| Endpoint {
                        addresses: vec![if *v6 {
                            format!("fd00:10::{}", ip % 6)
                        } else {
                            format!("169.254.10.{}", ip % 6)
                        }],
                        hostname: host.filter(|h| h % 4 != 3).map(|h| format!("h{}", h % 3)),
                        // Named after its pod with endpoint_pod_names when
                        // it has no hostname.
                        target_ref: host.map(|h| ObjectReference {
                            kind: Some("Pod".into()),
                            name: Some(format!("p{}", h % 5)),
                            ..Default::default()
                        }),
                        conditions: Some(EndpointConditions {
                            ready: Some(*ready),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            });
        }
    }
    o
}

fn kind() -> impl Strategy<Value = Option<Kind>> {
    prop_oneof![
        Just(None),
        any::<bool>().prop_map(|p| Some(Kind::Headless {
            publish_not_ready: p
        })),
        any::<bool>().prop_map(|p| Some(Kind::Headless {
            publish_not_ready: p
        })),
        any::<u8>().prop_map(|ip| Some(Kind::ClusterIp(ip))),
        Just(Some(Kind::ExternalName)),
        Just(Some(Kind::NoAddress)),
    ]
}

fn svc() -> impl Strategy<Value = Svc> {
    let ep = (
        proptest::option::of(any::<u8>()),
        any::<u8>(),
        any::<bool>(),
    );
    let slice = (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(ep, 0..4),
    );
    (
        0u8..2,
        0u8..3,
        kind(),
        proptest::collection::btree_map(0u8..3, slice, 0..3),
    )
        .prop_map(|(ns, name, kind, slices)| Svc {
            ns,
            name,
            kind,
            slices,
        })
}

/// A cluster state: services (and slices) keyed by (namespace, name), and
/// the Namespace objects.
fn cluster() -> impl Strategy<Value = Cluster> {
    (proptest::collection::vec(svc(), 0..6), any::<[bool; 3]>()).prop_map(|(v, ns)| {
        let mut seen = std::collections::BTreeSet::new();
        let svcs = v
            .into_iter()
            .filter(|s| seen.insert((s.ns, s.name)))
            .collect();
        (svcs, ns)
    })
}

fn snapshot(t: &RecordTable) -> BTreeMap<Key, NameEntry> {
    t.keys().map(|(k, e)| (k.clone(), e.clone())).collect()
}

proptest! {
    #[test]
    fn incremental_updates_equal_a_full_build(
        states in proptest::collection::vec(cluster(), 1..6),
        pod_names in any::<bool>(),
        ns_listed in any::<bool>(),
    ) {
        let cfg = ZoneConfig::default();
        let opts = TableOptions { endpoint_pod_names: pod_names, ..TableOptions::default() };
        let mut t = RecordTable::new_with(&cfg, &opts, 7);
        t.set_complete(true);
        for state in &states {
            let o = objects(state, ns_listed);
            // As if synced: every entry has map references, so an unchanged
            // one must not be reported.
            let keys: Vec<Key> = t.keys().map(|(k, _)| k.clone()).collect();
            for k in &keys {
                t.entry_mut(k).unwrap().1.refs = MapRefs { a: 1, aaaa: 2 };
            }
            let before = snapshot(&t);
            let mut changes = Vec::new();
            t.set_objects(&o, &mut changes);
            let after = snapshot(&t);

            let full = RecordTable::build_with(&cfg, &opts, &o, 7);
            prop_assert!(t == full, "incremental {:?}\nfull {:?}", after.keys(), snapshot(&full).keys());

            let mut reported: Vec<&Key> = changes.iter().map(|c| &c.key).collect();
            reported.sort();
            let n = reported.len();
            reported.dedup();
            prop_assert_eq!(n, reported.len(), "a name reported twice");
            let differ: Vec<&Key> = before
                .keys()
                .chain(after.keys())
                .filter(|n| before.get(*n) != after.get(*n))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            prop_assert_eq!(reported, differ);
            for c in &changes {
                prop_assert_eq!(c.old.as_ref(), before.get(&c.key));
                if let Some(old) = &c.old {
                    prop_assert_eq!(old.refs, MapRefs { a: 1, aaaa: 2 });
                }
            }
            // Unchanged names kept their references.
            for (k, e) in t.keys() {
                if !changes.iter().any(|c| &c.key == k) {
                    prop_assert_eq!(e.refs, MapRefs { a: 1, aaaa: 2 }, "{:?}", k);
                }
            }
        }
    }
}

fn any_name() -> impl Strategy<Value = Name> {
    // Few, short labels of a small alphabet, upper case among them: equal
    // labels, prefixes and case differences all occur.
    proptest::collection::vec("[abAB-]{1,3}", 0..4).prop_map(|labels| {
        let mut n = Name::from_labels(labels.iter().map(|l| l.as_bytes())).unwrap();
        n.set_fqdn(true);
        n
    })
}

proptest! {
    #[test]
    fn keys_order_and_nest_like_names(a in any_name(), b in any_name()) {
        let (ka, kb) = (Key::of(&a).unwrap(), Key::of(&b).unwrap());
        prop_assert_eq!(ka.cmp(&kb), a.cmp(&b), "{} {}", a, b);
        prop_assert_eq!(ka.name(), a.to_lowercase());
        prop_assert_eq!(ka.wire(), crate::maps::name_key(&a).unwrap());
        prop_assert_eq!(ka.subtree().contains(&kb), a.zone_of(&b), "{} {}", a, b);
    }
}
