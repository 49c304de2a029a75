//! The userspace resolver: the reference the kernel program is tested
//! against, byte for byte, and the answerer for queries the kernel passes up.
//!
//! It applies exactly the kernel's acceptance rules, in the kernel's order,
//! so a pass here is a pass there with the same counter (the verdicts are
//! `hsdns_common::Verdict`, the table the kernel counts by):
//!
//! 1. shorter than a header: malformed;
//! 2. QR=1, OPCODE≠QUERY, TC=1, QDCOUNT≠1, ANCOUNT≠0, NSCOUNT≠0 or
//!    ARCOUNT>1: unsupported query;
//! 3. a question name with a compression pointer or a label type other than
//!    a plain label (so no label over 63), longer than 255 bytes, or cut
//!    short, or a question without its QTYPE/QCLASS: malformed; a name of
//!    more than 32 labels: unsupported name (in the order a walk over the
//!    labels meets them);
//! 4. QCLASS≠IN, or QTYPE other than A/AAAA: unsupported type;
//! 5. with ARCOUNT=1, fewer than 11 bytes left (an OPT record without
//!    options): malformed; that record not an OPT with root owner and EDNS
//!    version 0: unsupported query; its RDLENGTH not ending the message:
//!    malformed. An OPT that carries options (a client COOKIE, padding,
//!    ECS) is accepted on both sides: the options are skipped unread, and
//!    the reply's own OPT carries none, as RFC 6891 (options not
//!    understood are ignored) and RFC 7873 (a server without cookies)
//!    allow; any flags (DO among them) are accepted and not echoed;
//! 6. bytes after the last record: malformed;
//! 7. a label holding a `.` or NUL byte: unsupported name (the kernel keys
//!    names by their dotted form, which cannot tell such a label apart);
//! 8. name not in the table: NXDOMAIN when negative answers are on and the
//!    name provably does not exist ([`RecordTable::is_nxdomain`], except
//!    under `dns.<zone>` and `hostmaster.<zone>`, whose SOA compresses
//!    differently), else unknown name;
//! 9. a name whose A/AAAA answers live in userspace only
//!    ([`NameEntry::kernel_answerable`](crate::records::NameEntry::kernel_answerable)):
//!    userspace only;
//! 10. the records, or NODATA with the zone's SOA; a reply larger than the
//!     client accepts (512 bytes without EDNS, its EDNS size up to 1232
//!     with) is the header and question with TC=1 and no records, so the
//!     client retries over TCP and never gets a partial record set.
//!
//! [`respond_any_type`] is the userspace server's answerer for everything
//! the kernel passes up: every type, NXDOMAIN, truncation.
//!
//! The reply is built from scratch with hickory (never from the precomputed
//! pieces of `answer`), so equality with the kernel's reply is evidence.
use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
use hsdns_common::{EDNS_UDP_SIZE, MAX_LABELS, MAX_NAME_LEN, PLAIN_UDP_SIZE, ZONE_MAX};

use super::answer::{HEADER_LEN, OPT_RECORD_LEN, server_edns, wire_len};
use crate::records::{DNS_VERSION_TTL, PodAnswer, RecordTable};

/// What to do with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The complete reply message.
    Answer(Vec<u8>),
    /// Not ours to answer; the reason names the kernel counter.
    Pass(PassReason),
}

/// Why a query is passed on: the kernel's verdict for it (one of the
/// `pass_*` counters).
pub type PassReason = hsdns_common::Verdict;

/// The kernel's settings the oracle follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOpts {
    /// Negative answers on (the maps hold the whole zone).
    pub nxdomain: bool,
    /// Multi-address answers rotated left by this many places.
    pub rotate: usize,
}

/// Answers `query` from `table` as the kernel does with negative answers
/// off, or says why not. Addresses come in the table's order.
pub fn respond(table: &RecordTable, query: &[u8]) -> Verdict {
    respond_rotated(table, query, 0)
}

