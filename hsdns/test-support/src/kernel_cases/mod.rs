//! The kernel program's cases: one table of (input packet, expected
//! verdict, expected output), run on both entry points (XDP and tc) by the
//! kernel tests and timed by the kernel benchmark.
//!
//! Expected outputs are not written by hand: a case whose verdict is
//! decided by the DNS message asks the userspace resolver (the kernel's
//! oracle, built independently with hickory) for the reply, and frames it
//! the way the kernel rewrites headers. The case's own verdict is stated
//! explicitly, so the table checks the oracle as much as the kernel.
//!
//! Loading the program needs root; building the table does not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Result, bail};
use hickory_proto::{
    op::{Edns, Message},
    rr::{DNSClass, RecordType, rdata::opt::EdnsOption},
};
use hsdns::{
    dns::resolver::{self, KernelOpts},
    frame::{DNS4, Frame, query},
    records::{RecordTable, ZoneConfig},
    source,
};
use hsdns_common::{Action, Verdict};

use crate::manifests::headless_yaml;

mod kernel;

pub use kernel::{BOUNDS, Kernel, bound_frame, load_bounds, load_floors, run_named, run_program};

/// The two entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    Tc,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::Xdp, Hook::Tc];

    /// The program's return code for an action on this hook.
    pub fn code(self, action: Action) -> u32 {
        match (self, action) {
            (Hook::Xdp, Action::Answer) => 3,     // XDP_TX
            (Hook::Xdp, Action::Pass) => 2,       // XDP_PASS
            (Hook::Xdp, Action::Drop) => 1,       // XDP_DROP
            (Hook::Tc, Action::Answer) => 7,      // TC_ACT_REDIRECT (bpf_redirect_peer)
            (Hook::Tc, Action::Pass) => u32::MAX, // TC_ACT_UNSPEC (-1): next program
            (Hook::Tc, Action::Drop) => 2,        // TC_ACT_SHOT
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::Tc => "tc",
        }
    }
}

/// The daemon's state a case needs the kernel in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Setup {
    /// The first sync is not complete: `answering` off.
    pub not_ready: bool,
    /// Negative answers on.
    pub nxdomain: bool,
    /// The heartbeat is older than a bound.
    pub stale: Option<Staleness>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Staleness {
    /// Older than `stale_pass_ns`: everything passes.
    Pass,
    /// Older than `stale_nxdomain_ns`: no negative answers.
    Nxdomain,
}

/// Who decides the case's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The DNS message: the oracle gives the reply (or the pass) and must
    /// agree with the case's verdict.
    Dns,
    /// The packet around it, or the daemon's state: a pass, untouched.
    Packet,
}

pub struct Case {
    pub name: String,
    pub frame: Frame,
    pub verdict: Verdict,
    pub kind: Kind,
    pub setup: Setup,
    /// The benchmark times this case under this name.
    pub bench: Option<&'static str>,
}

impl Case {
    fn dns(name: impl Into<String>, frame: Frame, verdict: Verdict) -> Self {
        Self {
            name: name.into(),
            frame,
            verdict,
            kind: Kind::Dns,
            setup: Setup::default(),
            bench: None,
        }
    }

    fn packet(name: impl Into<String>, frame: Frame, verdict: Verdict) -> Self {
        Self {
            kind: Kind::Packet,
            ..Self::dns(name, frame, verdict)
        }
    }

    fn with(mut self, setup: Setup) -> Self {
        self.setup = setup;
        self
    }

    fn bench(mut self, name: &'static str) -> Self {
        self.bench = Some(name);
        self
    }

