//! The userspace DNS server on the node-local address: everything the XDP
//! program passes up arrives here. Names of the record table are answered
//! from it (other types, TCP, answers too large for UDP); an ExternalName's
//! CNAME comes with its target's records, resolved through the forwarder;
//! everything else is forwarded (cluster names to the cluster DNS, the rest
//! to the node's resolvers), with a cache bounded in bytes.
//!
//! Every pod can reach this server, so it trusts no client and no
//! upstream: per-client budgets, bounded forwarding, bounded TCP
//! connections with timeouts, replies from upstreams accepted only for the
//! question asked (see `forward`), and errors that back off instead of
//! spinning. It runs on threads of its own (see [`ServerRuntime`]), so
//! table updates and map syncs never hold up an answer.
//!
//! Sockets are shared with the next daemon across a restart (see
//! `listen`): [`Server::lame_duck`] hands new queries to it and finishes
//! what this one took.

mod answer;
pub mod cache;
pub mod forward;
pub mod limit;
pub mod listen;
mod tcp;
mod udp;
pub mod upstreams;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::{net::UdpSocket, sync::Semaphore, sync::watch};

use crate::records::SharedTable;
use answer::Step;
pub use cache::TtlCaps;
pub use forward::ForwardStats;
pub use tcp::TcpLimits;
pub use upstreams::{ClusterServers, Upstreams, resolv_conf};

/// Configuration of the userspace server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    /// Per upstream try; a query gives up after every upstream had one.
    pub timeout: Duration,
    /// Forwarded queries in flight at once; beyond it, SERVFAIL at once.
    pub max_inflight: usize,
    /// Bytes of cached upstream replies at most.
    pub cache_bytes: u64,
    pub ttl_caps: TtlCaps,
    /// Queries a second one client address may have answered (0: no
    /// limit); more are dropped.
    pub client_qps: u32,
    pub tcp: TcpLimits,
}

impl ServerConfig {
    /// Defaults for tests and tools: a 16 MiB cache, NodeLocal DNSCache's
    /// TTL caps (30 s, 5 s negative), no client limit.
    pub fn new(listen: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self {
            listen,
            timeout,
            max_inflight: 1000,
            cache_bytes: 16 << 20,
            ttl_caps: TtlCaps {
                positive: Duration::from_secs(30),
                negative: Duration::from_secs(5),
            },
            client_qps: 0,
            tcp: TcpLimits::default(),
        }
    }
}

/// Counters, readable while serving.
#[derive(Debug, Default)]
pub struct Stats {
    pub local: AtomicU64,
    pub forwarded: AtomicU64,
    pub cache_hits: AtomicU64,
    pub truncated: AtomicU64,
    pub servfail: AtomicU64,
    pub formerr: AtomicU64,
    pub dropped: AtomicU64,
    /// Dropped: the client was over its budget.
    pub rate_limited: AtomicU64,
    /// SERVFAIL at once: too many forwarded queries in flight.
    pub overloaded: AtomicU64,
    /// ExternalName targets resolved for a CNAME answer.
    pub chased: AtomicU64,
    /// TCP connections closed to make room for a new one (the longest
    /// idle), and new ones refused because none was idle.
    pub tcp_evicted: AtomicU64,
    pub tcp_refused: AtomicU64,
    /// Receive and accept errors (EMFILE and the like), each followed by a
    /// pause.
    pub socket_errors: AtomicU64,
    /// Datagrams found queued after the hand-over to a successor (answered
    /// before closing): those that were already on their way.
    pub drained: AtomicU64,
    pub upstream: ForwardStats,
}

/// The upstream nameservers of a resolv.conf, on port 53.
pub fn resolv_conf_upstreams(path: &std::path::Path) -> Result<Vec<SocketAddr>> {
    resolv_conf(path, &[])
}

pub struct Server {
    cfg: ServerConfig,
    table: SharedTable,
    upstreams: Upstreams,
    cache: cache::Cache,
    inflight: Arc<Semaphore>,
    limiter: limit::Limiter,
    conns: tcp::Conns,
    rotation: AtomicU64,
    lame: watch::Sender<bool>,
    pub stats: Stats,
}

/// Sockets bound by [`Server::bind`].
pub struct Bound {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<tokio::net::TcpListener>,
}

impl Bound {
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

/// Pauses after socket errors: from 1 ms, doubling to 1 s, reset by the
/// next success. EMFILE on accept leaves the connection queued and the
/// listener readable, so without it the loop would spin.
struct Backoff {
    delay: Duration,
    logged: Option<Instant>,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(1);
    const MAX: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            delay: Self::MIN,
            logged: None,
        }
    }

    fn reset(&mut self) {
        self.delay = Self::MIN;
    }

    async fn pause(&mut self, what: &str, e: &std::io::Error, stats: &Stats) {
        stats.socket_errors.fetch_add(1, Ordering::Relaxed);
        if self
            .logged
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            log::warn!(
                "{what}: {e} (pausing {:?}; repeats logged every 10 s)",
                self.delay
            );
            self.logged = Some(Instant::now());
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Self::MAX);
    }
}

