//! What the program must do with a frame, decided without running it, and
//! the check of what it did.
//!
//! The frame rules are the README's ("What the kernel answers"): UDP to
//! port 53 and one of `dns_addrs`, over Ethernet with at most one 802.1Q
//! tag, IPv4 (any IHL, not a fragment, lengths that add up) or IPv6
//! without extension headers, from a non-zero source port. What such a
//! frame carries is the userspace resolver's to judge
//! ([`resolver::respond_kernel`], the kernel's reference: the reply or the
//! pass and the verdict it is counted under, its NXDOMAIN rule and TC=1
//! replies included). Everything else must pass unchanged.
//!
//! A reply is checked from the outside: MACs, VLAN tag, addresses and
//! ports swapped, IP and UDP lengths and checksums right, not a fragment,
//! the DNS message parsing with hickory, carrying the query's ID and its
//! question byte for byte, and equal to the resolver's reply byte for byte
//! (up to the rotation of a multi-address answer, which the kernel does
//! per CPU).

use std::{fmt, net::IpAddr};

use hickory_proto::op::Message;
use hsdns::{
    dns::resolver::{self, KernelOpts},
    frame::{fold, sum16},
    records::RecordTable,
};

use super::{
    frame::udp_checksum,
    target::{Action, Run, Settings},
};

/// What the program must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Pass the frame up unchanged; the counter the README's rules name.
    Pass(&'static str),
    /// Reply with this DNS message (rotated, for several addresses),
    /// counted under `counter` (one of the `answered_*`).
    Reply { dns: Vec<u8>, counter: &'static str },
}

impl Expect {
    /// The counter this outcome moves.
    pub fn counter_name(&self) -> &'static str {
        match self {
            Self::Pass(reason) => reason,
            Self::Reply { counter, .. } => counter,
        }
    }
}

/// A frame the rules make ours: a UDP datagram to port 53 of a DNS address.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    /// The whole frame.
    pub frame: &'a [u8],
    pub l2: usize,
    pub v6: bool,
    pub l4: usize,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub dns: &'a [u8],
}

fn be16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn ip_at(f: &[u8], at: usize, v6: bool) -> IpAddr {
    if v6 {
        let b: [u8; 16] = f[at..at + 16].try_into().expect("16 bytes");
        IpAddr::from(b)
    } else {
        let b: [u8; 4] = f[at..at + 4].try_into().expect("4 bytes");
        IpAddr::from(b)
    }
}

/// The frame rules: a datagram for us, or why not (as the counter that
/// names it).
pub fn classify<'a>(f: &'a [u8], addrs: &[IpAddr]) -> Result<Datagram<'a>, &'static str> {
    const NOT_DNS: &str = "pass_not_dns";
    const MALFORMED: &str = "pass_malformed";
    let len = f.len();
    if len < 14 + 20 + 8 {
        return Err(NOT_DNS);
    }
    let (mut l2, mut ethertype) = (14, be16(f, 12));
    if ethertype == 0x8100 {
        ethertype = be16(f, 16);
        l2 = 18;
    }
    let v6 = match ethertype {
        0x0800 => false,
        0x86dd => true,
        _ => return Err(NOT_DNS),
    };
    let (l4, src, dst) = if v6 {
        if len < l2 + 40 + 8 || f[l2] >> 4 != 6 {
            return Err(NOT_DNS);
        }
        match f[l2 + 6] {
            17 => {}
            // TCP, ICMPv6: not DNS over UDP. Any other next header is an
            // extension header (fragment, hop-by-hop, ...): the stack's.
            6 | 58 => return Err(NOT_DNS),
            _ => return Err("pass_fragment"),
        }
        if l2 + 40 + usize::from(be16(f, l2 + 4)) != len {
            return Err(MALFORMED);
        }
        (l2 + 40, ip_at(f, l2 + 8, true), ip_at(f, l2 + 24, true))
    } else {
        if len < l2 + 20 + 8 || f[l2] >> 4 != 4 {
            return Err(NOT_DNS);
        }
        let ihl = usize::from(f[l2] & 0x0f) * 4;
        if ihl < 20 {
            return Err(MALFORMED);
        }
        if f[l2 + 9] != 17 {
            return Err(NOT_DNS);
        }
        if be16(f, l2 + 6) & 0x3fff != 0 {
            return Err("pass_fragment");
        }
        let total = usize::from(be16(f, l2 + 2));
        if l2 + total != len || total < ihl + 8 {
            return Err(MALFORMED);
        }
        (l2 + ihl, ip_at(f, l2 + 12, false), ip_at(f, l2 + 16, false))
    };
    if len < l4 + 8 || be16(f, l4 + 2) != 53 {
        return Err(NOT_DNS);
    }
    if !addrs.contains(&dst) {
        return Err("pass_not_our_addr");
    }
    let sport = be16(f, l4);
    let udp_len = usize::from(be16(f, l4 + 4));
    if sport == 0 || l4 + udp_len != len || udp_len < 8 + 12 {
        return Err(MALFORMED);
    }
    Ok(Datagram {
        frame: f,
        l2,
        v6,
        l4,
        src,
        dst,
        sport,
        dport: 53,
        dns: &f[l4 + 8..],
    })
}

