//! Command-line interface.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use hsdns_common::PIN_DIR;

use crate::hook::AttachMode;

/// `hsdns --version`: the crate version and the git commit it was built
/// from (`build.rs`), so an image's binary names its source.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("HSDNS_GIT_COMMIT"),
    ")"
);

#[derive(Parser, Debug)]
#[command(
    name = "hsdns",
    version = VERSION,
    about = "Node-local DNS for Kubernetes, answered in XDP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the XDP program, fill its maps from the record source, attach it,
    /// and serve until SIGINT/SIGTERM. Stopping leaves the program attached
    /// and answering from the pinned maps; the next `run` takes them over.
    Run(Box<RunArgs>),
    /// Remove what `run` leaves in place when it stops: the pinned links
    /// (detaching the program), program, maps, the node-local addresses and
    /// their interface. Refuses while a daemon runs.
    Uninstall(UninstallArgs),
    /// Mount a BPF filesystem at the pin directory's parent unless one is
    /// there (what `run` does itself when it may): for deploy/'s privileged
    /// init container, so the unprivileged daemon finds the host's bpffs.
    MountBpffs {
        #[arg(long, default_value = PIN_DIR, env = "HSDNS_PIN_DIR")]
        pin_dir: PathBuf,
    },
    /// Print the record table the source yields, one record per line.
    Records(SourceArgs),
    /// Print the kernel's verdict counters from the pinned map, summed
    /// over CPUs, as an aligned table (or JSON).
    Stats {
        #[arg(long, default_value = PIN_DIR)]
        pin_dir: PathBuf,
        /// One JSON object, counter name to value.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon: the query through the loaded program
    /// (BPF_PROG_TEST_RUN against the pinned program) and through its
    /// userspace server; prints both answers dig-style and which path
    /// answered.
    Query(QueryArgs),
}

