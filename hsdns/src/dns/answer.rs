//! The bytes the XDP program copies after a question it answers in place.
//!
//! The kernel keeps the query's header ID and question, rewrites the header,
//! and appends: an answer section, or for NODATA an authority section, and
//! an OPT record when the query had one. Every piece is encoded here by
//! hickory-proto against a question at offset 12, so compression pointers
//! in the pieces point into the client's own question.
use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, Message, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable as _, BinEncoder};
use hsdns_common::{EDNS_UDP_SIZE, MAX_NAME_LEN};

use crate::records::{NameEntry, RecordTable, ZoneConfig};

/// DNS header length; the question starts here.
pub const HEADER_LEN: usize = 12;
/// QTYPE and QCLASS after the question name.
const QUESTION_TAIL: usize = 4;
/// Root name, TYPE, CLASS, TTL, RDLENGTH: an OPT record without options,
/// the shortest a query may carry and the one every reply of ours carries.
pub const OPT_RECORD_LEN: usize = 11;

/// An encoded answer section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// ANCOUNT of a reply carrying `bytes`.
    pub count: u16,
}

/// Wire length of `name` uncompressed, root label included.
pub fn wire_len(name: &Name) -> usize {
    name.iter().map(|label| label.len() + 1).sum::<usize>() + 1
}

/// Answer RRs for (`name`, `qtype`), owners compressed to the question
/// (0xC00C). `None` when the name has no record of that type (NODATA) or
/// `qtype` is neither A nor AAAA.
///
/// A record set too large for any DNS message is cut where hickory stops
/// encoding (64 KiB); it is far beyond every answer class, so it is
/// answered from userspace either way.
pub fn answer_section(table: &RecordTable, name: &Name, qtype: RecordType) -> Option<Encoded> {
    entry_answer_section(table.zone(), name, table.get(name)?, qtype)
}

/// [`answer_section`] for an entry at hand (`name`'s, in a table of `zone`).
pub fn entry_answer_section(
    zone: &ZoneConfig,
    name: &Name,
    entry: &NameEntry,
    qtype: RecordType,
) -> Option<Encoded> {
    let mut owner = name.to_lowercase();
    owner.set_fqdn(true);
    encode_section(&owner, zone.ttl, entry, qtype)
}

/// [`entry_answer_section`] without the name, for the syncer, which would
/// otherwise build a `Name` per entry only to have it compressed away: every
/// owner in the section is the question's name, so the pointer 0xC00C, and
/// A/AAAA RDATA hold no names. Encoded against the zone apex as the question.
///
/// Equal to [`entry_answer_section`] for every section of up to 119 records
/// (hickory compresses the first 120 names of a message; beyond, it writes
/// owners in full, here the zone's). Sections that long fit no answer
/// class, so the kernel never gets them from either.
pub fn records_answer_section(
    zone: &ZoneConfig,
    entry: &NameEntry,
    qtype: RecordType,
) -> Option<Encoded> {
    let (count, rdata_len) = match qtype {
        RecordType::A => (entry.a.len(), 4),
        RecordType::AAAA => (entry.aaaa.len(), 16),
        _ => return None,
    };
    if count == 0 {
        return None;
    }
    let record_len = RECORD_PREFIX_LEN + rdata_len;
    if count * record_len > TEMPLATE_MAX {
        // Far beyond every answer class: hickory's own path, which also
        // cuts a section too long for a message where a message would.
        return encode_section(&zone.zone, zone.ttl, entry, qtype);
    }
    // Every record of the section is the same bytes up to its RDATA (the
    // owner is the pointer 0xC00C, then type, class, TTL and RDLENGTH), so
    // hickory encodes that prefix once per TTL and type and each record is
    // the prefix and its address: one allocation per answer instead of
    // hickory's record list, encoder and copies (most of the map sync's
    // userspace time per name at 150,000 pods).
    let prefix = record_prefix(zone, qtype);
    let mut bytes = Vec::with_capacity(count * record_len);
    match qtype {
        RecordType::A => {
            for ip in entry.a.iter() {
                bytes.extend_from_slice(&prefix);
                bytes.extend_from_slice(&ip.octets());
            }
        }
        _ => {
            for ip in entry.aaaa.iter() {
                bytes.extend_from_slice(&prefix);
                bytes.extend_from_slice(&ip.octets());
            }
        }
    }
    Some(Encoded {
        bytes,
        count: count as u16,
    })
}

