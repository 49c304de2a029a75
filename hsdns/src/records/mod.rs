//! The record table: a pure function from Kubernetes objects (plus zone
//! configuration) to the names the responder answers, following the
//! Kubernetes DNS-Based Service Discovery specification (schema 1.1.0).
//!
//! The manifest loader and the API watcher both feed [`RecordTable::build`],
//! so the table never depends on where the objects came from.
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::SOA;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

use crate::source::{Objects, SERVICE_NAME_LABEL, is_dns1123_label};

/// SOA timers of CoreDNS's kubernetes plugin, so negative answers look the
/// same whichever server gives them.
pub const SOA_REFRESH: i32 = 7200;
pub const SOA_RETRY: i32 = 1800;
pub const SOA_EXPIRE: i32 = 86400;

/// The cluster zone and the TTL of every record in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneConfig {
    /// Fully qualified and lowercase ([`RecordTable::build`] normalises it),
    /// short enough that `hostmaster.<zone>` is a legal name
    /// ([`ZoneConfig::new`] checks).
    pub zone: Name,
    /// TTL of answers, and of the SOA and its minimum (negative caching).
    pub ttl: u32,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            zone: Name::from_ascii("cluster.local.").expect("valid literal"),
            ttl: 5,
        }
    }
}

impl ZoneConfig {
    /// A zone from its text form (`cluster.local` or `cluster.local.`).
    pub fn new(zone: &str, ttl: u32) -> Result<Self> {
        let mut name = Name::from_ascii(zone).with_context(|| format!("zone {zone:?}"))?;
        if name.is_root() {
            bail!("zone {zone:?}: the root zone cannot be the cluster zone");
        }
        name.set_fqdn(true);
        // `hostmaster.<zone>` must still be a legal name.
        let wire_len: usize = name.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
        if wire_len + "hostmaster".len() + 1 > hickory_proto::rr::Name::MAX_LENGTH {
            bail!("zone {zone:?} is too long");
        }
        Ok(Self {
            zone: name.to_lowercase(),
            ttl,
        })
    }

    /// The zone's SOA as it appears in a negative answer whose question ends
    /// in `zone_as_asked` (this zone in the question's own letter case): the
    /// server and mailbox names are built on it so they compress against the
    /// question, which is what lets the kernel reuse precomputed bytes for
    /// mixed-case (0x20) questions.
    pub fn soa(&self, serial: u32, zone_as_asked: &Name) -> SOA {
        let under = |label: &str| {
            Name::from_ascii(label)
                .and_then(|n| n.append_domain(zone_as_asked))
                .expect("a zone leaves room for the SOA names")
        };
        SOA::new(
            under("ns.dns"),
            under("hostmaster"),
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            self.ttl,
        )
    }
}

/// The addresses of one name, each list sorted and free of duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameEntry {
    pub a: Vec<Ipv4Addr>,
    pub aaaa: Vec<Ipv6Addr>,
}

impl NameEntry {
    fn push(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.a.push(v4),
            IpAddr::V6(v6) => self.aaaa.push(v6),
        }
    }

    fn finish(&mut self) {
        self.a.sort_unstable();
        self.a.dedup();
        self.a.shrink_to_fit();
        self.aaaa.sort_unstable();
        self.aaaa.dedup();
        self.aaaa.shrink_to_fit();
    }

    fn is_empty(&self) -> bool {
        self.a.is_empty() && self.aaaa.is_empty()
    }
}

/// Every name of the cluster zone the responder answers for.
///
/// Only names with at least one address are present: a headless Service
/// without ready endpoints is absent, so queries for it go to the
/// fallback resolver instead of getting an authoritative answer from us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordTable {
    zone: ZoneConfig,
    serial: u32,
    /// Keys are lowercase FQDNs; `Name`'s ordering ignores case, so lookups
    /// with a query's mixed-case name (0x20 encoding) find them directly.
    names: BTreeMap<Name, NameEntry>,
}

