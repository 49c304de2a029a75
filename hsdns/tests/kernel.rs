//! The XDP program through BPF_PROG_TEST_RUN: a table of (input packet,
//! expected verdict, expected output), each answer compared byte for byte
//! with the userspace resolver's answer to the same query.
//!
//! Needs root (it loads BPF programs): run through `cargo xtask test`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use aya::{
    Ebpf,
    programs::{TestRun as _, TestRunOptions},
};
use hickory_proto::{
    op::Message,
    rr::{RecordType, rdata::opt::EdnsOption},
};
use hsdns::{
    dns::resolver::{self, Verdict as UserVerdict},
    loader::{self, Capacities},
    maps::{AnswerWrite, Backend as _, NameWrite, Syncer, bpf::BpfMaps},
    records::{RecordTable, ZoneConfig},
    source,
    testing::*,
};
use hsdns_common::{Counters, NameRecord, REF_NODATA};

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "this test loads BPF programs: run it as root (cargo xtask test); \
             it does not skip"
        );
    }
}

fn table() -> RecordTable {
    let mut objects = source::embedded_seed();
    for (name, n) in [("big40", 40), ("big100", 100)] {
        let extra = source::parse_manifests(name, &headless_yaml("big", name, n)).unwrap();
        objects.services.extend(extra.services);
        objects.slices.extend(extra.slices);
    }
    RecordTable::build(&ZoneConfig::default(), &objects, 12345)
}

struct Kernel {
    ebpf: Ebpf,
    syncer: Syncer<BpfMaps>,
    table: RecordTable,
}

impl Kernel {
    fn new(answering: bool) -> Self {
        Self::with_nxdomain(answering, false)
    }

    fn with_nxdomain(answering: bool, nxdomain: bool) -> Self {
        require_root();
        let caps = Capacities::default();
        let mut ebpf = loader::load(&caps).expect("load");
        let mut maps = BpfMaps::take(&mut ebpf).unwrap();
        maps.add_dns_addr(IpAddr::V4(DNS4)).unwrap();
        maps.add_dns_addr(IpAddr::V6(DNS6)).unwrap();
        let mut table = table();
        let mut syncer = Syncer::new(maps, &caps);
        syncer.set_nxdomain(nxdomain);
        syncer.write_soa(&table).unwrap();
        syncer.sync_new(&mut table).unwrap();
        syncer.backend_mut().set_answering(answering).unwrap();
        Self {
            ebpf,
            syncer,
            table,
        }
    }

    fn counters(&self) -> Counters {
        self.syncer.backend().counters().unwrap()
    }

    fn run(&mut self, pkt: &[u8]) -> (u32, Vec<u8>) {
        let prog = loader::program(&mut self.ebpf).unwrap();
        let mut out = vec![0u8; 4096];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(pkt),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }
}

/// Parses a reply frame, checks every header invariant against the query
/// frame, and returns the DNS payload.
fn check_reply(q: &Frame, out: &[u8]) -> Vec<u8> {
    assert_eq!(&out[0..6], &CLIENT_MAC, "destination MAC is the client's");
    assert_eq!(&out[6..12], &NODE_MAC, "source MAC is ours");
    let mut o = 12;
    if let Some(tci) = q.vlan {
        assert_eq!(
            &out[12..16],
            &[0x81, 0, (tci >> 8) as u8, tci as u8],
            "VLAN tag kept"
        );
        o = 16;
    }
    let l4 = match (q.src, q.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            assert_eq!(&out[o..o + 2], &[0x08, 0x00]);
            let ip = &out[o + 2..o + 22];
            assert_eq!(ip[0], 0x45, "reply has a plain 20-byte IPv4 header");
            assert_eq!(
                u16::from_be_bytes([ip[2], ip[3]]) as usize,
                out.len() - o - 2,
                "IPv4 total length"
            );
            assert_eq!(fold(sum16(ip)), 0xffff, "IPv4 header checksum");
            assert_eq!(&ip[12..16], &d.octets(), "source is the DNS address");
            assert_eq!(&ip[16..20], &s.octets(), "destination is the client");
            assert_eq!(
                u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff,
                0,
                "not a fragment"
            );
            o + 22
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            assert_eq!(&out[o..o + 2], &[0x86, 0xdd]);
            let ip = &out[o + 2..o + 42];
            assert_eq!(ip[0] >> 4, 6);
            assert_eq!(
                u16::from_be_bytes([ip[4], ip[5]]) as usize,
                out.len() - o - 42,
                "IPv6 payload length"
            );
            assert_eq!(ip[6], 17);
            assert_eq!(&ip[8..24], &d.octets());
            assert_eq!(&ip[24..40], &s.octets());
            o + 42
        }
        _ => unreachable!(),
    };
    let udp = &out[l4..];
    assert_eq!(
        u16::from_be_bytes([udp[0], udp[1]]),
        q.dport,
        "source port 53"
    );
    assert_eq!(
        u16::from_be_bytes([udp[2], udp[3]]),
        q.sport,
        "client's port"
    );
    assert_eq!(
        u16::from_be_bytes([udp[4], udp[5]]) as usize,
        udp.len(),
        "UDP length"
    );
    let mut zeroed = udp.to_vec();
    zeroed[6] = 0;
    zeroed[7] = 0;
    assert_eq!(
        u16::from_be_bytes([udp[6], udp[7]]),
        l4_checksum(q.dst, q.src, &zeroed),
        "UDP checksum"
    );
    udp[8..].to_vec()
}

