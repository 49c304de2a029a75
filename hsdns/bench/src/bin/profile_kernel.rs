//! Where the kernel program's time goes: BPF_PROG_TEST_RUN of several
//! builds of the object side by side, interleaved in rounds so that the
//! machine's noise hits them alike. Meant for builds with a stage stop
//! (`HSDNS_STOP_AFTER=<n>`, see hsdns-ebpf/src/profile.rs): the cost of a
//! stage is the difference between the builds that stop before and after
//! it. Also for A/B comparisons of two versions of the program.
//!
//! Build the variants with `hsdns/bench/profile_kernel.sh`, then, as
//! root: `cargo run --release -p hsdns-bench --bin profile_kernel -- RUNS
//! ROUNDS label=object.o ...` (`label=builtin`: the object this binary
//! carries). Prints, per hook and case, the mean of single runs per build.
//! With `REPEAT=n` in the environment, each measurement is one test run
//! with `repeat` n instead (the kernel's mean per run, without the timer's
//! cost per call): only right for builds that stop before the packet is
//! changed (stop 9 and earlier) and for pass cases; the floor reflects the
//! packet back and forth, which is fine.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use hickory_proto::rr::RecordType;
use hsdns::{
    frame::{Frame, query},
    loader,
};
use hsdns_common::{PROGRAM_FLOOR_TC, PROGRAM_FLOOR_XDP, PROGRAM_NAME, PROGRAM_TC};
use hsdns_test_support::kernel_cases::{self, Hook, Kernel};

/// One test run with `repeat`: the return code and the kernel's mean ns.
fn run_repeat(ebpf: &Ebpf, hook: Hook, floor: bool, pkt: &[u8], repeat: u32) -> Result<(u32, f64)> {
    let mut out = vec![0u8; 4096];
    let opts = TestRunOptions {
        data_in: Some(pkt),
        data_out: Some(&mut out),
        repeat,
        ..Default::default()
    };
    let name = match (hook, floor) {
        (Hook::Xdp, false) => PROGRAM_NAME,
        (Hook::Xdp, true) => PROGRAM_FLOOR_XDP,
        (Hook::Tc, false) => PROGRAM_TC,
        (Hook::Tc, true) => PROGRAM_FLOOR_TC,
    };
    let prog = ebpf.program(name).context("program")?;
    let r = match hook {
        Hook::Xdp => <&Xdp>::try_from(prog)?.test_run(opts),
        Hook::Tc => <&SchedClassifier>::try_from(prog)?.test_run(opts),
    }?;
    Ok((r.return_value, r.duration.as_nanos() as f64))
}

fn main() -> Result<()> {
    let repeat: Option<u32> = std::env::var("REPEAT")
        .ok()
        .map(|r| r.parse())
        .transpose()?;
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().context("RUNS")?.parse()?;
    let rounds: usize = args.next().context("ROUNDS")?.parse()?;
    let mut kernels = Vec::new();
    for a in args {
        let (label, path) = a.split_once('=').context("label=object")?;
        let bytes = loader::object_named(path)?;
        let mut k = Kernel::load_object(&bytes).with_context(|| format!("loading {label}"))?;
        kernel_cases::load_floors(&mut k.ebpf)?;
        let xdp: &Xdp = k.ebpf.program(PROGRAM_NAME).context("xdp")?.try_into()?;
        let tc: &SchedClassifier = k.ebpf.program(PROGRAM_TC).context("tc")?.try_into()?;
        println!(
            "{label}: verified instructions XDP {:?}, tc {:?}",
            xdp.info()?.verified_instruction_count(),
            tc.info()?.verified_instruction_count()
        );
        kernels.push((label.to_string(), k));
    }
    let cases: Vec<_> = kernel_cases::cases()
        .into_iter()
        .filter(|c| c.bench.is_some())
        .collect();
    let floor_pkt = Frame::v4(query(kernel_cases::POD, RecordType::A, None)).bytes();
    // (hook, case index, kernel index) -> per-round means; return codes.
    let mut means: BTreeMap<(usize, usize, usize), Vec<f64>> = BTreeMap::new();
    let mut codes: BTreeMap<(usize, usize, usize), u32> = BTreeMap::new();
    for _ in 0..rounds {
        for (ki, (_, k)) in kernels.iter_mut().enumerate() {
            for (hi, hook) in Hook::ALL.into_iter().enumerate() {
                // Case index 0 is the floor.
                for ci in 0..=cases.len() {
                    let (pkt, floor) = if ci == 0 {
                        (floor_pkt.clone(), true)
                    } else {
                        k.apply(cases[ci - 1].setup)?;
                        (cases[ci - 1].frame.bytes(), false)
                    };
                    let mut sum = 0f64;
                    let mut code = 0;
                    if let Some(n) = repeat {
                        for _ in 0..runs {
                            let (rc, d) = run_repeat(&k.ebpf, hook, floor, &pkt, n)?;
                            sum += d;
                            code = rc;
                        }
                    } else {
                        for _ in 0..runs {
                            let (rc, _, d) = kernel_cases::run_program(&k.ebpf, hook, floor, &pkt)?;
                            sum += d.as_nanos() as f64;
                            code = rc;
                        }
                    }
                    means
                        .entry((hi, ci, ki))
                        .or_default()
                        .push(sum / runs as f64);
                    codes.insert((hi, ci, ki), code);
                }
            }
        }
    }
    let labels: Vec<&str> = kernels.iter().map(|(l, _)| l.as_str()).collect();
    for (hi, hook) in Hook::ALL.into_iter().enumerate() {
        println!(
            "\n{} (mean ns over {rounds} rounds of {runs}; [min-max of round means])",
            hook.name()
        );
        print!("{:<30}", "case");
        for l in &labels {
            print!("{:>22}", l);
        }
        println!();
        for ci in 0..=cases.len() {
            let name = if ci == 0 {
                "floor"
            } else {
                cases[ci - 1].bench.unwrap_or("?")
            };
            print!("{name:<30}");
            for ki in 0..labels.len() {
                let v = &means[&(hi, ci, ki)];
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let min = v.iter().cloned().fold(f64::MAX, f64::min);
                let max = v.iter().cloned().fold(0.0, f64::max);
                let rc = codes[&(hi, ci, ki)] as i32;
                print!("{:>22}", format!("{mean:.0} [{min:.0}-{max:.0}] r{rc}"));
            }
            println!();
        }
    }
    Ok(())
}
