//! Arbitrary bytes into the userspace parsers: the resolver (the kernel's
//! reference and the server's answerer), the server's request handling
//! (`Server::handle`, forwarding to an upstream that lies), manifests and
//! resolv.conf. What must hold for every input: no panic, a bounded time,
//! and where something is returned, something well formed (a reply that
//! parses and carries the query's ID and question; an error that names
//! the file it is about).

use std::{
    any::Any,
    net::SocketAddr,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query},
    rr::RecordType,
    serialize::binary::BinEncodable as _,
};
use hsdns::{
    dns::resolver::{self, Verdict},
    records::{PodMode, RecordTable, TableOptions, ZoneConfig},
    server::{Server, ServerConfig, Upstreams},
    source,
};
use hsdns_common::{EDNS_UDP_SIZE, PLAIN_UDP_SIZE};
use rand::{Rng, RngExt as _, seq::IndexedRandom as _};

use super::{generate::Generator, oracle::hex, run::packet_rng, table};

/// What one parser went through.
#[derive(Default)]
pub struct Report {
    pub name: &'static str,
    pub inputs: u64,
    /// Inputs answered (a reply, objects, addresses).
    pub accepted: u64,
    /// Inputs refused with an error (or no reply).
    pub refused: u64,
    pub slowest: Duration,
    pub elapsed: Duration,
    pub failures: Vec<String>,
    /// The server's failing inputs, `(message, over UDP)`, to keep.
    pub failed_inputs: Vec<(Vec<u8>, bool)>,
    /// The failing manifests, to keep.
    pub failed_texts: Vec<String>,
}

impl Report {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            ..Self::default()
        }
    }

    fn fail(&mut self, what: String) {
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{}: {} inputs in {:.1} s, {} accepted, {} refused, slowest {:.1} ms, failures {}",
            self.name,
            self.inputs,
            self.elapsed.as_secs_f64(),
            self.accepted,
            self.refused,
            self.slowest.as_secs_f64() * 1e3,
            self.failures.len()
        )
    }
}

/// No input may take longer than this (debug builds included).
pub const SLOWEST_ALLOWED: Duration = Duration::from_secs(2);

fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// A DNS message to feed a parser: a query with faults, random bytes, or
/// a query of any type and class.
fn dns_input(generator: &Generator, rng: &mut impl Rng) -> Vec<u8> {
    match rng.random_range(0..10) {
        0..7 => generator.message(rng).frame,
        7 => (0..rng.random_range(0..700))
            .map(|_| rng.random())
            .collect(),
        8 => {
            // Header only, or less.
            let mut m = generator.message(rng).frame;
            m.truncate(rng.random_range(0..=12));
            m
        }
        _ => {
            let mut m = generator.message(rng).frame;
            if m.len() >= 16 {
                let n = m.len();
                // Any type and class, including meta types.
                m[n - 4..n - 2].copy_from_slice(&rng.random::<u16>().to_be_bytes());
                if rng.random_bool(0.3) {
                    m[n - 2..].copy_from_slice(&rng.random::<u16>().to_be_bytes());
                }
            }
            m
        }
    }
}

/// The client's UDP size limit: 512, or its EDNS size clamped to
/// 512..=`cap` (hickory reads the OPT for us).
fn udp_limit(query: &Message, cap: u16) -> usize {
    let client = query
        .edns
        .as_ref()
        .map_or(PLAIN_UDP_SIZE, |e| e.max_payload());
    usize::from(client.clamp(PLAIN_UDP_SIZE, cap.max(PLAIN_UDP_SIZE)))
}

/// A reply must answer a query (never a response: two servers replying
/// to each other's replies loop forever), parse, carry the query's ID,
/// and (when the query parses with one question) that question, which
/// only a FORMERR may leave out; over UDP it fits the client's limit.
fn check_reply(query: &[u8], reply: &[u8], udp_cap: Option<u16>) -> Result<(), String> {
    if query.get(2).is_some_and(|f| f & 0x80 != 0) {
        return Err("a reply to a response".into());
    }
    let r = Message::from_vec(reply).map_err(|e| format!("reply does not parse: {e}"))?;
    if query.len() >= 2 && reply[..2] != query[..2] {
        return Err("reply has another ID".into());
    }
    if let Ok(q) = Message::from_vec(query)
        && q.queries.len() == 1
    {
        let formerr = r.metadata.response_code == hickory_proto::op::ResponseCode::FormErr;
        if r.queries != q.queries && !(formerr && r.queries.is_empty()) {
            return Err(format!("question {:?} for {:?}", r.queries, q.queries));
        }
        if let Some(cap) = udp_cap
            && reply.len() > udp_limit(&q, cap)
        {
            return Err(format!(
                "{} bytes over UDP, the client takes {}",
                reply.len(),
                udp_limit(&q, cap)
            ));
        }
    }
    Ok(())
}

