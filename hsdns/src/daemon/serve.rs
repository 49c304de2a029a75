//! The serve task: what faces clients, started before the long start-up
//! work (program load and verification, the first lists): the userspace
//! DNS server with its sockets bound (SO_REUSEPORT, so a daemon that is
//! still running keeps serving beside us), the HTTP endpoint, and the
//! cluster DNS discovery. All of it runs on the server's own threads
//! ([`ServerRuntime`]); only the liveness beat runs on the daemon's event
//! loop, which it measures.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::sync::watch;

use crate::{
    metrics::Metrics,
    records::SharedTable,
    server::{ClusterServers, Server, ServerConfig, ServerRuntime, Upstreams, resolv_conf},
    source::{self, cluster_dns::ServiceRef},
};

/// What the serve task reads of the command line.
pub struct ServeSettings {
    /// The records come from the API (not manifests).
    pub live: bool,
    /// The addresses hsdns answers on itself (never an upstream).
    pub own_addrs: Vec<IpAddr>,
    /// `--upstream`.
    pub upstreams: Vec<SocketAddr>,
    /// `--resolv-conf`.
    pub resolv_conf: Option<PathBuf>,
    /// `--cluster-upstream`.
    pub cluster_upstreams: Vec<SocketAddr>,
    /// The cluster DNS Service to discover and follow (see
    /// `RunArgs::discovered_cluster_dns`).
    pub cluster_dns: Option<ServiceRef>,
    pub kubeconfig: Option<PathBuf>,
    /// `--metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
    pub server: ServerConfig,
}

pub struct Frontend {
    rt: ServerRuntime,
    pub server: Option<Arc<Server>>,
    serving: Option<tokio::task::JoinHandle<()>>,
    /// The HTTP listener's task (binding, then serving): dropping it closes
    /// the listener.
    http: Option<tokio::task::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: Arc<Metrics>,
    /// The cluster DNS Service's ClusterIPs, for the kernel to answer.
    pub cluster_ips: watch::Receiver<Vec<IpAddr>>,
    _ips_tx: Option<watch::Sender<Vec<IpAddr>>>,
}

/// The node's resolvers: --upstream, --resolv-conf (by default
/// /etc/resolv.conf with the live source and no --upstream), without
/// hsdns's own addresses.
fn node_upstreams(args: &ServeSettings) -> Result<Vec<SocketAddr>> {
    let (own, live) = (&args.own_addrs, args.live);
    let mut ups: Vec<SocketAddr> = args
        .upstreams
        .iter()
        .filter(|u| !own.contains(&u.ip()))
        .copied()
        .collect();
    match &args.resolv_conf {
        Some(rc) => ups.extend(resolv_conf(rc, own)?),
        None if live && ups.is_empty() => {
            match resolv_conf(std::path::Path::new("/etc/resolv.conf"), own) {
                Ok(found) => ups.extend(found),
                Err(e) => {
                    log::warn!("no node resolvers, names outside the cluster get SERVFAIL: {e:#}")
                }
            }
        }
        None => {}
    }
    Ok(ups)
}

