//! The listening sockets and how two daemons share them across a restart
//! or an upgrade without losing a query.
//!
//! Every daemon binds its UDP sockets and TCP listeners with SO_REUSEPORT,
//! so a new daemon can bind the same addresses while the old one still
//! serves: both sockets form one reuseport group per address and protocol.
//! What Linux does with such a group decides the design:
//!
//! - Without a program, each datagram or SYN picks a socket by a hash of
//!   its 4-tuple: as soon as the new daemon binds, about half the clients
//!   go to it, ready or not.
//! - A datagram sits in the receive queue of the socket it was steered to.
//!   When that socket closes, its queue is freed: every query in it is lost
//!   (nothing moves queued datagrams to another member of the group).
//! - A TCP listener that closes resets the connections in its accept queue
//!   (and its half-open ones), unless `net.ipv4.tcp_migrate_req` is set,
//!   which moves them to another listener of the group (Linux 5.14+).
//! - A classic BPF program attached to the group with
//!   SO_ATTACH_REUSEPORT_CBPF returns the index of the socket to use;
//!   sockets are indexed in the order they joined (the one that leaves is
//!   replaced by the last); an index past the end falls back to the hash.
//!
//! So: every daemon attaches "socket 0" when it binds: the incumbent (the
//! oldest member) keeps all traffic while a successor starts. A daemon
//! that stops attaches "socket 1": from then on its successor (if there is
//! one) receives every new query, and nothing more is queued on the old
//! socket. After a short settle time the old daemon drains what is queued
//! (datagrams until EWOULDBLOCK, pending connections until none), answers
//! it, finishes the forwarded queries in flight, and only then closes. With
//! no successor, "socket 1" is past the end and the old socket keeps its
//! traffic until it closes. The design assumes one successor at a time (two
//! daemons starting beside a third would be steered by join order).

use std::{
    net::{IpAddr, SocketAddr},
    os::fd::{AsRawFd, RawFd},
};

use anyhow::{Context as _, Result};
use socket2::{Domain, Protocol, Socket, Type};

/// SO_ATTACH_REUSEPORT_CBPF (asm-generic/socket.h).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Which member of its reuseport group gets new queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// The oldest member: the incumbent keeps serving while we start.
    Incumbent,
    /// The second member: our successor, when we stop.
    Successor,
}

/// Attaches a one-instruction classic BPF program ("return k") to the
/// reuseport group of `fd`.
pub fn steer(fd: RawFd, to: Steer) -> std::io::Result<()> {
    let k = match to {
        Steer::Incumbent => 0,
        Steer::Successor => 1,
    };
    let mut insn = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: insn.as_mut_ptr(),
    };
    // SAFETY: a valid socket fd and a program that outlives the call (the
    // kernel copies it).
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&raw const prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    s.set_reuse_port(true)?;
    // The node-local address may not be on its interface yet (or may
    // briefly go while another daemon owns the interface): bind anyway.
    match addr.ip() {
        IpAddr::V4(_) => s.set_freebind_v4(true)?,
        IpAddr::V6(_) => {
            s.set_only_v6(true)?;
            s.set_freebind_v6(true)?;
        }
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A UDP socket on `addr`, in `addr`'s reuseport group, steered to the
/// incumbent.
pub fn udp(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    let s = socket(addr, Type::DGRAM, Protocol::UDP)?;
    s.bind(&addr.into())
        .with_context(|| format!("binding UDP {addr}"))?;
    steer(s.as_raw_fd(), Steer::Incumbent).context("attaching the reuseport program")?;
    Ok(s.into())
}

/// A TCP listener on `addr`, as [`udp`].
pub fn tcp(addr: SocketAddr, backlog: i32) -> Result<std::net::TcpListener> {
    let s = socket(addr, Type::STREAM, Protocol::TCP)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("binding TCP {addr}"))?;
    s.listen(backlog)
        .with_context(|| format!("listening on TCP {addr}"))?;
    steer(s.as_raw_fd(), Steer::Incumbent).context("attaching the reuseport program")?;
    Ok(s.into())
}

