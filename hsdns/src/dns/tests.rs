//! The resolver against hickory's decoder and against the kernel-style
//! assembly of precomputed pieces.
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use proptest::prelude::*;

use super::answer::wire_len;
use super::testing::kernel_style_reply;
use super::{PassReason, Verdict, respond, respond_any_type};
use crate::records::{RecordTable, ZoneConfig};
use crate::source::{embedded_seed, parse_manifests};

const POD: &str = "nginx-0.nginx-headless.test.svc.cluster.local.";

fn seed() -> RecordTable {
    RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1_700_000_000)
}

/// The seed without its IPv6 slice: every name has A but no AAAA records.
fn seed_v4_only() -> RecordTable {
    let mut objects = embedded_seed();
    objects.slices.retain(|s| s.address_type == "IPv4");
    RecordTable::build(&ZoneConfig::default(), &objects, 9)
}

/// `name` with the letters chosen by `upper` (cycled) in upper case, as a
/// 0x20-encoding client sends it.
fn cased(name: &str, upper: &[bool]) -> Name {
    let lower = Name::from_ascii(name).unwrap().to_lowercase();
    let mut i = 0;
    let labels: Vec<Vec<u8>> = lower
        .iter()
        .map(|label| {
            label
                .iter()
                .map(|&b| {
                    i += 1;
                    if upper.is_empty() || !upper[i % upper.len()] {
                        b
                    } else {
                        b.to_ascii_uppercase()
                    }
                })
                .collect()
        })
        .collect();
    let mut n = Name::from_labels(labels).unwrap();
    n.set_fqdn(true);
    n
}

#[derive(Clone, Copy, Debug)]
struct Opts {
    id: u16,
    rd: bool,
    cd: bool,
    /// The client's EDNS UDP payload size, `None` for no OPT record.
    edns: Option<u16>,
}

const PLAIN: Opts = Opts {
    id: 0x1234,
    rd: true,
    cd: false,
    edns: Some(1232),
};

fn query_for(name: &Name, qtype: RecordType, class: DNSClass, o: Opts) -> Vec<u8> {
    let mut msg = Message::new(o.id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = o.rd;
    msg.metadata.checking_disabled = o.cd;
    let mut q = Query::query(name.clone(), qtype);
    q.set_query_class(class);
    msg.add_query(q);
    if let Some(size) = o.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(size);
        msg.set_edns(edns);
    }
    msg.to_vec().unwrap()
}

fn query(name: &str, qtype: RecordType, o: Opts) -> Vec<u8> {
    query_for(&Name::from_ascii(name).unwrap(), qtype, DNSClass::IN, o)
}

/// `respond`'s answer to `query`, asserted equal byte for byte to the
/// kernel-style assembly.
fn answered_like_kernel(table: &RecordTable, query: &[u8]) -> Vec<u8> {
    let Verdict::Answer(reply) = respond(table, query) else {
        panic!("not answered: {:?}", respond(table, query));
    };
    assert_eq!(
        Some(&reply),
        kernel_style_reply(query, table).as_ref(),
        "kernel-style bytes differ"
    );
    reply
}