/// `dns` with the OPT's options dropped: the kernel ignores them (and
/// never echoes them), hickory would refuse malformed ones.
fn without_options(dns: &[u8]) -> Vec<u8> {
    let mut m = dns.to_vec();
    // The question's end, then an OPT of 11 bytes with RDLENGTH 0.
    let qend = 12 + plain_len(&m[12..]).unwrap_or(0) + 4;
    if m[10..12] == [0, 1] && m.len() >= qend + 11 {
        m.truncate(qend + 11);
        m[qend + 9] = 0;
        m[qend + 10] = 0;
    }
    m
}

/// Length of an uncompressed wire name at the start of `b`.
fn plain_len(b: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let l = usize::from(*b.get(pos)?);
        pos += 1 + l;
        if l == 0 {
            return Some(pos);
        }
    }
}

/// The program's expected outcome for `frame`.
pub fn expect(table: &RecordTable, settings: Settings, addrs: &[IpAddr], frame: &[u8]) -> Expect {
    let d = match classify(frame, addrs) {
        Ok(d) => d,
        Err(reason) => return Expect::Pass(reason),
    };
    if !settings.answering {
        return Expect::Pass("pass_not_ready");
    }
    dns_expect(table, settings, d.dns)
}

/// The resolver's options for the kernel under `settings`, replies
/// rotated left by `rotate`.
fn kernel_opts(settings: Settings, rotate: usize) -> KernelOpts {
    KernelOpts {
        nxdomain: settings.nxdomain,
        rotate,
    }
}

/// What the program must do with a DNS message that reached it: the
/// resolver's kernel-equivalent decision (the only function here that
/// knows the resolver's API, with [`rotated`]), its verdict naming the
/// counter.
fn dns_expect(table: &RecordTable, settings: Settings, dns: &[u8]) -> Expect {
    match resolver::respond_kernel(table, dns, kernel_opts(settings, 0)) {
        Ok((reply, verdict)) => Expect::Reply {
            dns: reply,
            counter: verdict.name(),
        },
        Err(verdict) => Expect::Pass(verdict.name()),
    }
}

/// The resolver's reply to `dns` with its addresses rotated left by `k`.
fn rotated(table: &RecordTable, settings: Settings, dns: &[u8], k: usize) -> Option<Vec<u8>> {
    resolver::respond_kernel(table, dns, kernel_opts(settings, k))
        .ok()
        .map(|(reply, _)| reply)
}

/// How the program got a frame wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// A reply whose headers, checksums or DNS bytes are wrong.
    WrongReply,
    /// A reply to a frame that must pass.
    AnsweredNotOurs,
    /// A passed frame that was changed on the way.
    ModifiedPass,
    /// Dropped, aborted or any other verdict.
    Dropped,
    /// Passed (unchanged) where the resolver answers.
    MissedAnswer,
    /// The counters disagree with the outcomes.
    Counters,
    /// BPF_PROG_TEST_RUN itself failed.
    RunError,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongReply => "wrong reply",
            Self::AnsweredNotOurs => "answered a frame that must pass",
            Self::ModifiedPass => "passed frame modified",
            Self::Dropped => "dropped",
            Self::MissedAnswer => "missed answer",
            Self::Counters => "counters",
            Self::RunError => "test run failed",
        })
    }
}

#[derive(Clone, Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

