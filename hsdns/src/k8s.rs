//! The Kubernetes vocabulary the record sources and the record table both
//! speak: the objects a table is built from, the label that ties an
//! EndpointSlice to its Service, and the name rules Kubernetes validates
//! by. A leaf: the sources produce these and the table reads them, so
//! neither has to import the other for them.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The Kubernetes objects the record table is built from. Every object has
/// passed validation (see [`crate::source::parse_manifests`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Objects {
    pub services: Vec<Service>,
    pub slices: Vec<EndpointSlice>,
    /// The Namespaces' names, when the source lists them (manifests that
    /// hold Namespace objects); None: unknown, a namespace exists while it
    /// holds a service.
    pub namespaces: Option<Vec<String>>,
}

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// RFC 1123 label as Kubernetes validates namespaces and endpoint hostnames.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&b.len()) && edge(&b[0]) && edge(&b[b.len() - 1]) && b.iter().all(inner)
}

/// RFC 1035 label (must start with a letter) as Kubernetes validates Service
/// names.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}
