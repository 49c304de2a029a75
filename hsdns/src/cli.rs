//! Command-line interface.

use std::{net::IpAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use hsdns_common::PIN_DIR;

use crate::loader::ModeChoice;

#[derive(Parser, Debug)]
#[command(
    name = "hsdns",
    version,
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
    Run(RunArgs),
    /// Print the record table the source yields, one record per line.
    Records(SourceArgs),
    /// Print the kernel's verdict counters from the pinned map.
    Stats {
        #[arg(long, default_value = PIN_DIR)]
        pin_dir: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Manifest files or directories in `kubectl get services,endpointslices
    /// -A -o yaml` form. Without any, the embedded seed scenario
    /// (deploy/examples/seed.yaml) is used.
    #[arg(long = "manifests", value_name = "PATH")]
    pub manifests: Vec<PathBuf>,
    /// The cluster zone.
    #[arg(long, default_value = "cluster.local")]
    pub zone: String,
    /// TTL of every answer, and the SOA minimum (negative TTL).
    #[arg(long, default_value_t = 5)]
    pub ttl: u32,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Interfaces to attach to (where pod queries arrive). Repeatable.
    #[arg(long = "interface", short = 'i', required = true, value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// Destination addresses the kernel answers for (port 53). Repeatable.
    #[arg(long = "dns-addr", default_value = "169.254.20.10", value_name = "IP")]
    pub dns_addrs: Vec<IpAddr>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp_mode: ModeChoice,
    /// Where the maps are pinned for bpftool.
    #[arg(long, default_value = PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Capacity of the three name maps (names up to 64, 128, 255 bytes).
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [65_536u32, 16_384, 1_024])]
    pub name_capacity: Vec<u32>,
    /// Capacity of the three answer maps (48, 192, 1216-byte answers).
    #[arg(long, value_delimiter = ',', num_args = 3, default_values_t = [65_536u32, 8_192, 1_024])]
    pub answer_capacity: Vec<u32>,
    /// Created once the maps hold the whole record table and the kernel
    /// answers (a readiness signal for scripts and probes).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}
