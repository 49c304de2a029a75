//! Wiring: source -> record table -> maps -> attached program, until a signal.

mod serve;

use std::{
    fs,
    path::Path,
    sync::{Arc, PoisonError, RwLock},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray},
};
use futures::StreamExt as _;
use hickory_proto::rr::Name;
use hsdns_common::{Counters, Layout, MAP_COUNTERS};

use crate::{
    cli::{RunArgs, SourceArgs},
    lifecycle::{self, Node, Plan, bpffs::PinLock},
    links::{self, Link, LinkEvent, Selector},
    loader::{self, Capacities},
    maps::{Syncer, bpf::BpfMaps, bpf::sum_counters},
    metrics::Metrics,
    records::{PodMode, RecordTable, SharedTable, TableOptions, ZoneConfig},
    source,
};
use serve::Frontend;

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
    build_table_at(args, opts, serial())
}

fn build_table_at(args: &SourceArgs, opts: &TableOptions, serial: u32) -> Result<RecordTable> {
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
        serial,
    ))
}

pub fn run(args: RunArgs) -> Result<()> {
    if args.interfaces.is_empty() && args.no_auto_attach && !args.userspace_only {
        bail!("nothing to attach to: give --interface, or drop --no-auto-attach");
    }
    let live = args.source.kube || args.source.kubeconfig.is_some();
    if args.userspace_only
        && args.upstreams.is_empty()
        && args.resolv_conf.is_none()
        && args.cluster_upstreams.is_empty()
        && (!live || args.no_cluster_dns)
    {
        bail!(
            "--userspace-only needs an upstream (--upstream, --resolv-conf, --cluster-upstream, \
             or the live source's cluster DNS)"
        );
    }
    // Readiness is this process's: a file an earlier (perhaps crashed)
    // one left says nothing about it.
    if let Some(f) = &args.ready_file {
        match fs::remove_file(f) {
            Ok(()) => log::info!("removed {} left by an earlier process", f.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", f.display())),
        }
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
    st.map_write_errors += stats.write_errors as u64;
    st.syncs += 1;
}

/// Signals readiness (once).
fn mark_ready(args: &RunArgs, metrics: &Metrics, why: &str) {
    let mut st = metrics.state.lock().expect("metrics lock");
    if st.ready {
        return;
    }
    st.ready = true;
    drop(st);
    if let Some(f) = &args.ready_file
        && let Err(e) = fs::write(f, b"ready\n")
    {
        log::error!("writing {}: {e}", f.display());
    }
    log::info!("ready ({why})");
}

/// The table is complete in the maps: the kernel answers from them, the
/// heartbeat starts, and a blue/green upgrade switches over. Nothing here
/// stops the daemon: a refused config write is retried by the next
/// heartbeat (which writes `answering` too), a failed switch leaves the
/// old program answering where it still is.
fn become_synced(syncer: &mut Syncer<BpfMaps>, node: &mut Node, args: &RunArgs, metrics: &Metrics) {
    if let Err(e) = syncer
        .backend_mut()
        .set_heartbeat(lifecycle::sys::boot_ns(), true)
    {
        log::error!("turning answering on: {e:#}");
        metrics.state.lock().expect("metrics lock").map_write_errors += 1;
    }
    if node.switch_pending() {
        match node.switch() {
            Ok(refused) => {
                for iface in refused {
                    *metrics
                        .state
                        .lock()
                        .expect("metrics lock")
                        .attach_failures
                        .entry(iface)
                        .or_default() += 1;
                }
            }
            Err(e) => log::error!("finishing the upgrade: {e:#}"),
        }
    }
    metrics.state.lock().expect("metrics lock").table_synced = true;
    mark_ready(args, metrics, "the maps hold the whole table");
}

fn live_source(args: &RunArgs) -> bool {
    args.live_source()
}

/// Whether the daemon finds the cluster DNS Service and answers its
/// ClusterIPs in the kernel.
fn discovers_cluster_dns(args: &RunArgs) -> bool {
    args.discovered_cluster_dns().is_some()
}

/// Which interfaces get the program.
struct Wanted {
    explicit: Vec<String>,
    auto: bool,
    selector: Selector,
}

impl Wanted {
    fn matches(&self, link: &Link) -> bool {
        self.explicit.contains(&link.name) || (self.auto && self.selector.matches(link))
    }
}

/// Puts the program on `link`. One interface that cannot have it is a
/// warning and a metric, never fatal: its queries go up the normal path.
fn attach_or_warn(node: &mut Node, link: &Link, metrics: &Metrics) {
    if let Err(e) = node.attach(link) {
        log::warn!(
            "{}: not attached, its queries go up the stack: {e:#}",
            link.name
        );
        *metrics
            .state
            .lock()
            .expect("metrics lock")
            .attach_failures
            .entry(link.name.clone())
            .or_default() += 1;
    }
}

/// Brings the attachments to the interfaces `all` (a full list): the
/// wanted ones get the program, pinned links of others go.
fn reconcile(node: &mut Node, all: &[Link], wanted: &Wanted, metrics: &Metrics) {
    let keep: std::collections::HashSet<u32> = all
        .iter()
        .filter(|l| wanted.matches(l))
        .map(|l| l.index)
        .collect();
    node.detach_unless(|i| keep.contains(&i));
    for link in all.iter().filter(|l| wanted.matches(l)) {
        attach_or_warn(node, link, metrics);
    }
}

async fn serve(args: RunArgs, started: Instant) -> Result<()> {
    if let Some(root) = lifecycle::bpffs::ensure_mounted(&args.pin_dir)? {
        log::info!(
            "pins go to {} on the BPF filesystem mounted at {}",
            args.pin_dir.display(),
            root.display()
        );
    }
    let caps = Capacities {
        names: args.name_capacity,
        answers: args.answer_capacity,
    };
    let zone = zone_config(&args.source)?;
    let want = lifecycle::layout(&caps, &zone, serial())?;
    // Maps this daemon will adopt keep their SOA serial: the kernel's
    // negative answers and the userspace server's stay equal byte for
    // byte. Read before the lock (the table and the listener come before
    // waiting for a running daemon to hand over); a daemon that still owns
    // the maps does not change it.
    let serial = match lifecycle::inspect(&args.pin_dir, &caps, &want) {
        Ok(Plan::Adopt(l)) => l.serial,
        _ => want.serial,
    };
    let live = live_source(&args);
    let opts = table_options(&args.source, args.no_nxdomain);
    // Whether pods' packets to a ClusterIP can reach the kernel path.
    crate::cni::log_socket_lb(!args.intercept_addrs.is_empty() || discovers_cluster_dns(&args));
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
        (RecordTable::new_with(&zone, &opts, serial), Some(rx))
    } else {
        (build_table_at(&args.source, &opts, serial)?, None)
    };
    log::info!("record table: {} names", table.len());
    let netlink = links::connect()?;
    if !args.no_local_interface {
        // Left in place at exit: the kernel answers on these addresses
        // while no daemon runs (`hsdns uninstall` removes them).
        let l = links::ensure_local(&netlink, &args.local_interface, &args.dns_addrs).await?;
        log::info!(
            "{} holds {:?}{}",
            l.name,
            args.dns_addrs,
            if l.created { " (created)" } else { "" }
        );
    }
    // The userspace server and HTTP start now, before the program is
    // loaded and the lists are in: a daemon still running beside this one
    // keeps its traffic until it stops (see server::listen).
    let metrics = Metrics::new(args.pin_dir.clone());
    let shared: SharedTable = Arc::new(RwLock::new(table));
    let mut frontend = Frontend::start(
        &args,
        live,
        shared.clone(),
        metrics.clone(),
        zone.zone.clone(),
    )
    .await?;
    // One daemon writes the pinned maps at a time: a running one is asked
    // to hand them over (the kernel answers throughout).
    let lock = PinLock::acquire(&args.pin_dir).await?;
    let plan = lifecycle::inspect(&args.pin_dir, &caps, &want)?;
    match &plan {
        Plan::Fresh => log::info!("nothing pinned in {}: fresh start", args.pin_dir.display()),
        Plan::Adopt(l) => log::info!(
            "adopting the maps pinned in {} (serial {}): the kernel keeps answering from them",
            args.pin_dir.display(),
            l.serial
        ),
        Plan::Replace(why) => log::info!(
            "the maps pinned in {} do not fit this daemon ({why}): new maps beside them, \
             switched to once complete",
            args.pin_dir.display()
        ),
    }
    if let Plan::Adopt(l) = &plan
        && l.serial != serial
    {
        // The previous owner upgraded its maps while this one waited.
        log::warn!(
            "the adopted SOA serial {} is not the table's {serial}: negative answers from the \
             kernel and from userspace differ in their serial until the next restart",
            l.serial
        );
    }
    let layout = Layout { serial, ..want };
    let map_dir = lifecycle::map_dir(&args.pin_dir, &plan)?;
    // The verifier takes about half a second on this program: it runs on
    // a blocking thread while the first lists stream in (their updates
    // wait in the source's index), not before them.
    let dir = map_dir.clone();
    let load = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let ebpf = loader::load_pinned(&caps, &dir)?;
        log::info!(
            "program loaded and verified in {} ms",
            t.elapsed().as_millis()
        );
        Ok::<_, anyhow::Error>(ebpf)
    });
    let start = Start {
        caps,
        plan,
        layout,
        map_dir,
        lock,
    };
    serve_with_maps(
        &args,
        start,
        shared,
        updates,
        &netlink,
        started,
        load,
        &metrics,
        &mut frontend,
    )
    .await
}

