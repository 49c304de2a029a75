//! DNS query messages built byte by byte, so that every field can be wrong
//! on its own: counts that disagree with the sections, names that are not
//! names, OPT records with any owner, version, length and options.

/// The OPT pseudo-record (RFC 6891).
#[derive(Clone, Debug)]
pub struct Opt {
    /// Wire-format owner; the root (`[0]`) in a valid one.
    pub owner: Vec<u8>,
    pub rtype: u16,
    /// The CLASS field: the client's UDP payload size.
    pub size: u16,
    pub ext_rcode: u8,
    pub version: u8,
    /// DO and the rest of the flags.
    pub flags: u16,
    /// `None`: the length of `rdata`.
    pub rdlen: Option<u16>,
    /// Options, as sent.
    pub rdata: Vec<u8>,
}

impl Opt {
    pub fn new(size: u16) -> Self {
        Self {
            owner: vec![0],
            rtype: 41,
            size,
            ext_rcode: 0,
            version: 0,
            flags: 0,
            rdlen: None,
            rdata: vec![],
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.owner);
        out.extend_from_slice(&self.rtype.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&[self.ext_rcode, self.version]);
        out.extend_from_slice(&self.flags.to_be_bytes());
        let len = self.rdlen.unwrap_or(self.rdata.len() as u16);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.rdata);
    }
}

/// A query message; counts left `None` follow the sections.
#[derive(Clone, Debug)]
pub struct QuerySpec {
    pub id: u16,
    pub flags: u16,
    pub qdcount: Option<u16>,
    pub ancount: Option<u16>,
    pub nscount: Option<u16>,
    pub arcount: Option<u16>,
    /// The question name's bytes as sent (normally a wire-format name).
    pub name: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    /// Records after the question (answer, authority or additional), raw,
    /// with how many of each section they are.
    pub records: Vec<u8>,
    pub records_count: [u16; 3],
    pub opt: Option<Opt>,
    /// Bytes after everything.
    pub tail: Vec<u8>,
}

impl QuerySpec {
    /// A standard recursive query for `name` (wire format).
    pub fn new(id: u16, name: Vec<u8>, qtype: u16) -> Self {
        Self {
            id,
            flags: 0x0100,
            qdcount: None,
            ancount: None,
            nscount: None,
            arcount: None,
            name,
            qtype,
            qclass: 1,
            records: vec![],
            records_count: [0; 3],
            opt: None,
            tail: vec![],
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(64 + self.name.len() + self.records.len());
        m.extend_from_slice(&self.id.to_be_bytes());
        m.extend_from_slice(&self.flags.to_be_bytes());
        let [an, ns, ar] = self.records_count;
        let ar = ar + u16::from(self.opt.is_some());
        for (count, auto) in [
            (self.qdcount, 1),
            (self.ancount, an),
            (self.nscount, ns),
            (self.arcount, ar),
        ] {
            m.extend_from_slice(&count.unwrap_or(auto).to_be_bytes());
        }
        m.extend_from_slice(&self.name);
        m.extend_from_slice(&self.qtype.to_be_bytes());
        m.extend_from_slice(&self.qclass.to_be_bytes());
        m.extend_from_slice(&self.records);
        if let Some(o) = &self.opt {
            o.write(&mut m);
        }
        m.extend_from_slice(&self.tail);
        m
    }
}

/// A name's wire format from its labels.
pub fn wire(labels: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Vec::new();
    for l in labels {
        w.push(l.len() as u8);
        w.extend_from_slice(l);
    }
    w.push(0);
    w
}

/// The labels of a presentation-format name (`a.b.c.`; no escapes).
pub fn labels(name: &str) -> Vec<Vec<u8>> {
    name.trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect()
}
