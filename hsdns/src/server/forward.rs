//! One question to one upstream, as a resolver that trusts no reply
//! (RFC 5452): a fresh random ID and a fresh socket (so a fresh random
//! source port) for every try; a reply counts only when it comes from the
//! address asked, carries that ID, is a response to a standard query, and
//! repeats the question (name compared case-insensitively, as hickory's
//! `Name` equality does; type and class).
//! Anything else is counted and ignored while the try's time runs.

use std::{net::SocketAddr, sync::atomic::AtomicU64, time::Duration};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
};

/// The UDP payload size hsdns asks upstreams for (and offers clients):
/// the DNS flag day 2020 value, no IP fragmentation.
pub const UPSTREAM_UDP_SIZE: u16 = hsdns_common::EDNS_UDP_SIZE;

/// Room for a UDP reply: larger than asked for is a lie and is cut off
/// (and then fails to parse).
const UDP_BUF: usize = 4096;

/// What the forwarder asks: the question and the client's flags that
/// change the answer.
#[derive(Clone, Debug)]
pub struct Ask {
    pub query: Query,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

impl Ask {
    /// The upstream query with `id`: RD set (the upstream recurses), EDNS
    /// with our payload size and the client's DO.
    fn message(&self, id: u16) -> Message {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = true;
        m.metadata.checking_disabled = self.checking_disabled;
        m.add_query(self.query.clone());
        let mut e = Edns::new();
        e.set_max_payload(UPSTREAM_UDP_SIZE);
        e.set_dnssec_ok(self.dnssec_ok);
        m.set_edns(e);
        m
    }

    /// Whether `reply` answers exactly this question with `id`.
    pub fn accepts(&self, id: u16, reply: &Message) -> bool {
        let q = &self.query;
        reply.metadata.id == id
            && reply.metadata.message_type == MessageType::Response
            && reply.metadata.op_code == OpCode::Query
            && reply.queries.len() == 1
            && reply.queries[0].query_type() == q.query_type()
            && reply.queries[0].query_class() == q.query_class()
            && *reply.queries[0].name() == *q.name()
    }
}

/// Counters of what upstreams sent that was not accepted.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Replies with the wrong ID, question, source or shape.
    pub rejected: AtomicU64,
}

/// One try at `up`: UDP, then TCP when the UDP reply is truncated; each
/// within `timeout`. `None` when the upstream gave no acceptable reply.
pub async fn ask(
    up: SocketAddr,
    what: &Ask,
    timeout: Duration,
    stats: &ForwardStats,
) -> Option<Message> {
    let m = tokio::time::timeout(timeout, ask_udp(up, what, stats))
        .await
        .ok()
        .flatten()?;
    if !m.metadata.truncation {
        return Some(m);
    }
    tokio::time::timeout(timeout, ask_tcp(up, what, stats))
        .await
        .ok()
        .flatten()
}

async fn ask_udp(up: SocketAddr, what: &Ask, stats: &ForwardStats) -> Option<Message> {
    use std::sync::atomic::Ordering::Relaxed;
    let id: u16 = rand::random();
    let wire = what.message(id).to_vec().ok()?;
    // Port 0: the kernel picks a random ephemeral port for each socket.
    let bind: SocketAddr = if up.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind).await.ok()?;
    // Connected: the kernel drops datagrams from any other address, and an
    // ICMP unreachable ends the try at once instead of at the timeout.
    s.connect(up).await.ok()?;
    s.send(&wire).await.ok()?;
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        let (n, from) = s.recv_from(&mut buf).await.ok()?;
        if from != up {
            stats.rejected.fetch_add(1, Relaxed);
            continue;
        }
        match Message::from_vec(&buf[..n]) {
            Ok(m) if what.accepts(id, &m) => return Some(m),
            _ => {
                stats.rejected.fetch_add(1, Relaxed);
            }
        }
    }
}

async fn ask_tcp(up: SocketAddr, what: &Ask, stats: &ForwardStats) -> Option<Message> {
    use std::sync::atomic::Ordering::Relaxed;
    let id: u16 = rand::random();
    let wire = what.message(id).to_vec().ok()?;
    let mut s = TcpStream::connect(up).await.ok()?;
    let mut framed = Vec::with_capacity(wire.len() + 2);
    framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
    framed.extend_from_slice(&wire);
    s.write_all(&framed).await.ok()?;
    let len = usize::from(s.read_u16().await.ok()?);
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.ok()?;
    match Message::from_vec(&buf) {
        Ok(m) if what.accepts(id, &m) => Some(m),
        _ => {
            stats.rejected.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{DNSClass, Name, RecordType};

    use super::*;

    fn ask_a(name: &str) -> Ask {
        Ask {
            query: Query::query(Name::from_ascii(name).unwrap(), RecordType::A),
            dnssec_ok: false,
            checking_disabled: false,
        }
    }

    fn reply_to(id: u16, name: &str, t: RecordType) -> Message {
        let mut m = Message::response(id, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m
    }

    #[test]
    fn only_the_reply_to_the_question_asked_is_accepted() {
        let a = ask_a("www.Example.test.");
        assert!(a.accepts(7, &reply_to(7, "WWW.example.TEST.", RecordType::A)));
        assert!(!a.accepts(8, &reply_to(7, "www.example.test.", RecordType::A)));
        assert!(!a.accepts(7, &reply_to(7, "evil.example.test.", RecordType::A)));
        assert!(!a.accepts(7, &reply_to(7, "www.example.test.", RecordType::AAAA)));
        let mut q = reply_to(7, "www.example.test.", RecordType::A);
        q.metadata.message_type = MessageType::Query;
        assert!(!a.accepts(7, &q), "a query is no reply");
        let mut two = reply_to(7, "www.example.test.", RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("evil.test.").unwrap(),
            RecordType::A,
        ));
        assert!(!a.accepts(7, &two));
        let mut ch = reply_to(7, "www.example.test.", RecordType::A);
        ch.queries[0].set_query_class(DNSClass::CH);
        assert!(!a.accepts(7, &ch));
    }

    #[test]
    fn the_upstream_query_asks_for_our_payload_size_and_the_clients_do_bit() {
        let mut a = ask_a("x.test.");
        a.dnssec_ok = true;
        let m = a.message(99);
        assert_eq!(m.metadata.id, 99);
        assert!(m.metadata.recursion_desired);
        let e = m.edns.unwrap();
        assert_eq!(e.max_payload(), UPSTREAM_UDP_SIZE);
        assert!(e.flags().dnssec_ok);
    }
}
