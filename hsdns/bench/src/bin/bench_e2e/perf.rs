//! One dnsperf run from a pod namespace, and what it measured.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use hsdns_test_support::netns::{Guarded, Netns};

use super::CLIENT_CPU;

/// What one dnsperf run measured.
pub(crate) struct Perf {
    pub(crate) qps: f64,
    pub(crate) avg_s: f64,
    pub(crate) max_s: f64,
    pub(crate) p99_s: f64,
    pub(crate) p50_s: f64,
    pub(crate) sent: u64,
    pub(crate) lost: u64,
}

pub(crate) fn field(out: &str, key: &str) -> String {
    out.lines()
        .find(|l| l.trim_start().starts_with(key))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

/// Runs dnsperf pinned to the client CPU. Without `rate` it sends as fast
/// as it can (at most 200 queries outstanding) and its own statistics give
/// QPS, average and maximum latency and lost queries. With `rate` it sends
/// at that fixed rate with `-v`, which prints one line per response with its
/// latency (`> NOERROR name A 0.000123`); the lines are read as they come
/// into a 1 µs histogram (nothing is kept per query) for the percentiles.
/// Lost queries have no line and no latency: they are counted apart.
pub(crate) fn dnsperf(ns: &Netns, file: &std::path::Path, secs: u64, rate: Option<u32>) -> Perf {
    use std::io::BufRead as _;
    let mut c = ns.cmd("taskset");
    c.args(["-c", CLIENT_CPU, "dnsperf", "-s", "169.254.20.10", "-d"])
        .arg(file)
        .args([
            "-l",
            &secs.to_string(),
            "-c",
            "4",
            "-q",
            "200",
            "-t",
            "2",
            "-e",
        ])
        .args(
            rate.map(|r| ["-Q".to_string(), r.to_string(), "-v".into()])
                .into_iter()
                .flatten(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut g = Guarded::spawn(c);
    // Bounded: dnsperf stops itself after -l seconds plus the -t timeout;
    // if it does not, it is killed and the run fails.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pid = g.pid() as libc::pid_t;
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(secs + 30);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if Instant::now() > deadline {
                    // SAFETY: our own child, not yet reaped (we reap it
                    // only after setting `done`).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    const MAX_US: usize = 1_000_000;
    let mut hist = vec![0u64; MAX_US + 1];
    let mut n = 0u64;
    let mut text = String::new();
    let out = g.child.stdout.take().expect("dnsperf stdout");
    for line in std::io::BufReader::with_capacity(1 << 20, out).lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix("> ") {
            if let Some(s) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                hist[((s * 1e6).round() as usize).min(MAX_US)] += 1;
                n += 1;
            }
            continue;
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = g.child.wait().expect("waiting for dnsperf");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watchdog.join();
    assert!(status.success(), "dnsperf failed ({status}):\n{text}");
    let pct = |p: f64| -> f64 {
        let want = ((n as f64) * p).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (us, k) in hist.iter().enumerate() {
            acc += k;
            if acc >= want {
                return us as f64 / 1e6;
            }
        }
        f64::NAN
    };
    let num = |key: &str| -> f64 {
        field(&text, key)
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let lat = field(&text, "Average Latency (s)");
    let max_s = lat
        .split("max ")
        .nth(1)
        .and_then(|v| v.trim_end_matches(')').parse().ok())
        .unwrap_or(f64::NAN);
    let p = Perf {
        qps: num("Queries per second"),
        avg_s: num("Average Latency (s)"),
        max_s,
        p99_s: pct(0.99),
        p50_s: pct(0.50),
        sent: num("Queries sent") as u64,
        lost: num("Queries lost") as u64,
    };
    assert!(p.qps.is_finite(), "dnsperf printed no statistics:\n{text}");
    p
}