/// A record's bytes before its RDATA in an answer section: the compressed
/// owner (2), TYPE, CLASS, TTL, RDLENGTH.
const RECORD_PREFIX_LEN: usize = 12;
/// Sections up to this size are built from [`record_prefix`]: the largest
/// answer class, so every section the kernel stores; a longer one only
/// needs its length (the kernel answers it with TC=1). Within it every
/// owner is the pointer: hickory compresses only the first 120 names of a
/// message (the question and 119 records), and a section this long holds
/// fewer.
const TEMPLATE_MAX: usize = hsdns_common::ANSWER_CLASSES[2];
const _: () = assert!(TEMPLATE_MAX / (RECORD_PREFIX_LEN + 4) < 120);

/// The bytes every A (or AAAA) record of a section with `zone`'s TTL starts
/// with, as hickory encodes them: taken from the encoding of a one-record
/// section and kept per thread for the last TTL (the syncer's zone has one).
fn record_prefix(zone: &ZoneConfig, qtype: RecordType) -> [u8; RECORD_PREFIX_LEN] {
    /// A TTL and the prefix of records with it.
    type Prefix = Option<(u32, [u8; RECORD_PREFIX_LEN])>;
    thread_local! {
        /// Per type: A, AAAA.
        static PREFIXES: std::cell::Cell<[Prefix; 2]> = const { std::cell::Cell::new([None; 2]) };
    }
    let i = usize::from(qtype != RecordType::A);
    let mut cached = PREFIXES.get();
    if let Some((ttl, p)) = cached[i]
        && ttl == zone.ttl
    {
        return p;
    }
    let mut one = NameEntry::default();
    match qtype {
        RecordType::A => one.a = std::iter::once(std::net::Ipv4Addr::UNSPECIFIED).collect(),
        _ => one.aaaa = std::iter::once(std::net::Ipv6Addr::UNSPECIFIED).collect(),
    }
    let enc = encode_section(&zone.zone, zone.ttl, &one, qtype)
        .expect("one A/AAAA record under a valid name encodes");
    let p: [u8; RECORD_PREFIX_LEN] = enc.bytes[..RECORD_PREFIX_LEN]
        .try_into()
        .expect("a record is longer than its prefix");
    cached[i] = Some((zone.ttl, p));
    PREFIXES.set(cached);
    p
}

/// The answer section of a reply to (`owner`, `qtype`): what
/// `Message::to_vec` would encode after the header and question, without
/// building the message (a third of the map sync's time at 150,000 pods).
/// The question is still encoded, at offset 12, so hickory compresses the
/// owners against it exactly as in a whole message.
fn encode_section(owner: &Name, ttl: u32, entry: &NameEntry, qtype: RecordType) -> Option<Encoded> {
    let records: Vec<Record> = match qtype {
        RecordType::A => entry
            .a
            .iter()
            .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))))
            .collect(),
        RecordType::AAAA => entry
            .aaaa
            .iter()
            .map(|ip| Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(*ip))))
            .collect(),
        _ => return None,
    };
    if records.is_empty() {
        return None;
    }
    let question_end = HEADER_LEN + wire_len(owner) + QUESTION_TAIL;
    let mut wire = Vec::with_capacity(question_end + records.len() * 28);
    let mut encoder = BinEncoder::new(&mut wire);
    let count = encoder
        .emit_vec(&[0; HEADER_LEN])
        .and_then(|()| Query::query(owner.clone(), qtype).emit(&mut encoder))
        .and_then(|()| match encoder.emit_all(records.iter()) {
            // As a message cuts an over-long section (see `answer_section`).
            Err(ProtoError::NotAllRecordsWritten { count, .. }) => Ok(count),
            r => r,
        })
        .expect("A/AAAA records under a valid name encode");
    Some(Encoded {
        bytes: wire[question_end..].to_vec(),
        count: u16::try_from(count).expect("a 64 KiB message holds fewer than 65536 records"),
    })
}