/// Where the records come from: one of `--manifests`, `--kubeconfig` or
/// `--kube` is required, so a daemon on a node never serves a made-up
/// record set (the demo passes its seed file explicitly).
#[derive(Args, Debug, Clone)]
#[group(id = "source_args")]
#[command(group(clap::ArgGroup::new("source").required(true).args(["manifests", "kubeconfig", "kube"])))]
pub struct SourceArgs {
    /// Manifest files or directories in `kubectl get namespaces,services,
    /// endpointslices -A -o yaml` form (the demo: deploy/examples/seed.yaml).
    /// With Namespace objects among them, the namespaces are known: names
    /// in other namespaces get NXDOMAIN, as CoreDNS answers them.
    #[arg(
        long = "manifests",
        value_name = "PATH",
        env = "HSDNS_MANIFESTS",
        value_delimiter = ','
    )]
    pub manifests: Vec<PathBuf>,
    /// Watch the Kubernetes API with this kubeconfig instead of reading
    /// manifests.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "manifests",
        env = "HSDNS_KUBECONFIG"
    )]
    pub kubeconfig: Option<PathBuf>,
    /// Watch the Kubernetes API with the in-cluster service account (or
    /// $KUBECONFIG) instead of reading manifests.
    #[arg(long, conflicts_with_all = ["manifests", "kubeconfig"], env = "HSDNS_KUBE")]
    pub kube: bool,
    /// The cluster zone.
    #[arg(long, default_value = "cluster.local", env = "HSDNS_ZONE")]
    pub zone: String,
    /// TTL of every answer, and the SOA minimum (negative TTL).
    #[arg(long, default_value_t = 5, env = "HSDNS_TTL")]
    pub ttl: u32,
    /// Pod names `a-b-c-d.<ns>.pod.<zone>`, as CoreDNS's `pods` option:
    /// `disabled` passes them on to the cluster DNS (the default),
    /// `insecure` answers any address in an existing namespace, `verified`
    /// only the addresses of pods in that namespace (watches Pods: give the
    /// service account list/watch on pods, see deploy/overlays/pods-verified).
    #[arg(long, value_enum, default_value = "disabled", env = "HSDNS_PODS")]
    pub pods: crate::records::PodMode,
    /// Name an endpoint without a hostname after its pod (the targetRef),
    /// not its dashed address, as CoreDNS's `endpoint_pod_names`.
    #[arg(long, env = "HSDNS_ENDPOINT_POD_NAMES")]
    pub endpoint_pod_names: bool,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Interfaces to attach to besides the automatic selection (uplinks,
    /// or everything when --no-auto-attach). Repeatable.
    #[arg(
        long = "interface",
        short = 'i',
        value_name = "IFACE",
        env = "HSDNS_INTERFACE",
        value_delimiter = ','
    )]
    pub interfaces: Vec<String>,
    /// Do not attach to pod interfaces automatically (at start and as they
    /// appear); only to --interface.
    #[arg(long, env = "HSDNS_NO_AUTO_ATTACH")]
    pub no_auto_attach: bool,
    /// Attach nowhere: the userspace server alone answers (for comparison,
    /// or where XDP cannot run). Needs an upstream.
    #[arg(long, conflicts_with_all = ["interfaces", "include", "exclude"], env = "HSDNS_USERSPACE_ONLY")]
    pub userspace_only: bool,
    /// Automatic selection: attach to interfaces whose name matches (`*`
    /// wildcards, e.g. cali*, lxc*, veth*). Without any: every veth.
    #[arg(
        long = "include",
        value_name = "PATTERN",
        env = "HSDNS_INCLUDE",
        value_delimiter = ','
    )]
    pub include: Vec<String>,
    /// Automatic selection: never attach to these (`*` wildcards).
    #[arg(
        long = "exclude",
        value_name = "PATTERN",
        env = "HSDNS_EXCLUDE",
        value_delimiter = ','
    )]
    pub exclude: Vec<String>,
    /// Node-local addresses: held by --local-interface and answered by the
    /// kernel (port 53). Repeatable.
    #[arg(
        long = "dns-addr",
        default_value = "169.254.20.10",
        value_name = "IP",
        env = "HSDNS_DNS_ADDR",
        value_delimiter = ','
    )]
    pub dns_addrs: Vec<IpAddr>,
    /// Further addresses the kernel answers for without holding them, e.g.
    /// the cluster DNS service IP, so pods still pointed at kube-dns are
    /// answered from the kernel (replies come from that address). Repeatable.
    #[arg(
        long = "intercept-addr",
        value_name = "IP",
        env = "HSDNS_INTERCEPT_ADDR",
        value_delimiter = ','
    )]
    pub intercept_addrs: Vec<IpAddr>,
    /// Dummy interface holding the node-local addresses, created if absent
    /// (and removed at exit if created).
    #[arg(
        long,
        default_value = "hsdns0",
        value_name = "NAME",
        env = "HSDNS_LOCAL_INTERFACE"
    )]
    pub local_interface: String,
    /// Leave interfaces and addresses alone (something else manages them).
    #[arg(long, env = "HSDNS_NO_LOCAL_INTERFACE")]
    pub no_local_interface: bool,
    /// Serve DNS in userspace too, on every --dns-addr port 53 (UDP and
    /// TCP): what the kernel passes up is answered from the record table or
    /// forwarded. Names outside the cluster zone go to these upstreams (ip
    /// or ip:port; the node's resolvers). Repeatable.
    #[arg(long = "upstream", value_name = "ADDR", value_parser = parse_upstream, env = "HSDNS_UPSTREAM", value_delimiter = ',')]
    pub upstreams: Vec<std::net::SocketAddr>,
    /// Like --upstream, with the nameservers of this resolv.conf (addresses
    /// hsdns answers on itself are left out). With the live source and no
    /// --upstream: /etc/resolv.conf.
    #[arg(long, value_name = "PATH", env = "HSDNS_RESOLV_CONF")]
    pub resolv_conf: Option<PathBuf>,
    /// The cluster DNS Service (NAMESPACE/NAME). With the live source, hsdns
    /// answers its ClusterIPs in the kernel and forwards cluster names
    /// (the zone, in-addr.arpa, ip6.arpa) the table cannot answer to its
    /// ready endpoints, never to the node's resolvers.
    #[arg(
        long,
        value_name = "NS/NAME",
        default_value = "kube-system/kube-dns",
        env = "HSDNS_CLUSTER_DNS_SERVICE"
    )]
    pub cluster_dns_service: crate::source::cluster_dns::ServiceRef,
    /// Do not look for the cluster DNS Service: without --cluster-upstream,
    /// cluster names then go to --upstream like any other.
    #[arg(long, env = "HSDNS_NO_CLUSTER_DNS")]
    pub no_cluster_dns: bool,
    /// Forward cluster names to these servers (ip or ip:port) instead of the
    /// discovered Service's endpoints. Repeatable.
    #[arg(long = "cluster-upstream", value_name = "ADDR", value_parser = parse_upstream, env = "HSDNS_CLUSTER_UPSTREAM", value_delimiter = ',')]
    pub cluster_upstreams: Vec<std::net::SocketAddr>,
    /// Per-upstream timeout of a forwarded query, in milliseconds.
    #[arg(long, default_value_t = 2000, env = "HSDNS_UPSTREAM_TIMEOUT_MS")]
    pub upstream_timeout_ms: u64,
    /// Forwarded queries in flight at most; beyond, SERVFAIL at once.
    #[arg(long, default_value_t = 1000, env = "HSDNS_MAX_INFLIGHT")]
    pub max_inflight: usize,
    /// Bytes of cached upstream replies at most.
    #[arg(long, default_value_t = 16 << 20, env = "HSDNS_CACHE_BYTES")]
    pub cache_bytes: u64,
    /// Longest a positive upstream reply is cached, in seconds (whatever
    /// its TTL; NodeLocal DNSCache's value).
    #[arg(long, default_value_t = 30, env = "HSDNS_CACHE_MAX_TTL")]
    pub cache_max_ttl: u64,
    /// Longest an NXDOMAIN or NODATA reply is cached, in seconds.
    #[arg(long, default_value_t = 5, env = "HSDNS_CACHE_MAX_NEGATIVE_TTL")]
    pub cache_max_negative_ttl: u64,
    /// Queries a second the userspace server answers one client address
    /// (0: no limit); more are dropped. The kernel's answers do not count.
    #[arg(long, default_value_t = 2000, env = "HSDNS_CLIENT_QPS")]
    pub client_qps: u32,
    /// Open TCP connections at most (beyond, the longest idle is closed).
    #[arg(long, default_value_t = 512, env = "HSDNS_TCP_MAX_CONNECTIONS")]
    pub tcp_max_connections: usize,
    /// A TCP connection with no query for this long is closed, in ms.
    #[arg(long, default_value_t = 10_000, env = "HSDNS_TCP_IDLE_TIMEOUT_MS")]
    pub tcp_idle_timeout_ms: u64,
    /// Serve Prometheus metrics (`GET /metrics`), liveness (`/healthz`) and
    /// readiness (`/readyz`) on this address, e.g. 169.254.20.10:9253 as
    /// NodeLocal DNSCache does.
    #[arg(long, value_name = "ADDR", env = "HSDNS_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Do not answer NXDOMAIN in the kernel for names that provably do not
    /// exist (for clusters whose upstream serves other names in the zone).
    #[arg(long, env = "HSDNS_NO_NXDOMAIN")]
    pub no_nxdomain: bool,
    /// Where the kernel program runs: `auto` puts it at tc ingress on veths
    /// (replies of any size, straight back into the pod) and XDP on other
    /// interfaces (driver mode where the driver delivers replies); `tc`,
    /// `xdp`, or XDP in `driver` or `skb` mode only. `--xdp-mode` is the
    /// old name.
    #[arg(
        long,
        alias = "xdp-mode",
        value_enum,
        default_value = "auto",
        env = "HSDNS_ATTACH_MODE"
    )]
    pub attach_mode: AttachMode,
    /// Where the maps are pinned for bpftool.
    #[arg(long, default_value = PIN_DIR, env = "HSDNS_PIN_DIR")]
    pub pin_dir: PathBuf,
    /// Capacity of the three name maps (names up to 48, 112, 255 bytes),
    /// comma-separated.
    #[arg(long, value_name = "N,N,N", default_value = "65536,65536,1024", value_parser = parse_three, env = "HSDNS_NAME_CAPACITY")]
    pub name_capacity: [u32; 3],
    /// Capacity of the three answer maps (answers up to 32, 192, 1216
    /// bytes), comma-separated.
    #[arg(long, value_name = "N,N,N", default_value = "65536,8192,1024", value_parser = parse_three, env = "HSDNS_ANSWER_CAPACITY")]
    pub answer_capacity: [u32; 3],
    /// Created once the maps hold the whole record table and the kernel
    /// answers, or the kernel answers from maps adopted from the previous
    /// daemon (a readiness signal for scripts and probes). A leftover from
    /// an earlier process is removed at start.
    #[arg(long, value_name = "PATH", env = "HSDNS_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// When no daemon has confirmed the maps for this long (a heartbeat in
    /// the config map, written every second while the table is complete),
    /// the kernel stops answering NXDOMAIN: a name created since could be
    /// missing. 0 disables. E.g. 30s, 500ms, 2m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, env = "HSDNS_STALE_NXDOMAIN_AFTER")]
    pub stale_nxdomain_after: Duration,
    /// When no daemon has confirmed the maps for this long, the kernel
    /// passes every query up (counted as pass_stale). 0 disables.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration, env = "HSDNS_STALE_PASS_AFTER")]
    pub stale_pass_after: Duration,
    /// Receive buffer of the link event socket in bytes (the kernel's
    /// default otherwise). For tests: a tiny one makes a burst of new
    /// interfaces overrun it, which the daemon answers by listing again.
    #[arg(
        long,
        value_name = "BYTES",
        hide = true,
        env = "HSDNS_LINK_EVENTS_RCVBUF"
    )]
    pub link_events_rcvbuf: Option<usize>,
}

