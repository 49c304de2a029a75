//! Whether pods' packets to a ClusterIP reach the node with that address.
//!
//! hsdns answers the cluster DNS Service's ClusterIP in the kernel by
//! matching the destination address of the packets pods send. kube-proxy
//! (iptables, IPVS, nftables) translates that address only after the packet
//! has left the pod, so the hook on the pod's veth sees the ClusterIP. CNIs
//! that load-balance at the socket rewrite it inside the pod instead, in
//! cgroup BPF programs run at `connect()` and `sendmsg()`: the packet
//! leaves the pod already addressed to a CoreDNS pod, and only the
//! node-local mode (kubelet `--cluster-dns 169.254.20.10`) works:
//!
//! - Cilium with socket load balancing (`socketLB.enabled`, on by default
//!   with kube-proxy replacement; `socketLB.hostNamespaceOnly` keeps it out
//!   of pods, and then ClusterIP interception works);
//! - Calico's eBPF data plane with connect-time load balancing
//!   (`bpfConnectTimeLoadBalancing`: `TCP` (the default in recent releases)
//!   leaves UDP to per-packet NAT at the veth, which hsdns sees first;
//!   `Enabled` rewrites UDP too).
//!
//! Both attach their programs to the root cgroup, so every pod's cgroup has
//! them as effective programs. [`socket_lb_programs`] asks the kernel
//! (BPF_PROG_QUERY, which needs CAP_NET_ADMIN) for the effective connect
//! and sendmsg programs of a cgroup: from inside the DaemonSet's container
//! its own cgroup, whose ancestors include the host's root.

use std::{
    fs,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd};

/// The hooks socket-level load balancing uses for UDP DNS.
pub const HOOKS: [(&str, bpf_attach_type); 4] = [
    ("connect4", bpf_attach_type::BPF_CGROUP_INET4_CONNECT),
    ("sendmsg4", bpf_attach_type::BPF_CGROUP_UDP4_SENDMSG),
    ("connect6", bpf_attach_type::BPF_CGROUP_INET6_CONNECT),
    ("sendmsg6", bpf_attach_type::BPF_CGROUP_UDP6_SENDMSG),
];

/// The effective programs of `cgroup` (a cgroup v2 directory) on each hook,
/// by hook name; hooks without programs are left out.
pub fn socket_lb_programs(cgroup: &Path) -> Result<Vec<(&'static str, Vec<u32>)>> {
    let dir = fs::File::open(cgroup).with_context(|| format!("opening {}", cgroup.display()))?;
    let mut found = Vec::new();
    for (name, hook) in HOOKS {
        let mut ids = [0u32; 64];
        // SAFETY: zeroed is a valid bpf_attr; the kernel writes at most
        // prog_cnt ids into `ids`, which outlives the call.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        attr.query.__bindgen_anon_1.target_fd = dir.as_raw_fd() as u32;
        attr.query.attach_type = hook as u32;
        attr.query.query_flags = aya_obj::generated::BPF_F_QUERY_EFFECTIVE;
        attr.query.prog_ids = ids.as_mut_ptr() as u64;
        attr.query.__bindgen_anon_2.prog_cnt = ids.len() as u32;
        // SAFETY: the bpf syscall with a valid attr of the right size.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                bpf_cmd::BPF_PROG_QUERY as libc::c_int,
                &mut attr as *mut bpf_attr,
                std::mem::size_of::<bpf_attr>() as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("BPF_PROG_QUERY {name} on {}", cgroup.display()));
        }
        // SAFETY: the kernel set prog_cnt to the number of programs.
        let n = unsafe { attr.query.__bindgen_anon_2.prog_cnt } as usize;
        if n > 0 {
            found.push((name, ids[..n.min(ids.len())].to_vec()));
        }
    }
    Ok(found)
}

/// This process's cgroup v2 directory: the cgroup2 mount point joined with
/// the `0::` line of /proc/self/cgroup.
pub fn own_cgroup() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split_whitespace().next()? == "cgroup2").then(|| pre.split_whitespace().nth(4))?
    })?;
    let cg = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new(mount).join(rel.trim_start_matches('/')))
}

/// Says in the log what the daemon can see about socket-level load
/// balancing, and what it means for ClusterIP interception.
pub fn log_socket_lb(intercepting: bool) {
    let Some(cgroup) = own_cgroup() else {
        log::info!("no cgroup v2 hierarchy: cannot check for socket-level load balancing");
        return;
    };
    match socket_lb_programs(&cgroup) {
        Ok(found) if found.is_empty() => log::info!(
            "no cgroup connect/sendmsg programs over {}: pods' packets to a ClusterIP \
             leave them with that address, and ClusterIP interception sees them",
            cgroup.display()
        ),
        Ok(found) => {
            let hooks: Vec<String> = found
                .iter()
                .map(|(h, ids)| format!("{h} (program ids {ids:?})"))
                .collect();
            let msg = format!(
                "socket-level load balancing over {}: cgroup programs on {} rewrite \
                 ClusterIP addresses inside pods (Cilium socket LB, Calico eBPF \
                 connect-time LB; `bpftool cgroup tree` names them)",
                cgroup.display(),
                hooks.join(", ")
            );
            if intercepting {
                log::warn!(
                    "{msg}: pods' queries to the cluster DNS ClusterIP never reach this node \
                     with that address, so intercepting it answers nothing; use the \
                     node-local mode (kubelet --cluster-dns 169.254.20.10)"
                );
            } else {
                log::info!("{msg}; the node-local mode is not affected");
            }
        }
        Err(e) => log::info!("cannot check for socket-level load balancing: {e:#}"),
    }
}
