//! Wiring: source -> record table -> maps -> attached program, until a signal.

use std::{
    collections::HashMap,
    fs,
    path::Path,
    sync::{Arc, PoisonError, RwLock},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray},
    programs::xdp::XdpLinkId,
};
use futures::StreamExt as _;
use hickory_proto::rr::Name;
use hsdns_common::{Counters, MAP_COUNTERS};

use crate::{
    cli::{RunArgs, SourceArgs},
    links::{self, Link, LinkEvent, Selector},
    loader::{self, Capacities, ModeChoice},
    maps::{Syncer, bpf::BpfMaps, bpf::sum_counters},
    metrics::Metrics,
    records::{PodMode, RecordTable, SharedTable, TableOptions, ZoneConfig},
    server::{self, Server, ServerConfig},
    source,
};

/// The zone of `--zone`/`--ttl`.
pub fn zone_config(args: &SourceArgs) -> Result<ZoneConfig> {
    let mut zone = Name::from_ascii(&args.zone)
        .with_context(|| format!("--zone {:?} is not a domain name", args.zone))?
        .to_lowercase();
    zone.set_fqdn(true);
    if zone.is_root() {
        bail!("--zone must not be the root");
    }
    Ok(ZoneConfig {
        zone,
        ttl: args.ttl,
    })
}

/// The SOA serial: now, in unix seconds, as CoreDNS reports the time of its
/// last change. At start, then after each change of the table (the syncer
/// switches the kernel's SOA to a fresh bank, so no answer is torn).
fn serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

/// CoreDNS's options from the command line.
pub fn table_options(args: &SourceArgs, no_nxdomain: bool) -> TableOptions {
    TableOptions {
        pods: args.pods,
        endpoint_pod_names: args.endpoint_pod_names,
        nxdomain: !no_nxdomain,
    }
}

/// Reads the manifest source and builds the record table.
pub fn build_table(args: &SourceArgs, opts: &TableOptions) -> Result<RecordTable> {
    if args.manifests.is_empty() {
        bail!("no record source: give --manifests, --kubeconfig or --kube");
    }
    if args.pods == PodMode::Verified {
        bail!("--pods verified watches Pods: it needs --kubeconfig or --kube");
    }
    let objects = source::load_paths(&args.manifests)?;
    Ok(RecordTable::build_with(
        &zone_config(args)?,
        opts,
        &objects,
        serial(),
    ))
}

pub fn run(args: RunArgs) -> Result<()> {
    if args.interfaces.is_empty() && args.no_auto_attach && !args.userspace_only {
        bail!("nothing to attach to: give --interface, or drop --no-auto-attach");
    }
    if args.userspace_only
        && args.upstreams.is_empty()
        && args.resolv_conf.is_none()
        && args.intercept_addrs.is_empty()
    {
        bail!("--userspace-only needs an upstream (--upstream, --resolv-conf or --intercept-addr)");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(args, Instant::now()))
}

/// Records a sync's outcome for the metrics.
fn note_sync(metrics: &Metrics, syncer: &Syncer<BpfMaps>, stats: &crate::maps::SyncStats) {
    let mut st = metrics.state.lock().expect("metrics lock");
    st.names_installed = syncer.names_installed() as u64;
    st.nxdomain_active = syncer.nxdomain_active();
    st.names_full = stats.names_full as u64;
    st.answers_full = stats.answers_full as u64;
    st.syncs += 1;
}