/// Runs one query frame through the kernel and checks it against the
/// userspace resolver: the same verdict, and for answers the same bytes.
fn expect_same(k: &mut Kernel, f: &Frame) -> (u32, Option<Message>) {
    let before = k.counters();
    let input = f.bytes();
    let (action, out) = k.run(&input);
    let after = k.counters();
    match resolver::respond(&k.table, &f.payload) {
        UserVerdict::Answer(expected) => {
            assert_eq!(action, XDP_TX, "userspace answers this, so must the kernel");
            let dns = check_reply(f, &out);
            // The kernel rotates multi-address answers; it must equal the
            // userspace answer rotated by some number of places.
            if dns != expected {
                let rot = rotation(&k.table, &f.payload, &dns);
                assert!(rot.is_some(), "kernel and userspace answers differ");
            }
            let msg = Message::from_vec(&dns).expect("reply parses");
            let q = Message::from_vec(&f.payload).unwrap();
            assert_eq!(msg.metadata.id, q.metadata.id);
            assert_eq!(
                msg.queries, q.queries,
                "answers exactly the question, as sent"
            );
            assert_eq!(
                answered(&after) - answered(&before),
                1,
                "an answered counter moved"
            );
            (action, Some(msg))
        }
        UserVerdict::Pass(reason) => {
            assert_eq!(
                action, XDP_PASS,
                "userspace passes this ({reason:?}), so must the kernel"
            );
            assert_eq!(out, input, "a passed packet goes up untouched");
            (action, None)
        }
    }
}

/// By how many places the kernel rotated the addresses in `reply`, if it is
/// the userspace answer rotated at all.
fn rotation(table: &RecordTable, query: &[u8], reply: &[u8]) -> Option<usize> {
    (0..80).find(|&r| {
        resolver::respond_rotated(table, query, r) == UserVerdict::Answer(reply.to_vec())
    })
}

fn answered(c: &Counters) -> u64 {
    c.answered_a + c.answered_aaaa + c.answered_nodata + c.answered_nxdomain
}

/// Runs a frame that must pass, checking that exactly `field` counted it.
fn expect_pass(k: &mut Kernel, f: &Frame, field: fn(&Counters) -> u64, what: &str) {
    let before = k.counters();
    let input = f.bytes();
    let (action, out) = k.run(&input);
    let after = k.counters();
    assert_eq!(action, XDP_PASS, "{what}: must pass");
    assert_eq!(out, input, "{what}: a passed packet goes up untouched");
    assert_eq!(
        field(&after) - field(&before),
        1,
        "{what}: its counter moved"
    );
    assert_eq!(
        answered(&after),
        answered(&before),
        "{what}: nothing answered"
    );
}

const POD: &str = "nginx-0.nginx-headless.test.svc.cluster.local.";
const SVC: &str = "nginx-headless.test.svc.cluster.local.";

