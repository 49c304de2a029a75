//! DNS over TCP (RFC 7766): pipelined queries answered as they complete
//! (out of order, each with its ID), a bounded number of connections, an
//! idle timeout between messages and a timeout for each message, and no
//! buffer held by an idle connection (a message's buffer is allocated once
//! its length has arrived, and freed with its answer).
//!
//! At the connection limit a new client is not turned away while another
//! merely idles: the connection idle the longest is closed for it (RFC 7766
//! 6.2.3 lets a server close idle connections under pressure). Only when
//! every connection is busy is the new one refused.

use std::{
    collections::HashMap,
    net::SocketAddr,
    os::fd::AsRawFd as _,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, tcp::OwnedWriteHalf},
    sync::{Notify, Semaphore},
};

use super::{Backoff, SETTLE, Server, listen, stopped};

/// Limits of the TCP side.
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    pub max_connections: usize,
    /// Closed when no message starts for this long.
    pub idle_timeout: Duration,
    /// A message, once its first byte arrived, must be complete within
    /// this (a slow sender holds nothing for long); also bounds each write.
    pub message_timeout: Duration,
    /// Queries of one connection in flight at once; further ones wait
    /// unread (TCP's own flow control pushes back).
    pub pipeline: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            idle_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(2),
            pipeline: 16,
        }
    }
}

/// One open connection, as the table sees it.
struct Conn {
    /// Queries read and not yet answered, plus one while a message is
    /// being read.
    busy: AtomicUsize,
    /// Milliseconds since `Conns::epoch` of the last activity.
    last: AtomicU64,
    close: Notify,
}

/// The open connections, for the limit and for eviction.
pub struct Conns {
    max: usize,
    epoch: Instant,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Conns {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Room for a new connection: at the limit, the longest-idle one is
    /// told to close (and leaves the table at once). None: every one is
    /// busy.
    fn admit(&self, server: &Server) -> Option<(u64, Arc<Conn>)> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= self.max {
            let victim = open
                .iter()
                .filter(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
                .min_by_key(|(_, c)| c.last.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            let Some(id) = victim else {
                server.stats.tcp_refused.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            if let Some(c) = open.remove(&id) {
                c.close.notify_one();
                server.stats.tcp_evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            last: AtomicU64::new(self.now()),
            close: Notify::new(),
        });
        open.insert(id, c.clone());
        Some((id, c))
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

impl Server {
    pub(super) async fn serve_tcp(self: Arc<Self>, l: TcpListener) {
        let mut lame = self.lame.subscribe();
        let mut backoff = Backoff::new();
        loop {
            tokio::select! {
                biased;
                _ = stopped(&mut lame) => break,
                r = l.accept() => match r {
                    Ok((s, peer)) => {
                        backoff.reset();
                        self.on_connection(s, peer);
                    }
                    Err(e) => backoff.pause("accepting a TCP connection", &e, &self.stats).await,
                },
            }
        }
        // Lame duck: new connections to the successor; take the ones
        // already queued on this listener (closing it would reset them).
        let local = l.local_addr().ok();
        let successor = local.is_some_and(|a| listen::has_peer(l.as_raw_fd(), a, true));
        if let Err(e) = listen::steer(l.as_raw_fd(), listen::Steer::Successor) {
            log::warn!("steering TCP {local:?} to the successor: {e}");
        }
        log::info!("TCP {local:?}: successor bound: {successor}; draining");
        tokio::time::sleep(SETTLE).await;
        use futures::FutureExt as _;
        while let Some(Ok((s, peer))) = l.accept().now_or_never() {
            self.on_connection(s, peer);
        }
        drop(l);
        // Connections close once what they took is answered.
        let deadline = Instant::now() + self.longest_forward();
        while self.conns.len() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn on_connection(self: &Arc<Self>, s: TcpStream, peer: SocketAddr) {
        let Some((id, conn)) = self.conns.admit(self) else {
            return; // dropped: closed at once
        };
        let _ = s.set_nodelay(true);
        let me = self.clone();
        tokio::spawn(async move {
            me.serve_conn(s, peer, &conn).await;
            me.conns.remove(id);
        });
    }

    async fn serve_conn(self: &Arc<Self>, s: TcpStream, peer: SocketAddr, conn: &Arc<Conn>) {
        let limits = self.cfg.tcp;
        let (mut rd, wr) = s.into_split();
        let wr = Arc::new(tokio::sync::Mutex::new(wr));
        let pipeline = Arc::new(Semaphore::new(limits.pipeline));
        let mut lame = self.lame.subscribe();
        loop {
            // Between messages: idle (evictable), no buffer held.
            let len = tokio::select! {
                biased;
                _ = conn.close.notified() => break,
                _ = stopped(&mut lame), if conn.busy.load(Ordering::Relaxed) == 0 => break,
                r = tokio::time::timeout(limits.idle_timeout, rd.read_u16()) => match r {
                    Ok(Ok(len)) => usize::from(len),
                    _ => break, // idle too long, closed, or reset
                },
            };
            conn.busy.fetch_add(1, Ordering::Relaxed);
            conn.last.store(self.conns.now(), Ordering::Relaxed);
            let mut q = vec![0u8; len];
            let read = tokio::time::timeout(limits.message_timeout, rd.read_exact(&mut q)).await;
            if !matches!(read, Ok(Ok(_))) {
                break;
            }
            if !self.limiter.allow(peer.ip(), Instant::now()) {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                conn.busy.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            // Backpressure: at most `pipeline` answers outstanding.
            let Ok(permit) = pipeline.clone().acquire_owned().await else {
                break;
            };
            let (me, wr, conn2) = (self.clone(), wr.clone(), conn.clone());
            tokio::spawn(async move {
                let reply = me.handle_tcp(&q).await;
                drop(q);
                if let Some(r) = reply
                    && write_msg(&wr, &r, limits.message_timeout).await.is_err()
                {
                    conn2.close.notify_one();
                }
                conn2.last.store(me.conns.now(), Ordering::Relaxed);
                conn2.busy.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
            });
        }
        // Answer what was taken before closing (bounded).
        let _ = tokio::time::timeout(
            self.longest_forward(),
            pipeline.acquire_many(limits.pipeline as u32),
        )
        .await;
        let _ = wr.lock().await.shutdown().await;
    }

    /// A TCP query: forwarding needs a permit like UDP's, so TCP clients
    /// cannot exceed the in-flight bound either.
    async fn handle_tcp(&self, q: &[u8]) -> Option<Vec<u8>> {
        let step = self.first_step(q, false);
        if matches!(step, super::Step::Reply(_) | super::Step::Nothing) {
            return self.finish(step, false).await;
        }
        let Ok(_permit) = self.inflight.clone().try_acquire_owned() else {
            self.stats.overloaded.fetch_add(1, Ordering::Relaxed);
            return self.servfail_for(&step);
        };
        self.finish(step, false).await
    }
}

async fn write_msg(
    wr: &tokio::sync::Mutex<OwnedWriteHalf>,
    msg: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    framed.extend_from_slice(msg);
    let mut w = wr.lock().await;
    match tokio::time::timeout(timeout, w.write_all(&framed)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
