//! Packets from valid queries, then faults: every header field, lengths,
//! counts, label bytes, compression pointers, EDNS, VLAN, IPv4 options and
//! IPv6, truncation and random tails. Each fault has a name, so a run can
//! say how often each was injected.

use std::net::{Ipv4Addr, Ipv6Addr};

use rand::{Rng, RngExt as _, seq::IndexedRandom as _};

use hsdns::records::RecordTable;

use super::{
    dns::{Opt, QuerySpec, labels, wire},
    faults::{dns_fault, frame_fault, ip4_options, options, payload_fault, raw_fault},
    frame::{FrameSpec, Ip, Tag},
};

/// A generated frame (or DNS message) and the faults injected into it.
pub struct Packet {
    pub frame: Vec<u8>,
    pub faults: Vec<&'static str>,
}

/// Names to ask for, drawn from the table and around it.
pub struct Generator {
    /// Names of the table: mostly answered.
    known: Vec<Vec<Vec<u8>>>,
    /// Those with IPv6 addresses (few in the table, so drawn apart).
    with_aaaa: Vec<Vec<Vec<u8>>>,
    /// Those with several addresses of a type: rotated, and the answers
    /// too large for some clients.
    multi: Vec<Vec<Vec<u8>>>,
    /// What an ndots:5 search list and typos make of them, and names at
    /// the edges of the zone: NXDOMAIN, or passed up.
    near: Vec<Vec<Vec<u8>>>,
}

const EXTRA: &[&str] = &[
    "",
    "cluster.local.",
    "svc.cluster.local.",
    "pod.cluster.local.",
    "169-254-10-10.test.pod.cluster.local.",
    "x.169-254-10-10.test.pod.cluster.local.",
    "dns.cluster.local.",
    "x.dns.cluster.local.",
    "ns.dns.cluster.local.",
    "hostmaster.cluster.local.",
    "x.hostmaster.cluster.local.",
    "dns-version.cluster.local.",
    "nosuch.svc.cluster.local.",
    "nosuch.test.svc.cluster.local.",
    "a.b.nosuch.test.svc.cluster.local.",
    "ext.prod.svc.cluster.local.",
    "empty.prod.svc.cluster.local.",
    "nginx-9.nginx-headless.test.svc.cluster.local.",
    "local.",
    "cluster.local.evil.",
    "clusterxlocal.",
    "example.test.",
    "com.",
    "10.10.254.169.in-addr.arpa.",
];

/// Every fault the generator knows, for the report (in order).
pub const FAULTS: &[&str] = &[
    "dns.id",
    "dns.flags",
    "dns.count",
    "dns.label_len",
    "dns.label_byte",
    "dns.long_label",
    "dns.fake_labels",
    "dns.pointer",
    "dns.ext_label",
    "dns.unterminated",
    "dns.long_name",
    "dns.empty_label",
    "dns.qtype",
    "dns.qclass",
    "dns.records",
    "dns.tail",
    "dns.truncate",
    "dns.random",
    "edns.add",
    "edns.remove",
    "edns.size",
    "edns.version",
    "edns.ext_rcode",
    "edns.flags",
    "edns.owner",
    "edns.type",
    "edns.rdlen",
    "edns.options",
    "edns.twice",
    "eth.tags",
    "eth.type",
    "ip4.version",
    "ip4.ihl",
    "ip4.options",
    "ip4.total",
    "ip4.frag",
    "ip4.proto",
    "ip4.ttl",
    "ip4.csum",
    "ip4.src",
    "ip4.dst",
    "ip6.version",
    "ip6.next",
    "ip6.payload_len",
    "ip6.src",
    "ip6.dst",
    "ip6.hop",
    "udp.sport",
    "udp.dport",
    "udp.len",
    "udp.csum",
    "raw.flip",
    "raw.set",
    "raw.truncate",
    "raw.tail",
    "raw.insert",
    "raw.delete",
    "raw.random",
];