fn ips(msg: &Message) -> Vec<IpAddr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
            hickory_proto::rr::RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn answers_a_and_aaaa_for_known_names() {
    let mut k = Kernel::new(true);
    let before = k.counters();
    let (_, m) = expect_same(&mut k, &Frame::v4(query(POD, RecordType::A, None)));
    assert_eq!(ips(&m.unwrap()), vec![IpAddr::V4(CLIENT4)]);
    let (_, m) = expect_same(&mut k, &Frame::v4(query(SVC, RecordType::A, Some(1232))));
    let m = m.unwrap();
    assert_eq!(ips(&m).len(), 3, "every ready endpoint");
    assert!(m.edns.is_some(), "OPT echoed when the query had one");
    let (_, m) = expect_same(&mut k, &Frame::v6(query(POD, RecordType::AAAA, None)));
    assert_eq!(ips(&m.unwrap()), vec![IpAddr::V6(CLIENT6)]);
    let (_, m) = expect_same(&mut k, &Frame::v6(query(SVC, RecordType::AAAA, Some(4096))));
    assert_eq!(ips(&m.unwrap()).len(), 3);
    let after = k.counters();
    assert_eq!(after.answered_a - before.answered_a, 2);
    assert_eq!(after.answered_aaaa - before.answered_aaaa, 2);
}

#[test]
fn keeps_the_question_case_and_matches_case_insensitively() {
    let mut k = Kernel::new(true);
    for name in [
        "NGINX-0.nginx-headless.TEST.svc.cluster.local.",
        "nGiNx-HeAdLeSs.TeSt.SvC.cLuStEr.LoCaL.",
        "NGINX-HEADLESS.TEST.SVC.CLUSTER.LOCAL.",
    ] {
        for qtype in [RecordType::A, RecordType::AAAA] {
            let (action, m) = expect_same(&mut k, &Frame::v4(query(name, qtype, Some(1232))));
            assert_eq!(action, XDP_TX, "{name}");
            let m = m.unwrap();
            let q = m.queries[0].name().to_ascii();
            assert_eq!(q, name, "0x20 case survives");
        }
    }
}

#[test]
fn nodata_carries_the_zone_soa() {
    let mut k = Kernel::new(true);
    // big40 has no IPv6 endpoints: AAAA is NODATA, as CoreDNS answers it.
    for name in [
        "big40.big.svc.cluster.local.",
        "BIG40.Big.SVC.cluster.LOCAL.",
    ] {
        let before = k.counters();
        let (action, m) = expect_same(&mut k, &Frame::v4(query(name, RecordType::AAAA, None)));
        assert_eq!(action, XDP_TX);
        let m = m.unwrap();
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(
            m.authorities[0].name.to_lowercase().to_ascii(),
            "cluster.local."
        );
        assert_eq!(k.counters().answered_nodata - before.answered_nodata, 1);
    }
}

