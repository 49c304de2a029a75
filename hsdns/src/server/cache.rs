//! The cache of upstream replies: bounded in bytes (moka with a weigher),
//! every entry's lifetime its reply's TTL capped by the operator's limits.
//!
//! Only a reply the forwarder accepted for exactly the question it asked is
//! stored, under that question: no record in it is ever served for another
//! name (no cache poisoning through additional or authority records).

use std::time::{Duration, Instant};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{DNSClass, Name, RData, RecordType},
};
use moka::{Expiry, sync::Cache as Moka};

/// What a reply depends on besides the name: the type and class asked, and
/// the two flags that change what an upstream sends (DNSSEC records with
/// DO, unvalidated data with CD).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CacheKey {
    /// Lowercase: the cache answers any spelling of the name.
    pub name: Name,
    pub qtype: RecordType,
    pub qclass: DNSClass,
    pub dnssec_ok: bool,
    pub checking_disabled: bool,
}

/// A stored reply: its wire form (smaller than a decoded `Message`, and
/// what the weigher counts), when it was stored and for how long.
#[derive(Debug)]
pub struct Entry {
    wire: Box<[u8]>,
    stored: Instant,
    ttl: Duration,
}

/// Caps on how long replies are kept, whatever their TTLs say.
#[derive(Clone, Copy, Debug)]
pub struct TtlCaps {
    pub positive: Duration,
    /// NXDOMAIN and NODATA (RFC 2308): short, so a name created after a
    /// miss resolves soon.
    pub negative: Duration,
}

struct PerEntryTtl;

impl Expiry<CacheKey, std::sync::Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        v: &std::sync::Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        v: &std::sync::Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Bookkeeping moka keeps per entry besides key and value, counted so a
/// flood of tiny replies cannot exceed the budget by its overhead.
const ENTRY_OVERHEAD: usize = 160;

pub struct Cache {
    inner: Moka<CacheKey, std::sync::Arc<Entry>>,
    caps: TtlCaps,
}

