//! hsdns: a node-local DNS responder for Kubernetes whose answers for cluster
//! names come from an XDP program. Modules follow the data flow:
//! `source` (manifests, later the API) -> `records` (the record table) ->
//! `dns` (wire encoding, userspace resolver) -> `maps` (sync into BPF maps) ->
//! `loader` (load, attach, pin) -> `lifecycle` (what outlives a daemon: pins,
//! links, adoption, upgrades) -> `daemon` (wiring, signals); `cli` parses;
//! `hook` picks tc or XDP per interface.
pub mod btf_char;
pub mod cli;
pub mod cni;
pub mod daemon;
pub mod dns;
pub mod frame;
pub mod frontend;
pub mod heap;
pub mod hook;
pub mod http;
pub mod lifecycle;
pub mod links;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod query;
pub mod records;
pub mod server;
pub mod source;
pub mod stats;
