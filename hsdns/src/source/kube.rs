//! The live source: Services and EndpointSlices from the Kubernetes API,
//! through kube-runtime reflectors (list, then watch from the list's
//! resourceVersion, relist on 410 Gone, backoff on errors).
//!
//! Nothing is published until both stores have completed their first list:
//! a partial view must never look authoritative. After that, every change
//! publishes a fresh snapshot; bursts coalesce into one.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{
        WatchStreamExt as _,
        reflector::{self, Store},
        watcher,
    },
};
use tokio::sync::watch;

use super::Objects;

/// How long to wait for more events after one arrives, so a burst (a
/// rollout touching many slices) becomes one rebuild.
pub const COALESCE: Duration = Duration::from_millis(20);

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

/// Drops what the record table never reads, so 150,000 pods' slices do not
/// carry managedFields and annotations around.
fn trim_meta(m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    m.managed_fields = None;
    m.annotations = None;
    m.owner_references = None;
    m.generate_name = None;
    m.finalizers = None;
}

fn reflect<K, S>(stream: S, writer: reflector::store::Writer<K>) -> impl Stream<Item = ()>
where
    K: kube::Resource + Clone + Send + Sync + std::fmt::Debug + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    stream
        .default_backoff()
        .reflect(writer)
        .filter_map(|ev| async move {
            match ev {
                Ok(_) => Some(()),
                Err(e) => {
                    // The watcher retries with backoff; the stores keep the
                    // last good state meanwhile.
                    log::warn!("Kubernetes watch: {e}");
                    None
                }
            }
        })
}

fn snapshot(services: &Store<Service>, slices: &Store<EndpointSlice>) -> Objects {
    Objects {
        services: services.state().iter().map(|s| (**s).clone()).collect(),
        slices: slices.state().iter().map(|s| (**s).clone()).collect(),
    }
}

/// Watches the cluster and publishes snapshots into `tx` (None until the
/// first complete list). Runs until `tx` has no receivers.
pub async fn watch(client: Client, tx: watch::Sender<Option<Arc<Objects>>>) {
    let config = watcher::Config::default();
    let (svc_reader, svc_writer) = reflector::store::<Service>();
    let (eps_reader, eps_writer) = reflector::store::<EndpointSlice>();
    let services = watcher(Api::<Service>::all(client.clone()), config.clone()).modify(|s| {
        trim_meta(&mut s.metadata);
        s.status = None;
    });
    let slices = watcher(Api::<EndpointSlice>::all(client), config)
        .modify(|s: &mut EndpointSlice| trim_meta(&mut s.metadata));
    let mut events = Box::pin(futures::stream::select(
        reflect(services, svc_writer),
        reflect(slices, eps_writer),
    ));

    // First both complete lists, then a snapshot per (coalesced) change.
    let ready = async {
        let _ = svc_reader.wait_until_ready().await;
        let _ = eps_reader.wait_until_ready().await;
    };
    tokio::pin!(ready);
    loop {
        tokio::select! {
            _ = &mut ready => break,
            ev = events.next() => if ev.is_none() { return },
        }
    }
    log::info!("Kubernetes: initial lists complete");
    if tx
        .send(Some(Arc::new(snapshot(&svc_reader, &eps_reader))))
        .is_err()
    {
        return;
    }
    while events.next().await.is_some() {
        // Coalesce a burst: take events until COALESCE passes without one.
        while let Ok(Some(())) = tokio::time::timeout(COALESCE, events.next()).await {}
        if tx
            .send(Some(Arc::new(snapshot(&svc_reader, &eps_reader))))
            .is_err()
        {
            return;
        }
    }
}
