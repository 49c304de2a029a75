//! The Kubernetes DNS specification's rules (and CoreDNS's, where it
//! leaves room): which names and records a Service and its EndpointSlices
//! produce. Pure functions of the objects: [`service_records`] reads no
//! table, so the same objects always give the same names, whatever came
//! before; merging the result into the table is `table`'s job.
//!
//! - 2.2: `dns-version.<zone>` among the zone's own names ([`zone_names`]);
//! - 2.3: a ClusterIP service's addresses and PTR records, and, as CoreDNS
//!   serves them, its endpoints by name ([`add_cluster_ip`]);
//! - 2.4: a headless service's ready endpoints, under the service and each
//!   under its hostname or dashed address ([`add_headless`],
//!   [`dashed`](super::dashed));
//! - 2.5: an ExternalName service's CNAME;
//! - SRV names from the service's model (`srv.rs` renders the records).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use hickory_proto::rr::Name;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::entry::Other;
use super::srv::SrvModel;
use super::target::Target;
use super::{EndpointAddr, Key, NameEntry, ServiceKind, ServiceView, SliceView};
use crate::k8s::{SERVICE_NAME_LABEL, is_dns1123_label};

/// Collects the records of one service.
#[derive(Default)]
pub(super) struct Builder {
    pub(super) names: BTreeMap<Key, NameEntry>,
    /// PTR records: addresses and their targets under the service.
    pub(super) ptr: Vec<(IpAddr, Target)>,
}

impl Builder {
    fn entry(&mut self, name: Name) -> &mut NameEntry {
        // Builder names come from DNS-1123 labels: never without a key.
        let key = Key::of(&name).expect("no zero byte in a built name");
        self.names.entry(key).or_default()
    }

    /// Adds a name that exists without records of its own, unless present.
    fn exists(&mut self, name: Name) {
        self.entry(name);
    }

    fn other(&mut self, name: Name, other: Other) {
        *self.entry(name) = NameEntry::with(other);
    }

    /// The SRV names of the model's named ports (`_<port>._<proto>.<svc>`,
    /// when some address serves that port) and the empty non-terminals
    /// `_<proto>.<svc>` above them. Their records are the model's.
    fn srv_names(&mut self, svc_name: &Name, model: &SrvModel) {
        for (port, proto) in model.named_ports() {
            let Some(proto_name) = svc_name.prepend_label(format!("_{proto}").as_bytes()).ok()
            else {
                continue;
            };
            let Some(srv_name) = proto_name.prepend_label(format!("_{port}").as_bytes()).ok()
            else {
                continue;
            };
            self.exists(proto_name);
            self.other(srv_name, Other::Srv);
        }
    }
}

/// The names every zone has before any object: the apex, `svc.<zone>`,
/// `pod.<zone>`, `ns.dns.<zone>` (the SOA's server, answered upstream) and
/// `dns-version.<zone>` (spec 2.2).
pub(super) fn zone_names(zone: &Name) -> BTreeMap<Key, NameEntry> {
    let under = |labels: &[&str]| {
        Name::from_labels(labels.iter().map(|l| l.as_bytes()))
            .and_then(|n| n.append_domain(zone))
            .expect("a zone leaves room for its fixed names")
    };
    let mut b = Builder::default();
    b.exists(zone.clone());
    b.exists(under(&["svc"]));
    // CoreDNS answers NODATA for `pod.<zone>` whatever its pod mode.
    b.exists(under(&["pod"]));
    // `dns.<zone>` stays out, as in CoreDNS (NXDOMAIN): in the table,
    // its NODATA answer's SOA would compress against the question
    // ("ns" + pointer) unlike the kernel's precomputed authority bytes.
    b.other(under(&["ns", "dns"]), Other::Upstream);
    b.other(under(&["dns-version"]), Other::SchemaVersion);
    b.names
}

/// What the spec gives one service, from its own objects alone (`svc`
/// None: deleted): its name `<svc>.<ns>.svc.<zone>` (None when it has
/// none: deleted, no valid DNS name, or no name by the spec's rules), the
/// names at and under it with their records and PTR records, and the model
/// its SRV records are computed from. The table merges the result
/// ([`super::RecordTable::update_service`]); nothing here reads the table,
/// so the same objects always give the same names.
pub(super) fn service_records(
    zone: &Name,
    ns: &str,
    name: &str,
    svc: Option<&ServiceView>,
    slices: &[&SliceView],
) -> (Option<Name>, Builder, Option<Box<SrvModel>>) {
    let mut b = Builder::default();
    let mut model: Option<Box<SrvModel>> = None;
    let svc_name = svc.and_then(|svc| {
        let svc_name = service_name(name, ns, zone);
        if svc_name.is_none() {
            log::warn!("service {ns}/{name}: no valid DNS name in zone {}", zone);
        }
        let svc_name = svc_name?;
        let published = |ep: &&EndpointAddr| svc.publish_not_ready || ep.ready;
        match &svc.kind {
            ServiceKind::Headless => {
                if add_headless(&mut b, &svc_name, slices, published) {
                    model = SrvModel::headless(slices, published);
                }
            }
            ServiceKind::ClusterIp(ips) => {
                add_cluster_ip(&mut b, &svc_name, ips, slices, published);
                model = SrvModel::cluster_ip(ips, &svc.ports, slices, published);
            }
            ServiceKind::ExternalName(target) => {
                b.other(svc_name.clone(), Other::Cname(target.clone()))
            }
            ServiceKind::Other => {}
        }
        if let Some(m) = &model {
            b.srv_names(&svc_name, m);
        }
        Some(svc_name)
    });
    for entry in b.names.values_mut() {
        entry.finish();
    }
    (svc_name, b, model)
}

