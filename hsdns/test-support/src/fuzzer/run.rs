//! A fuzzing campaign: packets from the generator through the program,
//! each checked by the oracle, the counters checked batch by batch, every
//! figure kept for the report.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Result;
use hsdns_common::Counters;
use rand::{SeedableRng as _, rngs::Xoshiro256PlusPlus};

use super::{
    corpus,
    generate::{FAULTS, Generator},
    oracle::{self, Expect, Failure, FailureKind},
    target::{Action, EntryPoint, Kernel, Settings, dns_addrs},
};

pub struct Config {
    pub seed: u64,
    pub packets: u64,
    pub entry: EntryPoint,
    /// Failing inputs are written here as regression cases.
    pub corpus: Option<PathBuf>,
    /// Stop after this many failures.
    pub max_failures: usize,
    /// Heads the note of every saved case.
    pub note: String,
}

/// Packets between two reads of the counters.
const BATCH: u64 = 256;

/// The generator's randomness for packet `index`: each packet can be made
/// again from the seed and its index alone.
pub fn packet_rng(seed: u64, index: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// The settings of batch `b`: mostly answering with NXDOMAIN, some without
/// NXDOMAIN, a few before the first sync.
pub fn batch_settings(seed: u64, b: u64) -> Settings {
    let mut h = seed ^ b.wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^= h >> 32;
    h = h.wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^= h >> 32;
    match h % 100 {
        0..85 => Settings::ALL[0],
        85..97 => Settings::ALL[1],
        _ => Settings::ALL[2],
    }
}

/// One failing input.
pub struct Found {
    pub index: u64,
    pub settings: Settings,
    pub frame: Vec<u8>,
    pub faults: Vec<&'static str>,
    pub failure: Failure,
    pub saved: Option<PathBuf>,
}

#[derive(Default)]
pub struct Report {
    pub seed: u64,
    pub entry: Option<EntryPoint>,
    pub packets: u64,
    pub elapsed: Duration,
    /// Time in BPF_PROG_TEST_RUN alone.
    pub in_kernel: Duration,
    pub actions: BTreeMap<Action, u64>,
    /// What the oracle expected, by the counter it names.
    pub expected: BTreeMap<&'static str, u64>,
    /// The program's own counters, moved during the run.
    pub counters: BTreeMap<&'static str, u64>,
    pub faults: BTreeMap<&'static str, u64>,
    /// Packets with at least one fault.
    pub faulted: u64,
    pub settings: BTreeMap<String, u64>,
    /// Frames BPF_PROG_TEST_RUN does not take at this entry point
    /// ([`Kernel::runnable`]), left out of every other figure.
    pub not_runnable: u64,
    pub failures: BTreeMap<FailureKind, u64>,
    pub found: Vec<Found>,
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Replies that were wrong: a wrong reply, or one where none was due.
    pub fn wrong_answers(&self) -> u64 {
        [FailureKind::WrongReply, FailureKind::AnsweredNotOurs]
            .iter()
            .map(|k| self.failures.get(k).copied().unwrap_or(0))
            .sum()
    }

    pub fn packets_per_second(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let entry = self.entry.map(|e| e.to_string()).unwrap_or_default();
        let _ = writeln!(
            s,
            "differential fuzzing of the {entry} program: seed {:#x}, {} packets in {:.1} s \
             ({:.0} packets/s; {:.1} s of it in BPF_PROG_TEST_RUN)",
            self.seed,
            self.packets,
            self.elapsed.as_secs_f64(),
            self.packets_per_second(),
            self.in_kernel.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "wrong answers: {}; failures of any kind: {}",
            self.wrong_answers(),
            self.failed()
        );
        for (k, n) in &self.failures {
            let _ = writeln!(s, "  {k}: {n}");
        }
        if self.not_runnable > 0 {
            let _ = writeln!(
                s,
                "frames BPF_PROG_TEST_RUN does not take at this entry point (left out): {}",
                self.not_runnable
            );
        }
        let _ = writeln!(s, "verdicts:");
        for (a, n) in &self.actions {
            let _ = writeln!(s, "  {a:<10} {n:>10}");
        }
        let _ = writeln!(s, "settings (packets):");
        for (k, n) in &self.settings {
            let _ = writeln!(s, "  {k:<24} {n:>10}");
        }
        let _ = writeln!(s, "counters: the program's own / what the oracle expected");
        let mut names: Vec<&str> = self.counters.keys().copied().collect();
        for k in self.expected.keys() {
            if !names.contains(k) {
                names.push(k);
            }
        }
        for k in names {
            let got = self.counters.get(k).copied().unwrap_or(0);
            let want = self.expected.get(k).copied().unwrap_or(0);
            if got + want > 0 {
                let _ = writeln!(s, "  {k:<24} {got:>10} {want:>10}");
            }
        }
        let _ = writeln!(
            s,
            "faults injected: {} packets with at least one, {} faults",
            self.faulted,
            self.faults.values().sum::<u64>()
        );
        let mut line = String::new();
        for f in FAULTS {
            let n = self.faults.get(f).copied().unwrap_or(0);
            let cell = format!("{f} {n}");
            if line.len() + cell.len() > 96 {
                let _ = writeln!(s, "  {}", line.trim_end_matches(", "));
                line.clear();
            }
            line.push_str(&cell);
            line.push_str(", ");
        }
        if !line.is_empty() {
            let _ = writeln!(s, "  {}", line.trim_end_matches(", "));
        }
        for f in &self.found {
            let _ = writeln!(
                s,
                "FAILED packet {} ({}; faults {:?}): {}",
                f.index, f.settings, f.faults, f.failure
            );
            let _ = writeln!(s, "  frame {}", oracle::hex(&f.frame));
            if let Some(p) = &f.saved {
                let _ = writeln!(s, "  saved as {}", p.display());
            }
        }
        s
    }
}

pub fn deltas(before: &Counters, after: &Counters) -> BTreeMap<&'static str, u64> {
    before
        .fields()
        .iter()
        .zip(after.fields())
        .map(|((k, b), (_, a))| (*k, a.wrapping_sub(*b)))
        .filter(|(_, d)| *d != 0)
        .collect()
}

