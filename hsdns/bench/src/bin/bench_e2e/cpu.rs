//! Where the CPU time goes during a run: pinning to cores, per-CPU
//! softirq and NET_RX figures, XDP runs per CPU, and the CPU time of every
//! other process (a run on a busy machine is noticed and repeated).

use std::process::{Command, Stdio};

use hsdns_test_support::netns::ticks_per_cpu;

/// Pins every thread of a process (and the threads it starts later) to a
/// CPU, and checks that each one now allows only that CPU.
pub(crate) fn pin(pid: u32, cpu: &str) {
    let st = Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("taskset");
    assert!(st.success(), "taskset -a -p -c {cpu} {pid}");
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("threads")
        .flatten()
    {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .unwrap_or("")
            .trim();
        assert_eq!(
            allowed,
            cpu,
            "thread {:?} of {pid} not pinned",
            t.file_name()
        );
    }
}

/// Pins the calling thread (and so every thread and child started after
/// it) to the client's CPU: the harness, the upstream stub and the parser
/// of dnsperf's output stay off the server's core.
pub(crate) fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; after the ')' they are 12 and 13.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Per-CPU counters at one moment.
#[derive(Default)]
pub(crate) struct Snap {
    /// (non-idle ticks, softirq ticks) per CPU, from /proc/stat.
    pub(crate) cpu: Vec<(u64, u64)>,
    /// NET_RX softirq invocations per CPU, from /proc/softirqs.
    pub(crate) net_rx: Vec<u64>,
    /// XDP program runs per CPU (every verdict counter), from the pinned
    /// per-CPU counters map; empty when XDP is not attached.
    pub(crate) xdp: Vec<u64>,
    pub(crate) server: u64,
    /// CPU ticks of every process that is neither this benchmark (with
    /// the children it reaped), nor the server, nor ksoftirqd, by pid.
    pub(crate) foreign: std::collections::HashMap<u32, u64>,
}

pub(crate) fn snap(pid: u32, counters: Option<&std::path::Path>) -> Snap {
    let cpu = ticks_per_cpu();
    let net_rx = std::fs::read_to_string("/proc/softirqs")
        .unwrap_or_default()
        .lines()
        .find(|l| l.trim_start().starts_with("NET_RX:"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let xdp = counters.map(xdp_runs_per_cpu).unwrap_or_default();
    Snap {
        cpu,
        net_rx,
        xdp,
        server: cpu_ticks(pid),
        foreign: foreign_ticks(pid),
    }
}

/// utime + stime + cutime + cstime of every other process (children that
/// exit are folded into their parent's cutime/cstime, so a build's short
/// compiler processes still show). Another job on this shared machine
/// makes the figures meaningless; this is how a run notices it.
pub(crate) fn foreign_ticks(server: u32) -> std::collections::HashMap<u32, u64> {
    let me = std::process::id();
    let mut m = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me || pid == server {
            continue;
        }
        let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if st.contains("(ksoftirqd/") {
            continue;
        }
        let f: Vec<u64> = st
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(11)
            .take(4)
            .filter_map(|v| v.parse().ok())
            .collect();
        m.insert(pid, f.iter().sum());
    }
    m
}

/// Foreign CPU seconds between two snapshots (a process new in the second
/// counts in full), and the command names of the largest users.
pub(crate) fn foreign_s(a: &Snap, b: &Snap, hz: f64) -> (f64, String) {
    let mut d: Vec<(u64, u32)> = b
        .foreign
        .iter()
        .map(|(pid, t)| (t.saturating_sub(*a.foreign.get(pid).unwrap_or(&0)), *pid))
        .filter(|(t, _)| *t > 0)
        .collect();
    d.sort_unstable_by(|x, y| y.cmp(x));
    let who = d
        .iter()
        .take(3)
        .map(|(t, pid)| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{} (pid {pid}) {:.2} s", comm.trim(), *t as f64 / hz)
        })
        .collect::<Vec<_>>()
        .join(", ");
    (d.iter().map(|x| x.0).sum::<u64>() as f64 / hz, who)
}

/// Sum of every verdict counter (one per program run) for each CPU.
pub(crate) fn xdp_runs_per_cpu(pinned: &std::path::Path) -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(pinned)
        .output()
        .expect("bpftool");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut per_cpu = Vec::new();
    for entry in v.as_array().into_iter().flatten() {
        let entry = entry.get("formatted").unwrap_or(entry);
        for c in entry["values"].as_array().into_iter().flatten() {
            let i = c["cpu"].as_u64().unwrap_or(0) as usize;
            if per_cpu.len() <= i {
                per_cpu.resize(i + 1, 0);
            }
            per_cpu[i] += c["value"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, n)| n.as_u64().unwrap_or(0))
                .sum::<u64>();
        }
    }
    per_cpu
}
