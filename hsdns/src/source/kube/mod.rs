//! The live source: Services and EndpointSlices from the Kubernetes API,
//! through kube-runtime watchers (list, then watch from the list's
//! resourceVersion, relist on 410 Gone, backoff on errors).
//!
//! The source keeps its own index of the objects, by the service they
//! belong to, instead of reflector stores: the record table is updated one
//! service at a time, and a store cannot say which slices are a service's
//! without a scan of all of them. Every change marks its service dirty; a
//! dirty service is sent with its current objects ([`Update::Changed`]) as
//! soon as the consumer takes it, so changes that pile up while it is busy
//! go out together (up to `BATCH_MAX` services an update), and a single
//! change goes out at once.
//!
//! Namespaces are watched too (a namespace without services exists, one
//! without an object does not: CoreDNS answers NODATA and NXDOMAIN), and
//! Pods when pod names are verified (`--pods verified`), keeping only their
//! addresses.
//!
//! [`Update::Complete`] follows once every first list is in: before it,
//! the table is partial, and nothing may be answered from it.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::Path,
    sync::Arc,
};

use anyhow::{Context as _, Result};
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::{
    core::v1::{Namespace, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::mpsc;

use crate::records::{RecordTable, ServiceKey, ServiceView, SliceView, slice_service};

/// One service's objects as they are now, as the record table reads them.
#[derive(Clone, Debug)]
pub struct ServiceObjects {
    pub namespace: String,
    pub name: String,
    /// None: the service does not exist (any more).
    pub service: Option<Arc<ServiceView>>,
    pub slices: Vec<Arc<SliceView>>,
}

/// What the live source sends.
#[derive(Clone, Debug)]
pub enum Update {
    /// Services whose objects changed, each with all its current objects.
    Changed(Vec<ServiceObjects>),
    /// Namespaces that appeared (true) or went (false).
    Namespaces(Vec<(String, bool)>),
    /// Pod addresses that appeared (true) or went (false), by namespace.
    Pods(Vec<(String, std::net::IpAddr, bool)>),
    /// The first lists of both kinds are complete, and every object in them
    /// has been sent.
    Complete,
}

impl Update {
    /// How many objects it carries (services, namespaces, pod addresses):
    /// a measure of the work behind it, changed names or not.
    pub fn objects(&self) -> usize {
        match self {
            Update::Changed(v) => v.len(),
            Update::Namespaces(v) => v.len(),
            Update::Pods(v) => v.len(),
            Update::Complete => 0,
        }
    }

    /// Applies the update to `table`; `changes` receives what differs.
    pub fn apply(&self, table: &mut RecordTable, changes: &mut Vec<crate::records::Change>) {
        match self {
            Update::Changed(services) => {
                table.update_services(
                    services.iter().map(|s| {
                        let slices: Vec<&SliceView> = s.slices.iter().map(|s| &**s).collect();
                        (&*s.namespace, &*s.name, s.service.as_deref(), slices)
                    }),
                    changes,
                );
            }
            Update::Namespaces(list) => {
                // The live source always lists Namespaces.
                table.set_namespaces_known(true);
                for (ns, exists) in list {
                    table.set_namespace(ns, *exists, changes);
                }
            }
            Update::Pods(list) => {
                for (ns, ip, add) in list {
                    table.set_pod_address(ns, *ip, *add);
                }
            }
            Update::Complete => table.set_complete(true),
        }
    }
}

/// A client from an explicit kubeconfig, or the usual inference (in-cluster
/// service account, then $KUBECONFIG / ~/.kube/config).
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => Config::infer()
            .await
            .context("no Kubernetes configuration (in-cluster or kubeconfig)")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}

/// At most this many already-queued events join a batch.
const DRAIN_MAX: usize = 10_000;

/// At most this many services go out in one update. A first list that
/// piles up while the program loads would otherwise be one update of the
/// whole cluster, and its list of changed names alone (110,000 at 150,000
/// pods) cost the daemon 9 MiB of peak RSS.
const BATCH_MAX: usize = 500;

/// The objects by service, and which of the services changed since the
/// consumer last took them. Objects are kept as the views the record table
/// reads (see `records::view` for why), converted as they arrive.
#[derive(Default)]
struct Index {
    services: HashMap<ServiceKey, Arc<ServiceView>>,
    /// (namespace, slice name) -> its service and the slice.
    slices: HashMap<(String, String), (Option<ServiceKey>, Arc<SliceView>)>,
    /// Slice names by service: a few each, so a Vec (a set's node would be
    /// 270 bytes a service).
    by_service: HashMap<ServiceKey, Vec<String>>,
    dirty: BTreeSet<ServiceKey>,
    /// Objects seen since the current (re)list began, per kind: at the
    /// list's end, every object not among them is gone.
    listing_services: Option<HashSet<ServiceKey>>,
    listing_slices: Option<HashSet<(String, String)>>,
    listed_services: bool,
    listed_slices: bool,
    /// Endpoints without a hostname named after their pod.
    pod_names: bool,
    namespaces: HashSet<String>,
    dirty_namespaces: std::collections::BTreeMap<String, bool>,
    listing_namespaces: Option<HashSet<String>>,
    listed_namespaces: bool,
    /// Pods (verified mode): (namespace, name) -> addresses.
    pods: HashMap<(String, String), Vec<std::net::IpAddr>>,
    dirty_pods: Vec<(String, std::net::IpAddr, bool)>,
    listing_pods: Option<HashSet<(String, String)>>,
    /// True when Pods are not watched.
    listed_pods: bool,
}

fn key_of(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<(String, String)> {
    Some((m.namespace.clone()?, m.name.clone()?))
}

impl Index {
    fn put_service(&mut self, svc: Service) {
        let Some(key) = key_of(&svc.metadata) else {
            return;
        };
        if let Some(seen) = &mut self.listing_services {
            seen.insert(key.clone());
        }
        self.services
            .insert(key.clone(), Arc::new(ServiceView::from(&svc)));
        self.dirty.insert(key);
    }

    fn remove_service(&mut self, key: &ServiceKey) {
        if self.services.remove(key).is_some() {
            self.dirty.insert(key.clone());
        }
    }

    fn put_slice(&mut self, slice: EndpointSlice) {
        let Some(key) = key_of(&slice.metadata) else {
            return;
        };
        if let Some(seen) = &mut self.listing_slices {
            seen.insert(key.clone());
        }
        let owner = slice_service(&slice).map(|(ns, s)| (ns.to_string(), s.to_string()));
        // A slice relabelled to another service leaves the old one.
        self.remove_slice(&key);
        if let Some(owner) = &owner {
            self.by_service
                .entry(owner.clone())
                .or_default()
                // Not there: remove_slice just took it out.
                .push(key.1.clone());
            self.dirty.insert(owner.clone());
        }
        let view = SliceView::new(&slice, self.pod_names);
        self.slices.insert(key, (owner, Arc::new(view)));
    }

    fn remove_slice(&mut self, key: &(String, String)) {
        let Some((Some(owner), _)) = self.slices.remove(key) else {
            return;
        };
        if let Some(set) = self.by_service.get_mut(&owner) {
            set.retain(|name| *name != key.1);
            if set.is_empty() {
                self.by_service.remove(&owner);
            }
        }
        self.dirty.insert(owner);
    }

    fn service_event(&mut self, ev: watcher::Event<Service>) {
        match ev {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => self.put_service(s),
            watcher::Event::Delete(s) => {
                if let Some(key) = key_of(&s.metadata) {
                    self.remove_service(&key);
                }
            }
            watcher::Event::Init => self.listing_services = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let seen = self.listing_services.take().unwrap_or_default();
                let gone: Vec<ServiceKey> = self
                    .services
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    self.remove_service(&k);
                }
                self.listed_services = true;
            }
        }
    }

    fn slice_event(&mut self, ev: watcher::Event<EndpointSlice>) {
        match ev {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => self.put_slice(s),
            watcher::Event::Delete(s) => {
                if let Some(key) = key_of(&s.metadata) {
                    self.remove_slice(&key);
                }
            }
            watcher::Event::Init => self.listing_slices = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let seen = self.listing_slices.take().unwrap_or_default();
                let gone: Vec<(String, String)> = self
                    .slices
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    self.remove_slice(&k);
                }
                self.listed_slices = true;
            }
        }
    }

    fn put_namespace(&mut self, name: String) {
        if let Some(seen) = &mut self.listing_namespaces {
            seen.insert(name.clone());
        }
        if self.namespaces.insert(name.clone()) {
            self.dirty_namespaces.insert(name, true);
        }
    }

    fn remove_namespace(&mut self, name: &str) {
        if self.namespaces.remove(name) {
            self.dirty_namespaces.insert(name.to_string(), false);
        }
    }

    fn namespace_event(&mut self, ev: watcher::Event<Namespace>) {
        match ev {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                if let Some(name) = n.metadata.name {
                    self.put_namespace(name);
                }
            }
            watcher::Event::Delete(n) => {
                if let Some(name) = n.metadata.name {
                    self.remove_namespace(&name);
                }
            }
            watcher::Event::Init => self.listing_namespaces = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let seen = self.listing_namespaces.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .namespaces
                    .iter()
                    .filter(|n| !seen.contains(*n))
                    .cloned()
                    .collect();
                for n in gone {
                    self.remove_namespace(&n);
                }
                self.listed_namespaces = true;
            }
        }
    }

    /// A pod's addresses now (none once it is gone or not yet scheduled).
    fn set_pod(&mut self, key: (String, String), ips: Vec<std::net::IpAddr>) {
        let old = if ips.is_empty() {
            self.pods.remove(&key).unwrap_or_default()
        } else {
            self.pods
                .insert(key.clone(), ips.clone())
                .unwrap_or_default()
        };
        for ip in old.iter().filter(|ip| !ips.contains(ip)) {
            self.dirty_pods.push((key.0.clone(), *ip, false));
        }
        for ip in ips.iter().filter(|ip| !old.contains(ip)) {
            self.dirty_pods.push((key.0.clone(), *ip, true));
        }
    }

    fn pod_event(&mut self, ev: watcher::Event<Pod>) {
        match ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let Some(key) = key_of(&p.metadata) else {
                    return;
                };
                if let Some(seen) = &mut self.listing_pods {
                    seen.insert(key.clone());
                }
                let status = p.status.as_ref();
                let mut ips: Vec<std::net::IpAddr> = status
                    .and_then(|s| s.pod_ips.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.ip.parse().ok())
                    .chain(
                        status
                            .and_then(|s| s.pod_ip.as_deref())
                            .and_then(|i| i.parse().ok()),
                    )
                    .collect();
                ips.sort_unstable();
                ips.dedup();
                self.set_pod(key, ips);
            }
            watcher::Event::Delete(p) => {
                if let Some(key) = key_of(&p.metadata) {
                    self.set_pod(key, Vec::new());
                }
            }
            watcher::Event::Init => self.listing_pods = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let seen = self.listing_pods.take().unwrap_or_default();
                let gone: Vec<(String, String)> = self
                    .pods
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    self.set_pod(k, Vec::new());
                }
                self.listed_pods = true;
            }
        }
    }

    fn listed(&self) -> bool {
        self.listed_services && self.listed_slices && self.listed_namespaces && self.listed_pods
    }

    fn has_dirty(&self) -> bool {
        !self.dirty.is_empty() || !self.dirty_namespaces.is_empty() || !self.dirty_pods.is_empty()
    }

    /// What changed since the last call: namespaces first (a service's
    /// namespace name is counted, not replaced, so order does not matter
    /// for the table, but a reader sees namespaces early), then pods, then
    /// services.
    fn take_update(&mut self) -> Option<Update> {
        if !self.dirty_namespaces.is_empty() {
            let list = std::mem::take(&mut self.dirty_namespaces)
                .into_iter()
                .collect();
            return Some(Update::Namespaces(list));
        }
        if !self.dirty_pods.is_empty() {
            return Some(Update::Pods(std::mem::take(&mut self.dirty_pods)));
        }
        (!self.dirty.is_empty()).then(|| Update::Changed(self.take_dirty()))
    }

    /// Dirty services with their current objects, at most [`BATCH_MAX`].
    fn take_dirty(&mut self) -> Vec<ServiceObjects> {
        let rest = match self.dirty.iter().nth(BATCH_MAX) {
            Some(first_left) => {
                let first_left = first_left.clone();
                self.dirty.split_off(&first_left)
            }
            None => BTreeSet::new(),
        };
        std::mem::replace(&mut self.dirty, rest)
            .into_iter()
            .map(|key| {
                let slices = self
                    .by_service
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter_map(|name| {
                        let k = (key.0.clone(), name.clone());
                        Some(self.slices.get(&k)?.1.clone())
                    })
                    .collect();
                ServiceObjects {
                    service: self.services.get(&key).cloned(),
                    namespace: key.0,
                    name: key.1,
                    slices,
                }
            })
            .collect()
    }
}

