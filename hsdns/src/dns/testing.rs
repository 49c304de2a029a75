//! The kernel's reply, rebuilt in userspace: a second oracle, beside the
//! resolver, that the dns unit tests (src/dns/tests.rs) hold the resolver's
//! kernel replies against. Compiled for unit tests and with the `testing`
//! feature (hsdns-test-support turns it on), never into release builds.
use hickory_proto::rr::{Name, RecordType};
use hsdns_common::{EDNS_UDP_SIZE, PLAIN_UDP_SIZE};

use super::answer::{HEADER_LEN, answer_section, opt_record, soa_authority};
use crate::records::RecordTable;

/// The reply the XDP program sends for an accepted `query`, assembled the
/// way the kernel does it: the query's ID, a fresh header (QR, AA, RD and
/// CD copied), the question bytes exactly as sent, then the precomputed
/// answer or SOA authority section and the OPT record.
///
/// A reply larger than the client accepts is the header and question
/// with TC set (and the OPT record when the query had one).
///
/// It trusts `query` to pass the kernel's acceptance checks (the resolver's
/// job) and only returns `None` for unknown names and lengths that do not
/// add up.
pub fn kernel_style_reply(query: &[u8], table: &RecordTable) -> Option<Vec<u8>> {
    let mut labels = Vec::new();
    let mut pos = HEADER_LEN;
    loop {
        let len = usize::from(*query.get(pos)?);
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(query.get(pos..pos + len)?);
        pos += len;
    }
    let qname_len = pos - HEADER_LEN;
    let qtype = u16::from_be_bytes(query.get(pos..pos + 2)?.try_into().ok()?);
    let question_end = pos + 4;
    let has_opt = query.get(10..12)? == [0, 1];
    let limit = if has_opt {
        let class = query.get(question_end + 3..question_end + 5)?;
        u16::from_be_bytes([class[0], class[1]]).clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE)
    } else {
        PLAIN_UDP_SIZE
    };

    let name = Name::from_labels(labels).ok()?;
    if !table.get(&name)?.kernel_answerable() {
        return None; // the syncer marks both types "pass"
    }
    let (ancount, nscount, section) = match answer_section(table, &name, RecordType::from(qtype)) {
        Some(answer) => (answer.count, 0u16, answer.bytes),
        None => (
            0,
            1,
            soa_authority(table.zone(), table.serial(), qname_len)?,
        ),
    };

    let assemble = |tc: bool| {
        let mut reply = Vec::with_capacity(512);
        reply.extend_from_slice(&query[..2]);
        reply.push(0x80 | 0x04 | if tc { 0x02 } else { 0 } | (query[2] & 0x01)); // QR, AA, TC, RD
        reply.push(query[3] & 0x10); // CD
        reply.extend_from_slice(&1u16.to_be_bytes());
        let (an, ns) = if tc { (0, 0) } else { (ancount, nscount) };
        reply.extend_from_slice(&an.to_be_bytes());
        reply.extend_from_slice(&ns.to_be_bytes());
        reply.extend_from_slice(&u16::from(has_opt).to_be_bytes());
        reply.extend_from_slice(&query[HEADER_LEN..question_end]);
        if !tc {
            reply.extend_from_slice(&section);
        }
        if has_opt {
            reply.extend_from_slice(&opt_record());
        }
        reply
    };
    let reply = assemble(false);
    Some(if reply.len() <= usize::from(limit) {
        reply
    } else {
        assemble(true)
    })
}