/// Turns kernel answers on and signals readiness.
fn become_ready(syncer: &mut Syncer<BpfMaps>, args: &RunArgs, metrics: &Metrics) -> Result<()> {
    syncer.backend_mut().set_answering(true)?;
    metrics.state.lock().expect("metrics lock").ready = true;
    if let Some(f) = &args.ready_file {
        fs::write(f, b"ready\n").with_context(|| format!("writing {}", f.display()))?;
    }
    log::info!("ready");
    Ok(())
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Interfaces the program is attached to, by index.
struct Attached {
    links: HashMap<u32, (String, XdpLinkId)>,
    metrics: Arc<Metrics>,
}

impl Attached {
    fn attach(&mut self, ebpf: &mut Ebpf, link: &Link, mode: ModeChoice) -> Result<()> {
        if self.links.contains_key(&link.index) {
            return Ok(());
        }
        let prog = loader::program(ebpf)?;
        let (mode, id) = loader::attach(prog, &link.name, mode)?;
        self.links.insert(link.index, (link.name.clone(), id));
        let mode = format!("{mode:?}").to_lowercase();
        self.metrics
            .state
            .lock()
            .expect("metrics lock")
            .attached
            .insert(link.name.clone(), mode);
        Ok(())
    }

    fn forget(&mut self, ebpf: &mut Ebpf, index: u32) {
        if let Some((name, id)) = self.links.remove(&index) {
            self.metrics
                .state
                .lock()
                .expect("metrics lock")
                .attached
                .remove(&name);
            // The kernel detached it with the interface; dropping our
            // handle is all that is left (an error here says just that).
            if let Ok(prog) = loader::program(ebpf) {
                let _ = prog.detach(id);
            }
            log::info!("{name} is gone");
        }
    }
}

async fn serve(args: RunArgs, started: Instant) -> Result<()> {
    let live = args.source.kube || args.source.kubeconfig.is_some();
    let opts = table_options(&args.source, args.no_nxdomain);
    // Whether pods' packets to a ClusterIP can reach the kernel path.
    crate::cni::log_socket_lb(!args.intercept_addrs.is_empty());
    let (table, updates) = if live {
        let client = source::kube::client(args.source.kubeconfig.as_deref()).await?;
        // Capacity 1: changes made while a batch is being synced wait in
        // the source's dirty set and go out together.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let watch = source::kube::WatchOptions {
            endpoint_pod_names: args.source.endpoint_pod_names,
            pods: args.source.pods == PodMode::Verified,
        };
        tokio::spawn(source::kube::watch(client, tx, watch));
        // Incomplete until the first lists are in: nothing is answered
        // from it before.
        let cfg = zone_config(&args.source)?;
        (RecordTable::new_with(&cfg, &opts, serial()), Some(rx))
    } else {
        (build_table(&args.source, &opts)?, None)
    };
    log::info!("record table: {} names", table.len());
    let caps = Capacities {
        names: args.name_capacity,
        answers: args.answer_capacity,
    };
    // The verifier takes about half a second on this program: it runs on
    // a blocking thread while the first lists stream in (their updates
    // wait in the source's index), not before them.
    let load = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let ebpf = loader::load(&caps)?;
        log::info!(
            "program loaded and verified in {} ms",
            t.elapsed().as_millis()
        );
        Ok::<_, anyhow::Error>(ebpf)
    });
    let netlink = links::connect()?;
    let local = if args.no_local_interface {
        None
    } else {
        let l = links::ensure_local(&netlink, &args.local_interface, &args.dns_addrs).await?;
        log::info!(
            "{} holds {:?}{}",
            l.name,
            args.dns_addrs,
            if l.created { " (created)" } else { "" }
        );
        Some(l)
    };
    let result = serve_with_maps(&args, &caps, table, updates, &netlink, started, load).await;
    if let Some(l) = &local
        && let Err(e) = links::release_local(&netlink, l).await
    {
        log::warn!("cleaning up {}: {e:#}", l.name);
    }
    result
}

