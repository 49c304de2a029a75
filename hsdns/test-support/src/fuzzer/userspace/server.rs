//! The server's request handling (`Server::handle`) under arbitrary
//! requests, forwarding to an upstream that lies.

use super::*;

/// An upstream that lies: each reply is, by turns, right, for another
/// ID, for another question, truncated (then garbage over TCP), huge,
/// random bytes, absent, or a right one with records of any TTL.
async fn lying_upstream(seed: u64) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (udp, tcp) = crate::loopback_udp_tcp().await;
    let addr = udp.local_addr().expect("address");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        let mut i = 0u64;
        loop {
            let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            i += 1;
            let mut rng = packet_rng(seed ^ 0x7570, i);
            if let Some(reply) = lie(&buf[..n], &mut rng, false) {
                let _ = udp.send_to(&reply, from).await;
            }
        }
    });
    tokio::spawn(async move {
        let mut i = 0u64;
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                continue;
            };
            i += 1;
            let mut rng = packet_rng(seed ^ 0x0074_6370, i);
            tokio::spawn(async move {
                let Ok(len) = s.read_u16().await else {
                    return;
                };
                let mut q = vec![0u8; usize::from(len)];
                if s.read_exact(&mut q).await.is_err() {
                    return;
                }
                if let Some(reply) = lie(&q, &mut rng, true) {
                    // The length prefix may lie too.
                    let len = if rng.random_bool(0.1) {
                        rng.random()
                    } else {
                        reply.len() as u16
                    };
                    let _ = s.write_u16(len).await;
                    let _ = s.write_all(&reply).await;
                }
            });
        }
    });
    addr
}

fn lie(query: &[u8], rng: &mut impl Rng, tcp: bool) -> Option<Vec<u8>> {
    use hickory_proto::{
        op::{MessageType, OpCode, ResponseCode},
        rr::{Name, RData, Record, RecordType, rdata},
    };
    let q = Message::from_vec(query).ok();
    let id = query
        .get(..2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let honest = |rng: &mut dyn FnMut() -> u32| {
        let q = q.as_ref()?;
        let mut m = Message::response(q.metadata.id, OpCode::Query);
        m.metadata.message_type = MessageType::Response;
        m.metadata.recursion_available = true;
        m.queries = q.queries.clone();
        let name = q.queries.first()?.name().clone();
        for _ in 0..(rng() % 4) {
            let ttl = match rng() % 4 {
                0 => 0,
                1 => u32::MAX,
                _ => rng() % 600,
            };
            m.add_answer(Record::from_rdata(
                name.clone(),
                ttl,
                RData::A(rdata::A::new(169, 254, 99, (rng() % 250) as u8)),
            ));
        }
        if rng().is_multiple_of(5) {
            m.metadata.response_code = ResponseCode::NXDomain;
            m.add_authority(Record::from_rdata(
                Name::root(),
                rng(),
                RData::SOA(rdata::SOA::new(
                    Name::root(),
                    Name::root(),
                    1,
                    1,
                    1,
                    1,
                    rng(),
                )),
            ));
        }
        Some(m)
    };
    let mut next = || rng.random::<u32>();
    match next() % 10 {
        0 => None,
        1 => {
            let mut m = honest(&mut next)?;
            m.metadata.id = m.metadata.id.wrapping_add(1);
            m.to_vec().ok()
        }
        2 => {
            let mut m = honest(&mut next)?;
            m.queries[0].set_name(Name::from_ascii("evil.example.test.").ok()?);
            m.queries[0].set_query_type(RecordType::A);
            m.to_vec().ok()
        }
        3 if !tcp => {
            let mut m = honest(&mut next)?;
            m.metadata.truncation = true;
            m.answers.clear();
            m.to_vec().ok()
        }
        4 => {
            // The right ID, then garbage.
            let mut b = id.to_be_bytes().to_vec();
            b.extend((0..next() % 600).map(|_| next() as u8));
            Some(b)
        }
        5 => {
            // Far over any UDP size: 200 records.
            let mut m = honest(&mut next)?;
            let name = m.queries[0].name().clone();
            for i in 0..200u8 {
                m.add_answer(Record::from_rdata(
                    name.clone(),
                    60,
                    RData::A(rdata::A::new(169, 254, 98, i)),
                ));
            }
            m.to_vec().ok()
        }
        6 => {
            let mut b = honest(&mut next)?.to_vec().ok()?;
            let n = b.len();
            b.truncate(12.max(n - (next() as usize % n.max(1)).min(n - 12)));
            Some(b)
        }
        _ => honest(&mut next)?.to_vec().ok(),
    }
}

/// `Server::handle` on `n` inputs, over UDP and TCP, with forwarding to a
/// lying upstream.
pub fn server(seed: u64, n: u64) -> Report {
    let table = table::table();
    let generator = Generator::new(&table);
    let inputs = (0..n)
        .map(|i| {
            let mut rng = packet_rng(seed ^ 0x7365_7276, i);
            let mut q = dns_input(&generator, &mut rng);
            // Outside the zone half the time: those are forwarded.
            if rng.random_bool(0.5)
                && let Ok(mut m) = Message::from_vec(&q)
                && let Some(question) = m.queries.first_mut()
            {
                let name = format!("n{}.example.test.", rng.random_range(0..50));
                question.set_name(hickory_proto::rr::Name::from_ascii(&name).expect("name"));
                if let Ok(b) = m.to_vec() {
                    q = b;
                }
            }
            (q, rng.random_bool(0.7))
        })
        .collect();
    server_inputs(seed, inputs)
}

/// `Server::handle` on the given `(message, over UDP)` inputs (the
/// campaign's, or the regression corpus's). Runs in a private network
/// namespace (loopback only) on its own thread: nothing leaves it, and it
/// vanishes with the thread.
pub fn server_inputs(seed: u64, inputs: Vec<(Vec<u8>, bool)>) -> Report {
    std::thread::spawn(move || {
        let mut r = Report::new("server (Server::handle)");
        // SAFETY: unshare affects only this thread (and what it spawns).
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            r.fail(format!(
                "unshare(CLONE_NEWNET): {} (run as root)",
                std::io::Error::last_os_error()
            ));
            return r;
        }
        let up = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        if !up.is_ok_and(|s| s.success()) {
            r.fail("ip link set lo up failed in the private namespace".into());
            return r;
        }
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(serve(seed, inputs, r))
    })
    .join()
    .expect("server fuzzing thread")
}