/// What `serve` decided before the program was loaded.
struct Start {
    caps: Capacities,
    plan: Plan,
    layout: Layout,
    map_dir: std::path::PathBuf,
    lock: PinLock,
}

/// Gives the SOA the serial of the table's latest change (see
/// [`Syncer::refresh_soa`]) and records it in the layout, which a daemon
/// adopting the maps takes its serial from. A refused write is counted and
/// tried again at the next change, never a reason to stop: the kernel keeps
/// the SOA bank it has. Returns when to call again.
fn refresh_soa(
    syncer: &mut Syncer<BpfMaps>,
    table: &mut RecordTable,
    layout: &mut Layout,
    metrics: &Metrics,
) -> Option<Instant> {
    let due = match syncer.refresh_soa(table, serial(), Instant::now()) {
        Ok(due) => due,
        Err(e) => {
            log::error!("writing the SOA: {e:#}");
            metrics.state.lock().expect("metrics lock").map_write_errors += 1;
            None
        }
    };
    if table.serial() != layout.serial {
        layout.serial = table.serial();
        if let Err(e) = syncer.backend_mut().write_layout(layout) {
            log::error!("recording the SOA serial in the layout: {e:#}");
            metrics.state.lock().expect("metrics lock").map_write_errors += 1;
        }
    }
    due
}

