//! Memory and time of the record table and the BPF maps at Kubernetes'
//! published scalability limits: 10,000 services and 150,000 pods.
//!
//! Run as root (it loads the XDP program, attaches nothing):
//! `cargo run --release -p hsdns-bench --bin scale`. Prints a JSON line with
//! the figures; `cargo xtask bench` collects them.

use std::{
    collections::BTreeMap,
    time::{Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use hsdns::{
    k8s::{Objects, SERVICE_NAME_LABEL},
    loader::{self, Capacities},
    maps::{Syncer, bpf::BpfMaps},
    records::{RecordTable, ZoneConfig},
};
use hsdns_bench::proc_stats::{map_bytes, map_bytes_by_name, status_kib};
use k8s_openapi::{
    api::{
        core::v1::{Service, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

const SERVICES: usize = 10_000;
const HEADLESS: usize = 2_000;
/// StatefulSet pods per headless service: 100,000 pods with hostnames.
const PODS_PER_HEADLESS: usize = 50;
/// The remaining 50,000 pods sit behind ClusterIP services: named after
/// their addresses under the service (CoreDNS's endpoint names).
const PODS_TOTAL: usize = 150_000;

fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn ip(i: usize) -> String {
    // Synthetic addresses only ever stored in maps, never used for traffic.
    format!("169.254.{}.{}", (i / 250) % 250, 1 + i % 250)
}

fn cluster() -> Objects {
    let mut o = Objects::default();
    let mut pod = 0;
    for s in 0..SERVICES {
        let ns = format!("ns-{}", s % 500);
        let name = format!("svc-{s}");
        let headless = s < HEADLESS;
        o.services.push(Service {
            metadata: meta(&ns, &name),
            spec: Some(ServiceSpec {
                cluster_ip: Some(if headless {
                    "None".into()
                } else {
                    ip(200_000 + s)
                }),
                cluster_ips: Some(vec![if headless {
                    "None".into()
                } else {
                    ip(200_000 + s)
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let pods = if headless {
            PODS_PER_HEADLESS
        } else {
            (PODS_TOTAL - HEADLESS * PODS_PER_HEADLESS) / (SERVICES - HEADLESS)
        };
        let mut m = meta(&ns, &format!("{name}-abcde"));
        m.labels = Some(BTreeMap::from([(SERVICE_NAME_LABEL.into(), name.clone())]));
        let endpoints = (0..pods)
            .map(|i| {
                pod += 1;
                Endpoint {
                    addresses: vec![ip(pod)],
                    hostname: headless.then(|| format!("{name}-{i}")),
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        o.slices.push(EndpointSlice {
            metadata: m,
            address_type: "IPv4".into(),
            endpoints,
            ports: None,
        });
    }
    o
}

fn main() -> Result<()> {
    let t0 = Instant::now();
    let objects = cluster();
    let t_objects = t0.elapsed();
    let rss_objects_kib = status_kib("VmRSS:");
    let serial = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs() as u32;
    let t1 = Instant::now();
    let mut table = RecordTable::build(&ZoneConfig::default(), &objects, serial);
    let t_table = t1.elapsed();
    drop(objects);
    // Give freed object memory back, so RSS shows what the table holds
    // (with the manifest source the objects are gone after the build).
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let rss_table_kib = status_kib("VmRSS:");

    let caps = Capacities {
        // 160,504 names, as many small answers (the endpoints of ClusterIP
        // services are named too), with about 20% to spare.
        names: [196_608, 4_096, 256],
        answers: [196_608, 1_024, 4_096],
    };
    let mut ebpf = loader::load(&caps).context("loading (run as root)")?;
    let maps = BpfMaps::take(&mut ebpf)?;
    let mut syncer = Syncer::new(maps, &caps);
    let t2 = Instant::now();
    syncer.write_soa(&table)?;
    let stats = syncer.sync_new(&mut table)?;
    let t_sync = t2.elapsed();

    // SAFETY: as above.
    unsafe { libc::malloc_trim(0) };
    let maps = map_bytes()?;
    let by_map = map_bytes_by_name()?;
    let names_bytes: u64 = by_map
        .iter()
        .filter(|(n, _)| n.starts_with("names_"))
        .map(|(_, b)| b)
        .sum();
    let by_map_json = by_map
        .iter()
        .map(|(n, b)| format!("\"{n}\":{b}"))
        .collect::<Vec<_>>()
        .join(",");
    let rss_kib = status_kib("VmRSS:");
    let hwm_kib = status_kib("VmHWM:");

    // A relist that finds nothing changed: every service recomputed and
    // compared, nothing written.
    let objects = cluster();
    let t3 = Instant::now();
    let mut changes = Vec::new();
    table.set_objects(&objects, &mut changes);
    let again = syncer.apply(&mut table, changes)?;
    let t_resync = t3.elapsed();
    assert_eq!(again.names_written, 0, "an unchanged table writes nothing");

    // `--pods verified`: what the table's index of every pod's address
    // costs (the live source's own record of each pod, which it needs to
    // take a pod's addresses out again, comes on top).
    drop(objects);
    // SAFETY: as above.
    unsafe { libc::malloc_trim(0) };
    let before_pods = status_kib("VmRSS:");
    for i in 1..=PODS_TOTAL {
        let ns = format!("ns-{}", i % 500);
        table.set_pod_address(&ns, ip(i).parse()?, true);
    }
    let pods_verified_kib = status_kib("VmRSS:").saturating_sub(before_pods);
    println!(
        "{{\"services\":{SERVICES},\"pods\":{PODS_TOTAL},\"names\":{},\
         \"objects_ms\":{},\"table_ms\":{},\"sync_ms\":{},\"resync_ms\":{},\
         \"answers_written\":{},\"names_full\":{},\"answers_full\":{},\"too_large\":{},\
         \"rss_with_objects_kib\":{rss_objects_kib},\"rss_after_table_kib\":{rss_table_kib},\"rss_kib\":{rss_kib},\"peak_rss_kib\":{hwm_kib},\
         \"map_bytes\":{maps},\"name_map_bytes_per_name\":{:.1},\"map_bytes_by_map\":{{{by_map_json}}},\"rss_plus_maps_mib\":{:.1},\"pods_verified_kib\":{pods_verified_kib}}}",
        table.len(),
        t_objects.as_millis(),
        t_table.as_millis(),
        t_sync.as_millis(),
        t_resync.as_millis(),
        stats.answers_written,
        stats.names_full,
        stats.answers_full,
        stats.answers_too_large,
        names_bytes as f64 / syncer.names_installed() as f64,
        (rss_kib * 1024 + maps) as f64 / (1024.0 * 1024.0),
    );
    Ok(())
}
