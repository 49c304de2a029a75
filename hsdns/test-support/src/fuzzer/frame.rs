//! Frames with every header field settable: Ethernet with any stack of
//! tags, IPv4 (options, any IHL, fragment bits, checksum) or IPv6 (extension
//! headers), UDP. Lengths and checksums are computed unless a field
//! overrides them, so a mutation can break exactly one thing.

use std::net::{Ipv4Addr, Ipv6Addr};

use hsdns::frame::{CLIENT_MAC, CLIENT4, CLIENT6, DNS4, DNS6, NODE_MAC, fold, sum16};

/// One 802.1Q/802.1ad tag.
#[derive(Clone, Debug)]
pub struct Tag {
    pub tpid: u16,
    pub tci: u16,
}

#[derive(Clone, Debug)]
pub struct V4 {
    pub version: u8,
    /// Header length in 32-bit words; `None`: from the options.
    pub ihl: Option<u8>,
    pub tos: u8,
    pub id: u16,
    /// Flags and fragment offset.
    pub frag: u16,
    pub ttl: u8,
    pub proto: u8,
    /// `None`: header plus UDP.
    pub total: Option<u16>,
    /// `None`: correct.
    pub csum: Option<u16>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub options: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct V6 {
    pub version: u8,
    /// Traffic class and flow label (low 28 bits).
    pub tc_flow: u32,
    pub next: u8,
    pub hop: u8,
    /// `None`: extension headers plus UDP.
    pub payload_len: Option<u16>,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Raw extension headers between the IPv6 header and UDP.
    pub ext: Vec<u8>,
}

#[derive(Clone, Debug)]
pub enum Ip {
    V4(V4),
    V6(V6),
}

#[derive(Clone, Copy, Debug)]
pub enum UdpSum {
    Correct,
    Zero,
    Value(u16),
}

#[derive(Clone, Debug)]
pub struct Udp {
    pub sport: u16,
    pub dport: u16,
    /// `None`: header plus payload.
    pub len: Option<u16>,
    pub csum: UdpSum,
}

#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub tags: Vec<Tag>,
    /// `None`: the IP version's.
    pub ethertype: Option<u16>,
    pub ip: Ip,
    pub udp: Udp,
    pub payload: Vec<u8>,
}

impl FrameSpec {
    /// A query from the test client to the node-local IPv4 address.
    pub fn v4(payload: Vec<u8>) -> Self {
        Self {
            dst_mac: NODE_MAC,
            src_mac: CLIENT_MAC,
            tags: vec![],
            ethertype: None,
            ip: Ip::V4(V4 {
                version: 4,
                ihl: None,
                tos: 0,
                id: 0x1234,
                frag: 0,
                ttl: 64,
                proto: 17,
                total: None,
                csum: None,
                src: CLIENT4,
                dst: DNS4,
                options: vec![],
            }),
            udp: Udp {
                sport: 40000,
                dport: 53,
                len: None,
                csum: UdpSum::Correct,
            },
            payload,
        }
    }

    /// The same over IPv6.
    pub fn v6(payload: Vec<u8>) -> Self {
        Self {
            ip: Ip::V6(V6 {
                version: 6,
                tc_flow: 0,
                next: 17,
                hop: 64,
                payload_len: None,
                src: CLIENT6,
                dst: DNS6,
                ext: vec![],
            }),
            ..Self::v4(payload)
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(100 + self.payload.len());
        p.extend_from_slice(&self.dst_mac);
        p.extend_from_slice(&self.src_mac);
        for t in &self.tags {
            p.extend_from_slice(&t.tpid.to_be_bytes());
            p.extend_from_slice(&t.tci.to_be_bytes());
        }
        let ethertype = self.ethertype.unwrap_or(match self.ip {
            Ip::V4(_) => 0x0800,
            Ip::V6(_) => 0x86dd,
        });
        p.extend_from_slice(&ethertype.to_be_bytes());

        let udp_len = 8 + self.payload.len();
        let mut l4 = Vec::with_capacity(udp_len);
        l4.extend_from_slice(&self.udp.sport.to_be_bytes());
        l4.extend_from_slice(&self.udp.dport.to_be_bytes());
        l4.extend_from_slice(&self.udp.len.unwrap_or(udp_len as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(&self.payload);
        let (src, dst): (Vec<u8>, Vec<u8>) = match &self.ip {
            Ip::V4(h) => (h.src.octets().to_vec(), h.dst.octets().to_vec()),
            Ip::V6(h) => (h.src.octets().to_vec(), h.dst.octets().to_vec()),
        };
        let sum = match self.udp.csum {
            UdpSum::Correct => udp_checksum(&src, &dst, &l4),
            UdpSum::Zero => 0,
            UdpSum::Value(v) => v,
        };
        l4[6..8].copy_from_slice(&sum.to_be_bytes());

        match &self.ip {
            Ip::V4(h) => {
                let hlen = 20 + h.options.len();
                let ihl = h.ihl.unwrap_or((hlen / 4) as u8) & 0x0f;
                let total = h.total.unwrap_or((hlen + l4.len()) as u16);
                let mut ip = Vec::with_capacity(hlen);
                ip.push((h.version << 4) | ihl);
                ip.push(h.tos);
                ip.extend_from_slice(&total.to_be_bytes());
                ip.extend_from_slice(&h.id.to_be_bytes());
                ip.extend_from_slice(&h.frag.to_be_bytes());
                ip.extend_from_slice(&[h.ttl, h.proto, 0, 0]);
                ip.extend_from_slice(&h.src.octets());
                ip.extend_from_slice(&h.dst.octets());
                ip.extend_from_slice(&h.options);
                let c = h.csum.unwrap_or(!fold(sum16(&ip)));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                p.extend_from_slice(&ip);
            }
            Ip::V6(h) => {
                let w = (u32::from(h.version) << 28) | (h.tc_flow & 0x0fff_ffff);
                p.extend_from_slice(&w.to_be_bytes());
                let len = h.payload_len.unwrap_or((h.ext.len() + l4.len()) as u16);
                p.extend_from_slice(&len.to_be_bytes());
                p.extend_from_slice(&[h.next, h.hop]);
                p.extend_from_slice(&h.src.octets());
                p.extend_from_slice(&h.dst.octets());
                p.extend_from_slice(&h.ext);
            }
        }
        p.extend_from_slice(&l4);
        p
    }
}

/// The UDP checksum over the pseudo-header of either family (`src` and
/// `dst` are 4 or 16 bytes); 0 is sent as 0xffff (RFC 768).
pub fn udp_checksum(src: &[u8], dst: &[u8], l4: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(src);
    pseudo.extend_from_slice(dst);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    let c = !fold(sum16(&pseudo) + sum16(l4));
    if c == 0 { 0xffff } else { c }
}
