//! The index's dirty marking against the truth: after any sequence of
//! watch events (changes, deletions, slices moving between services,
//! relists that miss deletions), the services it reports, applied to a
//! table one by one, give the table a full build of the cluster gives.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceSpec;
use k8s_openapi::api::discovery::v1::Endpoint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::prelude::*;

use super::*;
use crate::k8s::{Objects, SERVICE_NAME_LABEL};
use crate::records::{RecordTable, ZoneConfig};

fn service(name: u8, headless: bool) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(format!("s{name}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(if headless {
                "None".into()
            } else {
                format!("169.254.9.{name}")
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn slice(name: u8, svc: u8, ips: &[u8]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(format!("x{name}")),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), format!("s{svc}"))].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                addresses: vec![format!("169.254.10.{ip}")],
                hostname: Some(format!("h{ip}")),
                ..Default::default()
            })
            .collect(),
        ports: None,
    }
}

#[derive(Clone, Debug)]
enum Op {
    PutService(u8, bool),
    DeleteService(u8),
    PutSlice(u8, u8, Vec<u8>),
    DeleteSlice(u8),
    /// Namespace `ns` (0) or `other` (1), which holds no service.
    PutNamespace(u8),
    DeleteNamespace(u8),
    /// The watch broke: these changes happen unseen, then a relist.
    Relist(Vec<Op>),
    /// The consumer takes what is dirty.
    Take,
}

fn simple_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4, any::<bool>()).prop_map(|(n, h)| Op::PutService(n, h)),
        (0u8..4).prop_map(Op::DeleteService),
        (0u8..5, 0u8..4, proptest::collection::vec(0u8..8, 0..3))
            .prop_map(|(n, s, ips)| Op::PutSlice(n, s, ips)),
        (0u8..5).prop_map(Op::DeleteSlice),
        (0u8..2).prop_map(Op::PutNamespace),
        (0u8..2).prop_map(Op::DeleteNamespace),
        Just(Op::Take),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => simple_op(),
        1 => proptest::collection::vec(simple_op(), 0..4).prop_map(Op::Relist),
    ]
}

#[derive(Default)]
struct Truth {
    services: BTreeMap<u8, Service>,
    slices: BTreeMap<u8, EndpointSlice>,
    namespaces: BTreeMap<u8, Namespace>,
}