/// The resolver's three entry points on `n` inputs.
pub fn resolver(seed: u64, n: u64) -> Report {
    let table = table::table();
    let generator = Generator::new(&table);
    let mut r = Report::new("resolver (respond, respond_any_type)");
    let start = Instant::now();
    for i in 0..n {
        let mut rng = packet_rng(seed ^ 0x7265_736f_6c76, i);
        let q = dns_input(&generator, &mut rng);
        let cap = *[
            None,
            Some(0),
            Some(512),
            Some(1232),
            Some(4096),
            Some(65535),
        ]
        .choose(&mut rng)
        .unwrap();
        let rotate = rng.random_range(0..200);
        let t = Instant::now();
        let out = catch_unwind(AssertUnwindSafe(|| {
            (
                resolver::respond_rotated(&table, &q, rotate),
                resolver::respond_any_type_rotated(&table, &q, cap, rotate),
            )
        }));
        r.slowest = r.slowest.max(t.elapsed());
        r.inputs += 1;
        let (kernel_ref, any) = match out {
            Ok(v) => v,
            Err(p) => {
                r.fail(format!("panic {:?} on {}", panic_text(&*p), hex(&q)));
                continue;
            }
        };
        if let Verdict::Answer(reply) = &kernel_ref {
            // The kernel's reference answers A/AAAA within what the client
            // takes, never more than the kernel sends.
            if let Err(e) = check_reply(&q, reply, Some(EDNS_UDP_SIZE)) {
                r.fail(format!("respond: {e} on {}", hex(&q)));
            }
        }
        match any {
            Verdict::Answer(reply) => {
                r.accepted += 1;
                // `None` is TCP: any size a message can have.
                if let Err(e) = check_reply(&q, &reply, cap) {
                    r.fail(format!("respond_any_type({cap:?}): {e} on {}", hex(&q)));
                }
            }
            Verdict::Pass(_) => r.refused += 1,
        }
    }
    r.elapsed = start.elapsed();
    if r.slowest > SLOWEST_ALLOWED {
        r.fail(format!("an input took {:?}", r.slowest));
    }
    r
}

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

/// A manifest to parse: random bytes, the seed with its bytes or lines
/// mangled, or objects with fields of any type and value.
fn manifest_input(rng: &mut impl Rng) -> String {
    match rng.random_range(0..10) {
        0 => {
            let b: Vec<u8> = (0..rng.random_range(0..2000))
                .map(|_| rng.random())
                .collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        1..3 => {
            let mut b = source::SEED_YAML.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..b.len());
                match rng.random_range(0..4) {
                    0 => b[at] = *b" :-[]{}\"'&*!|>#%@\n\t0a".choose(rng).unwrap(),
                    1 => {
                        b.remove(at);
                    }
                    2 => b.insert(at, *b" :-[]{}\n".choose(rng).unwrap()),
                    _ => b[at] ^= 1 << rng.random_range(0..8),
                }
            }
            String::from_utf8_lossy(&b).into_owned()
        }
        3 => {
            let mut lines: Vec<&str> = source::SEED_YAML.lines().collect();
            for _ in 0..rng.random_range(1..6) {
                let a = rng.random_range(0..lines.len());
                let b = rng.random_range(0..lines.len());
                match rng.random_range(0..3) {
                    0 => lines.swap(a, b),
                    1 => {
                        lines.remove(a);
                    }
                    _ => lines.insert(a, lines[b]),
                }
            }
            lines.join("\n")
        }
        4 => {
            // Aliases expanding exponentially ("billion laughs").
            let mut y = String::from("l0: &l0 [\"x\", \"x\"]\n");
            for i in 1..rng.random_range(2..30) {
                y.push_str(&format!("l{i}: &l{i} [*l{p}, *l{p}]\n", p = i - 1));
            }
            y
        }
        _ => objects(rng),
    }
}

