//! How an endpoint is named under its service: by its hostname, else by
//! its dashed address (spec 2.1's "unique, system-assigned identifier", in
//! CoreDNS's form). The spec rules, the PTR index and the SRV model all
//! name endpoints this one way, so it stands apart from each of them.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::Name;

/// A target name relative to a service: the service itself, or an endpoint
/// under it (`<label>.<svc>.<ns>.svc.<zone>`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Target {
    Service,
    /// An endpoint with a hostname: the view's own string, shared, so
    /// 100,000 pods' hostnames are held once (by the source's index and the
    /// PTR and SRV targets alike).
    Host(Arc<str>),
    /// An endpoint without one, named after its address ([`dashed`]).
    Ip(IpAddr),
}

impl Target {
    pub(super) fn endpoint(host: Option<&Arc<str>>, ip: IpAddr) -> Self {
        match host {
            Some(h) => Target::Host(h.clone()),
            None => Target::Ip(ip),
        }
    }

    pub(super) fn under(&self, service: &Name) -> Option<Name> {
        match self {
            Target::Service => Some(service.clone()),
            Target::Host(h) => service.prepend_label(h.as_bytes()).ok(),
            Target::Ip(ip) => service.prepend_label(dashed(*ip).as_bytes()).ok(),
        }
    }
}

/// The label CoreDNS gives an endpoint without a hostname
/// (plugin/kubernetes `endpointHostname`): the address with `-` for `.` and
/// `:`, and a trailing `0` when the IPv6 text ends in `::`. The address is
/// in its canonical text form (RFC 5952), as the EndpointSlice controller
/// writes it.
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let mut s = v6.to_string().replace([':', '.'], "-");
            if s.ends_with('-') {
                s.push('0');
            }
            s
        }
    }
}
