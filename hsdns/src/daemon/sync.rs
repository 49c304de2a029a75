//! The sync task: source -> record table -> maps. The first sync (of the
//! manifests, or of adopted maps with what differs), the live source's
//! updates as they come, the SOA serial that follows the table, the
//! heartbeat, and the cluster DNS ClusterIPs the kernel answers for.
//! Readiness and the upgrade switch are the caller's (see `super`): this
//! task says when the maps hold the whole table.

use std::{
    net::IpAddr,
    sync::{Arc, PoisonError},
    time::{Duration, Instant},
};

use anyhow::Result;
use aya::Ebpf;
use hsdns_common::Layout;
use tokio::sync::mpsc;

use super::{attach::Pins, table};
use crate::{
    cli::SourceArgs,
    heap::Trimmer,
    lifecycle,
    loader::Capacities,
    maps::{SyncStats, Syncer, bpf::BpfMaps},
    metrics::Metrics,
    records::{PodMode, RecordTable, SharedTable, TableOptions, ZoneConfig},
    source::{self, kube::Update},
};

/// What the sync task reads of the command line.
pub struct SyncSettings {
    /// Where the records come from, and the zone.
    pub source: SourceArgs,
    /// The records come from the API (not manifests).
    pub live: bool,
    pub opts: TableOptions,
    /// The kernel answers NXDOMAIN for names that provably do not exist.
    pub nxdomain: bool,
    /// `--stale-nxdomain-after`, `--stale-pass-after`.
    pub stale_bounds: [Duration; 2],
    /// The addresses the kernel answers for: the node-local ones and the
    /// intercepted ones.
    pub kernel_addrs: Vec<IpAddr>,
    /// The cluster DNS Service is discovered, and the kernel answers its
    /// ClusterIPs.
    pub discover_cluster_dns: bool,
}

/// The updates of the live source.
pub type Updates = mpsc::Receiver<Update>;

