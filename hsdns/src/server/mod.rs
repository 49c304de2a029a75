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

pub mod cache;
pub mod forward;
pub mod limit;
pub mod listen;
mod tcp;
pub mod upstreams;

use std::{
    net::SocketAddr,
    os::fd::AsRawFd as _,
    sync::{
        Arc, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use tokio::{net::UdpSocket, sync::Semaphore, sync::watch};

use crate::{dns::resolver, records::SharedTable};
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

/// What the synchronous first look at a query decided. Lives for one
/// query, never in a collection: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Step {
    Reply(Vec<u8>),
    Nothing,
    /// Not the table's: forward (the parsed query).
    Forward(Message),
    /// The table's reply is an ExternalName's CNAME: add the target's
    /// records.
    Chase {
        reply: Message,
        target: Name,
        query: Message,
    },
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

/// How many CNAMEs an answer may chain (ExternalName to ExternalName...):
/// a loop ends here.
const MAX_CHAIN: usize = 8;

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

    async fn serve_udp(self: Arc<Self>, sock: Arc<UdpSocket>, reader: usize) {
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

    /// One query in, at most one reply out (malformed input gets FORMERR
    /// when it has a readable header, nothing otherwise).
    pub async fn handle(&self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        let step = self.first_step(query, udp);
        self.finish(step, udp).await
    }

    async fn finish(&self, step: Step, udp: bool) -> Option<Vec<u8>> {
        match step {
            Step::Reply(r) => Some(r),
            Step::Nothing => None,
            Step::Forward(q) => self.forwarded(&q, udp).await,
            Step::Chase {
                reply,
                target,
                query,
            } => self.chase(reply, target, &query, udp).await,
        }
    }

    /// What can be decided without waiting: an answer from the table, a
    /// refusal, or what to forward.
    fn first_step(&self, query: &[u8], udp: bool) -> Step {
        let max_udp = udp.then_some(hsdns_common::EDNS_UDP_SIZE);
        // Successive answers start one address further, as the kernel's do.
        let rotate = self.rotation.fetch_add(1, Ordering::Relaxed) as usize;
        let local = {
            let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
            // A table still being listed would deny names it has not seen
            // yet: until it is complete, everything goes upstream.
            table
                .is_complete()
                .then(|| resolver::respond_any_type_rotated(&table, query, max_udp, rotate))
        };
        if let Some(resolver::Verdict::Answer(reply)) = local {
            self.stats.local.fetch_add(1, Ordering::Relaxed);
            if reply.get(2).is_some_and(|f| f & 0x02 != 0) {
                self.stats.truncated.fetch_add(1, Ordering::Relaxed);
                return Step::Reply(reply);
            }
            // One answer record may be an ExternalName's CNAME.
            if reply.get(6..8) == Some(&[0, 1])
                && let Ok(m) = Message::from_vec(&reply)
                && let Some(RData::CNAME(target)) = m.answers.first().map(|r| &r.data)
                && m.queries
                    .first()
                    .is_some_and(|q| !matches!(q.query_type(), RecordType::CNAME | RecordType::ANY))
                && let Ok(query) = Message::from_vec(query)
            {
                return Step::Chase {
                    target: target.0.clone(),
                    reply: m,
                    query,
                };
            }
            return Step::Reply(reply);
        }
        let Ok(q) = Message::from_vec(query) else {
            return self.formerr(query);
        };
        if q.metadata.message_type != MessageType::Query || q.queries.len() != 1 {
            return self.formerr(query);
        }
        if q.metadata.op_code != OpCode::Query {
            return Step::Reply(self.error_reply(&q, ResponseCode::NotImp));
        }
        if q.queries[0].query_type() == RecordType::ANY {
            return self.refuse_any(&q);
        }
        Step::Forward(q)
    }

    /// A SERVFAIL for a query that needed forwarding.
    fn servfail_for(&self, step: &Step) -> Option<Vec<u8>> {
        let q = match step {
            Step::Forward(q) | Step::Chase { query: q, .. } => q,
            _ => return None,
        };
        self.stats.servfail.fetch_add(1, Ordering::Relaxed);
        Some(self.error_reply(q, ResponseCode::ServFail))
    }

    fn error_reply(&self, q: &Message, rcode: ResponseCode) -> Vec<u8> {
        let mut m = Message::error_msg(q.metadata.id, q.metadata.op_code, rcode);
        m.metadata.recursion_desired = q.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.queries = q.queries.clone();
        if q.edns.is_some() {
            m.set_edns(crate::dns::answer::server_edns());
        }
        m.to_vec().unwrap_or_default()
    }

    /// ANY is answered as CoreDNS's `any` plugin does (RFC 8482): one
    /// synthesized HINFO "RFC8482", never the (forwarded, amplifiable)
    /// full set.
    fn refuse_any(&self, q: &Message) -> Step {
        self.stats.local.fetch_add(1, Ordering::Relaxed);
        let mut m = Message::response(q.metadata.id, q.metadata.op_code);
        m.metadata.recursion_desired = q.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.queries = q.queries.clone();
        m.add_answer(hickory_proto::rr::Record::from_rdata(
            q.queries[0].name().clone(),
            8482,
            RData::HINFO(hickory_proto::rr::rdata::HINFO::new(
                "RFC8482".into(),
                String::new(),
            )),
        ));
        if q.edns.is_some() {
            m.set_edns(crate::dns::answer::server_edns());
        }
        m.to_vec().map_or(Step::Nothing, Step::Reply)
    }

    fn formerr(&self, query: &[u8]) -> Step {
        if query.len() < 12 || query[2] & 0x80 != 0 {
            // No header, or a response: never answer (a reply to a reply
            // is how reflection loops start).
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Step::Nothing;
        }
        self.stats.formerr.fetch_add(1, Ordering::Relaxed);
        let id = u16::from_be_bytes([query[0], query[1]]);
        let m = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
        m.to_vec().map_or(Step::Nothing, Step::Reply)
    }

    /// The forwarded reply for the client: its ID, question as it spelled
    /// it, its RD; EDNS only if it sent EDNS; within its size.
    async fn forwarded(&self, q: &Message, udp: bool) -> Option<Vec<u8>> {
        let reply = match self.resolve(&ask_of(q, q.queries[0].clone())).await {
            Some(r) => r,
            None => {
                self.stats.servfail.fetch_add(1, Ordering::Relaxed);
                let mut m =
                    Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::ServFail);
                m.queries = q.queries.clone();
                m
            }
        };
        self.to_client(reply, q, udp)
    }

    fn to_client(&self, mut reply: Message, q: &Message, udp: bool) -> Option<Vec<u8>> {
        reply.metadata.id = q.metadata.id;
        reply.queries = q.queries.clone();
        reply.metadata.recursion_desired = q.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.edns = None;
        if let Some(e) = &q.edns {
            let mut ours = crate::dns::answer::server_edns();
            ours.set_dnssec_ok(e.flags().dnssec_ok);
            reply.set_edns(ours);
        }
        let limit = if udp {
            usize::from(q.edns.as_ref().map_or(512, |e| {
                e.max_payload().clamp(512, hsdns_common::EDNS_UDP_SIZE)
            }))
        } else {
            usize::from(u16::MAX)
        };
        let bytes = reply.to_vec().ok()?;
        if bytes.len() <= limit && bytes[2] & 0x02 == 0 {
            return Some(bytes);
        }
        // Optional data first (RFC 2181 9), then everything but the
        // question, with TC so the client retries over TCP.
        reply.additionals.clear();
        let bytes = reply.to_vec().ok()?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
        self.stats.truncated.fetch_add(1, Ordering::Relaxed);
        reply.answers.clear();
        reply.authorities.clear();
        reply.metadata.truncation = true;
        reply.to_vec().ok()
    }

    /// An ExternalName's CNAME with its target's records, as CoreDNS
    /// answers: a target in the zone from the table, any other through the
    /// forwarder (and its cache). When the target cannot be resolved, the
    /// CNAME alone (the client may chase it itself).
    async fn chase(
        &self,
        mut reply: Message,
        mut target: Name,
        q: &Message,
        udp: bool,
    ) -> Option<Vec<u8>> {
        self.stats.chased.fetch_add(1, Ordering::Relaxed);
        let qtype = q.queries[0].query_type();
        for _ in 0..MAX_CHAIN {
            let more = match self.table_answer(&target, qtype) {
                Some(m) => m.answers,
                None => {
                    let ask = ask_of(q, Query::query(target.clone(), qtype));
                    match self.resolve(&ask).await {
                        Some(m) if m.metadata.response_code == ResponseCode::NoError => m.answers,
                        _ => Vec::new(),
                    }
                }
            };
            let next = match more.last().map(|r| &r.data) {
                Some(RData::CNAME(t)) if more.len() == 1 => Some(t.0.clone()),
                _ => None,
            };
            reply.answers.extend(more);
            match next {
                Some(t) => target = t,
                None => break,
            }
        }
        // The answer is ours (authoritative for the CNAME) but whether it
        // fits is decided like any forwarded reply's.
        let mut bytes_reply = reply;
        bytes_reply.metadata.authoritative = true;
        self.to_client(bytes_reply, q, udp)
    }

    /// The table's reply for a name in the zone, if the table answers it.
    fn table_answer(&self, name: &Name, qtype: RecordType) -> Option<Message> {
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        if !table.is_complete() || !table.zone().zone.zone_of(name) {
            return None;
        }
        let mut m = Message::query();
        m.add_query(Query::query(name.clone(), qtype));
        let wire = m.to_vec().ok()?;
        match resolver::respond_any_type(&table, &wire, None) {
            resolver::Verdict::Answer(r) => Message::from_vec(&r).ok(),
            resolver::Verdict::Pass(_) => None,
        }
    }

    /// The upstream's reply to `ask` (from the cache while it lives), or
    /// None when no upstream gave an acceptable one.
    async fn resolve(&self, ask: &forward::Ask) -> Option<Message> {
        let question = &ask.query;
        let key = cache::CacheKey {
            name: question.name().to_lowercase(),
            qtype: question.query_type(),
            qclass: question.query_class(),
            dnssec_ok: ask.dnssec_ok,
            checking_disabled: ask.checking_disabled,
        };
        if let Some(m) = self.cache.get(&key) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Some(m);
        }
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let ups = match self
            .upstreams
            .for_name(question.name(), self.cfg.timeout)
            .await
        {
            Ok(u) => u,
            Err(e) => {
                log::debug!("{}: no upstream ({e:?})", question.name());
                return None;
            }
        };
        // At most four upstreams are tried: a long list would hold the
        // client past its own timeout.
        for up in ups.into_iter().take(4) {
            if let Some(m) = forward::ask(up, ask, self.cfg.timeout, &self.stats.upstream).await {
                self.cache.put(key, &m);
                return Some(m);
            }
        }
        None
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

/// The forwarder's question for `q`'s client: lowercased (the cache key,
/// and the upstream's answers carry no client's 0x20 pattern), with the
/// client's DO and CD.
fn ask_of(q: &Message, mut query: Query) -> forward::Ask {
    let name = query.name().to_lowercase();
    query.set_name(name);
    forward::Ask {
        query,
        dnssec_ok: q.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        checking_disabled: q.metadata.checking_disabled,
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
