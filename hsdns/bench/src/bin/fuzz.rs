//! What `cargo xtask fuzz` runs: the differential fuzzer of the kernel
//! path (BPF_PROG_TEST_RUN against the userspace resolver, at least 10^6
//! packets by default), then the userspace parsers with arbitrary bytes.
//! Every failing kernel input is written to the regression corpus
//! (hsdns/tests/fuzz-corpus), which the test command replays.
//!
//! Run as root: `cargo run --release -p hsdns-bench --bin fuzz -- --help`.
//! Prints the report, then one JSON line of its figures; exits non-zero
//! on any failure.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::Parser;
use hsdns_test_support::fuzzer::{
    corpus,
    run::{self, Config},
    table,
    target::{EntryPoint, Kernel, Settings},
    userspace,
};

#[derive(Parser)]
#[command(about = "hsdns differential fuzzer (kernel path) and parser fuzzing")]
struct Args {
    /// The campaign's seed (decimal or 0x hex); a fresh one when absent.
    /// A run is reproduced by its seed and packet count.
    #[arg(long, value_parser = parse_seed)]
    seed: Option<u64>,
    /// Packets through the kernel path.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// The program's entry point (xdp, or tc once the object has one);
    /// every one the object has when absent, each with --packets.
    #[arg(long)]
    entry: Option<EntryPoint>,
    /// Where failing inputs are written as regression cases.
    #[arg(long, default_value_os_t = corpus::dir())]
    corpus: PathBuf,
    /// Keep at most this many failing inputs (the count goes on).
    #[arg(long, default_value_t = 50)]
    max_failures: usize,
    /// A line for the notes of the regression cases this run saves.
    #[arg(long, default_value = "")]
    note: String,
    /// Inputs for the resolver (the server, manifests and resolv.conf
    /// get a twentieth, a tenth and a hundredth of it); 0 skips them.
    #[arg(long, default_value_t = 200_000)]
    userspace: u64,
}

fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("seed {s:?}: {e}"))
}

fn main() -> ExitCode {
    match fuzz() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fuzz: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `"key":n,...` of a map, for the JSON line.
fn json_map<K: std::fmt::Display>(m: &std::collections::BTreeMap<K, u64>) -> String {
    m.iter()
        .map(|(k, n)| format!("\"{k}\":{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn fuzz() -> Result<bool> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!(
        "seed {seed:#x}: reproduce with `cargo xtask fuzz --seed {seed:#x} --packets {}`",
        args.packets
    );
    let note = if args.note.is_empty() {
        String::new()
    } else {
        format!("{}\n", args.note)
    };
    let entries = match args.entry {
        Some(e) => vec![e],
        None => EntryPoint::available().context("loading the program (run as root)")?,
    };
    let mut ok = true;
    let mut saved = 0;
    let mut json = Vec::new();
    for entry in entries {
        let cfg = Config {
            seed,
            packets: args.packets,
            entry,
            corpus: Some(args.corpus.clone()),
            max_failures: args.max_failures,
            note: note.clone(),
        };
        let mut kernel = Kernel::load(entry, table::table(), Settings::ALL[0])
            .context("loading the program (run as root)")?;
        let r = run::run(&cfg, &mut kernel)?;
        print!("{}", r.text());
        ok &= r.failed() == 0;
        saved += r.found.iter().filter(|f| f.saved.is_some()).count();
        json.push(format!(
            "{{\"entry\":\"{entry}\",\"packets\":{},\"not_runnable\":{},\"seconds\":{:.2},\
             \"packets_per_s\":{:.0},\
             \"faulted_packets\":{},\"faults\":{},\"wrong_answers\":{},\"failures\":{},\
             \"verdicts\":{{{}}},\"counters\":{{{}}}}}",
            r.packets,
            r.not_runnable,
            r.elapsed.as_secs_f64(),
            r.packets_per_second(),
            r.faulted,
            r.faults.values().sum::<u64>(),
            r.wrong_answers(),
            r.failed(),
            json_map(&r.actions),
            json_map(&r.counters),
        ));
    }

    let n = args.userspace;
    let mut user = Vec::new();
    if n > 0 {
        user.push(userspace::resolver(seed, n));
        // A twentieth: a lie the server rightly ignores costs it the
        // upstream timeout (50 ms).
        user.push(userspace::server(seed, n / 20));
        user.push(userspace::manifests(seed, n / 10));
        user.push(userspace::resolv_conf(seed, n / 100));
    }
    let mut user_failures = 0;
    for u in &user {
        println!("{}", u.line());
        for f in &u.failures {
            println!("  FAILED {f}");
        }
        user_failures += u.failures.len();
        for text in u.failed_texts.iter().take(args.max_failures) {
            // Kept byte for byte: a note would change the input.
            let input = corpus::Input::Manifest { text: text.clone() };
            if corpus::save(&args.corpus, &input, "").is_ok() {
                saved += 1;
            }
        }
        for (message, udp) in u.failed_inputs.iter().take(args.max_failures) {
            let input = corpus::Input::Server {
                udp: *udp,
                message: message.clone(),
            };
            let note = format!("{note}Server::handle failed on this message (seed {seed:#x})");
            if corpus::save(&args.corpus, &input, &note).is_ok() {
                saved += 1;
            }
        }
    }
    if saved > 0 {
        println!(
            "{saved} failing input(s) written to {}: keep them with the fix \
             (the test command replays them)",
            args.corpus.display()
        );
    }
    println!(
        "{{\"seed\":\"{seed:#x}\",\"kernel\":[{}],\"userspace_inputs\":{},\
         \"userspace_failures\":{user_failures}}}",
        json.join(","),
        user.iter().map(|u| u.inputs).sum::<u64>(),
    );
    Ok(ok && user_failures == 0)
}