impl Cache {
    /// A cache of at most `max_bytes` (0: nothing is cached).
    pub fn new(max_bytes: u64, caps: TtlCaps) -> Self {
        let inner = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &CacheKey, v: &std::sync::Arc<Entry>| {
                let w = v.wire.len() + k.name.len() + ENTRY_OVERHEAD;
                u32::try_from(w).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Self { inner, caps }
    }

    /// The reply for `key` with every TTL lowered by its age, while it
    /// lives.
    pub fn get(&self, key: &CacheKey) -> Option<Message> {
        let e = self.inner.get(key)?;
        let age = e.stored.elapsed();
        if age >= e.ttl {
            return None;
        }
        let mut m = Message::from_vec(&e.wire).ok()?;
        let age = age.as_secs() as u32;
        for r in m
            .answers
            .iter_mut()
            .chain(m.authorities.iter_mut())
            .chain(m.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(m)
    }

    /// Stores an accepted reply, if it may be cached at all.
    pub fn put(&self, key: CacheKey, reply: &Message) {
        let Some(ttl) = cache_ttl(reply, self.caps) else {
            return;
        };
        if ttl.is_zero() {
            return;
        }
        let Ok(wire) = reply.to_vec() else { return };
        self.inner.insert(
            key,
            std::sync::Arc::new(Entry {
                wire: wire.into_boxed_slice(),
                stored: Instant::now(),
                ttl,
            }),
        );
    }

    /// Bytes held (moka's weighted size, after its pending maintenance).
    pub fn weighted_size(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.weighted_size()
    }

    pub fn entry_count(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.entry_count()
    }
}

/// How long an upstream reply may be cached: the smallest TTL of its
/// answers, or for a negative reply the SOA's (min of its TTL and minimum,
/// RFC 2308 5), each capped. NODATA without an SOA, truncated replies and
/// errors other than NXDOMAIN are not cached.
pub fn cache_ttl(m: &Message, caps: TtlCaps) -> Option<Duration> {
    match m.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        _ => return None,
    }
    if m.metadata.truncation {
        return None;
    }
    let negative = m.answers.is_empty() || m.metadata.response_code == ResponseCode::NXDomain;
    let (ttl, cap) = if negative {
        let soa = m.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })?;
        (soa, caps.negative)
    } else {
        (m.answers.iter().map(|r| r.ttl).min()?, caps.positive)
    };
    Some(Duration::from_secs(u64::from(ttl)).min(cap))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::{
        op::{OpCode, Query},
        rr::{Record, rdata::A, rdata::SOA},
    };

    use super::*;

    const CAPS: TtlCaps = TtlCaps {
        positive: Duration::from_secs(30),
        negative: Duration::from_secs(5),
    };

    fn key(name: &str) -> CacheKey {
        CacheKey {
            name: Name::from_ascii(name).unwrap(),
            qtype: RecordType::A,
            qclass: DNSClass::IN,
            dnssec_ok: false,
            checking_disabled: false,
        }
    }

    fn reply(name: &str, ttl: u32, n: usize) -> Message {
        let mut m = Message::response(1, OpCode::Query);
        let qname = Name::from_ascii(name).unwrap();
        m.add_query(Query::query(qname.clone(), RecordType::A));
        for i in 0..n {
            m.add_answer(Record::from_rdata(
                qname.clone(),
                ttl,
                RData::A(A(Ipv4Addr::new(169, 254, (i / 250) as u8, (i % 250) as u8))),
            ));
        }
        m
    }

    #[test]
    fn ttls_are_capped_positive_and_negative() {
        assert_eq!(
            cache_ttl(&reply("a.test.", 3600, 1), CAPS),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            cache_ttl(&reply("a.test.", 7, 1), CAPS),
            Some(Duration::from_secs(7))
        );
        let mut nx = reply("a.test.", 0, 0);
        nx.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(cache_ttl(&nx, CAPS), None, "no SOA: not cached");
        let n = Name::from_ascii("test.").unwrap();
        nx.add_authority(Record::from_rdata(
            n.clone(),
            3600,
            RData::SOA(SOA::new(n.clone(), n, 1, 1, 1, 1, 600)),
        ));
        assert_eq!(cache_ttl(&nx, CAPS), Some(Duration::from_secs(5)));
        let mut fail = reply("a.test.", 30, 1);
        fail.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(cache_ttl(&fail, CAPS), None);
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_not_entries() {
        let budget = 256 * 1024;
        let c = Cache::new(budget, CAPS);
        // 2,000 replies of about 1 KiB each: eight times the budget.
        for i in 0..2000 {
            let name = format!("n{i}.test.");
            c.put(key(&name), &reply(&name, 30, 60));
        }
        let held = c.weighted_size();
        assert!(held <= budget, "{held} bytes held, budget {budget}");
        assert!(c.entry_count() > 50, "{} entries", c.entry_count());
        // Small replies: many more of them fit in the same budget.
        let c = Cache::new(budget, CAPS);
        for i in 0..2000 {
            let name = format!("n{i}.test.");
            c.put(key(&name), &reply(&name, 30, 1));
        }
        assert!(c.weighted_size() <= budget);
        assert!(c.entry_count() > 900, "{} entries", c.entry_count());
    }

    #[test]
    fn a_hit_has_its_ttls_lowered_by_its_age() {
        let c = Cache::new(1 << 20, CAPS);
        c.put(key("a.test."), &reply("a.test.", 20, 1));
        let e = c.inner.get(&key("a.test.")).unwrap();
        // Pretend it was stored 3 s ago.
        c.inner.insert(
            key("a.test."),
            std::sync::Arc::new(Entry {
                wire: e.wire.clone(),
                stored: Instant::now() - Duration::from_secs(3),
                ttl: e.ttl,
            }),
        );
        let m = c.get(&key("a.test.")).unwrap();
        assert_eq!(m.answers[0].ttl, 17);
        assert!(c.get(&key("b.test.")).is_none());
    }
}
