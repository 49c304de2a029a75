//! hsdns: a node-local DNS responder for Kubernetes whose answers for cluster
//! names come from an eBPF program (XDP, or tc on pod veths). Modules follow
//! the data flow: `source` (manifests, or the API server through watches) ->
//! `records` (the record table) -> `dns` (wire encoding, userspace resolver)
//! -> `maps` (sync into BPF maps) -> `loader` (load, attach, pin) ->
//! `lifecycle` (what outlives a daemon: pins, links, adoption, upgrades) ->
//! `daemon` (`hsdns run`: one task each to attach, sync and serve, wired
//! together with signals, readiness and shutdown). Beside the flow: `server`
//! (the userspace DNS server), `metrics` and `http` (what probes and
//! Prometheus read), `links` and `hook` (which interfaces, tc or XDP),
//! `cli` (the command line), `query` and `stats` (asking a running daemon).
pub mod btf_char;
pub mod cli;
pub mod cni;
pub mod daemon;
pub mod dns;
pub mod frame;
pub mod heap;
pub mod hook;
pub mod http;
pub mod k8s;
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