/// The record table to start from, and with the live source its updates.
/// The live table is incomplete until the first lists are in: nothing is
/// answered from it before.
pub async fn open_source(
    s: &SyncSettings,
    zone: &ZoneConfig,
    serial: u32,
) -> Result<(RecordTable, Option<Updates>)> {
    let (table, updates) = if s.live {
        let client = source::kube::client(s.source.kubeconfig.as_deref()).await?;
        // Capacity 1: changes made while a batch is being synced wait in
        // the source's dirty set and go out together.
        let (tx, rx) = mpsc::channel(1);
        let watch = source::kube::WatchOptions {
            endpoint_pod_names: s.source.endpoint_pod_names,
            pods: s.source.pods == PodMode::Verified,
        };
        tokio::spawn(source::kube::watch(client, tx, watch));
        (RecordTable::new_with(zone, &s.opts, serial), Some(rx))
    } else {
        (table::build_table_at(&s.source, &s.opts, serial)?, None)
    };
    log::info!("record table: {} names", table.len());
    Ok((table, updates))
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// The table in the maps, kept in step.
pub struct Sync {
    syncer: Syncer<BpfMaps>,
    table: SharedTable,
    /// The layout record, whose serial follows the table's.
    layout: Layout,
    metrics: Arc<Metrics>,
    kernel_addrs: Vec<IpAddr>,
    /// The cluster DNS ClusterIPs the kernel answers for (see
    /// [`Self::set_cluster_ips`]).
    cluster_ips: Vec<IpAddr>,
    stale_bounds: [Duration; 2],
    /// The maps hold the whole table (with the live source, once its first
    /// complete list is in).
    synced: bool,
    /// The kernel was answering from the adopted maps when they were taken.
    adopted_answering: bool,
    /// When the SOA's serial may next follow the table (see
    /// [`Syncer::refresh_soa`]).
    soa_due: Option<Instant>,
    first: FirstSync,
    /// Returns what a burst of table work freed (see crate::heap).
    trimmer: Trimmer,
}

/// What the first lists cost in writes (with adopted maps: only what
/// differs), and where their time goes (logged with it): the program is
/// loaded and the maps open at `maps_open`; then table updates and map
/// writes.
struct FirstSync {
    stats: SyncStats,
    started: Instant,
    maps_open: Duration,
    table: Duration,
    writes: Duration,
}

impl Sync {
    /// Takes the maps out of the loaded program and makes them hold the
    /// table: the kernel's settings, the SOA (or what adopted maps hold),
    /// then every name. Fresh maps do not answer until [`Self::answer`].
    pub fn open(
        s: &SyncSettings,
        ebpf: &mut Ebpf,
        pins: &Pins,
        caps: &Capacities,
        table: SharedTable,
        metrics: Arc<Metrics>,
        started: Instant,
    ) -> Result<Sync> {
        let mut maps = BpfMaps::take(ebpf)?;
        let [nxdomain_after, pass_after] = s.stale_bounds;
        maps.set_stale_bounds(ns(nxdomain_after), ns(pass_after))?;
        // Cluster DNS ClusterIPs a previous daemon discovered stay until
        // this one has discovered them again (see `set_cluster_ips`); with
        // nothing discovered, the set is exactly the configured one.
        maps.set_dns_addrs(&s.kernel_addrs, !s.discover_cluster_dns)?;
        let adopt = pins.adopted();
        let was = maps.config();
        if !adopt {
            maps.set_answering(false)?;
            maps.write_layout(&pins.layout)?;
        }
        let mut syncer = Syncer::new(maps, caps);
        syncer.set_nxdomain(s.nxdomain);
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
            let soa = syncer.write_soa(&table.read().unwrap_or_else(PoisonError::into_inner))?;
            log::info!("{soa} SOA entries written");
        }
        let stats = syncer.sync_new(&mut table.write().unwrap_or_else(PoisonError::into_inner))?;
        log::info!(
            "maps synced: {} names, {} answers written, {} names taken over as they were ({stats:?})",
            syncer.names_installed(),
            stats.answers_written,
            stats.names_adopted,
        );
        let me = Sync {
            syncer,
            table,
            layout: pins.layout,
            metrics,
            kernel_addrs: s.kernel_addrs.clone(),
            cluster_ips: Vec::new(),
            stale_bounds: s.stale_bounds,
            synced: false,
            adopted_answering: adopt && was.answering != 0,
            soa_due: None,
            first: FirstSync {
                stats,
                started,
                maps_open: Duration::ZERO,
                table: Duration::ZERO,
                writes: Duration::ZERO,
            },
            trimmer: Trimmer::default(),
        };
        me.note(&stats);
        Ok(me)
    }

    /// From now on the first sync's time is table updates and map writes
    /// (logged with it).
    pub fn maps_open(&mut self) {
        self.first.maps_open = self.first.started.elapsed();
    }

    /// The addresses the kernel answers for (without discovered ones).
    pub fn kernel_addrs(&self) -> &[IpAddr] {
        &self.kernel_addrs
    }

    /// The maps were adopted while the kernel answered from them.
    pub fn adopted_answering(&self) -> bool {
        self.adopted_answering
    }

    /// The maps hold the whole table.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// When the SOA's serial may next follow the table.
    pub fn soa_due(&self) -> Option<Instant> {
        self.soa_due
    }

    /// How often the heartbeat is written (see
    /// [`lifecycle::heartbeat_interval`]).
    pub fn heartbeat_interval(&self) -> Duration {
        lifecycle::heartbeat_interval(&self.stale_bounds)
    }

    /// Records a sync's outcome for the metrics.
    fn note(&self, stats: &SyncStats) {
        let mut st = self.metrics.state.lock().expect("metrics lock");
        st.names_installed = self.syncer.names_installed() as u64;
        st.nxdomain_active = self.syncer.nxdomain_active();
        st.names_full = stats.names_full as u64;
        st.answers_full = stats.answers_full as u64;
        st.map_write_errors += stats.write_errors as u64;
        st.syncs += 1;
    }

    fn write_error(&self) {
        self.metrics
            .state
            .lock()
            .expect("metrics lock")
            .map_write_errors += 1;
    }

    /// Applies one update of the live source to the table and the maps.
    /// Returns true when this update completed the first lists: the maps
    /// hold the whole table now.
    pub fn apply(&mut self, update: Update) -> bool {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        let mut changes = Vec::new();
        let t = Instant::now();
        update.apply(&mut table, &mut changes);
        let n = changes.len();
        let t_table = t.elapsed();
        self.trimmer.note(n + update.objects());
        // A refused write passes its name up; it never stops the daemon
        // (the kernel keeps what it had).
        let stats = match self.syncer.apply(&mut table, changes) {
            Ok(s) => s,
            Err(e) => {
                log::error!("syncing {n} changed names: {e:#}");
                SyncStats {
                    write_errors: 1,
                    ..Default::default()
                }
            }
        };
        if !self.synced {
            self.first.table += t_table;
            self.first.writes += t.elapsed() - t_table;
        }
        if table.is_complete() {
            self.soa_due = refresh_soa(
                &mut self.syncer,
                &mut table,
                &mut self.layout,
                &self.metrics,
            );
        }
        let (names, complete) = (table.len(), table.is_complete());
        drop(table);
        self.note(&stats);
        log::debug!("synced {n} changed names of {names} ({stats:?})");
        if self.synced {
            return false;
        }
        let first = &mut self.first;
        first.stats.names_written += stats.names_written;
        first.stats.names_removed += stats.names_removed;
        first.stats.names_adopted += stats.names_adopted;
        if !complete {
            return false;
        }
        // With the figures an operator sizes the maps by.
        log::info!(
            "first lists synced: {names} names, {} ms after start; \
             {} names in the maps, answer slots in use {:?}; \
             {} names written, {} taken over as they were, {} removed; \
             maps open at {} ms, table updates {} ms, map writes {} ms",
            first.started.elapsed().as_millis(),
            self.syncer.names_installed(),
            self.syncer.slots_in_use(),
            first.stats.names_written,
            first.stats.names_adopted,
            first.stats.names_removed,
            first.maps_open.as_millis(),
            first.table.as_millis(),
            first.writes.as_millis(),
        );
        true
    }

    /// The SOA follows the table's latest change, when due.
    pub fn refresh_soa(&mut self) {
        let mut table = self.table.write().unwrap_or_else(PoisonError::into_inner);
        self.soa_due = refresh_soa(
            &mut self.syncer,
            &mut table,
            &mut self.layout,
            &self.metrics,
        );
    }

    /// The table is complete in the maps: the kernel answers from them
    /// (the heartbeat writes `answering` too, so a refused write here is
    /// retried by the next one).
    pub fn answer(&mut self) {
        if let Err(e) = self
            .syncer
            .backend_mut()
            .set_heartbeat(lifecycle::sys::boot_ns(), true)
        {
            log::error!("turning answering on: {e:#}");
            self.write_error();
        }
    }

    /// Marks the table complete in the maps (for the metrics and the
    /// heartbeat).
    pub fn mark_synced(&mut self) {
        self.metrics
            .state
            .lock()
            .expect("metrics lock")
            .table_synced = true;
        self.synced = true;
    }

    /// Confirms the maps to the kernel (see `hsdns_common::Config`), and
    /// returns what the last burst of table work freed.
    pub fn heartbeat(&mut self) {
        self.trimmer.on_quiet();
        if let Err(e) = self
            .syncer
            .backend_mut()
            .set_heartbeat(lifecycle::sys::boot_ns(), true)
        {
            log::warn!("heartbeat: {e:#}");
            self.write_error();
        }
    }

    /// The cluster DNS Service's ClusterIPs, answered by the kernel in its
    /// place. A refused write leaves that address to the userspace path
    /// (kube-proxy, CoreDNS): counted.
    pub fn set_cluster_ips(&mut self, now: Vec<IpAddr>) {
        for ip in now.iter().filter(|ip| !self.cluster_ips.contains(ip)) {
            match self.syncer.backend_mut().add_dns_addr(*ip) {
                Ok(()) => log::info!("kernel answers for the cluster DNS ClusterIP {ip}"),
                Err(e) => {
                    log::warn!("{e:#}");
                    self.write_error();
                }
            }
        }
        for ip in self.cluster_ips.iter().filter(|ip| !now.contains(ip)) {
            if !self.kernel_addrs.contains(ip)
                && let Err(e) = self.syncer.backend_mut().remove_dns_addr(*ip)
            {
                log::warn!("{e:#}");
                self.write_error();
            }
        }
        self.cluster_ips = now;
    }

    /// The kernel's counters, summed over CPUs.
    pub fn counters(&self) -> Result<hsdns_common::Counters> {
        self.syncer.backend().counters()
    }
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
    let due = match syncer.refresh_soa(table, table::serial(), Instant::now()) {
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
