//! What the record table reads of Services and EndpointSlices, taken out
//! of the API objects as they arrive.
//!
//! The live source holds every object of the cluster between changes (a
//! change to one slice rebuilds its service from all of the service's
//! slices). As k8s-openapi structs, 150,000 pods' slices took about
//! 110 MiB of the daemon's heap: an `Endpoint` is a few hundred bytes
//! before its strings, mostly fields DNS never reads. A view keeps one
//! 40-byte entry per address.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use crate::k8s::is_dns1123_label;

/// A port as SRV records use it: name (empty for an unnamed port) and
/// protocol lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: Box<str>,
    pub proto: Box<str>,
    pub port: u16,
}

/// `ports` as [`NamedPort`]s, out-of-range ports left out. Unnamed ports
/// are kept with an empty name: they have no `_<port>._<proto>` name (spec:
/// "Unnamed ports do not have an SRV record"), but CoreDNS lists them in
/// the SRV records of the bare service name. Ports whose name (if any) or
/// protocol is not a DNS-1123 label are left out (only possible for
/// objects that skipped validation): as a label of an SRV name, a NUL byte
/// would make a name the table cannot key, a dot one it never asked for.
fn named_ports<'a>(
    ports: impl Iterator<Item = (Option<&'a str>, Option<&'a str>, Option<i32>)>,
) -> Box<[NamedPort]> {
    ports
        .filter_map(|(name, proto, port)| {
            let name = name.unwrap_or_default().to_ascii_lowercase();
            let proto = proto.unwrap_or("TCP").to_ascii_lowercase();
            if !(name.is_empty() || is_dns1123_label(&name)) || !is_dns1123_label(&proto) {
                return None;
            }
            let port = u16::try_from(port?).ok().filter(|&p| p != 0)?;
            Some(NamedPort {
                name: name.into(),
                proto: proto.into(),
                port,
            })
        })
        .collect()
}

/// What kind of names a Service has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// `clusterIP: None`: the names come from its EndpointSlices.
    Headless,
    /// Its cluster IPs (dual-stack: one per family).
    ClusterIp(Box<[IpAddr]>),
    /// An ExternalName service whose `externalName` is a domain name.
    ExternalName(Name),
    /// Services without an allocated address, and ExternalName services
    /// whose `externalName` is not a domain name: CoreDNS answers NXDOMAIN
    /// for both, so they have no name.
    Other,
}

/// A Service as the record table reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceView {
    pub kind: ServiceKind,
    /// `publishNotReadyAddresses`: every endpoint is published, ready or
    /// not.
    pub publish_not_ready: bool,
    /// The service's ports (SRV of ClusterIP services).
    pub ports: Box<[NamedPort]>,
}

impl From<&Service> for ServiceView {
    fn from(svc: &Service) -> Self {
        let Some(spec) = &svc.spec else {
            return ServiceView {
                kind: ServiceKind::Other,
                publish_not_ready: false,
                ports: Box::default(),
            };
        };
        let kind = if spec.type_.as_deref() == Some("ExternalName") {
            // CoreDNS publishes the CNAME only when the target is not an IP
            // address (msg.Service.HostType).
            let target = spec
                .external_name
                .as_deref()
                .filter(|t| !t.is_empty() && t.parse::<IpAddr>().is_err())
                .and_then(|t| Name::from_ascii(t).ok());
            match target {
                Some(mut t) => {
                    t.set_fqdn(true);
                    ServiceKind::ExternalName(t)
                }
                None => ServiceKind::Other,
            }
        } else if spec.cluster_ip.as_deref() == Some("None") {
            ServiceKind::Headless
        } else {
            // `spec.clusterIPs` (dual-stack), falling back to
            // `spec.clusterIP` for objects written before dual-stack.
            let listed = spec.cluster_ips.as_deref().filter(|ips| !ips.is_empty());
            let ips: Box<[IpAddr]> = listed
                .unwrap_or(spec.cluster_ip.as_slice())
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect();
            if ips.is_empty() {
                ServiceKind::Other
            } else {
                ServiceKind::ClusterIp(ips)
            }
        };
        let ports = named_ports(
            spec.ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|p| (p.name.as_deref(), p.protocol.as_deref(), Some(p.port))),
        );
        ServiceView {
            kind,
            publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
            ports,
        }
    }
}

