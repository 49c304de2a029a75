//! Finds the cluster DNS (by default the Service kube-system/kube-dns, as
//! kubelet's `--cluster-dns` points pods at its ClusterIP) and follows it:
//! its ClusterIPs, which the kernel answers for in its place, and the
//! ready endpoints behind them, where the userspace server forwards the
//! cluster names the table cannot answer (never the ClusterIP itself: a
//! query to it would come back to hsdns).
//!
//! Two small watches, scoped to that one Service (a field selector) and
//! its EndpointSlices (the service-name label): the cluster-wide watches
//! of the record source would also see them, but the serving path should
//! not wait on a relist of the whole cluster to learn that CoreDNS moved.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use futures::StreamExt as _;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::sync::watch;

use crate::k8s::{SERVICE_NAME_LABEL, is_dns1123_label};

/// The cluster DNS servers as last discovered: `None` while not yet known.
/// The same type as `server::ClusterServers`, which the userspace server
/// reads: the source does not depend on the server.
pub type ClusterServers = Option<Vec<SocketAddr>>;

/// `namespace/name` of the cluster DNS Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for ServiceRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ns, name) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: give NAMESPACE/NAME"))?;
        for part in [ns, name] {
            if !is_dns1123_label(part) {
                return Err(format!("{s:?}: {part:?} is not a valid name"));
            }
        }
        Ok(Self {
            namespace: ns.into(),
            name: name.into(),
        })
    }
}

impl std::fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the cluster DNS looks like now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterDns {
    /// The Service's ClusterIPs (none when headless or absent).
    pub service_ips: Vec<IpAddr>,
    /// Ready endpoints, at the Service's DNS port.
    pub servers: Vec<SocketAddr>,
}

/// The Service's ClusterIPs.
pub fn service_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = &svc.spec else {
        return vec![];
    };
    let mut v: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|s| s.parse().ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The ready endpoints of `slices` at their UDP DNS port: the port named
/// `dns`, else the first UDP port, else 53.
pub fn servers(slices: &[&EndpointSlice]) -> Vec<SocketAddr> {
    let mut v = Vec::new();
    for s in slices {
        let ports = s.ports.iter().flatten();
        let udp = |p: &&k8s_openapi::api::discovery::v1::EndpointPort| {
            p.protocol.as_deref().unwrap_or("UDP") == "UDP"
        };
        let port = ports
            .clone()
            .filter(udp)
            .find(|p| p.name.as_deref() == Some("dns"))
            .or_else(|| ports.clone().find(udp))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(53);
        for ep in &s.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            v.extend(
                ep.addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, port)),
            );
        }
    }
    v.sort();
    v.dedup();
    v
}

/// What [`follow`] watches: the Service (by a field selector) and its
/// EndpointSlices (by label), both in the Service's namespace.
pub fn watched(svc: &ServiceRef) -> Vec<super::kube::Watched> {
    [("", "services"), ("discovery.k8s.io", "endpointslices")]
        .into_iter()
        .map(|(group, resource)| super::kube::Watched {
            group,
            resource,
            namespace: Some(svc.namespace.clone()),
            verbs: super::kube::WATCH_VERBS,
        })
        .collect()
}

#[expect(
    clippy::large_enum_variant,
    reason = "one event at a time, taken apart at once: boxing would allocate per event"
)]
enum Ev {
    Service(watcher::Event<Service>),
    Slice(watcher::Event<EndpointSlice>),
}