impl Frontend {
    /// Binds and starts serving.
    pub async fn start(
        args: &ServeSettings,
        table: SharedTable,
        metrics: Arc<Metrics>,
        zone: hickory_proto::rr::Name,
    ) -> Result<Self> {
        let rt = ServerRuntime::new()?;
        let h = rt.handle();
        let mut tasks = Vec::new();

        // The liveness beat, on the daemon's own event loop.
        let health = metrics.health.clone();
        health.beat();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                health.beat();
            }
        }));

        let http = match args.metrics_addr {
            Some(addr) => Some(start_http(&h, addr, metrics.clone()).await?),
            None => None,
        };

        let node = node_upstreams(args)?;
        let (ips_tx, cluster_ips) = watch::channel(Vec::new());
        let cluster: Option<watch::Receiver<ClusterServers>> = if !args.cluster_upstreams.is_empty()
        {
            Some(watch::channel(Some(args.cluster_upstreams.clone())).1)
        } else if let Some(svc) = args.cluster_dns.clone() {
            let (tx, rx) = watch::channel(None);
            let (kc, ips) = (args.kubeconfig.clone(), ips_tx.clone());
            // A client of its own, made on the server's runtime: kube's
            // client runs a worker task where it is made, and the event
            // loop's may be busy with a relist.
            tasks.push(h.spawn(async move {
                match source::kube::client(kc.as_deref()).await {
                    Ok(c) => source::cluster_dns::follow(c, svc, tx, ips).await,
                    Err(e) => log::error!("cluster DNS discovery: {e:#}"),
                }
            }));
            Some(rx)
        } else {
            None
        };
        let serve_dns = !node.is_empty() || cluster.is_some();
        let mut me = Self {
            rt,
            server: None,
            serving: None,
            http,
            tasks,
            metrics: metrics.clone(),
            cluster_ips,
            _ips_tx: Some(ips_tx),
        };
        if !serve_dns {
            return Ok(me);
        }
        let cfg = args.server.clone();
        let upstreams = Upstreams::new(zone, cluster, node.clone());
        let srv = Server::new(cfg, upstreams, table);
        metrics.health.set_listening(false);
        metrics.set_server(srv.clone());
        let s2 = srv.clone();
        let bound = h.spawn(async move { s2.bind().await }).await??;
        log::info!(
            "userspace server on {:?} (node resolvers {node:?}, cluster DNS {})",
            bound.local_addrs(),
            if let Some(svc) = &args.cluster_dns {
                format!("from {svc}")
            } else if args.cluster_upstreams.is_empty() {
                "none: cluster names go to the node resolvers".into()
            } else {
                format!("{:?}", args.cluster_upstreams)
            }
        );
        me.serving = Some(h.spawn(srv.clone().serve(bound)));
        metrics.health.set_listening(true);
        me.server = Some(srv);
        Ok(me)
    }

    /// Closes the HTTP listener (at a hand-over or a stop): from then on
    /// probes and scrapes of `--metrics-addr` reach the successor, if one
    /// listens, and nothing else. Requests already accepted are finished.
    pub async fn close_http(&mut self) {
        if let Some(t) = self.http.take() {
            t.abort();
            let _ = t.await;
            log::info!("HTTP listener closed: probes go to the successor, if any");
        }
    }

    /// Stop: not ready any more; new queries to a successor (if one is
    /// bound), what this daemon took answered; returns when done (bounded).
    pub async fn lame_duck(&mut self) {
        self.metrics.health.set_stopping();
        let (Some(srv), Some(serving)) = (&self.server, self.serving.take()) else {
            return;
        };
        srv.lame_duck();
        let bound = Duration::from_secs(20);
        if tokio::time::timeout(bound, serving).await.is_err() {
            log::warn!("userspace server still busy after {bound:?}; leaving");
        }
    }
}

/// Binds the HTTP listener (see `server::listen::tcp_to_newest`) and
/// serves it on the server runtime. An address held by a socket without
/// SO_REUSEPORT (a daemon from before it had it) is waited for in the
/// background rather than fatal: the DNS path does not depend on it, and
/// that daemon goes away within the update.
async fn start_http(
    h: &tokio::runtime::Handle,
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<tokio::task::JoinHandle<()>> {
    let bind = move || -> std::io::Result<tokio::net::TcpListener> {
        tokio::net::TcpListener::from_std(crate::server::listen::tcp_to_newest(addr, 128)?)
    };
    let first = h.spawn(async move { bind() }).await?;
    let l = match first {
        Ok(l) => Some(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            log::warn!(
                "{addr} is held by a listener without SO_REUSEPORT (an older hsdns?):                  /metrics, /healthz and /readyz are served once it is free"
            );
            None
        }
        Err(e) => {
            return Err(e).with_context(|| format!("binding the metrics listener on {addr}"));
        }
    };
    Ok(h.spawn(async move {
        let l = match l {
            Some(l) => l,
            None => loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match bind() {
                    Ok(l) => break l,
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
                    Err(e) => {
                        log::error!("binding the metrics listener on {addr}: {e}");
                        return;
                    }
                }
            },
        };
        match l.local_addr() {
            Ok(a) => log::info!("metrics, /healthz and /readyz on http://{a}"),
            Err(e) => log::warn!("metrics listener: {e}"),
        }
        crate::http::serve(l, metrics).await
    }))
}

impl Drop for Frontend {
    fn drop(&mut self) {
        if let Some(t) = &self.http {
            t.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
        if let Some(s) = &self.serving {
            s.abort();
        }
        let _ = &self.rt;
    }
}
