//! The faults the generator injects, one function per layer (DNS message,
//! payload, frame, raw bytes), each applying a named fault of
//! [`FAULTS`](super::generate::FAULTS) or declining it; and the values at
//! the edges they draw from.

use std::net::{Ipv4Addr, Ipv6Addr};

use rand::{Rng, RngExt as _, seq::IndexedRandom as _};

use hsdns::frame::{CLIENT4, CLIENT6, DNS4, DNS6};

use super::{
    dns::{Opt, QuerySpec},
    frame::{FrameSpec, Ip, Tag, UdpSum},
};

/// Values at the edges of a 16-bit field.
pub(super) fn edge16(rng: &mut impl Rng) -> u16 {
    *[
        0u16,
        1,
        2,
        3,
        0x7f,
        0x80,
        0xff,
        0x100,
        0x7fff,
        0x8000,
        0xfffe,
        0xffff,
        rng.random(),
    ]
    .choose(rng)
    .unwrap()
}

pub(super) fn edge8(rng: &mut impl Rng) -> u8 {
    *[
        0u8,
        1,
        0x3f,
        0x40,
        0x7f,
        0x80,
        0xbf,
        0xc0,
        0xfe,
        0xff,
        rng.random(),
    ]
    .choose(rng)
    .unwrap()
}

/// EDNS options a client may send: a COOKIE, padding, NSID, ECS, or
/// something unknown; sometimes with a wrong length.
pub(super) fn options(rng: &mut impl Rng) -> Vec<u8> {
    let mut o = Vec::new();
    for _ in 0..rng.random_range(1..3) {
        let (code, len): (u16, usize) = match rng.random_range(0..5) {
            0 => (10, *[8usize, 24, 40].choose(rng).unwrap()),
            // Padding, up to beyond what the kernel reads of a frame.
            1 => (12, rng.random_range(0..600)),
            2 => (3, 0),
            3 => (8, 8),
            _ => (rng.random(), rng.random_range(0..16)),
        };
        o.extend_from_slice(&code.to_be_bytes());
        let sent_len = if rng.random_bool(0.1) {
            edge16(rng)
        } else {
            len as u16
        };
        o.extend_from_slice(&sent_len.to_be_bytes());
        o.extend((0..len).map(|_| rng.random::<u8>()));
    }
    o
}

