//! The attach task: the program and its pins, and which interfaces have it.
//!
//! Before the program is loaded: the BPF filesystem, the node-local
//! addresses, the pin lock and the plan for what is pinned (fresh, adopt,
//! or blue/green beside it, see `lifecycle`). Then the program is pinned,
//! and once the maps hold the first sync, the wanted interfaces get it (at
//! start, as links appear, and again after lost link notifications).

use std::{collections::HashSet, net::IpAddr, path::PathBuf, pin::Pin, sync::Arc, time::Instant};

use anyhow::Result;
use aya::Ebpf;
use futures::{Stream, StreamExt as _};
use hsdns_common::Layout;

use crate::{
    hook::AttachMode,
    lifecycle::{self, Node, Plan, bpffs::PinLock},
    links::{self, Link, LinkEvent, Selector},
    loader::{self, Capacities},
    metrics::Metrics,
};

/// What the attach task reads of the command line.
pub struct AttachSettings {
    pub pin_dir: PathBuf,
    pub caps: Capacities,
    pub mode: AttachMode,
    /// Attach nowhere: the userspace server alone answers.
    pub userspace_only: bool,
    pub wanted: Wanted,
    /// The link event socket's receive buffer (the kernel's default: None).
    pub link_events_rcvbuf: Option<usize>,
    /// The interface that holds the node-local addresses, and those
    /// addresses; None when something else manages them.
    pub local: Option<(String, Vec<IpAddr>)>,
}

/// Which interfaces get the program.
pub struct Wanted {
    /// `--interface`: attached whatever the selection says.
    pub explicit: Vec<String>,
    /// The automatic selection is on.
    pub auto: bool,
    pub selector: Selector,
}

impl Wanted {
    fn matches(&self, link: &Link) -> bool {
        self.explicit.contains(&link.name) || (self.auto && self.selector.matches(link))
    }
}

/// Mounts the BPF filesystem under the pin directory if none is.
pub fn mount_bpffs(s: &AttachSettings) -> Result<()> {
    if let Some(root) = lifecycle::bpffs::ensure_mounted(&s.pin_dir)? {
        log::info!(
            "pins go to {} on the BPF filesystem mounted at {}",
            s.pin_dir.display(),
            root.display()
        );
    }
    Ok(())
}

/// The SOA serial of the maps this daemon will adopt, or `want`'s.
///
/// Maps this daemon will adopt keep their SOA serial: the kernel's
/// negative answers and the userspace server's stay equal byte for byte.
/// Read before the lock (the table and the listener come before waiting for
/// a running daemon to hand over); a daemon that still owns the maps does
/// not change it.
pub fn serial_to_keep(s: &AttachSettings, want: &Layout) -> u32 {
    match lifecycle::inspect(&s.pin_dir, &s.caps, want) {
        Ok(Plan::Adopt(l)) => l.serial,
        _ => want.serial,
    }
}

/// Puts the node-local addresses on their interface (created if absent).
/// Left in place at exit: the kernel answers on these addresses while no
/// daemon runs (`hsdns uninstall` removes them).
pub async fn hold_local_addrs(netlink: &rtnetlink::Handle, s: &AttachSettings) -> Result<()> {
    if let Some((name, addrs)) = &s.local {
        let l = links::ensure_local(netlink, name, addrs).await?;
        log::info!(
            "{} holds {:?}{}",
            l.name,
            addrs,
            if l.created { " (created)" } else { "" }
        );
    }
    Ok(())
}

/// The pinned state this daemon writes: the lock on it, what to do with
/// what was pinned, the layout record, and where the program's maps go.
pub struct Pins {
    pub plan: Plan,
    pub layout: Layout,
    pub map_dir: PathBuf,
    lock: Option<PinLock>,
}

impl Pins {
    /// One daemon writes the pinned maps at a time: a running one is asked
    /// to hand them over (the kernel answers throughout). Then decides, from
    /// what is pinned, how to start; `serial` is the table's.
    pub async fn take(s: &AttachSettings, want: Layout, serial: u32) -> Result<Pins> {
        let lock = PinLock::acquire(&s.pin_dir).await?;
        let plan = lifecycle::inspect(&s.pin_dir, &s.caps, &want)?;
        match &plan {
            Plan::Fresh => log::info!("nothing pinned in {}: fresh start", s.pin_dir.display()),
            Plan::Adopt(l) => log::info!(
                "adopting the maps pinned in {} (serial {}): the kernel keeps answering from them",
                s.pin_dir.display(),
                l.serial
            ),
            Plan::Replace(why) => log::info!(
                "the maps pinned in {} do not fit this daemon ({why}): new maps beside them, \
                 switched to once complete",
                s.pin_dir.display()
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
        let map_dir = lifecycle::map_dir(&s.pin_dir, &plan)?;
        Ok(Pins {
            plan,
            layout,
            map_dir,
            lock: Some(lock),
        })
    }

    /// The maps were adopted as they are (not new ones).
    pub fn adopted(&self) -> bool {
        matches!(self.plan, Plan::Adopt(_))
    }

    /// A newer daemon waits for the pinned state.
    pub fn takeover_requested(&self) -> bool {
        self.lock.as_ref().is_some_and(|l| l.takeover_requested())
    }

    /// Lets the waiting daemon have the pinned state.
    pub fn release(&mut self) {
        drop(self.lock.take());
    }
}

/// Loads the program with its maps pinned in `pins.map_dir`. Object, maps
/// and both entry points' verification take tens of milliseconds (about 40
/// on an idle core here, more on a busy node): it runs on a blocking thread
/// while the first lists stream in (their updates wait in the source's
/// index), not before them.
pub fn load(s: &AttachSettings, pins: &Pins) -> tokio::task::JoinHandle<Result<Ebpf>> {
    let (caps, dir) = (s.caps, pins.map_dir.clone());
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let ebpf = loader::load_pinned(&caps, &dir)?;
        log::info!(
            "program loaded and verified in {} ms",
            t.elapsed().as_millis()
        );
        Ok::<_, anyhow::Error>(ebpf)
    })
}