/// The authority section (one SOA RR) of a negative answer to a question
/// whose name is `qname_wire_len` bytes long and ends in the zone. The SOA
/// owner, and the zone inside its MNAME and RNAME, are pointers to where the
/// zone starts in that question. `None` when no name of that length can end
/// in the zone.
pub fn soa_authority(zone: &ZoneConfig, serial: u32, qname_wire_len: usize) -> Option<Vec<u8>> {
    let mut apex = zone.zone.to_lowercase();
    apex.set_fqdn(true);
    let zone_len = wire_len(&apex);
    if qname_wire_len > MAX_NAME_LEN || qname_wire_len < zone_len {
        return None;
    }
    // The question's own labels never reach the authority bytes (only
    // pointers to the zone do), so any labels of the right length stand in
    // for them. Labels of 'x' cannot equal "ns", "dns" or "hostmaster", so
    // the only compression target is the zone itself, as in a real question.
    let filler = filler_labels(qname_wire_len - zone_len)?;
    let qname = Name::from_labels(filler).ok()?.append_domain(&apex).ok()?;
    debug_assert_eq!(wire_len(&qname), qname_wire_len);
    let soa = zone.soa(serial, &apex);
    let mut msg = Message::response(0, OpCode::Query);
    msg.add_query(Query::query(qname, RecordType::A));
    msg.add_authority(Record::from_rdata(
        apex,
        crate::dns::resolver::soa_ttl(zone.ttl),
        RData::SOA(soa),
    ));
    let wire = msg.to_vec().expect("an SOA under a valid zone encodes");
    Some(wire[HEADER_LEN + qname_wire_len + QUESTION_TAIL..].to_vec())
}

/// Labels of 'x' that take exactly `len` wire bytes; none exist for 1 byte
/// (a label costs at least two).
fn filler_labels(mut len: usize) -> Option<Vec<Vec<u8>>> {
    if len == 1 {
        return None;
    }
    let mut labels = Vec::new();
    while len > 0 {
        let mut take = len.min(64);
        if len - take == 1 {
            take -= 1;
        }
        labels.push(vec![b'x'; take - 1]);
        len -= take;
    }
    Some(labels)
}

/// The OPT RR the kernel appends when the query had one: root owner, UDP
/// payload size [`EDNS_UDP_SIZE`], extended RCODE 0, version 0, DO clear,
/// no options.
pub fn opt_record() -> [u8; OPT_RECORD_LEN] {
    let mut buf = Vec::with_capacity(OPT_RECORD_LEN);
    let mut encoder = BinEncoder::new(&mut buf);
    server_edns()
        .emit(&mut encoder)
        .expect("a bare OPT record encodes");
    buf.as_slice()
        .try_into()
        .expect("a bare OPT record is 11 bytes")
}

