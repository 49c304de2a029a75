//! Fuzzing in the test command: the kernel path against the userspace
//! resolver through BPF_PROG_TEST_RUN (100,000 packets from a fixed seed,
//! and every regression case in tests/fuzz-corpus), and arbitrary bytes
//! into the userspace parsers. `cargo xtask fuzz` runs the same kernel
//! campaign with at least 10^6 packets and a fresh seed.
//!
//! Needs root (it loads BPF programs): run through `cargo xtask test`.

use hsdns_test_support::fuzzer::{
    corpus, oracle,
    run::{self, Config},
    table,
    target::{EntryPoint, Kernel, Settings, dns_addrs},
    userspace,
};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "this test loads BPF programs: run it as root (cargo xtask test); \
             it does not skip"
        );
    }
}

/// The seed of the test command's campaign: fixed, so CI is reproducible
/// (`cargo xtask fuzz` picks a fresh one each run).
const SEED: u64 = 0x6873_646e_7321;

/// 100,000 packets through every entry point the object has (XDP; tc
/// once it exists), each reply checked against the resolver, each pass
/// for being unchanged, the counters batch by batch.
#[test]
fn kernel_agrees_with_the_resolver_on_100k_fuzzed_packets() {
    require_root();
    for entry in EntryPoint::available().expect("load") {
        let cfg = Config {
            seed: SEED,
            packets: 100_000,
            entry,
            corpus: None,
            max_failures: 20,
            note: String::new(),
        };
        let mut k = Kernel::load(entry, table::table(), Settings::ALL[0]).expect("load");
        let r = run::run(&cfg, &mut k).expect("campaign");
        println!("{}", r.text());
        assert_eq!(r.failed(), 0, "{}", r.text());
        assert_eq!(r.packets + r.not_runnable, cfg.packets);
        // The campaign reaches every outcome, or it proves little.
        for counter in [
            "answered_a",
            "answered_aaaa",
            "answered_nodata",
            "answered_nxdomain",
            "pass_not_dns",
            "pass_not_our_addr",
            "pass_not_ready",
            "pass_fragment",
            "pass_unsupported_query",
            "pass_unsupported_type",
            "pass_unknown_name",
            "answered_truncated",
            "pass_malformed",
            "pass_userspace_only",
            "pass_unsupported_name",
        ] {
            assert!(
                r.counters.get(counter).copied().unwrap_or(0) > 100,
                "{entry}: {counter} barely reached:\n{}",
                r.text()
            );
        }
    }
}

/// Every input that ever failed, replayed: frames through the program
/// (outcome and counters checked as in a campaign), messages into the
/// server, manifests into the parser and the record table.
#[test]
fn regression_corpus_replays_clean() {
    require_root();
    let cases = corpus::load(&corpus::dir()).expect("corpus");
    assert!(!cases.is_empty(), "the regression corpus is empty");
    let table = table::table();
    let addrs = dns_addrs();
    let mut failures = Vec::new();
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut server_inputs = Vec::new();
    let mut manifests = 0;
    for case in &cases {
        let (entry, settings, frame) = match &case.input {
            corpus::Input::Kernel {
                entry,
                settings,
                frame,
            } => (*entry, *settings, frame),
            corpus::Input::Server { udp, message } => {
                server_inputs.push((message.clone(), *udp));
                continue;
            }
            corpus::Input::Manifest { text } => {
                manifests += 1;
                if let Err(e) = userspace::check_manifest(text) {
                    failures.push(format!("{}: {e}", case.path.display()));
                }
                continue;
            }
        };
        let k = match kernels.iter().position(|k| k.entry == entry) {
            Some(i) => &mut kernels[i],
            None => {
                kernels.push(Kernel::load(entry, table.clone(), settings).expect("load"));
                kernels.last_mut().expect("just pushed")
            }
        };
        k.set(settings).expect("settings");
        if !k.runnable(frame) {
            failures.push(format!(
                "{}: BPF_PROG_TEST_RUN does not take this frame at {entry}",
                case.path.display()
            ));
            continue;
        }
        let exp = oracle::expect(&k.table, settings, &addrs, frame);
        let before = k.counters().expect("counters");
        let run = k.run(frame).expect("test run");
        let moved = run::deltas(&before, &k.counters().expect("counters"));
        if let Err(f) = oracle::check(&k.table, settings, &addrs, frame, &exp, &run) {
            failures.push(format!("{}: {f}", case.path.display()));
        } else if !run::counters_agree(&moved, &[exp.counter_name()]) {
            failures.push(format!(
                "{}: expected {} to move, moved {moved:?}",
                case.path.display(),
                exp.counter_name()
            ));
        }
    }
    let kernel_cases = cases.len() - server_inputs.len() - manifests;
    let server = userspace::server_inputs(SEED, server_inputs);
    failures.extend(server.failures.iter().cloned());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!(
        "{} regression cases replayed: {kernel_cases} through the program, {} into the \
         server, {manifests} manifests",
        cases.len(),
        server.inputs
    );
}

/// Fails with every failure a userspace campaign found.
fn assert_clean(r: &userspace::Report) {
    println!("{}", r.line());
    assert!(
        r.failures.is_empty(),
        "{}\n{}",
        r.line(),
        r.failures.join("\n")
    );
    assert!(
        r.accepted > 0 && r.refused > 0,
        "{}: one-sided inputs",
        r.line()
    );
}

#[test]
fn resolver_survives_arbitrary_messages() {
    assert_clean(&userspace::resolver(SEED, 20_000));
}

#[test]
fn server_handles_arbitrary_messages_and_a_lying_upstream() {
    require_root(); // a private network namespace
    assert_clean(&userspace::server(SEED, 2_000));
}

#[test]
fn manifests_give_objects_or_a_clear_error() {
    assert_clean(&userspace::manifests(SEED, 3_000));
}

#[test]
fn resolv_conf_gives_upstreams_or_a_clear_error() {
    assert_clean(&userspace::resolv_conf(SEED, 2_000));
}