/// [`respond`] with the addresses rotated left by `rotate` places (modulo
/// their number), as a load-balancing server hands them out: clients take
/// the first address, so each query should start with a different one.
pub fn respond_rotated(table: &RecordTable, query: &[u8], rotate: usize) -> Verdict {
    let opts = KernelOpts {
        nxdomain: false,
        rotate,
    };
    match respond_kernel(table, query, opts) {
        Ok((bytes, _)) => Verdict::Answer(bytes),
        Err(reason) => Verdict::Pass(reason),
    }
}

/// The kernel's reply to `query` and the verdict it counts it under, or
/// the verdict of its pass.
pub fn respond_kernel(
    table: &RecordTable,
    query: &[u8],
    opts: KernelOpts,
) -> Result<(Vec<u8>, PassReason), PassReason> {
    use hsdns_common::Verdict::*;
    let mut decoder = BinDecoder::new(query);
    let header = Header::read(&mut decoder).map_err(|_| Malformed)?;
    let (meta, counts) = (header.metadata, header.counts);
    if meta.message_type != MessageType::Query
        || meta.op_code != OpCode::Query
        || meta.truncation
        || counts.queries != 1
        || counts.answers != 0
        || counts.authorities != 0
        || counts.additionals > 1
    {
        return Err(UnsupportedQuery);
    }

    // hickory follows pointers and tolerates what the kernel refuses; the
    // name's bytes are checked first so both reject the same questions.
    let qname_len = plain_name_len(&query[HEADER_LEN..])?;
    let question = Query::read(&mut decoder).map_err(|_| Malformed)?;
    debug_assert_eq!(decoder.index(), HEADER_LEN + qname_len + 4);
    if question.query_class() != DNSClass::IN
        || !matches!(question.query_type(), RecordType::A | RecordType::AAAA)
    {
        return Err(UnsupportedType);
    }

    let rest = &query[decoder.index()..];
    let client_payload = if counts.additionals == 1 {
        if rest.len() < OPT_RECORD_LEN {
            return Err(Malformed);
        }
        // Owner byte 0 (root), TYPE, CLASS (the payload size), ext-RCODE,
        // VERSION, flags, RDLENGTH, at the offsets the kernel reads. Options
        // (a client COOKIE, padding, ECS) are skipped unread and never
        // echoed, as RFC 6891/7873 allow a server that does not implement
        // them; hickory would also accept a compressed root owner.
        let rtype = u16::from_be_bytes([rest[1], rest[2]]);
        let version = rest[6];
        let rdlength = usize::from(u16::from_be_bytes([rest[9], rest[10]]));
        if rest[0] != 0 || rtype != u16::from(RecordType::OPT) || version != 0 {
            return Err(UnsupportedQuery);
        }
        if rest.len() != OPT_RECORD_LEN + rdlength {
            return Err(Malformed);
        }
        Some(u16::from_be_bytes([rest[3], rest[4]]))
    } else {
        if !rest.is_empty() {
            return Err(Malformed);
        }
        None
    };
    if !dotted_form_exists(&query[HEADER_LEN..HEADER_LEN + qname_len]) {
        return Err(UnsupportedName);
    }

    let qname = question.name().clone();
    let ttl = table.zone().ttl;
    let mut msg = Message::response(meta.id, OpCode::Query);
    msg.metadata.authoritative = true;
    msg.metadata.recursion_desired = meta.recursion_desired;
    msg.metadata.checking_disabled = meta.checking_disabled;
    msg.add_query(question.clone());
    if client_payload.is_some() {
        msg.set_edns(server_edns());
    }
    // The zone as the client spelled it, so the SOA compresses into the
    // question (table names always end in the zone).
    let zone_labels = table.zone().zone.iter().len();
    let soa_rr = || {
        let zone_as_asked = qname.trim_to(zone_labels);
        let soa = table.soa(&zone_as_asked);
        Record::from_rdata(zone_as_asked, soa_ttl(ttl), RData::SOA(soa))
    };
    let verdict = match table.get(&qname) {
        None if opts.nxdomain && kernel_nxdomain(table, &qname) => {
            msg.metadata.response_code = ResponseCode::NXDomain;
            msg.add_authority(soa_rr());
            AnsweredNxdomain
        }
        None => return Err(UnknownName),
        Some(entry) if !entry.kernel_answerable() => return Err(UserspaceOnly),
        Some(entry) => {
            let (mut answers, verdict): (Vec<RData>, _) = match question.query_type() {
                RecordType::A => (
                    entry.a.iter().map(|ip| RData::A(A(*ip))).collect(),
                    AnsweredA,
                ),
                _ => (
                    entry.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
                    AnsweredAaaa,
                ),
            };
            if answers.is_empty() {
                msg.add_authority(soa_rr());
                AnsweredNodata
            } else {
                let n = answers.len();
                answers.rotate_left(opts.rotate % n);
                msg.add_answers(
                    answers
                        .into_iter()
                        .map(|r| Record::from_rdata(qname.clone(), ttl, r)),
                );
                verdict
            }
        }
    };
    let wire = msg.to_vec().map_err(|_| Internal)?;
    let limit = match client_payload {
        None => PLAIN_UDP_SIZE,
        Some(size) => size.clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE),
    };
    // hickory drops records that overflow 64 KiB and sets TC; either way
    // the kernel sends the header and question alone, with TC.
    if wire.len() > usize::from(limit) || wire[2] & 0x02 != 0 {
        msg.answers.clear();
        msg.authorities.clear();
        msg.metadata.response_code = ResponseCode::NoError;
        msg.metadata.truncation = true;
        return Ok((msg.to_vec().map_err(|_| Internal)?, AnsweredTruncated));
    }
    Ok((wire, verdict))
}