/// Asserts `respond` answers, identically to the kernel-style assembly,
/// with a reply that decodes to exactly what the table holds. Returns it.
fn assert_answered(table: &RecordTable, query: &[u8]) -> Message {
    let reply = answered_like_kernel(table, query);

    let q = Message::from_vec(query).unwrap();
    let r = Message::from_vec(&reply).unwrap();
    let m = r.metadata;
    assert_eq!(m.id, q.metadata.id);
    assert_eq!(
        (m.message_type, m.op_code, m.response_code),
        (MessageType::Response, OpCode::Query, ResponseCode::NoError)
    );
    assert!(m.authoritative && !m.truncation && !m.recursion_available && !m.authentic_data);
    assert_eq!(m.recursion_desired, q.metadata.recursion_desired);
    assert_eq!(m.checking_disabled, q.metadata.checking_disabled);

    let qname = q.queries[0].name();
    let question_len = wire_len(qname) + 4;
    assert_eq!(r.queries.len(), 1);
    assert_eq!(
        reply[12..12 + question_len],
        query[12..12 + question_len],
        "question not as sent"
    );

    let entry = table.get(qname).unwrap();
    let ttl = table.zone().ttl;
    let want: Vec<RData> = match q.queries[0].query_type() {
        RecordType::A => entry.a.iter().map(|ip| RData::A(A(*ip))).collect(),
        _ => entry.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
    };
    if want.is_empty() {
        assert!(r.answers.is_empty());
        assert_eq!(r.authorities.len(), 1);
        let soa_rr = &r.authorities[0];
        let zone_as_asked = qname.trim_to(table.zone().zone.iter().len());
        assert!(
            soa_rr.name.eq_case(&zone_as_asked),
            "{} vs {zone_as_asked}",
            soa_rr.name
        );
        assert_eq!(soa_rr.ttl, ttl.min(300));
        let RData::SOA(soa) = &soa_rr.data else {
            panic!("not an SOA")
        };
        assert_eq!(soa.mname.to_ascii(), format!("ns.dns.{zone_as_asked}"));
        assert_eq!(soa.rname.to_ascii(), format!("hostmaster.{zone_as_asked}"));
        assert_eq!(
            (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
            (table.serial(), 7200, 1800, 86400, ttl)
        );
    } else {
        assert!(r.authorities.is_empty());
        assert!(
            r.answers
                .iter()
                .all(|rr| rr.name.eq_case(qname) && rr.ttl == ttl && rr.dns_class == DNSClass::IN)
        );
        let got: Vec<RData> = r.answers.iter().map(|rr| rr.data.clone()).collect();
        assert_eq!(got, want);
    }
    assert!(r.additionals.is_empty());
    assert_eq!(r.edns.is_some(), q.edns.is_some());
    if let Some(edns) = &r.edns {
        assert_eq!(
            (edns.max_payload(), edns.version(), edns.flags().dnssec_ok),
            (1232, 0, false)
        );
        assert!(edns.options().options.is_empty());
    }
    r
}

/// Asserts `respond` answers with the header and question alone, TC set
/// (and the OPT record when the query had one), identically to the
/// kernel-style assembly.
fn assert_truncated(table: &RecordTable, query: &[u8]) {
    let reply = answered_like_kernel(table, query);
    let q = Message::from_vec(query).unwrap();
    let r = Message::from_vec(&reply).unwrap();
    let m = r.metadata;
    assert_eq!(m.id, q.metadata.id);
    assert!(m.truncation && m.authoritative, "TC and AA set");
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!(m.recursion_desired, q.metadata.recursion_desired);
    assert!(r.answers.is_empty() && r.authorities.is_empty() && r.additionals.is_empty());
    assert_eq!(r.queries, q.queries, "the question, as sent");
    let question_len = wire_len(q.queries[0].name()) + 4;
    assert_eq!(reply[12..12 + question_len], query[12..12 + question_len]);
    assert_eq!(r.edns.is_some(), q.edns.is_some());
    let limit = q
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().clamp(512, 1232));
    assert!(reply.len() <= usize::from(limit));
}

fn assert_pass(table: &RecordTable, query: &[u8], reason: PassReason) {
    assert_eq!(
        respond(table, query),
        Verdict::Pass(reason),
        "query {query:02x?}"
    );
}

#[test]
fn every_seed_name_and_type_matches_the_kernel_assembly() {
    let t = seed();
    let mut answered = 0;
    // Names answered in userspace (ns.dns.<zone>) are passed by both.
    for (name, _) in t.iter().filter(|(_, e)| e.kernel_answerable()) {
        let name = name.to_ascii();
        for qtype in [RecordType::A, RecordType::AAAA] {
            for upper in [&[][..], &[true], &[true, false], &[false, false, true]] {
                for edns in [None, Some(0), Some(512), Some(1232), Some(4096)] {
                    for (rd, cd) in [(false, false), (true, false), (false, true), (true, true)] {
                        let o = Opts {
                            id: answered,
                            rd,
                            cd,
                            edns,
                        };
                        let msg = assert_answered(
                            &t,
                            &query_for(&cased(&name, upper), qtype, DNSClass::IN, o),
                        );
                        let entry = t.get(&Name::from_ascii(&name).unwrap()).unwrap();
                        let want = if qtype == RecordType::A {
                            entry.a.len()
                        } else {
                            entry.aaaa.len()
                        };
                        assert_eq!(msg.answers.len(), want);
                        answered += 1;
                    }
                }
            }
        }
    }
    // Passed by both: ns.dns.<zone> and the SRV name (its addresses come
    // from userspace).
    assert_eq!(answered, (t.len() as u16 - 2) * 2 * 4 * 5 * 4);
}