impl RecordTable {
    /// Builds the table. Objects that cannot produce a valid name (possible
    /// only for objects that skipped `source` validation) are left out and
    /// logged rather than failing the build: one bad object from the API
    /// server must not take every other name down.
    pub fn build(cfg: &ZoneConfig, objects: &Objects, serial: u32) -> RecordTable {
        let mut zone = cfg.zone.to_lowercase();
        zone.set_fqdn(true);
        let zone = ZoneConfig { zone, ttl: cfg.ttl };

        let mut slices: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in &objects.slices {
            let ns = slice.metadata.namespace.as_deref();
            let svc = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(ns), Some(svc)) = (ns, svc) {
                slices.entry((ns, svc.as_str())).or_default().push(slice);
            }
        }

        let mut names: BTreeMap<Name, NameEntry> = BTreeMap::new();
        for svc in &objects.services {
            let (Some(ns), Some(name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                log::warn!("service without namespace or name skipped");
                continue;
            };
            let Some(svc_name) = service_name(name, ns, &zone.zone) else {
                log::warn!(
                    "service {ns}/{name}: no valid DNS name in zone {}",
                    zone.zone
                );
                continue;
            };
            match kind(svc) {
                Kind::Headless => {
                    let publish_not_ready = svc
                        .spec
                        .as_ref()
                        .and_then(|s| s.publish_not_ready_addresses)
                        .unwrap_or(false);
                    let mut entry = NameEntry::default();
                    for slice in slices
                        .get(&(ns, name))
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                    {
                        add_slice(&mut names, &mut entry, &svc_name, slice, publish_not_ready);
                    }
                    let merged = names.entry(svc_name).or_default();
                    merged.a.append(&mut entry.a);
                    merged.aaaa.append(&mut entry.aaaa);
                }
                Kind::ClusterIp => {
                    let entry = names.entry(svc_name).or_default();
                    for ip in cluster_ips(svc) {
                        entry.push(ip);
                    }
                }
                Kind::Other => {}
            }
        }
        names.retain(|_, entry| {
            entry.finish();
            !entry.is_empty()
        });
        RecordTable {
            zone,
            serial,
            names,
        }
    }

    pub fn zone(&self) -> &ZoneConfig {
        &self.zone
    }

    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Case-insensitive lookup; a relative name is read as fully qualified.
    pub fn get(&self, name: &Name) -> Option<&NameEntry> {
        if name.is_fqdn() {
            self.names.get(name)
        } else {
            let mut fqdn = name.clone();
            fqdn.set_fqdn(true);
            self.names.get(&fqdn)
        }
    }

    /// Names are lowercase FQDNs, in DNSSEC canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&Name, &NameEntry)> {
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
}

enum Kind {
    Headless,
    ClusterIp,
    /// ExternalName (a CNAME, not in this table yet) and Services without an
    /// allocated address.
    Other,
}

fn kind(svc: &Service) -> Kind {
    let Some(spec) = &svc.spec else {
        return Kind::Other;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Kind::Other;
    }
    match spec.cluster_ip.as_deref() {
        Some("None") => Kind::Headless,
        _ if cluster_ips(svc).next().is_some() => Kind::ClusterIp,
        _ => Kind::Other,
    }
}

/// `spec.clusterIPs` (dual-stack), falling back to `spec.clusterIP` for
/// objects written before dual-stack.
fn cluster_ips(svc: &Service) -> impl Iterator<Item = IpAddr> + '_ {
    let spec = svc.spec.as_ref();
    let listed = spec
        .and_then(|s| s.cluster_ips.as_deref())
        .filter(|ips| !ips.is_empty());
    let list = listed
        .or_else(|| spec.map(|s| s.cluster_ip.as_slice()))
        .unwrap_or_default();
    list.iter().filter_map(|s| s.parse().ok())
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

/// CoreDNS publishes an endpoint when its Ready condition is not false; the
/// EndpointSlice controller already folds `publishNotReadyAddresses` into
/// Ready, and sets it false for terminating pods. Manifests are written by
/// hand, so both are applied here as well: a terminating endpoint is left
/// out unless the Service asks for not-ready addresses.
fn published(ep: &Endpoint, publish_not_ready: bool) -> bool {
    if publish_not_ready {
        return true;
    }
    let cond = ep.conditions.as_ref();
    let ready = cond.and_then(|c| c.ready).unwrap_or(true);
    let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
    ready && !terminating
}

