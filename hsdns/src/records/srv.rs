//! SRV records, computed per question from a compact model of each
//! service, the way CoreDNS's kubernetes plugin finds them
//! (`findServices` and `plugin.SRV`): a question names a service and
//! optionally an endpoint (`<ep>.<svc>`) or a port and protocol
//! (`_<port>._<proto>.<svc>`, each underscore optional, as CoreDNS strips
//! it); every (address, port) pair that matches is one "service", the
//! weight is `floor(100 / pairs)` (at least 1, priority 0), records are
//! deduplicated by (target, port) and the additional section by
//! (target, address).
//!
//! - a ClusterIP service without an endpoint label: one pair per matching
//!   service port and cluster IP, target the service;
//! - a headless service, or any service with an endpoint label: one pair per
//!   published endpoint address (that has the label, if given) and matching
//!   port of its EndpointSlice, target the endpoint's name.
//!
//! An empty port or protocol matches every port (a bare service name lists
//! them all, unnamed ports too); a named one matches by name, ignoring case.
//! A slice without ports counts its addresses in the weight (CoreDNS's
//! sentinel port -1) but yields no record.
//!
//! Rendering the records of every name up front would cost more than the
//! rest of the table at 150,000 pods; the model keeps one target per
//! published address of a slice that has ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::SRV;

use super::entry::Other;
use super::target::{Target, dashed};
use super::{EndpointAddr, NamedPort, RecordTable, ServiceKey, SliceView};

/// What one service's SRV records are computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SrvModel {
    /// A ClusterIP service's addresses (targets: the service itself);
    /// empty for a headless service.
    ips: Box<[IpAddr]>,
    /// A ClusterIP service's ports.
    service_ports: Box<[NamedPort]>,
    /// The published, named endpoints of each slice that has ports.
    groups: Box<[SrvGroup]>,
    /// Published addresses in slices without ports (CoreDNS's port -1).
    portless: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SrvGroup {
    ports: Box<[NamedPort]>,
    /// One per published address.
    targets: Box<[Target]>,
}

/// What a question asks for, by the labels before `<svc>.<ns>.svc.<zone>`.
#[derive(Clone, Copy, Debug)]
enum Shape<'a> {
    /// `<svc>`: every port.
    Service,
    /// `<ep>.<svc>`
    Endpoint(&'a str),
    /// `_<port>._<proto>.<svc>`, underscores stripped; empty matches all.
    Port(&'a str, &'a str),
}

fn strip_underscore(label: &str) -> &str {
    label.strip_prefix('_').unwrap_or(label)
}

fn port_matches(want: &str, have: &str) -> bool {
    want.is_empty() || want.eq_ignore_ascii_case(have)
}