/// The kernel's NXDOMAIN rule: the table's, except under `dns.<zone>` and
/// `hostmaster.<zone>` (see the module documentation), and only for zones
/// short enough for the kernel's copy of the zone name.
fn kernel_nxdomain(table: &RecordTable, name: &Name) -> bool {
    let zone = &table.zone().zone;
    if wire_len(zone) > ZONE_MAX || !table.is_nxdomain(name) {
        return false;
    }
    let labels = name.iter().len();
    let before_zone = labels - zone.iter().len();
    let last = name.iter().nth(before_zone - 1).expect("below the zone");
    !(last.eq_ignore_ascii_case(b"dns") || last.eq_ignore_ascii_case(b"hostmaster"))
}

/// Whether a plain wire-format name has a dotted form (see
/// `hsdns_common::name`): no label holds a `.` or NUL byte.
fn dotted_form_exists(wire: &[u8]) -> bool {
    let mut out = vec![0u8; wire.len()];
    hsdns_common::dotted(wire, &mut out).is_some() && !label_bytes(wire).any(|b| b == 0)
}

/// The bytes of a plain wire-format name's labels.
fn label_bytes(wire: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut starts = Vec::new();
    let mut pos = 0;
    while let Some(&l) = wire.get(pos) {
        if l == 0 {
            break;
        }
        starts.push(pos);
        pos += 1 + usize::from(l);
    }
    wire.iter()
        .enumerate()
        .filter(move |(i, _)| !starts.contains(i) && *i + 1 < wire.len())
        .map(|(_, &b)| b)
}

