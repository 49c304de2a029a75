//! The record table: a pure function from Kubernetes objects (plus zone
//! configuration) to the names the responder answers, following the
//! Kubernetes DNS-Based Service Discovery specification (schema 1.1.0).
//!
//! The table is kept up to date one service at a time
//! ([`RecordTable::update_service`]): a service's names are exactly the
//! names under `<svc>.<ns>.svc.<zone>`, one contiguous range of the
//! canonically ordered table, so a change to one service costs the size of
//! that service, not of the cluster. The manifest loader and the API watcher
//! both feed that one function ([`RecordTable::build`] and
//! [`RecordTable::set_objects`] are loops over it), so the table never
//! depends on where the objects came from.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::SOA;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use thin_vec::ThinVec;

use crate::source::{Objects, SERVICE_NAME_LABEL, is_dns1123_label};

mod addrs;
mod pods;
mod ptr;
mod srv;
mod view;
pub use addrs::V4Addrs;
pub use pods::{PodAnswer, PodMode};
use srv::SrvModel;
pub use view::{EndpointAddr, NamedPort, ServiceKind, ServiceView, SliceView};

/// How the table answers beyond the spec's records: CoreDNS's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableOptions {
    /// Pod names (`a-b-c-d.<ns>.pod.<zone>`), CoreDNS's `pods`.
    pub pods: PodMode,
    /// Endpoints without a hostname named after their pod, CoreDNS's
    /// `endpoint_pod_names`.
    pub endpoint_pod_names: bool,
    /// False (`--no-nxdomain`): a name the table cannot find is passed on,
    /// never NXDOMAIN, in userspace as in the kernel.
    pub nxdomain: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            pods: PodMode::Disabled,
            endpoint_pod_names: false,
            nxdomain: true,
        }
    }
}

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

/// The schema version `dns-version.<zone>` announces (spec 2.2).
pub const DNS_SCHEMA_VERSION: &str = "1.1.0";
/// TTL of the `dns-version` TXT record: CoreDNS's (and the spec example's).
/// The record never changes while the daemon runs.
pub const DNS_VERSION_TTL: u32 = 28800;

/// A name as the table keys it: its labels lowercase, from the root down,
/// each followed by a zero byte. Byte order of keys is DNSSEC canonical
/// order (RFC 4034 6.1), a name's subtree is the range of keys starting
/// with its key, and a comparison is a `memcmp`, not a walk over labels
/// (at 150,000 names, hickory's label-wise comparison was a third of the
/// time of a full sync). Names with a zero byte in a label have no key:
/// they are never in the table (every name in it is built from DNS-1123
/// labels).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Box<[u8]>);

impl Key {
    pub fn of(name: &Name) -> Option<Key> {
        let mut k = Vec::with_capacity(name.len() + 1);
        for label in name.iter().rev() {
            if label.contains(&0) {
                return None;
            }
            k.extend(label.iter().map(u8::to_ascii_lowercase));
            k.push(0);
        }
        Some(Key(k.into_boxed_slice()))
    }

    /// The labels, from the leftmost (the wire order): the key holds them
    /// root first, so they are its zero-separated parts read backwards.
    pub(crate) fn labels(&self) -> impl Iterator<Item = &[u8]> {
        let body = self.0.strip_suffix(&[0]).unwrap_or(&self.0);
        body.rsplit(|&b| b == 0).filter(|l| !l.is_empty())
    }

    /// The fully qualified name.
    pub fn name(&self) -> Name {
        let mut n = Name::from_labels(self.labels()).expect("keys come from valid names");
        n.set_fqdn(true);
        n
    }

    /// The key of a name in wire format (uncompressed, as [`Self::wire`]
    /// gives it); `None` if it is not one.
    pub fn from_wire(wire: &[u8]) -> Option<Key> {
        use hickory_proto::serialize::binary::BinDecodable as _;
        Key::of(&Name::from_bytes(wire).ok()?)
    }

    /// The name in wire format (lowercase, uncompressed): the kernel's key.
    pub fn wire(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(self.0.len() + 1);
        for l in self.labels() {
            w.push(l.len() as u8);
            w.extend_from_slice(l);
        }
        w.push(0);
        w
    }

    /// The keys of this name and every name under it: `[self, end)`.
    fn subtree(&self) -> std::ops::Range<Key> {
        let mut end = self.0.to_vec();
        // The last separator raised to 1: every key extending this one is
        // below it, and every other key at least as far is above it.
        if let Some(last) = end.last_mut() {
            *last = 1;
        } else {
            end.push(0xff);
        }
        self.clone()..Key(end.into_boxed_slice())
    }
}

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
    other: Option<Box<Other>>,
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
/// on demand (see [`RecordTable::srv`]): rendering them for every name of a
/// 150,000-pod cluster would cost more than the rest of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Other {
    /// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: its SRV records, and its
    /// A/AAAA records (the targets' addresses, as CoreDNS answers them),
    /// are computed from the service's [`SrvModel`].
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

