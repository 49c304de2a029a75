//! Cost of one answer in the kernel: BPF_PROG_TEST_RUN on the loaded
//! program, on both entry points (XDP and tc), beside the floor of each
//! hook: a bare reflector that swaps addresses and sends the packet back
//! (XDP_TX; bpf_redirect_peer on tc), the least any responder there does.
//!
//! The cases are the kernel tests' own table (`hsdns_test_support::kernel_cases`), the
//! ones marked for the benchmark; every run is checked to return the
//! case's verdict. With `repeat > 1` the kernel reruns the program on the
//! buffer it already rewrote, so only the first run would be a hit: every
//! figure is the mean of many single runs. Also reported: load and verify
//! time, and the verifier's processed instructions per program.
//!
//! Run as root: `cargo run --release -p hsdns-bench --bin bench_kernel
//! [runs]`; prints one JSON object per (hook, case).

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use aya::programs::{SchedClassifier, Xdp};
use hickory_proto::rr::RecordType;
use hsdns::{
    frame::{Frame, query},
    loader::{self, Capacities},
};
use hsdns_common::{PROGRAM_FLOOR_TC, PROGRAM_FLOOR_XDP, PROGRAM_NAME, PROGRAM_TC};
use hsdns_test_support::kernel_cases::{self, Hook, Kernel};

/// Mean and median of `runs` single runs of the program called `prog`,
/// each checked to return `code`.
fn time(
    k: &Kernel,
    hook: Hook,
    prog: &str,
    pkt: &[u8],
    code: u32,
    runs: usize,
) -> Result<(f64, u64)> {
    let mut ns = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (rc, _, d) = kernel_cases::run_named(&k.ebpf, hook, prog, pkt)?;
        if rc != code {
            bail!("expected return code {code}, got {rc}");
        }
        ns.push(d.as_nanos() as u64);
    }
    ns.sort_unstable();
    let mean = ns.iter().sum::<u64>() as f64 / runs as f64;
    Ok((mean, ns[runs / 2]))
}

fn main() -> Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);

    // Load and verify on their own first (a fresh object, as at start):
    // the object (BTF, relocations, the maps created) and each program's
    // BPF_PROG_LOAD (verification and JIT) apart.
    let caps = Capacities::default();
    let t = Instant::now();
    let mut ebpf = loader::load(&caps).context("loading (run as root)")?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    drop(ebpf);
    let t = Instant::now();
    let mut loader_ = aya::EbpfLoader::new();
    for (name, n) in hsdns_common::MAP_NAMES.iter().zip(caps.names) {
        loader_.map_max_entries(name, n);
    }
    for (name, n) in hsdns_common::MAP_ANSWERS.iter().zip(caps.answers) {
        loader_.map_max_entries(name, n);
    }
    ebpf = loader_.load(loader::object())?;
    let object_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    loader::program(&mut ebpf)?.load()?;
    let verify_xdp_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    loader::program_tc(&mut ebpf)?.load()?;
    let verify_tc_ms = t.elapsed().as_secs_f64() * 1e3;
    // The kernel's floor for comparison: loading and verifying the two
    // bare reflectors (a few dozen instructions each) into the same
    // object.
    let t = Instant::now();
    kernel_cases::load_floors(&mut ebpf)?;
    let floors_ms = t.elapsed().as_secs_f64() * 1e3;
    let xdp: &Xdp = ebpf
        .program(hsdns_common::PROGRAM_NAME)
        .context("xdp")?
        .try_into()?;
    let tc: &SchedClassifier = ebpf
        .program(hsdns_common::PROGRAM_TC)
        .context("tc")?
        .try_into()?;
    let insns = |i: Option<u32>| i.map_or("null".to_string(), |n| n.to_string());
    println!(
        "{{\"hook\":\"both\",\"case\":\"load and verify\",\"load_ms\":{load_ms:.1},\
         \"object_and_maps_ms\":{object_ms:.1},\"verify_xdp_ms\":{verify_xdp_ms:.1},\
         \"verify_tc_ms\":{verify_tc_ms:.1},\"verify_floors_ms\":{floors_ms:.1},\
         \"verified_insns_xdp\":{},\"verified_insns_tc\":{}}}",
        insns(xdp.info()?.verified_instruction_count()),
        insns(tc.info()?.verified_instruction_count()),
    );
    drop(ebpf);

    let mut k = Kernel::load()?;
    kernel_cases::load_floors(&mut k.ebpf)?;
    kernel_cases::load_bounds(&mut k.ebpf)?;
    let cases = kernel_cases::cases();
    let floor_pkt = Frame::v4(query(kernel_cases::POD, RecordType::A, None)).bytes();
    let bound_pkt = kernel_cases::bound_frame(&k)?;
    for hook in Hook::ALL {
        let answer = hook.code(hsdns_common::Action::Answer);
        let (floor, prog) = match hook {
            Hook::Xdp => (PROGRAM_FLOOR_XDP, PROGRAM_NAME),
            Hook::Tc => (PROGRAM_FLOOR_TC, PROGRAM_TC),
        };
        // Warm up caches and branch predictors on both programs.
        time(&k, hook, floor, &floor_pkt, answer, runs / 10 + 1)?;
        let (floor_mean, floor_median) = time(&k, hook, floor, &floor_pkt, answer, runs)?;
        println!(
            "{{\"hook\":\"{}\",\"case\":\"floor: bare reflector\",\"runs\":{runs},\"mean_ns\":{floor_mean:.1},\"median_ns\":{floor_median},\"ratio\":1.0}}",
            hook.name()
        );
        // The least any answer from the names map costs on this hook (the
        // bound programs answer only on a hit: the code check proves it).
        for (name, xdp, tc) in kernel_cases::BOUNDS {
            let bound = if hook == Hook::Xdp { xdp } else { tc };
            time(&k, hook, bound, &bound_pkt, answer, runs / 10 + 1)?;
            let (mean, median) = time(&k, hook, bound, &bound_pkt, answer, runs).context(name)?;
            println!(
                "{{\"hook\":\"{}\",\"case\":\"{name}\",\"runs\":{runs},\"mean_ns\":{mean:.1},\"median_ns\":{median},\"ratio\":{:.2}}}",
                hook.name(),
                mean / floor_mean
            );
        }
        for case in cases.iter().filter(|c| c.bench.is_some()) {
            let name = case.bench.expect("filtered");
            k.apply(case.setup)?;
            let pkt = case.frame.bytes();
            let code = hook.code(case.verdict.action());
            time(&k, hook, prog, &pkt, code, runs / 10 + 1)?;
            let (mean, median) =
                time(&k, hook, prog, &pkt, code, runs).with_context(|| format!("case {name:?}"))?;
            println!(
                "{{\"hook\":\"{}\",\"case\":\"{name}\",\"runs\":{runs},\"mean_ns\":{mean:.1},\"median_ns\":{median},\"ratio\":{:.2}}}",
                hook.name(),
                mean / floor_mean
            );
        }
    }
    Ok(())
}