/// The HTTP listener (`--metrics-addr`): in the same kind of reuseport
/// group, steered the other way. Probes and scrapes are about the newest
/// daemon: kubelet probes the pod it started, and with hostNetwork both
/// pods of a surge update listen on the same address. So every daemon
/// steers its group to "socket 1": beside an older one (index 0) the newer
/// one gets every new connection from the moment it listens; alone, the
/// index is past the end and the only socket gets them. The older daemon
/// also closes its listener when it hands over or stops (see
/// `Frontend::close_http`), which makes the newer one index 0 of a group
/// of one.
pub fn tcp_to_newest(addr: SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    let s = socket(addr, Type::STREAM, Protocol::TCP).map_err(std::io::Error::other)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    steer(s.as_raw_fd(), Steer::Successor)?;
    Ok(s.into())
}

/// Whether another socket (a successor's) is bound to the same address and
/// port as `fd`, read from /proc/net/{udp,tcp}{,6} of this network
/// namespace: entries with our local address and another inode (UDP:
/// any state; TCP: listening).
pub fn has_peer(fd: RawFd, local: SocketAddr, tcp: bool) -> bool {
    // SAFETY: fstat on an fd we own into a zeroed stat.
    let inode = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return false;
        }
        st.st_ino
    };
    let file = match (tcp, local.is_ipv4()) {
        (false, true) => "/proc/net/udp",
        (false, false) => "/proc/net/udp6",
        (true, true) => "/proc/net/tcp",
        (true, false) => "/proc/net/tcp6",
    };
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let want = proc_addr(local);
    text.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 9
            && f[1].eq_ignore_ascii_case(&want)
            && (!tcp || f[3] == "0A")
            && f[9].parse::<u64>().is_ok_and(|i| i != inode)
    })
}

/// An address as /proc/net prints it: each 32-bit word of the address in
/// the host's byte order, in hex, then the port.
fn proc_addr(a: SocketAddr) -> String {
    let words: Vec<u8> = match a.ip() {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    let mut s = String::new();
    for w in words.chunks(4) {
        let w: [u8; 4] = w.try_into().expect("4-byte chunks");
        s.push_str(&format!("{:08X}", u32::from_ne_bytes(w)));
    }
    format!("{s}:{:04X}", a.port())
}

#[cfg(test)]
mod tests {
    use std::{net::UdpSocket, time::Duration};

    use super::*;

    #[test]
    fn addresses_are_spelled_as_proc_net_spells_them() {
        if cfg!(target_endian = "little") {
            assert_eq!(
                proc_addr("169.254.20.10:53".parse().unwrap()),
                "0A14FEA9:0035"
            );
            assert_eq!(
                proc_addr("[fd00:20::10]:53".parse().unwrap()),
                "200000FD000000000000000010000000:0035"
            );
        }
    }

    /// On loopback: a steered group sends every datagram to the socket the
    /// program names, whatever the 4-tuple, and a peer is seen in /proc.
    #[test]
    fn steering_sends_every_datagram_to_the_chosen_member() {
        let first = udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        assert!(!has_peer(first.as_raw_fd(), addr, false));
        let second = udp(addr).unwrap();
        assert!(has_peer(first.as_raw_fd(), addr, false));
        for s in [&first, &second] {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        let count = |s: &UdpSocket| {
            let mut buf = [0u8; 16];
            let mut n = 0;
            while s.recv(&mut buf).is_ok() {
                n += 1;
            }
            n
        };
        // 40 clients (40 source ports): all to the incumbent.
        let send_all = || {
            for _ in 0..40 {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.send_to(b"q", addr).unwrap();
            }
        };
        send_all();
        assert_eq!((count(&first), count(&second)), (40, 0));
        steer(first.as_raw_fd(), Steer::Successor).unwrap();
        send_all();
        assert_eq!((count(&first), count(&second)), (0, 40));
        // The first leaves: the successor, now alone, gets everything.
        drop(first);
        send_all();
        assert_eq!(count(&second), 40);
        assert!(!has_peer(second.as_raw_fd(), addr, false));
    }
}
