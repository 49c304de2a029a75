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

mod index;

use std::{path::Path, sync::Arc};

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

use crate::records::{RecordTable, ServiceView, SliceView};
use index::{Ev, Index};

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

/// What the live source watches besides Services and EndpointSlices.
#[derive(Clone, Copy, Debug, Default)]
pub struct WatchOptions {
    /// CoreDNS's `endpoint_pod_names`.
    pub endpoint_pod_names: bool,
    /// Watch Pods for their addresses (`--pods verified`).
    pub pods: bool,
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
    let mut index = Index::new(opts);
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
