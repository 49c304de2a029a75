//! What the table holds per name. Kept apart from the rules that fill it
//! (`spec`) and the table that orders it (`table`): the syncer and the
//! answer encoders read entries and nothing else, and at 150,000 pods the
//! entry's size is most of the table's memory, so its layout is this
//! file's one concern.

use std::net::{IpAddr, Ipv6Addr};

use hickory_proto::rr::Name;
use thin_vec::ThinVec;

use super::{DNS_SCHEMA_VERSION, V4Addrs};

/// Where a name's answers sit in the kernel maps (answer references, see
/// `hsdns_common::AnswerRef`). Only `maps::Syncer` writes it; it lives in
/// the entry because a separate name-to-slots index would cost as much
/// memory again at 150,000 pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRefs {
    pub a: u32,
    pub aaaa: u32,
}

impl MapRefs {
    /// Not in the kernel's maps (not yet synced, or they were full): the
    /// name passes up. Not a value the kernel ever sees (slot references
    /// stay below 3 << 30).
    pub const NONE: MapRefs = MapRefs {
        a: u32::MAX - 2,
        aaaa: u32::MAX - 2,
    };
}

impl Default for MapRefs {
    fn default() -> Self {
        Self::NONE
    }
}

/// What one name holds: its addresses (the only records the kernel answers),
/// and for the few names that have them, the other records.
///
/// `a` and `aaaa` are sorted and free of duplicates. A name whose lists are
/// both empty still exists: A/AAAA questions for it get NODATA (unless
/// [`NameEntry::kernel_answerable`] says otherwise).
///
/// Equality compares the records only, not where the syncer put them.
#[derive(Clone, Debug, Default)]
pub struct NameEntry {
    // Thin (one pointer, no allocation when empty): 150,000 pods' names
    // are most of the table, and a `Vec` pair made each entry 64 bytes.
    // One IPv4 address (most names) is held inline (see addrs.rs).
    pub a: V4Addrs,
    pub aaaa: ThinVec<Ipv6Addr>,
    /// Boxed so the common entry (a pod name: addresses only) pays one
    /// pointer for it.
    pub(super) other: Option<Box<Other>>,
    /// The syncer's bookkeeping, see [`MapRefs`].
    pub refs: MapRefs,
}

impl PartialEq for NameEntry {
    fn eq(&self, o: &Self) -> bool {
        self.a == o.a && self.aaaa == o.aaaa && self.other == o.other
    }
}

impl Eq for NameEntry {}

/// Records other than A/AAAA, stored in a form the records are derived from
/// on demand (see [`RecordTable::srv`](super::RecordTable::srv)):
/// rendering them for every name of a 150,000-pod cluster would cost more
/// than the rest of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Other {
    /// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: its SRV records, and its
    /// A/AAAA records (the targets' addresses, as CoreDNS answers them),
    /// are computed from the service's [`SrvModel`](super::srv::SrvModel).
    Srv,
    /// An ExternalName service (spec 2.5): the CNAME target.
    Cname(Name),
    /// `dns-version.<zone>` (spec 2.2).
    SchemaVersion,
    /// `ns.dns.<zone>`, the name in the SOA: it exists (CoreDNS answers it
    /// with its own service addresses), but only the upstream cluster DNS
    /// knows those addresses, so every question for it is passed up.
    Upstream,
}

impl NameEntry {
    pub(super) fn push(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.a.push(v4),
            IpAddr::V6(v6) => self.aaaa.push(v6),
        }
    }

    pub(super) fn finish(&mut self) {
        self.a.finish();
        self.aaaa.sort_unstable();
        self.aaaa.dedup();
        self.aaaa.shrink_to_fit();
    }

    pub(super) fn with(other: Other) -> Self {
        NameEntry {
            other: Some(Box::new(other)),
            ..NameEntry::default()
        }
    }

    /// Whether the kernel may answer A/AAAA questions for this name from
    /// `a`/`aaaa` (records, or NODATA when empty). False for an ExternalName
    /// service (its answer is a CNAME, which the kernel never sends) and for
    /// `ns.dns.<zone>` (only the upstream knows its addresses): the syncer
    /// must mark both types "pass" for such a name, and userspace answers
    /// them with [`crate::dns::resolver::respond_any_type`].
    pub fn kernel_answerable(&self) -> bool {
        !matches!(
            self.other.as_deref(),
            Some(Other::Cname(_) | Other::Upstream | Other::Srv)
        )
    }

    /// The CNAME target of an ExternalName service.
    pub fn cname(&self) -> Option<&Name> {
        match self.other.as_deref() {
            Some(Other::Cname(target)) => Some(target),
            _ => None,
        }
    }

    /// The TXT text of `dns-version.<zone>`.
    pub fn txt(&self) -> Option<&'static str> {
        match self.other.as_deref() {
            Some(Other::SchemaVersion) => Some(DNS_SCHEMA_VERSION),
            _ => None,
        }
    }

    /// Whether the name has SRV records
    /// ([`RecordTable::srv`](super::RecordTable::srv) renders them).
    pub fn has_srv(&self) -> bool {
        matches!(self.other.as_deref(), Some(Other::Srv))
    }

    /// Whether only the upstream cluster DNS can answer for this name.
    pub fn upstream_only(&self) -> bool {
        matches!(self.other.as_deref(), Some(Other::Upstream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_element_stays_at_40_bytes() {
        // One per name (158,505 at 150,000 pods), in B-tree nodes a little
        // over half full: the key and the entry were 56 bytes before the
        // key and the IPv4 addresses became one pointer each.
        assert_eq!(std::mem::size_of::<NameEntry>(), 32);
        assert_eq!(std::mem::size_of::<(super::super::Key, NameEntry)>(), 40);
    }
}
