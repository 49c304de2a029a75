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

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn settings(extra: &[&str]) -> Settings {
        let argv = ["hsdns", "run"].iter().chain(extra);
        match Cli::try_parse_from(argv).unwrap().cmd {
            Command::Run(args) => Settings::from(&*args),
            _ => unreachable!("parsed `run`"),
        }
    }

    #[test]
    fn the_kernel_answers_the_node_local_then_the_intercepted_addresses() {
        let s = settings(&[
            "--manifests=x.yaml",
            "--dns-addr=169.254.20.10",
            "--intercept-addr=169.254.0.10",
        ]);
        let want: Vec<IpAddr> = vec![
            "169.254.20.10".parse().unwrap(),
            "169.254.0.10".parse().unwrap(),
        ];
        assert_eq!(s.sync.kernel_addrs, want);
        // Never an upstream of its own.
        assert_eq!(s.serve.own_addrs, want);
        // The server listens on the node-local address only.
        assert_eq!(
            s.serve.server.listen,
            ["169.254.20.10:53".parse::<SocketAddr>().unwrap()]
        );
        assert!(s.intercepts_cluster_ips);
        let (iface, addrs) = s.attach.local.expect("a local interface by default");
        assert_eq!((iface.as_str(), addrs), ("hsdns0", want[..1].to_vec()));
    }

    #[test]
    fn userspace_only_attaches_nowhere_and_holds_the_addresses_still() {
        let s = settings(&[
            "--manifests=x.yaml",
            "--userspace-only",
            "--upstream=169.254.0.53",
        ]);
        assert!(s.attach.userspace_only);
        assert!(!s.attach.wanted.auto);
        assert!(s.attach.local.is_some());
        let s = settings(&["--manifests=x.yaml", "--no-local-interface"]);
        assert!(s.attach.local.is_none());
        assert!(s.attach.wanted.auto);
    }

    #[test]
    fn the_cluster_dns_is_discovered_only_live_and_without_cluster_upstreams() {
        let manifests = settings(&["--manifests=x.yaml"]);
        assert!(!manifests.sync.live && manifests.serve.cluster_dns.is_none());
        assert!(!manifests.sync.discover_cluster_dns && !manifests.intercepts_cluster_ips);
        let live = settings(&["--kubeconfig=k"]);
        assert!(live.sync.live && live.serve.live);
        assert_eq!(
            live.serve.cluster_dns.map(|s| s.to_string()).as_deref(),
            Some("kube-system/kube-dns")
        );
        assert!(live.sync.discover_cluster_dns && live.intercepts_cluster_ips);
        let given = settings(&["--kubeconfig=k", "--cluster-upstream=169.254.0.53"]);
        assert!(given.serve.cluster_dns.is_none() && !given.sync.discover_cluster_dns);
    }

    #[test]
    fn limits_and_bounds_reach_their_task() {
        let s = settings(&[
            "--manifests=x.yaml",
            "--no-nxdomain",
            "--stale-nxdomain-after=2s",
            "--stale-pass-after=0",
            "--tcp-max-connections=0",
            "--upstream-timeout-ms=700",
            "--name-capacity=1,2,3",
        ]);
        assert!(!s.sync.nxdomain && !s.sync.opts.nxdomain);
        assert_eq!(
            s.sync.stale_bounds,
            [Duration::from_secs(2), Duration::ZERO]
        );
        // At least one connection, whatever was asked.
        assert_eq!(s.serve.server.tcp.max_connections, 1);
        assert_eq!(s.serve.server.timeout, Duration::from_millis(700));
        assert_eq!(s.attach.caps.names, [1, 2, 3]);
    }
}