impl RunArgs {
    /// Whether the records come from the API (not manifests).
    pub fn live_source(&self) -> bool {
        self.source.kube || self.source.kubeconfig.is_some()
    }

    /// The cluster DNS Service the daemon finds and follows (answering its
    /// ClusterIPs in the kernel, forwarding cluster names to its
    /// endpoints): with the live source, unless switched off or replaced by
    /// --cluster-upstream.
    pub fn discovered_cluster_dns(&self) -> Option<&crate::source::cluster_dns::ServiceRef> {
        (self.live_source() && !self.no_cluster_dns && self.cluster_upstreams.is_empty())
            .then_some(&self.cluster_dns_service)
    }
}

/// `hsdns query`'s arguments.
#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The name to ask for (relative names are taken as fully qualified).
    pub name: String,
    /// The record type (A, AAAA, SRV, PTR, TXT, SOA, ...).
    #[arg(default_value = "A")]
    pub qtype: String,
    /// Where the daemon pinned its program and maps.
    #[arg(long, default_value = PIN_DIR)]
    pub pin_dir: PathBuf,
    /// The address pods send to: the kernel frame's destination, and where
    /// the userspace server is asked.
    #[arg(long, default_value = "169.254.20.10")]
    pub addr: IpAddr,
    /// The userspace server's port.
    #[arg(long, default_value_t = 53)]
    pub port: u16,
    /// How long to wait for the userspace server, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Send an EDNS OPT record (UDP size 1232), as dig does by default.
    #[arg(long)]
    pub edns: bool,
}