/// Valid IPv4 options: NOPs, a Record Route, end of list; padded to words.
pub(super) fn ip4_options(rng: &mut impl Rng) -> Vec<u8> {
    let mut o = Vec::new();
    if rng.random_bool(0.5) {
        o.extend_from_slice(&[7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
    let nops = rng.random_range(0..8);
    o.extend(std::iter::repeat_n(1, nops));
    o.push(0);
    while !o.len().is_multiple_of(4) {
        o.push(0);
    }
    o.truncate(40);
    o
}

/// Label length bytes' offsets in a wire name.
pub(super) fn label_starts(name: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < name.len() && name[i] != 0 && name[i] <= 63 {
        let next = i + 1 + usize::from(name[i]);
        if next > name.len() {
            break;
        }
        v.push(i);
        i = next;
    }
    v
}

pub(super) fn dns_fault(fault: &str, q: &mut QuerySpec, rng: &mut impl Rng) -> bool {
    let starts = label_starts(&q.name);
    match fault {
        "dns.id" => q.id = edge16(rng),
        "dns.flags" => q.flags ^= 1 << rng.random_range(0..16),
        "dns.count" => {
            let v = Some(edge16(rng));
            match rng.random_range(0..4) {
                0 => q.qdcount = v,
                1 => q.ancount = v,
                2 => q.nscount = v,
                _ => q.arcount = v,
            }
        }
        "dns.label_len" => {
            let Some(&at) = starts.choose(rng) else {
                return false;
            };
            let old = q.name[at];
            q.name[at] = match rng.random_range(0..3) {
                0 => old.wrapping_add(1),
                1 => old.wrapping_sub(1),
                _ => edge8(rng),
            };
        }
        "dns.label_byte" => {
            if q.name.len() < 2 {
                return false;
            }
            let at = rng.random_range(0..q.name.len() - 1);
            q.name[at] = *[
                0u8, b'.', b'A', b'Z', b'@', b'[', 0x7f, 0x80, 0xc1, 0xff, b' ',
            ]
            .choose(rng)
            .unwrap();
        }
        "dns.long_label" => {
            // A label of 64 to 127 bytes, the rest of the name intact: the
            // length byte reads as a plain label's but is over the limit.
            let Some(&at) = starts.choose(rng) else {
                return false;
            };
            let old = usize::from(q.name[at]);
            let len = rng.random_range(64..=127);
            let label: Vec<u8> = std::iter::once(len as u8)
                .chain(std::iter::repeat_n(b'a', len))
                .collect();
            q.name.splice(at..at + 1 + old, label);
        }
        "dns.fake_labels" => {
            // A label whose bytes look like labels of the zone's names:
            // only label boundaries may count (the NXDOMAIN rule reads the
            // name backwards from the zone).
            let Some(&at) = starts.choose(rng) else {
                return false;
            };
            let old = usize::from(q.name[at]);
            let mut body: Vec<u8> = [
                &b"x"[..],
                b"\x03svc",
                b"\x03pod",
                b"\x03dns",
                b"\x0ahostmaster",
                b"\x07cluster\x05local",
                b"\x07cluster\x05local\x00",
                b"\x04test\x03svc\x07cluster\x05local",
            ]
            .choose(rng)
            .unwrap()
            .to_vec();
            if rng.random_bool(0.5) {
                body.insert(0, b'a');
            }
            let label: Vec<u8> = std::iter::once(body.len() as u8).chain(body).collect();
            q.name.splice(at..at + 1 + old, label);
        }
        "dns.pointer" => {
            // The name from some label on replaced by a pointer: to the
            // question itself, the header, or anywhere.
            let at = starts.choose(rng).copied().unwrap_or(0);
            q.name.truncate(at);
            let target: u16 = *[12u16, 0, 2, 12 + at as u16, rng.random_range(0..0x3fff)]
                .choose(rng)
                .unwrap();
            q.name
                .extend_from_slice(&(0xc000 | (target & 0x3fff)).to_be_bytes());
        }
        "dns.ext_label" => {
            let Some(&at) = starts.choose(rng) else {
                return false;
            };
            q.name[at] = *[0x40u8, 0x41, 0x80, 0xbf].choose(rng).unwrap();
        }
        "dns.unterminated" => {
            if q.name.last() == Some(&0) {
                q.name.pop();
            } else {
                return false;
            }
        }
        "dns.long_name" => {
            // Prepend labels to a total of 250-260 bytes: 255 is the limit.
            let target = rng.random_range(250..=260);
            while q.name.len() < target {
                let l = (target - q.name.len() - 1).clamp(1, 63);
                let mut label = vec![l as u8];
                label.extend(std::iter::repeat_n(b'a', l));
                label.extend_from_slice(&q.name);
                q.name = label;
            }
        }
        "dns.empty_label" => {
            let Some(&at) = starts.choose(rng) else {
                return false;
            };
            q.name.insert(at, 0);
        }
        "dns.qtype" => q.qtype = edge16(rng),
        "dns.qclass" => q.qclass = *[3u16, 4, 254, 255, 0x8001, 0, 2].choose(rng).unwrap(),
        "dns.records" => {
            // A whole A record with a compressed owner, in any section.
            let section = rng.random_range(0..3);
            q.records
                .extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 169, 254, 1, 1]);
            q.records_count[section] += 1;
        }
        "edns.add" => {
            if q.opt.is_some() {
                return false;
            }
            q.opt = Some(Opt::new(edge16(rng)));
        }
        "edns.remove" => {
            if q.opt.take().is_none() {
                return false;
            }
            // Still counted, sometimes.
            if rng.random_bool(0.5) {
                q.arcount = Some(1);
            }
        }
        "edns.twice" => {
            let Some(o) = q.opt.clone() else {
                return false;
            };
            q.records.extend_from_slice(&{
                let mut m = QuerySpec::new(0, vec![], 0);
                m.opt = Some(o);
                m.bytes()[12 + 4..].to_vec()
            });
            q.records_count[2] += 1;
        }
        _ => {
            let Some(o) = &mut q.opt else {
                return false;
            };
            match fault {
                "edns.size" => o.size = edge16(rng),
                "edns.version" => o.version = edge8(rng).max(1),
                "edns.ext_rcode" => o.ext_rcode = edge8(rng),
                "edns.flags" => o.flags ^= 1 << rng.random_range(0..16),
                "edns.owner" => {
                    o.owner = [vec![0xc0, 12], vec![1, b'a', 0], vec![0xc0, 0], vec![]]
                        .choose(rng)
                        .unwrap()
                        .clone()
                }
                "edns.type" => o.rtype = *[1u16, 28, 0, 40, 42, 0x29ff].choose(rng).unwrap(),
                "edns.rdlen" => {
                    let real = o.rdata.len() as u16;
                    o.rdlen = Some(match rng.random_range(0..3) {
                        0 => real.wrapping_add(1),
                        1 => real.wrapping_sub(1),
                        _ => edge16(rng),
                    })
                }
                "edns.options" => o.rdata = options(rng),
                _ => return false,
            }
        }
    }
    true
}

pub(super) fn payload_fault(fault: &str, p: &mut Vec<u8>, rng: &mut impl Rng) -> bool {
    match fault {
        "dns.tail" => p.extend((0..rng.random_range(1..32)).map(|_| rng.random::<u8>())),
        "dns.truncate" => {
            if p.is_empty() {
                return false;
            }
            p.truncate(rng.random_range(0..p.len()));
        }
        "dns.random" => {
            *p = (0..rng.random_range(0..300))
                .map(|_| rng.random())
                .collect();
        }
        _ => return false,
    }
    true
}

pub(super) fn frame_fault(fault: &str, f: &mut FrameSpec, rng: &mut impl Rng) -> bool {
    match (fault, &mut f.ip) {
        ("eth.tags", _) => {
            f.tags = match rng.random_range(0..4) {
                // QinQ: an 802.1ad tag outside an 802.1Q one.
                0 => vec![
                    Tag {
                        tpid: 0x88a8,
                        tci: 1,
                    },
                    Tag {
                        tpid: 0x8100,
                        tci: 2,
                    },
                ],
                1 => vec![
                    Tag {
                        tpid: 0x8100,
                        tci: 1,
                    },
                    Tag {
                        tpid: 0x8100,
                        tci: 2,
                    },
                ],
                2 => vec![Tag {
                    tpid: rng.random(),
                    tci: rng.random(),
                }],
                _ => vec![Tag {
                    tpid: 0x8100,
                    tci: rng.random(),
                }],
            }
        }
        ("eth.type", ip) => {
            f.ethertype = Some(match (rng.random_range(0..4), ip) {
                (0, Ip::V4(_)) => 0x86dd,
                (0, Ip::V6(_)) => 0x0800,
                (1, _) => 0x0806,
                (2, _) => 0x8100,
                _ => rng.random(),
            })
        }
        ("ip4.version", Ip::V4(h)) => h.version = rng.random_range(0..16),
        ("ip4.ihl", Ip::V4(h)) => h.ihl = Some(rng.random_range(0..16)),
        ("ip4.options", Ip::V4(h)) => {
            let words = rng.random_range(1..=10);
            h.options = (0..words * 4).map(|_| rng.random()).collect();
        }
        ("ip4.total", Ip::V4(h)) => {
            let real = (20 + h.options.len() + 8 + f.payload.len()) as u16;
            h.total = Some(match rng.random_range(0..3) {
                0 => real.wrapping_add(rng.random_range(1..8)),
                1 => real.wrapping_sub(rng.random_range(1..8)),
                _ => edge16(rng),
            });
        }
        ("ip4.frag", Ip::V4(h)) => {
            h.frag = *[0x2000u16, 0x0001, 0x1fff, 0x2001, 0x8000, 0xc000, 0x6000]
                .choose(rng)
                .unwrap()
        }
        ("ip4.proto", Ip::V4(h)) => h.proto = *[6u8, 1, 0, 41, 132, 136, 255].choose(rng).unwrap(),
        ("ip4.ttl", Ip::V4(h)) => h.ttl = *[0u8, 1, 255].choose(rng).unwrap(),
        ("ip4.csum", Ip::V4(h)) => h.csum = Some(rng.random()),
        ("ip4.src", Ip::V4(h)) => {
            h.src = *[
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                DNS4,
                Ipv4Addr::new(224, 0, 0, 251),
                Ipv4Addr::new(169, 254, 255, 255),
            ]
            .choose(rng)
            .unwrap()
        }
        ("ip4.dst", Ip::V4(h)) => {
            h.dst = *[
                Ipv4Addr::new(169, 254, 20, 11),
                Ipv4Addr::new(169, 254, 20, 9),
                CLIENT4,
                Ipv4Addr::BROADCAST,
                Ipv4Addr::new(224, 0, 0, 251),
                Ipv4Addr::new(10, 20, 254, 169),
            ]
            .choose(rng)
            .unwrap()
        }
        ("ip6.version", Ip::V6(h)) => h.version = rng.random_range(0..16),
        ("ip6.next", Ip::V6(h)) => {
            h.next = *[0u8, 43, 44, 60, 6, 58, 59, 135, 255].choose(rng).unwrap();
            if rng.random_bool(0.7) {
                // A plausible extension header: next = UDP, 8 bytes.
                h.ext = vec![17, 0, 0, 0, 0, 0, 0, 0];
            }
        }
        ("ip6.payload_len", Ip::V6(h)) => {
            let real = (h.ext.len() + 8 + f.payload.len()) as u16;
            h.payload_len = Some(match rng.random_range(0..3) {
                0 => real.wrapping_add(rng.random_range(1..8)),
                1 => real.wrapping_sub(rng.random_range(1..8)),
                _ => edge16(rng),
            });
        }
        ("ip6.src", Ip::V6(h)) => {
            h.src = *[
                Ipv6Addr::UNSPECIFIED,
                DNS6,
                Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                Ipv6Addr::LOCALHOST,
            ]
            .choose(rng)
            .unwrap()
        }
        ("ip6.dst", Ip::V6(h)) => {
            h.dst = *[
                DNS4.to_ipv6_mapped(),
                Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x11),
                CLIENT6,
                Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0x10, 0),
            ]
            .choose(rng)
            .unwrap()
        }
        ("ip6.hop", Ip::V6(h)) => h.hop = *[0u8, 1, 255].choose(rng).unwrap(),
        ("udp.sport", _) => f.udp.sport = *[0u16, 53, 1, 65535].choose(rng).unwrap(),
        ("udp.dport", _) => f.udp.dport = *[5353u16, 0, 52, 54, 853, 13568].choose(rng).unwrap(),
        ("udp.len", _) => {
            let real = (8 + f.payload.len()) as u16;
            f.udp.len = Some(match rng.random_range(0..4) {
                0 => real.wrapping_add(rng.random_range(1..8)),
                1 => real.wrapping_sub(rng.random_range(1..8)),
                2 => *[0u16, 7, 8, 19, 20].choose(rng).unwrap(),
                _ => edge16(rng),
            });
        }
        ("udp.csum", _) => {
            f.udp.csum = if rng.random_bool(0.5) {
                UdpSum::Zero
            } else {
                UdpSum::Value(rng.random())
            }
        }
        _ => return false,
    }
    true
}