/// Length of an uncompressed question name at the start of `bytes`, root
/// label included; malformed or unsupported as the kernel's walk over the
/// labels finds it, in its order.
fn plain_name_len(bytes: &[u8]) -> Result<usize, PassReason> {
    use hsdns_common::Verdict::*;
    let mut pos = 0;
    for labels in 0.. {
        let len = usize::from(*bytes.get(pos).ok_or(Malformed)?);
        if len == 0 {
            return Ok(pos + 1);
        }
        // 0b11 is a pointer, 0b01/0b10 obsolete label types: none is a plain
        // label, and all have a value over 63.
        if len > 63 {
            return Err(Malformed);
        }
        if labels == MAX_LABELS {
            return Err(UnsupportedName);
        }
        pos += 1 + len;
        if pos >= MAX_NAME_LEN {
            return Err(Malformed);
        }
    }
    unreachable!("the loop returns")
}

/// Largest reply over TCP (RFC 1035 4.2.2: a two-byte length prefix).
const TCP_MAX: usize = u16::MAX as usize;

/// Answers any question the table can answer: what the userspace server
/// calls for queries the kernel passes up (and may call for any query).
///
/// `max_udp` is the transport: `Some(n)` for UDP, where the reply must fit
/// the client's buffer (its EDNS payload size, 512 without EDNS) clamped to
/// `512..=n`; `None` for TCP (up to 65535 bytes).
///
/// [`Verdict::Answer`] is a complete authoritative reply:
/// - A/AAAA/SRV/TXT/CNAME/SOA records of a name in the table; an SRV answer
///   carries its targets' A/AAAA records in the additional section;
/// - for an ExternalName service, the CNAME for every question type (RFC
///   1034 3.6.2; the server may chase it, this function never does);
/// - NODATA (the zone's SOA in the authority section) for a name in the
///   table without records of the asked type;
/// - NXDOMAIN with the SOA for [`RecordTable::is_nxdomain`] names;
/// - the PTR records of the zone's addresses (`in-addr.arpa.`/`ip6.arpa.`,
///   no additional section);
/// - when the reply does not fit: first without the additional section
///   (optional data, RFC 2181 9), then header, question and OPT with TC set,
///   so the client retries over TCP.
///
/// [`Verdict::Pass`] means "not ours, forward upstream", with the reason:
/// a name outside the zone that is not a known PTR name, a name under the
/// zone the table cannot prove absent (`pod.<zone>`, a namespace without
/// services), `ns.dns.<zone>` (only the upstream knows its addresses), NS
/// at the apex (the upstream has the glue), ANY, zone transfers, classes
/// other than IN, non-PTR types at reverse names (no SOA of ours for those
/// zones), and messages that are not one standard query (including EDNS
/// versions other than 0, which the upstream answers with BADVERS).
pub fn respond_any_type(table: &RecordTable, query: &[u8], max_udp: Option<u16>) -> Verdict {
    respond_any_type_rotated(table, query, max_udp, 0)
}

/// [`respond_any_type`] with A/AAAA answers rotated left by `rotate`
/// places, as the kernel rotates them (each reply starts one further).
pub fn respond_any_type_rotated(
    table: &RecordTable,
    query: &[u8],
    max_udp: Option<u16>,
    rotate: usize,
) -> Verdict {
    match reply_any_type(table, query, max_udp, rotate) {
        Ok(bytes) => Verdict::Answer(bytes),
        Err(reason) => Verdict::Pass(reason),
    }
}

