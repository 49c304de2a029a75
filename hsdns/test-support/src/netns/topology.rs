//! Pods on veths behind a node namespace (Calico style), and a further
//! namespace behind the node for an upstream DNS server.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Netns, ip, pod4, pod6, require_root};

/// A pod: a namespace with eth0 whose peer sits in the node namespace.
pub struct Pod {
    pub ns: Netns,
    pub index: usize,
    /// The veth end in the node namespace, where XDP runs.
    pub host_if: String,
}

impl Pod {
    pub fn v4(&self) -> Ipv4Addr {
        pod4(self.index)
    }
    pub fn v6(&self) -> Ipv6Addr {
        pod6(self.index)
    }
}

/// A node namespace with pods. The node-local DNS addresses are on the
/// node's loopback (the daemon uses a dummy interface where the kernel has
/// them; this one does not).
pub struct Topology {
    pub pods: Vec<Pod>,
    pub node: Netns,
}

impl Topology {
    pub fn new(pods: usize) -> Self {
        require_root();
        let node = Netns::new("node");
        ip(&[
            "-n",
            &node.name,
            "addr",
            "add",
            "169.254.20.10/32",
            "dev",
            "lo",
        ]);
        ip(&[
            "-n",
            &node.name,
            "addr",
            "add",
            "fd00:20::10/128",
            "dev",
            "lo",
            "nodad",
        ]);
        let mut t = Self {
            pods: Vec::new(),
            node,
        };
        for _ in 0..pods {
            t.add_pod();
        }
        t
    }

    /// Adds a pod (also after the daemon started).
    pub fn add_pod(&mut self) -> &Pod {
        let index = self.pods.len();
        let ns = Netns::new(&format!("pod{index}-"));
        let host_if = format!("hsv{index}");
        let n = self.node.name.clone();
        ip(&[
            "-n", &n, "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns",
            &ns.name,
        ]);
        ip(&["-n", &n, "addr", "add", "169.254.10.1/32", "dev", &host_if]);
        ip(&[
            "-n",
            &n,
            "addr",
            "add",
            "fd00:10::1/128",
            "dev",
            &host_if,
            "nodad",
        ]);
        ip(&["-n", &n, "link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &n,
            "route",
            "add",
            &format!("{}/32", pod4(index)),
            "dev",
            &host_if,
        ]);
        ip(&[
            "-n",
            &n,
            "-6",
            "route",
            "add",
            &format!("{}/128", pod6(index)),
            "dev",
            &host_if,
        ]);
        let p = ns.name.clone();
        ip(&[
            "-n",
            &p,
            "addr",
            "add",
            &format!("{}/32", pod4(index)),
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n",
            &p,
            "addr",
            "add",
            &format!("{}/128", pod6(index)),
            "dev",
            "eth0",
            "nodad",
        ]);
        ip(&["-n", &p, "link", "set", "eth0", "up"]);
        ip(&["-n", &p, "route", "add", "169.254.10.1", "dev", "eth0"]);
        ip(&[
            "-n",
            &p,
            "route",
            "add",
            "default",
            "via",
            "169.254.10.1",
            "dev",
            "eth0",
        ]);
        ip(&["-n", &p, "-6", "route", "add", "fd00:10::1", "dev", "eth0"]);
        ip(&[
            "-n",
            &p,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:10::1",
            "dev",
            "eth0",
        ]);
        self.pods.push(Pod { ns, index, host_if });
        self.pods.last().expect("just pushed")
    }
}

impl Topology {
    /// A further namespace behind the node (the upstream DNS server's
    /// host): `eth0` 169.254.30.53, reached from the node over veth `hsup0`.
    pub fn add_upstream(&self) -> Netns {
        let ns = Netns::new("up");
        let n = self.node.name.clone();
        ip(&[
            "-n", &n, "link", "add", "hsup0", "type", "veth", "peer", "name", "eth0", "netns",
            &ns.name,
        ]);
        ip(&["-n", &n, "addr", "add", "169.254.30.1/32", "dev", "hsup0"]);
        ip(&["-n", &n, "link", "set", "hsup0", "up"]);
        ip(&["-n", &n, "route", "add", "169.254.30.53/32", "dev", "hsup0"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            "169.254.30.53/32",
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns.name, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &ns.name,
            "route",
            "add",
            "169.254.30.1",
            "dev",
            "eth0",
        ]);
        ip(&[
            "-n",
            &ns.name,
            "route",
            "add",
            "default",
            "via",
            "169.254.30.1",
            "dev",
            "eth0",
        ]);
        ns
    }
}
