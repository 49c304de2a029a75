//! Test frames for the XDP program (BPF_PROG_TEST_RUN): Ethernet/IP/UDP
//! around a DNS query, with correct checksums. Shared by the kernel tests and
//! the kernel benchmark; only link-local and fd00::/8 addresses.

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

/// A headless Service `ns/name` and one EndpointSlice with `n` ready IPv4
/// endpoints without hostnames (169.254.100.1 on), as kubectl prints them:
/// large answers for tests and benchmarks.
pub fn headless_yaml(ns: &str, name: &str, n: usize) -> String {
    let mut eps = String::new();
    for i in 0..n {
        eps.push_str(&format!(
            "  - addresses: [\"169.254.{}.{}\"]\n    conditions: {{ready: true}}\n",
            100 + i / 200,
            1 + i % 200
        ));
    }
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{clusterIP: None, clusterIPs: [None], ports: [{{name: web, port: 80}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-x, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: web, port: 80}}]\nendpoints:\n{eps}"
    )
}

/// A UDP socket and a TCP listener on the same loopback port, for a test's
/// stand-in upstream. The UDP socket picks the port; its TCP twin can be
/// the local port of a client connection in TIME_WAIT (a full test run
/// leaves thousands), so another port is tried, a few times.
pub async fn loopback_udp_tcp() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    let mut last = None;
    for _ in 0..16 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback UDP socket");
        let addr = udp.local_addr().expect("its address");
        match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp),
            Err(e) => last = Some(e),
        }
    }
    panic!("no loopback port free for both UDP and TCP: {last:?}");
}
