//! What loading the kernel program costs, for several builds of the object
//! side by side: each round loads every build in turn (interleaved, so
//! the machine's noise hits them alike), as the daemon does
//! (`loader::load_object`: the object, the maps, both entry points
//! verified concurrently), then once more with each entry point's
//! BPF_PROG_LOAD (verification and JIT) timed on its own, as
//! `bench_kernel` reports it. Meant for A/B comparisons of changes that
//! move the verifier's processed instructions.
//!
//! As root: `cargo run --release -p hsdns-bench --bin load_kernel -- ROUNDS
//! label=object.o ...` (`label=builtin`: the object this binary carries;
//! objects built as in `profile_kernel.sh`). Prints per build the
//! processed instructions and the median [min-max] of each time in ms.

use std::time::Instant;

use anyhow::{Context as _, Result};
use aya::programs::{SchedClassifier, Xdp};
use hsdns::loader::{self, Capacities};
use hsdns_common::{PROGRAM_NAME, PROGRAM_TC};

/// One load of `object` timed as a whole and by part: (load_object ms,
/// object and maps ms, verify XDP ms, verify tc ms, insns XDP, insns tc).
fn once(caps: &Capacities, object: &[u8]) -> Result<([f64; 4], [u32; 2])> {
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let ebpf = loader::load_object(caps, object)?;
    let whole = ms(t);
    drop(ebpf);
    let t = Instant::now();
    let mut l = aya::EbpfLoader::new();
    for (name, n) in hsdns_common::MAP_NAMES.iter().zip(caps.names) {
        l.map_max_entries(name, n);
    }
    for (name, n) in hsdns_common::MAP_ANSWERS.iter().zip(caps.answers) {
        l.map_max_entries(name, n);
    }
    let mut ebpf = l.load(object)?;
    let obj = ms(t);
    let t = Instant::now();
    loader::program(&mut ebpf)?.load()?;
    let xdp_ms = ms(t);
    let t = Instant::now();
    loader::program_tc(&mut ebpf)?.load()?;
    let tc_ms = ms(t);
    let xdp: &Xdp = ebpf.program(PROGRAM_NAME).context("xdp")?.try_into()?;
    let tc: &SchedClassifier = ebpf.program(PROGRAM_TC).context("tc")?.try_into()?;
    let n = |i: Option<u32>| i.unwrap_or(0);
    let insns = [
        n(xdp.info()?.verified_instruction_count()),
        n(tc.info()?.verified_instruction_count()),
    ];
    Ok(([whole, obj, xdp_ms, tc_ms], insns))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().context("ROUNDS")?.parse()?;
    let mut builds = Vec::new();
    for a in args {
        let (label, path) = a.split_once('=').context("label=object")?;
        let bytes = loader::object_named(path)?;
        builds.push((label.to_string(), bytes));
    }
    let caps = Capacities::default();
    // Per build: the four times of each round; the instruction counts.
    let mut times = vec![vec![Vec::new(); 4]; builds.len()];
    let mut insns = vec![[0u32; 2]; builds.len()];
    for _ in 0..rounds {
        for (i, (label, bytes)) in builds.iter().enumerate() {
            let (t, n) = once(&caps, bytes).with_context(|| format!("loading {label}"))?;
            for (k, v) in t.into_iter().enumerate() {
                times[i][k].push(v);
            }
            insns[i] = n;
        }
    }
    println!(
        "{:<12}{:>10}{:>10}{:>22}{:>22}{:>22}{:>22}",
        "build",
        "insns xdp",
        "insns tc",
        "load ms",
        "object+maps ms",
        "verify xdp ms",
        "verify tc ms"
    );
    for (i, (label, _)) in builds.iter().enumerate() {
        print!("{label:<12}{:>10}{:>10}", insns[i][0], insns[i][1]);
        for v in &mut times[i] {
            v.sort_by(f64::total_cmp);
            let cell = format!("{:.1} [{:.1}-{:.1}]", v[v.len() / 2], v[0], v[v.len() - 1]);
            print!("{cell:>22}");
        }
        println!();
    }
    Ok(())
}
