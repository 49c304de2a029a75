//! The reverse (PTR) index: every address of the table to the names that
//! point at it, kept compact because it has an entry per pod.
//!
//! Measured with heaptrack on `bench_sync` (150,000 pods, 158,505 names),
//! the index was the table's second largest part: a
//! `HashMap<IpAddr, Box<[PtrTarget]>>` held about 10 MiB of buckets (a
//! hashbrown table is a power of two: 262,144 buckets of 41 bytes for
//! 158,000 addresses, and half as much again while it grows) plus a 32-byte
//! heap block per address (48 with malloc's header). Now:
//! - an ordered map per family (no power-of-two table, no rehash peak),
//!   keyed by the 4 or 16 address bytes;
//! - the one target nearly every address has held inline, 24 bytes;
//! - an endpoint named after its address stores no address of its own: its
//!   name is the key's dashed form.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::Name;

use super::target::{Target, dashed};

/// What a PTR target is, relative to its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The service itself (a ClusterIP).
    Service,
    /// An endpoint with a hostname.
    Host,
    /// An endpoint named after its address: the PTR's own address.
    Dashed,
}

/// One PTR record: a name under `service_names[service]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PtrTarget {
    /// The hostname of a `Kind::Host` target: the view's string, shared.
    host: Option<Arc<str>>,
    pub(super) service: u32,
    kind: Kind,
}

impl PtrTarget {
    /// The target `target` of address `ip` under service `service`. The
    /// table names an address-named endpoint after its own address, so a
    /// `Target::Ip` is always `ip` (checked in debug builds).
    pub(super) fn new(ip: IpAddr, service: u32, target: Target) -> Self {
        let (kind, host) = match target {
            Target::Service => (Kind::Service, None),
            Target::Host(h) => (Kind::Host, Some(h)),
            Target::Ip(t) => {
                debug_assert_eq!(t, ip, "an endpoint is named after its own address");
                (Kind::Dashed, None)
            }
        };
        PtrTarget {
            host,
            service,
            kind,
        }
    }

    pub(super) fn is_service(&self) -> bool {
        self.kind == Kind::Service
    }

    /// The target's name, for address `ip`, under `service`.
    pub(super) fn under(&self, ip: IpAddr, service: &Name) -> Option<Name> {
        match (self.kind, &self.host) {
            (Kind::Service, _) => Some(service.clone()),
            (Kind::Host, Some(h)) => service.prepend_label(h.as_bytes()).ok(),
            (Kind::Host, None) => None,
            (Kind::Dashed, _) => service.prepend_label(dashed(ip).as_bytes()).ok(),
        }
    }
}

/// An address's targets: nearly always one, held inline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Targets {
    One(PtrTarget),
    Many(Box<[PtrTarget]>),
}

impl Targets {
    pub(super) fn as_slice(&self) -> &[PtrTarget] {
        match self {
            Targets::One(t) => std::slice::from_ref(t),
            Targets::Many(ts) => ts,
        }
    }

    fn push(&mut self, t: PtrTarget) {
        let all: Box<[PtrTarget]> = self.as_slice().iter().cloned().chain([t]).collect();
        *self = Targets::Many(all);
    }

    /// Without the targets under service `index`; None when none is left.
    fn without(&self, index: u32) -> Option<Targets> {
        let mut left: Vec<PtrTarget> = self
            .as_slice()
            .iter()
            .filter(|t| t.service != index)
            .cloned()
            .collect();
        match left.len() {
            0 => None,
            1 => left.pop().map(Targets::One),
            _ => Some(Targets::Many(left.into_boxed_slice())),
        }
    }
}

/// Addresses to their PTR targets.
#[derive(Clone, Debug, Default)]
pub(super) struct PtrIndex {
    v4: BTreeMap<Ipv4Addr, Targets>,
    v6: BTreeMap<Ipv6Addr, Targets>,
}

impl PtrIndex {
    pub(super) fn get(&self, ip: IpAddr) -> Option<&Targets> {
        match ip {
            IpAddr::V4(a) => self.v4.get(&a),
            IpAddr::V6(a) => self.v6.get(&a),
        }
    }

    pub(super) fn add(&mut self, ip: IpAddr, t: PtrTarget) {
        fn add_to<K: Ord>(m: &mut BTreeMap<K, Targets>, k: K, t: PtrTarget) {
            match m.entry(k) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert(Targets::One(t));
                }
                std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().push(t),
            }
        }
        match ip {
            IpAddr::V4(a) => add_to(&mut self.v4, a, t),
            IpAddr::V6(a) => add_to(&mut self.v6, a, t),
        }
    }

    /// Takes the targets under service `index` away from `ip`.
    pub(super) fn remove_service(&mut self, ip: IpAddr, index: u32) {
        fn remove_from<K: Ord>(m: &mut BTreeMap<K, Targets>, k: K, index: u32) {
            if let Some(ts) = m.get_mut(&k) {
                match ts.without(index) {
                    Some(left) => *ts = left,
                    None => {
                        m.remove(&k);
                    }
                }
            }
        }
        match ip {
            IpAddr::V4(a) => remove_from(&mut self.v4, a, index),
            IpAddr::V6(a) => remove_from(&mut self.v6, a, index),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub(super) fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.v4.keys().map(|&a| IpAddr::V4(a));
        v4.chain(self.v6.keys().map(|&a| IpAddr::V6(a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_target_is_held_inline_in_24_bytes() {
        // What the module doc promises: one entry per pod.
        assert!(std::mem::size_of::<Targets>() <= 24);
        assert!(std::mem::size_of::<PtrTarget>() <= 24);
    }

    #[test]
    fn removing_one_service_keeps_the_others_targets() {
        let ip: IpAddr = "169.254.1.2".parse().unwrap();
        let mut idx = PtrIndex::default();
        idx.add(ip, PtrTarget::new(ip, 1, Target::Ip(ip)));
        idx.add(ip, PtrTarget::new(ip, 2, Target::Host("web-0".into())));
        idx.add(ip, PtrTarget::new(ip, 1, Target::Service));
        assert_eq!(idx.get(ip).unwrap().as_slice().len(), 3);
        idx.remove_service(ip, 1);
        let left = idx.get(ip).unwrap();
        assert!(matches!(left, Targets::One(t) if t.service == 2));
        let svc = Name::from_ascii("s.ns.svc.cluster.local.").unwrap();
        assert_eq!(
            left.as_slice()[0].under(ip, &svc).unwrap().to_ascii(),
            "web-0.s.ns.svc.cluster.local."
        );
        idx.remove_service(ip, 2);
        assert!(idx.get(ip).is_none());
        assert_eq!(idx.len(), 0);
    }
}
