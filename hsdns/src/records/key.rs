//! How the table orders and finds names. Everything the incremental table
//! does by range (a service's names, a namespace, a name's subtree) rests
//! on one property of this key: byte order is DNS canonical order, so a
//! name's subtree is a contiguous range.
//!
//! A key is one pointer: the table holds one per name (158,505 at 150,000
//! pods), in B-tree nodes that are a little over half full, so each byte
//! of the key's own size costs about two per name. As a `Box<[u8]>` (a
//! pointer and a length) the key took 16 of a table element's 56 bytes;
//! the length now sits in front of the bytes, in the heap block the name
//! needed anyway (a DNS name's key is at most 254 bytes: one length byte).
//! Not a `ThinVec<u8>`, which is one pointer too: its 16-byte header in
//! every block would give back on the heap what the element saves.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::ptr::NonNull;

use hickory_proto::rr::Name;

/// A name as the table keys it: its labels lowercase, from the root down,
/// each followed by a zero byte. Byte order of keys is DNSSEC canonical
/// order (RFC 4034 6.1), a name's subtree is the range of keys starting
/// with its key, and a comparison is a `memcmp`, not a walk over labels
/// (at 150,000 names, hickory's label-wise comparison was a third of the
/// time of a full sync). Names with a zero byte in a label have no key:
/// they are never in the table (every name in it is built from DNS-1123
/// labels).
pub struct Key(NonNull<u8>);

// SAFETY: a Key owns its heap block (as a Box<[u8]> would) and never
// changes it after it is built, so moving it to or sharing it with
// another thread is sound.
unsafe impl Send for Key {}
// SAFETY: as above: through &Key the bytes are only read.
unsafe impl Sync for Key {}

impl Key {
    /// The key holding `bytes`; None when they are more than a length
    /// byte counts (never for a DNS name: at most 254).
    fn from_bytes(bytes: &[u8]) -> Option<Key> {
        let len = u8::try_from(bytes.len()).ok()?;
        let layout = Self::layout(bytes.len());
        // SAFETY: the layout is at least one byte long (the length).
        let block = unsafe { alloc(layout) };
        let Some(block) = NonNull::new(block) else {
            handle_alloc_error(layout)
        };
        // SAFETY: the block was just allocated for 1 + len bytes, so the
        // length byte and the `len` bytes after it are writable, and it
        // cannot overlap `bytes`.
        unsafe {
            block.write(len);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), block.as_ptr().add(1), bytes.len());
        }
        Some(Key(block))
    }

    fn layout(len: usize) -> Layout {
        Layout::array::<u8>(len + 1).expect("at most 256 bytes")
    }

    /// The key's bytes (without the length byte).
    fn bytes(&self) -> &[u8] {
        // SAFETY: `self.0` is the block `from_bytes` allocated and wrote (a
        // length byte, then that many bytes), which this key owns until it
        // is dropped and nothing writes after it was built.
        unsafe {
            let len = usize::from(self.0.read());
            std::slice::from_raw_parts(self.0.as_ptr().add(1), len)
        }
    }

    pub fn of(name: &Name) -> Option<Key> {
        let mut k = Vec::with_capacity(name.len() + 1);
        for label in name.iter().rev() {
            if label.contains(&0) {
                return None;
            }
            k.extend(label.iter().map(u8::to_ascii_lowercase));
            k.push(0);
        }
        Key::from_bytes(&k)
    }

    /// The labels, from the leftmost (the wire order): the key holds them
    /// root first, so they are its zero-separated parts read backwards.
    pub(crate) fn labels(&self) -> impl Iterator<Item = &[u8]> {
        let key = self.bytes();
        let body = key.strip_suffix(&[0]).unwrap_or(key);
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
        let mut w = Vec::with_capacity(self.bytes().len() + 1);
        for l in self.labels() {
            w.push(l.len() as u8);
            w.extend_from_slice(l);
        }
        w.push(0);
        w
    }

    /// The keys of this name and every name under it: `[self, end)`.
    pub(super) fn subtree(&self) -> std::ops::Range<Key> {
        let mut end = self.bytes().to_vec();
        // The last separator raised to 1: every key extending this one is
        // below it, and every other key at least as far is above it.
        if let Some(last) = end.last_mut() {
            *last = 1;
        } else {
            end.push(0xff);
        }
        // As long as this key, or one byte for the root's empty key.
        let end = Key::from_bytes(&end).expect("no longer than a key");
        self.clone()..end
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        let layout = Self::layout(self.bytes().len());
        // SAFETY: the block was allocated by `from_bytes` with this layout
        // (its length byte has not changed) and is freed once, here.
        unsafe { dealloc(self.0.as_ptr(), layout) }
    }
}

impl Clone for Key {
    fn clone(&self) -> Self {
        Key::from_bytes(self.bytes()).expect("as long as a key")
    }
}

impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        self.bytes() == o.bytes()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Key {
    fn cmp(&self, o: &Self) -> Ordering {
        self.bytes().cmp(o.bytes())
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.bytes().hash(h)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Key")
            .field(&self.bytes().escape_ascii().to_string())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::of(&Name::from_ascii(s).unwrap()).unwrap()
    }

    #[test]
    fn a_key_is_one_pointer() {
        // What the module doc promises: a table element pays 8 bytes for it.
        assert_eq!(std::mem::size_of::<Key>(), 8);
        assert_eq!(std::mem::size_of::<Option<Key>>(), 8);
    }

    #[test]
    fn keys_order_compare_and_hash_by_their_bytes() {
        use std::collections::HashSet;
        let a = key("Web-0.Nginx.default.svc.cluster.local.");
        let b = key("web-0.nginx.default.svc.cluster.local.");
        assert_eq!(a, b, "lowercase");
        assert_eq!(a.clone(), a);
        assert_eq!(HashSet::from([a.clone(), b]).len(), 1);
        // Canonical order: the parent first, then its subtree, then the
        // next sibling.
        let parent = key("nginx.default.svc.cluster.local.");
        let sibling = key("nginy.default.svc.cluster.local.");
        assert!(parent < a && a < sibling);
        let range = parent.subtree();
        assert!(range.contains(&parent) && range.contains(&a) && !range.contains(&sibling));
        assert_eq!(
            a.name().to_ascii(),
            "web-0.nginx.default.svc.cluster.local."
        );
        assert_eq!(Key::from_wire(&a.wire()), Some(a));
    }

    #[test]
    fn the_root_and_the_longest_names_have_keys() {
        let root = Key::of(&Name::root()).unwrap();
        assert_eq!(root.bytes(), b"");
        assert!(root.subtree().contains(&key("cluster.local.")));
        // 255 bytes in wire format, the most a name has: a 254-byte key.
        let label = "a".repeat(63);
        let long =
            Name::from_ascii(format!("{label}.{label}.{label}.{}.", "b".repeat(61))).unwrap();
        assert_eq!(Key::of(&long).unwrap().wire().len(), 255);
        let k = Key::of(&long).unwrap();
        assert_eq!(k.bytes().len(), 254);
        assert_eq!(k.name(), long);
        assert!(k.subtree().contains(&k.clone()));
        assert!(Key::from_bytes(&[1; 256]).is_none());
    }
}
