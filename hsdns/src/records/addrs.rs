//! A name's IPv4 addresses. Nearly every name of a large cluster has
//! exactly one (a pod, an endpoint, a ClusterIP service), so one address
//! is held inline: no heap block of its own. As a `ThinVec` each such name
//! cost a 32-byte heap block (a 16-byte header, the address, malloc's
//! header): about 5 MiB at 150,000 pods (bench_sync, heaptrack).
//!
//! And the whole is one pointer wide: as an enum (none, one address, or a
//! `ThinVec`) it took 16 bytes, a tag beside the pointer, in every one of
//! 158,505 table elements; the one address now shares the pointer's 8
//! bytes, told apart by a low bit no aligned pointer has. The few names
//! with two or more addresses pay a second heap block (a box around the
//! `ThinVec`) for it.

use std::net::Ipv4Addr;
use std::ops::{Deref, DerefMut};

use thin_vec::ThinVec;

/// Sorted and free of duplicates once the table has finished an entry
/// (`NameEntry::finish`); derefs to the addresses as a slice.
pub struct V4Addrs(Raw);

/// Which it holds: `one` when its marker is odd, else `many`: null for no
/// address, else a `Box<ThinVec>` (from `Box::into_raw`) of two or more.
/// The marker overlaps the pointer's low 32 bits (the field order follows
/// the byte order), which are even for any pointer to a `ThinVec` (8-byte
/// aligned).
#[repr(C)]
union Raw {
    many: *mut ThinVec<Ipv4Addr>,
    one: One,
}

#[cfg(target_endian = "little")]
#[repr(C)]
#[derive(Clone, Copy)]
struct One {
    marker: u32,
    addr: [Ipv4Addr; 1],
}

#[cfg(target_endian = "big")]
#[repr(C)]
#[derive(Clone, Copy)]
struct One {
    addr: [Ipv4Addr; 1],
    marker: u32,
}

// The marker overlaps the pointer's low half only if both are 8 bytes.
const _: () = assert!(std::mem::size_of::<One>() == 8);
const _: () = assert!(std::mem::size_of::<Raw>() == 8);
const _: () = assert!(std::mem::align_of::<ThinVec<Ipv4Addr>>().is_multiple_of(2));

/// What a [`V4Addrs`] holds, taken apart.
enum Repr {
    Empty,
    One(Ipv4Addr),
    Many(Box<ThinVec<Ipv4Addr>>),
}

// SAFETY: a V4Addrs owns what it points to (a Box<ThinVec<Ipv4Addr>>,
// itself Send and Sync) or holds plain data, and gives access to it only
// through &self / &mut self.
unsafe impl Send for V4Addrs {}
// SAFETY: as above.
unsafe impl Sync for V4Addrs {}

impl V4Addrs {
    fn from_repr(r: Repr) -> Self {
        V4Addrs(match r {
            Repr::Empty => Raw {
                many: std::ptr::null_mut(),
            },
            Repr::One(addr) => Raw {
                one: One {
                    marker: 1,
                    addr: [addr],
                },
            },
            Repr::Many(v) => Raw {
                many: Box::into_raw(v),
            },
        })
    }

    fn is_one(&self) -> bool {
        // SAFETY: both fields are plain bits over the same 8 bytes: read as
        // a `One`, a pointer's bytes are integers (a pointer to integer
        // reading, sound; nothing is dereferenced).
        unsafe { self.0.one.marker & 1 == 1 }
    }

    /// The `ThinVec` of two or more, if that is what it holds.
    fn many(&self) -> Option<*mut ThinVec<Ipv4Addr>> {
        if self.is_one() {
            return None;
        }
        // SAFETY: not `one` (its marker is odd), so `many` was written.
        let p = unsafe { self.0.many };
        (!p.is_null()).then_some(p)
    }

    /// Takes what it holds, leaving it empty.
    fn take(&mut self) -> Repr {
        let r = if self.is_one() {
            // SAFETY: `one` was written (its marker is odd).
            Repr::One(unsafe { self.0.one.addr[0] })
        } else if let Some(p) = self.many() {
            // SAFETY: a non-null `many` came from Box::into_raw and is
            // owned by this value; it is forgotten below (replaced by
            // null), so it is taken back once.
            Repr::Many(unsafe { Box::from_raw(p) })
        } else {
            Repr::Empty
        };
        self.0 = Raw {
            many: std::ptr::null_mut(),
        };
        r
    }

    pub fn push(&mut self, a: Ipv4Addr) {
        let r = match self.take() {
            Repr::Empty => Repr::One(a),
            Repr::One(b) => Repr::Many(Box::new(thin_vec::thin_vec![b, a])),
            Repr::Many(mut v) => {
                v.push(a);
                Repr::Many(v)
            }
        };
        *self = V4Addrs::from_repr(r);
    }

