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

mod manifests;
mod server;

pub use manifests::{check_manifest, manifests, resolv_conf};
pub use server::{server, server_inputs};

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
