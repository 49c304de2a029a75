//! Wiring: source -> record table -> maps -> attached program, until a signal.

use std::{
    fs,
    path::Path,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use aya::maps::{Map, MapData, PerCpuArray};
use hickory_proto::rr::Name;
use hsdns_common::{Counters, MAP_COUNTERS};

use crate::{
    cli::{RunArgs, SourceArgs},
    loader::{self, Capacities},
    maps::{Syncer, bpf::BpfMaps, bpf::sum_counters},
    records::{RecordTable, ZoneConfig},
    source,
};

/// Reads the configured source and builds the record table. The SOA serial
/// is the build time, as CoreDNS reports the time of its last change.
pub fn build_table(args: &SourceArgs) -> Result<RecordTable> {
    let objects = if args.manifests.is_empty() {
        source::embedded_seed()
    } else {
        source::load_paths(&args.manifests)?
    };
    let mut zone = Name::from_ascii(&args.zone)
        .with_context(|| format!("--zone {:?} is not a domain name", args.zone))?
        .to_lowercase();
    zone.set_fqdn(true);
    if zone.is_root() {
        bail!("--zone must not be the root");
    }
    let cfg = ZoneConfig {
        zone,
        ttl: args.ttl,
    };
    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1);
    Ok(RecordTable::build(&cfg, &objects, serial))
}

pub fn run(args: RunArgs) -> Result<()> {
    let table = Arc::new(build_table(&args.source)?);
    log::info!("record table: {} names", table.len());
    let caps = Capacities {
        names: args.name_capacity[..]
            .try_into()
            .context("--name-capacity")?,
        answers: args.answer_capacity[..]
            .try_into()
            .context("--answer-capacity")?,
    };
    let mut ebpf = loader::load(&caps)?;
    let _pins = loader::pin_maps(&ebpf, &args.pin_dir)?;
    let mut maps = BpfMaps::take(&mut ebpf)?;
    maps.set_answering(false)?;
    for addr in &args.dns_addrs {
        maps.add_dns_addr(*addr)?;
    }
    let mut syncer = Syncer::new(maps, &caps);
    let soa = syncer.write_soa(&table)?;
    let stats = syncer.sync(&table)?;
    log::info!(
        "maps synced: {} names, {} answers, {soa} SOA entries ({stats:?})",
        syncer.names_installed(),
        stats.answers_written
    );
    let prog = loader::program(&mut ebpf)?;
    for iface in &args.interfaces {
        loader::attach(prog, iface, args.xdp_mode)?;
    }
    // Only now does the kernel answer: the maps hold the whole table.
    syncer.backend_mut().set_answering(true)?;
    if let Some(f) = &args.ready_file {
        fs::write(f, b"ready\n").with_context(|| format!("writing {}", f.display()))?;
    }
    log::info!("ready: answering for {:?}", args.dns_addrs);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(wait_for_signal())?;
    log::info!("shutting down");
    // Pass everything up before the program goes, then detach by dropping.
    syncer.backend_mut().set_answering(false)?;
    let c = syncer.backend().counters()?;
    log::info!("counters at exit: {c:?}");
    drop(ebpf);
    if let Some(f) = &args.ready_file {
        let _ = fs::remove_file(f);
    }
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

pub fn print_records(args: &SourceArgs) -> Result<()> {
    let table = build_table(args)?;
    let ttl = table.zone().ttl;
    for (name, entry) in table.iter() {
        for a in &entry.a {
            println!("{name} {ttl} IN A {a}");
        }
        for a in &entry.aaaa {
            println!("{name} {ttl} IN AAAA {a}");
        }
    }
    Ok(())
}

/// The counters of a running daemon, summed over CPUs.
pub fn read_pinned_counters(pin_dir: &Path) -> Result<Counters> {
    let path = pin_dir.join(MAP_COUNTERS);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening {} (is hsdns running?)", path.display()))?;
    let map: PerCpuArray<MapData, Counters> = Map::PerCpuArray(data).try_into()?;
    let per_cpu = map.get(&0, 0)?;
    Ok(sum_counters(per_cpu.iter()))
}

pub fn print_stats(pin_dir: &Path) -> Result<()> {
    let c = read_pinned_counters(pin_dir)?;
    println!("{c:#?}");
    Ok(())
}
