//! What each hook costs the pod's other traffic: iperf3 from a pod
//! namespace to the node over the pod's veth, TCP and 64-byte UDP, with
//! nothing attached, with hsdns at tc ingress (the default on veths) and
//! with hsdns in generic XDP. The program sees every packet the pod sends
//! and passes it up; the question is what that costs in throughput and in
//! CPU per packet.
//!
//! Cores as in bench_e2e: the client (iperf3 -c) on CPU 1, the server
//! (iperf3 -s) and hsdns on CPU 0, RPS on the node-side veth to CPU 0.
//! Every run is bounded (iperf3 -t) and cleans up. Run as root:
//! `cargo run --release -p hsdns-bench --bin bench_traffic [seconds]`; prints
//! one JSON object per (condition, traffic).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hsdns_test_support::netns::*;

const CLIENT_CPU: &str = "1";
const SERVER_CPU: &str = "0";

/// Packets the node-side veth received.
fn rx_packets(node: &Netns, dev: &str) -> u64 {
    let out = Command::new("ip")
        .args(["-n", &node.name, "-j", "-s", "link", "show", "dev", dev])
        .output()
        .expect("ip");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap_or(0)
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    run_cleaning_up(|| run(secs));
}

fn run(secs: u64) {
    let bin = release_daemon_bin();
    let hz = 100.0;
    for (condition, mode) in [
        ("nothing attached", None),
        ("hsdns at tc ingress", Some("tc")),
        ("hsdns in generic XDP", Some("skb")),
    ] {
        for (traffic, args) in [
            ("TCP", &[][..]),
            ("UDP, 64-byte datagrams", &["-u", "-b", "0", "-l", "64"][..]),
        ] {
            let topo = Topology::new(1);
            let dev = topo.pods[0].host_if.clone();
            set_rps(&topo.node, &dev, "1");
            let _daemon = mode.map(|m| {
                let d = Daemon::start(
                    &bin,
                    &topo.node,
                    &["--dns-addr", "169.254.20.10", "--attach-mode", m],
                );
                assert!(
                    d.log().contains(&format!("attached to {dev}")),
                    "{}",
                    d.log()
                );
                d
            });
            let mut s = topo.node.cmd("taskset");
            s.args([
                "-c",
                SERVER_CPU,
                "iperf3",
                "-s",
                "-B",
                "169.254.20.10",
                "-1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            let _server = Guarded::spawn(s);
            std::thread::sleep(Duration::from_millis(500));
            let (t0, p0) = (ticks_per_cpu(), rx_packets(&topo.node, &dev));
            let start = Instant::now();
            let out = topo.pods[0]
                .ns
                .cmd("taskset")
                .args(["-c", CLIENT_CPU, "iperf3", "-c", "169.254.20.10", "-J"])
                .args(["-t", &secs.to_string()])
                .args(args)
                .output()
                .expect("iperf3");
            let wall = start.elapsed().as_secs_f64();
            let (t1, p1) = (ticks_per_cpu(), rx_packets(&topo.node, &dev));
            assert!(
                out.status.success(),
                "iperf3: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 json");
            let end = &v["end"];
            let bps = end["sum_received"]["bits_per_second"]
                .as_f64()
                .or_else(|| end["sum"]["bits_per_second"].as_f64())
                .unwrap_or(f64::NAN);
            let lost = end["sum"]["lost_percent"].as_f64().unwrap_or(0.0);
            let busy = |i: usize| (t1[i].0 - t0[i].0) as f64 / hz;
            let soft = |i: usize| (t1[i].1 - t0[i].1) as f64 / hz;
            let packets = p1 - p0;
            println!(
                "{{\"condition\":\"{condition}\",\"traffic\":\"{traffic}\",\"seconds\":{secs},\
                 \"gbit_s\":{:.3},\"packets\":{packets},\"kpps\":{:.1},\"udp_lost_percent\":{lost:.2},\
                 \"busy_cpu0_s\":{:.2},\"busy_cpu1_s\":{:.2},\"softirq_cpu0_s\":{:.2},\"softirq_cpu1_s\":{:.2},\
                 \"ns_per_packet\":{:.0},\"cpu0_ns_per_packet\":{:.0}}}",
                bps / 1e9,
                packets as f64 / wall / 1e3,
                busy(0),
                busy(1),
                soft(0),
                soft(1),
                (busy(0) + busy(1)) * 1e9 / packets.max(1) as f64,
                busy(0) * 1e9 / packets.max(1) as f64,
            );
        }
    }
}