fn name_labels(n: &hickory_proto::rr::Name) -> Vec<Vec<u8>> {
    n.iter().map(<[u8]>::to_vec).collect()
}

impl Generator {
    pub fn new(table: &RecordTable) -> Self {
        let known: Vec<Vec<Vec<u8>>> = table.iter().map(|(n, _)| name_labels(&n)).collect();
        let with_aaaa = table
            .iter()
            .filter(|(_, e)| !e.aaaa.is_empty())
            .map(|(n, _)| name_labels(&n))
            .collect();
        let multi = table
            .iter()
            .filter(|(_, e)| e.a.len() > 1 || e.aaaa.len() > 1)
            .map(|(n, _)| name_labels(&n))
            .collect();
        let mut near: Vec<Vec<Vec<u8>>> = EXTRA.iter().map(|n| labels(n)).collect();
        let zone = name_labels(&table.zone().zone);
        for l in &known {
            // Under `svc`: what the user typed (the labels before `svc`),
            // then the search list's suffixes.
            let Some(at) = l.iter().position(|x| x == b"svc") else {
                continue;
            };
            if at + 1 + zone.len() != l.len() || at == 0 {
                continue;
            }
            let typed = &l[..at];
            for suffix in [
                "test.svc.cluster.local.",
                "prod.svc.cluster.local.",
                "svc.cluster.local.",
                "cluster.local.",
                "",
            ] {
                let mut n = typed.to_vec();
                n.extend(labels(suffix));
                if n != *l {
                    near.push(n);
                }
            }
        }
        Self {
            known,
            with_aaaa,
            multi,
            near,
        }
    }

    /// A query name's labels.
    fn name(&self, rng: &mut impl Rng) -> Vec<Vec<u8>> {
        let pool = match rng.random_range(0..100) {
            0..30 => &self.known,
            30..42 => &self.with_aaaa,
            42..55 => &self.multi,
            55..90 => &self.near,
            _ => &Vec::new(),
        };
        match pool.choose(rng) {
            Some(n) => n.clone(),
            None => {
                let mut n: Vec<Vec<u8>> = (0..rng.random_range(1..5))
                    .map(|_| {
                        let len = rng.random_range(1..12);
                        (0..len)
                            .map(|_| {
                                *b"abcdefghijklmnopqrstuvwxyz0123456789-"
                                    .choose(rng)
                                    .unwrap()
                            })
                            .collect()
                    })
                    .collect();
                if rng.random_bool(0.6) {
                    n.extend(labels("svc.cluster.local."));
                }
                n
            }
        }
    }

    /// A valid query in one of its valid shapes: any name of the pools,
    /// 0x20 case, A, AAAA or another type, with or without EDNS (any
    /// payload size, DO, options).
    fn query(&self, rng: &mut impl Rng) -> QuerySpec {
        let mut labels = self.name(rng);
        // 0x20: letters in random case.
        if rng.random_bool(0.3) {
            for l in &mut labels {
                for c in l.iter_mut() {
                    if c.is_ascii_alphabetic() && rng.random_bool(0.5) {
                        *c ^= 0x20;
                    }
                }
            }
        }
        let qtype = match rng.random_range(0..100) {
            0..45 => 1,
            45..80 => 28,
            _ => *[33u16, 16, 12, 255, 5, 6, 2, 15, 0, 65535, 252]
                .choose(rng)
                .unwrap(),
        };
        let mut q = QuerySpec::new(rng.random(), wire(&labels), qtype);
        q.flags = if rng.random_bool(0.8) { 0x0100 } else { 0 };
        if rng.random_bool(0.1) {
            q.flags |= 0x0010; // CD
        }
        if rng.random_bool(0.1) {
            q.flags |= 0x0020; // AD
        }
        if rng.random_bool(0.5) {
            let mut o = Opt::new(
                *[
                    512u16, 1232, 1232, 4096, 1400, 600, 0, 1, 511, 513, 1231, 1233, 65535,
                ]
                .choose(rng)
                .unwrap(),
            );
            if rng.random_bool(0.2) {
                o.flags = 0x8000; // DO
            }
            if rng.random_bool(0.25) {
                o.rdata = options(rng);
            }
            q.opt = Some(o);
        }
        q
    }