#[test]
fn seed_service_answer_lists_all_three_pods() {
    let msg = assert_answered(
        &seed(),
        &query(
            "nginx-headless.test.svc.cluster.local.",
            RecordType::AAAA,
            PLAIN,
        ),
    );
    let got: Vec<String> = msg.answers.iter().map(|rr| rr.data.to_string()).collect();
    assert_eq!(got, ["fd00:10::10", "fd00:10::11", "fd00:10::12"]);
}

#[test]
fn nodata_carries_the_soa_in_the_question_case() {
    let t = seed_v4_only();
    for upper in [&[][..], &[true], &[false, true]] {
        for edns in [None, Some(1232)] {
            let q = query_for(
                &cased(POD, upper),
                RecordType::AAAA,
                DNSClass::IN,
                Opts { edns, ..PLAIN },
            );
            let msg = assert_answered(&t, &q);
            assert!(msg.answers.is_empty());
            let Verdict::Answer(reply) = respond(&t, &q) else {
                unreachable!()
            };
            // The SOA owner is a pointer to the zone inside the question.
            let authority_at = q.len() - if edns.is_some() { 11 } else { 0 };
            let zone_at = 12 + wire_len(&Name::from_ascii(POD).unwrap()) - wire_len(&t.zone().zone);
            assert_eq!(
                reply[authority_at..authority_at + 2],
                (0xC000 | zone_at as u16).to_be_bytes()
            );
        }
    }
    // The type that exists is still answered.
    assert_eq!(
        assert_answered(&t, &query(POD, RecordType::A, PLAIN))
            .answers
            .len(),
        1
    );
}

#[test]
fn ttl_and_zone_follow_the_table() {
    let cfg = ZoneConfig::new("corp.internal", 30).unwrap();
    let t = RecordTable::build(&cfg, &embedded_seed(), 3);
    let msg = assert_answered(
        &t,
        &query(
            "nginx-2.nginx-headless.test.svc.corp.internal.",
            RecordType::A,
            PLAIN,
        ),
    );
    assert_eq!(msg.answers[0].ttl, 30);
    let mut objects = embedded_seed();
    objects.slices.retain(|s| s.address_type == "IPv6");
    let t = RecordTable::build(&cfg, &objects, 3);
    assert_answered(
        &t,
        &query(
            "NGINX-2.nginx-headless.test.svc.Corp.Internal.",
            RecordType::A,
            PLAIN,
        ),
    );
}

fn headless_with(n: usize) -> RecordTable {
    let endpoints: String = (0..n)
        .map(|i| format!("- addresses: [169.254.{}.{}]\n", 20 + i / 200, i % 200 + 1))
        .collect();
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: big, namespace: test}}\nspec: {{clusterIP: None}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: big-1\n  namespace: test\n  \
         labels: {{kubernetes.io/service-name: big}}\naddressType: IPv4\nendpoints:\n{endpoints}"
    );
    RecordTable::build(
        &ZoneConfig::default(),
        &parse_manifests("big.yaml", &yaml).unwrap(),
        1,
    )
}

#[test]
fn size_limits_follow_the_client_buffer() {
    let t = headless_with(40);
    let name = "big.test.svc.cluster.local.";
    // 12 + 32 + 40 * 16 = 684 bytes: TC=1 without EDNS, and with an EDNS
    // size under it.
    assert_truncated(
        &t,
        &query(
            name,
            RecordType::A,
            Opts {
                edns: None,
                ..PLAIN
            },
        ),
    );
    assert_truncated(
        &t,
        &query(
            name,
            RecordType::A,
            Opts {
                edns: Some(600),
                ..PLAIN
            },
        ),
    );
    assert_eq!(
        assert_answered(&t, &query(name, RecordType::A, PLAIN))
            .answers
            .len(),
        40
    );
    assert_eq!(
        assert_answered(
            &t,
            &query(
                name,
                RecordType::A,
                Opts {
                    edns: Some(700),
                    ..PLAIN
                }
            )
        )
        .answers
        .len(),
        40
    );
    // Never above 1232, whatever the client offers.
    let t = headless_with(80);
    assert_truncated(
        &t,
        &query(
            name,
            RecordType::A,
            Opts {
                edns: Some(4096),
                ..PLAIN
            },
        ),
    );
    // 512 without EDNS is inclusive: 12 + 32 + 29 * 16 = 508, 30 records = 524.
    assert_answered(
        &headless_with(29),
        &query(
            name,
            RecordType::A,
            Opts {
                edns: None,
                ..PLAIN
            },
        ),
    );
    assert_truncated(
        &headless_with(30),
        &query(
            name,
            RecordType::A,
            Opts {
                edns: None,
                ..PLAIN
            },
        ),
    );
}

