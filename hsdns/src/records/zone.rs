//! The zone the table answers for and how it answers beyond the spec:
//! configuration, read once at start. Also what the zone says about itself:
//! its SOA (the authority of every negative answer, which the kernel
//! precomputes per question length, so its timers live here, once) and the
//! schema version `dns-version.<zone>` announces.

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::SOA;

use super::PodMode;

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
    /// Fully qualified and lowercase
    /// ([`RecordTable::build`](super::RecordTable::build) normalises it),
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
