//! Which hook an interface gets, and attaching the tc one.
//!
//! Pod veths get the tc ingress program: on a veth, generic XDP can grow a
//! reply only by the sender's tailroom (about 59 bytes: three A records),
//! while tc grows the skb to any size (`bpf_skb_change_tail`) and hands
//! the reply straight to the pod (`bpf_redirect_peer`, no backlog queue).
//! Driver-mode XDP stays for interfaces whose driver delivers XDP_TX by
//! itself (`--interface` uplinks); both hooks run the same code.
//!
//! The daemon attaches tc through tcx (Linux 6.6 and later): a BPF link,
//! which can be pinned to outlive the daemon and moved to a new program in
//! one step (BPF_LINK_UPDATE), like the XDP links; without tcx it puts XDP
//! on veths too (`lifecycle::attach`). [`attach_tc`] falls back to a clsact
//! qdisc and a direct-action filter (netlink; not a BPF link) for the
//! benchmarks. Either way the program goes after the programs already
//! there (the CNI's), so network policy still sees DNS first; for
//! everything it does not answer it returns "next" (TC_ACT_UNSPEC), so the
//! programs after it run as they would without it.

use anyhow::{Context as _, Result, anyhow};
use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions},
};

use crate::loader::ModeChoice;

/// `--attach-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// tc on veths; XDP elsewhere, in driver mode where it delivers
    /// replies, skb mode otherwise.
    Auto,
    /// tc ingress everywhere (veths only: the reply goes through the
    /// veth's peer).
    Tc,
    /// XDP everywhere, driver mode where the interface takes it.
    Xdp,
    /// XDP in driver mode only.
    Driver,
    /// XDP in skb (generic) mode only.
    Skb,
}

/// The hook an interface gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Tc,
    Xdp(ModeChoice),
}

/// The hook for an interface whose kernel driver is `driver`.
pub fn choose(mode: AttachMode, driver: &str) -> Result<Hook> {
    let veth = driver == "veth";
    Ok(match mode {
        AttachMode::Auto if veth => Hook::Tc,
        AttachMode::Auto | AttachMode::Xdp => Hook::Xdp(ModeChoice::Auto),
        AttachMode::Tc if veth => Hook::Tc,
        AttachMode::Tc => {
            return Err(anyhow!(
                "--attach-mode tc answers through a veth's peer; this is a {} interface \
                 (use xdp)",
                if driver.is_empty() {
                    "non-veth"
                } else {
                    driver
                }
            ));
        }
        AttachMode::Driver => Hook::Xdp(ModeChoice::Driver),
        AttachMode::Skb => Hook::Xdp(ModeChoice::Skb),
    })
}

/// How the tc program was attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcMode {
    /// A tcx BPF link (Linux 6.6 and later): pinnable, updatable in place.
    Tcx,
    /// A clsact qdisc with a direct-action filter (netlink).
    Clsact,
}

impl TcMode {
    /// The `mode` label of the attach metrics.
    pub fn label(self) -> &'static str {
        match self {
            TcMode::Tcx => "tcx",
            TcMode::Clsact => "clsact",
        }
    }
}

/// Whether this kernel has tcx (Linux 6.6 and later): tc attachments as
/// BPF links, which can be pinned to outlive the daemon and updated in
/// place. Without it the daemon uses XDP on veths too (see
/// `lifecycle::attach`): a clsact filter cannot be pinned, so it would go
/// with the daemon.
pub fn tcx_available() -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0))
}

/// Attaches the tc program to `iface`'s ingress as a tcx link, after the
/// programs already there. The link id gives a link (`prog.take_link`)
/// that converts into an `FdLink` to pin.
pub fn attach_tcx(prog: &mut SchedClassifier, iface: &str) -> Result<SchedClassifierLinkId> {
    let id = prog
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .with_context(|| format!("attaching to {iface} at tc ingress (tcx)"))?;
    log::info!("attached to {iface} at tc ingress (tcx link)");
    Ok(id)
}

/// Attaches the tc program to `iface`'s ingress, after what is there:
/// tcx, or a clsact filter where there is none (benchmarks; the daemon
/// uses [`attach_tcx`]). The link id gives a link (`prog.take_link`) that
/// converts into an `FdLink` to pin when the mode is tcx.
pub fn attach_tc(
    prog: &mut SchedClassifier,
    iface: &str,
) -> Result<(TcMode, SchedClassifierLinkId)> {
    let tcx_err = match attach_tcx(prog, iface) {
        Ok(id) => return Ok((TcMode::Tcx, id)),
        Err(e) => e,
    };
    log::info!("{iface}: no tcx ({tcx_err:#}); using a clsact qdisc");
    // EEXIST: the qdisc is there already (a CNI's, or ours from before).
    if let Err(e) = tc::qdisc_add_clsact(iface) {
        let exists = matches!(&e, tc::TcError::NetlinkError(n)
            if n.raw_os_error() == Some(libc::EEXIST));
        if !exists {
            return Err(anyhow!(e)).with_context(|| format!("adding a clsact qdisc to {iface}"));
        }
    }
    let id = prog
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::Netlink(NlOptions::default()),
        )
        .with_context(|| format!("attaching to {iface} at tc ingress (tcx: {tcx_err:#})"))?;
    log::info!("attached to {iface} at tc ingress (clsact)");
    Ok((TcMode::Clsact, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veths_get_tc_and_other_interfaces_xdp() {
        assert_eq!(choose(AttachMode::Auto, "veth").unwrap(), Hook::Tc);
        assert_eq!(
            choose(AttachMode::Auto, "mlx5_core").unwrap(),
            Hook::Xdp(ModeChoice::Auto)
        );
        assert_eq!(
            choose(AttachMode::Auto, "").unwrap(),
            Hook::Xdp(ModeChoice::Auto)
        );
        assert_eq!(
            choose(AttachMode::Xdp, "veth").unwrap(),
            Hook::Xdp(ModeChoice::Auto)
        );
        assert_eq!(
            choose(AttachMode::Skb, "veth").unwrap(),
            Hook::Xdp(ModeChoice::Skb)
        );
        assert_eq!(
            choose(AttachMode::Driver, "ixgbe").unwrap(),
            Hook::Xdp(ModeChoice::Driver)
        );
        assert_eq!(choose(AttachMode::Tc, "veth").unwrap(), Hook::Tc);
        let e = choose(AttachMode::Tc, "ixgbe").unwrap_err().to_string();
        assert!(e.contains("veth") && e.contains("ixgbe"), "{e}");
    }
}
