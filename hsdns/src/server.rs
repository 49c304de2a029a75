//! The userspace DNS server on the node-local address: everything the XDP
//! program passes up arrives here. Names of the record table are answered
//! from it (other types, TCP, answers too large for UDP); everything else is
//! forwarded to the upstreams, with a TTL-honouring cache.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use hickory_proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{DNSClass, Name, RData, RecordType},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Semaphore,
};

use crate::{dns::resolver, records::SharedTable};

/// Configuration of the userspace server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub upstreams: Vec<SocketAddr>,
    /// Per upstream try; a query gives up after every upstream had one.
    pub timeout: Duration,
    /// Forwarded queries in flight at once; beyond it, SERVFAIL at once.
    pub max_inflight: usize,
    /// Cached upstream answers at most (oldest evicted first).
    pub cache_entries: usize,
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
}

/// The upstream nameservers of a resolv.conf, on port 53.
pub fn resolv_conf_upstreams(path: &Path) -> Result<Vec<SocketAddr>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let ups: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().split('%').next()?.parse().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if ups.is_empty() {
        anyhow::bail!("{}: no nameserver line", path.display());
    }
    Ok(ups)
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct CacheKey {
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
    dnssec_ok: bool,
}

struct CacheEntry {
    reply: Message,
    stored: Instant,
    ttl: Duration,
}

/// A bounded cache of upstream replies, evicting the oldest entry.
struct Cache {
    map: HashMap<CacheKey, CacheEntry>,
    order: VecDeque<(CacheKey, Instant)>,
    cap: usize,
}

impl Cache {
    fn get(&mut self, k: &CacheKey, now: Instant) -> Option<(Message, Duration)> {
        let e = self.map.get(k)?;
        let age = now.duration_since(e.stored);
        if age >= e.ttl {
            self.map.remove(k);
            return None;
        }
        Some((e.reply.clone(), age))
    }

    fn put(&mut self, k: CacheKey, reply: Message, ttl: Duration, now: Instant) {
        if self.cap == 0 || ttl.is_zero() {
            return;
        }
        while self.map.len() >= self.cap {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            // Skip order entries of keys stored again since.
            if self.map.get(&old).is_some_and(|e| e.stored == at) {
                self.map.remove(&old);
            }
        }
        self.order.push_back((k.clone(), now));
        self.map.insert(
            k,
            CacheEntry {
                reply,
                stored: now,
                ttl,
            },
        );
        // Keep the order queue from growing without bound on rewrites.
        if self.order.len() > 2 * self.cap.max(16) {
            let map = &self.map;
            self.order
                .retain(|(k, at)| map.get(k).is_some_and(|e| e.stored == *at));
        }
    }
}

/// How long an upstream reply may be cached: the smallest TTL of its
/// answers, or for a negative reply the SOA's (min of its TTL and minimum,
/// RFC 2308 5). Errors other than NXDOMAIN are not cached.
fn cache_ttl(m: &Message) -> Option<Duration> {
    match m.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        _ => return None,
    }
    if m.metadata.truncation {
        return None;
    }
    let ttl = if m.answers.is_empty() {
        m.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })?
    } else {
        m.answers.iter().map(|r| r.ttl).min()?
    };
    Some(Duration::from_secs(u64::from(ttl)))
}

pub struct Server {
    cfg: ServerConfig,
    table: SharedTable,
    cache: Mutex<Cache>,
    inflight: Semaphore,
    rotation: AtomicU64,
    pub stats: Stats,
}

/// Sockets bound by [`Server::bind`].
pub struct Bound {
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
}

impl Bound {
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

impl Server {
    pub fn new(cfg: ServerConfig, table: SharedTable) -> Arc<Self> {
        Arc::new(Self {
            cache: Mutex::new(Cache {
                map: HashMap::new(),
                order: VecDeque::new(),
                cap: cfg.cache_entries,
            }),
            inflight: Semaphore::new(cfg.max_inflight),
            rotation: AtomicU64::new(0),
            cfg,
            table,
            stats: Stats::default(),
        })
    }

    /// Binds UDP and TCP on every listen address (port 0 picks one; TCP then
    /// uses the port UDP got).
    pub async fn bind(&self) -> Result<Bound> {
        let mut b = Bound {
            udp: vec![],
            tcp: vec![],
        };
        for addr in &self.cfg.listen {
            let udp = UdpSocket::bind(addr)
                .await
                .with_context(|| format!("binding UDP {addr}"))?;
            let at = udp.local_addr()?;
            let tcp = TcpListener::bind(at)
                .await
                .with_context(|| format!("binding TCP {at}"))?;
            b.udp.push(Arc::new(udp));
            b.tcp.push(tcp);
        }
        Ok(b)
    }

