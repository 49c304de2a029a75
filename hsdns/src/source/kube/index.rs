//! The live source's index: the objects by the service they belong to,
//! which services changed since the consumer last took them, and what the
//! (re)lists say is gone. See the parent module for why an index of its
//! own rather than reflector stores.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::{
    core::v1::{Namespace, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::runtime::watcher;

use super::{ServiceObjects, Update, WatchOptions};
use crate::records::{ServiceKey, ServiceView, SliceView, slice_service};

/// At most this many services go out in one update. A first list that
/// piles up while the program loads would otherwise be one update of the
/// whole cluster, and its list of changed names alone (110,000 at 150,000
/// pods) cost the daemon 9 MiB of peak RSS.
const BATCH_MAX: usize = 500;

/// The objects by service, and which of the services changed since the
/// consumer last took them. Objects are kept as the views the record table
/// reads (see `records::view` for why), converted as they arrive.
#[derive(Default)]
pub(super) struct Index {
    services: HashMap<ServiceKey, Arc<ServiceView>>,
    /// (namespace, slice name) -> its service and the slice.
    slices: HashMap<(String, String), (Option<ServiceKey>, Arc<SliceView>)>,
    /// Slice names by service: a few each, so a Vec (a set's node would be
    /// 270 bytes a service).
    by_service: HashMap<ServiceKey, Vec<String>>,
    dirty: BTreeSet<ServiceKey>,
    /// Objects seen since the current (re)list began, per kind: at the
    /// list's end, every object not among them is gone.
    listing_services: Option<HashSet<ServiceKey>>,
    listing_slices: Option<HashSet<(String, String)>>,
    listed_services: bool,
    listed_slices: bool,
    /// Endpoints without a hostname named after their pod.
    pod_names: bool,
    namespaces: HashSet<String>,
    dirty_namespaces: std::collections::BTreeMap<String, bool>,
    listing_namespaces: Option<HashSet<String>>,
    listed_namespaces: bool,
    /// Pods (verified mode): (namespace, name) -> addresses.
    pods: HashMap<(String, String), Vec<std::net::IpAddr>>,
    dirty_pods: Vec<(String, std::net::IpAddr, bool)>,
    listing_pods: Option<HashSet<(String, String)>>,
    /// True when Pods are not watched.
    listed_pods: bool,
}

fn key_of(
    m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<(String, String)> {
    Some((m.namespace.clone()?, m.name.clone()?))
}

impl Index {
    /// An empty index for what `opts` watches.
    pub(super) fn new(opts: WatchOptions) -> Index {
        Index {
            pod_names: opts.endpoint_pod_names,
            listed_pods: !opts.pods,
            ..Index::default()
        }
    }

    fn put_service(&mut self, svc: Service) {
        let Some(key) = key_of(&svc.metadata) else {
            return;
        };
        if let Some(seen) = &mut self.listing_services {
            seen.insert(key.clone());
        }
        self.services
            .insert(key.clone(), Arc::new(ServiceView::from(&svc)));
        self.dirty.insert(key);
    }

    fn remove_service(&mut self, key: &ServiceKey) {
        if self.services.remove(key).is_some() {
            self.dirty.insert(key.clone());
        }
    }

    fn put_slice(&mut self, slice: EndpointSlice) {
        let Some(key) = key_of(&slice.metadata) else {
            return;
        };
        if let Some(seen) = &mut self.listing_slices {
            seen.insert(key.clone());
        }
        let owner = slice_service(&slice).map(|(ns, s)| (ns.to_string(), s.to_string()));
        // A slice relabelled to another service leaves the old one.
        self.remove_slice(&key);
        if let Some(owner) = &owner {
            self.by_service
                .entry(owner.clone())
                .or_default()
                // Not there: remove_slice just took it out.
                .push(key.1.clone());
            self.dirty.insert(owner.clone());
        }
        let view = SliceView::new(&slice, self.pod_names);
        self.slices.insert(key, (owner, Arc::new(view)));
    }

    fn remove_slice(&mut self, key: &(String, String)) {
        let Some((Some(owner), _)) = self.slices.remove(key) else {
            return;
        };
        if let Some(set) = self.by_service.get_mut(&owner) {
            set.retain(|name| *name != key.1);
            if set.is_empty() {
                self.by_service.remove(&owner);
            }
        }
        self.dirty.insert(owner);
    }

    fn service_event(&mut self, ev: watcher::Event<Service>) {
        match ev {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => self.put_service(s),
            watcher::Event::Delete(s) => {
                if let Some(key) = key_of(&s.metadata) {
                    self.remove_service(&key);
                }
            }
            watcher::Event::Init => self.listing_services = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let seen = self.listing_services.take().unwrap_or_default();
                let gone: Vec<ServiceKey> = self
                    .services
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    self.remove_service(&k);
                }
                self.listed_services = true;
            }
        }
    }

    fn slice_event(&mut self, ev: watcher::Event<EndpointSlice>) {
        match ev {
            watcher::Event::Apply(s) | watcher::Event::InitApply(s) => self.put_slice(s),
            watcher::Event::Delete(s) => {
                if let Some(key) = key_of(&s.metadata) {
                    self.remove_slice(&key);
                }
            }
            watcher::Event::Init => self.listing_slices = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let seen = self.listing_slices.take().unwrap_or_default();
                let gone: Vec<(String, String)> = self
                    .slices
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    self.remove_slice(&k);
                }
                self.listed_slices = true;
            }
        }
    }

    fn put_namespace(&mut self, name: String) {
        if let Some(seen) = &mut self.listing_namespaces {
            seen.insert(name.clone());
        }
        if self.namespaces.insert(name.clone()) {
            self.dirty_namespaces.insert(name, true);
        }
    }

    fn remove_namespace(&mut self, name: &str) {
        if self.namespaces.remove(name) {
            self.dirty_namespaces.insert(name.to_string(), false);
        }
    }

    fn namespace_event(&mut self, ev: watcher::Event<Namespace>) {
        match ev {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                if let Some(name) = n.metadata.name {
                    self.put_namespace(name);
                }
            }
            watcher::Event::Delete(n) => {
                if let Some(name) = n.metadata.name {
                    self.remove_namespace(&name);
                }
            }
            watcher::Event::Init => self.listing_namespaces = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let seen = self.listing_namespaces.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .namespaces
                    .iter()
                    .filter(|n| !seen.contains(*n))
                    .cloned()
                    .collect();
                for n in gone {
                    self.remove_namespace(&n);
                }
                self.listed_namespaces = true;
            }
        }
    }

    /// A pod's addresses now (none once it is gone or not yet scheduled).
    fn set_pod(&mut self, key: (String, String), ips: Vec<std::net::IpAddr>) {
        let old = if ips.is_empty() {
            self.pods.remove(&key).unwrap_or_default()
        } else {
            self.pods
                .insert(key.clone(), ips.clone())
                .unwrap_or_default()
        };
        for ip in old.iter().filter(|ip| !ips.contains(ip)) {
            self.dirty_pods.push((key.0.clone(), *ip, false));
        }
        for ip in ips.iter().filter(|ip| !old.contains(ip)) {
            self.dirty_pods.push((key.0.clone(), *ip, true));
        }
    }

    fn pod_event(&mut self, ev: watcher::Event<Pod>) {
        match ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let Some(key) = key_of(&p.metadata) else {
                    return;
                };
                if let Some(seen) = &mut self.listing_pods {
                    seen.insert(key.clone());
                }
                let status = p.status.as_ref();
                let mut ips: Vec<std::net::IpAddr> = status
                    .and_then(|s| s.pod_ips.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.ip.parse().ok())
                    .chain(
                        status
                            .and_then(|s| s.pod_ip.as_deref())
                            .and_then(|i| i.parse().ok()),
                    )
                    .collect();
                ips.sort_unstable();
                ips.dedup();
                self.set_pod(key, ips);
            }
            watcher::Event::Delete(p) => {
                if let Some(key) = key_of(&p.metadata) {
                    self.set_pod(key, Vec::new());
                }
            }
            watcher::Event::Init => self.listing_pods = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let seen = self.listing_pods.take().unwrap_or_default();
                let gone: Vec<(String, String)> = self
                    .pods
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    self.set_pod(k, Vec::new());
                }
                self.listed_pods = true;
            }
        }
    }

    pub(super) fn listed(&self) -> bool {
        self.listed_services && self.listed_slices && self.listed_namespaces && self.listed_pods
    }

    pub(super) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty() || !self.dirty_namespaces.is_empty() || !self.dirty_pods.is_empty()
    }

    /// What changed since the last call: namespaces first (a service's
    /// namespace name is counted, not replaced, so order does not matter
    /// for the table, but a reader sees namespaces early), then pods, then
    /// services.
    pub(super) fn take_update(&mut self) -> Option<Update> {
        if !self.dirty_namespaces.is_empty() {
            let list = std::mem::take(&mut self.dirty_namespaces)
                .into_iter()
                .collect();
            return Some(Update::Namespaces(list));
        }
        if !self.dirty_pods.is_empty() {
            return Some(Update::Pods(std::mem::take(&mut self.dirty_pods)));
        }
        (!self.dirty.is_empty()).then(|| Update::Changed(self.take_dirty()))
    }

    /// Dirty services with their current objects, at most [`BATCH_MAX`].
    fn take_dirty(&mut self) -> Vec<ServiceObjects> {
        let rest = match self.dirty.iter().nth(BATCH_MAX) {
            Some(first_left) => {
                let first_left = first_left.clone();
                self.dirty.split_off(&first_left)
            }
            None => BTreeSet::new(),
        };
        std::mem::replace(&mut self.dirty, rest)
            .into_iter()
            .map(|key| {
                let slices = self
                    .by_service
                    .get(&key)
                    .into_iter()
                    .flatten()
                    .filter_map(|name| {
                        let k = (key.0.clone(), name.clone());
                        Some(self.slices.get(&k)?.1.clone())
                    })
                    .collect();
                ServiceObjects {
                    service: self.services.get(&key).cloned(),
                    namespace: key.0,
                    name: key.1,
                    slices,
                }
            })
            .collect()
    }
}

// Both arrive one at a time and are taken apart at once: boxing the
// larger would cost an allocation per event for nothing.
#[expect(
    clippy::large_enum_variant,
    reason = "one event at a time, taken apart at once (above)"
)]
pub(super) enum Ev {
    Service(watcher::Event<Service>),
    Slice(watcher::Event<EndpointSlice>),
    Namespace(watcher::Event<Namespace>),
    Pod(watcher::Event<Pod>),
}

impl Index {
    pub(super) fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Service(e) => self.service_event(e),
            Ev::Slice(e) => self.slice_event(e),
            Ev::Namespace(e) => self.namespace_event(e),
            Ev::Pod(e) => self.pod_event(e),
        }
    }
}

#[cfg(test)]
mod tests;