fn ns(d: std::time::Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

#[allow(clippy::too_many_arguments)]
async fn serve_with_maps(
    args: &RunArgs,
    start: Start,
    shared: SharedTable,
    mut updates: Option<tokio::sync::mpsc::Receiver<source::kube::Update>>,
    netlink: &rtnetlink::Handle,
    started: Instant,
    load: tokio::task::JoinHandle<Result<Ebpf>>,
    metrics: &Arc<Metrics>,
    frontend: &mut Frontend,
) -> Result<()> {
    let Start {
        caps,
        plan,
        layout,
        map_dir,
        lock,
    } = start;
    let mut lock = Some(lock);
    let mut ebpf = load.await.context("loading the program")??;
    let mut node = Node::start(
        &args.pin_dir,
        &plan,
        &map_dir,
        &mut ebpf,
        metrics.clone(),
        args.attach_mode,
    )?;
    let mut maps = BpfMaps::take(&mut ebpf)?;
    maps.set_stale_bounds(ns(args.stale_nxdomain_after), ns(args.stale_pass_after))?;
    let addrs: Vec<std::net::IpAddr> = args
        .dns_addrs
        .iter()
        .chain(&args.intercept_addrs)
        .copied()
        .collect();
    // Cluster DNS ClusterIPs a previous daemon discovered stay until this
    // one has discovered them again (see below); with nothing discovered,
    // the set is exactly the configured one.
    let discover = discovers_cluster_dns(args);
    maps.set_dns_addrs(&addrs, !discover)?;
    let adopt = matches!(plan, Plan::Adopt(_));
    let was = maps.config();
    if !adopt {
        maps.set_answering(false)?;
        maps.write_layout(&layout)?;
    }
    let mut syncer = Syncer::new(maps, &caps);
    syncer.set_nxdomain(!args.no_nxdomain);
    if adopt {
        let t = Instant::now();
        let st = syncer.adopt(was.nxdomain != 0, was.soa_bank)?;
        log::info!(
            "adopted {} names, answer slots in use {:?} ({} suspect references), in {} ms; \
             the kernel {}",
            st.names,
            st.slots,
            st.suspect,
            t.elapsed().as_millis(),
            if was.answering != 0 {
                "answers from them meanwhile"
            } else {
                "was not answering yet"
            }
        );
    } else {
        let soa = syncer.write_soa(&shared.read().unwrap_or_else(PoisonError::into_inner))?;
        log::info!("{soa} SOA entries written");
    }
    let stats = syncer.sync_new(&mut shared.write().unwrap_or_else(PoisonError::into_inner))?;
    log::info!(
        "maps synced: {} names, {} answers written, {} names taken over as they were ({stats:?})",
        syncer.names_installed(),
        stats.answers_written,
        stats.names_adopted,
    );

    // Subscribe before listing, so no interface slips in between.
    let mut events = if args.userspace_only {
        None
    } else {
        Some(Box::pin(links::monitor(args.link_events_rcvbuf)?))
    };
    let wanted = Wanted {
        explicit: args.interfaces.clone(),
        auto: !args.no_auto_attach && !args.userspace_only,
        selector: Selector {
            include: args.include.clone(),
            exclude: args.exclude.clone(),
        },
    };
    note_sync(metrics, &syncer, &stats);
    let all = links::list(netlink).await?;
    if !args.userspace_only {
        reconcile(&mut node, &all, &wanted, metrics);
    }
    for name in &args.interfaces {
        if !all.iter().any(|l| &l.name == name) {
            log::warn!("--interface {name}: no such interface yet; attaching when it appears");
            *metrics
                .state
                .lock()
                .expect("metrics lock")
                .attach_failures
                .entry(name.clone())
                .or_default() += 1;
        }
    }
    if node.attached() == 0 && !args.userspace_only {
        log::warn!("no interface matches yet; waiting for pod interfaces to appear");
    }
    let mut cluster_ips: Vec<std::net::IpAddr> = Vec::new();
    // The kernel answers once the maps hold the whole table (with the live
    // source, once its first complete list is in); adopted maps answer
    // all along.
    let mut synced = false;
    // What the first lists cost in writes (with adopted maps: only what
    // differs).
    let mut first = stats;
    // Where the first sync's time goes (logged with it): the program is
    // loaded and the maps open now; then table updates and map writes.
    let maps_open_ms = started.elapsed().as_millis();
    let (mut first_table, mut first_writes) =
        (std::time::Duration::ZERO, std::time::Duration::ZERO);
    // Returns what a burst of table work freed (see crate::heap).
    let mut trimmer = crate::heap::Trimmer::default();
    if updates.is_none() {
        become_synced(&mut syncer, &mut node, args, metrics);
        synced = true;
    } else if adopt && was.answering != 0 {
        mark_ready(args, metrics, "the kernel answers from the adopted maps");
    }
    log::info!(
        "kernel answers for {addrs:?} on {} interfaces{}",
        node.attached(),
        if synced {
            ""
        } else {
            " (once the maps are complete)"
        }
    );

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let bounds = [args.stale_nxdomain_after, args.stale_pass_after];
    let mut heartbeat = tokio::time::interval(lifecycle::heartbeat_interval(&bounds));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut takeover = tokio::time::interval(std::time::Duration::from_millis(100));
    // When the SOA's serial may next follow the table (see
    // Syncer::refresh_soa).
    let mut soa_due: Option<Instant> = None;
    let mut layout = layout;
    let handed_over = loop {
        tokio::select! {
            _ = term.recv() => break false,
            _ = int.recv() => break false,
            _ = tokio::time::sleep_until(soa_due.unwrap_or_else(Instant::now).into()), if soa_due.is_some() => {
                let mut table = shared.write().unwrap_or_else(PoisonError::into_inner);
                soa_due = refresh_soa(&mut syncer, &mut table, &mut layout, metrics);
            }
            Some(update) = async { updates.as_mut()?.recv().await }, if updates.is_some() => {
                let mut table = shared.write().unwrap_or_else(PoisonError::into_inner);
                let mut changes = Vec::new();
                let t = Instant::now();
                update.apply(&mut table, &mut changes);
                let n = changes.len();
                let t_table = t.elapsed();
                trimmer.note(n + update.objects());
                // A refused write passes its name up; it never stops the
                // daemon (the kernel keeps what it had).
                let stats = match syncer.apply(&mut table, changes) {
                    Ok(s) => s,
                    Err(e) => {
                        log::error!("syncing {n} changed names: {e:#}");
                        crate::maps::SyncStats { write_errors: 1, ..Default::default() }
                    }
                };
                if !synced {
                    first_table += t_table;
                    first_writes += t.elapsed() - t_table;
                }
                if table.is_complete() {
                    soa_due = refresh_soa(&mut syncer, &mut table, &mut layout, metrics);
                }
                let (names, complete) = (table.len(), table.is_complete());
                drop(table);
                note_sync(metrics, &syncer, &stats);
                log::debug!("synced {n} changed names of {names} ({stats:?})");
                if !synced {
                    first.names_written += stats.names_written;
                    first.names_removed += stats.names_removed;
                    first.names_adopted += stats.names_adopted;
                }
                if complete && !synced {
                    // With the figures an operator sizes the maps by.
                    log::info!(
                        "first lists synced: {names} names, {} ms after start; \
                         {} names in the maps, answer slots in use {:?}; \
                         {} names written, {} taken over as they were, {} removed; \
                         maps open at {maps_open_ms} ms, table updates {} ms, map writes {} ms",
                        started.elapsed().as_millis(),
                        syncer.names_installed(),
                        syncer.slots_in_use(),
                        first.names_written,
                        first.names_adopted,
                        first.names_removed,
                        first_table.as_millis(),
                        first_writes.as_millis(),
                    );
                    become_synced(&mut syncer, &mut node, args, metrics);
                    synced = true;
                }
            }
            Ok(()) = frontend.cluster_ips.changed() => {
                // The cluster DNS Service's ClusterIPs, answered by the
                // kernel in its place. A refused write leaves that address
                // to the userspace path (kube-proxy, CoreDNS): counted.
                let now = frontend.cluster_ips.borrow_and_update().clone();
                for ip in now.iter().filter(|ip| !cluster_ips.contains(ip)) {
                    match syncer.backend_mut().add_dns_addr(*ip) {
                        Ok(()) => log::info!("kernel answers for the cluster DNS ClusterIP {ip}"),
                        Err(e) => {
                            log::warn!("{e:#}");
                            metrics.state.lock().expect("metrics lock").map_write_errors += 1;
                        }
                    }
                }
                for ip in cluster_ips.iter().filter(|ip| !now.contains(ip)) {
                    if !addrs.contains(ip)
                        && let Err(e) = syncer.backend_mut().remove_dns_addr(*ip)
                    {
                        log::warn!("{e:#}");
                        metrics.state.lock().expect("metrics lock").map_write_errors += 1;
                    }
                }
                cluster_ips = now;
            }
            Some(ev) = async { events.as_mut()?.next().await }, if events.is_some() => {
                match ev {
                    LinkEvent::New(link) if wanted.matches(&link) => {
                        attach_or_warn(&mut node, &link, metrics);
                    }
                    LinkEvent::New(_) => {}
                    LinkEvent::Removed { index } => node.forget(index),
                    LinkEvent::Overrun => {
                        log::warn!("link notifications were lost (netlink overrun): listing again");
                        match links::list(netlink).await {
                            Ok(all) => reconcile(&mut node, &all, &wanted, metrics),
                            Err(e) => log::warn!("{e:#}"),
                        }
                    }
                }
            }
            _ = heartbeat.tick(), if synced => {
                trimmer.on_quiet();
                if let Err(e) = syncer.backend_mut().set_heartbeat(lifecycle::sys::boot_ns(), true) {
                    log::warn!("heartbeat: {e:#}");
                    metrics.state.lock().expect("metrics lock").map_write_errors += 1;
                }
            }
            _ = takeover.tick() => {
                if lock.as_ref().is_some_and(|l| l.takeover_requested()) {
                    break true;
                }
            }
        }
    };
    if handed_over {
        // A new daemon waits for the maps (an update that overlaps the two):
        // stop writing them and let it adopt them. The userspace server
        // goes on until this process is told to stop, then lame-ducks.
        log::info!("another hsdns asked for the maps: handing them over");
        drop(lock.take());
        // Its probes are about it now (it listens beside us, steered to).
        frontend.close_http().await;
        {
            let mut st = metrics.state.lock().expect("metrics lock");
            st.ready = false;
            st.table_synced = false;
        }
        if let Some(f) = &args.ready_file {
            let _ = fs::remove_file(f);
        }
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    // The kernel still answers while the userspace server hands over. And
    // after: stopping is not uninstalling. The program stays attached
    // through its pinned links and answers from the pinned maps until the
    // next daemon takes them over (or the heartbeat bounds say they are
    // too old).
    frontend.close_http().await;
    frontend.lame_duck().await;
    let c = syncer.backend().counters()?;
    log::info!("shutting down; the kernel keeps answering. Counters at exit: {c:?}");
    if let Some(f) = &args.ready_file {
        let _ = fs::remove_file(f);
    }
    drop(ebpf);
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