/// The daemon's flags that say what it left on the node, under the same
/// names and environment variables as `run`'s, so the clean-up path reads
/// the daemon's own ConfigMap (deploy/uninstall) and removes exactly that.
#[derive(Args, Debug, Clone)]
pub struct UninstallArgs {
    /// The daemon's --pin-dir.
    #[arg(long, default_value = PIN_DIR, env = "HSDNS_PIN_DIR")]
    pub pin_dir: PathBuf,
    /// The daemon's --local-interface: deleted if it is a dummy interface.
    #[arg(
        long,
        default_value = "hsdns0",
        value_name = "NAME",
        env = "HSDNS_LOCAL_INTERFACE"
    )]
    pub local_interface: String,
    /// The daemon's --dns-addr: removed from lo, where they go on kernels
    /// without dummy interfaces. Repeatable.
    #[arg(
        long = "dns-addr",
        default_value = "169.254.20.10",
        value_name = "IP",
        env = "HSDNS_DNS_ADDR",
        value_delimiter = ','
    )]
    pub dns_addrs: Vec<IpAddr>,
    /// Leave interfaces and addresses alone (as the daemon's flag).
    #[arg(long, env = "HSDNS_NO_LOCAL_INTERFACE")]
    pub no_local_interface: bool,
}

/// A duration: a number with a unit (ms, s, m, h), or 0.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("{s:?}: give a unit (ms, s, m, h)"))?;
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("{s:?}: not a number"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Three comma-separated counts, one per map tier.
fn parse_three(s: &str) -> Result<[u32; 3], String> {
    let v = s
        .split(',')
        .map(|n| n.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{s:?}: {e}"))?;
    v.try_into()
        .map_err(|v: Vec<u32>| format!("{s:?}: give 3 comma-separated counts, not {}", v.len()))
}

fn parse_upstream(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not an IP address or ip:port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(extra: &[&str]) -> Result<RunArgs, clap::Error> {
        let argv = ["hsdns", "run", "--manifests", "x.yaml"]
            .iter()
            .chain(extra);
        match Cli::try_parse_from(argv)?.cmd {
            Command::Run(args) => Ok(*args),
            _ => unreachable!("parsed `run`"),
        }
    }

    #[test]
    fn every_run_flag_has_its_environment_variable() {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").unwrap();
        let mut n = 0;
        for arg in run.get_arguments().filter(|a| a.get_long().is_some()) {
            let long = arg.get_long().unwrap();
            if long == "help" {
                continue;
            }
            let want = format!("HSDNS_{}", long.to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(want.as_str()),
                "--{long}"
            );
            n += 1;
        }
        assert!(n > 25, "{n} flags");
    }

    #[test]
    fn run_needs_a_record_source() {
        let argv = ["hsdns", "run"];
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(
            err.contains("--manifests") && err.contains("--kube"),
            "{err}"
        );
        for source in [
            &["--kube"][..],
            &["--kubeconfig", "k"],
            &["--manifests", "m"],
        ] {
            let argv = ["hsdns", "run"].iter().chain(source);
            assert!(Cli::try_parse_from(argv).is_ok(), "{source:?}");
        }
    }

    #[test]
    fn the_version_names_the_commit() {
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(VERSION.contains("(git "), "{VERSION}");
        assert!(
            !VERSION.contains("(git unknown)"),
            "built from a checkout: {VERSION}"
        );
    }

    /// The clean-up path reads the daemon's ConfigMap: each uninstall flag
    /// has the environment variable of the run flag of the same name.
    #[test]
    fn uninstall_flags_read_the_run_flags_environment() {
        use clap::CommandFactory as _;
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").unwrap();
        let uninstall = cmd.find_subcommand("uninstall").unwrap();
        let mut n = 0;
        for arg in uninstall.get_arguments().filter(|a| a.get_long().is_some()) {
            let long = arg.get_long().unwrap();
            if long == "help" {
                continue;
            }
            let run_arg = run
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap_or_else(|| panic!("--{long} is not a run flag"));
            assert_eq!(arg.get_env(), run_arg.get_env(), "--{long}");
            assert_eq!(
                arg.get_default_values(),
                run_arg.get_default_values(),
                "--{long}"
            );
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn staleness_bounds_are_durations_with_units() {
        let args = run_args(&[]).unwrap();
        assert_eq!(args.stale_nxdomain_after, Duration::from_secs(30));
        assert_eq!(args.stale_pass_after, Duration::from_secs(300));
        let args =
            run_args(&["--stale-nxdomain-after", "500ms", "--stale-pass-after", "0"]).unwrap();
        assert_eq!(args.stale_nxdomain_after, Duration::from_millis(500));
        assert_eq!(args.stale_pass_after, Duration::ZERO);
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("30").unwrap_err().contains("unit"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn capacities_are_three_comma_separated_counts() {
        let args = run_args(&["--name-capacity", "262144,4096,256"]).unwrap();
        assert_eq!(args.name_capacity, [262_144, 4_096, 256]);
        assert_eq!(args.answer_capacity, [65_536, 8_192, 1_024]);
        let err = run_args(&["--answer-capacity", "1,2"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("give 3 comma-separated counts, not 2"),
            "{err}"
        );
        let err = run_args(&["--name-capacity", "1,x,3"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid digit"), "{err}");
    }
}
