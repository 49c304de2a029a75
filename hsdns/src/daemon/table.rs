//! The record table as the command line describes it: the zone
//! (`--zone`/`--ttl`), CoreDNS's options, the manifest source, and the SOA
//! serial a table starts with. `hsdns run` and `hsdns records` both read it
//! here.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::Name;

use crate::{
    cli::SourceArgs,
    records::{PodMode, RecordTable, TableOptions, ZoneConfig},
    source,
};

/// The zone of `--zone`/`--ttl`.
pub fn zone_config(args: &SourceArgs) -> Result<ZoneConfig> {
    let mut zone = Name::from_ascii(&args.zone)
        .with_context(|| format!("--zone {:?} is not a domain name", args.zone))?
        .to_lowercase();
    zone.set_fqdn(true);
    if zone.is_root() {
        bail!("--zone must not be the root");
    }
    Ok(ZoneConfig {
        zone,
        ttl: args.ttl,
    })
}

/// The SOA serial: now, in unix seconds, as CoreDNS reports the time of its
/// last change. At start, then after each change of the table (the syncer
/// switches the kernel's SOA to a fresh bank, so no answer is torn).
pub(super) fn serial() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1)
}

/// CoreDNS's options from the command line.
pub fn table_options(args: &SourceArgs, no_nxdomain: bool) -> TableOptions {
    TableOptions {
        pods: args.pods,
        endpoint_pod_names: args.endpoint_pod_names,
        nxdomain: !no_nxdomain,
    }
}

/// Reads the manifest source and builds the record table.
pub fn build_table(args: &SourceArgs, opts: &TableOptions) -> Result<RecordTable> {
    build_table_at(args, opts, serial())
}

pub(super) fn build_table_at(
    args: &SourceArgs,
    opts: &TableOptions,
    serial: u32,
) -> Result<RecordTable> {
    if args.manifests.is_empty() {
        bail!("no record source: give --manifests, --kubeconfig or --kube");
    }
    if args.pods == PodMode::Verified {
        bail!("--pods verified watches Pods: it needs --kubeconfig or --kube");
    }
    let objects = source::load_paths(&args.manifests)?;
    Ok(RecordTable::build_with(
        &zone_config(args)?,
        opts,
        &objects,
        serial,
    ))
}

/// `hsdns records`: the A and AAAA records the manifests produce.
pub fn print_records(args: &SourceArgs) -> Result<()> {
    if args.kube || args.kubeconfig.is_some() {
        bail!("hsdns records reads manifests (--manifests); ask a running daemon with hsdns query");
    }
    let table = build_table(args, &table_options(args, false))?;
    let ttl = table.zone().ttl;
    for (name, entry) in table.iter() {
        for a in &entry.a {
            println!("{name} {ttl} IN A {a}");
        }
        for a in &entry.aaaa {
            println!("{name} {ttl} IN AAAA {a}");
        }
    }
    Ok(())
}