// Both arrive one at a time and are taken apart at once: boxing the
// larger would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
enum Ev {
    Service(watcher::Event<Service>),
    Slice(watcher::Event<EndpointSlice>),
    Namespace(watcher::Event<Namespace>),
    Pod(watcher::Event<Pod>),
}

/// What the live source watches besides Services and EndpointSlices.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchOptions {
    /// CoreDNS's `endpoint_pod_names`.
    pub endpoint_pod_names: bool,
    /// Watch Pods for their addresses (`--pods verified`).
    pub pods: bool,
}

impl Index {
    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Service(e) => self.service_event(e),
            Ev::Slice(e) => self.slice_event(e),
            Ev::Namespace(e) => self.namespace_event(e),
            Ev::Pod(e) => self.pod_event(e),
        }
    }
}

/// One API collection the daemon lists and watches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Watched {
    /// The API group ("" for the core group).
    pub group: &'static str,
    pub resource: &'static str,
    /// None: cluster-wide; else that namespace only.
    pub namespace: Option<String>,
    pub verbs: [&'static str; 2],
}

/// kube-runtime's watcher lists, then watches.
pub(crate) const WATCH_VERBS: [&str; 2] = ["list", "watch"];

/// The collections the daemon's watchers ask for: the record source's,
/// cluster-wide (Pods only with `--pods verified`), and with `cluster_dns`
/// (the Service it finds the cluster DNS by, see `cluster_dns::follow`)
/// that Service and its EndpointSlices in its namespace. deploy/'s RBAC
/// must grant exactly these (tests/deploy.rs), and these are exactly what
/// the watchers ask the API server for (tests/kube_source.rs).
pub fn watched_resources(
    opts: WatchOptions,
    cluster_dns: Option<&super::cluster_dns::ServiceRef>,
) -> Vec<Watched> {
    let all = |group, resource| Watched {
        group,
        resource,
        namespace: None,
        verbs: WATCH_VERBS,
    };
    let mut v = vec![
        all("", "services"),
        all("discovery.k8s.io", "endpointslices"),
        all("", "namespaces"),
    ];
    if opts.pods {
        v.push(all("", "pods"));
    }
    if let Some(svc) = cluster_dns {
        v.extend(super::cluster_dns::watched(svc));
    }
    v
}