pub(super) fn raw_fault(fault: &str, b: &mut Vec<u8>, rng: &mut impl Rng) -> bool {
    // `raw.random` may have left nothing to flip, set or delete.
    if b.len() < 2 && fault != "raw.tail" && fault != "raw.insert" && fault != "raw.random" {
        return false;
    }
    match fault {
        "raw.flip" => {
            for _ in 0..rng.random_range(1..=8) {
                let at = rng.random_range(0..b.len());
                b[at] ^= 1 << rng.random_range(0..8);
            }
        }
        "raw.set" => {
            let at = rng.random_range(0..b.len());
            b[at] = edge8(rng);
        }
        "raw.truncate" => {
            if b.len() <= 14 {
                return false;
            }
            b.truncate(rng.random_range(14..b.len()));
        }
        "raw.tail" => b.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
        "raw.insert" => {
            let at = rng.random_range(0..=b.len());
            for _ in 0..rng.random_range(1..=8) {
                b.insert(at, rng.random());
            }
        }
        "raw.delete" => {
            let n = rng.random_range(1..=8).min(b.len() - 1);
            let at = rng.random_range(0..b.len() - n);
            b.drain(at..at + n);
        }
        "raw.random" => {
            // Random bytes behind (sometimes) a valid prefix up to UDP.
            let keep = *[0usize, 14, 34, 42].choose(rng).unwrap();
            b.truncate(keep);
            b.extend((0..rng.random_range(0..600)).map(|_| rng.random::<u8>()));
        }
        _ => return false,
    }
    true
}