/// A target name relative to a service: the service itself, or an endpoint
/// under it (`<label>.<svc>.<ns>.svc.<zone>`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Service,
    /// An endpoint with a hostname: the view's own string, shared, so
    /// 100,000 pods' hostnames are held once (by the source's index and the
    /// PTR and SRV targets alike).
    Host(Arc<str>),
    /// An endpoint without one, named after its address ([`dashed`]).
    Ip(IpAddr),
}

impl Target {
    fn endpoint(host: Option<&Arc<str>>, ip: IpAddr) -> Self {
        match host {
            Some(h) => Target::Host(h.clone()),
            None => Target::Ip(ip),
        }
    }

    fn under(&self, service: &Name) -> Option<Name> {
        match self {
            Target::Service => Some(service.clone()),
            Target::Host(h) => service.prepend_label(h.as_bytes()).ok(),
            Target::Ip(ip) => service.prepend_label(dashed(*ip).as_bytes()).ok(),
        }
    }
}

impl NameEntry {
    fn push(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.a.push(v4),
            IpAddr::V6(v6) => self.aaaa.push(v6),
        }
    }

    fn finish(&mut self) {
        self.a.finish();
        self.aaaa.sort_unstable();
        self.aaaa.dedup();
        self.aaaa.shrink_to_fit();
    }

    fn with(other: Other) -> Self {
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

    /// Whether the name has SRV records ([`RecordTable::srv`] renders them).
    pub fn has_srv(&self) -> bool {
        matches!(self.other.as_deref(), Some(Other::Srv))
    }

    /// Whether only the upstream cluster DNS can answer for this name.
    pub fn upstream_only(&self) -> bool {
        matches!(self.other.as_deref(), Some(Other::Upstream))
    }
}

/// Every name of the cluster zone, with its records, and the reverse
/// (PTR) records of the zone's addresses.
///
/// **Completeness invariant**: a name under `<zone>` outside `pod.<zone>`
/// that is not in [`RecordTable::iter`] does not exist. [`Self::is_nxdomain`]
/// turns that into the NXDOMAIN rule the kernel and userspace share. So the
/// table lists, besides the names with addresses (services, and the named
/// endpoints of headless and, as CoreDNS names them, ClusterIP services),
/// every name that exists without them: the apex, `svc.<zone>`,
/// `pod.<zone>`, `dns-version.<zone>` (TXT), `ns.dns.<zone>` (answered
/// upstream), each namespace that holds a service or has a Namespace object
/// (`<ns>.svc.<zone>`), ExternalName services (CNAME), SRV names
/// `_<port>._<proto>.<svc>.<ns>.svc.<zone>` and the empty non-terminals
/// `_<proto>.<svc>.<ns>.svc.<zone>` above them. When the source lists
/// Namespaces, a namespace name not in the table does not exist either
/// ([`Self::does_not_exist`]). Names under `pod.<zone>` are computed
/// ([`Self::pod_answer`]), and SRV records from each service's model
/// (`srv`).
///
/// Names the spec says must not exist are absent: a headless service
/// without a ready endpoint (spec 2.4.1: NXDOMAIN), a service with no usable
/// address (no clusterIP allocated, an ExternalName that is not a domain
/// name: CoreDNS answers NXDOMAIN for both).
///
/// PTR names (`in-addr.arpa.`, `ip6.arpa.`) are outside the zone and kept
/// apart, so [`Self::iter`] (what the kernel maps hold) yields names under
/// the zone only, and a cluster's reverse names never take kernel map room.
#[derive(Clone, Debug)]
pub struct RecordTable {
    zone: ZoneConfig,
    serial: u32,
    /// Keys are lowercase FQDNs; `Name`'s ordering ignores case, so lookups
    /// with a query's mixed-case name (0x20 encoding) find them directly.
    names: BTreeMap<Key, NameEntry>,
    /// During [`Self::update_services`]: the names of services new to the
    /// table, merged into `names` in one bulk build at its end (see there).
    /// Empty outside it.
    fresh: Option<BTreeMap<Key, NameEntry>>,
    /// What each service with a valid name contributed besides its names.
    services: HashMap<ServiceKey, ServiceState>,
    /// Service names the PTR targets are relative to, by index; a freed
    /// index is reused.
    service_names: Vec<Option<Name>>,
    free_indexes: Vec<u32>,
    /// Address to PTR targets, in no order ([`Self::ptr_targets`] sorts);
    /// compact, see `ptr.rs`.
    ptr: ptr::PtrIndex,
    /// Services (and the Namespace object, when known) per namespace
    /// name (`<ns>.svc.<zone>`): the name exists while one does.
    namespaces: HashMap<Key, u32>,
    /// Namespace objects the source reported.
    namespace_objects: HashSet<Box<str>>,
    /// Whether the source lists Namespaces: then a namespace without an
    /// object and without services does not exist (CoreDNS: NXDOMAIN).
    namespaces_known: bool,
    /// Pod addresses by namespace, for `PodMode::Verified`.
    pods: pods::PodIndex,
    opts: TableOptions,
    /// Whether the table holds every object of its source (false while
    /// the live source's first lists are still coming in).
    complete: bool,
}