/// Objects per page of a list. A page is held twice while it is parsed
/// (the JSON body and the k8s-openapi objects, before they become views):
/// at kube's default of 500 EndpointSlices that was 5.7 MB of the
/// daemon's peak heap at 150,000 pods (heaptrack).
pub const LIST_PAGE: u32 = 100;

/// Watches the cluster and sends [`Update`]s into `tx`: the services of
/// the first lists as they arrive, [`Update::Complete`] when both lists are
/// in, then every change. Runs until `tx` has no receiver.
///
/// `tx` should be bounded (capacity 1 is best): while the consumer is busy,
/// changes collect in the dirty set and go out together.
pub async fn watch(client: Client, tx: mpsc::Sender<Update>, opts: WatchOptions) {
    let config = watcher::Config::default().page_size(LIST_PAGE);
    let services = watcher(Api::<Service>::all(client.clone()), config.clone())
        .default_backoff()
        .map(|e| e.map(Ev::Service));
    let slices = watcher(Api::<EndpointSlice>::all(client.clone()), config.clone())
        .default_backoff()
        .map(|e| e.map(Ev::Slice));
    let namespaces = watcher(Api::<Namespace>::all(client.clone()), config.clone())
        .default_backoff()
        .map(|e| e.map(Ev::Namespace));
    let pods = opts.pods.then(|| {
        watcher(Api::<Pod>::all(client), config)
            .default_backoff()
            .map(|e| e.map(Ev::Pod))
    });
    let mut events = Box::pin(futures::stream::select(
        futures::stream::select(services, slices),
        futures::stream::select(namespaces, futures::stream::iter(pods).flatten()),
    ));
    let mut index = Index {
        pod_names: opts.endpoint_pod_names,
        listed_pods: !opts.pods,
        ..Index::default()
    };
    let mut complete_sent = false;
    loop {
        let complete_due = !complete_sent && index.listed();
        let has_work = index.has_dirty() || complete_due;
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Ok(ev) => index.event(ev),
                    // The watcher retries with backoff; the index keeps the
                    // last good state meanwhile.
                    Err(e) => log::warn!("Kubernetes watch: {e}"),
                }
            }
            permit = tx.reserve(), if has_work => {
                let Ok(permit) = permit else { return };
                if let Some(update) = index.take_update() {
                    permit.send(update);
                } else {
                    log::info!("Kubernetes: initial lists complete");
                    permit.send(Update::Complete);
                    complete_sent = true;
                }
            }
        }
        // Take whatever else is ready now, without waiting: a burst of
        // events becomes one batch, a lone event is not delayed. Bounded,
        // so a flood cannot hold the batch back forever.
        for _ in 0..DRAIN_MAX {
            let Some(Some(ev)) = events.next().now_or_never() else {
                break;
            };
            match ev {
                Ok(ev) => index.event(ev),
                Err(e) => log::warn!("Kubernetes watch: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
    use crate::records::ZoneConfig;
    use crate::source::{Objects, SERVICE_NAME_LABEL};

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
                Op::DeleteService(n) => {
                    Ev::Service(watcher::Event::Delete(self.services.remove(n)?))
                }
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
}