async fn serve_with_maps(
    args: &RunArgs,
    caps: &Capacities,
    mut table: RecordTable,
    mut updates: Option<tokio::sync::mpsc::Receiver<source::kube::Update>>,
    netlink: &rtnetlink::Handle,
    started: Instant,
    load: tokio::task::JoinHandle<Result<Ebpf>>,
) -> Result<()> {
    let mut ebpf = load.await.context("loading the program")??;
    let _pins = loader::pin_maps(&ebpf, &args.pin_dir)?;
    // Contract 3: `hsdns query` runs the pinned program.
    let _prog_pin = crate::query::pin_program(loader::program(&mut ebpf)?, &args.pin_dir)?;
    let mut maps = BpfMaps::take(&mut ebpf)?;
    maps.set_answering(false)?;
    for addr in args.dns_addrs.iter().chain(&args.intercept_addrs) {
        maps.add_dns_addr(*addr)?;
    }
    let mut syncer = Syncer::new(maps, caps);
    syncer.set_nxdomain(!args.no_nxdomain);
    let soa = syncer.write_soa(&table)?;
    let stats = syncer.sync_new(&mut table)?;
    log::info!(
        "maps synced: {} names, {} answers, {soa} SOA entries ({stats:?})",
        syncer.names_installed(),
        stats.answers_written
    );

    // Subscribe before listing, so no interface slips in between.
    let mut events = if args.no_auto_attach || args.userspace_only {
        None
    } else {
        Some(Box::pin(links::monitor()?))
    };
    let selector = Selector {
        include: args.include.clone(),
        exclude: args.exclude.clone(),
    };
    let metrics = Metrics::new(args.pin_dir.clone());
    let _metrics_task = match args.metrics_addr {
        Some(addr) => {
            let m = metrics.clone();
            Some(AbortOnDrop(tokio::spawn(async move {
                if let Err(e) = m.serve(addr).await {
                    log::error!("{e:#}");
                }
            })))
        }
        None => None,
    };
    note_sync(&metrics, &syncer, &stats);
    let mut attached = Attached {
        links: HashMap::new(),
        metrics: metrics.clone(),
    };
    let all = links::list(netlink).await?;
    for name in &args.interfaces {
        let link = all
            .iter()
            .find(|l| &l.name == name)
            .with_context(|| format!("--interface {name}: no such interface"))?;
        attached.attach(&mut ebpf, link, args.xdp_mode)?;
    }
    if events.is_some() {
        for link in all.iter().filter(|l| selector.matches(l)) {
            attached.attach(&mut ebpf, link, args.xdp_mode)?;
        }
    }
    if attached.links.is_empty() {
        log::warn!("no interface matches yet; waiting for pod interfaces to appear");
    }
    let mut upstreams = args.upstreams.clone();
    if let Some(rc) = &args.resolv_conf {
        upstreams.extend(server::resolv_conf_upstreams(rc)?);
    }
    // Without an explicit upstream, the intercepted cluster DNS IP is the
    // upstream: queries hsdns sends from the node are not seen by XDP
    // (ingress only) and reach CoreDNS through kube-proxy.
    if upstreams.is_empty() {
        upstreams.extend(
            args.intercept_addrs
                .iter()
                .map(|ip| std::net::SocketAddr::new(*ip, 53)),
        );
    }
    // The server runs on this thread too: the lock is never contended,
    // and a query sees the table before or after an update, never during.
    let shared: SharedTable = Arc::new(RwLock::new(table));
    let _server = if upstreams.is_empty() {
        None
    } else {
        let cfg = ServerConfig {
            listen: args
                .dns_addrs
                .iter()
                .map(|ip| std::net::SocketAddr::new(*ip, 53))
                .collect(),
            upstreams: upstreams.clone(),
            timeout: std::time::Duration::from_millis(args.upstream_timeout_ms),
            max_inflight: args.max_inflight,
            cache_entries: args.cache_entries,
        };
        let srv = Server::new(cfg, shared.clone());
        metrics.set_server(srv.clone());
        let bound = srv.bind().await?;
        log::info!(
            "userspace server on {:?}, upstreams {upstreams:?}",
            bound.local_addrs()
        );
        Some(AbortOnDrop(tokio::spawn(srv.serve(bound))))
    };
    // Only now does the kernel answer: the maps hold the whole table (with
    // the live source, once its first complete list is in).
    if updates.is_none() {
        become_ready(&mut syncer, args, &metrics)?;
    }
    log::info!(
        "kernel answers for {:?} on {} interfaces (once the maps are complete)",
        args.dns_addrs
            .iter()
            .chain(&args.intercept_addrs)
            .collect::<Vec<_>>(),
        attached.links.len()
    );

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // When the SOA's serial may next follow the table (see
    // Syncer::refresh_soa).
    let mut soa_due: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tokio::time::sleep_until(soa_due.unwrap_or_else(Instant::now).into()), if soa_due.is_some() => {
                let mut table = shared.write().unwrap_or_else(PoisonError::into_inner);
                soa_due = syncer.refresh_soa(&mut table, serial(), Instant::now())?;
            }
            Some(update) = async { updates.as_mut()?.recv().await }, if updates.is_some() => {
                let mut table = shared.write().unwrap_or_else(PoisonError::into_inner);
                let mut changes = Vec::new();
                update.apply(&mut table, &mut changes);
                let n = changes.len();
                let stats = syncer.apply(&mut table, changes)?;
                if table.is_complete() {
                    soa_due = syncer.refresh_soa(&mut table, serial(), Instant::now())?;
                }
                let (names, complete) = (table.len(), table.is_complete());
                drop(table);
                note_sync(&metrics, &syncer, &stats);
                log::debug!("synced {n} changed names of {names} ({stats:?})");
                if complete && !syncer.backend().answering() {
                    // With the figures an operator sizes the maps by.
                    log::info!(
                        "first lists synced: {names} names, {} ms after start; \
                         {} names in the maps, answer slots in use {:?}",
                        started.elapsed().as_millis(),
                        syncer.names_installed(),
                        syncer.slots_in_use()
                    );
                    become_ready(&mut syncer, args, &metrics)?;
                }
            }
            Some(ev) = async { events.as_mut()?.next().await }, if events.is_some() => {
                match ev {
                    LinkEvent::New(link) if selector.matches(&link) => {
                        // A pod interface that cannot be attached is logged,
                        // not fatal: its queries go up the normal path.
                        if let Err(e) = attached.attach(&mut ebpf, &link, args.xdp_mode) {
                            log::warn!("{}: {e:#}", link.name);
                        }
                    }
                    LinkEvent::New(_) => {}
                    LinkEvent::Removed { index } => attached.forget(&mut ebpf, index),
                }
            }
        }
    }
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

pub fn print_records(args: &SourceArgs) -> Result<()> {
    if args.kube || args.kubeconfig.is_some() {
        bail!("hsdns records reads manifests (--manifests); ask a running daemon with hsdns query");
    }
    let table = build_table(args, &table_options(args, false))?;
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

pub fn print_stats(pin_dir: &Path, json: bool) -> Result<()> {
    let c = read_pinned_counters(pin_dir)?;
    if json {
        println!("{}", crate::stats::json(&c));
    } else {
        print!("{}", crate::stats::table(&c));
    }
    Ok(())
}