fn fail(kind: FailureKind, detail: impl Into<String>) -> Failure {
    Failure {
        kind,
        detail: detail.into(),
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks what the program did with `frame` against `expect`.
pub fn check(
    table: &RecordTable,
    settings: Settings,
    addrs: &[IpAddr],
    frame: &[u8],
    expect: &Expect,
    run: &Run,
) -> Result<(), Failure> {
    match (expect, run.action) {
        (_, Action::Drop | Action::Aborted | Action::Other(_)) => Err(fail(
            FailureKind::Dropped,
            format!(
                "verdict {} (expected {})",
                run.action,
                expect.counter_name()
            ),
        )),
        (_, Action::Pass) if run.out != frame => Err(fail(
            FailureKind::ModifiedPass,
            format!("out {}", hex(&run.out)),
        )),
        (Expect::Pass(_), Action::Pass) => Ok(()),
        (Expect::Reply { dns, .. }, Action::Pass) => Err(fail(
            FailureKind::MissedAnswer,
            format!("userspace answers {}", hex(dns)),
        )),
        (Expect::Pass(reason), Action::Reply) => Err(fail(
            FailureKind::AnsweredNotOurs,
            format!("must pass ({reason}), replied {}", hex(&run.out)),
        )),
        (Expect::Reply { dns, .. }, Action::Reply) => {
            let d = classify(frame, addrs).expect("a reply is expected only for our frames");
            check_reply(table, settings, &d, dns, &run.out).map_err(|e| {
                fail(
                    FailureKind::WrongReply,
                    format!("{e}; out {}", hex(&run.out)),
                )
            })
        }
    }
}

fn check_reply(
    table: &RecordTable,
    settings: Settings,
    q: &Datagram<'_>,
    expected: &[u8],
    out: &[u8],
) -> Result<(), String> {
    let need = |what: &str, ok: bool| if ok { Ok(()) } else { Err(what.to_string()) };
    let l2 = q.l2;
    let l3 = if q.v6 { 40 } else { 20 };
    need(
        "reply shorter than its headers",
        out.len() >= l2 + l3 + 8 + 12,
    )?;
    // The query's MACs swapped; the tag and the EtherType kept.
    need(
        "MACs swapped",
        out[0..6] == q.frame[6..12] && out[6..12] == q.frame[0..6],
    )?;
    need(
        "VLAN tag and EtherType kept",
        out[12..l2] == q.frame[12..l2],
    )?;
    let (l4, src, dst) = if q.v6 {
        let ip = &out[l2..l2 + 40];
        need("IPv6 version", ip[0] >> 4 == 6)?;
        need(
            "IPv6 payload length",
            usize::from(be16(ip, 4)) == out.len() - l2 - 40,
        )?;
        need("IPv6 next header UDP", ip[6] == 17)?;
        need("IPv6 hop limit", ip[7] > 0)?;
        (l2 + 40, ip_at(out, l2 + 8, true), ip_at(out, l2 + 24, true))
    } else {
        let ihl = usize::from(out[l2] & 0x0f) * 4;
        need("IPv4 version and IHL", out[l2] >> 4 == 4 && ihl >= 20)?;
        need("IPv4 header fits", out.len() >= l2 + ihl + 8 + 12)?;
        let ip = &out[l2..l2 + ihl];
        need(
            "IPv4 total length",
            usize::from(be16(ip, 2)) == out.len() - l2,
        )?;
        need("IPv4 header checksum", fold(sum16(ip)) == 0xffff)?;
        need("not a fragment", be16(ip, 6) & 0x3fff == 0)?;
        need("IPv4 TTL", ip[8] > 0)?;
        need("IPv4 protocol UDP", ip[9] == 17)?;
        (
            l2 + ihl,
            ip_at(out, l2 + 12, false),
            ip_at(out, l2 + 16, false),
        )
    };
    need("from the address asked", src == q.dst)?;
    need("to the client", dst == q.src)?;
    let udp = &out[l4..];
    need("UDP source port", be16(udp, 0) == q.dport)?;
    need("UDP destination port", be16(udp, 2) == q.sport)?;
    need("UDP length", usize::from(be16(udp, 4)) == udp.len())?;
    let mut zeroed = udp.to_vec();
    zeroed[6..8].copy_from_slice(&[0, 0]);
    let (s, d) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (s.octets().to_vec(), d.octets().to_vec()),
        (IpAddr::V6(s), IpAddr::V6(d)) => (s.octets().to_vec(), d.octets().to_vec()),
        _ => return Err("address families differ".into()),
    };
    need(
        "UDP checksum",
        be16(udp, 6) == udp_checksum(&s, &d, &zeroed),
    )?;

    let dns = &udp[8..];
    let msg = Message::from_vec(dns).map_err(|e| format!("reply does not parse: {e}"))?;
    need("the query's ID", dns[..2] == q.dns[..2])?;
    let qlen = plain_len(&q.dns[12..]).ok_or("query name")? + 4;
    need(
        "the question as sent",
        dns.get(12..12 + qlen) == q.dns.get(12..12 + qlen),
    )?;
    let asked = Message::from_vec(&without_options(q.dns)).map_err(|e| format!("query: {e}"))?;
    need(
        "hickory reads the same question",
        msg.queries == asked.queries,
    )?;
    if dns == expected {
        return Ok(());
    }
    // Several addresses: the kernel starts each reply one further. Find
    // where this one starts and compare with the resolver's reply rotated
    // as much.
    if msg.answers.len() > 1 {
        let want = Message::from_vec(expected).map_err(|e| format!("expected: {e}"))?;
        if let Some(k) = want.answers.iter().position(|r| *r == msg.answers[0])
            && rotated(table, settings, q.dns, k).as_deref() == Some(dns)
        {
            return Ok(());
        }
    }
    Err(format!(
        "differs from the resolver's reply {}",
        hex(expected)
    ))
}
