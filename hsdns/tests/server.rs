//! The userspace server on loopback against a fake upstream of the test's
//! own: local answers, forwarding, the cache, truncation, failures.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::A, rdata::SOA},
};
use hsdns::{
    records::{RecordTable, SharedTable, ZoneConfig},
    server::{Server, ServerConfig, Upstreams},
    source,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
};

/// A fake upstream: `<n>.example.test` has A 169.254.99.n (TTL from
/// `ttl`), `missing.example.test` is NXDOMAIN with an SOA minimum of 1 s,
/// `big.example.test` is truncated over UDP and whole over TCP.
struct Upstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    tcp_queries: Arc<AtomicUsize>,
    silent: Arc<AtomicBool>,
}

fn upstream_reply(q: &Message, ttl: u32, over_tcp: bool) -> Message {
    let query = q.queries[0].clone();
    let mut r = Message::response(q.metadata.id, OpCode::Query);
    r.metadata.message_type = MessageType::Response;
    r.metadata.recursion_available = true;
    r.add_query(query.clone());
    let name = query.name().to_ascii().to_lowercase();
    if name == "missing.example.test." {
        r.metadata.response_code = ResponseCode::NXDomain;
        let soa = SOA::new(
            Name::from_ascii("ns.example.test.").unwrap(),
            Name::from_ascii("host.example.test.").unwrap(),
            1,
            60,
            60,
            60,
            1,
        );
        r.add_authority(Record::from_rdata(
            Name::from_ascii("example.test.").unwrap(),
            60,
            RData::SOA(soa),
        ));
    } else if name == "big.example.test." && !over_tcp {
        r.metadata.truncation = true;
    } else if let Some(n) = name
        .strip_suffix(".example.test.")
        .and_then(|n| n.parse::<u8>().ok())
    {
        r.add_answer(Record::from_rdata(
            query.name().clone(),
            ttl,
            RData::A(A(Ipv4Addr::new(169, 254, 99, n))),
        ));
    } else if name == "big.example.test." {
        for i in 0..60u8 {
            r.add_answer(Record::from_rdata(
                query.name().clone(),
                ttl,
                RData::A(A(Ipv4Addr::new(169, 254, 98, i))),
            ));
        }
    }
    r
}

async fn upstream(ttl: u32) -> Upstream {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let tcp_queries = Arc::new(AtomicUsize::new(0));
    let silent = Arc::new(AtomicBool::new(false));
    let (q, s) = (queries.clone(), silent.clone());
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            q.fetch_add(1, Ordering::SeqCst);
            if s.load(Ordering::SeqCst) {
                continue;
            }
            let m = Message::from_vec(&buf[..n]).unwrap();
            let r = upstream_reply(&m, ttl, false).to_vec().unwrap();
            udp.send_to(&r, from).await.unwrap();
        }
    });
    let tq = tcp_queries.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut st, _)) = tcp.accept().await else {
                continue;
            };
            tq.fetch_add(1, Ordering::SeqCst);
            let len = st.read_u16().await.unwrap() as usize;
            let mut b = vec![0u8; len];
            st.read_exact(&mut b).await.unwrap();
            let m = Message::from_vec(&b).unwrap();
            let r = upstream_reply(&m, ttl, true).to_vec().unwrap();
            st.write_u16(r.len() as u16).await.unwrap();
            st.write_all(&r).await.unwrap();
        }
    });
    Upstream {
        addr,
        queries,
        tcp_queries,
        silent,
    }
}

fn zone() -> Name {
    Name::from_ascii("cluster.local.").unwrap()
}

fn table() -> RecordTable {
    let mut o = source::embedded_seed();
    let big =
        source::parse_manifests("big", &hsdns::testing::headless_yaml("big", "big", 100)).unwrap();
    o.services.extend(big.services);
    o.slices.extend(big.slices);
    RecordTable::build(&ZoneConfig::default(), &o, 1)
}

struct Running {
    addr: SocketAddr,
    server: Arc<Server>,
    tables: SharedTable,
}