/// The table the userspace server reads and the daemon updates in place.
pub type SharedTable = Arc<RwLock<RecordTable>>;

/// A service by namespace and name.
pub type ServiceKey = (String, String);

#[derive(Clone, Debug)]
struct ServiceState {
    /// `<svc>.<ns>.svc.<zone>`: every name of the service is at or under it.
    key: Key,
    /// Index into `service_names`, when PTR records point under this
    /// service. Their addresses are not kept: they are all addresses of
    /// the service's own names, which an update takes out anyway.
    ptr: Option<u32>,
    /// What its SRV records (and `_<port>._<proto>` addresses) are
    /// computed from; None when it has none.
    srv: Option<Box<SrvModel>>,
}

/// One name whose entry an update added, changed or removed. The new entry
/// (if any) is in the table; `old` is the one it replaced, with the map
/// references the syncer must now release.
#[derive(Clone, Debug)]
pub struct Change {
    pub key: Key,
    pub old: Option<NameEntry>,
}

impl Change {
    pub fn name(&self) -> Name {
        self.key.name()
    }
}

impl PartialEq for RecordTable {
    /// Same zone, serial, names and records (not where the syncer put them)
    /// and PTR records.
    fn eq(&self, o: &Self) -> bool {
        self.zone == o.zone
            && self.serial == o.serial
            && self.opts == o.opts
            && self.names == o.names
            && self.namespace_objects == o.namespace_objects
            && self.namespaces_known == o.namespaces_known
            && self.pods == o.pods
            && self.services.len() == o.services.len()
            && self
                .services
                .iter()
                .all(|(k, st)| o.services.get(k).is_some_and(|os| os.srv == st.srv))
            && self.ptr.len() == o.ptr.len()
            && self
                .ptr
                .addresses()
                .all(|ip| self.ptr_targets(ip) == o.ptr_targets(ip))
    }
}

/// New names of one [`RecordTable::update_services`] are merged by a bulk
/// build (a walk of the whole table) when they are at least this share of
/// the table, so the merges cost a bounded multiple of the names they add;
/// fewer are inserted one by one. (In tests every batch is merged, so the
/// incremental = full build proptest covers the merge.)
const FRESH_BULK_SHARE: usize = 8;

/// Under `svc.<zone>`, names with at least this many labels before `svc`
/// (services, and names below them) that are not in the table get NXDOMAIN;
/// the kernel applies the same rule (`hsdns_common::Config::nxdomain`).
/// Namespaces are left alone: one without services exists all the same.
pub const NXDOMAIN_MIN_LABELS_BEFORE_SVC: usize = 2;

/// Collects the records of one service.
#[derive(Default)]
struct Builder {
    names: BTreeMap<Key, NameEntry>,
    /// PTR records: addresses and their targets under the service.
    ptr: Vec<(IpAddr, Target)>,
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

impl RecordTable {
    /// A table of `objects`, complete. Objects that cannot produce a valid
    /// name (possible only for objects that skipped `source` validation) are
    /// left out and logged rather than failing the build: one bad object
    /// from the API server must not take every other name down.
    pub fn build(cfg: &ZoneConfig, objects: &Objects, serial: u32) -> RecordTable {
        Self::build_with(cfg, &TableOptions::default(), objects, serial)
    }

    /// [`Self::build`] with CoreDNS's options.
    pub fn build_with(
        cfg: &ZoneConfig,
        opts: &TableOptions,
        objects: &Objects,
        serial: u32,
    ) -> RecordTable {
        let mut t = RecordTable::new_with(cfg, opts, serial);
        t.set_objects(objects, &mut Vec::new());
        t.set_complete(true);
        t
    }

    /// A table with the zone's fixed names only, not complete: until
    /// [`Self::set_complete`], its absence of a name proves nothing, and
    /// the server passes such questions up.
    pub fn new(cfg: &ZoneConfig, serial: u32) -> RecordTable {
        Self::new_with(cfg, &TableOptions::default(), serial)
    }

