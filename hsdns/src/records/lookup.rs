//! Reading the table: what the userspace server and the kernel's
//! precomputation ask of it. Kept apart from the updates because these are
//! the rules both answer paths share: a name is found case-insensitively,
//! and a name absent from a complete table is NXDOMAIN by exactly the rule
//! the kernel applies (`hsdns_common::Config::nxdomain`), never by a
//! second, drifting copy of it.

use std::net::IpAddr;

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::SOA;

use super::{Key, NameEntry, RecordTable, ZoneConfig};

/// Under `svc.<zone>`, names with at least this many labels before `svc`
/// (services, and names below them) that are not in the table get NXDOMAIN;
/// the kernel applies the same rule (`hsdns_common::Config::nxdomain`).
/// Namespaces are left alone: one without services exists all the same.
pub const NXDOMAIN_MIN_LABELS_BEFORE_SVC: usize = 2;

impl RecordTable {
    pub fn zone(&self) -> &ZoneConfig {
        &self.zone
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Case-insensitive lookup; a relative name is read as fully qualified.
    pub fn get(&self, name: &Name) -> Option<&NameEntry> {
        self.names.get(&Key::of(name)?)
    }

    /// Every name under the zone (see the completeness invariant above):
    /// lowercase FQDNs, in DNSSEC canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (Name, &NameEntry)> {
        self.names.iter().map(|(k, e)| (k.name(), e))
    }

    /// [`Self::iter`] by key.
    pub fn keys(&self) -> impl Iterator<Item = (&Key, &NameEntry)> {
        self.names.iter()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The zone's SOA for a negative answer; see [`ZoneConfig::soa`].
    pub fn soa(&self, zone_as_asked: &Name) -> SOA {
        self.zone.soa(self.serial, zone_as_asked)
    }

    /// Whether `name` provably does not exist: under the zone, not under
    /// `pod.<zone>` (pod names are not listed), not in the table, and either
    /// the label before the zone is not `svc`, or at least
    /// [`NXDOMAIN_MIN_LABELS_BEFORE_SVC`] labels stand before `svc`. The
    /// apex, `svc.<zone>` and namespaces (`<ns>.svc.<zone>`) are never
    /// NXDOMAIN: a namespace without services exists all the same. This is
    /// the kernel's rule (`hsdns_common::Config::nxdomain`), so both give
    /// the same answer.
    pub fn is_nxdomain(&self, name: &Name) -> bool {
        if !self.opts.nxdomain {
            return false;
        }
        let zone = &self.zone.zone;
        let (labels, zone_labels) = (name.iter().len(), zone.iter().len());
        if labels <= zone_labels || !zone.zone_of(name) || self.get(name).is_some() {
            return false;
        }
        // Labels before the zone; the last of them is `svc` or not, and the
        // rest (`before_zone - 1`) stand before `svc`.
        let before_zone = labels - zone_labels;
        let last = name
            .iter()
            .nth(before_zone - 1)
            .expect("the name has labels before the zone");
        if last.eq_ignore_ascii_case(b"pod") {
            return false;
        }
        !last.eq_ignore_ascii_case(b"svc") || before_zone > NXDOMAIN_MIN_LABELS_BEFORE_SVC
    }

    /// Userspace's rule: [`Self::is_nxdomain`], and, when the source lists
    /// Namespaces, a namespace name (`<ns>.svc.<zone>`) that is not in the
    /// table (CoreDNS: NXDOMAIN for a namespace that does not exist). The
    /// kernel passes namespace-level names up, so both paths agree.
    pub fn does_not_exist(&self, name: &Name) -> bool {
        if self.is_nxdomain(name) {
            return true;
        }
        if !(self.opts.nxdomain && self.namespaces_known && self.get(name).is_none()) {
            return false;
        }
        let zone_labels = self.zone.zone.num_labels();
        name.num_labels() == zone_labels + 2
            && self.zone.zone.zone_of(name)
            && name
                .iter()
                .nth(1)
                .is_some_and(|l| l.eq_ignore_ascii_case(b"svc"))
    }

    /// The PTR targets of a reverse name (`<d>.<c>.<b>.<a>.in-addr.arpa.` or
    /// the 32 nibbles under `ip6.arpa.`), or `None` when the address is not
    /// one of the table's. Only the canonical spelling of a full address is
    /// recognised (in any letter case).
    pub fn ptr(&self, name: &Name) -> Option<Vec<Name>> {
        let mut name = name.clone();
        name.set_fqdn(true);
        let net = name.parse_arpa_name().ok()?;
        let ip = net.addr();
        // parse_arpa_name accepts prefixes and "010" for 10; the name must
        // be exactly the one for the full address.
        if net.prefix_len() != net.max_prefix_len() || Name::from(ip) != name {
            return None;
        }
        self.ptr_targets(ip)
    }

    /// The PTR targets for `ip`, or `None` when it has none.
    pub fn ptr_targets(&self, ip: IpAddr) -> Option<Vec<Name>> {
        let targets = self.ptr.get(ip)?.as_slice();
        // CoreDNS (plugin/kubernetes/reverse.go) answers a service address
        // with the service alone, even if some endpoint shares it.
        let service_only = targets.iter().any(|t| t.is_service());
        let mut names: Vec<Name> = targets
            .iter()
            .filter(|t| !service_only || t.is_service())
            .filter_map(|t| {
                let service = self.service_names.get(t.service as usize)?.as_ref()?;
                t.under(ip, service)
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        (!names.is_empty()).then_some(names)
    }

    /// How many addresses have PTR records.
    pub fn ptr_len(&self) -> usize {
        self.ptr.len()
    }
}