/// Adds a slice's published endpoints to the service entry `svc` and to
/// their hostname names (`<hostname>.<svc name>`).
fn add_slice(
    names: &mut BTreeMap<Name, NameEntry>,
    svc: &mut NameEntry,
    svc_name: &Name,
    slice: &EndpointSlice,
    publish_not_ready: bool,
) {
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return;
    }
    for ep in slice
        .endpoints
        .iter()
        .filter(|ep| published(ep, publish_not_ready))
    {
        let ips = ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok());
        let host = ep.hostname.as_deref().filter(|h| is_dns1123_label(h));
        match host.and_then(|h| svc_name.prepend_label(h.as_bytes()).ok()) {
            Some(host_name) => {
                let host = names.entry(host_name).or_default();
                for ip in ips {
                    svc.push(ip);
                    host.push(ip);
                }
            }
            None => ips.for_each(|ip| svc.push(ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{embedded_seed, parse_manifests};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn table(yaml: &str) -> RecordTable {
        RecordTable::build(
            &ZoneConfig::default(),
            &parse_manifests("t.yaml", yaml).unwrap(),
            1,
        )
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn seed_table_has_the_service_and_each_pod_dual_stack() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 42);
        assert_eq!(t.serial(), 42);
        assert_eq!(t.len(), 4);
        let svc = t
            .get(&name("nginx-headless.test.svc.cluster.local."))
            .unwrap();
        assert_eq!(
            svc.a,
            [
                v4("169.254.10.10"),
                v4("169.254.10.11"),
                v4("169.254.10.12")
            ]
        );
        assert_eq!(
            svc.aaaa,
            [v6("fd00:10::10"), v6("fd00:10::11"), v6("fd00:10::12")]
        );
        for (i, host) in ["nginx-0", "nginx-1", "nginx-2"].iter().enumerate() {
            let e = t
                .get(&name(&format!(
                    "{host}.nginx-headless.test.svc.cluster.local."
                )))
                .unwrap();
            assert_eq!(e.a, [v4(&format!("169.254.10.{}", 10 + i))]);
            assert_eq!(e.aaaa, [v6(&format!("fd00:10::{}", 10 + i))]);
        }
    }

    #[test]
    fn lookups_ignore_case_and_keys_are_lowercase_fqdns() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1);
        assert!(
            t.get(&name("NGINX-0.Nginx-Headless.TEST.svc.Cluster.Local."))
                .is_some()
        );
        assert!(
            t.get(&name("nginx-0.nginx-headless.test.svc.cluster.local"))
                .is_some()
        );
        assert!(
            t.get(&name("nginx-3.nginx-headless.test.svc.cluster.local."))
                .is_none()
        );
        for (n, _) in t.iter() {
            assert!(n.is_fqdn());
            assert!(n.eq_case(&n.to_lowercase()), "{n}");
        }
    }

    const HEADLESS: &str = "apiVersion: v1
kind: Service
metadata: {name: db, namespace: ns}
spec: {clusterIP: None}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: ns
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [169.254.0.3]
  hostname: db-0
  conditions: {ready: true}
- addresses: [169.254.0.1]
- addresses: [169.254.0.2]
  hostname: db-2
  conditions: {ready: false}
- addresses: [169.254.0.4]
  conditions: {ready: true, terminating: true}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-2
  namespace: ns
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [169.254.0.3, 169.254.0.1]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: other
  namespace: other-ns
  labels: {kubernetes.io/service-name: db}