/// The server under test, forwarding to `upstream`. (The only place that
/// builds one: the server's configuration is its engineer's to change.)
fn make_server(upstream: SocketAddr) -> Arc<Server> {
    let mut cfg = ServerConfig::new(vec![], Duration::from_millis(50));
    cfg.max_inflight = 64;
    let upstreams = Upstreams::fixed(ZoneConfig::default().zone, None, vec![upstream]);
    Server::new(cfg, upstreams, Arc::new(RwLock::new(table::table())))
}

async fn serve(seed: u64, inputs: Vec<(Vec<u8>, bool)>, mut r: Report) -> Report {
    let server = make_server(lying_upstream(seed).await);
    let start = Instant::now();
    for (q, udp) in inputs {
        let t = Instant::now();
        let task = {
            let (server, q) = (server.clone(), q.clone());
            tokio::spawn(async move { server.handle(&q, udp).await })
        };
        let out = tokio::time::timeout(SLOWEST_ALLOWED, task).await;
        r.slowest = r.slowest.max(t.elapsed());
        r.inputs += 1;
        let failure = match out {
            Err(_) => Some(format!("no result within {SLOWEST_ALLOWED:?}")),
            Ok(Err(e)) if e.is_panic() => Some(format!("panic {:?}", panic_text(&*e.into_panic()))),
            Ok(Err(e)) => Some(format!("task failed: {e}")),
            Ok(Ok(None)) => {
                r.refused += 1;
                None
            }
            Ok(Ok(Some(reply))) => {
                r.accepted += 1;
                check_reply(&q, &reply, udp.then_some(EDNS_UDP_SIZE)).err()
            }
        };
        if let Some(f) = failure {
            r.fail(format!("{f} (udp {udp}) on {}", hex(&q)));
            if r.failed_inputs.len() < 20 {
                r.failed_inputs.push((q, udp));
            }
        }
    }
    r.elapsed = start.elapsed();
    r
}