/// Whether the counters moved as the outcomes say: each packet counted
/// once, every `answered_*` counter exactly as the replies expected.
pub fn counters_agree(moved: &BTreeMap<&'static str, u64>, expected: &[&'static str]) -> bool {
    if moved.values().sum::<u64>() != expected.len() as u64 {
        return false;
    }
    moved
        .keys()
        .chain(expected.iter())
        .filter(|k| k.starts_with("answered_"))
        .all(|k| {
            moved.get(k).copied().unwrap_or(0) == expected.iter().filter(|e| *e == k).count() as u64
        })
}

/// Counts a failure; keeps (and saves) the first `max_failures`.
fn record(
    cfg: &Config,
    r: &mut Report,
    index: u64,
    settings: Settings,
    frame: &[u8],
    faults: &[&'static str],
    failure: Failure,
) {
    *r.failures.entry(failure.kind).or_default() += 1;
    if r.found.len() >= cfg.max_failures {
        return;
    }
    let saved = cfg.corpus.as_ref().and_then(|dir| {
        let note = format!(
            "{failure}\nfound by `cargo xtask fuzz --seed {:#x}` (packet {index}), faults {faults:?}",
            cfg.seed
        );
        let input = corpus::Input::Kernel {
            entry: cfg.entry,
            settings,
            frame: frame.to_vec(),
        };
        corpus::save(dir, &input, &format!("{}{note}", cfg.note)).ok()
    });
    r.found.push(Found {
        index,
        settings,
        frame: frame.to_vec(),
        faults: faults.to_vec(),
        failure,
        saved,
    });
}

pub fn run(cfg: &Config, kernel: &mut Kernel) -> Result<Report> {
    let generator = Generator::new(&kernel.table);
    let addrs = dns_addrs();
    let mut r = Report {
        seed: cfg.seed,
        entry: Some(cfg.entry),
        ..Report::default()
    };
    let start = Instant::now();
    let counters_start = kernel.counters()?;
    let mut index = 0;
    while index < cfg.packets && r.found.len() < cfg.max_failures {
        let settings = batch_settings(cfg.seed, index / BATCH);
        if settings != kernel.settings() {
            kernel.set(settings)?;
        }
        let end = (index + BATCH).min(cfg.packets);
        let before = kernel.counters()?;
        let mut batch: Vec<(u64, Vec<u8>, Vec<&'static str>, Expect)> = Vec::new();
        for i in index..end {
            let p = generator.packet(&mut packet_rng(cfg.seed, i));
            if !kernel.runnable(&p.frame) {
                r.not_runnable += 1;
                continue;
            }
            if !p.faults.is_empty() {
                r.faulted += 1;
            }
            for f in &p.faults {
                *r.faults.entry(f).or_default() += 1;
            }
            let exp = oracle::expect(&kernel.table, settings, &addrs, &p.frame);
            *r.expected.entry(exp.counter_name()).or_default() += 1;
            *r.settings.entry(settings.to_string()).or_default() += 1;
            let t = Instant::now();
            let run = kernel.run(&p.frame);
            r.in_kernel += t.elapsed();
            r.packets += 1;
            let failure = match run {
                Err(e) => Some(Failure {
                    kind: FailureKind::RunError,
                    detail: format!("{e:#}"),
                }),
                Ok(run) => {
                    *r.actions.entry(run.action).or_default() += 1;
                    oracle::check(&kernel.table, settings, &addrs, &p.frame, &exp, &run).err()
                }
            };
            if let Some(failure) = failure {
                record(cfg, &mut r, i, settings, &p.frame, &p.faults, failure);
            }
            batch.push((i, p.frame, p.faults, exp));
        }
        let after = kernel.counters()?;
        let moved = deltas(&before, &after);
        let expected: Vec<&'static str> = batch.iter().map(|b| b.3.counter_name()).collect();
        if !counters_agree(&moved, &expected) {
            // Find the packet: run the batch again one by one.
            for (i, frame, faults, exp) in &batch {
                let before = kernel.counters()?;
                if kernel.run(frame).is_err() {
                    // Counted as a failure already.
                    continue;
                }
                let moved = deltas(&before, &kernel.counters()?);
                if !counters_agree(&moved, &[exp.counter_name()]) {
                    let failure = Failure {
                        kind: FailureKind::Counters,
                        detail: format!("expected {} to move, moved {moved:?}", exp.counter_name()),
                    };
                    record(cfg, &mut r, *i, settings, frame, faults, failure);
                    break;
                }
            }
        }
        index = end;
    }
    r.elapsed = start.elapsed();
    r.counters = deltas(&counters_start, &kernel.counters()?);
    Ok(r)
}