/// The service an EndpointSlice belongs to: its namespace and its
/// `kubernetes.io/service-name` label.
pub fn slice_service(slice: &EndpointSlice) -> Option<(&str, &str)> {
    let ns = slice.metadata.namespace.as_deref()?;
    let svc = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((ns, svc.as_str()))
}

/// The key of a name the table built itself.
pub(super) fn svc_key(name: &Name) -> Key {
    Key::of(name).expect("built from DNS-1123 labels")
}

/// `<ns>.svc.<zone>`
pub(super) fn namespace_name(ns: &str, zone: &Name) -> Option<Name> {
    if !is_dns1123_label(ns) {
        return None;
    }
    Name::from_labels([ns.as_bytes(), b"svc"])
        .and_then(|n| n.append_domain(zone))
        .ok()
}

/// `<svc>.<ns>.svc.<zone>`
fn service_name(name: &str, ns: &str, zone: &Name) -> Option<Name> {
    if !is_dns1123_label(name) || !is_dns1123_label(ns) {
        return None;
    }
    Name::from_labels([name.as_bytes(), ns.as_bytes(), b"svc"])
        .and_then(|n| n.append_domain(zone))
        .ok()
}

/// A ClusterIP service (spec 2.3): its addresses and a PTR per address;
/// and, as CoreDNS serves them, its published endpoints by name
/// (`<hostname or dashed address>.<svc>`) with their PTR records.
fn add_cluster_ip<'a>(
    b: &mut Builder,
    svc_name: &Name,
    ips: &[IpAddr],
    slices: &[&'a SliceView],
    published: impl Fn(&&'a EndpointAddr) -> bool,
) {
    let entry = b.entry(svc_name.clone());
    for &ip in ips {
        entry.push(ip);
    }
    for &ip in ips {
        b.ptr.push((ip, Target::Service));
    }
    add_endpoints(b, svc_name, slices, published);
}

/// The published endpoints' names under the service, with their PTR
/// records; returns their addresses, every one published.
fn add_endpoints<'a>(
    b: &mut Builder,
    svc_name: &Name,
    slices: &[&'a SliceView],
    published: impl Fn(&&'a EndpointAddr) -> bool,
) -> NameEntry {
    let mut all = NameEntry::default();
    // By key, not by `Name`: hickory's label-wise comparison was a fifth of
    // the table's time at 150,000 pods.
    let mut endpoints: HashMap<Key, NameEntry> = HashMap::new();
    let addresses: usize = slices.iter().map(|s| s.endpoints.len()).sum();
    let mut ptrs: Vec<(IpAddr, Target)> = Vec::with_capacity(addresses);
    all.a.reserve(addresses);
    endpoints.reserve(addresses);
    for slice in slices {
        for ep in slice.endpoints.iter().filter(&published) {
            all.push(ep.ip);
            if !ep.named {
                continue;
            }
            let target = Target::endpoint(ep.hostname.as_ref(), ep.ip);
            let Some(ep_name) = target.under(svc_name) else {
                continue;
            };
            endpoints.entry(svc_key(&ep_name)).or_default().push(ep.ip);
            ptrs.push((ep.ip, target));
        }
    }
    b.ptr.extend(ptrs);
    for (key, mut entry) in endpoints {
        let merged = b.names.entry(key).or_default();
        merged.a.append(&mut entry.a);
        merged.aaaa.append(&mut entry.aaaa);
    }
    all
}

/// A headless service (spec 2.4): the published endpoints' addresses under
/// the service and under each endpoint's name (its hostname, else its
/// dashed address), and a PTR per endpoint address. Without a published
/// endpoint the service has no name (and false is returned).
fn add_headless<'a>(
    b: &mut Builder,
    svc_name: &Name,
    slices: &[&'a SliceView],
    published: impl Fn(&&'a EndpointAddr) -> bool,
) -> bool {
    if !slices
        .iter()
        .any(|s| s.endpoints.iter().any(|ep| published(&ep)))
    {
        return false; // spec 2.4.1: NXDOMAIN
    }
    let mut svc = add_endpoints(b, svc_name, slices, published);
    let merged = b.entry(svc_name.clone());
    merged.a.append(&mut svc.a);
    merged.aaaa.append(&mut svc.aaaa);
    true
}