/// Follows the cluster DNS until both receivers are gone: `servers` gets
/// the endpoints (`None` until both first lists are in, then the current
/// list, empty when there is none), `ips` the ClusterIPs.
pub async fn follow(
    client: Client,
    svc: ServiceRef,
    servers_tx: watch::Sender<ClusterServers>,
    ips_tx: watch::Sender<Vec<IpAddr>>,
) {
    let services = watcher(
        Api::<Service>::namespaced(client.clone(), &svc.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", svc.name)),
    )
    .default_backoff()
    .map(|e| e.map(Ev::Service));
    let slices = watcher(
        Api::<EndpointSlice>::namespaced(client, &svc.namespace),
        watcher::Config::default().labels(&format!("{SERVICE_NAME_LABEL}={}", svc.name)),
    )
    .default_backoff()
    .map(|e| e.map(Ev::Slice));
    let mut events = Box::pin(futures::stream::select(services, slices));
    let mut service: Option<Service> = None;
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let (mut listed_svc, mut listed_slices) = (false, false);
    let (mut listing_svc, mut listing_slices): (Option<Option<Service>>, Option<BTreeMap<_, _>>) =
        (None, None);
    let mut last: Option<ClusterDns> = None;
    while let Some(ev) = events.next().await {
        if servers_tx.is_closed() && ips_tx.is_closed() {
            return;
        }
        match ev {
            Err(e) => {
                log::warn!("cluster DNS {svc}: {e}");
                continue;
            }
            Ok(Ev::Service(e)) => match e {
                watcher::Event::Init => listing_svc = Some(None),
                watcher::Event::InitApply(s) => listing_svc = Some(Some(s)),
                watcher::Event::InitDone => {
                    service = listing_svc.take().flatten();
                    listed_svc = true;
                }
                watcher::Event::Apply(s) => service = Some(s),
                watcher::Event::Delete(_) => service = None,
            },
            Ok(Ev::Slice(e)) => match e {
                watcher::Event::Init => listing_slices = Some(BTreeMap::new()),
                watcher::Event::InitApply(s) => {
                    if let (Some(l), Some(n)) = (listing_slices.as_mut(), s.metadata.name.clone()) {
                        l.insert(n, s);
                    }
                }
                watcher::Event::InitDone => {
                    by_name = listing_slices.take().unwrap_or_default();
                    listed_slices = true;
                }
                watcher::Event::Apply(s) => {
                    if let Some(n) = s.metadata.name.clone() {
                        by_name.insert(n, s);
                    }
                }
                watcher::Event::Delete(s) => {
                    if let Some(n) = &s.metadata.name {
                        by_name.remove(n);
                    }
                }
            },
        }
        if !(listed_svc && listed_slices) {
            continue;
        }
        let now = ClusterDns {
            service_ips: service.as_ref().map(service_ips).unwrap_or_default(),
            servers: if service.is_some() {
                servers(&by_name.values().collect::<Vec<_>>())
            } else {
                vec![]
            },
        };
        if last.as_ref() == Some(&now) {
            continue;
        }
        if now.servers.is_empty() {
            log::warn!(
                "cluster DNS {svc}: {}; cluster names get SERVFAIL from userspace until it has ready endpoints",
                if service.is_some() {
                    "no ready endpoints"
                } else {
                    "no such Service"
                }
            );
        } else {
            log::info!(
                "cluster DNS {svc}: ClusterIPs {:?}, forwarding to {:?}",
                now.service_ips,
                now.servers
            );
        }
        servers_tx.send_replace(Some(now.servers.clone()));
        ips_tx.send_replace(now.service_ips.clone());
        last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(json: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn endpoints_are_the_ready_ones_at_the_dns_udp_port() {
        let s = slice(serde_json::json!({
            "metadata": {"name": "kube-dns-x", "namespace": "kube-system"},
            "addressType": "IPv4",
            "ports": [{"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
                      {"name": "metrics", "port": 9153, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["169.254.50.2"], "conditions": {"ready": true}},
                {"addresses": ["169.254.50.3"], "conditions": {"ready": false}},
                {"addresses": ["169.254.50.4"]}
            ]
        }));
        assert_eq!(
            servers(&[&s]),
            vec![
                "169.254.50.2:5353".parse().unwrap(),
                "169.254.50.4:5353".parse().unwrap()
            ]
        );
        let bare = slice(serde_json::json!({
            "metadata": {"name": "x"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["169.254.50.9"]}]
        }));
        assert_eq!(servers(&[&bare]), vec!["169.254.50.9:53".parse().unwrap()]);
    }

    #[test]
    fn service_refs_parse_and_reject_nonsense() {
        let r: ServiceRef = "kube-system/kube-dns".parse().unwrap();
        assert_eq!(r.to_string(), "kube-system/kube-dns");
        assert!("kube-dns".parse::<ServiceRef>().is_err());
        assert!("a/B_C".parse::<ServiceRef>().is_err());
    }
}
