//! The incremental table: every name, kept equal to the spec's function
//! of the current objects one service at a time. A service's names are one
//! contiguous key range, so an update takes the old range out, merges the
//! new names in, and reports each name whose entry differs ([`Change`]):
//! that diff is all the syncer writes to the kernel, so it must be exact
//! (the incremental = full build proptest in `tests/incremental.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use hickory_proto::rr::Name;

use super::spec::{namespace_name, service_records, slice_service, svc_key, zone_names};
use super::srv::SrvModel;
use super::{Key, MapRefs, NameEntry, ServiceView, SliceView, TableOptions, ZoneConfig, pods, ptr};
use crate::k8s::Objects;

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
    pub(super) zone: ZoneConfig,
    pub(super) serial: u32,
    /// Keys are lowercase FQDNs; `Name`'s ordering ignores case, so lookups
    /// with a query's mixed-case name (0x20 encoding) find them directly.
    pub(super) names: BTreeMap<Key, NameEntry>,
    /// During [`Self::update_services`]: the names of services new to the
    /// table, merged into `names` in one bulk build at its end (see there).
    /// Empty outside it.
    fresh: Option<BTreeMap<Key, NameEntry>>,
    /// What each service with a valid name contributed besides its names.
    pub(super) services: HashMap<ServiceKey, ServiceState>,
    /// Service names the PTR targets are relative to, by index; a freed
    /// index is reused.
    pub(super) service_names: Vec<Option<Name>>,
    free_indexes: Vec<u32>,
    /// Address to PTR targets, in no order ([`Self::ptr_targets`] sorts);
    /// compact, see `ptr.rs`.
    pub(super) ptr: ptr::PtrIndex,
    /// Services (and the Namespace object, when known) per namespace
    /// name (`<ns>.svc.<zone>`): the name exists while one does.
    namespaces: HashMap<Key, u32>,
    /// Namespace objects the source reported.
    namespace_objects: HashSet<Box<str>>,
    /// Whether the source lists Namespaces: then a namespace without an
    /// object and without services does not exist (CoreDNS: NXDOMAIN).
    pub(super) namespaces_known: bool,
    /// Pod addresses by namespace, for `PodMode::Verified`.
    pub(super) pods: pods::PodIndex,
    pub(super) opts: TableOptions,
    /// Whether the table holds every object of its source (false while
    /// the live source's first lists are still coming in).
    complete: bool,
}

/// The table the userspace server reads and the daemon updates in place.
pub type SharedTable = Arc<RwLock<RecordTable>>;

/// A service by namespace and name.
pub type ServiceKey = (String, String);

#[derive(Clone, Debug)]
pub(super) struct ServiceState {
    /// `<svc>.<ns>.svc.<zone>`: every name of the service is at or under it.
    pub(super) key: Key,
    /// Index into `service_names`, when PTR records point under this
    /// service. Their addresses are not kept: they are all addresses of
    /// the service's own names, which an update takes out anyway.
    ptr: Option<u32>,
    /// What its SRV records (and `_<port>._<proto>` addresses) are
    /// computed from; None when it has none.
    pub(super) srv: Option<Box<SrvModel>>,
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
        let names = zone_names(&zone.zone);
        RecordTable {
            zone,
            serial,
            names,
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
        let (svc_name, b, model) = service_records(&self.zone.zone, ns, name, svc, slices);

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
}