/// Resolves once the server is told to stop (the guard `wait_for` returns
/// is not `Send`: dropped here, before anything else awaits).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|l| *l).await;
}

/// After a daemon steers new queries to its successor, how long queries
/// already on their way may still land in its sockets (they are in the
/// kernel for microseconds; this is generous).
const SETTLE: Duration = Duration::from_millis(100);

/// Tasks reading each UDP socket.
const UDP_READERS: usize = 2;

impl Server {
    pub fn new(cfg: ServerConfig, upstreams: Upstreams, table: SharedTable) -> Arc<Self> {
        Arc::new(Self {
            cache: cache::Cache::new(cfg.cache_bytes, cfg.ttl_caps),
            inflight: Arc::new(Semaphore::new(cfg.max_inflight)),
            limiter: limit::Limiter::new(cfg.client_qps),
            conns: tcp::Conns::new(cfg.tcp.max_connections),
            rotation: AtomicU64::new(0),
            lame: watch::channel(false).0,
            cfg,
            table,
            upstreams,
            stats: Stats::default(),
        })
    }

    /// Binds UDP and TCP on every listen address with SO_REUSEPORT (port 0
    /// picks one; TCP then uses the port UDP got). Must run inside a tokio
    /// runtime.
    pub async fn bind(&self) -> Result<Bound> {
        let mut b = Bound {
            udp: vec![],
            tcp: vec![],
        };
        for addr in &self.cfg.listen {
            let (udp, tcp) = bind_pair(*addr)?;
            b.udp.push(Arc::new(UdpSocket::from_std(udp)?));
            b.tcp.push(tokio::net::TcpListener::from_std(tcp)?);
        }
        Ok(b)
    }

    /// Serves until [`Server::lame_duck`], then hands over and returns once
    /// everything taken has been answered (or the task is dropped).
    pub async fn serve(self: Arc<Self>, bound: Bound) {
        let mut tasks = tokio::task::JoinSet::new();
        for sock in bound.udp {
            // Two readers a socket: under a flood the queue drains twice
            // as fast, and one reader waiting on a send does not stop it.
            for reader in 0..UDP_READERS {
                tasks.spawn(self.clone().serve_udp(sock.clone(), reader));
            }
        }
        for l in bound.tcp {
            tasks.spawn(self.clone().serve_tcp(l));
        }
        while tasks.join_next().await.is_some() {}
        // Forwarded queries still in flight hold permits.
        let max = self.cfg.max_inflight as u32;
        let _ = tokio::time::timeout(self.longest_forward(), self.inflight.acquire_many(max)).await;
    }

    /// Stop taking new queries: steer them to a successor, answer what
    /// was taken, then let [`Server::serve`] return.
    pub fn lame_duck(&self) {
        self.lame.send_replace(true);
    }

    /// The longest a forwarded query can take: every upstream tried twice
    /// (UDP, then TCP).
    fn longest_forward(&self) -> Duration {
        self.cfg.timeout * 2 * 4 + SETTLE
    }

    /// One query in, at most one reply out (malformed input gets FORMERR
    /// when it has a readable header, nothing otherwise).
    pub async fn handle(&self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        let step = self.first_step(query, udp);
        self.finish(step, udp).await
    }

    /// Bytes held by the cache (for metrics and tests).
    pub fn cache_bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// TCP connections open now.
    pub fn tcp_connections(&self) -> usize {
        self.conns.len()
    }
}

/// Where the userspace server runs: a multi-threaded runtime of its own, so
/// that nothing the daemon's event loop does (a relist of 150,000 pods, a
/// map sync) delays an answer. The table lock is the only thing shared,
/// and it is held for one batch of services at a time.
pub struct ServerRuntime {
    rt: Option<tokio::runtime::Runtime>,
}

impl ServerRuntime {
    pub fn new() -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("hsdns-server")
            .enable_all()
            .build()
            .context("starting the server's runtime")?;
        Ok(Self { rt: Some(rt) })
    }

    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt
            .as_ref()
            .expect("runtime until drop")
            .handle()
            .clone()
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        // Dropping a runtime inside another's context panics; this does not
        // wait for its tasks (the server has finished by then, or is being
        // abandoned on an error path).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// UDP and TCP on one port. With port 0 the UDP socket picks the port and
/// the TCP port of that number can be taken by someone else (a busy test
/// host): then try another port, a few times, before giving up.
fn bind_pair(addr: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener)> {
    const TRIES: usize = 16;
    for _ in 1..TRIES {
        let udp = listen::udp(addr)?;
        let at = udp.local_addr()?;
        match listen::tcp(at, 1024) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 && in_use(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    let udp = listen::udp(addr)?;
    let tcp = listen::tcp(udp.local_addr()?, 1024)?;
    Ok((udp, tcp))
}

fn in_use(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::AddrInUse)
}