#[test]
fn vlan_ipv4_options_and_ipv6_are_answered() {
    let mut k = Kernel::new(true);
    let mut f = Frame::v4(query(POD, RecordType::A, None));
    f.vlan = Some(42);
    assert_eq!(expect_same(&mut k, &f).0, XDP_TX, "802.1Q");
    let mut f = Frame::v4(query(POD, RecordType::A, Some(1232)));
    // Record Route (7), length 11, pointer 4, plus end-of-list padding.
    f.ip_options = vec![7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(expect_same(&mut k, &f).0, XDP_TX, "IPv4 options");
    let mut f = Frame::v6(query(SVC, RecordType::A, None));
    f.vlan = Some(7);
    assert_eq!(expect_same(&mut k, &f).0, XDP_TX, "IPv6 in VLAN");
}

#[test]
fn size_limits_follow_the_client() {
    let mut k = Kernel::new(true);
    let name = "big40.big.svc.cluster.local.";
    // 40 addresses: 640 answer bytes, over 512 without EDNS.
    let before = k.counters();
    let (a, _) = expect_same(&mut k, &Frame::v4(query(name, RecordType::A, None)));
    assert_eq!(a, XDP_PASS);
    assert_eq!(k.counters().pass_too_large - before.pass_too_large, 1);
    let (a, m) = expect_same(&mut k, &Frame::v4(query(name, RecordType::A, Some(1232))));
    assert_eq!(a, XDP_TX);
    assert_eq!(ips(&m.unwrap()).len(), 40);
    // A client that advertises less than 512 still gets 512.
    let (a, _) = expect_same(&mut k, &Frame::v4(query(name, RecordType::A, Some(600))));
    assert_eq!(a, XDP_PASS);
    // 100 addresses never fit a UDP reply of ours: kept in userspace.
    let before = k.counters();
    let (a, _) = expect_same(
        &mut k,
        &Frame::v4(query(
            "big100.big.svc.cluster.local.",
            RecordType::A,
            Some(4096),
        )),
    );
    assert_eq!(a, XDP_PASS);
    assert_eq!(
        k.counters().pass_userspace_only - before.pass_userspace_only,
        1
    );
}

#[test]
fn passes_what_is_not_a_query_for_us() {
    let mut k = Kernel::new(true);
    let q = query(POD, RecordType::A, None);

    let mut f = Frame::v4(q.clone());
    f.dport = 5353;
    expect_pass(&mut k, &f, |c| c.pass_not_dns, "wrong port");

    let mut f = Frame::v4(q.clone());
    f.dst = Ipv4Addr::new(169, 254, 20, 11).into();
    expect_pass(&mut k, &f, |c| c.pass_not_our_addr, "wrong address");

    let mut f = Frame::v4(q.clone());
    f.proto = 6;
    expect_pass(&mut k, &f, |c| c.pass_not_dns, "TCP");

    let mut f = Frame::v4(q.clone());
    f.frag = 0x2000; // MF
    expect_pass(&mut k, &f, |c| c.pass_fragment, "first fragment");
    let mut f = Frame::v4(q.clone());
    f.frag = 0x0010;
    expect_pass(&mut k, &f, |c| c.pass_fragment, "later fragment");

    let mut arp = Frame::v4(q.clone()).bytes();
    arp[12] = 0x08;
    arp[13] = 0x06;
    let before = k.counters();
    let (a, out) = k.run(&arp);
    assert_eq!((a, &out), (XDP_PASS, &arp));
    assert_eq!(k.counters().pass_not_dns - before.pass_not_dns, 1);
}

/// A query message with a byte patched.
fn patched(name: &str, at: usize, val: u8) -> Vec<u8> {
    let mut q = query(name, RecordType::A, None);
    q[at] = val;
    q
}

#[test]
fn passes_queries_it_cannot_answer_exactly() {
    let mut k = Kernel::new(true);
    // (query bytes, counter, description); each also agrees with userspace.
    type Case = (Vec<u8>, fn(&Counters) -> u64, &'static str);
    let mut label64 = query("x.svc.cluster.local.", RecordType::A, None);
    // Replace the 1-byte label "x" by a 64-byte label.
    label64.splice(
        12..14,
        std::iter::once(64).chain(std::iter::repeat_n(b'a', 64)),
    );
    let mut long = vec![0u8; 12];
    long[5] = 1;
    for _ in 0..5 {
        long.push(63);
        long.extend(std::iter::repeat_n(b'a', 63));
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut ptr = query(POD, RecordType::A, None);
    // The question name as a compression pointer to itself.
    ptr.truncate(12);
    ptr.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut qd2 = query(POD, RecordType::A, None);
    let question = qd2[12..].to_vec();
    qd2.extend_from_slice(&question);
    qd2[5] = 2;
    let mut cookie = Message::from_vec(&query(POD, RecordType::A, Some(1232))).unwrap();
    cookie
        .edns
        .as_mut()
        .unwrap()
        .options_mut()
        .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
    let cookie = cookie.to_vec().unwrap();
    // A client cookie is ignored, not echoed: answered.
    let (a, m) = expect_same(&mut k, &Frame::v4(cookie.clone()));
    assert_eq!(a, XDP_TX, "EDNS with a cookie option");
    assert!(m.unwrap().edns.unwrap().options().as_ref().is_empty());
    let mut v1 = query(POD, RecordType::A, Some(1232));
    let n = v1.len();
    v1[n - 5] = 1; // EDNS version 1
    let mut trailing = query(POD, RecordType::A, None);
    trailing.push(0);
    let cases: Vec<Case> = vec![
        (patched(POD, 2, 0x81), |c| c.pass_unsupported_query, "QR=1"),
        (
            patched(POD, 2, 0x29),
            |c| c.pass_unsupported_query,
            "OPCODE=5",
        ),
        (patched(POD, 2, 0x03), |c| c.pass_unsupported_query, "TC=1"),
        (qd2, |c| c.pass_unsupported_query, "QDCOUNT=2"),
        (
            patched(POD, 7, 1),
            |c| c.pass_unsupported_query,
            "ANCOUNT=1",
        ),
        (
            patched(POD, 9, 1),
            |c| c.pass_unsupported_query,
            "NSCOUNT=1",
        ),
        (v1, |c| c.pass_unsupported_query, "EDNS version 1"),
        (
            query(POD, RecordType::A, None)[..10].to_vec(),
            |c| c.pass_malformed,
            "truncated header",
        ),
        (
            query(POD, RecordType::A, None)[..30].to_vec(),
            |c| c.pass_malformed,
            "truncated name",
        ),
        (label64, |c| c.pass_malformed, "label over 63"),
        (long, |c| c.pass_malformed, "name over 255"),
        (
            ptr,
            |c| c.pass_malformed,
            "compression pointer in the question",
        ),
        (trailing, |c| c.pass_malformed, "trailing byte"),
        (
            query(POD, RecordType::TXT, None),
            |c| c.pass_unsupported_type,
            "TXT",
        ),
        (
            query(POD, RecordType::SRV, None),
            |c| c.pass_unsupported_type,
            "SRV",
        ),
        (
            query(
                "nginx-9.nginx-headless.test.svc.cluster.local.",
                RecordType::A,
                None,
            ),
            |c| c.pass_unknown_name,
            "unknown name",
        ),
        (
            query("example.test.", RecordType::A, None),
            |c| c.pass_unknown_name,
            "outside the zone",
        ),
    ];
    for (payload, field, what) in cases {
        for f in [Frame::v4(payload.clone()), Frame::v6(payload.clone())] {
            let (a, _) = expect_same(&mut k, &f);
            assert_eq!(a, XDP_PASS, "{what}");
            expect_pass(&mut k, &f, field, what);
        }
    }
    let mut ch = Message::from_vec(&query(POD, RecordType::A, None)).unwrap();
    ch.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    let f = Frame::v4(ch.to_vec().unwrap());
    expect_same(&mut k, &f);
    expect_pass(&mut k, &f, |c| c.pass_unsupported_type, "class CH");
}

#[test]
fn passes_everything_until_the_first_sync_is_complete() {
    let mut k = Kernel::new(false);
    let f = Frame::v4(query(POD, RecordType::A, None));
    expect_pass(&mut k, &f, |c| c.pass_not_ready, "before the first sync");
    k.syncer.backend_mut().set_answering(true).unwrap();
    assert_eq!(expect_same(&mut k, &f).0, XDP_TX);
}

#[test]
fn dns_addrs_are_the_only_addresses_answered() {
    let mut k = Kernel::new(true);
    let mut f = Frame::v4(query(POD, RecordType::A, None));
    f.dst = Ipv4Addr::new(169, 254, 30, 1).into();
    expect_pass(&mut k, &f, |c| c.pass_not_our_addr, "other IPv4");
    // An IPv6 packet to ::ffff:169.254.20.10 is not a query to our IPv4
    // address.
    let mut f = Frame::v6(query(POD, RecordType::A, None));
    f.dst = IpAddr::V6(DNS4.to_ipv6_mapped());
    expect_pass(&mut k, &f, |c| c.pass_not_our_addr, "IPv4-mapped IPv6");
    let mut f = Frame::v6(query(POD, RecordType::A, None));
    f.dst = Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x11).into();
    expect_pass(&mut k, &f, |c| c.pass_not_our_addr, "other IPv6");
}

/// Pins the calling thread to one CPU: the rotation position is per CPU.
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity
    // only touch it and the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

#[test]
fn multi_address_answers_rotate_like_round_robin() {
    pin_to_cpu0();
    let mut k = Kernel::new(true);
    for (name, qtype, n) in [
        (SVC, RecordType::A, 3),
        (SVC, RecordType::AAAA, 3),
        ("big40.big.svc.cluster.local.", RecordType::A, 40),
    ] {
        let f = Frame::v6(query(name, qtype, Some(1232)));
        let mut starts = Vec::new();
        for _ in 0..n + 2 {
            let (action, out) = k.run(&f.bytes());
            assert_eq!(action, XDP_TX);
            let dns = check_reply(&f, &out);
            let rot = rotation(&k.table, &f.payload, &dns)
                .expect("the kernel's order is a rotation of the table's");
            starts.push(rot);
        }
        // Each reply starts one address further, wrapping around: every
        // address comes first in turn.
        for w in starts.windows(2) {
            assert_eq!(w[1], (w[0] + 1) % n, "{name} {qtype}: {starts:?}");
        }
    }
    // A single address is never "rotated" into anything else.
    let f = Frame::v4(query(POD, RecordType::A, None));
    for _ in 0..3 {
        let (_, out) = k.run(&f.bytes());
        let dns = check_reply(&f, &out);
        assert_eq!(
            resolver::respond(&k.table, &f.payload),
            UserVerdict::Answer(dns)
        );
    }
}

#[test]
fn provably_missing_names_get_nxdomain_from_the_kernel() {
    let mut k = Kernel::with_nxdomain(true, true);
    // What an ndots:5 client in namespace `test` sends first for
    // `nginx-0.nginx-headless.test`, and other names that cannot exist.
    let missing = [
        "nginx-0.nginx-headless.test.test.svc.cluster.local.",
        "nginx-0.nginx-headless.test.svc.cluster.local.svc.cluster.local.",
        "nginx-0.nginx-headless.test.cluster.local.",
        "example.com.svc.cluster.local.",
        "EXAMPLE.com.Cluster.Local.",
        "nginx-9.nginx-headless.test.svc.cluster.local.",
        "nosuch.test.svc.cluster.local.",
    ];
    for name in missing {
        for (f, edns) in [
            (Frame::v4 as fn(Vec<u8>) -> Frame, None),
            (Frame::v6, Some(1232)),
        ] {
            let frame = f(query(name, RecordType::A, edns));
            let before = k.counters();
            let (action, out) = k.run(&frame.bytes());
            assert_eq!(action, XDP_TX, "{name}");
            let dns = check_reply(&frame, &out);
            let expected = resolver::respond_any_type(&k.table, &frame.payload, Some(1232));
            assert_eq!(
                UserVerdict::Answer(dns.clone()),
                expected,
                "{name}: kernel and userspace"
            );
            let m = Message::from_vec(&dns).unwrap();
            assert_eq!(
                m.metadata.response_code,
                hickory_proto::op::ResponseCode::NXDomain
            );
            assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
            assert_eq!(k.counters().answered_nxdomain - before.answered_nxdomain, 1);
        }
    }
    // Left to userspace: pod names, namespaces, the svc level, names whose
    // SOA would compress differently, names outside the zone.
    for name in [
        "169-254-10-10.test.pod.cluster.local.",
        "other.svc.cluster.local.",
        "x.dns.cluster.local.",
        "x.hostmaster.cluster.local.",
        "example.com.",
    ] {
        let f = Frame::v4(query(name, RecordType::A, None));
        expect_pass(&mut k, &f, |c| c.pass_unknown_name, name);
    }
    // An existing namespace is a name without addresses: NODATA.
    let (a, m) = expect_same(
        &mut k,
        &Frame::v4(query("test.svc.cluster.local.", RecordType::A, None)),
    );
    assert_eq!(a, XDP_TX);
    assert_eq!(
        m.unwrap().metadata.response_code,
        hickory_proto::op::ResponseCode::NoError
    );
    // Existing names still answer.
    assert_eq!(
        expect_same(&mut k, &Frame::v4(query(POD, RecordType::A, None))).0,
        XDP_TX
    );
}

#[test]
fn the_soa_serial_follows_the_table_in_kernel_and_userspace_alike() {
    let mut k = Kernel::with_nxdomain(true, true);
    let serial_of = |k: &mut Kernel, name: &str| -> u32 {
        let frame = Frame::v4(query(name, RecordType::A, None));
        let (action, out) = k.run(&frame.bytes());
        assert_eq!(action, XDP_TX, "{name}");
        let dns = check_reply(&frame, &out);
        assert_eq!(
            UserVerdict::Answer(dns.clone()),
            resolver::respond_any_type(&k.table, &frame.payload, Some(1232)),
            "{name}: kernel and userspace"
        );
        let m = Message::from_vec(&dns).unwrap();
        let hickory_proto::rr::RData::SOA(soa) = &m.authorities[0].data else {
            panic!("an SOA")
        };
        soa.serial
    };
    let missing = "nosuch.test.svc.cluster.local.";
    let nodata = "test.svc.cluster.local.";
    assert_eq!(serial_of(&mut k, missing), 12345);
    // The table changes: a new service. Its serial is due at once (no flip
    // yet, so no quarantine), in both paths.
    let extra = source::parse_manifests("more", &headless_yaml("more", "web", 2)).unwrap();
    let mut objects = source::embedded_seed();
    objects.services.extend(extra.services);
    objects.slices.extend(extra.slices);
    let mut changes = Vec::new();
    k.table.set_objects(&objects, &mut changes);
    k.syncer.apply(&mut k.table, changes).unwrap();
    let now = std::time::Instant::now();
    assert_eq!(
        k.syncer.refresh_soa(&mut k.table, 20000, now).unwrap(),
        None
    );
    assert_eq!(k.table.serial(), 20000);
    assert_eq!(serial_of(&mut k, missing), 20000);
    assert_eq!(serial_of(&mut k, nodata), 20000);
    // And again after the quarantine: back in the first bank.
    let mut changes = Vec::new();
    k.table.set_objects(&source::embedded_seed(), &mut changes);
    k.syncer.apply(&mut k.table, changes).unwrap();
    let later = now + hsdns::maps::QUARANTINE;
    assert_eq!(
        k.syncer.refresh_soa(&mut k.table, 20001, later).unwrap(),
        None
    );
    assert_eq!(serial_of(&mut k, missing), 20001);
    assert_eq!(k.syncer.soa_bank(), 0);
}

#[test]
fn nxdomain_stays_off_when_disabled() {
    let mut k = Kernel::with_nxdomain(true, false);
    let f = Frame::v4(query(
        "nginx-0.nginx-headless.test.test.svc.cluster.local.",
        RecordType::A,
        None,
    ));
    expect_pass(&mut k, &f, |c| c.pass_unknown_name, "nxdomain off");
}

/// A large headless service whose addresses all change, version after
/// version, while another thread queries it through the loaded program:
/// every reply is the complete set of some version, never NXDOMAIN, a pass
/// or a mix. (On a veth in skb mode such answers go up for lack of room; the
/// update mechanism is the same for every size, and this exercises it at the
/// size where answers live in the largest class.)
#[test]
fn large_answers_change_without_a_gap() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const N: usize = 40;
    const VERSIONS: usize = 40;
    let version = |v: usize| -> String {
        let mut eps = String::new();
        for i in 0..N {
            eps.push_str(&format!(
                "  - addresses: [\"169.254.{}.{}\"]\n    conditions: {{ready: true}}\n",
                50 + v,
                1 + i
            ));
        }
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: big, namespace: test}}\n\
             spec: {{clusterIP: None, clusterIPs: [None]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: big-x, namespace: test, labels: {{kubernetes.io/service-name: big}}}}\n\
             addressType: IPv4\nendpoints:\n{eps}"
        )
    };
    let objects_of = |v: usize| source::parse_manifests("big", &version(v)).unwrap();
    let Kernel {
        mut ebpf,
        mut syncer,
        mut table,
    } = Kernel::new(true);
    // Only this service from here on: the others leave the maps.
    let mut changes = Vec::new();
    table.set_objects(&objects_of(0), &mut changes);
    syncer.apply(&mut table, changes).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let frame = Frame::v4(query(
        "big.test.svc.cluster.local.",
        RecordType::A,
        Some(1232),
    ));
    // The maps were taken out of the object: the program goes to the query
    // thread, the syncer stays here.
    let querier = std::thread::spawn(move || {
        let prog = loader::program(&mut ebpf).unwrap();
        let pkt = frame.bytes();
        let mut out = vec![0u8; 4096];
        let mut seen = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            let r = prog
                .test_run(TestRunOptions {
                    data_in: Some(&pkt),
                    data_out: Some(&mut out),
                    ..Default::default()
                })
                .unwrap();
            seen.push((r.return_value, out[..r.data_size_out as usize].to_vec()));
        }
        seen
    });
    for v in 1..VERSIONS {
        let mut changes = Vec::new();
        table.set_objects(&objects_of(v), &mut changes);
        syncer.apply(&mut table, changes).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let seen = querier.join().unwrap();
    assert!(seen.len() > 100, "only {} queries", seen.len());
    let mut versions_seen = std::collections::BTreeSet::new();
    let frame = Frame::v4(query(
        "big.test.svc.cluster.local.",
        RecordType::A,
        Some(1232),
    ));
    for (verdict, out) in &seen {
        assert_eq!(*verdict, XDP_TX, "answered in the kernel all along");
        let dns = check_reply(&frame, out);
        let m = Message::from_vec(&dns).unwrap();
        assert_eq!(
            m.metadata.response_code,
            hickory_proto::op::ResponseCode::NoError
        );
        let got: std::collections::BTreeSet<IpAddr> = ips(&m).into_iter().collect();
        let v = (0..VERSIONS)
            .find(|v| {
                let want: std::collections::BTreeSet<IpAddr> = (0..N)
                    .map(|i| IpAddr::V4(Ipv4Addr::new(169, 254, (50 + v) as u8, 1 + i as u8)))
                    .collect();
                want == got
            })
            .unwrap_or_else(|| panic!("a reply that is no version's complete set: {got:?}"));
        versions_seen.insert(v);
    }
    assert!(
        versions_seen.len() > 1,
        "the updates were seen: {versions_seen:?}"
    );
}

