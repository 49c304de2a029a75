//! The userspace resolver: the reference the XDP program is tested against,
//! byte for byte, and the answerer for queries the kernel passes up.
//!
//! It applies exactly the kernel's acceptance rules, in the kernel's order,
//! so a pass here is a pass there with the same counter:
//!
//! 1. shorter than a header: malformed;
//! 2. QR=1, OPCODE≠QUERY, TC=1, QDCOUNT≠1, ANCOUNT≠0, NSCOUNT≠0 or
//!    ARCOUNT>1: unsupported query;
//! 3. a question name with a compression pointer or a label type other than
//!    a plain label (so no label over 63), longer than 255 bytes, or cut
//!    short, or a question without its QTYPE/QCLASS: malformed;
//! 4. QCLASS≠IN, or QTYPE other than A/AAAA: unsupported type;
//! 5. with ARCOUNT=1, fewer than 11 bytes left: malformed; that record not
//!    an OPT with root owner, EDNS version 0 and RDLENGTH 0: unsupported
//!    query;
//! 6. bytes after the last record: malformed;
//! 7. name not in the table: unknown name;
//! 8. reply larger than the client accepts: too large.
//!
//! The reply is built from scratch with hickory (never from the precomputed
//! pieces of `answer`), so equality with the kernel's reply is evidence.
use hickory_proto::op::{Header, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
use hsdns_common::{Counters, EDNS_UDP_SIZE, MAX_NAME_LEN, PLAIN_UDP_SIZE};

use super::answer::{HEADER_LEN, OPT_RECORD_LEN, server_edns};
use crate::records::RecordTable;

/// What to do with a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The complete reply message.
    Answer(Vec<u8>),
    /// Not ours to answer; the reason names the kernel counter.
    Pass(PassReason),
}

/// Why a query is passed on, one per kernel counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PassReason {
    UnsupportedQuery,
    UnsupportedType,
    UnknownName,
    TooLarge,
    Malformed,
    /// hickory failed to encode a reply (a bug, never expected).
    Internal,
}

impl PassReason {
    /// Field name of the matching [`Counters`] field.
    pub fn counter_name(self) -> &'static str {
        match self {
            Self::UnsupportedQuery => "pass_unsupported_query",
            Self::UnsupportedType => "pass_unsupported_type",
            Self::UnknownName => "pass_unknown_name",
            Self::TooLarge => "pass_too_large",
            Self::Malformed => "pass_malformed",
            Self::Internal => "pass_internal",
        }
    }

    /// Counts this pass the way the kernel does.
    pub fn count(self, counters: &mut Counters) {
        let field = match self {
            Self::UnsupportedQuery => &mut counters.pass_unsupported_query,
            Self::UnsupportedType => &mut counters.pass_unsupported_type,
            Self::UnknownName => &mut counters.pass_unknown_name,
            Self::TooLarge => &mut counters.pass_too_large,
            Self::Malformed => &mut counters.pass_malformed,
            Self::Internal => &mut counters.pass_internal,
        };
        *field += 1;
    }
}

/// Answers `query` from `table`, or says why not. Addresses come in the
/// table's order.
pub fn respond(table: &RecordTable, query: &[u8]) -> Verdict {
    respond_rotated(table, query, 0)
}

/// [`respond`] with the addresses rotated left by `rotate` places (modulo
/// their number), as a load-balancing server hands them out: clients take
/// the first address, so each query should start with a different one.
pub fn respond_rotated(table: &RecordTable, query: &[u8], rotate: usize) -> Verdict {
    match reply(table, query, rotate) {
        Ok(bytes) => Verdict::Answer(bytes),
        Err(reason) => Verdict::Pass(reason),
    }
}

fn reply(table: &RecordTable, query: &[u8], rotate: usize) -> Result<Vec<u8>, PassReason> {
    use PassReason::*;
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
    let qname_len = plain_name_len(&query[HEADER_LEN..]).ok_or(Malformed)?;
    let question = Query::read(&mut decoder).map_err(|_| Malformed)?;
    debug_assert_eq!(decoder.index(), HEADER_LEN + qname_len + 4);
    if question.query_class() != DNSClass::IN
        || !matches!(question.query_type(), RecordType::A | RecordType::AAAA)
    {
        return Err(UnsupportedType);
    }

    let client_payload = if counts.additionals == 1 {
        let rest = &query[decoder.index()..];
        if rest.len() < OPT_RECORD_LEN {
            return Err(Malformed);
        }
        // Owner byte 0 (root), TYPE, CLASS, ext-RCODE, VERSION, flags,
        // RDLENGTH: the kernel reads these offsets, hickory would accept a
        // compressed root owner or options.
        let rtype = u16::from_be_bytes([rest[1], rest[2]]);
        let version = rest[6];
        let rdlength = u16::from_be_bytes([rest[9], rest[10]]);
        if rest[0] != 0 || rtype != u16::from(RecordType::OPT) || version != 0 || rdlength != 0 {
            return Err(UnsupportedQuery);
        }
        let opt = Record::read(&mut decoder).map_err(|_| Malformed)?;
        let edns = hickory_proto::op::Edns::from(&opt);
        Some(edns.max_payload())
    } else {
        None
    };
    if !decoder.is_empty() {
        return Err(Malformed);
    }

    let entry = table.get(question.name()).ok_or(UnknownName)?;
    let qname = question.name().clone();
    let ttl = table.zone().ttl;
    let mut msg = Message::response(meta.id, OpCode::Query);
    msg.metadata.authoritative = true;
    msg.metadata.recursion_desired = meta.recursion_desired;
    msg.metadata.checking_disabled = meta.checking_disabled;
    msg.add_query(question.clone());
    let mut answers: Vec<RData> = match question.query_type() {
        RecordType::A => entry.a.iter().map(|ip| RData::A(A(*ip))).collect(),
        _ => entry.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
    };
    if !answers.is_empty() {
        let n = answers.len();
        answers.rotate_left(rotate % n);
    }
    if answers.is_empty() {
        // The zone as the client spelled it, so the SOA compresses into the
        // question (table names always end in the zone).
        let zone_labels = table.zone().zone.iter().len();
        let zone_as_asked = qname.trim_to(zone_labels);
        let soa = table.soa(&zone_as_asked);
        msg.add_authority(Record::from_rdata(zone_as_asked, ttl, RData::SOA(soa)));
    } else {
        msg.add_answers(
            answers
                .into_iter()
                .map(|r| Record::from_rdata(qname.clone(), ttl, r)),
        );
    }
    if client_payload.is_some() {
        msg.set_edns(server_edns());
    }
    let wire = msg.to_vec().map_err(|_| Internal)?;
    let limit = match client_payload {
        None => PLAIN_UDP_SIZE,
        Some(size) => size.clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE),
    };
    // hickory drops records that overflow 64 KiB and sets TC; either way the
    // kernel would not send it.
    if wire.len() > usize::from(limit) || wire[2] & 0x02 != 0 {
        return Err(TooLarge);
    }
    Ok(wire)
}

/// Length of an uncompressed question name at the start of `bytes`, root
/// label included, or `None` when the kernel would call it malformed.
fn plain_name_len(bytes: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let len = usize::from(*bytes.get(pos)?);
        // 0b11 is a pointer, 0b01/0b10 obsolete label types: none is a plain
        // label, and all have a value over 63.
        if len > 63 {
            return None;
        }
        pos += 1 + len;
        if pos > MAX_NAME_LEN {
            return None;
        }
        if len == 0 {
            return Some(pos);
        }
    }
}
