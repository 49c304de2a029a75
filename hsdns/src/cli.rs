//! Command-line interface.

use std::{net::IpAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use hsdns_common::PIN_DIR;

use crate::loader::ModeChoice;

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
    /// and serve until SIGINT/SIGTERM.
    Run(Box<RunArgs>),
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
    Query(crate::query::QueryArgs),
    /// Remove what a daemon may have left on this node (pins, the dummy
    /// interface), after its DaemonSet is deleted (deploy/uninstall).
    Uninstall(crate::uninstall::UninstallArgs),
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
    /// forwarded to these upstreams (ip or ip:port). Repeatable. Default:
    /// the --intercept-addr addresses (the cluster DNS service IP), if any.
    #[arg(long = "upstream", value_name = "ADDR", value_parser = parse_upstream, env = "HSDNS_UPSTREAM", value_delimiter = ',')]
    pub upstreams: Vec<std::net::SocketAddr>,
    /// Like --upstream, with the nameservers of this resolv.conf.
    #[arg(long, value_name = "PATH", env = "HSDNS_RESOLV_CONF")]
    pub resolv_conf: Option<PathBuf>,
    /// Per-upstream timeout of a forwarded query, in milliseconds.
    #[arg(long, default_value_t = 2000, env = "HSDNS_UPSTREAM_TIMEOUT_MS")]
    pub upstream_timeout_ms: u64,
    /// Forwarded queries in flight at most; beyond, SERVFAIL at once.
    #[arg(long, default_value_t = 1000, env = "HSDNS_MAX_INFLIGHT")]
    pub max_inflight: usize,
    /// Cached upstream answers at most.
    #[arg(long, default_value_t = 10_000, env = "HSDNS_CACHE_ENTRIES")]
    pub cache_entries: usize,
    /// Serve Prometheus metrics on this address (`GET /metrics`), e.g.
    /// 169.254.20.10:9253 as NodeLocal DNSCache does.
    #[arg(long, value_name = "ADDR", env = "HSDNS_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Do not answer NXDOMAIN in the kernel for names that provably do not
    /// exist (for clusters whose upstream serves other names in the zone).
    #[arg(long, env = "HSDNS_NO_NXDOMAIN")]
    pub no_nxdomain: bool,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "auto", env = "HSDNS_XDP_MODE")]
    pub xdp_mode: ModeChoice,
    /// Where the maps are pinned for bpftool.
    #[arg(long, default_value = PIN_DIR, env = "HSDNS_PIN_DIR")]
    pub pin_dir: PathBuf,
    /// Capacity of the three name maps (names up to 64, 128, 255 bytes),
    /// comma-separated.
    #[arg(long, value_name = "N,N,N", default_value = "65536,16384,1024", value_parser = parse_three, env = "HSDNS_NAME_CAPACITY")]
    pub name_capacity: [u32; 3],
    /// Capacity of the three answer maps (answers up to 32, 192, 1216
    /// bytes), comma-separated.
    #[arg(long, value_name = "N,N,N", default_value = "65536,8192,1024", value_parser = parse_three, env = "HSDNS_ANSWER_CAPACITY")]
    pub answer_capacity: [u32; 3],
    /// Created once the maps hold the whole record table and the kernel
    /// answers (a readiness signal for scripts and probes).
    #[arg(long, value_name = "PATH", env = "HSDNS_READY_FILE")]
    pub ready_file: Option<PathBuf>,
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
