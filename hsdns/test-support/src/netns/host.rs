//! Where the kernel spends its time: RPS masks and per-CPU ticks, for the
//! end-to-end benchmarks.

use std::process::Command;

use super::Netns;

/// Sets the RPS mask of the node-side veth's receive queue. `ip netns exec`
/// remounts /sys for the namespace, so /sys/class/net shows its devices.
pub fn set_rps(node: &Netns, dev: &str, mask: &str) {
    let out = Command::new("ip")
        .args(["netns", "exec", &node.name, "sh", "-c"])
        .arg(format!(
            "echo {mask} > /sys/class/net/{dev}/queues/rx-0/rps_cpus && \
             cat /sys/class/net/{dev}/queues/rx-0/rps_cpus"
        ))
        .output()
        .expect("ip netns exec");
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && u64::from_str_radix(got.trim(), 16).ok() == mask.parse().ok(),
        "setting rps_cpus of {dev} to {mask}: {got} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (non-idle, softirq) ticks per CPU, from /proc/stat (user nice system
/// idle iowait irq softirq steal; busy is all but idle and iowait).
pub fn ticks_per_cpu() -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let busy =
                v.iter().take(8).sum::<u64>() - v.get(3).unwrap_or(&0) - v.get(4).unwrap_or(&0);
            (busy, v.get(6).copied().unwrap_or(0))
        })
        .collect()
}