async fn start(ups: Vec<SocketAddr>, timeout: Duration) -> Running {
    start_with(ups, timeout, table()).await
}

async fn start_with(ups: Vec<SocketAddr>, timeout: Duration, table: RecordTable) -> Running {
    let tables: SharedTable = Arc::new(RwLock::new(table));
    let mut cfg = ServerConfig::new(vec!["127.0.0.1:0".parse().unwrap()], timeout);
    cfg.max_inflight = 64;
    let upstreams = Upstreams::fixed(zone(), None, ups);
    let server = Server::new(cfg, upstreams, tables.clone());
    let bound = server.bind().await.unwrap();
    let addr = bound.local_addrs()[0];
    tokio::spawn(server.clone().serve(bound));
    Running {
        addr,
        server,
        tables,
    }
}

fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        m.set_edns(Edns::new());
    }
    m.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, q: &[u8]) -> Message {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(q, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
        .await
        .expect("a reply within 5 s")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(server: SocketAddr, q: &[u8]) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_u16(q.len() as u16).await.unwrap();
    s.write_all(q).await.unwrap();
    let len = s.read_u16().await.unwrap() as usize;
    let mut b = vec![0u8; len];
    s.read_exact(&mut b).await.unwrap();
    Message::from_vec(&b).unwrap()
}

#[tokio::test]
async fn table_names_are_answered_locally_over_udp_and_tcp() {
    let up = upstream(30).await;
    let r = start(vec![up.addr], Duration::from_millis(500)).await;
    let m = ask_udp(
        r.addr,
        &query(
            "_web._tcp.nginx-headless.test.svc.cluster.local.",
            RecordType::SRV,
            true,
        ),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.len(), 3, "one SRV per endpoint");
    assert_eq!(m.additionals.len(), 6, "each target's A and AAAA");
    assert!(m.metadata.authoritative);
    // 100 addresses: truncated over UDP, whole over TCP.
    let q = query("big.big.svc.cluster.local.", RecordType::A, true);
    let m = ask_udp(r.addr, &q).await;
    assert!(m.metadata.truncation, "TC over UDP");
    assert!(m.answers.is_empty());
    let m = ask_tcp(r.addr, &q).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    // Successive answers start with a different address, as the kernel's.
    let first = |m: &Message| m.answers[0].data.clone();
    let again = ask_tcp(r.addr, &q).await;
    assert_ne!(first(&m), first(&again), "rotated");
    assert_eq!(
        up.queries.load(Ordering::SeqCst),
        0,
        "nothing went upstream"
    );
}

#[tokio::test]
async fn external_names_are_forwarded_and_cached_for_their_ttl() {
    let up = upstream(1).await;
    let r = start(vec![up.addr], Duration::from_millis(500)).await;
    let q = query("7.Example.TEST.", RecordType::A, false);
    let m = ask_udp(r.addr, &q).await;
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(
        m.queries[0].name().to_ascii(),
        "7.Example.TEST.",
        "0x20 case kept"
    );
    assert_eq!(
        m.answers[0].data,
        RData::A(A(Ipv4Addr::new(169, 254, 99, 7)))
    );
    assert_eq!(up.queries.load(Ordering::SeqCst), 1);
    // Within the TTL: from the cache, in any letter case.
    let m = ask_udp(r.addr, &query("7.example.test.", RecordType::A, false)).await;
    assert_eq!(m.queries[0].name().to_ascii(), "7.example.test.");
    assert_eq!(up.queries.load(Ordering::SeqCst), 1, "cache hit");
    assert_eq!(r.server.stats.cache_hits.load(Ordering::SeqCst), 1);
    // After it, forwarded again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ask_udp(r.addr, &q).await;
    assert_eq!(up.queries.load(Ordering::SeqCst), 2, "expired");
    // Negative answers are cached by the SOA minimum (1 s here).
    let q = query("missing.example.test.", RecordType::A, false);
    assert_eq!(
        ask_udp(r.addr, &q).await.metadata.response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask_udp(r.addr, &q).await.metadata.response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(up.queries.load(Ordering::SeqCst), 3, "negative cache hit");
}

#[tokio::test]
async fn truncated_upstream_answers_are_retried_over_tcp() {
    let up = upstream(30).await;
    let r = start(vec![up.addr], Duration::from_millis(500)).await;
    let m = ask_tcp(r.addr, &query("big.example.test.", RecordType::A, true)).await;
    assert_eq!(m.answers.len(), 60);
    assert_eq!(up.tcp_queries.load(Ordering::SeqCst), 1);
    // Over UDP to us, 60 records do not fit 512 bytes: TC, so the client
    // retries over TCP.
    let m = ask_udp(r.addr, &query("big.example.test.", RecordType::A, false)).await;
    assert!(m.metadata.truncation);
}

#[tokio::test]
async fn failing_upstreams_give_servfail_in_bounded_time() {
    let up = upstream(30).await;
    up.silent.store(true, Ordering::SeqCst);
    // A closed port as the second upstream.
    let dead = UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let timeout = Duration::from_millis(300);
    let r = start(vec![up.addr, dead], timeout).await;
    let t0 = Instant::now();
    let m = ask_udp(r.addr, &query("1.example.test.", RecordType::A, false)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(
        t0.elapsed() < timeout * 2 + Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    // The server keeps serving, and garbage gets FORMERR or nothing.
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff], r.addr)
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), s.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(m.metadata.id, 0x1234);
    up.silent.store(false, Ordering::SeqCst);
    let m = ask_udp(r.addr, &query("2.example.test.", RecordType::A, false)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn any_is_answered_with_rfc8482_hinfo_not_forwarded() {
    let up = upstream(30).await;
    let r = start(vec![up.addr], Duration::from_millis(500)).await;
    for name in ["nginx-headless.test.svc.cluster.local.", "7.example.test."] {
        let m = ask_udp(r.addr, &query(name, RecordType::ANY, true)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert!(
            matches!(&m.answers[0].data, RData::HINFO(h) if &h.cpu[..] == b"RFC8482"),
            "{m:?}"
        );
    }
    assert_eq!(
        up.queries.load(Ordering::SeqCst),
        0,
        "ANY never goes upstream"
    );
}

#[tokio::test]
async fn a_new_table_takes_effect_for_the_next_query() {
    let up = upstream(30).await;
    let r = start(vec![up.addr], Duration::from_millis(500)).await;
    let q = query(
        "nginx-0.nginx-headless.test.svc.cluster.local.",
        RecordType::A,
        false,
    );
    assert_eq!(ask_udp(r.addr, &q).await.answers.len(), 1);
    *r.tables.write().unwrap() = RecordTable::build(&ZoneConfig::default(), &Default::default(), 2);
    let m = ask_udp(r.addr, &q).await;
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::NXDomain,
        "gone from the table"
    );
}

#[tokio::test]
async fn a_table_still_being_listed_sends_everything_upstream() {
    let up = upstream(30).await;
    let mut partial = RecordTable::new(&ZoneConfig::default(), 1);
    let r = start_with(vec![up.addr], Duration::from_millis(500), partial.clone()).await;
    // Not yet listed: a local answer would be NXDOMAIN, which is wrong for
    // a name that may well exist. The upstream (the cluster DNS) decides.
    let q = query(
        "nginx-0.nginx-headless.test.svc.cluster.local.",
        RecordType::A,
        false,
    );
    let m = ask_udp(r.addr, &q).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(up.queries.load(Ordering::SeqCst), 1, "forwarded");
    // Complete: answered here.
    partial.set_objects(&source::embedded_seed(), &mut Vec::new());
    partial.set_complete(true);
    *r.tables.write().unwrap() = partial;
    let m = ask_udp(r.addr, &q).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(up.queries.load(Ordering::SeqCst), 1, "answered locally");
}
