//! The one place `hsdns run`'s flags are read: each task gets the part of
//! them it uses, and nothing else travels.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use super::{
    attach::{AttachSettings, Wanted},
    serve::ServeSettings,
    sync::SyncSettings,
    table,
};
use crate::{
    cli::RunArgs,
    links::Selector,
    loader::Capacities,
    server::{ServerConfig, TcpLimits, TtlCaps},
};

/// `hsdns run`'s flags, by task.
pub struct Settings {
    pub attach: AttachSettings,
    pub sync: SyncSettings,
    pub serve: ServeSettings,
    /// `--ready-file`.
    pub ready_file: Option<PathBuf>,
    /// The kernel answers for a ClusterIP (an intercepted address or the
    /// discovered cluster DNS Service's), which pods' packets reach only
    /// without socket-level load balancing (see `crate::cni`).
    pub intercepts_cluster_ips: bool,
}

/// The addresses the kernel answers for: the node-local ones, then the
/// intercepted ones.
fn kernel_addrs(args: &RunArgs) -> Vec<IpAddr> {
    args.dns_addrs
        .iter()
        .chain(&args.intercept_addrs)
        .copied()
        .collect()
}

impl From<&RunArgs> for Settings {
    fn from(args: &RunArgs) -> Self {
        Settings {
            attach: args.into(),
            sync: args.into(),
            serve: args.into(),
            ready_file: args.ready_file.clone(),
            intercepts_cluster_ips: !args.intercept_addrs.is_empty()
                || args.discovered_cluster_dns().is_some(),
        }
    }
}

impl From<&RunArgs> for AttachSettings {
    fn from(args: &RunArgs) -> Self {
        AttachSettings {
            pin_dir: args.pin_dir.clone(),
            caps: Capacities {
                names: args.name_capacity,
                answers: args.answer_capacity,
            },
            mode: args.attach_mode,
            userspace_only: args.userspace_only,
            wanted: Wanted {
                explicit: args.interfaces.clone(),
                auto: !args.no_auto_attach && !args.userspace_only,
                selector: Selector {
                    include: args.include.clone(),
                    exclude: args.exclude.clone(),
                },
            },
            link_events_rcvbuf: args.link_events_rcvbuf,
            local: (!args.no_local_interface)
                .then(|| (args.local_interface.clone(), args.dns_addrs.clone())),
        }
    }
}

impl From<&RunArgs> for SyncSettings {
    fn from(args: &RunArgs) -> Self {
        SyncSettings {
            source: args.source.clone(),
            live: args.live_source(),
            opts: table::table_options(&args.source, args.no_nxdomain),
            nxdomain: !args.no_nxdomain,
            stale_bounds: [args.stale_nxdomain_after, args.stale_pass_after],
            kernel_addrs: kernel_addrs(args),
            discover_cluster_dns: args.discovered_cluster_dns().is_some(),
        }
    }
}

impl From<&RunArgs> for ServeSettings {
    fn from(args: &RunArgs) -> Self {
        ServeSettings {
            live: args.live_source(),
            own_addrs: kernel_addrs(args),
            upstreams: args.upstreams.clone(),
            resolv_conf: args.resolv_conf.clone(),
            cluster_upstreams: args.cluster_upstreams.clone(),
            cluster_dns: args.discovered_cluster_dns().cloned(),
            kubeconfig: args.source.kubeconfig.clone(),
            metrics_addr: args.metrics_addr,
            server: ServerConfig {
                listen: args
                    .dns_addrs
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, 53))
                    .collect(),
                timeout: Duration::from_millis(args.upstream_timeout_ms),
                max_inflight: args.max_inflight,
                cache_bytes: args.cache_bytes,
                ttl_caps: TtlCaps {
                    positive: Duration::from_secs(args.cache_max_ttl),
                    negative: Duration::from_secs(args.cache_max_negative_ttl),
                },
                client_qps: args.client_qps,
                tcp: TcpLimits {
                    max_connections: args.tcp_max_connections.max(1),
                    idle_timeout: Duration::from_millis(args.tcp_idle_timeout_ms),
                    ..TcpLimits::default()
                },
            },
        }
    }
}