addressType: IPv4
endpoints:
- addresses: [169.254.0.9]
";

    #[test]
    fn headless_uses_ready_endpoints_of_its_slices_sorted_and_deduplicated() {
        let t = table(HEADLESS);
        let svc = t.get(&name("db.ns.svc.cluster.local.")).unwrap();
        assert_eq!(svc.a, [v4("169.254.0.1"), v4("169.254.0.3")]);
        assert!(svc.aaaa.is_empty());
        assert_eq!(
            t.get(&name("db-0.db.ns.svc.cluster.local.")).unwrap().a,
            [v4("169.254.0.3")]
        );
        // not ready: no hostname record either
        assert!(t.get(&name("db-2.db.ns.svc.cluster.local.")).is_none());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn publish_not_ready_addresses_publishes_every_endpoint() {
        let yaml = HEADLESS.replace(
            "spec: {clusterIP: None}",
            "spec: {clusterIP: None, publishNotReadyAddresses: true}",
        );
        let t = table(&yaml);
        let svc = t.get(&name("db.ns.svc.cluster.local.")).unwrap();
        assert_eq!(
            svc.a,
            [
                v4("169.254.0.1"),
                v4("169.254.0.2"),
                v4("169.254.0.3"),
                v4("169.254.0.4")
            ]
        );
        assert_eq!(
            t.get(&name("db-2.db.ns.svc.cluster.local.")).unwrap().a,
            [v4("169.254.0.2")]
        );
    }

    #[test]
    fn cluster_ip_services_use_cluster_ips_and_skip_external_name() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: ns}\n\
            spec: {clusterIP: 169.254.7.1, clusterIPs: [169.254.7.1, 'fd00::7:1']}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: old, namespace: ns}\nspec: {clusterIP: 169.254.7.2}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: ns}\nspec: {type: ExternalName, externalName: x.example}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: pending, namespace: ns}\nspec: {ports: [{port: 80}]}\n";
        let t = table(yaml);
        let api = t.get(&name("api.ns.svc.cluster.local.")).unwrap();
        assert_eq!(api.a, [v4("169.254.7.1")]);
        assert_eq!(api.aaaa, [v6("fd00::7:1")]);
        assert_eq!(
            t.get(&name("old.ns.svc.cluster.local.")).unwrap().a,
            [v4("169.254.7.2")]
        );
        assert!(t.get(&name("ext.ns.svc.cluster.local.")).is_none());
        assert!(t.get(&name("pending.ns.svc.cluster.local.")).is_none());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn zone_and_ttl_come_from_config_and_are_normalised() {
        let cfg = ZoneConfig {
            zone: Name::from_ascii("Example.Internal").unwrap(),
            ttl: 30,
        };
        let t = RecordTable::build(&cfg, &embedded_seed(), 1);
        assert!(t.zone().zone.eq_case(&name("example.internal.")));
        assert_eq!(t.zone().ttl, 30);
        assert!(
            t.get(&name("nginx-headless.test.svc.example.internal."))
                .is_some()
        );
        assert!(
            t.get(&name("nginx-headless.test.svc.cluster.local."))
                .is_none()
        );
        assert!(ZoneConfig::new(".", 5).is_err());
        let long = vec!["a".repeat(60); 4].join(".");
        assert!(ZoneConfig::new(&long, 5).is_err());
        assert_eq!(
            ZoneConfig::new("Cluster.Local", 5).unwrap(),
            ZoneConfig::default()
        );
    }

    #[test]
    fn unvalidated_objects_with_bad_names_are_skipped_not_fatal() {
        let mut objects = embedded_seed();
        let mut bad = objects.services[0].clone();
        bad.metadata.name = Some("Bad_Name".into());
        objects.services.push(bad);
        objects.slices[0].endpoints[0].hostname = Some("x".repeat(64));
        let t = RecordTable::build(&ZoneConfig::default(), &objects, 1);
        assert!(
            t.get(&name("nginx-0.nginx-headless.test.svc.cluster.local."))
                .is_some()
        ); // via the IPv6 slice
        assert!(
            t.get(&name("nginx-0.nginx-headless.test.svc.cluster.local."))
                .unwrap()
                .a
                .is_empty()
        );
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn soa_follows_the_zone_case_given() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 77);
        let soa = t.soa(&name("Cluster.LOCAL."));
        assert!(soa.mname.eq_case(&name("ns.dns.Cluster.LOCAL.")));
        assert!(soa.rname.eq_case(&name("hostmaster.Cluster.LOCAL.")));
        assert_eq!(
            (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
            (77, 7200, 1800, 86400, 5)
        );
    }
}