fn reply_any_type(
    table: &RecordTable,
    query: &[u8],
    max_udp: Option<u16>,
    rotate: usize,
) -> Result<Vec<u8>, PassReason> {
    use hsdns_common::Verdict::*;
    let q = Message::from_vec(query).map_err(|_| Malformed)?;
    let meta = &q.metadata;
    if meta.message_type != MessageType::Query
        || meta.op_code != OpCode::Query
        || q.queries.len() != 1
        || q.edns.as_ref().is_some_and(|e| e.version() != 0)
    {
        return Err(UnsupportedQuery);
    }
    let question = &q.queries[0];
    let qtype = question.query_type();
    if question.query_class() != DNSClass::IN
        || matches!(
            qtype,
            RecordType::ANY | RecordType::AXFR | RecordType::IXFR | RecordType::OPT
        )
    {
        return Err(UnsupportedType);
    }
    let mut qname = question.name().clone();
    qname.set_fqdn(true);
    let ttl = table.zone().ttl;
    let zone = &table.zone().zone;

    let mut msg = Message::response(meta.id, OpCode::Query);
    msg.metadata.authoritative = true;
    msg.metadata.recursion_desired = meta.recursion_desired;
    msg.metadata.checking_disabled = meta.checking_disabled;
    msg.add_query(question.clone());
    if q.edns.is_some() {
        msg.set_edns(server_edns());
    }
    let rr = |data: RData| Record::from_rdata(qname.clone(), ttl, data);

    if !zone.zone_of(&qname) {
        // Reverse names: answered for the zone's addresses, else upstream.
        let targets = table.ptr(&qname).ok_or(UnknownName)?;
        if qtype != RecordType::PTR {
            return Err(UnsupportedType);
        }
        msg.add_answers(targets.into_iter().map(|t| rr(RData::PTR(PTR(t)))));
        return finish(msg, q.edns.as_ref(), max_udp);
    }

    // The zone as the client spelled it, so the SOA compresses into the
    // question.
    let zone_as_asked = qname.trim_to(zone.iter().len());
    let soa_rr = || {
        Record::from_rdata(
            zone_as_asked.clone(),
            soa_ttl(ttl),
            RData::SOA(table.soa(&zone_as_asked)),
        )
    };
    let nxdomain = |mut msg: Message| {
        msg.metadata.response_code = ResponseCode::NXDomain;
        msg.add_authority(soa_rr());
        finish(msg, q.edns.as_ref(), max_udp)
    };
    match table.pod_answer(&qname) {
        PodAnswer::NotPod => {}
        PodAnswer::Pass => return Err(UnknownName),
        PodAnswer::NxDomain => return nxdomain(msg),
        PodAnswer::NoData => {
            msg.add_authority(soa_rr());
            return finish(msg, q.edns.as_ref(), max_udp);
        }
        PodAnswer::Address(ip) => {
            match (qtype, ip) {
                (RecordType::A, IpAddr::V4(v4)) => msg.add_answer(rr(RData::A(A(v4)))),
                (RecordType::AAAA, IpAddr::V6(v6)) => msg.add_answer(rr(RData::AAAA(AAAA(v6)))),
                _ => msg.add_authority(soa_rr()),
            };
            return finish(msg, q.edns.as_ref(), max_udp);
        }
    }
    let Some(entry) = table.get(&qname) else {
        // SRV questions in the spellings CoreDNS accepts besides the
        // table's `_<port>._<proto>` (underscores left out): answered when
        // a record matches. Other types of those spellings follow the
        // table (and the kernel): NXDOMAIN.
        if qtype == RecordType::SRV
            && let Some(records) = table.srv(&qname).filter(|r| !r.is_empty())
        {
            add_srv(table, &mut msg, &qname, records);
            return finish(msg, q.edns.as_ref(), max_udp);
        }
        if !table.does_not_exist(&qname) {
            return Err(UnknownName);
        }
        return nxdomain(msg);
    };
    if entry.upstream_only() {
        return Err(UserspaceOnly);
    }
    let is_apex = qname == *zone;
    if let Some(target) = entry.cname() {
        msg.add_answer(rr(RData::CNAME(CNAME(target.clone()))));
        return finish(msg, q.edns.as_ref(), max_udp);
    }
    // `_<port>._<proto>` names: their targets' addresses, as CoreDNS gives
    // them (the kernel passes these up).
    let srv_addresses = table.srv_addresses(&qname);
    match qtype {
        RecordType::A | RecordType::AAAA if srv_addresses.is_some() => {
            let (v4, v6) = srv_addresses.unwrap_or_default();
            if qtype == RecordType::A {
                msg.add_answers(v4.into_iter().map(|ip| rr(RData::A(A(ip)))))
            } else {
                msg.add_answers(v6.into_iter().map(|ip| rr(RData::AAAA(AAAA(ip)))))
            }
        }
        RecordType::A => {
            let k = rotate % entry.a.len().max(1);
            let (head, tail) = entry.a.split_at(k);
            msg.add_answers(tail.iter().chain(head).map(|ip| rr(RData::A(A(*ip)))))
        }
        RecordType::AAAA => {
            let k = rotate % entry.aaaa.len().max(1);
            let (head, tail) = entry.aaaa.split_at(k);
            msg.add_answers(tail.iter().chain(head).map(|ip| rr(RData::AAAA(AAAA(*ip)))))
        }
        RecordType::TXT => msg.add_answers(entry.txt().map(|text| {
            Record::from_rdata(
                qname.clone(),
                DNS_VERSION_TTL,
                RData::TXT(TXT::new(vec![text.to_owned()])),
            )
        })),
        RecordType::SRV => {
            let records = table.srv(&qname).unwrap_or_default();
            add_srv(table, &mut msg, &qname, records);
            &mut msg
        }
        RecordType::SOA if is_apex => msg.add_answer(soa_rr()),
        RecordType::NS if is_apex => return Err(UnsupportedType),
        _ => &mut msg,
    };
    if msg.answers.is_empty() {
        msg.add_authority(soa_rr());
    }
    finish(msg, q.edns.as_ref(), max_udp)
}