    /// [`Self::new`] with CoreDNS's options.
    pub fn new_with(cfg: &ZoneConfig, opts: &TableOptions, serial: u32) -> RecordTable {
        let mut zone = cfg.zone.to_lowercase();
        zone.set_fqdn(true);
        let zone = ZoneConfig { zone, ttl: cfg.ttl };
        let under = |labels: &[&str]| {
            Name::from_labels(labels.iter().map(|l| l.as_bytes()))
                .and_then(|n| n.append_domain(&zone.zone))
                .expect("a zone leaves room for its fixed names")
        };
        let mut b = Builder::default();
        b.exists(zone.zone.clone());
        b.exists(under(&["svc"]));
        // CoreDNS answers NODATA for `pod.<zone>` whatever its pod mode.
        b.exists(under(&["pod"]));
        // `dns.<zone>` stays out, as in CoreDNS (NXDOMAIN): in the table,
        // its NODATA answer's SOA would compress against the question
        // ("ns" + pointer) unlike the kernel's precomputed authority bytes.
        b.other(under(&["ns", "dns"]), Other::Upstream);
        b.other(under(&["dns-version"]), Other::SchemaVersion);
        RecordTable {
            zone,
            serial,
            names: b.names,
            fresh: None,
            services: HashMap::new(),
            service_names: Vec::new(),
            free_indexes: Vec::new(),
            ptr: ptr::PtrIndex::default(),
            namespaces: HashMap::new(),
            namespace_objects: HashSet::new(),
            namespaces_known: false,
            pods: pods::PodIndex::default(),
            opts: opts.clone(),
            complete: false,
        }
    }

    pub fn options(&self) -> &TableOptions {
        &self.opts
    }

    /// Every name of the table as added: what a syncer that has written
    /// nothing yet must install.
    pub fn all_changes(&self) -> Vec<Change> {
        self.names
            .keys()
            .map(|key| Change {
                key: key.clone(),
                old: None,
            })
            .collect()
    }

    /// Whether the table holds every object of its source.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn set_complete(&mut self, complete: bool) {
        self.complete = complete;
    }

