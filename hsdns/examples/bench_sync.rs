//! Sync at cluster scale through the live source: an in-process API server
//! holding 10,000 services and 150,000 pods (2,000 headless services of 50
//! StatefulSet pods, 8,000 ClusterIP services with 6-7 pods each), kube-rs's
//! real client and watchers, the live source's index, the record table
//! updated one service at a time, and the loaded program's maps: the
//! daemon's pipeline. Measures the time from start to the first full sync
//! in the maps, then event-to-map latency for single pod changes under a
//! steady churn of 100 changes/s, the process's peak RSS (the in-process
//! API server's copy of the cluster included) and the maps' kernel memory. Run as root: `cargo run --release -p hsdns --example
//! bench_sync [churn-seconds]`; prints one JSON object.

#[path = "../tests/apiserver/mod.rs"]
mod apiserver;
#[path = "support/proc.rs"]
mod proc_stats;

use std::time::{Duration, Instant};

use apiserver::{ApiServer, Kind};
use hsdns::{
    loader::{self, Capacities},
    maps::{Syncer, bpf::BpfMaps},
    records::{RecordTable, ZoneConfig},
    source::{self, kube::Update},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const HEADLESS: usize = 2000;
const PER_HEADLESS: usize = 50;
const SERVICES: usize = 10_000;
const PODS: usize = 150_000;

fn ip(i: usize) -> String {
    format!("169.254.{}.{}", (i / 250) % 250, 1 + i % 250)
}

fn slice(s: usize, first_pod: usize, n: usize, bump: usize) -> Value {
    let headless = s < HEADLESS;
    let eps: Vec<Value> = (0..n)
        .map(|i| {
            let addr = if i == 0 && bump > 0 { ip(300_000 + bump) } else { ip(first_pod + i) };
            if headless {
                json!({"addresses": [addr], "hostname": format!("p-{i}"), "conditions": {"ready": true}})
            } else {
                json!({"addresses": [addr], "conditions": {"ready": true}})
            }
        })
        .collect();
    json!({"kind": "EndpointSlice",
           "metadata": {"name": format!("s{s}-x"), "namespace": format!("ns{}", s % 500),
                        "labels": {"kubernetes.io/service-name": format!("s{s}")}},
           "addressType": "IPv4", "endpoints": eps})
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let churn_secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let api = ApiServer::start().await;
    let mut layout = Vec::new();
    let mut pod = 0;
    let per_cip = (PODS - HEADLESS * PER_HEADLESS) / (SERVICES - HEADLESS);
    for s in 0..SERVICES {
        let headless = s < HEADLESS;
        let n = if headless { PER_HEADLESS } else { per_cip };
        let cip = if headless {
            "None".to_string()
        } else {
            ip(400_000 + s)
        };
        api.apply(
            Kind::Service,
            json!({"kind": "Service", "metadata": {"name": format!("s{s}"), "namespace": format!("ns{}", s % 500)},
                   "spec": {"clusterIP": cip, "clusterIPs": [cip]}}),
        );
        api.apply(Kind::EndpointSlice, slice(s, pod, n, 0));
        layout.push((pod, n));
        pod += n;
    }
    let kc = std::env::temp_dir().join(format!("hsdns-bench-kc-{}", std::process::id()));
    api.kubeconfig(&kc);

    let caps = Capacities {
        names: [262_144, 4_096, 256],
        answers: [262_144, 4_096, 4_096],
    };
    let mut ebpf = loader::load(&caps)?;
    let maps = BpfMaps::take(&mut ebpf)?;
    let mut syncer = Syncer::new(maps, &caps);
    let zone = ZoneConfig::default();
    let t0 = Instant::now();
    let client = source::kube::client(Some(&kc)).await?;
    let (tx, mut rx) = mpsc::channel(1);
    tokio::spawn(source::kube::watch(client, tx));

    // Each applied update: when its sync finished, the newest
    // resourceVersion it holds (so every change up to it is in the maps),
    // and the table's size once complete.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, u64, usize)>();
    let sync_task = tokio::task::spawn_blocking(move || {
        let mut table = RecordTable::new(&zone, 1);
        syncer.write_soa(&table).unwrap();
        let all = table.all_changes();
        syncer.apply(&mut table, all).unwrap();
        while let Some(update) = rx.blocking_recv() {
            let max_rv = match &update {
                Update::Changed(services) => services
                    .iter()
                    .flat_map(|s| &s.slices)
                    .filter_map(|s| s.metadata.resource_version.as_deref()?.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0),
                Update::Complete => 0,
            };
            let mut changes = Vec::new();
            update.apply(&mut table, &mut changes);
            syncer.apply(&mut table, changes).unwrap();
            if table.is_complete() {
                let _ = done_tx.send((Instant::now(), max_rv, table.len()));
            }
        }
    });
    let (first_done, _, names) = done_rx.recv().await.expect("a first sync");
    let first_sync = first_done - t0;

    // Churn: 100 single-pod changes a second, each a new address for one
    // StatefulSet pod.
    let mut applied = Vec::new();
    let mut done = Vec::new();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut k = 0usize;
    while start.elapsed() < Duration::from_secs(churn_secs) {
        tick.tick().await;
        let s = k % HEADLESS;
        let (first_pod, n) = layout[s];
        let rv = api.apply(Kind::EndpointSlice, slice(s, first_pod, n, k + 1));
        applied.push((rv, Instant::now()));
        k += 1;
        while let Ok(d) = done_rx.try_recv() {
            done.push(d);
        }
    }
    // Let the last changes land (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let last_rv = applied.last().map(|a| a.0).unwrap_or(0);
    while done
        .last()
        .is_none_or(|d: &(Instant, u64, usize)| d.1 < last_rv)
        && Instant::now() < deadline
    {
        if let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(1), done_rx.recv()).await {
            done.push(d);
        }
    }
    let mut lat: Vec<f64> = applied
        .iter()
        .filter_map(|(rv, t)| {
            let d = done.iter().find(|d| d.1 >= *rv)?;
            Some(d.0.duration_since(*t).as_secs_f64() * 1000.0)
        })
        .collect();
    let landed = lat.len();
    let peak_rss_kib = proc_stats::status_kib("VmHWM:");
    let map_bytes = proc_stats::map_bytes()?;
    let p50 = percentile(&mut lat, 0.5);
    let p99 = percentile(&mut lat, 0.99);
    println!(
        "{{\"services\":{SERVICES},\"pods\":{PODS},\"names\":{names},\"first_sync_ms\":{},\
         \"names_per_s\":{:.0},\"changes\":{},\"changes_landed\":{landed},\"syncs_during_churn\":{},\
         \"event_to_map_p50_ms\":{p50:.1},\"event_to_map_p99_ms\":{p99:.1},\
         \"peak_rss_kib\":{peak_rss_kib},\"map_bytes\":{map_bytes},\
         \"target_first_sync_ms\":1000,\"target_p99_ms\":10}}",
        first_sync.as_millis(),
        names as f64 / first_sync.as_secs_f64(),
        applied.len(),
        done.len(),
    );
    let _ = std::fs::remove_file(&kc);
    drop(sync_task);
    std::process::exit(0);
}
