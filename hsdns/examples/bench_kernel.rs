//! Cost of one answer in the kernel: BPF_PROG_TEST_RUN on the loaded
//! program, beside a floor program that only swaps addresses and bounces
//! the packet (the least any XDP responder does).
//!
//! With `repeat > 1` the kernel reruns the program on the buffer it already
//! rewrote, so only the first run would be a hit: every figure here is the
//! mean of many single runs, each checked to have returned the expected
//! verdict. Run as root: `cargo run --release -p hsdns --example
//! bench_kernel [runs]`; prints one JSON object per case.

use anyhow::{Context as _, Result, bail};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use hickory_proto::rr::RecordType;
use hsdns::{
    loader::{self, Capacities},
    maps::{Syncer, bpf::BpfMaps},
    records::{RecordTable, ZoneConfig},
    source,
    testing::{DNS4, DNS6, Frame, XDP_PASS, XDP_TX, headless_yaml, query},
};

/// Mean and median of `runs` single runs of `prog` on `pkt`, each checked
/// to return `verdict`.
fn time(prog: &Xdp, pkt: &[u8], verdict: u32, runs: usize) -> Result<(f64, u64)> {
    let mut out = vec![0u8; 4096];
    let mut ns = Vec::with_capacity(runs);
    for _ in 0..runs {
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(pkt),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        if r.return_value != verdict {
            bail!("expected verdict {verdict}, got {}", r.return_value);
        }
        ns.push(r.duration.as_nanos() as u64);
    }
    ns.sort_unstable();
    let mean = ns.iter().sum::<u64>() as f64 / runs as f64;
    Ok((mean, ns[runs / 2]))
}

fn main() -> Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let mut objects = source::embedded_seed();
    let o = source::parse_manifests("multi20", &headless_yaml("bench", "multi20", 20))?;
    objects.services.extend(o.services);
    objects.slices.extend(o.slices);
    let mut table = RecordTable::build(&ZoneConfig::default(), &objects, 1);
    let caps = Capacities::default();
    let mut ebpf = loader::load(&caps).context("loading (run as root)")?;
    let floor: &mut Xdp = ebpf
        .program_mut("hsdns_floor")
        .context("floor program")?
        .try_into()?;
    floor.load()?;
    let mut maps = BpfMaps::take(&mut ebpf)?;
    maps.add_dns_addr(DNS4.into())?;
    maps.add_dns_addr(DNS6.into())?;
    let mut syncer = Syncer::new(maps, &caps);
    syncer.set_nxdomain(true);
    syncer.write_soa(&table)?;
    syncer.sync_new(&mut table)?;
    syncer.backend_mut().set_answering(true)?;

    let pod = "nginx-0.nginx-headless.test.svc.cluster.local.";
    let svc = "nginx-headless.test.svc.cluster.local.";
    let mut tcp = Frame::v4(query(pod, RecordType::A, None));
    tcp.proto = 6;
    let cases: Vec<(&str, Frame, u32)> = vec![
        (
            "A hit (1 address)",
            Frame::v4(query(pod, RecordType::A, None)),
            XDP_TX,
        ),
        (
            "A hit (3 addresses)",
            Frame::v4(query(svc, RecordType::A, Some(1232))),
            XDP_TX,
        ),
        (
            "A hit (20 addresses)",
            Frame::v4(query(
                "multi20.bench.svc.cluster.local.",
                RecordType::A,
                Some(1232),
            )),
            XDP_TX,
        ),
        (
            "AAAA hit over IPv6",
            Frame::v6(query(pod, RecordType::AAAA, None)),
            XDP_TX,
        ),
        (
            "NODATA",
            Frame::v4(query(
                "multi20.bench.svc.cluster.local.",
                RecordType::AAAA,
                None,
            )),
            XDP_TX,
        ),
        (
            "NXDOMAIN (search-list miss)",
            Frame::v4(query(
                "nginx-0.nginx-headless.test.test.svc.cluster.local.",
                RecordType::A,
                None,
            )),
            XDP_TX,
        ),
        (
            "pass: unknown name",
            Frame::v4(query("example.test.", RecordType::A, None)),
            XDP_PASS,
        ),
        ("pass: not DNS (TCP)", tcp, XDP_PASS),
    ];
    let floor_pkt = Frame::v4(query(pod, RecordType::A, None)).bytes();
    // Warm up caches and branch predictors on both programs.
    let floor: &Xdp = ebpf.program("hsdns_floor").context("floor")?.try_into()?;
    time(floor, &floor_pkt, XDP_TX, runs / 10 + 1)?;
    let (floor_mean, floor_median) = time(floor, &floor_pkt, XDP_TX, runs)?;
    println!(
        "{{\"case\":\"floor: swap and XDP_TX\",\"runs\":{runs},\"mean_ns\":{floor_mean:.1},\"median_ns\":{floor_median},\"ratio\":1.0}}"
    );
    let prog: &Xdp = ebpf
        .program(hsdns_common::PROGRAM_NAME)
        .context("program")?
        .try_into()?;
    for (name, frame, verdict) in cases {
        let pkt = frame.bytes();
        let (mean, median) =
            time(prog, &pkt, verdict, runs).with_context(|| format!("case {name:?}"))?;
        println!(
            "{{\"case\":\"{name}\",\"runs\":{runs},\"mean_ns\":{mean:.1},\"median_ns\":{median},\"ratio\":{:.2}}}",
            mean / floor_mean
        );
    }
    Ok(())
}
