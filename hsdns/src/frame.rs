//! Frames for the XDP program's BPF_PROG_TEST_RUN: Ethernet/IP/UDP around a
//! DNS query, with correct checksums. `hsdns query` asks the pinned program
//! with them; the kernel tests, the kernel benchmark and the fuzzer
//! (hsdns-test-support) build theirs the same way. Only link-local and
//! fd00::/8 addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RecordType},
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(169, 254, 10, 10);
pub const DNS4: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, 0x10);
pub const DNS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x10);
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

#[derive(Clone)]
pub struct Frame {
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ip_options: Vec<u8>,
    /// IPv4 flags and fragment offset field.
    pub frag: u16,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn v4(payload: Vec<u8>) -> Self {
        Self {
            vlan: None,
            src: CLIENT4.into(),
            dst: DNS4.into(),
            ip_options: vec![],
            frag: 0,
            proto: 17,
            sport: 40000,
            dport: 53,
            payload,
        }
    }

    pub fn v6(payload: Vec<u8>) -> Self {
        Self {
            src: CLIENT6.into(),
            dst: DNS6.into(),
            ..Self::v4(payload)
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&NODE_MAC);
        p.extend_from_slice(&CLIENT_MAC);
        if let Some(tci) = self.vlan {
            p.extend_from_slice(&[0x81, 0x00]);
            p.extend_from_slice(&tci.to_be_bytes());
        }
        let mut l4 = Vec::new();
        l4.extend_from_slice(&self.sport.to_be_bytes());
        l4.extend_from_slice(&self.dport.to_be_bytes());
        l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(&self.payload);
        if self.proto == 17 {
            let c = l4_checksum(self.src, self.dst, &l4);
            l4[6..8].copy_from_slice(&c.to_be_bytes());
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                p.extend_from_slice(&[0x08, 0x00]);
                let ihl = 20 + self.ip_options.len();
                let mut h = vec![0x40 | (ihl / 4) as u8, 0];
                h.extend_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
                h.extend_from_slice(&[0x12, 0x34]);
                h.extend_from_slice(&self.frag.to_be_bytes());
                h.extend_from_slice(&[64, self.proto, 0, 0]);
                h.extend_from_slice(&s.octets());
                h.extend_from_slice(&d.octets());
                h.extend_from_slice(&self.ip_options);
                let c = !fold(sum16(&h));
                h[10..12].copy_from_slice(&c.to_be_bytes());
                p.extend_from_slice(&h);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                p.extend_from_slice(&[0x86, 0xdd]);
                p.extend_from_slice(&[0x60, 0, 0, 0]);
                p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                p.extend_from_slice(&[self.proto, 64]);
                p.extend_from_slice(&s.octets());
                p.extend_from_slice(&d.octets());
            }
            _ => unreachable!(),
        }
        p.extend_from_slice(&l4);
        p
    }
}

pub fn sum16(b: &[u8]) -> u32 {
    hsdns_common::csum_add_bytes(0, b)
}

pub fn fold(s: u32) -> u16 {
    hsdns_common::csum_fold(s)
}

pub fn l4_checksum(src: IpAddr, dst: IpAddr, l4: &[u8]) -> u16 {
    let mut pseudo = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
        }
        _ => unreachable!(),
    }
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    let c = !fold(sum16(&pseudo) + sum16(l4));
    if c == 0 { 0xffff } else { c }
}

pub fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 0xbeef;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}
