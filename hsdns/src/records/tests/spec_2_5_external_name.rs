//! Spec section 2.5, "Records for External Name Services":
//!
//! > Given a Service named `<service>` in Namespace `<ns>` with ExternalName
//! > `<extname>`, a `CNAME` record named `<service>.<ns>.svc.<zone>`
//! > pointing to `<extname>` must exist.
//! > `<service>.<ns>.svc.<zone>. <ttl> IN CNAME <extname>.`
//!
//! The kernel never sends a CNAME: such a name is answered in userspace,
//! for every question type. As in CoreDNS, an `externalName` that is an IP
//! address (or no domain name at all) gives the service no name.

use super::{name, table};

#[test]
fn external_name_is_a_cname_answered_in_userspace_only() {
    let t = table(
        "apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: ns}\n\
         spec: {type: ExternalName, externalName: Www.Example.com, ports: [{name: web, port: 80}]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: by-ip, namespace: ns}\n\
         spec: {type: ExternalName, externalName: 192.0.2.53}\n",
    );
    let ext = t.get(&name("EXT.ns.svc.cluster.local.")).unwrap();
    // The target as given, made fully qualified.
    assert!(ext.cname().unwrap().eq_case(&name("Www.Example.com.")));
    assert!(!ext.kernel_answerable() && !ext.has_srv());
    assert!(ext.a.is_empty() && ext.aaaa.is_empty() && ext.txt().is_none());
    // No SRV names for its ports, no PTR: the CNAME is all it has.
    assert!(t.get(&name("_tcp.ext.ns.svc.cluster.local.")).is_none());
    assert!(t.iter().all(|(_, e)| !e.has_srv()));
    assert_eq!(t.ptr_len(), 0);
    // An IP address is not an external name: no name, NXDOMAIN.
    assert!(t.get(&name("by-ip.ns.svc.cluster.local.")).is_none());
    assert!(t.is_nxdomain(&name("by-ip.ns.svc.cluster.local.")));
}
