//! The record table: a pure function from Kubernetes objects (plus zone
//! configuration) to the names the responder answers, following the
//! Kubernetes DNS-Based Service Discovery specification (schema 1.1.0).
//! It is the one source of truth: the kernel's maps and the userspace
//! server both answer from it, so their replies agree byte for byte.
//!
//! Data flow, a module per step:
//!
//! ```text
//! Service, EndpointSlice, Namespace objects (crate::source)
//!   view     what the table reads of them (ServiceView, SliceView)
//!   spec     the names and records the spec gives one service: pure
//!   table    RecordTable: merges one service's names, reports a Change
//!            per name whose entry differs
//!   lookup   what the answer paths ask: get, NXDOMAIN, PTR
//!   pods,    answers computed per question instead of stored
//!   srv      (pod names, SRV records)
//! crate::maps::Syncer writes each Change into the kernel's maps;
//! crate::dns builds answers from entries
//! ```
//!
//! The types they share: `zone` (ZoneConfig, TableOptions), `key` (Key:
//! canonical order as bytes), `entry` (NameEntry, MapRefs), `target` (how
//! an endpoint is named under its service), and the compact stores `addrs`
//! and `ptr`.
//!
//! The table is kept up to date one service at a time
//! ([`RecordTable::update_service`]): a service's names are exactly the
//! names under `<svc>.<ns>.svc.<zone>`, one contiguous range of the
//! canonically ordered table, so a change to one service costs the size of
//! that service, not of the cluster. The manifest loader and the API watcher
//! both feed that one function ([`RecordTable::build`] and
//! [`RecordTable::set_objects`] are loops over it), so the table never
//! depends on where the objects came from.
//!
//! The tests are in `tests/`, one file per section of the specification.

mod addrs;
mod entry;
mod key;
mod lookup;
mod pods;
mod ptr;
mod spec;
mod srv;
mod table;
mod target;
mod view;
mod zone;
pub use addrs::V4Addrs;
pub use entry::{MapRefs, NameEntry};
pub use key::Key;
pub use lookup::NXDOMAIN_MIN_LABELS_BEFORE_SVC;
pub use pods::{PodAnswer, PodMode};
pub use spec::slice_service;
pub use table::{Change, RecordTable, ServiceKey, SharedTable};
pub use target::dashed;
pub use view::{EndpointAddr, NamedPort, ServiceKind, ServiceView, SliceView};
pub use zone::{
    DNS_SCHEMA_VERSION, DNS_VERSION_TTL, SOA_EXPIRE, SOA_REFRESH, SOA_RETRY, TableOptions,
    ZoneConfig,
};

#[cfg(test)]
mod tests;