/// TTL of the SOA record in negative answers: CoreDNS's `min(ttl, 300)`
/// (its minimum field stays the zone's TTL).
pub fn soa_ttl(ttl: u32) -> u32 {
    ttl.min(300)
}

/// SRV answers, and each target's addresses once in the additional
/// section, A before AAAA, in record order.
fn add_srv(table: &RecordTable, msg: &mut Message, qname: &Name, records: Vec<SRV>) {
    let ttl = table.zone().ttl;
    let mut seen: Vec<&Name> = Vec::new();
    let mut extra = Vec::new();
    for srv in &records {
        if seen.contains(&&srv.target) {
            continue;
        }
        seen.push(&srv.target);
        if let Some(t) = table.get(&srv.target) {
            let owner = || srv.target.clone();
            extra.extend(
                t.a.iter()
                    .map(|ip| Record::from_rdata(owner(), ttl, RData::A(A(*ip)))),
            );
            extra.extend(
                t.aaaa
                    .iter()
                    .map(|ip| Record::from_rdata(owner(), ttl, RData::AAAA(AAAA(*ip)))),
            );
        }
    }
    msg.add_additionals(extra);
    msg.add_answers(
        records
            .into_iter()
            .map(|srv| Record::from_rdata(qname.clone(), ttl, RData::SRV(srv))),
    );
}

/// Encodes `msg` within the size the transport and the client allow,
/// dropping the additional section first, then everything but the
/// question (TC set).
fn finish(
    mut msg: Message,
    edns: Option<&Edns>,
    max_udp: Option<u16>,
) -> Result<Vec<u8>, PassReason> {
    let limit = match max_udp {
        None => TCP_MAX,
        Some(cap) => {
            let client = edns.map_or(PLAIN_UDP_SIZE, Edns::max_payload);
            usize::from(client.clamp(PLAIN_UDP_SIZE, cap.max(PLAIN_UDP_SIZE)))
        }
    };
    let encode = |m: &Message| m.to_vec().map_err(|_| PassReason::Internal);
    let wire = encode(&msg)?;
    if wire.len() <= limit && wire[2] & 0x02 == 0 {
        return Ok(wire);
    }
    msg.additionals.clear();
    let wire = encode(&msg)?;
    if wire.len() <= limit && wire[2] & 0x02 == 0 {
        return Ok(wire);
    }
    msg.answers.clear();
    msg.authorities.clear();
    msg.metadata.truncation = true;
    encode(&msg)
}
