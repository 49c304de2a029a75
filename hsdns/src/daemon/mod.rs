//! `hsdns run`: source -> record table -> maps -> attached program, until a
//! signal. This module wires the tasks together and owns the order of
//! start-up, readiness and shutdown; each task does one job with the
//! settings it uses (see `settings`):
//!
//! - `attach`: the program and its pins, and which interfaces have it;
//! - `sync`: the record source, the table, and the maps that hold it;
//! - `serve`: the userspace server, HTTP, and the cluster DNS discovery;
//! - [`table`]: the record table as the command line describes it (also
//!   `hsdns records`).

mod attach;
mod serve;
mod settings;
mod sync;
pub mod table;

use std::{
    fs,
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::{cli::RunArgs, lifecycle, links, metrics::Metrics, records::SharedTable};
use attach::{Attacher, Pins};
use serve::Frontend;
use settings::Settings;
use sync::Sync;

pub fn run(args: RunArgs) -> Result<()> {
    if args.interfaces.is_empty() && args.no_auto_attach && !args.userspace_only {
        bail!("nothing to attach to: give --interface, or drop --no-auto-attach");
    }
    let live = args.live_source();
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
    let settings = Settings::from(&args);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(settings, Instant::now()))
}

/// This process's readiness: the metrics' flag (read by /readyz) and the
/// `--ready-file`.
struct Readiness {
    file: Option<PathBuf>,
    metrics: Arc<Metrics>,
}

impl Readiness {
    /// Signals readiness (once).
    fn mark(&self, why: &str) {
        let mut st = self.metrics.state.lock().expect("metrics lock");
        if st.ready {
            return;
        }
        st.ready = true;
        drop(st);
        if let Some(f) = &self.file
            && let Err(e) = fs::write(f, b"ready\n")
        {
            log::error!("writing {}: {e}", f.display());
        }
        log::info!("ready ({why})");
    }

    /// Handed over: the maps are the successor's now.
    fn withdraw(&self) {
        {
            let mut st = self.metrics.state.lock().expect("metrics lock");
            st.ready = false;
            st.table_synced = false;
        }
        self.remove_file();
    }

    fn remove_file(&self) {
        if let Some(f) = &self.file {
            let _ = fs::remove_file(f);
        }
    }
}

/// The table is complete in the maps: the kernel answers from them, the
/// heartbeat starts, and a blue/green upgrade switches over. Nothing here
/// stops the daemon: a refused config write is retried by the next
/// heartbeat (which writes `answering` too), a failed switch leaves the
/// old program answering where it still is.
fn become_synced(sync: &mut Sync, attacher: &mut Attacher, ready: &Readiness) {
    sync.answer();
    attacher.finish_upgrade();
    sync.mark_synced();
    ready.mark("the maps hold the whole table");
}

async fn serve(s: Settings, started: Instant) -> Result<()> {
    let Settings {
        attach: attach_cfg,
        sync: sync_cfg,
        serve: serve_cfg,
        ready_file,
        intercepts_cluster_ips,
    } = s;
    attach::mount_bpffs(&attach_cfg)?;
    let zone = table::zone_config(&sync_cfg.source)?;
    let want = lifecycle::layout(&attach_cfg.caps, &zone, table::serial())?;
    let serial = attach::serial_to_keep(&attach_cfg, &want);
    // Whether pods' packets to a ClusterIP can reach the kernel path.
    crate::cni::log_socket_lb(intercepts_cluster_ips);
    let (table, mut updates) = sync::open_source(&sync_cfg, &zone, serial).await?;
    let netlink = links::connect()?;
    attach::hold_local_addrs(&netlink, &attach_cfg).await?;
    // The userspace server and HTTP start now, before the program is
    // loaded and the lists are in: a daemon still running beside this one
    // keeps its traffic until it stops (see server::listen).
    let metrics = Metrics::new(attach_cfg.pin_dir.clone());
    let ready = Readiness {
        file: ready_file,
        metrics: metrics.clone(),
    };
    let shared: SharedTable = Arc::new(RwLock::new(table));
    let mut frontend = Frontend::start(
        &serve_cfg,
        shared.clone(),
        metrics.clone(),
        zone.zone.clone(),
    )
    .await?;
    let mut pins = Pins::take(&attach_cfg, want, serial).await?;
    let load = attach::load(&attach_cfg, &pins);

    let mut ebpf = load.await.context("loading the program")??;
    let caps = attach_cfg.caps;
    let mut attacher = Attacher::start(attach_cfg, &pins, &mut ebpf, netlink, metrics.clone())?;
    let mut sync = Sync::open(
        &sync_cfg,
        &mut ebpf,
        &pins,
        &caps,
        shared,
        metrics.clone(),
        started,
    )?;
    attacher.attach_wanted().await?;
    sync.maps_open();
    // The kernel answers once the maps hold the whole table (with the live
    // source, once its first complete list is in); adopted maps answer
    // all along.
    if updates.is_none() {
        become_synced(&mut sync, &mut attacher, &ready);
    } else if sync.adopted_answering() {
        ready.mark("the kernel answers from the adopted maps");
    }
    log::info!(
        "kernel answers for {:?} on {} interfaces{}",
        sync.kernel_addrs(),
        attacher.attached(),
        if sync.synced() {
            ""
        } else {
            " (once the maps are complete)"
        }
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut heartbeat = tokio::time::interval(sync.heartbeat_interval());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut takeover = tokio::time::interval(std::time::Duration::from_millis(100));
    let handed_over = loop {
        tokio::select! {
            _ = term.recv() => break false,
            _ = int.recv() => break false,
            _ = tokio::time::sleep_until(sync.soa_due().unwrap_or_else(Instant::now).into()), if sync.soa_due().is_some() => {
                sync.refresh_soa();
            }
            Some(update) = async { updates.as_mut()?.recv().await }, if updates.is_some() => {
                if sync.apply(update) {
                    become_synced(&mut sync, &mut attacher, &ready);
                }
            }
            Ok(()) = frontend.cluster_ips.changed() => {
                sync.set_cluster_ips(frontend.cluster_ips.borrow_and_update().clone());
            }
            Some(ev) = attacher.next_event(), if attacher.listening() => {
                attacher.on_event(ev).await;
            }
            _ = heartbeat.tick(), if sync.synced() => sync.heartbeat(),
            _ = takeover.tick() => {
                if pins.takeover_requested() {
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
        pins.release();
        // Its probes are about it now (it listens beside us, steered to).
        frontend.close_http().await;
        ready.withdraw();
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
    let c = sync.counters()?;
    log::info!("shutting down; the kernel keeps answering. Counters at exit: {c:?}");
    ready.remove_file();
    // As before the split: the program, then the maps and the links, then
    // the pin lock (the next daemon may take the maps from here), then
    // what faces clients.
    drop(ebpf);
    drop(sync);
    drop(attacher);
    drop(pins);
    drop(frontend);
    Ok(())
}
