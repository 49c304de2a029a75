//! Pod names, `<a-b-c-d>.<ns>.pod.<zone>`, with CoreDNS's `pods` modes
//! (plugin/kubernetes `findPods`). They are answered in userspace (the
//! kernel passes everything under `pod.<zone>` up): the names are the
//! addresses themselves, so there is nothing to put in the maps.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::Name;

use super::RecordTable;

/// CoreDNS's `pods` option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PodMode {
    /// Not answered: passed on to the cluster DNS (hsdns's default; CoreDNS
    /// would answer NXDOMAIN).
    #[default]
    Disabled,
    /// Any address in an existing namespace, as CoreDNS's `pods insecure`.
    Insecure,
    /// Only addresses of pods in that namespace (`pods verified`).
    Verified,
}

/// What the table says about a name under `pod.<zone>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodAnswer {
    /// Not a name under `pod.<zone>` (or `pod.<zone>` itself, a table name).
    NotPod,
    /// Pod names are not ours: forward.
    Pass,
    NxDomain,
    /// The name exists without records of the asked type: `<ns>.pod.<zone>`
    /// of an existing namespace, or a pod whose address is of the other
    /// family.
    NoData,
    /// The pod's address (an A record for IPv4, AAAA for IPv6).
    Address(IpAddr),
}

/// Pod addresses by namespace, counted: several pods may share an address
/// (host-network pods), and a pod may be reported again unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PodIndex {
    by_addr: HashMap<(IpAddr, Box<str>), u32>,
}

impl PodIndex {
    fn add(&mut self, ns: &str, ip: IpAddr) {
        *self.by_addr.entry((ip, ns.into())).or_default() += 1;
    }

    fn remove(&mut self, ns: &str, ip: IpAddr) {
        let key = (ip, Box::<str>::from(ns));
        if let Some(n) = self.by_addr.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.by_addr.remove(&key);
            }
        }
    }

    fn has(&self, ns: &str, ip: IpAddr) -> bool {
        self.by_addr.contains_key(&(ip, Box::<str>::from(ns)))
    }

    pub(crate) fn len(&self) -> usize {
        self.by_addr.len()
    }
}

/// The address a pod label spells, as CoreDNS reads it: three dashes and
/// no `--` is IPv4 (`a-b-c-d`), anything else IPv6 with `-` for `:`. An
/// IPv4-mapped IPv6 address is IPv4 (Go's `To4`).
pub fn pod_label_ip(label: &str) -> Option<IpAddr> {
    let ip: IpAddr = if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".").parse().ok()?
    } else {
        label.replace('-', ":").parse().ok()?
    };
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

impl RecordTable {
    /// Counts a pod's address in (`add`) or out of its namespace, for
    /// [`PodMode::Verified`].
    pub fn set_pod_address(&mut self, ns: &str, ip: IpAddr, add: bool) {
        if add {
            self.pods.add(ns, ip);
        } else {
            self.pods.remove(ns, ip);
        }
    }

    /// Distinct (address, namespace) pairs known (verified mode).
    pub fn pod_addresses(&self) -> usize {
        self.pods.len()
    }

    /// The answer for a name under `pod.<zone>`, following CoreDNS: the
    /// label right before `<ns>.pod` is the pod (`x.a-b-c-d.<ns>.pod` and
    /// `_p._q.a-b-c-d.<ns>.pod` name the same pod, as CoreDNS parses
    /// them); more labels are NXDOMAIN; so is a namespace that does not
    /// exist, a label that is not an address, and in verified mode an
    /// address no pod of that namespace has.
    pub fn pod_answer(&self, name: &Name) -> PodAnswer {
        let zone = &self.zone.zone;
        let Ok(pod_zone) = Name::from_ascii("pod").and_then(|p| p.append_domain(zone)) else {
            return PodAnswer::NotPod;
        };
        if !pod_zone.zone_of(name) || name.num_labels() == pod_zone.num_labels() {
            return PodAnswer::NotPod;
        }
        if self.opts.pods == PodMode::Disabled {
            return PodAnswer::Pass;
        }
        let nx = if self.opts.nxdomain {
            PodAnswer::NxDomain
        } else {
            PodAnswer::Pass
        };
        let before = (name.num_labels() - pod_zone.num_labels()) as usize;
        let labels: Vec<String> = name
            .iter()
            .take(before)
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .collect();
        if before > 4 {
            return nx;
        }
        let ns = &labels[before - 1];
        if !self.namespace_exists(ns) {
            return nx;
        }
        if before == 1 {
            return PodAnswer::NoData;
        }
        let label = &labels[before - 2];
        let Some(ip) = pod_label_ip(label) else {
            return nx;
        };
        if self.opts.pods == PodMode::Verified {
            // CoreDNS compares the text with the pod's address as the API
            // writes it (canonical), so only that spelling matches.
            let canonical = match ip {
                IpAddr::V4(_) => ip.to_string().replace('.', "-"),
                IpAddr::V6(_) => super::dashed(ip),
            };
            if canonical != *label || !self.pods.has(ns, ip) {
                return nx;
            }
        }
        PodAnswer::Address(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_coredns_reads_them() {
        assert_eq!(
            pod_label_ip("169-254-10-10"),
            Some("169.254.10.10".parse().unwrap())
        );
        assert_eq!(
            pod_label_ip("fd00-10--10"),
            Some("fd00:10::10".parse().unwrap())
        );
        // `--` makes it IPv6.
        assert_eq!(pod_label_ip("1--2-3"), Some("1::2:3".parse().unwrap()));
        assert_eq!(pod_label_ip("1---2"), None);
        assert_eq!(pod_label_ip("1-2-3"), None);
        assert_eq!(
            pod_label_ip("01-2-3-4"),
            None,
            "no leading zeros, as Go's ParseIP"
        );
        assert_eq!(pod_label_ip("nginx-0"), None);
        // IPv4-mapped: an A record, as CoreDNS gives it.
        assert_eq!(
            pod_label_ip("--ffff-a9fe-a0a"),
            Some("169.254.10.10".parse().unwrap())
        );
    }
}