    /// Serves until the task is dropped.
    pub async fn serve(self: Arc<Self>, bound: Bound) {
        let mut tasks = tokio::task::JoinSet::new();
        for sock in bound.udp {
            let me = self.clone();
            tasks.spawn(async move { me.serve_udp(sock).await });
        }
        for l in bound.tcp {
            let me = self.clone();
            tasks.spawn(async move { me.serve_tcp(l).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn serve_udp(self: Arc<Self>, sock: Arc<UdpSocket>) {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let query = buf[..n].to_vec();
            let (me, sock) = (self.clone(), sock.clone());
            tokio::spawn(async move {
                if let Some(reply) = me.handle(&query, true).await {
                    let _ = sock.send_to(&reply, from).await;
                }
            });
        }
    }

    async fn serve_tcp(self: Arc<Self>, l: TcpListener) {
        loop {
            let Ok((stream, _)) = l.accept().await else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                // An idle or slow client is dropped rather than held.
                let _ = tokio::time::timeout(Duration::from_secs(10), me.serve_conn(stream)).await;
            });
        }
    }

    async fn serve_conn(&self, mut s: TcpStream) -> std::io::Result<()> {
        loop {
            let len = s.read_u16().await? as usize;
            let mut q = vec![0u8; len];
            s.read_exact(&mut q).await?;
            if let Some(reply) = self.handle(&q, false).await {
                s.write_u16(reply.len() as u16).await?;
                s.write_all(&reply).await?;
            }
        }
    }

    /// One query in, at most one reply out (malformed input gets FORMERR
    /// when it has a readable header, nothing otherwise).
    pub async fn handle(&self, query: &[u8], udp: bool) -> Option<Vec<u8>> {
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
            }
            return Some(reply);
        }
        let Ok(q) = Message::from_vec(query) else {
            return self.formerr(query);
        };
        if q.metadata.message_type != MessageType::Query || q.queries.len() != 1 {
            return self.formerr(query);
        }
        if q.queries[0].query_type() == RecordType::ANY {
            return self.refuse_any(&q);
        }
        let reply = self.forward(&q, query).await;
        let mut reply = match reply {
            Some(r) => r,
            None => {
                self.stats.servfail.fetch_add(1, Ordering::Relaxed);
                let mut m =
                    Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::ServFail);
                m.metadata.recursion_desired = q.metadata.recursion_desired;
                m.metadata.recursion_available = true;
                m.queries = q.queries.clone();
                m
            }
        };
        // The client's ID and question as it asked (0x20 case included).
        reply.metadata.id = q.metadata.id;
        reply.queries = q.queries.clone();
        let bytes = reply.to_vec().ok()?;
        let limit = if udp {
            q.edns.as_ref().map_or(512, |e| {
                e.max_payload().clamp(512, hsdns_common::EDNS_UDP_SIZE)
            }) as usize
        } else {
            65535
        };
        if bytes.len() <= limit {
            return Some(bytes);
        }
        self.stats.truncated.fetch_add(1, Ordering::Relaxed);
        reply.answers.clear();
        reply.authorities.clear();
        reply.additionals.clear();
        reply.metadata.truncation = true;
        reply.to_vec().ok()
    }

    /// ANY is answered as CoreDNS's `any` plugin does (RFC 8482): one
    /// synthesized HINFO "RFC8482", never the (forwarded, amplifiable)
    /// full set.
    fn refuse_any(&self, q: &Message) -> Option<Vec<u8>> {
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
        m.to_vec().ok()
    }

    fn formerr(&self, query: &[u8]) -> Option<Vec<u8>> {
        if query.len() < 12 || query[2] & 0x80 != 0 {
            // No header, or a response: never answer (a reply to a reply
            // is how reflection loops start).
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.stats.formerr.fetch_add(1, Ordering::Relaxed);
        let id = u16::from_be_bytes([query[0], query[1]]);
        let m = Message::error_msg(id, hickory_proto::op::OpCode::Query, ResponseCode::FormErr);
        m.to_vec().ok()
    }

    /// The upstream's reply (from the cache while its TTL lasts), or None
    /// when every upstream failed.
    async fn forward(&self, q: &Message, raw: &[u8]) -> Option<Message> {
        let question = &q.queries[0];
        let key = CacheKey {
            name: question.name().to_lowercase(),
            qtype: question.query_type(),
            qclass: question.query_class(),
            dnssec_ok: q.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        };
        let now = Instant::now();
        if let Some((mut m, age)) = self.cache.lock().ok()?.get(&key, now) {
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            let age = age.as_secs() as u32;
            for r in m.answers.iter_mut().chain(m.authorities.iter_mut()) {
                r.ttl = r.ttl.saturating_sub(age);
            }
            return Some(m);
        }
        let Ok(_permit) = self.inflight.try_acquire() else {
            return None;
        };
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        for up in &self.cfg.upstreams {
            let Some(m) = self.ask(*up, raw).await else {
                continue;
            };
            if let Some(ttl) = cache_ttl(&m)
                && let Ok(mut c) = self.cache.lock()
            {
                c.put(key, m.clone(), ttl, Instant::now());
            }
            return Some(m);
        }
        None
    }

    /// One upstream: UDP, then TCP when the UDP answer is truncated.
    async fn ask(&self, up: SocketAddr, raw: &[u8]) -> Option<Message> {
        let t = self.cfg.timeout;
        let udp = async {
            let bind: SocketAddr = if up.is_ipv4() {
                "0.0.0.0:0".parse().ok()?
            } else {
                "[::]:0".parse().ok()?
            };
            let s = UdpSocket::bind(bind).await.ok()?;
            s.connect(up).await.ok()?;
            s.send(raw).await.ok()?;
            let mut buf = vec![0u8; 65535];
            loop {
                let n = s.recv(&mut buf).await.ok()?;
                // Only the reply to this query (same ID) counts.
                if n >= 2 && buf[..2] == raw[..2] {
                    return Message::from_vec(&buf[..n]).ok();
                }
            }
        };
        let m = tokio::time::timeout(t, udp).await.ok().flatten()?;
        if !m.metadata.truncation {
            return Some(m);
        }
        let tcp = async {
            let mut s = TcpStream::connect(up).await.ok()?;
            s.write_u16(raw.len() as u16).await.ok()?;
            s.write_all(raw).await.ok()?;
            let len = s.read_u16().await.ok()? as usize;
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf).await.ok()?;
            Message::from_vec(&buf).ok()
        };
        tokio::time::timeout(t, tcp).await.ok().flatten()
    }
}