fn set_u16(bytes: &mut [u8], at: usize, v: u16) {
    bytes[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// A query with a hand-written question name (hickory cannot write bad ones).
fn raw_query(name: &[u8], arcount: u16) -> Vec<u8> {
    let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
    q.extend_from_slice(&arcount.to_be_bytes());
    q.extend_from_slice(name);
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

#[test]
fn header_rules_pass_as_unsupported_query() {
    let t = seed();
    let good = query(POD, RecordType::A, PLAIN);
    assert_answered(&t, &good);
    type Mutation = fn(&mut Vec<u8>);
    let cases: [(&str, Mutation); 8] = [
        ("QR=1", |q| q[2] |= 0x80),
        ("OPCODE=STATUS", |q| q[2] |= 2 << 3),
        ("OPCODE=NOTIFY", |q| q[2] |= 4 << 3),
        ("TC=1", |q| q[2] |= 0x02),
        ("QDCOUNT=2", |q| set_u16(q, 4, 2)),
        ("QDCOUNT=0", |q| set_u16(q, 4, 0)),
        ("ANCOUNT=1", |q| set_u16(q, 6, 1)),
        ("NSCOUNT=1", |q| set_u16(q, 8, 1)),
    ];
    for (what, mutate) in cases {
        let mut q = good.clone();
        mutate(&mut q);
        assert_eq!(
            respond(&t, &q),
            Verdict::Pass(PassReason::UnsupportedQuery),
            "{what}"
        );
    }
    let mut q = good.clone();
    set_u16(&mut q, 10, 2);
    assert_pass(&t, &q, PassReason::UnsupportedQuery);
}

#[test]
fn edns_rules() {
    let t = seed();
    let good = query(POD, RecordType::A, PLAIN);
    let opt_at = good.len() - 11;
    assert_eq!(good[opt_at..opt_at + 3], [0, 0, 41]);

    // A client cookie option (RFC 7873): answered as a server without
    // cookie support does, the option ignored and not echoed.
    let mut cookie = good.clone();
    set_u16(&mut cookie, opt_at + 9, 12);
    cookie.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(Message::from_vec(&cookie).unwrap().edns.is_some());
    assert_answered(&t, &cookie);
    let Verdict::Answer(reply) = respond(&t, &cookie) else {
        unreachable!()
    };
    let reply = Message::from_vec(&reply).unwrap();
    assert!(
        reply.edns.unwrap().options().as_ref().is_empty(),
        "no option echoed"
    );
    // Options that overrun the message are malformed.
    let mut overrun = cookie.clone();
    set_u16(&mut overrun, opt_at + 9, 13);
    assert_pass(&t, &overrun, PassReason::Malformed);

    let mut v1 = good.clone();
    v1[opt_at + 6] = 1;
    assert_pass(&t, &v1, PassReason::UnsupportedQuery);

    // DO=1 and other flags are accepted; the reply's OPT has DO clear.
    let mut dnssec_ok = good.clone();
    dnssec_ok[opt_at + 7] = 0x80;
    assert_answered(&t, &dnssec_ok);

    // An additional record that is not an OPT.
    let mut not_opt = query(
        POD,
        RecordType::A,
        Opts {
            edns: None,
            ..PLAIN
        },
    );
    set_u16(&mut not_opt, 10, 1);
    not_opt.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 169, 254, 0, 1]);
    assert_pass(&t, &not_opt, PassReason::UnsupportedQuery);
    let mut named_opt = query(
        POD,
        RecordType::A,
        Opts {
            edns: None,
            ..PLAIN
        },
    );
    set_u16(&mut named_opt, 10, 1);
    named_opt.extend_from_slice(&[1, b'a', 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
    assert_pass(&t, &named_opt, PassReason::UnsupportedQuery);

    // ARCOUNT=1 but the record is cut short.
    let mut short = good.clone();
    short.truncate(opt_at + 6);
    assert_pass(&t, &short, PassReason::Malformed);
    let mut missing = query(
        POD,
        RecordType::A,
        Opts {
            edns: None,
            ..PLAIN
        },
    );
    set_u16(&mut missing, 10, 1);
    assert_pass(&t, &missing, PassReason::Malformed);
}

#[test]
fn question_rules() {
    let t = seed();
    assert_pass(
        &t,
        &query(POD, RecordType::TXT, PLAIN),
        PassReason::UnsupportedType,
    );
    assert_pass(
        &t,
        &query(POD, RecordType::ANY, PLAIN),
        PassReason::UnsupportedType,
    );
    let pod = Name::from_ascii(POD).unwrap();
    assert_pass(
        &t,
        &query_for(&pod, RecordType::A, DNSClass::CH, PLAIN),
        PassReason::UnsupportedType,
    );
    assert_pass(
        &t,
        &query(
            "nginx-3.nginx-headless.test.svc.cluster.local.",
            RecordType::A,
            PLAIN,
        ),
        PassReason::UnknownName,
    );
    assert_pass(
        &t,
        &query("example.com.", RecordType::A, PLAIN),
        PassReason::UnknownName,
    );
    // The apex exists without addresses: NODATA, as the kernel answers.
    assert!(
        assert_answered(&t, &query("cluster.local.", RecordType::A, PLAIN))
            .answers
            .is_empty()
    );

    // Compression pointer in the question, even one hickory resolves.
    let mut ptr = raw_query(b"\x03foo\xc0\x0c", 0);
    assert_pass(&t, &ptr, PassReason::Malformed);
    ptr = raw_query(b"\xc0\x0c", 0);
    assert_pass(&t, &ptr, PassReason::Malformed);
    let label64 = [&[64u8][..], &[b'a'; 64], &[0]].concat();
    assert_pass(&t, &raw_query(&label64, 0), PassReason::Malformed);
    let label63 = [&[63u8][..], &[b'a'; 63], &[0]].concat();
    assert_pass(&t, &raw_query(&label63, 0), PassReason::UnknownName);
    // 4 x 64 + 1 = 257 bytes, over 255.
    let long: Vec<u8> = (0..4)
        .flat_map(|_| [&[63u8][..], &[b'a'; 63]].concat())
        .chain([0])
        .collect();
    assert_pass(&t, &raw_query(&long, 0), PassReason::Malformed);
    // Reserved label type 0b01.
    assert_pass(&t, &raw_query(b"\x41\0", 0), PassReason::Malformed);

    // Truncations at every point are malformed, never accepted.
    let good = query(
        POD,
        RecordType::A,
        Opts {
            edns: None,
            ..PLAIN
        },
    );
    for len in 0..good.len() {
        assert_pass(&t, &good[..len], PassReason::Malformed);
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert_pass(&t, &trailing, PassReason::Malformed);
    let mut trailing = query(POD, RecordType::A, PLAIN);
    trailing.extend_from_slice(b"junk");
    assert_pass(&t, &trailing, PassReason::Malformed);
}

#[test]
fn ignored_header_bits_do_not_change_acceptance() {
    let t = seed();
    let mut q = query(POD, RecordType::A, PLAIN);
    q[2] |= 0x04; // AA in a query
    q[3] |= 0x80 | 0x40 | 0x20 | 0x05; // RA, Z, AD, an RCODE
    let msg = assert_answered(&t, &q);
    assert!(!msg.metadata.authentic_data);
}

#[test]
fn pass_reasons_name_real_counters() {
    let c = hsdns_common::Counters {
        pass_unsupported_query: 1,
        pass_unknown_name: 2,
        ..Default::default()
    };
    assert_eq!(c.get(PassReason::UnsupportedQuery), 1);
    assert_eq!(c.get(PassReason::UnknownName), 2);
    assert_eq!(c.get(PassReason::Malformed), 0);
    let debug = format!("{c:?}");
    for r in hsdns_common::Verdict::ALL {
        assert!(debug.contains(&format!("{}:", r.name())), "{}", r.name());
    }
    // Every counter field is a verdict, in order.
    let names: Vec<&str> = c.fields().iter().map(|(n, _)| *n).collect();
    let verdicts: Vec<&str> = hsdns_common::Verdict::ALL
        .iter()
        .map(|v| v.name())
        .collect();
    assert_eq!(names, verdicts);
}

// ---- property tests: random tables, random casing, random flags ----

fn label() -> impl Strategy<Value = String> {
    "[a-z]([-a-z0-9]{0,14}[a-z0-9])?"
}

#[derive(Debug, Clone)]
struct Endpoint {
    host: Option<String>,
    v4: Option<[u8; 2]>,
    v6: Option<u64>,
    ready: Option<bool>,
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (
        proptest::option::of(label()),
        proptest::option::of(any::<[u8; 2]>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(host, v4, v6, ready)| Endpoint {
            host,
            v4,
            v6,
            ready,
        })
}

/// YAML for one headless service in namespace `ns` with dual-stack slices.
fn headless_yaml(svc: &str, ns: &str, endpoints: &[Endpoint]) -> String {
    let mut v4 = String::new();
    let mut v6 = String::new();
    for e in endpoints {
        let extra = format!(
            "{}{}",
            e.host
                .as_ref()
                .map(|h| format!("  hostname: {h}\n"))
                .unwrap_or_default(),
            e.ready
                .map(|r| format!("  conditions: {{ready: {r}}}\n"))
                .unwrap_or_default()
        );
        if let Some([x, y]) = e.v4 {
            v4 += &format!("- addresses: [169.254.{x}.{y}]\n{extra}");
        }
        if let Some(bits) = e.v6 {
            let ip = std::net::Ipv6Addr::from((0xfd00u128 << 112) | u128::from(bits));
            v6 += &format!("- addresses: ['{ip}']\n{extra}");
        }
    }
    let slice = |family: &str, eps: &str| {
        format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-{}\n  namespace: {ns}\n  \
             labels: {{kubernetes.io/service-name: {svc}}}\naddressType: {family}\nendpoints:{eps}",
            family.to_lowercase()
        )
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: {ns}}}\nspec: {{clusterIP: None}}\n{}{}",
        slice(
            "IPv4",
            &if v4.is_empty() {
                " []\n".to_owned()
            } else {
                format!("\n{v4}")
            }
        ),
        slice(
            "IPv6",
            &if v6.is_empty() {
                " []\n".to_owned()
            } else {
                format!("\n{v6}")
            }
        ),
    )
}

fn table_strategy() -> impl Strategy<Value = RecordTable> {
    let zone = prop_oneof![
        Just("cluster.local".to_owned()),
        proptest::collection::vec(label(), 1..4).prop_map(|l| l.join("."))
    ];
    let services = proptest::collection::btree_map(
        (label(), label()),
        proptest::collection::vec(endpoint(), 1..8),
        1..4,
    );
    (zone, services, 1u32..100_000, any::<u32>()).prop_map(|(zone, services, ttl, serial)| {
        let yaml: Vec<String> = services
            .iter()
            .map(|((svc, ns), eps)| headless_yaml(svc, ns, eps))
            .collect();
        let objects = parse_manifests("prop.yaml", &yaml.join("---\n")).unwrap();
        RecordTable::build(&ZoneConfig::new(&zone, ttl).unwrap(), &objects, serial)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn resolver_equals_kernel_assembly(
        table in table_strategy(),
        pick in any::<prop::sample::Index>(),
        upper in proptest::collection::vec(any::<bool>(), 1..16),
        aaaa in any::<bool>(),
        id in any::<u16>(),
        byte2 in any::<u8>(),
        byte3 in any::<u8>(),
        edns in proptest::option::of(any::<u16>()),
    ) {
        prop_assume!(!table.is_empty());
        let (name, entry) = table.iter().nth(pick.index(table.len())).unwrap();
        prop_assume!(entry.kernel_answerable());
        let qtype = if aaaa { RecordType::AAAA } else { RecordType::A };
        let mut q = query_for(&cased(&name.to_ascii(), &upper), qtype, DNSClass::IN, Opts { id, rd: false, cd: false, edns });
        // Every header bit the kernel does not look at, randomised; the
        // opcode, QR and TC stay those of a plain query.
        q[2] = byte2 & 0x05;
        q[3] = byte3;
        match respond(&table, &q) {
            Verdict::Answer(r) if r[2] & 0x02 != 0 => assert_truncated(&table, &q),
            Verdict::Answer(_) => { assert_answered(&table, &q); }
            Verdict::Pass(reason) => prop_assert!(false, "passed: {reason:?}"),
        }
    }

    #[test]
    fn names_not_in_the_table_are_passed(table in table_strategy(), other in label(), upper in proptest::collection::vec(any::<bool>(), 1..8)) {
        let name = format!("{other}.{}", table.zone().zone);
        prop_assume!(table.get(&Name::from_ascii(&name).unwrap()).is_none());
        let q = query_for(&cased(&name, &upper), RecordType::A, DNSClass::IN, PLAIN);
        prop_assert_eq!(respond(&table, &q), Verdict::Pass(PassReason::UnknownName));
        prop_assert!(kernel_style_reply(&q, &table).is_none());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let t = seed();
        match respond(&t, &bytes) {
            Verdict::Answer(r) if r[2] & 0x02 != 0 => assert_truncated(&t, &bytes),
            Verdict::Answer(_) => { assert_answered(&t, &bytes); }
            Verdict::Pass(_) => {}
        }
    }
}

// ---- respond_any_type: the userspace answers for what the kernel passes ----

fn ask(t: &RecordTable, name: &str, qtype: RecordType, max_udp: Option<u16>) -> Message {
    match respond_any_type(t, &query(name, qtype, PLAIN), max_udp) {
        Verdict::Answer(bytes) => Message::from_vec(&bytes).unwrap(),
        other => panic!("{name} {qtype}: {other:?}"),
    }
}

fn rdata(rrs: &[hickory_proto::rr::Record]) -> Vec<String> {
    rrs.iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect()
}

#[test]
fn any_type_conformance_seed() {
    let t = seed();
    let m = ask(
        &t,
        "_web._tcp.nginx-headless.test.svc.cluster.local.",
        RecordType::SRV,
        Some(1232),
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(
        rdata(&m.answers),
        (0..3)
            .map(|i| format!(
                "_web._tcp.nginx-headless.test.svc.cluster.local. SRV 0 16 80 nginx-{i}.nginx-headless.test.svc.cluster.local."
            ))
            .collect::<Vec<_>>()
    );
    // Additional: each target's A then AAAA.
    assert_eq!(m.additionals.len(), 6);
    assert_eq!(
        rdata(&m.additionals)[..2],
        [
            "nginx-0.nginx-headless.test.svc.cluster.local. A 169.254.10.10",
            "nginx-0.nginx-headless.test.svc.cluster.local. AAAA fd00:10::10"
        ]
    );
    let m = ask(
        &t,
        "10.10.254.169.in-addr.arpa.",
        RecordType::PTR,
        Some(1232),
    );
    assert_eq!(
        rdata(&m.answers),
        ["10.10.254.169.in-addr.arpa. PTR nginx-0.nginx-headless.test.svc.cluster.local."]
    );
    let m = ask(&t, "dns-version.cluster.local.", RecordType::TXT, None);
    assert_eq!(rdata(&m.answers), ["dns-version.cluster.local. TXT 1.1.0"]);
    assert_eq!(m.answers[0].ttl, 28800);
    let m = ask(&t, "Cluster.Local.", RecordType::SOA, None);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    // A/AAAA as the kernel gives them.
    let m = ask(
        &t,
        "nginx-1.nginx-headless.test.svc.cluster.local.",
        RecordType::AAAA,
        None,
    );
    assert_eq!(
        rdata(&m.answers),
        ["nginx-1.nginx-headless.test.svc.cluster.local. AAAA fd00:10::11"]
    );
    // NODATA with SOA: existing names without the type.
    for (n, q) in [
        ("nginx-headless.test.svc.cluster.local.", RecordType::TXT),
        ("test.svc.cluster.local.", RecordType::A),
        ("_tcp.nginx-headless.test.svc.cluster.local.", RecordType::A),
        ("pod.cluster.local.", RecordType::A),
        ("dns-version.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::TXT),
    ] {
        let m = ask(&t, n, q, Some(1232));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{n}");
        assert!(m.answers.is_empty(), "{n}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{n}");
    }
    // NXDOMAIN with SOA.
    for n in [
        "nginx-0.nginx-headless.test.test.svc.cluster.local.",
        "example.com.svc.cluster.local.",
        "example.com.cluster.local.",
    ] {
        let m = ask(&t, n, RecordType::SRV, Some(1232));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{n}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{n}");
    }
    // Forwarded upstream.
    for (n, q) in [
        ("example.com.", RecordType::A),
        ("1.2.3.4.in-addr.arpa.", RecordType::PTR),
        ("10.10.254.169.in-addr.arpa.", RecordType::A),
        ("x.test.pod.cluster.local.", RecordType::A),
        ("ns.dns.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::NS),
        ("cluster.local.", RecordType::ANY),
    ] {
        assert!(
            matches!(
                respond_any_type(&t, &query(n, q, PLAIN), Some(1232)),
                Verdict::Pass(_)
            ),
            "{n} {q}"
        );
    }
}

const DUAL: &str = "apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: default}
spec:
  clusterIP: 10.3.0.1
  clusterIPs: [10.3.0.1, '2001:db8::1']
  ports: [{name: https, port: 443, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: foo, namespace: default}
spec: {type: ExternalName, externalName: www.example.com}
";

#[test]
fn any_type_conformance_dual_stack_cluster_ip_and_external_name() {
    let t = RecordTable::build(
        &ZoneConfig::default(),
        &parse_manifests("dual.yaml", DUAL).unwrap(),
        1,
    );
    let svc = "kubernetes.default.svc.cluster.local.";
    assert_eq!(
        rdata(&ask(&t, svc, RecordType::A, None).answers),
        [format!("{svc} A 10.3.0.1")]
    );
    assert_eq!(
        rdata(&ask(&t, svc, RecordType::AAAA, None).answers),
        [format!("{svc} AAAA 2001:db8::1")]
    );
    let m = ask(
        &t,
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
        None,
    );
    assert_eq!(
        rdata(&m.answers),
        [format!(
            "_https._tcp.kubernetes.default.svc.cluster.local. SRV 0 50 443 {svc}"
        )]
    );
    assert_eq!(
        rdata(&m.additionals),
        [
            format!("{svc} A 10.3.0.1"),
            format!("{svc} AAAA 2001:db8::1")
        ]
    );
    let m = ask(&t, "1.0.3.10.in-addr.arpa.", RecordType::PTR, None);
    assert_eq!(
        rdata(&m.answers),
        [format!("1.0.3.10.in-addr.arpa. PTR {svc}")]
    );
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.";
    assert_eq!(
        rdata(&ask(&t, v6, RecordType::PTR, None).answers),
        [format!("{v6} PTR {svc}")]
    );
    // ExternalName: the CNAME for every type; the kernel passes A/AAAA.
    for q in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
        let m = ask(&t, "foo.default.svc.cluster.local.", q, None);
        assert_eq!(
            rdata(&m.answers),
            ["foo.default.svc.cluster.local. CNAME www.example.com."]
        );
    }
    assert_eq!(
        respond(
            &t,
            &query("foo.default.svc.cluster.local.", RecordType::A, PLAIN)
        ),
        Verdict::Pass(PassReason::UserspaceOnly)
    );
}

#[test]
fn any_type_truncates_additional_first_then_sets_tc() {
    let t = headless_with(40);
    let n = "big.test.svc.cluster.local.";
    let q = query(
        n,
        RecordType::A,
        Opts {
            edns: None,
            ..PLAIN
        },
    );
    let Verdict::Answer(b) = respond_any_type(&t, &q, Some(1232)) else {
        panic!()
    };
    let m = Message::from_vec(&b).unwrap();
    assert!(m.metadata.truncation && m.answers.is_empty());
    let Verdict::Answer(b) = respond_any_type(&t, &q, None) else {
        panic!()
    };
    let m = Message::from_vec(&b).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn table_names_are_never_nxdomain_and_kernel_answers_match(table in table_strategy()) {
        for (name, entry) in table.iter() {
            let name = &name;
            prop_assert!(!table.is_nxdomain(name));
            for qtype in [RecordType::A, RecordType::AAAA] {
                let want: Vec<RData> = match qtype {
                    RecordType::A => entry.a.iter().map(|ip| RData::A(A(*ip))).collect(),
                    _ => entry.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
                };
                let section = super::answer_section(&table, name, qtype);
                prop_assert_eq!(section.map(|s| usize::from(s.count)), (!want.is_empty()).then_some(want.len()));
                if entry.kernel_answerable() {
                    let q = query_for(name, qtype, DNSClass::IN, PLAIN);
                    if let Verdict::Answer(bytes) = respond_any_type(&table, &q, None) {
                        let got: Vec<RData> = Message::from_vec(&bytes).unwrap().answers.iter().map(|r| r.data.clone()).collect();
                        prop_assert_eq!(got, want);
                    } else {
                        prop_assert!(false, "{} not answered", name);
                    }
                }
            }
        }
    }
}
