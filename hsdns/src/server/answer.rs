//! What a query gets: the table's answer (with an ExternalName's target
//! chased), a refusal, or the upstreams' reply through the cache, fitted
//! to the client (its ID, question, EDNS and size). The UDP and TCP paths
//! share it; the first look ([`Server::first_step`]) never waits, so what
//! needs forwarding can be refused at once when too much is in flight.

use std::sync::{PoisonError, atomic::Ordering};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};

use super::{Server, cache, forward};
use crate::dns::resolver;

/// What the synchronous first look at a query decided. Lives for one
/// query, never in a collection: the size difference does not matter.
#[expect(
    clippy::large_enum_variant,
    reason = "lives for one query, never in a collection"
)]
pub(super) enum Step {
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

/// How many CNAMEs an answer may chain (ExternalName to ExternalName...):
/// a loop ends here.
const MAX_CHAIN: usize = 8;

impl Server {
    pub(super) async fn finish(&self, step: Step, udp: bool) -> Option<Vec<u8>> {
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
    pub(super) fn first_step(&self, query: &[u8], udp: bool) -> Step {
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
    pub(super) fn servfail_for(&self, step: &Step) -> Option<Vec<u8>> {
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
