//! Memory figures of a process, for the scale and sync benchmarks.

use std::fs;

use anyhow::Result;

/// A `/proc/self/status` field in KiB (`VmRSS:`, `VmHWM:`).
pub fn status_kib(field: &str) -> u64 {
    status_in(
        &fs::read_to_string("/proc/self/status").unwrap_or_default(),
        field,
    )
}

/// The same field of another process.
pub fn status_kib_of(pid: u32, field: &str) -> u64 {
    status_in(
        &fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default(),
        field,
    )
}

fn status_in(s: &str, field: &str) -> u64 {
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Kernel memory of every BPF map this process holds, as the kernel reports
/// it (fdinfo `memlock`, the same figure bpftool shows).
pub fn map_bytes() -> Result<u64> {
    let mut total = 0;
    for e in fs::read_dir("/proc/self/fdinfo")? {
        let info = fs::read_to_string(e?.path()).unwrap_or_default();
        if !info.contains("map_type:") {
            continue;
        }
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(total)
}

/// Kernel memory of each BPF map this process holds, by map name (from
/// bpftool, by the map ids in fdinfo).
pub fn map_bytes_by_name() -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc/self/fdinfo")? {
        let info = fs::read_to_string(e?.path()).unwrap_or_default();
        let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("map_id:"))
            .map(|v| v.trim().to_string())
        else {
            continue;
        };
        let o = std::process::Command::new("bpftool")
            .args(["-j", "map", "show", "id", &id])
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if let (Some(n), Some(b)) = (v["name"].as_str(), v["bytes_memlock"].as_u64()) {
            out.push((n.to_string(), b));
        }
    }
    out.sort();
    Ok(out)
}

/// User and system CPU time (ms) a process has used so far, its finished
/// threads included (`/proc/<pid>/stat` utime and stime, in clock ticks of
/// 10 ms); `None` is this process.
pub fn cpu_ms(pid: Option<u32>) -> (u64, u64) {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let s = fs::read_to_string(path).unwrap_or_default();
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ms = |i: usize| f.get(i).copied().unwrap_or(0) * 1000 / hz;
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    (ms(11), ms(12))
}