/// The program on this node's interfaces, as one daemon runs it.
pub struct Attacher {
    node: Node,
    wanted: Wanted,
    userspace_only: bool,
    rcvbuf: Option<usize>,
    /// Link notifications, once subscribed (never with --userspace-only).
    events: Option<Pin<Box<dyn Stream<Item = LinkEvent>>>>,
    netlink: rtnetlink::Handle,
    metrics: Arc<Metrics>,
}

impl Attacher {
    /// Pins the loaded program beside its maps and finds the pinned links
    /// (see [`Node::start`]). Nothing is attached yet.
    pub fn start(
        s: AttachSettings,
        pins: &Pins,
        ebpf: &mut Ebpf,
        netlink: rtnetlink::Handle,
        metrics: Arc<Metrics>,
    ) -> Result<Attacher> {
        let node = Node::start(
            &s.pin_dir,
            &pins.plan,
            &pins.map_dir,
            ebpf,
            metrics.clone(),
            s.mode,
        )?;
        Ok(Attacher {
            node,
            wanted: s.wanted,
            userspace_only: s.userspace_only,
            rcvbuf: s.link_events_rcvbuf,
            events: None,
            netlink,
            metrics,
        })
    }

    /// Attaches to the wanted interfaces there are, and follows the ones
    /// that come and go from now on.
    pub async fn attach_wanted(&mut self) -> Result<()> {
        // Subscribe before listing, so no interface slips in between.
        if !self.userspace_only {
            self.events = Some(Box::pin(links::monitor(self.rcvbuf)?));
        }
        let all = links::list(&self.netlink).await?;
        if !self.userspace_only {
            self.reconcile(&all);
        }
        for name in &self.wanted.explicit {
            if !all.iter().any(|l| &l.name == name) {
                log::warn!("--interface {name}: no such interface yet; attaching when it appears");
                count_failure(&self.metrics, name.clone());
            }
        }
        if self.node.attached() == 0 && !self.userspace_only {
            log::warn!("no interface matches yet; waiting for pod interfaces to appear");
        }
        Ok(())
    }

    /// Interfaces with the program.
    pub fn attached(&self) -> usize {
        self.node.attached()
    }

    /// The next link notification (never, before [`Self::attach_wanted`]
    /// or with --userspace-only).
    pub async fn next_event(&mut self) -> Option<LinkEvent> {
        self.events.as_mut()?.next().await
    }

    pub fn listening(&self) -> bool {
        self.events.is_some()
    }

    pub async fn on_event(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::New(link) if self.wanted.matches(&link) => {
                attach_or_warn(&mut self.node, &link, &self.metrics);
            }
            LinkEvent::New(_) => {}
            LinkEvent::Removed { index } => self.node.forget(index),
            LinkEvent::Overrun => {
                log::warn!("link notifications were lost (netlink overrun): listing again");
                match links::list(&self.netlink).await {
                    Ok(all) => self.reconcile(&all),
                    Err(e) => log::warn!("{e:#}"),
                }
            }
        }
    }

    /// Blue/green, once the new maps hold the complete table: every link
    /// to the new program. A failed switch leaves the old program answering
    /// where it still is.
    pub fn finish_upgrade(&mut self) {
        if !self.node.switch_pending() {
            return;
        }
        match self.node.switch() {
            Ok(refused) => {
                for iface in refused {
                    count_failure(&self.metrics, iface);
                }
            }
            Err(e) => log::error!("finishing the upgrade: {e:#}"),
        }
    }

    /// Brings the attachments to the interfaces `all` (a full list): the
    /// wanted ones get the program, pinned links of others go.
    fn reconcile(&mut self, all: &[Link]) {
        let keep: HashSet<u32> = all
            .iter()
            .filter(|l| self.wanted.matches(l))
            .map(|l| l.index)
            .collect();
        self.node.detach_unless(|i| keep.contains(&i));
        for link in all.iter().filter(|l| self.wanted.matches(l)) {
            attach_or_warn(&mut self.node, link, &self.metrics);
        }
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
        count_failure(metrics, link.name.clone());
    }
}

fn count_failure(metrics: &Metrics, iface: String) {
    *metrics
        .state
        .lock()
        .expect("metrics lock")
        .attach_failures
        .entry(iface)
        .or_default() += 1;
}