    /// The frames the kernel may answer with (one per rotation of a
    /// multi-address answer); empty when it must pass the packet up.
    /// Errors when the oracle disagrees with the case's verdict.
    pub fn expected(&self, table: &RecordTable) -> Result<Vec<Vec<u8>>> {
        if self.verdict.action() != Action::Answer {
            if self.kind == Kind::Dns {
                let opts = KernelOpts {
                    nxdomain: self.nxdomain_on(),
                    rotate: 0,
                };
                match resolver::respond_kernel(table, &self.frame.payload, opts) {
                    Err(v) if v == self.verdict => {}
                    other => bail!(
                        "{}: the oracle says {:?}, the case {:?}",
                        self.name,
                        other.map(|(_, v)| v),
                        self.verdict
                    ),
                }
            }
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for rotate in 0..128 {
            let opts = KernelOpts {
                nxdomain: self.nxdomain_on(),
                rotate,
            };
            match resolver::respond_kernel(table, &self.frame.payload, opts) {
                Ok((dns, v)) if v == self.verdict => {
                    let f = reply_frame(&self.frame, dns);
                    if out.contains(&f) {
                        break;
                    }
                    out.push(f);
                }
                other => bail!(
                    "{}: the oracle says {:?}, the case {:?}",
                    self.name,
                    other.map(|(_, v)| v),
                    self.verdict
                ),
            }
        }
        Ok(out)
    }

    fn nxdomain_on(&self) -> bool {
        self.setup.nxdomain && self.setup.stale.is_none()
    }
}

/// The reply frame the kernel makes of `query` with `dns` as payload:
/// MACs, addresses and ports swapped, TTL 64, DF, IPv4 options replaced by
/// NOPs, fresh checksums.
pub fn reply_frame(query: &Frame, dns: Vec<u8>) -> Vec<u8> {
    let reply = Frame {
        vlan: query.vlan,
        src: query.dst,
        dst: query.src,
        ip_options: vec![1; query.ip_options.len()],
        frag: 0x4000,
        proto: 17,
        sport: query.dport,
        dport: query.sport,
        payload: dns,
    };
    let mut b = reply.bytes();
    // Frame::bytes writes the node's MAC first (a query's destination).
    for i in 0..6 {
        b.swap(i, 6 + i);
    }
    b
}

pub const POD: &str = "nginx-0.nginx-headless.test.svc.cluster.local.";
pub const SVC: &str = "nginx-headless.test.svc.cluster.local.";
pub const MULTI20: &str = "multi20.bench.svc.cluster.local.";
pub const BIG40: &str = "big40.big.svc.cluster.local.";
pub const BIG100: &str = "big100.big.svc.cluster.local.";
pub const EXTERNAL: &str = "ext.test.svc.cluster.local.";
/// What an ndots:5 client in namespace `test` sends first for
/// `nginx-0.nginx-headless.test`.
pub const SEARCH_MISS: &str = "nginx-0.nginx-headless.test.test.svc.cluster.local.";

/// A headless service in namespace `sz` whose A reply is exactly `size`
/// bytes, with an OPT record or without: the name's length is chosen for it.
fn sized_service(size: usize, opt: bool) -> (String, usize) {
    // Reply: header 12, question (name + 4), 16 per record, OPT 11. The
    // name `<svc>.sz.svc.cluster.local.` is len(svc) + 23 bytes.
    let fixed = 12 + 4 + 23 + if opt { 11 } else { 0 };
    let n = (size - fixed - 1) / 16;
    let svc_len = size - fixed - 16 * n;
    assert!((1..=63).contains(&svc_len), "{size}: {svc_len}");
    let svc = format!(
        "s{size}{}",
        "x".repeat(svc_len - 1 - size.to_string().len())
    );
    assert_eq!(svc.len(), svc_len);
    (svc, n)
}

/// The boundaries: exactly 512 bytes without EDNS, exactly 1232 with.
pub const SIZES: [(usize, bool); 4] = [(512, false), (513, false), (1232, true), (1233, true)];

fn sized_name(size: usize, opt: bool) -> String {
    format!("{}.sz.svc.cluster.local.", sized_service(size, opt).0)
}

/// The zone the cases query: the seed (a dual-stack headless service of
/// three pods), headless services of 20, 40 and 100 addresses (40 has no
/// IPv6: AAAA is NODATA; 100 fit no UDP reply), an ExternalName service,
/// and services whose replies are exactly at the size limits and one byte
/// over.
pub fn table() -> RecordTable {
    let mut objects = source::embedded_seed();
    let mut add = |file: &str, yaml: &str| {
        let extra = source::parse_manifests(file, yaml).expect("test manifests parse");
        objects.services.extend(extra.services);
        objects.slices.extend(extra.slices);
    };
    add("multi20", &headless_yaml("bench", "multi20", 20));
    add("big40", &headless_yaml("big", "big40", 40));
    add("big100", &headless_yaml("big", "big100", 100));
    for (size, opt) in SIZES {
        let (svc, n) = sized_service(size, opt);
        add(&svc, &headless_yaml("sz", &svc, n));
    }
    add(
        "ext",
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: test}\n\
         spec: {type: ExternalName, externalName: example.com}\n",
    );
    RecordTable::build(&ZoneConfig::default(), &objects, 12345)
}