/// One address of an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointAddr {
    pub ip: IpAddr,
    /// Ready and not terminating: published even without
    /// `publishNotReadyAddresses`.
    pub ready: bool,
    /// False for a hostname that is not a DNS-1123 label (only possible for
    /// objects that skipped validation): it names nothing. Its addresses
    /// still belong to the service, but a dashed name would be one it
    /// never asked for.
    pub named: bool,
    /// The endpoint's name under its service: its hostname (or, with
    /// CoreDNS's `endpoint_pod_names`, its pod's name); None: named after
    /// each address (`dashed`).
    pub hostname: Option<Arc<str>>,
}

/// An EndpointSlice as the record table reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceView {
    /// The slice's named ports (SRV of headless services: the pods' ports).
    pub ports: Box<[NamedPort]>,
    /// Every address of every endpoint, in the slice's order; none for an
    /// FQDN slice.
    pub endpoints: Box<[EndpointAddr]>,
}

/// CoreDNS publishes an endpoint when its Ready condition is not false; the
/// EndpointSlice controller already folds `publishNotReadyAddresses` into
/// Ready, and sets it false for terminating pods. Manifests are written by
/// hand, so both are applied here as well: a terminating endpoint is left
/// out unless the Service asks for not-ready addresses.
fn ready(ep: &Endpoint) -> bool {
    let cond = ep.conditions.as_ref();
    let ready = cond.and_then(|c| c.ready).unwrap_or(true);
    let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
    ready && !terminating
}

impl From<&EndpointSlice> for SliceView {
    fn from(slice: &EndpointSlice) -> Self {
        SliceView::new(slice, false)
    }
}

impl SliceView {
    /// The view of `slice`. With `pod_names` (CoreDNS's
    /// `endpoint_pod_names`), an endpoint without a hostname is named
    /// after its targetRef (its pod), when that name is shorter than 64
    /// bytes as CoreDNS requires; one that is not a DNS label names
    /// nothing.
    pub fn new(slice: &EndpointSlice, pod_names: bool) -> Self {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            return SliceView::default();
        }
        let ports = named_ports(
            slice
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|p| (p.name.as_deref(), p.protocol.as_deref(), p.port)),
        );
        let endpoints = slice
            .endpoints
            .iter()
            .flat_map(|ep| {
                let pod = ep
                    .target_ref
                    .as_ref()
                    .and_then(|r| r.name.as_deref())
                    .filter(|n| pod_names && !n.is_empty() && n.len() < 64);
                let host = ep.hostname.as_deref().or(pod);
                let named = host.is_none_or(is_dns1123_label);
                let hostname: Option<Arc<str>> = host.map(Into::into);
                let ready = ready(ep);
                ep.addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(move |ip| EndpointAddr {
                        ip,
                        ready,
                        named,
                        hostname: hostname.clone(),
                    })
            })
            .collect();
        SliceView { ports, endpoints }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_ports_stay_and_ports_that_are_no_label_go() {
        let ports = named_ports(
            [
                (None, None, Some(80)),
                (Some(""), Some("UDP"), Some(53)),
                (Some("HTTP"), Some("TCP"), Some(8080)),
                (Some("a\0b"), Some("TCP"), Some(1)),
                (Some("a.b"), Some("TCP"), Some(2)),
                (None, Some("T\0CP"), Some(3)),
                (Some("web"), Some("tcp."), Some(4)),
                (Some("big"), None, Some(70_000)),
                (Some("zero"), None, Some(0)),
            ]
            .into_iter(),
        );
        let got: Vec<(&str, &str, u16)> = ports
            .iter()
            .map(|p| (&*p.name, &*p.proto, p.port))
            .collect();
        assert_eq!(
            got,
            [("", "tcp", 80), ("", "udp", 53), ("http", "tcp", 8080)]
        );
    }

    #[test]
    fn an_address_entry_stays_small() {
        // The figure the module doc promises: 150,000 of these are most of
        // the live source's memory.
        assert!(std::mem::size_of::<EndpointAddr>() <= 40);
    }
}