fn namespace(n: u8) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(["ns", "other"][n as usize].into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

impl Truth {
    /// Applies a change; returns the watch event it makes.
    fn apply(&mut self, op: &Op) -> Option<Ev> {
        Some(match op {
            Op::PutService(n, h) => {
                let s = service(*n, *h);
                self.services.insert(*n, s.clone());
                Ev::Service(watcher::Event::Apply(s))
            }
            Op::DeleteService(n) => Ev::Service(watcher::Event::Delete(self.services.remove(n)?)),
            Op::PutSlice(n, svc, ips) => {
                let s = slice(*n, *svc, ips);
                self.slices.insert(*n, s.clone());
                Ev::Slice(watcher::Event::Apply(s))
            }
            Op::DeleteSlice(n) => Ev::Slice(watcher::Event::Delete(self.slices.remove(n)?)),
            Op::PutNamespace(n) => {
                self.namespaces.insert(*n, namespace(*n));
                Ev::Namespace(watcher::Event::Apply(namespace(*n)))
            }
            Op::DeleteNamespace(n) => {
                Ev::Namespace(watcher::Event::Delete(self.namespaces.remove(n)?))
            }
            Op::Relist(_) | Op::Take => return None,
        })
    }

    fn objects(&self) -> Objects {
        Objects {
            services: self.services.values().cloned().collect(),
            slices: self.slices.values().cloned().collect(),
            namespaces: Some(
                self.namespaces
                    .values()
                    .filter_map(|n| n.metadata.name.clone())
                    .collect(),
            ),
        }
    }
}

fn feed(index: &mut Index, ev: Ev) {
    index.event(ev);
}

fn take(index: &mut Index, table: &mut RecordTable) {
    while let Some(u) = index.take_update() {
        u.apply(table, &mut Vec::new());
    }
}

proptest! {
    #[test]
    fn dirty_services_bring_the_table_to_the_cluster(ops in proptest::collection::vec(op(), 0..30)) {
        let cfg = ZoneConfig::default();
        let mut truth = Truth::default();
        let mut index = Index::default();
        let mut table = RecordTable::new(&cfg, 1);
        table.set_complete(true);
        // The live source always lists Namespaces.
        table.set_namespaces_known(true);
        for op in &ops {
            match op {
                Op::Take => take(&mut index, &mut table),
                Op::Relist(missed) => {
                    for m in missed {
                        truth.apply(m);
                    }
                    feed(&mut index, Ev::Service(watcher::Event::Init));
                    for s in truth.services.values() {
                        feed(&mut index, Ev::Service(watcher::Event::InitApply(s.clone())));
                    }
                    feed(&mut index, Ev::Service(watcher::Event::InitDone));
                    feed(&mut index, Ev::Slice(watcher::Event::Init));
                    for s in truth.slices.values() {
                        feed(&mut index, Ev::Slice(watcher::Event::InitApply(s.clone())));
                    }
                    feed(&mut index, Ev::Slice(watcher::Event::InitDone));
                    feed(&mut index, Ev::Namespace(watcher::Event::Init));
                    for n in truth.namespaces.values() {
                        feed(&mut index, Ev::Namespace(watcher::Event::InitApply(n.clone())));
                    }
                    feed(&mut index, Ev::Namespace(watcher::Event::InitDone));
                }
                op => {
                    if let Some(ev) = truth.apply(op) {
                        feed(&mut index, ev);
                    }
                }
            }
        }
        take(&mut index, &mut table);
        let full = RecordTable::build(&cfg, &truth.objects(), 1);
        prop_assert!(table == full);
    }
}

fn pod(name: &str, ips: &[&str]) -> Pod {
    use k8s_openapi::api::core::v1::{PodIP, PodStatus};
    Pod {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(PodStatus {
            pod_ips: Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn pod_addresses_follow_pods_through_updates_deletes_and_relists() {
    let mut index = Index::default();
    let mut table = RecordTable::new(&ZoneConfig::default(), 1);
    let has = |t: &RecordTable| t.pod_addresses();
    let ev = |p: Pod| Ev::Pod(watcher::Event::Apply(p));
    index.event(ev(pod("a", &["169.254.10.10", "fd00:10::10"])));
    // Reported again (a status update): counted once.
    index.event(ev(pod("a", &["169.254.10.10", "fd00:10::10"])));
    index.event(ev(pod("b", &["169.254.10.11"])));
    take(&mut index, &mut table);
    assert_eq!(has(&table), 3);
    index.event(Ev::Pod(watcher::Event::Delete(pod("a", &[]))));
    take(&mut index, &mut table);
    assert_eq!(has(&table), 1);
    // A relist that no longer has b.
    index.event(Ev::Pod(watcher::Event::Init));
    index.event(Ev::Pod(watcher::Event::InitApply(pod(
        "c",
        &["169.254.10.12"],
    ))));
    index.event(Ev::Pod(watcher::Event::InitDone));
    take(&mut index, &mut table);
    assert_eq!(has(&table), 1);
    assert!(index.listed_pods);
}

#[test]
fn endpoint_pod_names_reach_the_table_from_the_live_source() {
    use k8s_openapi::api::core::v1::ObjectReference;
    let mut s = slice(0, 0, &[10]);
    s.endpoints[0].hostname = None;
    s.endpoints[0].target_ref = Some(ObjectReference {
        kind: Some("Pod".into()),
        name: Some("web-7d9f-abcde".into()),
        ..Default::default()
    });
    for (pod_names, name) in [
        (true, "web-7d9f-abcde.s0.ns.svc.cluster.local."),
        (false, "169-254-10-10.s0.ns.svc.cluster.local."),
    ] {
        let mut index = Index {
            pod_names,
            ..Index::default()
        };
        index.event(Ev::Service(watcher::Event::Apply(service(0, true))));
        index.event(Ev::Slice(watcher::Event::Apply(s.clone())));
        let mut table = RecordTable::new(&ZoneConfig::default(), 1);
        take(&mut index, &mut table);
        let n = hickory_proto::rr::Name::from_ascii(name).unwrap();
        assert!(table.get(&n).is_some(), "{name}");
    }
}

#[test]
fn a_large_dirty_set_goes_out_in_bounded_batches_losing_none() {
    let mut index = Index::default();
    for i in 0..(2 * BATCH_MAX + 1) {
        let mut svc = service(0, true);
        svc.metadata.name = Some(format!("s{i}"));
        index.service_event(watcher::Event::Apply(svc));
    }
    let mut sizes = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    while !index.dirty.is_empty() {
        let batch = index.take_dirty();
        sizes.push(batch.len());
        names.extend(batch.into_iter().map(|s| s.name));
    }
    assert_eq!(sizes, [BATCH_MAX, BATCH_MAX, 1]);
    assert_eq!(names.len(), 2 * BATCH_MAX + 1);
}