    /// Brings the table to exactly `objects`: every service it has or
    /// `objects` has is updated; `changes` receives what differs.
    pub fn set_objects(&mut self, objects: &Objects, changes: &mut Vec<Change>) {
        // Namespaces come before services and go after them, so a
        // namespace's name is never taken out and put back in one call
        // (each name is reported once).
        let mut gone_namespaces: Vec<Box<str>> = Vec::new();
        if let Some(list) = &objects.namespaces {
            self.set_namespaces_known(true);
            let want: HashSet<&str> = list.iter().map(String::as_str).collect();
            gone_namespaces = self
                .namespace_objects
                .iter()
                .filter(|ns| !want.contains(&***ns))
                .cloned()
                .collect();
            for ns in list {
                self.set_namespace(ns, true, changes);
            }
        }
        let pod_names = self.opts.endpoint_pod_names;
        let mut slices: HashMap<(&str, &str), Vec<SliceView>> = HashMap::new();
        for slice in &objects.slices {
            if let Some(key) = slice_service(slice) {
                slices
                    .entry(key)
                    .or_default()
                    .push(SliceView::new(slice, pod_names));
            }
        }
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        let mut listed: Vec<(&str, &str, ServiceView, Vec<&SliceView>)> = Vec::new();
        for svc in &objects.services {
            let (Some(ns), Some(name)) = (
                svc.metadata.namespace.as_deref(),
                svc.metadata.name.as_deref(),
            ) else {
                log::warn!("service without namespace or name skipped");
                continue;
            };
            seen.insert((ns, name));
            let own: Vec<&SliceView> = slices.get(&(ns, name)).into_iter().flatten().collect();
            listed.push((ns, name, svc.into(), own));
        }
        self.update_services(
            listed
                .iter()
                .map(|(ns, name, svc, own)| (*ns, *name, Some(svc), own.clone())),
            changes,
        );
        let gone: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|(ns, name)| !seen.contains(&(ns.as_str(), name.as_str())))
            .cloned()
            .collect();
        for (ns, name) in gone {
            self.update_service(&ns, &name, None, &[], changes);
        }
        for ns in gone_namespaces {
            self.set_namespace(&ns, false, changes);
        }
    }

    /// Brings one service's names to `svc` (None: deleted) and its
    /// EndpointSlices; `changes` receives the names whose entries differ.
    /// An unchanged name keeps its entry and map references.
    /// [`Self::update_service`] for each of `services` (namespace, name,
    /// Service, slices). The names of services new to the table are
    /// collected apart and merged in at the end in one bulk build
    /// (`BTreeMap::append`), when there are enough of them: B-tree nodes
    /// filled by inserts in key order stay about half full, a bulk-built
    /// tree's are full. At 150,000 pods the first lists come in batches of
    /// 500 new services at most (README, "Memory at cluster scale", for
    /// what this bought); a merge costs a walk of the table, so a batch with
    /// few new names is inserted as before.
    pub fn update_services<'a>(
        &mut self,
        services: impl IntoIterator<
            Item = (
                &'a str,
                &'a str,
                Option<&'a ServiceView>,
                Vec<&'a SliceView>,
            ),
        >,
        changes: &mut Vec<Change>,
    ) {
        self.fresh = Some(BTreeMap::new());
        for (ns, name, svc, slices) in services {
            self.update_service(ns, name, svc, &slices, changes);
        }
        let Some(mut fresh) = self.fresh.take() else {
            return;
        };
        if cfg!(test) || fresh.len() * FRESH_BULK_SHARE >= self.names.len() {
            // Keys in `fresh` are in ranges that were empty in `names`.
            self.names.append(&mut fresh);
        } else {
            self.names.extend(fresh);
        }
    }

    pub fn update_service(
        &mut self,
        ns: &str,
        name: &str,
        svc: Option<&ServiceView>,
        slices: &[&SliceView],
        changes: &mut Vec<Change>,
    ) {
        let key = (ns.to_string(), name.to_string());
        let old = self.services.remove(&key);
        let mut b = Builder::default();
        let mut model: Option<Box<SrvModel>> = None;
        let svc_name = svc.and_then(|svc| {
            let svc_name = service_name(name, ns, &self.zone.zone);
            if svc_name.is_none() {
                log::warn!(
                    "service {ns}/{name}: no valid DNS name in zone {}",
                    self.zone.zone
                );
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

        // The old names: the whole range under the old service name.
        let mut old_names: Vec<(Key, NameEntry)> = Vec::new();
        if let Some(old) = &old {
            old_names.extend(self.names.extract_if(old.key.subtree(), |_, _| true));
            if let Some(index) = &old.ptr {
                // Every address with a PTR under the service is in its
                // names (a superset is harmless: only this service's
                // targets go).
                let mut ips: Vec<IpAddr> = old_names
                    .iter()
                    .flat_map(|(_, e)| {
                        let v4 = e.a.iter().map(|&a| IpAddr::V4(a));
                        v4.chain(e.aaaa.iter().map(|&a| IpAddr::V6(a)))
                    })
                    .collect();
                ips.sort_unstable();
                ips.dedup();
                for ip in ips {
                    self.ptr.remove_service(ip, *index);
                }
                self.service_names[*index as usize] = None;
                self.free_indexes.push(*index);
            }
        }

        // A service new to the table whose range is empty: its names go
        // into the bulk-built batch, if one is being collected.
        let fresh = match (&old, &svc_name, self.fresh.is_some()) {
            (None, Some(n), true) => {
                let range = svc_key(n).subtree();
                self.names.range(range).next().is_none()
            }
            _ => false,
        };
        // New names in, unchanged ones keeping their map references.
        let mut old_iter = old_names.into_iter().peekable();
        for (n, mut entry) in b.names {
            while let Some((gone, e)) = old_iter.next_if(|(o, _)| *o < n) {
                changes.push(Change {
                    key: gone,
                    old: Some(e),
                });
            }
            match old_iter.next_if(|(o, _)| *o == n) {
                // A name the syncer could not install is offered again.
                Some((_, e)) if e == entry && e.refs != MapRefs::NONE => entry.refs = e.refs,
                Some((_, e)) => changes.push(Change {
                    key: n.clone(),
                    old: Some(e),
                }),
                None => changes.push(Change {
                    key: n.clone(),
                    old: None,
                }),
            }
            match &mut self.fresh {
                Some(batch) if fresh => batch.insert(n, entry),
                _ => self.names.insert(n, entry),
            };
        }
        for (gone, e) in old_iter {
            changes.push(Change {
                key: gone,
                old: Some(e),
            });
        }

        if let Some(svc_name) = &svc_name {
            let ptr = (!b.ptr.is_empty()).then(|| {
                let index = self.free_indexes.pop().unwrap_or_else(|| {
                    self.service_names.push(None);
                    (self.service_names.len() - 1) as u32
                });
                self.service_names[index as usize] = Some(svc_name.clone());
                for (ip, target) in b.ptr {
                    self.ptr.add(ip, ptr::PtrTarget::new(ip, index, target));
                }
                index
            });
            self.services.insert(
                key,
                ServiceState {
                    key: svc_key(svc_name),
                    ptr,
                    srv: model,
                },
            );
            // CoreDNS answers NODATA for a namespace that exists; one with
            // a service certainly does.
            self.namespace_ref(svc_key(&svc_name.base_name()), 1, changes);
        }
        if let Some(old) = old {
            let ns = old.key.name().base_name();
            self.namespace_ref(svc_key(&ns), -1, changes);
        }
    }

    /// Whether the Namespace `ns` exists, as the source reports it (a
    /// namespace's name also exists while it holds a service).
    pub fn set_namespace(&mut self, ns: &str, exists: bool, changes: &mut Vec<Change>) {
        if exists == self.namespace_objects.contains(ns) {
            return;
        }
        let Some(key) = namespace_name(ns, &self.zone.zone).map(|n| svc_key(&n)) else {
            log::warn!("namespace {ns:?}: no valid DNS name");
            return;
        };
        if exists {
            self.namespace_objects.insert(ns.into());
            self.namespace_ref(key, 1, changes);
        } else {
            self.namespace_objects.remove(ns);
            self.namespace_ref(key, -1, changes);
        }
    }

    /// Whether the source lists every Namespace: then one that is neither
    /// listed nor holds a service does not exist, and its names get
    /// NXDOMAIN (from userspace; the kernel passes namespace-level names).
    pub fn set_namespaces_known(&mut self, known: bool) {
        self.namespaces_known = known;
    }

    /// Whether namespace `ns` exists (as far as the source says).
    pub fn namespace_exists(&self, ns: &str) -> bool {
        namespace_name(ns, &self.zone.zone)
            .map(|n| svc_key(&n))
            .and_then(|k| self.namespaces.get(&k))
            .is_some_and(|&n| n > 0)
    }

    /// The serial the SOA carries from now on (the syncer sets it when the
    /// kernel's SOA changes with it).
    pub fn set_serial(&mut self, serial: u32) {
        self.serial = serial;
    }

    /// Counts a service in or out of its namespace; the namespace name
    /// exists while the count is above zero.
    fn namespace_ref(&mut self, ns_name: Key, delta: i32, changes: &mut Vec<Change>) {
        let count = self.namespaces.entry(ns_name.clone()).or_insert(0);
        let before = *count;
        *count = count.saturating_add_signed(delta);
        match (before, *count) {
            (0, 1) => {
                self.names.insert(ns_name.clone(), NameEntry::default());
                changes.push(Change {
                    key: ns_name,
                    old: None,
                });
            }
            (1, 0) => {
                self.namespaces.remove(&ns_name);
                if let Some(e) = self.names.remove(&ns_name) {
                    changes.push(Change {
                        key: ns_name,
                        old: Some(e),
                    });
                }
            }
            _ => {}
        }
    }

    /// The zone and a name's entry, for the syncer to read the records and
    /// set the references with one lookup.
    pub fn entry_mut(&mut self, key: &Key) -> Option<(&ZoneConfig, &mut NameEntry)> {
        Some((&self.zone, self.names.get_mut(key)?))
    }

    /// The entries after `after` (all of them for `None`), in key order,
    /// with the zone: the syncer's first sync walks the table with it,
    /// without a key copy and a second lookup per name.
    pub fn entries_after_mut(
        &mut self,
        after: Option<&Key>,
    ) -> (
        &ZoneConfig,
        std::collections::btree_map::RangeMut<'_, Key, NameEntry>,
    ) {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        (&self.zone, self.names.range_mut((from, Bound::Unbounded)))
    }

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

/// The service an EndpointSlice belongs to: its namespace and its
/// `kubernetes.io/service-name` label.
pub fn slice_service(slice: &EndpointSlice) -> Option<(&str, &str)> {
    let ns = slice.metadata.namespace.as_deref()?;
    let svc = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((ns, svc.as_str()))
}

/// The key of a name the table built itself.
fn svc_key(name: &Name) -> Key {
    Key::of(name).expect("built from DNS-1123 labels")
}

/// `<ns>.svc.<zone>`
fn namespace_name(ns: &str, zone: &Name) -> Option<Name> {
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

#[cfg(test)]
mod incremental_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{embedded_seed, parse_manifests};
    use std::net::Ipv4Addr;

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

    /// The syncer finds a failed write's table entry from its wire key.
    #[test]
    fn keys_come_back_from_their_wire_form() {
        for n in ["cluster.local.", "Web-0.web.App.svc.cluster.local.", "."] {
            let k = Key::of(&name(n)).unwrap();
            assert_eq!(Key::from_wire(&k.wire()), Some(k));
        }
        assert_eq!(Key::from_wire(&[3, b'a', b'b']), None, "cut short");
        assert_eq!(Key::from_wire(&[1, 0, 0]), None, "a zero byte in a label");
    }

    #[test]
    fn seed_table_has_the_service_and_each_pod_dual_stack() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 42);
        assert_eq!(t.serial(), 42);
        // apex, svc, ns.dns, dns-version, the namespace, the service, three
        // pods, `_tcp` and `_web._tcp`.
        assert_eq!(t.len(), 12);
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
        // the endpoint without a hostname is named after its address
        assert_eq!(
            t.get(&name("169-254-0-1.db.ns.svc.cluster.local."))
                .unwrap()
                .a,
            [v4("169.254.0.1")]
        );
        // fixed names, the namespace, the service, three endpoints (db-0,
        // and the two hostname-less ones: 169.254.0.3 also appears without
        // a hostname in db-2); no ports so no SRV
        assert_eq!(t.len(), 5 + 1 + 1 + 3);
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
        let ext = t.get(&name("ext.ns.svc.cluster.local.")).unwrap();
        assert_eq!(ext.cname(), Some(&name("x.example.")));
        assert!(!ext.kernel_answerable() && ext.a.is_empty() && ext.aaaa.is_empty());
        assert!(t.get(&name("pending.ns.svc.cluster.local.")).is_none());
        // fixed names, the namespace, api, old, ext
        assert_eq!(t.len(), 5 + 1 + 3);
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
        // the bad hostname's address still belongs to the service
        assert_eq!(
            t.get(&name("nginx-headless.test.svc.cluster.local."))
                .unwrap()
                .a
                .len(),
            3
        );
        assert_eq!(t.len(), 12);
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

    fn srv_of(t: &RecordTable, n: &str) -> Vec<(u16, u16, u16, String)> {
        t.srv(&name(n))
            .unwrap()
            .into_iter()
            .map(|r| (r.priority, r.weight, r.port, r.target.to_ascii()))
            .collect()
    }

    #[test]
    fn fixed_names_exist_without_addresses() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1);
        for n in [
            "cluster.local.",
            "svc.cluster.local.",
            "test.svc.cluster.local.",
            "_tcp.nginx-headless.test.svc.cluster.local.",
        ] {
            let e = t.get(&name(n)).unwrap();
            assert!(
                e.a.is_empty() && e.aaaa.is_empty() && e.kernel_answerable(),
                "{n}"
            );
        }
        let v = t.get(&name("dns-version.cluster.local.")).unwrap();
        assert_eq!(v.txt(), Some("1.1.0"));
        assert!(v.kernel_answerable());
        let ns = t.get(&name("ns.dns.cluster.local.")).unwrap();
        assert!(ns.upstream_only() && !ns.kernel_answerable());
        assert!(t.get(&name("dns.cluster.local.")).is_none());
        // CoreDNS answers NODATA for `pod.<zone>`; names below it are the
        // pod modes' (records::pods).
        assert!(t.get(&name("pod.cluster.local.")).is_some());
        // Only names under the zone are iterated (PTR names are apart).
        assert!(t.iter().all(|(n, _)| t.zone().zone.zone_of(&n)));
        assert_eq!(t.ptr_len(), 6);
    }

    #[test]
    fn seed_srv_and_ptr_follow_the_spec_and_coredns() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1);
        // 3 endpoints x 2 families: CoreDNS's weight is floor(100 / 6).
        assert_eq!(
            srv_of(&t, "_web._tcp.nginx-headless.test.svc.cluster.local."),
            [0, 1, 2].map(|i| (
                0,
                16,
                80,
                format!("nginx-{i}.nginx-headless.test.svc.cluster.local.")
            ))
        );
        // No such port: no record (and no name, so NXDOMAIN).
        assert_eq!(
            t.srv(&name("_web._udp.nginx-headless.test.svc.cluster.local.")),
            Some(vec![])
        );
        assert!(
            t.get(&name("_web._udp.nginx-headless.test.svc.cluster.local."))
                .is_none()
        );
        // The bare service name lists every port, as CoreDNS does.
        assert_eq!(
            srv_of(&t, "nginx-headless.test.svc.cluster.local."),
            srv_of(&t, "_web._tcp.nginx-headless.test.svc.cluster.local.")
        );
        let pod0 = vec![name("nginx-0.nginx-headless.test.svc.cluster.local.")];
        assert_eq!(
            t.ptr(&name("10.10.254.169.in-addr.arpa.")),
            Some(pod0.clone())
        );
        assert_eq!(
            t.ptr(&name("10.10.254.169.IN-ADDR.arpa")),
            Some(pod0.clone())
        );
        assert_eq!(
            t.ptr(&Name::from(IpAddr::V6(v6("fd00:10::10")))),
            Some(pod0)
        );
        // Not canonical, partial, or unknown: no PTR.
        assert!(t.ptr(&name("010.10.254.169.in-addr.arpa.")).is_none());
        assert!(t.ptr(&name("10.254.169.in-addr.arpa.")).is_none());
        assert!(t.ptr(&name("9.10.254.169.in-addr.arpa.")).is_none());
    }

    const CLUSTER_IP: &str = "apiVersion: v1