/// A key of `len` wire bytes (one or more labels of `c`).
fn wire_key(len: usize, c: u8) -> Vec<u8> {
    let mut k = Vec::new();
    let mut left = len - 1;
    while left > 0 {
        let l = (left - 1).min(63);
        k.push(l as u8);
        k.extend(std::iter::repeat_n(c, l));
        left -= l + 1;
    }
    k.push(0);
    assert_eq!(k.len(), len);
    k
}

fn rec(a: u32) -> NameRecord {
    NameRecord {
        a,
        aaaa: REF_NODATA,
        ..NameRecord::default()
    }
}

#[test]
fn batch_writes_equal_single_writes() {
    require_root();
    let caps = Capacities {
        names: [1024, 64, 64],
        answers: [1024, 64, 64],
    };
    let take = || BpfMaps::take(&mut loader::load(&caps).expect("load")).unwrap();
    let (mut batched, mut single) = (take(), take());

    // More than one batch call's worth of small answers; rotated (doubled)
    // and plain ones in the larger classes.
    let mut answers = Vec::new();
    for slot in 0..600u32 {
        answers.push(AnswerWrite {
            class: 0,
            slot,
            bytes: (0..16).map(|b| (slot as u8).wrapping_add(b)).collect(),
            count: 1,
            stride: 0,
        });
    }
    for (class, slot, n, stride) in [
        (1, 3, 5, 16),
        (1, 7, 150, 0),
        (2, 0, 70, 16),
        (2, 63, 1216, 0),
    ] {
        answers.push(AnswerWrite {
            class,
            slot,
            bytes: (0..n).map(|b| b as u8 ^ slot as u8).collect(),
            count: (n / 16).max(1) as u16,
            stride,
        });
    }
    // Names of every tier, one written twice: the later value must win.
    let mut names: Vec<NameWrite> = (0..600)
        .map(|i| NameWrite {
            key: wire_key(20 + i % 40, b'a' + (i / 40) as u8),
            rec: rec(i as u32),
        })
        .collect();
    for (i, len) in [100, 128, 129, 200, 255].into_iter().enumerate() {
        names.push(NameWrite {
            key: wire_key(len, b'q'),
            rec: rec(1000 + i as u32),
        });
    }
    names.push(NameWrite {
        key: names[3].key.clone(),
        rec: rec(7777),
    });

    batched.put_answers(&answers).unwrap();
    assert_eq!(batched.put_names(&names), Vec::<usize>::new());
    for a in &answers {
        single
            .put_answer(a.class, a.slot, &a.bytes, a.count, a.stride)
            .unwrap();
    }
    for n in &names {
        single.put_name(&n.key, n.rec).unwrap();
    }

    for a in &answers {
        let got = batched.answer(a.class, a.slot).unwrap();
        assert_eq!(got, single.answer(a.class, a.slot).unwrap());
        assert_eq!(usize::from(got.len), a.bytes.len());
    }
    for n in &names {
        assert_eq!(batched.name(&n.key).unwrap(), single.name(&n.key).unwrap());
    }
    assert_eq!(batched.name(&names[3].key).unwrap(), Some(rec(7777)));
    assert_eq!(batched.name(&wire_key(30, b'z')).unwrap(), None);
}

#[test]
fn a_batch_stopped_by_a_full_map_reports_the_rest_undone() {
    require_root();
    let caps = Capacities {
        names: [4, 4, 4],
        answers: [4, 4, 4],
    };
    let mut maps = BpfMaps::take(&mut loader::load(&caps).expect("load")).unwrap();
    let mut names: Vec<NameWrite> = (0..6)
        .map(|i| NameWrite {
            key: wire_key(10 + i, b'a'),
            rec: rec(i as u32),
        })
        .collect();
    // A later write of a name already in: not tried after the failure.
    names.push(NameWrite {
        key: names[0].key.clone(),
        rec: rec(99),
    });
    // Another tier goes on regardless.
    names.push(NameWrite {
        key: wire_key(100, b'b'),
        rec: rec(100),
    });
    assert_eq!(maps.put_names(&names), vec![4, 5, 6]);
    for (i, n) in names[..4].iter().enumerate() {
        assert_eq!(maps.name(&n.key).unwrap(), Some(rec(i as u32)));
    }
    assert_eq!(maps.name(&names[4].key).unwrap(), None);
    assert_eq!(maps.name(&names[7].key).unwrap(), Some(rec(100)));
}
