//! `cargo xtask`: everything around the build. On a fresh machine it first
//! installs what the build needs, idempotently: a second run changes nothing.
//!
//! One module per command, as aya's xtask is laid out; `cmd` holds what
//! they share (the workspace, cargo, running programs).

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{
    cmd::{require_root, workspace},
    setup::{install_missing, setup},
};

mod bench;
mod cmd;
mod compile;
mod demo;
mod fuzz;
mod image;
mod plot;
mod setup;
mod test;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "hsdns build, demo, tests and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the toolchain pieces and Debian packages the build and tests
    /// need (rust-src, bpf-linker on the toolchain's own LLVM, bpftool,
    /// dnsperf, dig, iproute2). Idempotent.
    Setup,
    /// Setup, then build the daemon (with its XDP object), the demo and the
    /// benchmarks.
    Build,
    /// Setup, build, and run the demo: network namespaces, the seed
    /// scenario, answers from the kernel. Needs root.
    Demo,
    /// Setup, then format check, clippy, the image, and every test (kernel,
    /// network namespace and image tests included). Needs root.
    Test,
    /// Build the OCI image: the static daemon binary and nothing else,
    /// with podman (storage driver vfs), written as an OCI archive to
    /// target/image/hsdns.oci.tar.
    Image,
    /// Setup, build, and run the benchmarks; results go to results/.
    Bench {
        /// Single test runs per kernel case.
        #[arg(long, default_value_t = 20_000)]
        runs: usize,
        /// Runs of every benchmark; the results give the median and range.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Run only these benchmarks (kernel, e2e, traffic, scale, sync); the
        /// others' results are read back from results/*.jsonl for the report.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// Setup, then the differential fuzzer of the kernel path (10^6
    /// packets through BPF_PROG_TEST_RUN against the userspace resolver)
    /// and arbitrary bytes into the userspace parsers. Needs root.
    Fuzz(fuzz::FuzzArgs),
    /// Redraw the plots (results/*.png) from the existing results/*.jsonl,
    /// without running any benchmark.
    Plot {
        /// The results folder (default: results/ in the workspace).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Build => setup().and_then(|()| compile::build()),
        Cmd::Demo => setup()
            .and_then(|()| require_root("the demo"))
            .and_then(|()| compile::build())
            .and_then(|()| demo::demo()),
        Cmd::Test => setup()
            .and_then(|()| require_root("the tests"))
            .and_then(|()| test::test()),
        Cmd::Image => setup()
            .and_then(|()| install_missing(&image::IMAGE_PACKAGES))
            .and_then(|()| image::image().map(|p| println!("{}", p.display()))),
        Cmd::Bench {
            runs,
            repeats,
            only,
        } => setup()
            .and_then(|()| require_root("the benchmarks"))
            .and_then(|()| install_missing(&bench::BENCH_PACKAGES))
            .and_then(|()| install_missing(&plot::PLOT_PACKAGES))
            .and_then(|()| compile::build())
            .and_then(|()| bench::bench(runs, repeats.max(1), &only)),
        Cmd::Fuzz(args) => setup()
            .and_then(|()| require_root("the fuzz runs"))
            .and_then(|()| fuzz::fuzz(&args)),
        Cmd::Plot { dir } => install_missing(&plot::PLOT_PACKAGES)
            .and_then(|()| plot::redraw(&dir.unwrap_or_else(|| workspace().join("results")))),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