/// A query message with a byte patched.
fn patched(name: &str, at: usize, val: u8) -> Vec<u8> {
    let mut q = query(name, RecordType::A, None);
    q[at] = val;
    q
}

/// A query whose question name is `wire` (raw bytes), type A, class IN.
fn raw_name(wire: &[u8]) -> Vec<u8> {
    let mut q = query(POD, RecordType::A, None);
    q.truncate(12);
    q.extend_from_slice(wire);
    q.extend_from_slice(&[0, 1, 0, 1]);
    q
}

fn v4(payload: Vec<u8>) -> Frame {
    Frame::v4(payload)
}

fn v6(payload: Vec<u8>) -> Frame {
    Frame::v6(payload)
}

/// Every case.
pub fn cases() -> Vec<Case> {
    use Verdict::*;
    let a = RecordType::A;
    let aaaa = RecordType::AAAA;
    let nx = Setup {
        nxdomain: true,
        ..Setup::default()
    };
    let mut c = vec![
        Case::dns("A, one address", v4(query(POD, a, None)), AnsweredA).bench("A hit (1 address)"),
        Case::dns(
            "A, three addresses, EDNS",
            v4(query(SVC, a, Some(1232))),
            AnsweredA,
        )
        .bench("A hit (3 addresses)"),
        Case::dns(
            "A, twenty addresses",
            v4(query(MULTI20, a, Some(1232))),
            AnsweredA,
        )
        .bench("A hit (20 addresses)"),
        Case::dns(
            "A, forty addresses",
            v4(query(BIG40, a, Some(1232))),
            AnsweredA,
        ),
        Case::dns("AAAA over IPv6", v6(query(POD, aaaa, None)), AnsweredAaaa)
            .bench("AAAA hit over IPv6"),
        Case::dns(
            "AAAA, three addresses, EDNS 4096",
            v6(query(SVC, aaaa, Some(4096))),
            AnsweredAaaa,
        ),
        Case::dns("A over IPv6", v6(query(SVC, a, None)), AnsweredA),
        Case::dns("NODATA", v4(query(MULTI20, aaaa, None)), AnsweredNodata).bench("NODATA"),
        Case::dns(
            "NODATA, mixed case",
            v4(query("BIG40.Big.SVC.cluster.LOCAL.", aaaa, None)),
            AnsweredNodata,
        ),
        Case::dns(
            "NODATA for a namespace",
            v4(query("test.svc.cluster.local.", a, Some(1232))),
            AnsweredNodata,
        ),
        Case::dns(
            "NODATA at the apex",
            v6(query("cluster.local.", a, None)),
            AnsweredNodata,
        ),
    ];
    for name in [
        "NGINX-0.nginx-headless.TEST.svc.cluster.local.",
        "nGiNx-HeAdLeSs.TeSt.SvC.cLuStEr.LoCaL.",
        "NGINX-HEADLESS.TEST.SVC.CLUSTER.LOCAL.",
    ] {
        for qtype in [a, aaaa] {
            let v = if qtype == a { AnsweredA } else { AnsweredAaaa };
            c.push(Case::dns(
                format!("0x20 case {name} {qtype}"),
                v4(query(name, qtype, Some(1232))),
                v,
            ));
        }
    }
    let mut f = v4(query(POD, a, None));
    f.vlan = Some(42);
    c.push(Case::dns("802.1Q", f, AnsweredA));
    let mut f = v4(query(POD, a, Some(1232)));
    // Record Route (7), length 11, pointer 4, plus end-of-list padding.
    f.ip_options = vec![7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c.push(Case::dns("IPv4 options", f, AnsweredA));
    let mut f = v4(query(SVC, a, Some(1232)));
    f.ip_options = vec![1; 40];
    c.push(Case::dns("IPv4 header of 60 bytes", f, AnsweredA));
    let mut f = v6(query(SVC, a, None));
    f.vlan = Some(7);
    c.push(Case::dns("IPv6 in 802.1Q", f, AnsweredA));
    // dig sends a COOKIE: ignored, not echoed.
    let mut m = Message::from_vec(&query(POD, a, Some(1232))).unwrap();
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.options_mut()
        .insert(EdnsOption::Unknown(10, vec![1, 2, 3, 4, 5, 6, 7, 8]));
    m.set_edns(edns);
    c.push(Case::dns("EDNS cookie", v4(m.to_vec().unwrap()), AnsweredA));

    // Sizes: at the limits answered, one byte over truncated.
    for (size, opt) in SIZES {
        let name = sized_name(size, opt);
        let edns = opt.then_some(1232);
        let v = if size == 512 || size == 1232 {
            AnsweredA
        } else {
            AnsweredTruncated
        };
        c.push(Case::dns(
            format!("reply of {size} bytes, EDNS {edns:?}"),
            v4(query(&name, a, edns)),
            v,
        ));
    }
    let over512 = sized_name(513, false);
    c.push(Case::dns(
        "513 bytes with EDNS 1232",
        v4(query(&over512, a, Some(1232))),
        AnsweredA,
    ));
    c.push(Case::dns(
        "EDNS under 512 counts as 512",
        v6(query(&over512, a, Some(200))),
        AnsweredTruncated,
    ));
    let over1232 = sized_name(1233, true);
    c.push(Case::dns(
        "EDNS 4096 is clamped to 1232",
        v4(query(&over1232, a, Some(4096))),
        AnsweredTruncated,
    ));
    c.push(Case::dns(
        "forty addresses without EDNS",
        v4(query(BIG40, a, None)),
        AnsweredTruncated,
    ));
    c.push(Case::dns(
        "forty addresses, EDNS 600",
        v4(query(BIG40, a, Some(600))),
        AnsweredTruncated,
    ));
    c.push(Case::dns(
        "a hundred addresses fit no reply",
        v6(query(BIG100, a, Some(4096))),
        AnsweredTruncated,
    ));

    // Negative answers.
    for name in [
        SEARCH_MISS,
        "nginx-0.nginx-headless.test.svc.cluster.local.svc.cluster.local.",
        "nginx-0.nginx-headless.test.cluster.local.",
        "example.com.svc.cluster.local.",
        "EXAMPLE.com.Cluster.Local.",
        "nginx-9.nginx-headless.test.svc.cluster.local.",
        "nosuch.test.svc.cluster.local.",
    ] {
        c.push(
            Case::dns(
                format!("NXDOMAIN {name}"),
                v4(query(name, a, None)),
                AnsweredNxdomain,
            )
            .with(nx),
        );
        c.push(
            Case::dns(
                format!("NXDOMAIN {name} over IPv6"),
                v6(query(name, aaaa, Some(1232))),
                AnsweredNxdomain,
            )
            .with(nx),
        );
    }
    if let Some(first) = c.iter_mut().find(|c| c.verdict == AnsweredNxdomain) {
        first.bench = Some("NXDOMAIN (search-list miss)");
    }
    for name in [
        "169-254-10-10.test.pod.cluster.local.",
        "other.svc.cluster.local.",
        "x.dns.cluster.local.",
        "x.hostmaster.cluster.local.",
        "example.com.",
    ] {
        c.push(
            Case::dns(
                format!("not provably missing: {name}"),
                v4(query(name, a, None)),
                UnknownName,
            )
            .with(nx),
        );
    }
    c.push(Case::dns("a hit with NXDOMAIN on", v4(query(POD, a, None)), AnsweredA).with(nx));
    c.push(Case::dns(
        "NXDOMAIN off",
        v4(query(SEARCH_MISS, a, None)),
        UnknownName,
    ));
    c.push(
        Case::dns(
            "stale for NXDOMAIN",
            v4(query(SEARCH_MISS, a, None)),
            UnknownName,
        )
        .with(Setup {
            nxdomain: true,
            stale: Some(Staleness::Nxdomain),
            ..Setup::default()
        }),
    );
    c.push(
        Case::dns(
            "stale for NXDOMAIN, a hit",
            v4(query(POD, a, None)),
            AnsweredA,
        )
        .with(Setup {
            nxdomain: true,
            stale: Some(Staleness::Nxdomain),
            ..Setup::default()
        }),
    );

    // Queries it cannot answer exactly: up, untouched.
    let mut label64 = query("x.svc.cluster.local.", a, None);
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
    let mut ptr = query(POD, a, None);
    ptr.truncate(12);
    ptr.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut qd2 = query(POD, a, None);
    qd2[5] = 2;
    let mut v1 = Message::from_vec(&query(POD, a, Some(1232))).unwrap();
    v1.edns.as_mut().unwrap().set_version(1);
    let mut cut = query(POD, a, None);
    cut.truncate(12 + 10);
    let mut trailing = query(POD, a, None);
    trailing.extend_from_slice(b"junk");
    let mut ch = Message::from_vec(&query(POD, a, None)).unwrap();
    ch.queries[0].set_query_class(DNSClass::CH);
    let mut not_opt = query(POD, a, Some(1232));
    let at = not_opt.len() - 11 + 1;
    not_opt[at..at + 2].copy_from_slice(&16u16.to_be_bytes());
    let dns_cases: Vec<(&str, Vec<u8>, Verdict)> = vec![
        ("label of 64", label64, Malformed),
        ("name over 255 bytes", long, Malformed),
        ("compression pointer", ptr, Malformed),
        ("name cut short", cut, Malformed),
        ("trailing bytes", trailing, Malformed),
        ("header only", query(POD, a, None)[..12].to_vec(), Malformed),
        (
            "shorter than a header",
            query(POD, a, None)[..11].to_vec(),
            Malformed,
        ),
        ("QDCOUNT 2", qd2, UnsupportedQuery),
        ("QR set", patched(POD, 2, 0x80), UnsupportedQuery),
        ("OPCODE 2", patched(POD, 2, 0x10), UnsupportedQuery),
        ("TC set", patched(POD, 2, 0x02), UnsupportedQuery),
        ("ANCOUNT 1", patched(POD, 7, 1), UnsupportedQuery),
        ("NSCOUNT 1", patched(POD, 9, 1), UnsupportedQuery),
        ("ARCOUNT 2", patched(POD, 11, 2), UnsupportedQuery),
        ("EDNS version 1", v1.to_vec().unwrap(), UnsupportedQuery),
        ("additional record not OPT", not_opt, UnsupportedQuery),
        ("TXT", query(POD, RecordType::TXT, None), UnsupportedType),
        ("SRV", query(POD, RecordType::SRV, None), UnsupportedType),
        ("class CH", ch.to_vec().unwrap(), UnsupportedType),
        (
            "unknown name",
            query("nginx-9.nginx-headless.test.svc.cluster.local.", a, None),
            UnknownName,
        ),
        (
            "outside the zone",
            query("example.test.", a, None),
            UnknownName,
        ),
        (
            "a label holding a dot",
            raw_name(b"\x03a.b\x07cluster\x05local\x00"),
            UnsupportedName,
        ),
        (
            "a label holding NUL",
            raw_name(b"\x03a\x00b\x07cluster\x05local\x00"),
            UnsupportedName,
        ),
        (
            "the zone as one label",
            raw_name(b"\x0dcluster.local\x00"),
            UnsupportedName,
        ),
        ("ExternalName", query(EXTERNAL, a, None), UserspaceOnly),
        (
            "ExternalName AAAA",
            query(EXTERNAL, aaaa, Some(1232)),
            UserspaceOnly,
        ),
    ];
    for (name, payload, v) in dns_cases {
        let bench = (name == "unknown name").then_some("pass: unknown name");
        let mut case = Case::dns(name, v4(payload.clone()), v);
        case.bench = bench;
        c.push(case);
        c.push(Case::dns(format!("{name} over IPv6"), v6(payload), v));
    }

    // Not a query for us.
    let q = query(POD, a, None);
    let mut f = v4(q.clone());
    f.dport = 5353;
    c.push(Case::packet("wrong port", f, NotDns));
    let mut f = v4(q.clone());
    f.dst = Ipv4Addr::new(169, 254, 20, 11).into();
    c.push(Case::packet("wrong address", f, NotOurAddr));
    let mut f = v4(q.clone());
    f.proto = 6;
    c.push(Case::packet("TCP", f, NotDns).bench("pass: not DNS (TCP)"));
    let mut f = v6(q.clone());
    f.proto = 6;
    c.push(Case::packet("TCP over IPv6", f, NotDns));
    let mut f = v6(q.clone());
    f.proto = 0; // hop-by-hop options header
    c.push(Case::packet("IPv6 extension header", f, Fragment));
    let mut f = v4(q.clone());
    f.frag = 0x2000; // MF
    c.push(Case::packet("first fragment", f, Fragment));
    let mut f = v4(q.clone());
    f.frag = 0x0010;
    c.push(Case::packet("later fragment", f, Fragment));
    let mut f = v6(q.clone());
    f.dst = IpAddr::V6(DNS4.to_ipv6_mapped());
    c.push(Case::packet("IPv4-mapped IPv6", f, NotOurAddr));
    let mut f = v6(q.clone());
    f.dst = Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x11).into();
    c.push(Case::packet("other IPv6", f, NotOurAddr));
    let mut f = v4(q.clone());
    f.sport = 0;
    c.push(Case::packet("source port 0", f, Malformed));
    c.push(
        Case::packet("before the first sync", v4(q.clone()), NotReady).with(Setup {
            not_ready: true,
            ..Setup::default()
        }),
    );
    c.push(Case::packet("stale", v4(q.clone()), Stale).with(Setup {
        stale: Some(Staleness::Pass),
        ..Setup::default()
    }));
    c
}

/// Frames that are not IP at all, with their verdict (the table's frames
/// are all IP).
pub fn raw_cases() -> Vec<(&'static str, Vec<u8>, Verdict)> {
    let mut arp = Frame::v4(query(POD, RecordType::A, None)).bytes();
    arp[12] = 0x08;
    arp[13] = 0x06;
    let mut short = Frame::v4(query(POD, RecordType::A, None)).bytes();
    short.truncate(40);
    let mut lying = Frame::v4(query(POD, RecordType::A, None)).bytes();
    // IPv4 total length one byte longer than the frame.
    let total = u16::from_be_bytes([lying[16], lying[17]]) + 1;
    lying[16..18].copy_from_slice(&total.to_be_bytes());
    vec![
        ("ARP", arp, Verdict::NotDns),
        ("40 bytes", short, Verdict::NotDns),
        ("IPv4 length past the frame", lying, Verdict::Malformed),
    ]
}