/// A value for a field: any YAML type, valid or not.
fn value(rng: &mut impl Rng) -> String {
    let long = "x".repeat(rng.random_range(60..300));
    [
        "null".to_string(),
        "~".into(),
        "[]".into(),
        "{}".into(),
        "-1".into(),
        "0".into(),
        "65536".into(),
        "99999999999999999999999".into(),
        "1e308".into(),
        "true".into(),
        "\"\"".into(),
        "\"169.254.1.1\"".into(),
        "\"999.1.1.1\"".into(),
        "\"fd00::1\"".into(),
        "\"fe80::1%eth0\"".into(),
        "\"::ffff:169.254.1.1\"".into(),
        "None".into(),
        "[None, None]".into(),
        "\"a.b\"".into(),
        "\"UPPER\"".into(),
        "\"-lead\"".into(),
        "\"é\"".into(),
        "\"a\\u0000b\"".into(),
        long,
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]".into(),
        "{a: {b: {c: {d: 1}}}}".into(),
        "&x [*x]".into(),
        "!!binary aGk=".into(),
    ]
    .choose(rng)
    .unwrap()
    .clone()
}

/// Services and EndpointSlices (as a list, or documents), valid but for
/// one or two fields that take any value: a field off a working object
/// reaches the validation behind deserialization, where a dozen wrong
/// fields would all stop at the first.
fn objects(rng: &mut impl Rng) -> String {
    let mut docs = Vec::new();
    for i in 0..rng.random_range(1..5) {
        let headless = rng.random_bool(0.5);
        let mut f: Vec<String> = [
            format!("svc{i}"),
            "ns".into(),
            if headless {
                "None".into()
            } else {
                format!("169.254.70.{i}")
            },
            if headless {
                "[None]".into()
            } else {
                format!("[169.254.70.{i}]")
            },
            "ClusterIP".into(),
            "www.example.test".into(),
            "[IPv4]".into(),
            "web".into(),
            "80".into(),
            "TCP".into(),
            format!("svc{i}-x"),
            "ns".into(),
            format!("svc{i}"),
            "IPv4".into(),
            "web".into(),
            "80".into(),
            "TCP".into(),
            format!("[169.254.71.{i}]"),
            format!("h{i}"),
            "true".into(),
            "true".into(),
            "false".into(),
            format!("pod-{i}"),
            "ns".into(),
        ]
        .into();
        for _ in 0..rng.random_range(1..=2) {
            let at = rng.random_range(0..f.len());
            f[at] = value(rng);
        }
        docs.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {}, namespace: {}}}\n\
             spec: {{clusterIP: {}, clusterIPs: {}, type: {}, externalName: {}, \
             ipFamilies: {}, ports: [{{name: {}, port: {}, protocol: {}}}]}}\n",
            f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
        ));
        docs.push(format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {}, namespace: {}, labels: {{kubernetes.io/service-name: {}}}}}\n\
             addressType: {}\nports: [{{name: {}, port: {}, protocol: {}}}]\n\
             endpoints:\n  - addresses: {}\n    hostname: {}\n    \
             conditions: {{ready: {}, serving: {}, terminating: {}}}\n    \
             targetRef: {{kind: Pod, name: {}}}\n",
            f[10],
            f[11],
            f[12],
            f[13],
            f[14],
            f[15],
            f[16],
            f[17],
            f[18],
            f[19],
            f[20],
            f[21],
            f[22]
        ));
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}}}\n",
            f[23]
        ));
    }
    if rng.random_bool(0.5) {
        let items: Vec<String> = docs
            .iter()
            .map(|d| {
                let mut item = String::from("- ");
                item.push_str(&d.replace('\n', "\n  "));
                item
            })
            .collect();
        format!("apiVersion: v1\nkind: List\nitems:\n{}", items.join("\n"))
    } else {
        docs.join("---\n")
    }
}

/// The option sets a table is built with: CoreDNS's defaults, and every
/// option that makes names of more object fields (pod names from
/// targetRefs, pod records).
fn table_options() -> [TableOptions; 2] {
    [
        TableOptions::default(),
        TableOptions {
            pods: PodMode::Insecure,
            endpoint_pod_names: true,
            nxdomain: true,
        },
    ]
}