impl SrvModel {
    fn groups<'a>(
        slices: &[&'a SliceView],
        published: &impl Fn(&&'a EndpointAddr) -> bool,
    ) -> (Box<[SrvGroup]>, u32) {
        let mut portless = 0u32;
        let mut groups = Vec::new();
        for slice in slices {
            let eps = slice.endpoints.iter().filter(published);
            if slice.ports.is_empty() {
                portless = portless.saturating_add(eps.count() as u32);
                continue;
            }
            let targets: Box<[Target]> = eps
                .filter(|ep| ep.named)
                .map(|ep| Target::endpoint(ep.hostname.as_ref(), ep.ip))
                .collect();
            if !targets.is_empty() {
                groups.push(SrvGroup {
                    ports: slice.ports.clone(),
                    targets,
                });
            }
        }
        (groups.into_boxed_slice(), portless)
    }

    /// The model of a headless service, None when it has no SRV record.
    pub(crate) fn headless<'a>(
        slices: &[&'a SliceView],
        published: impl Fn(&&'a EndpointAddr) -> bool,
    ) -> Option<Box<SrvModel>> {
        let (groups, portless) = Self::groups(slices, &published);
        (!groups.is_empty()).then(|| {
            Box::new(SrvModel {
                ips: Box::default(),
                service_ports: Box::default(),
                groups,
                portless,
            })
        })
    }

    /// The model of a ClusterIP service, None when it has no SRV record.
    pub(crate) fn cluster_ip<'a>(
        ips: &[IpAddr],
        ports: &[NamedPort],
        slices: &[&'a SliceView],
        published: impl Fn(&&'a EndpointAddr) -> bool,
    ) -> Option<Box<SrvModel>> {
        let (groups, portless) = Self::groups(slices, &published);
        (!(ports.is_empty() || ips.is_empty()) || !groups.is_empty()).then(|| {
            Box::new(SrvModel {
                ips: ips.into(),
                service_ports: ports.into(),
                groups,
                portless,
            })
        })
    }

    fn headless_kind(&self) -> bool {
        self.ips.is_empty()
    }

    /// The named (port, protocol) pairs that have an `_<port>._<proto>`
    /// name: of the service's ports for a ClusterIP service, of its slices'
    /// for a headless one.
    pub(crate) fn named_ports(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = if self.headless_kind() {
            self.groups
                .iter()
                .flat_map(|g| g.ports.iter())
                .map(|p| (&*p.name, &*p.proto))
                .collect()
        } else {
            self.service_ports
                .iter()
                .map(|p| (&*p.name, &*p.proto))
                .collect()
        };
        v.retain(|(name, _)| !name.is_empty());
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The matching (port, target) pairs, and how many (address, port)
    /// pairs CoreDNS would count for the weight.
    fn find(&self, shape: Shape<'_>) -> (Vec<(u16, Target)>, usize) {
        let mut out = Vec::new();
        let mut count = 0usize;
        let (want_port, want_proto) = match shape {
            Shape::Port(p, q) => (p, q),
            _ => ("", ""),
        };
        if !self.headless_kind() && !matches!(shape, Shape::Endpoint(_)) {
            for p in self.service_ports.iter() {
                if port_matches(want_port, &p.name) && port_matches(want_proto, &p.proto) {
                    count += self.ips.len();
                    out.push((p.port, Target::Service));
                }
            }
            return (out, count);
        }
        for g in self.groups.iter() {
            for t in g.targets.iter() {
                if let Shape::Endpoint(label) = shape
                    && !t.label_is(label)
                {
                    continue;
                }
                for p in g.ports.iter() {
                    if port_matches(want_port, &p.name) && port_matches(want_proto, &p.proto) {
                        count += 1;
                        out.push((p.port, t.clone()));
                    }
                }
            }
        }
        if matches!(shape, Shape::Service) {
            count += self.portless as usize;
        }
        (out, count)
    }
}

impl Target {
    /// Whether this endpoint target is named `label` (lowercase).
    fn label_is(&self, label: &str) -> bool {
        match self {
            Target::Service => false,
            Target::Host(h) => h.eq_ignore_ascii_case(label),
            Target::Ip(ip) => dashed(*ip) == label,
        }
    }
}

impl RecordTable {
    /// The service a name under `svc.<zone>` belongs to and what it asks,
    /// with the service's name.
    fn srv_question<'n>(&self, labels: &'n [String]) -> Option<(&SrvModel, Shape<'n>, Name)> {
        // labels: the name's labels before `svc.<zone>`, leftmost first.
        let n = labels.len();
        if n < 2 {
            return None;
        }
        let (ns, svc) = (&labels[n - 1], &labels[n - 2]);
        let shape = match n - 2 {
            0 => Shape::Service,
            1 => Shape::Endpoint(&labels[0]),
            2 => Shape::Port(strip_underscore(&labels[0]), strip_underscore(&labels[1])),
            _ => return None,
        };
        let key: ServiceKey = (ns.clone(), svc.clone());
        let state = self.services.get(&key)?;
        let model = state.srv.as_deref()?;
        Some((model, shape, state.key.name()))
    }

    /// The lowercase labels of `name` before `svc.<zone>`, or None when it
    /// is not under `svc.<zone>`.
    fn labels_before_svc(&self, name: &Name) -> Option<Vec<String>> {
        let zone = &self.zone.zone;
        let mut svc_zone = Name::from_ascii("svc").ok()?.append_domain(zone).ok()?;
        svc_zone.set_fqdn(true);
        if !svc_zone.zone_of(name) {
            return None;
        }
        let before = name.num_labels() as usize - svc_zone.num_labels() as usize;
        Some(
            name.iter()
                .take(before)
                .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
                .collect(),
        )
    }

    /// The SRV records of `name` (lowercase targets, priority 0), as
    /// CoreDNS answers them: for a service name, an endpoint name, or
    /// `_<port>._<proto>` under a service in any spelling CoreDNS accepts
    /// (underscores optional, any letter case). `None`: the name is none of
    /// these (or its service has no ports); `Some(empty)`: it is, but no
    /// record matches. The additional section of an SRV answer carries the
    /// targets' addresses: `self.get(target)`.
    pub fn srv(&self, name: &Name) -> Option<Vec<SRV>> {
        let labels = self.labels_before_svc(name)?;
        let (model, shape, service) = self.srv_question(&labels)?;
        let (mut found, count) = model.find(shape);
        let weight = (100 / count.max(1)).max(1) as u16;
        found.sort_unstable();
        found.dedup();
        Some(
            found
                .into_iter()
                .filter_map(|(port, target)| {
                    let mut t = target.under(&service)?;
                    t.set_fqdn(true);
                    Some(SRV::new(0, weight, port, t))
                })
                .collect(),
        )
    }

    /// The A and AAAA records of an `_<port>._<proto>` name (one the table
    /// holds, see [`super::NameEntry::has_srv`]): the addresses of its SRV
    /// targets, as CoreDNS answers address questions for these names.
    pub fn srv_addresses(&self, name: &Name) -> Option<(Vec<Ipv4Addr>, Vec<Ipv6Addr>)> {
        if !matches!(self.get(name)?.other.as_deref(), Some(Other::Srv)) {
            return None;
        }
        let labels = self.labels_before_svc(name)?;
        let (model, shape, service) = self.srv_question(&labels)?;
        let (found, _) = model.find(shape);
        let mut ips: Vec<IpAddr> = Vec::new();
        for (_, target) in &found {
            match target {
                Target::Service => ips.extend(model.ips.iter()),
                Target::Ip(ip) => ips.push(*ip),
                Target::Host(_) => {
                    if let Some(e) = target.under(&service).and_then(|n| self.get(&n)) {
                        ips.extend(e.a.iter().map(|&a| IpAddr::V4(a)));
                        ips.extend(e.aaaa.iter().map(|&a| IpAddr::V6(a)));
                    }
                }
            }
        }
        ips.sort_unstable();
        ips.dedup();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for ip in ips {
            match ip {
                IpAddr::V4(a) => v4.push(a),
                IpAddr::V6(a) => v6.push(a),
            }
        }
        Some((v4, v6))
    }
}