/// The EDNS state of every reply to a query that carried EDNS.
pub(crate) fn server_edns() -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_UDP_SIZE)
        .set_version(0)
        .set_dnssec_ok(false);
    edns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::embedded_seed;
    use hickory_proto::serialize::binary::{BinDecodable as _, BinDecoder};
    use std::net::Ipv4Addr;

    fn seed() -> RecordTable {
        RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 2024)
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    /// A reply as the kernel would send it, decoded by hickory.
    fn decode_after_question(qname: &Name, sections: &[u8], an: u16, ns: u16, ar: u16) -> Message {
        let mut msg = Message::response(7, OpCode::Query);
        msg.add_query(Query::query(qname.clone(), RecordType::A));
        let mut wire = msg.to_vec().unwrap();
        wire[6..8].copy_from_slice(&an.to_be_bytes());
        wire[8..10].copy_from_slice(&ns.to_be_bytes());
        wire[10..12].copy_from_slice(&ar.to_be_bytes());
        wire.extend_from_slice(sections);
        Message::from_vec(&wire).unwrap()
    }

    #[test]
    fn answer_section_decodes_to_the_table_records() {
        let t = seed();
        let n = name("nginx-headless.test.svc.cluster.local.");
        let enc = answer_section(&t, &n, RecordType::A).unwrap();
        assert_eq!(enc.count, 3);
        assert_eq!(enc.bytes.len(), 3 * 16);
        assert_eq!(&enc.bytes[..2], &[0xC0, 0x0C]);
        let msg = decode_after_question(&n, &enc.bytes, enc.count, 0, 0);
        let got: Vec<_> = msg
            .answers
            .iter()
            .map(|r| (r.name.clone(), r.ttl, r.data.clone()))
            .collect();
        let want: Vec<_> = t
            .get(&n)
            .unwrap()
            .a
            .iter()
            .map(|ip| (n.clone(), 5, RData::A(A(*ip))))
            .collect();
        assert_eq!(got, want);

        let enc = answer_section(&t, &n, RecordType::AAAA).unwrap();
        assert_eq!((enc.count, enc.bytes.len()), (3, 3 * 28));
        let msg = decode_after_question(&n, &enc.bytes, enc.count, 0, 0);
        assert!(
            msg.answers
                .iter()
                .all(|r| r.record_type() == RecordType::AAAA && r.name == n)
        );
    }

    #[test]
    fn answer_section_is_none_without_records_of_the_type() {
        let mut objects = embedded_seed();
        objects.slices.retain(|s| s.address_type == "IPv4");
        let t = RecordTable::build(&ZoneConfig::default(), &objects, 1);
        let n = name("nginx-0.nginx-headless.test.svc.cluster.local.");
        assert!(answer_section(&t, &n, RecordType::A).is_some());
        assert!(answer_section(&t, &n, RecordType::AAAA).is_none());
        assert!(answer_section(&t, &n, RecordType::TXT).is_none());
        assert!(answer_section(&t, &name("nope.test.svc.cluster.local."), RecordType::A).is_none());
    }

    #[test]
    fn answer_section_of_a_mixed_case_lookup_is_the_lowercase_one() {
        let t = seed();
        let lower = answer_section(
            &t,
            &name("nginx-1.nginx-headless.test.svc.cluster.local."),
            RecordType::A,
        );
        let mixed = answer_section(
            &t,
            &name("NGINX-1.nginx-HEADLESS.test.svc.Cluster.local."),
            RecordType::A,
        );
        assert_eq!(lower, mixed);
        assert_eq!(
            lower.unwrap().bytes[12..16],
            Ipv4Addr::new(169, 254, 10, 11).octets()
        );
    }

    /// The answer section as a whole message encodes it: what
    /// `encode_section` must equal byte for byte.
    fn via_message(
        zone: &ZoneConfig,
        name: &Name,
        entry: &NameEntry,
        qtype: RecordType,
    ) -> Option<Encoded> {
        let rdata: Vec<RData> = match qtype {
            RecordType::A => entry.a.iter().map(|ip| RData::A(A(*ip))).collect(),
            RecordType::AAAA => entry.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
            _ => return None,
        };
        if rdata.is_empty() {
            return None;
        }
        let mut owner = name.to_lowercase();
        owner.set_fqdn(true);
        let mut msg = Message::response(0, OpCode::Query);
        msg.add_query(Query::query(owner.clone(), qtype));
        msg.add_answers(
            rdata
                .into_iter()
                .map(|r| Record::from_rdata(owner.clone(), zone.ttl, r)),
        );
        let wire = msg.to_vec().unwrap();
        Some(Encoded {
            bytes: wire[HEADER_LEN + wire_len(&owner) + QUESTION_TAIL..].to_vec(),
            count: u16::from_be_bytes([wire[6], wire[7]]),
        })
    }

    proptest::proptest! {
        #[test]
        fn sections_equal_the_whole_message_encoding(
            labels in proptest::collection::vec("[a-zA-Z0-9-]{1,63}", 0..4),
            zone in proptest::sample::select(vec!["cluster.local.", "a.b.c.example.", "x."]),
            ttl in proptest::prelude::any::<u32>(),
            a in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..20),
            aaaa in proptest::collection::vec(proptest::prelude::any::<u128>(), 0..20),
        ) {
            let zone = ZoneConfig::new(zone, ttl).unwrap();
            let Ok(name) = Name::from_labels(labels.iter().map(|l| l.as_bytes()))
                .and_then(|n| n.append_domain(&zone.zone)) else { return Ok(()) };
            let mut entry = NameEntry::default();
            entry.a = a.into_iter().map(Ipv4Addr::from).collect();
            entry.aaaa = aaaa.into_iter().map(std::net::Ipv6Addr::from).collect();
            for qtype in [RecordType::A, RecordType::AAAA, RecordType::TXT] {
                let want = via_message(&zone, &name, &entry, qtype);
                proptest::prop_assert_eq!(&entry_answer_section(&zone, &name, &entry, qtype), &want);
                proptest::prop_assert_eq!(&records_answer_section(&zone, &entry, qtype), &want);
            }
        }
    }

    /// Either side of where the syncer's sections stop being built from a
    /// record prefix and go through hickory whole (1216 bytes: 76 A or 43
    /// AAAA records), up to where hickory stops compressing, and after a
    /// TTL change (the prefix is cached per TTL).
    #[test]
    fn sections_equal_the_message_encoding_around_the_template_bound() {
        let name = name("big.test.svc.cluster.local.");
        for ttl in [5, 30, 5] {
            let zone = ZoneConfig::new("cluster.local.", ttl).unwrap();
            for n in [1, 2, 42, 43, 44, 75, 76, 77, 118, 119] {
                let mut entry = NameEntry::default();
                entry.a = (0..n).map(Ipv4Addr::from).collect();
                entry.aaaa = (0..n)
                    .map(|i| std::net::Ipv6Addr::from(u128::from(i) << 64))
                    .collect();
                for qtype in [RecordType::A, RecordType::AAAA] {
                    assert_eq!(
                        records_answer_section(&zone, &entry, qtype),
                        via_message(&zone, &name, &entry, qtype),
                        "{n} records of {qtype}, TTL {ttl}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_over_long_section_is_cut_as_a_message_cuts_it() {
        let zone = ZoneConfig::default();
        let name = name("big.test.svc.cluster.local.");
        let mut entry = NameEntry::default();
        entry.a = (0..5000u32).map(Ipv4Addr::from).collect();
        let want = via_message(&zone, &name, &entry, RecordType::A).unwrap();
        assert!(usize::from(want.count) < 5000);
        assert_eq!(
            entry_answer_section(&zone, &name, &entry, RecordType::A),
            Some(want)
        );
        let nameless = records_answer_section(&zone, &entry, RecordType::A).unwrap();
        assert!(nameless.bytes.len() > hsdns_common::ANSWER_CLASSES[2]);
    }

    #[test]
    fn soa_authority_decodes_and_points_into_the_question() {
        let t = seed();
        for qname in [
            "cluster.local.",
            "a.cluster.local.",
            "nginx-0.nginx-headless.test.svc.cluster.local.",
            &format!("{}.{}.cluster.local.", "q".repeat(63), "r".repeat(63)),
        ] {
            let qname = name(qname);
            let len = wire_len(&qname);
            let bytes = soa_authority(t.zone(), t.serial(), len).unwrap();
            let zone_at = HEADER_LEN + len - wire_len(&t.zone().zone);
            assert_eq!(
                &bytes[..2],
                &(0xC000u16 | zone_at as u16).to_be_bytes(),
                "{qname}"
            );
            let msg = decode_after_question(&qname, &bytes, 0, 1, 0);
            let soa_rr = &msg.authorities[0];
            assert_eq!(soa_rr.name, name("cluster.local."));
            assert_eq!(soa_rr.ttl, 5);
            let RData::SOA(soa) = &soa_rr.data else {
                panic!("not an SOA: {soa_rr:?}")
            };
            assert_eq!(soa, &t.soa(&name("cluster.local.")));
            assert_eq!(soa.serial, 2024);
            // owner 2 + fixed 10 + "ns.dns"+ptr 9 + "hostmaster"+ptr 13 + 20
            assert_eq!(bytes.len(), 54, "{qname}");
        }
    }

    #[test]
    fn soa_authority_exists_exactly_for_lengths_a_name_in_the_zone_can_have() {
        let zone = ZoneConfig::default();
        let zone_len = wire_len(&zone.zone);
        for len in 0..=300 {
            let possible = (zone_len..=MAX_NAME_LEN).contains(&len) && len != zone_len + 1;
            assert_eq!(
                soa_authority(&zone, 1, len).is_some(),
                possible,
                "length {len}"
            );
        }
    }

    #[test]
    fn filler_labels_take_exactly_the_requested_length() {
        for len in (0..=255).filter(|&l| l != 1) {
            let labels = filler_labels(len).unwrap();
            assert!(labels.iter().all(|l| (1..=63).contains(&l.len())));
            assert_eq!(labels.iter().map(|l| l.len() + 1).sum::<usize>(), len);
        }
        assert!(filler_labels(1).is_none());
    }

    #[test]
    fn opt_record_decodes_as_the_server_edns() {
        let bytes = opt_record();
        let mut decoder = BinDecoder::new(&bytes);
        let rr = Record::read(&mut decoder).unwrap();
        assert!(decoder.is_empty());
        assert!(rr.name.is_root());
        assert_eq!(rr.record_type(), RecordType::OPT);
        let edns = Edns::from(&rr);
        assert_eq!(edns.max_payload(), 1232);
        assert_eq!(
            (edns.version(), edns.rcode_high(), edns.flags().dnssec_ok),
            (0, 0, false)
        );
        assert!(edns.options().options.is_empty());
        assert_eq!(rr.ttl, 0);
    }
}
