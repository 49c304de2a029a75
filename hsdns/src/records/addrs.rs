//! A name's IPv4 addresses. Nearly every name of a large cluster has
//! exactly one (a pod, an endpoint, a ClusterIP service), so one address
//! is held inline: no heap block of its own. As a `ThinVec` each such name
//! cost a 32-byte heap block (a 16-byte header, the address, malloc's
//! header): about 5 MiB at 150,000 pods (bench_sync, heaptrack).

use std::net::Ipv4Addr;
use std::ops::{Deref, DerefMut};

use thin_vec::ThinVec;

/// Sorted and free of duplicates once the table has finished an entry
/// (`NameEntry::finish`); derefs to the addresses as a slice.
#[derive(Clone, Default)]
pub struct V4Addrs(Repr);

#[derive(Clone, Default)]
enum Repr {
    #[default]
    Empty,
    One(Ipv4Addr),
    Many(ThinVec<Ipv4Addr>),
}

impl V4Addrs {
    pub fn push(&mut self, a: Ipv4Addr) {
        self.0 = match std::mem::take(&mut self.0) {
            Repr::Empty => Repr::One(a),
            Repr::One(b) => Repr::Many(thin_vec::thin_vec![b, a]),
            Repr::Many(mut v) => {
                v.push(a);
                Repr::Many(v)
            }
        };
    }

    /// Room for `n` more; nothing for fewer than two in all.
    pub fn reserve(&mut self, n: usize) {
        if self.len() + n < 2 {
            return;
        }
        let mut v = self.take_many();
        v.reserve(n);
        self.0 = Repr::Many(v);
    }

    /// Moves every address of `other` here, leaving it empty.
    pub fn append(&mut self, other: &mut V4Addrs) {
        match std::mem::take(&mut other.0) {
            Repr::Empty => {}
            Repr::One(a) => self.push(a),
            Repr::Many(v) => {
                if self.is_empty() {
                    self.0 = Repr::Many(v);
                } else {
                    let mut mine = self.take_many();
                    mine.extend(v);
                    self.0 = Repr::Many(mine);
                }
            }
        }
    }

    /// Sorts, removes duplicates and gives back spare room (one address
    /// goes inline).
    pub fn finish(&mut self) {
        if let Repr::Many(v) = &mut self.0 {
            v.sort_unstable();
            v.dedup();
            v.shrink_to_fit();
        }
        self.0 = match std::mem::take(&mut self.0) {
            Repr::Many(v) if v.is_empty() => Repr::Empty,
            Repr::Many(v) if v.len() == 1 => Repr::One(v[0]),
            r => r,
        };
    }

    fn take_many(&mut self) -> ThinVec<Ipv4Addr> {
        match std::mem::take(&mut self.0) {
            Repr::Empty => ThinVec::new(),
            Repr::One(a) => thin_vec::thin_vec![a],
            Repr::Many(v) => v,
        }
    }
}

impl Deref for V4Addrs {
    type Target = [Ipv4Addr];
    fn deref(&self) -> &[Ipv4Addr] {
        match &self.0 {
            Repr::Empty => &[],
            Repr::One(a) => std::slice::from_ref(a),
            Repr::Many(v) => v,
        }
    }
}

impl DerefMut for V4Addrs {
    fn deref_mut(&mut self) -> &mut [Ipv4Addr] {
        match &mut self.0 {
            Repr::Empty => &mut [],
            Repr::One(a) => std::slice::from_mut(a),
            Repr::Many(v) => v,
        }
    }
}

impl<'a> IntoIterator for &'a V4Addrs {
    type Item = &'a Ipv4Addr;
    type IntoIter = std::slice::Iter<'a, Ipv4Addr>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl FromIterator<Ipv4Addr> for V4Addrs {
    fn from_iter<I: IntoIterator<Item = Ipv4Addr>>(iter: I) -> Self {
        let mut v = V4Addrs::default();
        for a in iter {
            v.push(a);
        }
        v
    }
}

impl PartialEq for V4Addrs {
    fn eq(&self, o: &Self) -> bool {
        **self == **o
    }
}

impl Eq for V4Addrs {}

impl<const N: usize> PartialEq<[Ipv4Addr; N]> for V4Addrs {
    fn eq(&self, o: &[Ipv4Addr; N]) -> bool {
        **self == o[..]
    }
}

impl std::fmt::Debug for V4Addrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(i)
    }

    #[test]
    fn one_address_is_inline_and_the_entry_small() {
        assert!(std::mem::size_of::<V4Addrs>() <= 16);
        let mut v = V4Addrs::default();
        v.push(a(1));
        assert!(matches!(v.0, Repr::One(_)));
        // Reserved room for one address is not kept.
        let mut w = V4Addrs::default();
        w.reserve(1);
        w.push(a(1));
        w.finish();
        assert!(matches!(w.0, Repr::One(_)));
    }

    #[test]
    fn behaves_as_a_sorted_deduplicated_list() {
        let mut v: V4Addrs = [3, 1, 3, 2].into_iter().map(a).collect();
        v.finish();
        assert_eq!(v, [a(1), a(2), a(3)]);
        let mut one: V4Addrs = [a(9)].into_iter().collect();
        let mut empty = V4Addrs::default();
        v.append(&mut one);
        v.append(&mut empty);
        assert!(one.is_empty());
        v.finish();
        assert_eq!(v, [a(1), a(2), a(3), a(9)]);
        let mut dup: V4Addrs = [a(5), a(5)].into_iter().collect();
        dup.finish();
        assert!(matches!(dup.0, Repr::One(_)));
        assert_eq!(dup, [a(5)]);
        let mut e = V4Addrs::default();
        e.append(&mut dup);
        assert_eq!(e, [a(5)]);
        assert_eq!(V4Addrs::default(), []);
    }
}
