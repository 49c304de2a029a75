//! DNS on the wire from inside namespaces: a stand-in upstream server that
//! records what reaches it, and dig as a pod's client.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{RData, Record, RecordType, rdata::A},
};

use super::{Netns, enter};

/// A plain upstream DNS server on a thread inside a namespace: answers A
/// queries for its names, NXDOMAIN otherwise, and records every query it
/// sees, so tests can tell which queries reached userspace.
pub struct Stub {
    pub seen: Arc<Mutex<Vec<(String, RecordType)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Stub {
    pub fn start(ns: &Netns, listen: &[SocketAddr], names: &[(&str, Ipv4Addr)]) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let fqdn = |n: &str| format!("{}.", n.trim_end_matches('.').to_lowercase());
        let names: Arc<Vec<(String, Ipv4Addr)>> =
            Arc::new(names.iter().map(|(n, a)| (fqdn(n), *a)).collect());
        let mut threads = Vec::new();
        for addr in listen {
            let (path, addr) = (ns.path(), *addr);
            let (seen, stop, names) = (seen.clone(), stop.clone(), names.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(thread::spawn(move || {
                enter(&path);
                let sock =
                    UdpSocket::bind(addr).unwrap_or_else(|e| panic!("stub bind {addr}: {e}"));
                sock.set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                tx.send(()).unwrap();
                let mut buf = [0u8; 1500];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(q) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let Some(query) = q.queries.first().cloned() else {
                        continue;
                    };
                    let qname = query.name().to_ascii().to_lowercase();
                    seen.lock()
                        .unwrap()
                        .push((qname.clone(), query.query_type()));
                    let mut r = Message::response(q.metadata.id, OpCode::Query);
                    r.metadata.message_type = MessageType::Response;
                    r.metadata.recursion_desired = q.metadata.recursion_desired;
                    r.metadata.recursion_available = true;
                    r.add_query(query.clone());
                    match names.iter().find(|(n, _)| *n == qname) {
                        Some((_, a)) if query.query_type() == RecordType::A => {
                            r.add_answer(Record::from_rdata(
                                query.name().clone(),
                                30,
                                RData::A(A(*a)),
                            ));
                        }
                        Some(_) => {}
                        None => r.metadata.response_code = ResponseCode::NXDomain,
                    }
                    let _ = sock.send_to(&r.to_vec().unwrap(), from);
                }
            }));
            rx.recv_timeout(Duration::from_secs(5))
                .expect("stub listening");
        }
        Self {
            seen,
            stop,
            threads,
        }
    }

    pub fn seen(&self) -> Vec<(String, RecordType)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What dig printed, parsed.
#[derive(Debug, Clone)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    /// (name, type, data) of the answer section, in order.
    pub answers: Vec<(String, String, String)>,
    pub raw: String,
}

impl Dig {
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.answers
            .iter()
            .filter_map(|(_, t, d)| (t == "A" || t == "AAAA").then(|| d.parse().ok()).flatten())
            .collect()
    }
}

/// Runs dig inside `ns` against `server` (one try, 2 s) and parses it.
pub fn dig(ns: &Netns, server: IpAddr, name: &str, qtype: &str, extra: &[&str]) -> Dig {
    let out = ns
        .cmd("dig")
        .args([&format!("@{server}"), name, qtype, "+tries=1", "+time=2"])
        .args(extra)
        .output()
        .expect("running dig (bind9-dnsutils)");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = raw
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("NO REPLY")
        .to_string();
    let flags = raw
        .split(";; flags: ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .map(|f| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let mut answers = Vec::new();
    let mut in_answer = false;
    for line in raw.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            in_answer = true;
            continue;
        }
        if in_answer {
            if line.trim().is_empty() || line.starts_with(";;") {
                in_answer = false;
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 5 {
                answers.push((f[0].to_string(), f[3].to_string(), f[4..].join(" ")));
            }
        }
    }
    Dig {
        status,
        flags,
        answers,
        raw,
    }
}
