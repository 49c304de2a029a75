//! The UDP path: readers of each socket, the per-client budget, and the
//! hand-over of a socket's queue to a successor at a stop.

use std::{
    net::SocketAddr,
    os::fd::AsRawFd as _,
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use tokio::net::UdpSocket;

use super::{Backoff, SETTLE, Server, Step, listen, stopped};

impl Server {
    pub(super) async fn serve_udp(self: Arc<Self>, sock: Arc<UdpSocket>, reader: usize) {
        let mut buf = vec![0u8; 4096];
        let mut lame = self.lame.subscribe();
        let mut backoff = Backoff::new();
        loop {
            tokio::select! {
                biased;
                _ = stopped(&mut lame) => break,
                r = sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        backoff.reset();
                        self.on_datagram(&sock, &buf[..n], from).await;
                    }
                    Err(e) => backoff.pause("receiving a UDP query", &e, &self.stats).await,
                },
            }
        }
        // Lame duck: new datagrams to the successor, then empty our queue.
        let local = sock.local_addr().ok();
        let successor = local.is_some_and(|a| listen::has_peer(sock.as_raw_fd(), a, false));
        if let Err(e) = listen::steer(sock.as_raw_fd(), listen::Steer::Successor) {
            log::warn!("steering {local:?} to the successor: {e}");
        }
        if reader == 0 {
            log::info!(
                "UDP {}: {}",
                local.map(|a| a.to_string()).unwrap_or_default(),
                if successor {
                    "new queries go to the successor; draining"
                } else {
                    "no successor bound; draining"
                }
            );
        }
        tokio::time::sleep(SETTLE).await;
        let mut drained = 0;
        loop {
            match sock.try_recv_from(&mut buf) {
                Ok((n, from)) => {
                    drained += 1;
                    self.stats.drained.fetch_add(1, Ordering::Relaxed);
                    self.on_datagram(&sock, &buf[..n], from).await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => continue,
            }
        }
        log::debug!("UDP {local:?}: {drained} queued queries answered after hand-over");
    }

    async fn on_datagram(self: &Arc<Self>, sock: &Arc<UdpSocket>, q: &[u8], from: SocketAddr) {
        if !self.limiter.allow(from.ip(), Instant::now()) {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.first_step(q, true) {
            Step::Reply(r) => {
                let _ = sock.send_to(&r, from).await;
            }
            Step::Nothing => {}
            step => {
                let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
                    self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = self.servfail_for(&step) {
                        let _ = sock.send_to(&r, from).await;
                    }
                    return;
                };
                let (me, sock) = (self.clone(), sock.clone());
                tokio::spawn(async move {
                    let r = me.finish(step, true).await;
                    drop(permit);
                    if let Some(r) = r {
                        let _ = sock.send_to(&r, from).await;
                    }
                });
            }
        }
    }
}
