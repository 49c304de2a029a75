//! Objects that never went through `source` validation (the API server
//! does not check everything, and a watch can deliver anything): a bad
//! one is left out, never a reason to fail the whole table.

use super::name;
use crate::records::{RecordTable, ZoneConfig};
use crate::source::embedded_seed;

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