kind: Service
metadata: {name: api, namespace: ns}
spec:
  clusterIP: 169.254.7.1
  clusterIPs: [169.254.7.1, 'fd00::7:1']
  ports:
  - {name: HTTPS, port: 443}
  - {name: dns, port: 53, protocol: UDP}
  - {port: 8080}
";

    #[test]
    fn cluster_ip_srv_targets_the_service_and_ptr_names_it() {
        let t = table(CLUSTER_IP);
        // Two cluster IPs: CoreDNS merges two identical records, weight 50.
        assert_eq!(
            srv_of(&t, "_https._tcp.api.ns.svc.cluster.local."),
            [(0, 50, 443, "api.ns.svc.cluster.local.".to_owned())]
        );
        assert_eq!(
            srv_of(&t, "_dns._udp.api.ns.svc.cluster.local."),
            [(0, 50, 53, "api.ns.svc.cluster.local.".to_owned())]
        );
        assert!(t.get(&name("_udp.api.ns.svc.cluster.local.")).is_some());
        // Unnamed ports have no SRV record.
        assert_eq!(t.iter().filter(|(_, e)| e.has_srv()).count(), 2);
        let api = Some(vec![name("api.ns.svc.cluster.local.")]);
        assert_eq!(t.ptr_targets("169.254.7.1".parse().unwrap()), api);
        assert_eq!(t.ptr_targets("fd00::7:1".parse().unwrap()), api);
    }

    const NAMELESS: &str = "apiVersion: v1
