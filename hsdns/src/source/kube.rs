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
//! [`Update::Complete`] follows once both first lists are in: before it,
//! the table is partial, and nothing may be answered from it.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    path::Path,
    sync::Arc,
};

use anyhow::{Context as _, Result};
use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
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
    /// The first lists of both kinds are complete, and every object in them
    /// has been sent.
    Complete,
}

impl Update {
    /// Applies the update to `table`; `changes` receives what differs.
    pub fn apply(&self, table: &mut RecordTable, changes: &mut Vec<crate::records::Change>) {
        match self {
            Update::Changed(services) => {
                for s in services {
                    let slices: Vec<&SliceView> = s.slices.iter().map(|s| &**s).collect();
                    table.update_service(
                        &s.namespace,
                        &s.name,
                        s.service.as_deref(),
                        &slices,
                        changes,
                    );
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
        self.slices
            .insert(key, (owner, Arc::new(SliceView::from(&slice))));
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
}

/// Watches the cluster and sends [`Update`]s into `tx`: the services of
/// the first lists as they arrive, [`Update::Complete`] when both lists are
/// in, then every change. Runs until `tx` has no receiver.
///
/// `tx` should be bounded (capacity 1 is best): while the consumer is busy,
/// changes collect in the dirty set and go out together.
pub async fn watch(client: Client, tx: mpsc::Sender<Update>) {
    let config = watcher::Config::default();
    let services = watcher(Api::<Service>::all(client.clone()), config.clone())
        .default_backoff()
        .map(|e| e.map(Ev::Service));
    let slices = watcher(Api::<EndpointSlice>::all(client), config)
        .default_backoff()
        .map(|e| e.map(Ev::Slice));
    let mut events = Box::pin(futures::stream::select(services, slices));
    let mut index = Index::default();
    let mut complete_sent = false;
    loop {
        let complete_due = !complete_sent && index.listed_services && index.listed_slices;
        let has_work = !index.dirty.is_empty() || complete_due;
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { return };
                match ev {
                    Ok(Ev::Service(e)) => index.service_event(e),
                    Ok(Ev::Slice(e)) => index.slice_event(e),
                    // The watcher retries with backoff; the index keeps the
                    // last good state meanwhile.
                    Err(e) => log::warn!("Kubernetes watch: {e}"),
                }
            }
            permit = tx.reserve(), if has_work => {
                let Ok(permit) = permit else { return };
                if !index.dirty.is_empty() {
                    permit.send(Update::Changed(index.take_dirty()));
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
                Ok(Ev::Service(e)) => index.service_event(e),
                Ok(Ev::Slice(e)) => index.slice_event(e),
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
                Op::Relist(_) | Op::Take => return None,
            })
        }

        fn objects(&self) -> Objects {
            Objects {
                services: self.services.values().cloned().collect(),
                slices: self.slices.values().cloned().collect(),
            }
        }
    }

    fn feed(index: &mut Index, ev: Ev) {
        match ev {
            Ev::Service(e) => index.service_event(e),
            Ev::Slice(e) => index.slice_event(e),
        }
    }

    fn take(index: &mut Index, table: &mut RecordTable) {
        Update::Changed(index.take_dirty()).apply(table, &mut Vec::new());
    }

    proptest! {
        #[test]
        fn dirty_services_bring_the_table_to_the_cluster(ops in proptest::collection::vec(op(), 0..30)) {
            let cfg = ZoneConfig::default();
            let mut truth = Truth::default();
            let mut index = Index::default();
            let mut table = RecordTable::new(&cfg, 1);
            table.set_complete(true);
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