    /// How many faults a packet gets: none for 30%, else one to six.
    fn fault_count(rng: &mut impl Rng) -> usize {
        if rng.random_bool(0.3) {
            return 0;
        }
        let mut n = 1;
        while n < 6 && rng.random_bool(0.45) {
            n += 1;
        }
        n
    }

    /// A DNS message alone (for the userspace parsers): a query, then
    /// faults of the message's fields and bytes.
    pub fn message(&self, rng: &mut impl Rng) -> Packet {
        let mut q = self.query(rng);
        let dns_faults: Vec<&'static str> = FAULTS
            .iter()
            .copied()
            .filter(|f| f.starts_with("dns.") || f.starts_with("edns."))
            .collect();
        let drawn: Vec<&'static str> = (0..Self::fault_count(rng))
            .map(|_| *dns_faults.choose(rng).unwrap())
            .collect();
        let mut faults = Vec::new();
        for &fault in &drawn {
            if dns_fault(fault, &mut q, rng) {
                faults.push(fault);
            }
        }
        let mut payload = q.bytes();
        for &fault in &drawn {
            if payload_fault(fault, &mut payload, rng) {
                faults.push(fault);
            }
        }
        Packet {
            frame: payload,
            faults,
        }
    }

    /// One frame: a valid query in one of its valid shapes, then faults.
    pub fn packet(&self, rng: &mut impl Rng) -> Packet {
        let mut faults = Vec::new();
        let mut q = self.query(rng);
        let mut f = if rng.random_bool(0.7) {
            FrameSpec::v4(Vec::new())
        } else {
            FrameSpec::v6(Vec::new())
        };
        f.udp.sport = rng.random_range(1..=65535);
        if rng.random_bool(0.15) {
            f.tags.push(Tag {
                tpid: 0x8100,
                tci: rng.random_range(0..0x1000),
            });
        }
        match &mut f.ip {
            Ip::V4(h) => {
                h.id = rng.random();
                h.ttl = rng.random_range(1..=255);
                if rng.random_bool(0.2) {
                    h.frag = 0x4000; // DF
                }
                if rng.random_bool(0.1) {
                    h.options = ip4_options(rng);
                }
                if rng.random_bool(0.1) {
                    h.src = Ipv4Addr::new(169, 254, rng.random(), rng.random());
                }
            }
            Ip::V6(h) => {
                if rng.random_bool(0.2) {
                    h.tc_flow = rng.random();
                }
                if rng.random_bool(0.1) {
                    h.src = Ipv6Addr::new(0xfd00, rng.random(), 0, 0, 0, 0, 0, rng.random());
                }
            }
        }

        let n = Self::fault_count(rng);
        // Faults are drawn first, then applied at their level: the message
        // as fields, the message as bytes, the frame as fields, the frame
        // as bytes.
        let drawn: Vec<&'static str> = (0..n).map(|_| *FAULTS.choose(rng).unwrap()).collect();
        for &fault in &drawn {
            if dns_fault(fault, &mut q, rng) {
                faults.push(fault);
            }
        }
        let mut payload = q.bytes();
        for &fault in &drawn {
            if payload_fault(fault, &mut payload, rng) {
                faults.push(fault);
            }
        }
        f.payload = payload;
        for &fault in &drawn {
            if frame_fault(fault, &mut f, rng) {
                faults.push(fault);
            }
        }
        let mut frame = f.bytes();
        for &fault in &drawn {
            if raw_fault(fault, &mut frame, rng) {
                faults.push(fault);
            }
        }
        // BPF_PROG_TEST_RUN takes no frame shorter than an Ethernet header.
        while frame.len() < 14 {
            frame.push(rng.random());
        }
        Packet { frame, faults }
    }
}