kind: Service
metadata: {name: h, namespace: ns}
spec: {clusterIP: None, ports: [{name: web, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: h-4, namespace: ns, labels: {kubernetes.io/service-name: h}}
addressType: IPv4
ports: [{name: web, port: 8080, protocol: TCP}, {port: 9}]
endpoints:
- addresses: [169.254.10.10]
- addresses: [169.254.10.11]
  hostname: h-1
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: h-6, namespace: ns, labels: {kubernetes.io/service-name: h}}
addressType: IPv6
ports: [{name: web, port: 8080, protocol: TCP}]
endpoints:
- addresses: ['fd00:10::']
- addresses: ['fd00::1:0:0:10']
";

    #[test]
    fn endpoints_without_hostname_are_named_after_their_address() {
        assert_eq!(dashed("169.254.10.10".parse().unwrap()), "169-254-10-10");
        assert_eq!(dashed("fd00:10::10".parse().unwrap()), "fd00-10--10");
        assert_eq!(dashed("fd00:10::".parse().unwrap()), "fd00-10--0");
        let t = table(NAMELESS);
        let get = |n: &str| t.get(&name(n)).unwrap();
        assert_eq!(
            get("169-254-10-10.h.ns.svc.cluster.local.").a,
            [v4("169.254.10.10")]
        );
        assert_eq!(get("h-1.h.ns.svc.cluster.local.").a, [v4("169.254.10.11")]);
        assert_eq!(
            get("fd00-10--0.h.ns.svc.cluster.local.").aaaa,
            [v6("fd00:10::")]
        );
        assert_eq!(
            get("fd00--1-0-0-10.h.ns.svc.cluster.local.").aaaa,
            [v6("fd00::1:0:0:10")]
        );
        // Headless SRV carries the slices' (pod) ports, as CoreDNS's does;
        // four endpoints: weight 25.
        assert_eq!(
            srv_of(&t, "_web._tcp.h.ns.svc.cluster.local."),
            [
                "h-1.h.ns.svc.cluster.local.",
                "169-254-10-10.h.ns.svc.cluster.local.",
                "fd00--1-0-0-10.h.ns.svc.cluster.local.",
                "fd00-10--0.h.ns.svc.cluster.local.",
            ]
            .map(|n| (0, 25, 8080, n.to_owned()))
        );
        assert_eq!(
            t.ptr_targets("169.254.10.10".parse().unwrap()),
            Some(vec![name("169-254-10-10.h.ns.svc.cluster.local.")])
        );
    }

    #[test]
    fn headless_without_ready_endpoints_has_no_name_but_its_namespace_does() {
        let yaml = HEADLESS.replace("ready: true", "ready: false").replace(
            "- addresses: [169.254.0.1]\n",
            "- addresses: [169.254.0.1]\n  conditions: {ready: false}\n",
        );
        let yaml = yaml.split("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db-2").next().unwrap();
        let t = table(yaml);
        assert!(t.get(&name("db.ns.svc.cluster.local.")).is_none());
        assert!(t.is_nxdomain(&name("db.ns.svc.cluster.local.")));
        assert!(t.get(&name("ns.svc.cluster.local.")).is_some());
        assert_eq!(t.ptr_len(), 0);
    }

    #[test]
    fn is_nxdomain_follows_the_kernel_rule() {
        let t = RecordTable::build(&ZoneConfig::default(), &embedded_seed(), 1);
        let nx = |n: &str| t.is_nxdomain(&name(n));
        // The search-list misses of `nginx-0.nginx-headless.test` (ndots:5,
        // search test.svc.cluster.local svc.cluster.local cluster.local):
        // the first is tried before the hit, the others when it is absent.
        assert!(nx("nginx-0.nginx-headless.test.test.svc.cluster.local."));
        assert!(!nx("nginx-0.nginx-headless.test.svc.cluster.local.")); // the hit
        assert!(nx("nginx-0.nginx-headless.test.cluster.local."));
        // `example.com` from namespace test.
        assert!(nx("example.com.test.svc.cluster.local."));
        assert!(nx("example.com.svc.cluster.local."));
        assert!(nx("example.com.cluster.local."));
        assert!(nx("nginx-9.nginx-headless.test.svc.cluster.local."));
        assert!(nx("_web._udp.nginx-headless.test.svc.cluster.local."));
        assert!(nx("dns.cluster.local."));
        // Left alone: pod names, namespace levels, the apex, other zones.
        for n in [
            "169-254-10-10.test.pod.cluster.local.",
            "pod.cluster.local.",
            "other.svc.cluster.local.",
            "svc.cluster.local.",
            "cluster.local.",
            "local.",
            "example.com.",
            "10.10.254.169.in-addr.arpa.",
        ] {
            assert!(!nx(n), "{n}");
        }
        // Existing names never are, in any case.
        for (n, _) in t.iter() {
            assert!(!t.is_nxdomain(&n), "{n}");
            assert!(
                !t.is_nxdomain(&n.to_ascii().to_uppercase().parse().unwrap()),
                "{n}"
            );
        }
    }
}