    /// Room for `n` more; nothing for fewer than two in all.
    pub fn reserve(&mut self, n: usize) {
        if self.len() + n < 2 {
            return;
        }
        let mut v = self.take_many();
        v.reserve(n);
        *self = V4Addrs::from_repr(Repr::Many(v));
    }

    /// Moves every address of `other` here, leaving it empty.
    pub fn append(&mut self, other: &mut V4Addrs) {
        match other.take() {
            Repr::Empty => {}
            Repr::One(a) => self.push(a),
            Repr::Many(v) => {
                if self.is_empty() {
                    *self = V4Addrs::from_repr(Repr::Many(v));
                } else {
                    let mut mine = self.take_many();
                    mine.extend(v.iter().copied());
                    *self = V4Addrs::from_repr(Repr::Many(mine));
                }
            }
        }
    }

    /// Sorts, removes duplicates and gives back spare room (one address
    /// goes inline).
    pub fn finish(&mut self) {
        let r = match self.take() {
            Repr::Many(mut v) => {
                v.sort_unstable();
                v.dedup();
                v.shrink_to_fit();
                match v.len() {
                    0 => Repr::Empty,
                    1 => Repr::One(v[0]),
                    _ => Repr::Many(v),
                }
            }
            r => r,
        };
        *self = V4Addrs::from_repr(r);
    }

    fn take_many(&mut self) -> Box<ThinVec<Ipv4Addr>> {
        match self.take() {
            Repr::Empty => Box::default(),
            Repr::One(a) => Box::new(thin_vec::thin_vec![a]),
            Repr::Many(v) => v,
        }
    }
}

impl Default for V4Addrs {
    fn default() -> Self {
        V4Addrs::from_repr(Repr::Empty)
    }
}

impl Drop for V4Addrs {
    fn drop(&mut self) {
        drop(self.take());
    }
}

impl Clone for V4Addrs {
    fn clone(&self) -> Self {
        match self.len() {
            0 => V4Addrs::default(),
            1 => V4Addrs::from_repr(Repr::One(self[0])),
            _ => V4Addrs::from_repr(Repr::Many(Box::new(self.iter().copied().collect()))),
        }
    }
}

impl Deref for V4Addrs {
    type Target = [Ipv4Addr];
    fn deref(&self) -> &[Ipv4Addr] {
        if self.is_one() {
            // SAFETY: `one` was written (its marker is odd); the slice
            // borrows it for as long as self.
            return unsafe { &self.0.one.addr };
        }
        match self.many() {
            // SAFETY: a non-null `many` is a live Box<ThinVec> this value
            // owns; the borrow is tied to self.
            Some(p) => unsafe { &*p },
            None => &[],
        }
    }
}

impl DerefMut for V4Addrs {
    fn deref_mut(&mut self) -> &mut [Ipv4Addr] {
        if self.is_one() {
            // SAFETY: as in deref, borrowed mutably through &mut self.
            return unsafe { &mut self.0.one.addr };
        }
        match self.many() {
            // SAFETY: as in deref; &mut self makes the borrow unique.
            Some(p) => unsafe { &mut *p },
            None => &mut [],
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
        assert_eq!(std::mem::size_of::<V4Addrs>(), 8);
        let mut v = V4Addrs::default();
        v.push(a(1));
        assert!(v.is_one());
        // Reserved room for one address is not kept.
        let mut w = V4Addrs::default();
        w.reserve(1);
        w.push(a(1));
        w.finish();
        assert!(w.is_one());
    }

    #[test]
    fn each_form_clones_reads_writes_and_drops_as_a_list() {
        for n in [0u32, 1, 2, 50] {
            let mut v: V4Addrs = (0..n).map(a).collect();
            v.finish();
            assert_eq!(v.is_one(), n == 1);
            let mut w = v.clone();
            assert_eq!(w, v);
            assert_eq!(w.len(), n as usize);
            for x in w.iter_mut() {
                *x = a(u32::from(*x) + 1000);
            }
            assert_eq!(*w, *(1000..1000 + n).map(a).collect::<Vec<_>>());
            assert_eq!(*v, *(0..n).map(a).collect::<Vec<_>>(), "the clone is apart");
            // Across threads, as the shared table is read.
            let sent = std::thread::spawn(move || w.len()).join().unwrap();
            assert_eq!(sent, n as usize);
        }
        // Addresses whose bits look like a pointer's or a marker's.
        for x in [0u32, 1, 2, u32::MAX, 0x8000_0000] {
            let v: V4Addrs = [a(x)].into_iter().collect();
            assert!(v.is_one());
            assert_eq!(v, [a(x)]);
        }
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
        assert!(dup.is_one());
        assert_eq!(dup, [a(5)]);
        let mut e = V4Addrs::default();
        e.append(&mut dup);
        assert_eq!(e, [a(5)]);
        assert_eq!(V4Addrs::default(), []);
    }
}
