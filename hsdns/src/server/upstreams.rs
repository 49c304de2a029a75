//! Where a forwarded question goes, as NodeLocal DNSCache splits it: the
//! cluster zone and the reverse zones to the cluster DNS (the endpoints of
//! its Service, never the ClusterIP hsdns intercepts), everything else to
//! the node's resolvers.
//!
//! The cluster DNS endpoints come from the API and change; until they are
//! known, a cluster-zone question waits for them (bounded) and then fails:
//! it is never sent to the node's resolvers, which would answer a cluster
//! name from outside the cluster.

use std::{
    net::{IpAddr, SocketAddr},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use hickory_proto::rr::Name;
use tokio::sync::watch;

/// The cluster DNS servers as last discovered: `None` while not yet known.
pub type ClusterServers = Option<Vec<SocketAddr>>;

pub struct Upstreams {
    zone: Name,
    /// `None`: no cluster DNS in this configuration (manifests without
    /// `--cluster-upstream`): every question goes to `node`.
    cluster: Option<watch::Receiver<ClusterServers>>,
    node: Vec<SocketAddr>,
    /// Spreads questions over the cluster DNS endpoints, as kube-proxy
    /// would have.
    next: AtomicUsize,
}

/// Why a question has no upstream to go to.
#[derive(Debug, PartialEq, Eq)]
pub enum NoUpstream {
    /// The cluster DNS was not discovered in time (or has no endpoints).
    ClusterUnknown,
    /// No node resolver is configured.
    NoResolver,
}

impl Upstreams {
    pub fn new(
        zone: Name,
        cluster: Option<watch::Receiver<ClusterServers>>,
        node: Vec<SocketAddr>,
    ) -> Self {
        Self {
            zone,
            cluster,
            node,
            next: AtomicUsize::new(0),
        }
    }

    /// A fixed set (tests, manifests): `cluster` for the cluster zone.
    pub fn fixed(zone: Name, cluster: Option<Vec<SocketAddr>>, node: Vec<SocketAddr>) -> Self {
        let cluster = cluster.map(|c| watch::channel(Some(c)).1);
        Self::new(zone, cluster, node)
    }

    /// Whether `name` belongs to the cluster DNS: the cluster zone and the
    /// reverse zones (pod and service PTRs live there).
    pub fn is_cluster_name(&self, name: &Name) -> bool {
        let arpa4 = Name::from_ascii("in-addr.arpa.").expect("constant name");
        let arpa6 = Name::from_ascii("ip6.arpa.").expect("constant name");
        self.zone.zone_of(name) || arpa4.zone_of(name) || arpa6.zone_of(name)
    }

    /// The upstreams to try for `name`, in order. A cluster name waits up
    /// to `wait` for the cluster DNS to be discovered.
    pub async fn for_name(
        &self,
        name: &Name,
        wait: Duration,
    ) -> Result<Vec<SocketAddr>, NoUpstream> {
        let Some(cluster) = self.cluster.as_ref().filter(|_| self.is_cluster_name(name)) else {
            if self.node.is_empty() {
                return Err(NoUpstream::NoResolver);
            }
            return Ok(self.node.clone());
        };
        let mut rx = cluster.clone();
        let servers = tokio::time::timeout(wait, async {
            rx.wait_for(|s| s.as_ref().is_some_and(|s| !s.is_empty()))
                .await
                .ok()
                .and_then(|s| s.clone())
        })
        .await
        .ok()
        .flatten()
        .ok_or(NoUpstream::ClusterUnknown)?;
        let k = self.next.fetch_add(1, Ordering::Relaxed) % servers.len();
        let mut v = servers;
        v.rotate_left(k);
        Ok(v)
    }
}

/// The nameservers of a resolv.conf on port 53, leaving out `own` (the
/// addresses hsdns itself answers on: a node whose resolv.conf names the
/// node-local address would otherwise forward to itself).
pub fn resolv_conf(path: &std::path::Path, own: &[IpAddr]) -> anyhow::Result<Vec<SocketAddr>> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let all: Vec<IpAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().split('%').next()?.parse().ok())
        .collect();
    if all.is_empty() {
        anyhow::bail!("{}: no nameserver line", path.display());
    }
    let ups: Vec<SocketAddr> = all
        .iter()
        .filter(|ip| !own.contains(ip))
        .map(|ip| SocketAddr::new(*ip, 53))
        .collect();
    if ups.is_empty() {
        anyhow::bail!(
            "{}: every nameserver ({all:?}) is an address hsdns answers on itself",
            path.display()
        );
    }
    Ok(ups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn cluster_and_reverse_names_go_to_the_cluster_dns_the_rest_to_the_node() {
        let u = Upstreams::fixed(
            n("cluster.local."),
            Some(vec![sa("169.254.0.1:53")]),
            vec![sa("169.254.0.2:53")],
        );
        let w = Duration::from_millis(10);
        for name in [
            "a.b.svc.cluster.local.",
            "cluster.local.",
            "10.0.254.169.in-addr.arpa.",
            "1.0.0.0.ip6.arpa.",
        ] {
            assert_eq!(
                u.for_name(&n(name), w).await,
                Ok(vec![sa("169.254.0.1:53")]),
                "{name}"
            );
        }
        for name in ["example.test.", "cluster.local.example.test.", "arpa."] {
            assert_eq!(
                u.for_name(&n(name), w).await,
                Ok(vec![sa("169.254.0.2:53")]),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn a_cluster_name_waits_for_discovery_and_never_goes_to_the_node() {
        let (tx, rx) = watch::channel(None);
        let u = Upstreams::new(n("cluster.local."), Some(rx), vec![sa("169.254.0.2:53")]);
        let name = n("x.y.svc.cluster.local.");
        assert_eq!(
            u.for_name(&name, Duration::from_millis(20)).await,
            Err(NoUpstream::ClusterUnknown)
        );
        // Known but without endpoints: still not the node's resolvers.
        tx.send_replace(Some(vec![]));
        assert_eq!(
            u.for_name(&name, Duration::from_millis(20)).await,
            Err(NoUpstream::ClusterUnknown)
        );
        let waiting = u.for_name(&name, Duration::from_secs(5));
        let publish = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send_replace(Some(vec![sa("169.254.0.1:53")]));
        };
        let (got, ()) = tokio::join!(waiting, publish);
        assert_eq!(got, Ok(vec![sa("169.254.0.1:53")]));
    }

    #[test]
    fn resolv_conf_leaves_out_our_own_addresses() {
        let p = std::env::temp_dir().join(format!("hsdns-rc-{}", std::process::id()));
        std::fs::write(
            &p,
            "search x\nnameserver 169.254.20.10\nnameserver 169.254.0.9\n",
        )
        .unwrap();
        let own: Vec<IpAddr> = vec!["169.254.20.10".parse().unwrap()];
        assert_eq!(resolv_conf(&p, &own).unwrap(), vec![sa("169.254.0.9:53")]);
        std::fs::write(&p, "nameserver 169.254.20.10\n").unwrap();
        let err = resolv_conf(&p, &own).unwrap_err().to_string();
        assert!(err.contains("hsdns answers on itself"), "{err}");
        std::fs::remove_file(p).unwrap();
    }
}