/// Every name of `t` asked for SRV, A and PTR: the SRV model computes its
/// records (and their targets' names) per question, so a bad object could
/// fail there rather than at build time.
fn ask_every_name(t: &RecordTable) {
    for (name, _) in t.iter() {
        for qtype in [RecordType::SRV, RecordType::A, RecordType::PTR] {
            let mut m = Message::query();
            m.add_query(Query::query(name.clone(), qtype));
            if let Ok(q) = m.to_bytes() {
                let _ = resolver::respond_any_type(t, &q, Some(EDNS_UDP_SIZE));
            }
        }
    }
}

/// One manifest: objects (which must build a record table with every
/// option set, and answer for each of its names) or an error that names
/// the file; no panic, no more than [`SLOWEST_ALLOWED`]. `Ok(true)` when
/// it gave objects.
pub fn check_manifest(text: &str) -> Result<bool, String> {
    let t = Instant::now();
    let out = catch_unwind(AssertUnwindSafe(|| {
        source::parse_manifests_counted("fuzz.yaml", text).map(|(objects, _)| {
            let mut n = 0;
            for opts in table_options() {
                let t = RecordTable::build_with(&ZoneConfig::default(), &opts, &objects, 1);
                ask_every_name(&t);
                n += t.iter().count();
            }
            n
        })
    }));
    let took = t.elapsed();
    if took > SLOWEST_ALLOWED {
        return Err(format!("took {took:?}"));
    }
    match out {
        Err(p) => Err(format!("panic {:?}", panic_text(&*p))),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => {
            let msg = format!("{e:#}");
            if msg.starts_with("fuzz.yaml") {
                Ok(false)
            } else {
                Err(format!("error without the file's name: {msg:?}"))
            }
        }
    }
}

/// `parse_manifests` on `n` inputs; what parses goes on into a record
/// table.
pub fn manifests(seed: u64, n: u64) -> Report {
    let mut r = Report::new("manifests (parse_manifests, RecordTable::build)");
    let start = Instant::now();
    for i in 0..n {
        let mut rng = packet_rng(seed ^ 0x6d61_6e69, i);
        let text = manifest_input(&mut rng);
        let t = Instant::now();
        let out = check_manifest(&text);
        r.slowest = r.slowest.max(t.elapsed());
        r.inputs += 1;
        match out {
            Ok(true) => r.accepted += 1,
            Ok(false) => r.refused += 1,
            Err(e) => {
                let short: String = text.chars().take(300).collect();
                r.fail(format!("{e} on {short:?}"));
                if r.failed_texts.len() < 20 {
                    r.failed_texts.push(text);
                }
            }
        }
    }
    r.elapsed = start.elapsed();
    r
}

/// `resolv_conf_upstreams` on `n` random files.
pub fn resolv_conf(seed: u64, n: u64) -> Report {
    let mut r = Report::new("resolv.conf (resolv_conf_upstreams)");
    let start = Instant::now();
    let path = std::env::temp_dir().join(format!("hsdns-fuzz-resolv-{}", std::process::id()));
    for i in 0..n {
        let mut rng = packet_rng(seed ^ 0x7265_736f, i);
        let mut text = String::new();
        for _ in 0..rng.random_range(0..8) {
            let line = match rng.random_range(0..6) {
                0 => "nameserver 169.254.20.10".to_string(),
                1 => format!("nameserver {}", value(&mut rng).trim_matches('"')),
                2 => "nameserver fe80::1%eth0".into(),
                3 => "search a b c\noptions ndots:5".into(),
                4 => format!("nameserver{}", value(&mut rng)),
                _ => String::from_utf8_lossy(
                    &(0..rng.random_range(0..80))
                        .map(|_| rng.random::<u8>())
                        .collect::<Vec<u8>>(),
                )
                .into_owned(),
            };
            text.push_str(&line);
            text.push('\n');
        }
        if std::fs::write(&path, &text).is_err() {
            r.fail(format!("cannot write {}", path.display()));
            break;
        }
        let out = catch_unwind(|| hsdns::server::resolv_conf_upstreams(&path));
        r.inputs += 1;
        match out {
            Err(p) => r.fail(format!("panic {:?} on {text:?}", panic_text(&*p))),
            Ok(Ok(ups)) if ups.is_empty() => r.fail(format!("no upstream and no error: {text:?}")),
            Ok(Ok(_)) => r.accepted += 1,
            Ok(Err(e)) => {
                r.refused += 1;
                if !format!("{e:#}").contains(&path.display().to_string()) {
                    r.fail(format!("error without the file's name: {e:#}"));
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    r.elapsed = start.elapsed();
    r
}
