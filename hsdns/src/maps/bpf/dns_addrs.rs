//! The addresses the kernel answers for (`dns_addrs`): a slot array the
//! program reads per packet, so each slot changes in an order in which a
//! reader never sees half an address.

use std::net::IpAddr;

use anyhow::{Context as _, Result, bail};
use hsdns_common::{DNS_ADDR_SLOTS, DnsAddr};

use super::BpfMaps;

impl BpfMaps {
    /// Puts `addrs` into `dns_addrs`; with `exact`, first removes the ones
    /// an earlier daemon answered for that are no longer wanted. More
    /// addresses than the map has slots is an error, before any write.
    pub fn set_dns_addrs(&mut self, addrs: &[IpAddr], exact: bool) -> Result<()> {
        let mut keys: Vec<DnsAddr> = Vec::new();
        for k in addrs.iter().map(|a| dns_addr(*a)) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        if keys.len() > DNS_ADDR_SLOTS as usize {
            bail!(
                "{} DNS addresses configured (--dns-addr and --intercept-addr), but the kernel \
                 answers for at most {DNS_ADDR_SLOTS}",
                keys.len()
            );
        }
        let slots = self.dns_slots()?;
        let others = slots
            .iter()
            .filter(|s| s.family != 0 && !keys.contains(s))
            .count();
        // Without `exact`, an earlier daemon's addresses stay, unless they
        // would leave a configured one without a slot: configured first.
        if exact || keys.len() + others > DNS_ADDR_SLOTS as usize {
            for (i, slot) in slots.into_iter().enumerate() {
                if slot.family != 0 && !keys.contains(&slot) {
                    self.clear_dns_slot(i as u32, slot)?;
                }
            }
        }
        for addr in addrs {
            self.add_dns_addr(*addr)?;
        }
        Ok(())
    }

    /// The addresses in `dns_addrs`, in slot order.
    pub fn dns_addrs(&self) -> Result<Vec<IpAddr>> {
        Ok(self
            .dns_slots()?
            .into_iter()
            .filter_map(|a| match a.family {
                4 => Some(IpAddr::from([a.addr[0], a.addr[1], a.addr[2], a.addr[3]])),
                6 => Some(IpAddr::from(a.addr)),
                _ => None,
            })
            .collect())
    }

    fn dns_slots(&self) -> Result<Vec<DnsAddr>> {
        (0..DNS_ADDR_SLOTS)
            .map(|i| self.dns_addrs.get(&i, 0).context("reading dns_addrs"))
            .collect()
    }

    /// Writes `a` into the empty slot `i`: the address first, under family
    /// 0, then the family (see `DnsAddr`: a reader never sees half of it).
    fn put_dns_slot(&mut self, i: u32, a: DnsAddr) -> Result<()> {
        self.dns_addrs.set(i, DnsAddr { family: 0, ..a }, 0)?;
        self.dns_addrs.set(i, a, 0)?;
        Ok(())
    }

    /// Empties slot `i`, which holds `a`: the family first, then the address.
    fn clear_dns_slot(&mut self, i: u32, a: DnsAddr) -> Result<()> {
        self.dns_addrs
            .set(i, DnsAddr { family: 0, ..a }, 0)
            .context("removing a DNS address")?;
        self.dns_addrs
            .set(i, DnsAddr::EMPTY, 0)
            .context("removing a DNS address")?;
        Ok(())
    }

    /// Adds `addr` to `dns_addrs` (nothing when it is there already). Fails
    /// when every slot is taken: queries to `addr` then go up to userspace.
    pub fn add_dns_addr(&mut self, addr: IpAddr) -> Result<()> {
        let key = dns_addr(addr);
        let slots = self.dns_slots()?;
        if slots.contains(&key) {
            return Ok(());
        }
        let Some(free) = slots.iter().position(|s| s.family == 0) else {
            bail!(
                "adding DNS address {addr}: the kernel answers for at most {DNS_ADDR_SLOTS} \
                 addresses and all are taken; queries to {addr} go up to userspace"
            );
        };
        self.put_dns_slot(free as u32, key)
            .with_context(|| format!("adding DNS address {addr}"))
    }

    pub fn remove_dns_addr(&mut self, addr: IpAddr) -> Result<()> {
        let key = dns_addr(addr);
        for (i, slot) in self.dns_slots()?.into_iter().enumerate() {
            if slot == key {
                self.clear_dns_slot(i as u32, slot)
                    .with_context(|| format!("removing DNS address {addr}"))?;
            }
        }
        Ok(())
    }
}

fn dns_addr(addr: IpAddr) -> DnsAddr {
    match addr {
        IpAddr::V4(a) => DnsAddr::v4(a.octets()),
        IpAddr::V6(a) => DnsAddr::v6(a.octets()),
    }
}
