//! Network interfaces over rtnetlink: which ones get the XDP program (pod
//! veths, found at start and as they appear), and the dummy interface that
//! holds the node-local address.

use std::net::IpAddr;

use anyhow::{Context as _, Result, bail};
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use rtnetlink::{
    Handle, LinkDummy, LinkUnspec,
    packet_core::NetlinkPayload,
    packet_route::{
        RouteNetlinkMessage,
        link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, LinkXdp, XdpAttached},
    },
    sys::{AsyncSocket as _, SocketAddr},
};

/// Which interfaces get the program.
///
/// Pod traffic enters the node through the host end of each pod's veth, so
/// the default is every veth of the host namespace. CNIs name them with a
/// prefix (`cali*` Calico, `lxc*` Cilium, `veth*` flannel/bridge, `cni*`),
/// which `include` can narrow to; `exclude` always wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// Name patterns (`*` wildcards) to attach to; empty: every veth.
    pub include: Vec<String>,
    /// Name patterns never attached to.
    pub exclude: Vec<String>,
}

/// Shell-style match with `*` only, enough for interface name patterns.
pub fn glob(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Selector {
    pub fn matches(&self, link: &Link) -> bool {
        if self.exclude.iter().any(|p| glob(p, &link.name)) {
            return false;
        }
        if self.include.is_empty() {
            link.kind.as_deref() == Some("veth")
        } else {
            self.include.iter().any(|p| glob(p, &link.name))
        }
    }
}

/// An interface as rtnetlink describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `veth`, `dummy`, ... (IFLA_INFO_KIND); None for physical devices.
    pub kind: Option<String>,
    /// The XDP program's mode on it, if one is attached ("skb", "driver",
    /// "hw", "multi").
    pub xdp_mode: Option<&'static str>,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Option<Self> {
        let mut name = None;
        let mut kind = None;
        let mut xdp_mode = None;
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => name = Some(n.clone()),
                LinkAttribute::Xdp(xdp) => {
                    for x in xdp {
                        if let LinkXdp::Attached(a) = x {
                            xdp_mode = match a {
                                XdpAttached::SocketBuffer => Some("skb"),
                                XdpAttached::Driver => Some("driver"),
                                XdpAttached::Hardware => Some("hw"),
                                XdpAttached::Multiple => Some("multi"),
                                _ => None,
                            };
                        }
                    }
                }
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(k) = info {
                            kind = Some(kind_name(k));
                        }
                    }
                }
                _ => {}
            }
        }
        Some(Self {
            index: msg.header.index,
            name: name?,
            kind,
            xdp_mode,
        })
    }
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Veth => "veth".into(),
        InfoKind::Dummy => "dummy".into(),
        InfoKind::Other(s) => s.clone(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// A change seen on the link multicast group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// Created, or changed (a rename, flags): attach if it matches and is
    /// not attached yet.
    New(Link),
    Removed {
        index: u32,
    },
    /// The kernel dropped notifications (ENOBUFS on the socket): the set of
    /// interfaces must be listed again.
    Overrun,
}

/// A netlink connection for requests; the connection task runs on the
/// current tokio runtime.
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().context("opening rtnetlink")?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Every interface of this network namespace.
pub async fn list(handle: &Handle) -> Result<Vec<Link>> {
    let mut out = Vec::new();
    let mut links = handle.link().get().execute();
    while let Some(msg) = links.try_next().await.context("listing links")? {
        out.extend(Link::from_message(&msg));
    }
    Ok(out)
}

/// Link events from now on. Subscribe before listing the existing links,
/// so a link created in between is not missed (it may be seen twice).
///
/// `rcvbuf` sets the socket's receive buffer (bytes; the kernel's default
/// otherwise): a burst of changes larger than it overruns the socket, which
/// the stream reports as [`LinkEvent::Overrun`].
pub fn monitor(rcvbuf: Option<usize>) -> Result<impl Stream<Item = LinkEvent>> {
    const RTMGRP_LINK: u32 = 1;
    let (mut conn, _, messages) = rtnetlink::new_connection().context("opening rtnetlink")?;
    let sock = conn.socket_mut().socket_mut();
    sock.bind(&SocketAddr::new(0, RTMGRP_LINK))
        .context("subscribing to link events")?;
    if let Some(n) = rcvbuf {
        sock.set_rx_buf_sz(n)
            .context("sizing the link event socket")?;
    }
    tokio::spawn(conn);
    Ok(messages.filter_map(|(msg, _)| async move { event(msg.payload) }))
}

/// What a message on the link group means for the daemon.
fn event(payload: NetlinkPayload<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
            Link::from_message(&m).map(LinkEvent::New)
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => Some(LinkEvent::Removed {
            index: m.header.index,
        }),
        // netlink-proto turns ENOBUFS on a multicast socket into this.
        NetlinkPayload::Overrun(_) => Some(LinkEvent::Overrun),
        _ => None,
    }
}

/// Where the node-local addresses live, and what to undo at exit.
#[derive(Debug)]
pub struct LocalAddrs {
    pub name: String,
    pub index: u32,
    /// The dummy interface was created by this call.
    pub created: bool,
    /// Addresses this call added (the others were there already). Nothing
    /// is removed when the daemon stops: the kernel goes on answering on
    /// them; `hsdns uninstall` removes them.
    pub added: Vec<IpAddr>,
}

