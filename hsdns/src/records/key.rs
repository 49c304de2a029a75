//! How the table orders and finds names. Everything the incremental table
//! does by range (a service's names, a namespace, a name's subtree) rests
//! on one property of this key: byte order is DNS canonical order, so a
//! name's subtree is a contiguous range.

use hickory_proto::rr::Name;

/// A name as the table keys it: its labels lowercase, from the root down,
/// each followed by a zero byte. Byte order of keys is DNSSEC canonical
/// order (RFC 4034 6.1), a name's subtree is the range of keys starting
/// with its key, and a comparison is a `memcmp`, not a walk over labels
/// (at 150,000 names, hickory's label-wise comparison was a third of the
/// time of a full sync). Names with a zero byte in a label have no key:
/// they are never in the table (every name in it is built from DNS-1123
/// labels).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Box<[u8]>);

impl Key {
    pub fn of(name: &Name) -> Option<Key> {
        let mut k = Vec::with_capacity(name.len() + 1);
        for label in name.iter().rev() {
            if label.contains(&0) {
                return None;
            }
            k.extend(label.iter().map(u8::to_ascii_lowercase));
            k.push(0);
        }
        Some(Key(k.into_boxed_slice()))
    }

    /// The labels, from the leftmost (the wire order): the key holds them
    /// root first, so they are its zero-separated parts read backwards.
    pub(crate) fn labels(&self) -> impl Iterator<Item = &[u8]> {
        let body = self.0.strip_suffix(&[0]).unwrap_or(&self.0);
        body.rsplit(|&b| b == 0).filter(|l| !l.is_empty())
    }

    /// The fully qualified name.
    pub fn name(&self) -> Name {
        let mut n = Name::from_labels(self.labels()).expect("keys come from valid names");
        n.set_fqdn(true);
        n
    }

    /// The key of a name in wire format (uncompressed, as [`Self::wire`]
    /// gives it); `None` if it is not one.
    pub fn from_wire(wire: &[u8]) -> Option<Key> {
        use hickory_proto::serialize::binary::BinDecodable as _;
        Key::of(&Name::from_bytes(wire).ok()?)
    }

    /// The name in wire format (lowercase, uncompressed): the kernel's key.
    pub fn wire(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(self.0.len() + 1);
        for l in self.labels() {
            w.push(l.len() as u8);
            w.extend_from_slice(l);
        }
        w.push(0);
        w
    }

    /// The keys of this name and every name under it: `[self, end)`.
    pub(super) fn subtree(&self) -> std::ops::Range<Key> {
        let mut end = self.0.to_vec();
        // The last separator raised to 1: every key extending this one is
        // below it, and every other key at least as far is above it.
        if let Some(last) = end.last_mut() {
            *last = 1;
        } else {
            end.push(0xff);
        }
        self.clone()..Key(end.into_boxed_slice())
    }
}