/// Puts `addrs` (as /32, /128) on a dummy interface `name`, created if
/// absent, like NodeLocal DNSCache's `nodelocaldns` interface. Kernels built
/// without dummy interfaces (CONFIG_DUMMY unset, as measured on the CI
/// machines) get the addresses on `lo` instead, which delivers them the same
/// way to local sockets.
pub async fn ensure_local(handle: &Handle, name: &str, addrs: &[IpAddr]) -> Result<LocalAddrs> {
    let existing = list(handle).await?.into_iter().find(|l| l.name == name);
    let mut local = match existing {
        Some(l) if l.kind.as_deref() == Some("dummy") => LocalAddrs {
            name: l.name,
            index: l.index,
            created: false,
            added: vec![],
        },
        Some(l) => bail!(
            "interface {name} exists and is a {}, not a dummy: choose another --local-interface",
            l.kind.as_deref().unwrap_or("physical device")
        ),
        None => match handle
            .link()
            .add(LinkDummy::new(name).up().build())
            .execute()
            .await
        {
            Ok(()) => {
                let l = list(handle)
                    .await?
                    .into_iter()
                    .find(|l| l.name == name)
                    .with_context(|| format!("{name} vanished after creation"))?;
                LocalAddrs {
                    name: l.name,
                    index: l.index,
                    created: true,
                    added: vec![],
                }
            }
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EOPNOTSUPP => {
                log::warn!("this kernel has no dummy interfaces: node-local addresses go on lo");
                let lo = list(handle)
                    .await?
                    .into_iter()
                    .find(|l| l.name == "lo")
                    .context("no loopback interface")?;
                LocalAddrs {
                    name: lo.name,
                    index: lo.index,
                    created: false,
                    added: vec![],
                }
            }
            Err(e) => return Err(e).with_context(|| format!("creating dummy interface {name}")),
        },
    };
    handle
        .link()
        .set(LinkUnspec::new_with_index(local.index).up().build())
        .execute()
        .await
        .with_context(|| format!("setting {} up", local.name))?;
    for addr in addrs {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        match handle
            .address()
            .add(local.index, *addr, prefix)
            .execute()
            .await
        {
            Ok(()) => local.added.push(*addr),
            // Already there (a restart, or the operator's): keep it.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
            Err(e) => return Err(e).with_context(|| format!("adding {addr} to {}", local.name)),
        }
    }
    Ok(local)
}

/// Undoes what [`ensure_local`] may have done on an earlier run, whose
/// daemon is gone (`hsdns uninstall`): deletes the dummy interface `name`,
/// and takes `addrs` off the loopback (where they go on kernels without
/// dummy interfaces). Returns what it removed.
pub async fn remove_local(handle: &Handle, name: &str, addrs: &[IpAddr]) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let all = list(handle).await?;
    if let Some(l) = all.iter().find(|l| l.name == name) {
        if l.kind.as_deref() == Some("dummy") {
            delete(handle, l.index).await?;
            done.push(format!("interface {name}"));
        } else {
            log::warn!("{name} is not a dummy interface: left alone");
        }
    }
    if let Some(lo) = all.iter().find(|l| l.name == "lo") {
        let mut msgs = handle
            .address()
            .get()
            .set_link_index_filter(lo.index)
            .execute();
        let mut ours = Vec::new();
        while let Some(msg) = msgs.try_next().await.context("listing addresses")? {
            let ip = msg.attributes.iter().find_map(|a| match a {
                rtnetlink::packet_route::address::AddressAttribute::Address(ip)
                    if addrs.contains(ip) =>
                {
                    Some(*ip)
                }
                _ => None,
            });
            if let Some(ip) = ip {
                ours.push((ip, msg));
            }
        }
        for (ip, msg) in ours {
            handle
                .address()
                .del(msg)
                .execute()
                .await
                .with_context(|| format!("removing {ip} from lo"))?;
            done.push(format!("address {ip} on lo"));
        }
    }
    Ok(done)
}

/// Deletes an interface by index.
pub async fn delete(handle: &Handle, index: u32) -> Result<()> {
    handle
        .link()
        .del(index)
        .execute()
        .await
        .context("deleting link")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, kind: Option<&str>) -> Link {
        Link {
            index: 1,
            name: name.into(),
            kind: kind.map(Into::into),
            xdp_mode: None,
        }
    }

    #[test]
    fn a_netlink_overrun_asks_for_a_relist() {
        // What netlink-proto yields when the socket reported ENOBUFS.
        assert_eq!(
            event(NetlinkPayload::Overrun(Vec::new())),
            Some(LinkEvent::Overrun)
        );
        assert_eq!(event(NetlinkPayload::Noop), None);
    }

    #[test]
    fn glob_matches_cni_patterns() {
        assert!(glob("cali*", "cali12ab34"));
        assert!(!glob("cali*", "lxc12"));
        assert!(glob("*", "anything"));
        assert!(glob("veth*x", "veth0x"));
        assert!(!glob("veth*x", "veth0y"));
        assert!(glob("eth0", "eth0"));
        assert!(!glob("eth0", "eth01"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXcYb"));
    }

    #[test]
    fn default_selection_is_every_veth_minus_exclusions() {
        let s = Selector::default();
        assert!(s.matches(&link("cali1", Some("veth"))));
        assert!(!s.matches(&link("eth0", None)));
        assert!(!s.matches(&link("hsdns0", Some("dummy"))));
        let s = Selector {
            include: vec![],
            exclude: vec!["cali9*".into()],
        };
        assert!(!s.matches(&link("cali99", Some("veth"))));
        assert!(s.matches(&link("cali1", Some("veth"))));
    }

    #[test]
    fn include_patterns_select_by_name_whatever_the_kind() {
        let s = Selector {
            include: vec!["lxc*".into(), "eth1".into()],
            exclude: vec!["lxc_health".into()],
        };
        assert!(s.matches(&link("lxc1234", Some("veth"))));
        assert!(s.matches(&link("eth1", None)));
        assert!(!s.matches(&link("lxc_health", Some("veth"))));
        assert!(!s.matches(&link("cali1", Some("veth"))));
    }
}
