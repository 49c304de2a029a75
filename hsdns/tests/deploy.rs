//! deploy/ read as a cluster would: every kustomization built with
//! `kubectl kustomize` (kustomize as `kubectl apply -k` runs it), every
//! object deserialized into its k8s-openapi type, and checked against the
//! daemon itself: RBAC grants exactly what its watchers ask for, probes ask
//! paths and the port its HTTP listener serves, every container argument
//! and every ConfigMap setting is accepted by the real command-line parser.

use std::{collections::BTreeSet, net::SocketAddr, path::Path, process::Command};

use clap::{CommandFactory as _, Parser as _};
use hsdns::{
    cli::{Cli, Command as Sub, RunArgs, UninstallArgs},
    metrics::{PATH_HEALTHZ, PATH_METRICS, PATH_READYZ},
    records::PodMode,
    source::kube::{WatchOptions, watched_resources},
};
use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{ConfigMap, Container, Probe, Service, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use serde::Deserialize as _;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// The objects of one built kustomization.
#[derive(Default)]
struct Built {
    service_accounts: Vec<ServiceAccount>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    config_maps: Vec<ConfigMap>,
    daemon_sets: Vec<DaemonSet>,
    services: Vec<Service>,
    service_monitors: Vec<serde_json::Value>,
}

fn build(dir: &str) -> Built {
    let path = Path::new(DEPLOY).join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!("running `kubectl kustomize` (kubectl is part of this machine's image; install it): {e}")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut b = Built::default();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_yaml::Value::deserialize(doc).unwrap();
        let kind = v["kind"].as_str().unwrap().to_string();
        let api = v["apiVersion"].as_str().unwrap().to_string();
        let ctx = format!("{dir}: {api} {kind}");
        fn de<T: serde::de::DeserializeOwned>(v: serde_yaml::Value, ctx: &str) -> T {
            serde_yaml::from_value(v).unwrap_or_else(|e| panic!("{ctx}: {e}"))
        }
        match (api.as_str(), kind.as_str()) {
            ("v1", "ServiceAccount") => b.service_accounts.push(de(v, &ctx)),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => b.roles.push(de(v, &ctx)),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => b.bindings.push(de(v, &ctx)),
            ("v1", "ConfigMap") => b.config_maps.push(de(v, &ctx)),
            ("apps/v1", "DaemonSet") => b.daemon_sets.push(de(v, &ctx)),
            ("v1", "Service") => b.services.push(de(v, &ctx)),
            ("monitoring.coreos.com/v1", "ServiceMonitor") => b.service_monitors.push(de(v, &ctx)),
            _ => panic!("{ctx}: a kind this test does not check"),
        }
    }
    b
}

fn hsdns_containers(ds: &DaemonSet) -> Vec<&Container> {
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .filter(|c| c.image.as_deref().is_some_and(|i| i.starts_with("hsdns")))
        .collect()
}

/// The settings a container gets from its ConfigMaps, as `--flag value`
/// arguments of subcommand `sub`: for `run`, each key must be some flag's
/// `env` name; other subcommands take the keys they have flags for (the
/// clean-up and the bpffs mount read the daemon's settings, and clap reads
/// only the variables of a subcommand's own flags).
fn settings_as_args(b: &Built, c: &Container, sub: &str) -> Vec<String> {
    let cmd = Cli::command();
    let run = cmd.find_subcommand(sub).unwrap();
    let mut args = Vec::new();
    for from in c.env_from.iter().flatten() {
        let name = &from.config_map_ref.as_ref().unwrap().name;
        let cm = b
            .config_maps
            .iter()
            .find(|m| m.metadata.name.as_ref() == Some(name))
            .unwrap_or_else(|| panic!("envFrom names ConfigMap {name}, which is not deployed"));
        for (key, value) in cm.data.iter().flatten() {
            let Some(arg) = run
                .get_arguments()
                .find(|a| a.get_env().and_then(|e| e.to_str()) == Some(key))
            else {
                assert_ne!(
                    sub, "run",
                    "ConfigMap key {key}: no `hsdns run` flag reads it"
                );
                continue;
            };
            let long = arg.get_long().unwrap();
            if arg.get_action().takes_values() {
                args.push(format!("--{long}={value}"));
            } else {
                // A switch: clap reads its variable as true unless it is
                // empty, 0, false, no or off.
                assert!(
                    ["true", "1", "false", "0", ""].contains(&value.as_str()),
                    "ConfigMap key {key}: {value:?} is not a switch value"
                );
                if value == "true" || value == "1" {
                    args.push(format!("--{long}"));
                }
            }
        }
    }
    args
}

fn config_value(b: &Built, key: &str) -> Option<String> {
    b.config_maps
        .iter()
        .find_map(|m| m.data.as_ref()?.get(key).cloned())
}

/// The command line a container runs, its ConfigMap settings included.
fn argv(b: &Built, c: &Container) -> Vec<String> {
    let mut argv = vec!["hsdns".to_string()];
    argv.extend(c.command.iter().flatten().skip(1).cloned());
    argv.extend(c.args.iter().flatten().cloned());
    if let Some(sub) = argv.get(1).cloned() {
        argv.extend(settings_as_args(b, c, &sub));
    }
    argv
}

/// What the container runs, as the real parser reads it.
fn parsed(b: &Built, c: &Container) -> Sub {
    let argv = argv(b, c);
    match Cli::try_parse_from(&argv) {
        Ok(cli) => cli.cmd,
        Err(e) => panic!("container {} args {argv:?}: {e}", c.name),
    }
}

/// The daemon's `run` arguments in a built kustomization.
fn run_args(b: &Built) -> RunArgs {
    let ds = &b.daemon_sets[0];
    let c = &ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    match parsed(b, c) {
        Sub::Run(args) => *args,
        other => panic!("the daemon's container runs {other:?}"),
    }
}

fn check_args_parse(b: &Built, dir: &str) {
    for ds in &b.daemon_sets {
        for c in hsdns_containers(ds) {
            let argv = argv(b, c);
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("{dir}: container {} args {argv:?}: {e}", c.name);
            }
        }
    }
}

type Triples = BTreeSet<(String, String, String)>;

/// The granted (group, resource, verb) triples: all cluster-wide (a
/// ClusterRole bound by a ClusterRoleBinding), so they cover every
/// namespace too.
fn granted(b: &Built) -> Triples {
    let mut set = BTreeSet::new();
    for role in &b.roles {
        for rule in role.rules.iter().flatten() {
            for g in rule.api_groups.iter().flatten() {
                for r in rule.resources.iter().flatten() {
                    for v in &rule.verbs {
                        set.insert((g.clone(), r.clone(), v.clone()));
                    }
                }
            }
        }
    }
    set
}

/// What the daemon configured by `b` watches: (cluster-wide, in one
/// namespace), each as (group, resource, verb).
fn wanted(b: &Built) -> (Triples, Triples) {
    let args = run_args(b);
    let opts = WatchOptions {
        pods: args.source.pods == PodMode::Verified,
        ..Default::default()
    };
    let (mut all, mut one) = (BTreeSet::new(), BTreeSet::new());
    for w in watched_resources(opts, args.discovered_cluster_dns()) {
        for v in w.verbs {
            let t = (w.group.to_string(), w.resource.to_string(), v.to_string());
            match w.namespace {
                None => all.insert(t),
                Some(_) => one.insert(t),
            };
        }
    }
    (all, one)
}

fn check_rbac(b: &Built, dir: &str) {
    let (all, one) = wanted(b);
    assert!(
        !one.is_empty(),
        "{dir}: the daemon follows the cluster DNS Service (namespaced watches)"
    );
    // Exactly the cluster-wide watches, granted cluster-wide: nothing more.
    let granted = granted(b);
    assert_eq!(granted, all, "{dir}: RBAC is what the watchers use");
    // The namespaced ones (the cluster DNS Service and its slices) are
    // covered by those grants; a namespaced Role would otherwise be needed.
    let missing: Vec<_> = one.difference(&granted).collect();
    assert!(
        missing.is_empty(),
        "{dir}: the cluster DNS watches need {missing:?}"
    );
    let ds = &b.daemon_sets[0];
    let sa = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .service_account_name
        .clone()
        .unwrap();
    assert!(
        b.service_accounts
            .iter()
            .any(|a| a.metadata.name.as_ref() == Some(&sa))
    );
    // Bound to the account the DaemonSet runs as.
    let ds = &b.daemon_sets[0];
    let sa = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .service_account_name
        .clone()
        .unwrap();
    assert!(
        b.service_accounts
            .iter()
            .any(|a| a.metadata.name.as_ref() == Some(&sa))
    );
    let binding = &b.bindings[0];
    assert_eq!(
        binding.role_ref.name,
        b.roles[0].metadata.name.clone().unwrap()
    );
    assert!(
        binding
            .subjects
            .iter()
            .flatten()
            .any(|s| s.kind == "ServiceAccount"
                && s.name == sa
                && s.namespace == ds.metadata.namespace)
    );
}

fn http_get(p: Option<&Probe>) -> (String, String, i32) {
    let h = p
        .and_then(|p| p.http_get.as_ref())
        .expect("an httpGet probe");
    let port = match &h.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => *n,
        other => panic!("a numeric probe port (no named ports on a host-network pod): {other:?}"),
    };
    (
        h.host.clone().unwrap_or_default(),
        h.path.clone().unwrap(),
        port,
    )
}

fn check_daemonset(b: &Built, dir: &str) {
    assert_eq!(b.daemon_sets.len(), 1, "{dir}");
    let ds = &b.daemon_sets[0];
    let spec = ds.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    let ru = spec
        .update_strategy
        .as_ref()
        .unwrap()
        .rolling_update
        .as_ref()
        .unwrap();
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int;
    assert_eq!(
        ru.max_surge,
        Some(Int(1)),
        "{dir}: the new daemon overlaps the old"
    );
    assert_eq!(ru.max_unavailable, Some(Int(0)), "{dir}");
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    assert_eq!(pod.host_network, Some(true));
    assert!(
        pod.tolerations
            .iter()
            .flatten()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
    );
    let c = &pod.containers[0];
    // Host-network container ports are host ports: the surge pod would not
    // fit beside the old one.
    assert!(
        c.ports.is_none(),
        "{dir}: no ports on the host-network container"
    );
    let sc = c.security_context.as_ref().unwrap();
    assert_ne!(sc.privileged, Some(true), "{dir}: not privileged");
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    assert_eq!(
        added,
        BTreeSet::from(["BPF", "NET_ADMIN", "PERFMON", "NET_BIND_SERVICE"]),
        "{dir}"
    );
    // bpffs from the host, with mount propagation.
    let m = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/sys/fs/bpf")
        .unwrap();
    assert_eq!(m.mount_propagation.as_deref(), Some("HostToContainer"));
    let vol = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == m.name)
        .unwrap();
    assert_eq!(vol.host_path.as_ref().unwrap().path, "/sys/fs/bpf");
    // The daemon pins under that mount, on the host's bpffs.
    let pin_dir = run_args(b).pin_dir;
    assert!(
        pin_dir.starts_with(&m.mount_path) && pin_dir != Path::new(&m.mount_path),
        "{dir}: --pin-dir {} is below the bpffs mount",
        pin_dir.display()
    );
    // The host's bpffs is made sure of by an init container, the only
    // privileged one: Bidirectional propagation (so the host sees the
    // mount) on the same volume, running `hsdns mount-bpffs` for the
    // daemon's own pin directory.
    let inits: Vec<&Container> = pod.init_containers.iter().flatten().collect();
    let [init] = &inits[..] else {
        panic!("{dir}: one init container, the bpffs mount")
    };
    let Sub::MountBpffs { pin_dir: init_pins } = parsed(b, init) else {
        panic!("{dir}: the init container runs mount-bpffs")
    };
    assert_eq!(init_pins, pin_dir, "{dir}: the daemon's pin directory");
    assert_eq!(
        init.security_context.as_ref().and_then(|s| s.privileged),
        Some(true),
        "{dir}: Bidirectional propagation needs a privileged container"
    );
    let im = init
        .volume_mounts
        .iter()
        .flatten()
        .find(|im| im.name == m.name)
        .expect("the init container mounts the bpffs volume");
    assert_eq!(im.mount_path, m.mount_path);
    assert_eq!(im.mount_propagation.as_deref(), Some("Bidirectional"));
    // Memory from the measurement at 150,000 pods (README): under 128 MiB.
    let mem = |q: &std::collections::BTreeMap<
        String,
        k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    >| q["memory"].0.clone();
    let res = c.resources.as_ref().unwrap();
    assert_eq!(mem(res.requests.as_ref().unwrap()), "128Mi");
    assert_eq!(mem(res.limits.as_ref().unwrap()), "256Mi");

    // Probes: the daemon's own paths, on the port and address of its HTTP
    // listener as configured.
    let metrics: SocketAddr = config_value(b, "HSDNS_METRICS_ADDR")
        .expect("a metrics address")
        .parse()
        .unwrap();
    for (probe, path) in [
        (c.startup_probe.as_ref(), PATH_HEALTHZ),
        (c.liveness_probe.as_ref(), PATH_HEALTHZ),
        (c.readiness_probe.as_ref(), PATH_READYZ),
    ] {
        let (host, p, port) = http_get(probe);
        assert_eq!(p, path, "{dir}");
        assert_eq!(port, i32::from(metrics.port()), "{dir}");
        assert!(
            metrics.ip().is_unspecified() || host == metrics.ip().to_string(),
            "{dir}: probe host {host:?} is where the listener is ({metrics})"
        );
    }
}

#[test]
fn the_default_install() {
    let b = build(".");
    check_daemonset(&b, "deploy");
    check_rbac(&b, "deploy");
    check_args_parse(&b, "deploy");
    assert!(b.services.is_empty() && b.service_monitors.is_empty());
    // Every object in kube-system.
    assert_eq!(
        b.daemon_sets[0].metadata.namespace.as_deref(),
        Some("kube-system")
    );
    assert_eq!(
        b.config_maps[0].metadata.namespace.as_deref(),
        Some("kube-system")
    );
}

#[test]
fn the_pods_verified_overlay_adds_pods_to_rbac_and_the_setting() {
    let b = build("overlays/pods-verified");
    assert_eq!(config_value(&b, "HSDNS_PODS").as_deref(), Some("verified"));
    assert!(granted(&b).contains(&(String::new(), "pods".into(), "watch".into())));
    check_daemonset(&b, "pods-verified");
    check_rbac(&b, "pods-verified");
    check_args_parse(&b, "pods-verified");
}

#[test]
fn the_metrics_overlay_scrapes_the_daemon() {
    let b = build("overlays/metrics");
    check_daemonset(&b, "metrics");
    check_rbac(&b, "metrics");
    check_args_parse(&b, "metrics");
    let metrics: SocketAddr = config_value(&b, "HSDNS_METRICS_ADDR")
        .unwrap()
        .parse()
        .unwrap();
    let ds = &b.daemon_sets[0];
    let pod_labels = ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let [svc] = &b.services[..] else {
        panic!("one Service")
    };
    let spec = svc.spec.as_ref().unwrap();
    for (k, v) in spec.selector.iter().flatten() {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "the Service selects the daemon's pods"
        );
    }
    let port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .unwrap();
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int;
    assert_eq!(port.target_port, Some(Int(i32::from(metrics.port()))));
    let [sm] = &b.service_monitors[..] else {
        panic!("one ServiceMonitor")
    };
    let svc_labels = svc.metadata.labels.clone().unwrap();
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            svc_labels.get(k).map(String::as_str),
            v.as_str(),
            "the ServiceMonitor selects the Service"
        );
    }
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["port"], "metrics");
    assert_eq!(ep["path"], PATH_METRICS);
}

#[test]
fn the_uninstall_daemonset_runs_a_real_command() {
    let b = build("uninstall");
    assert!(b.roles.is_empty(), "needs no API access");
    check_args_parse(&b, "uninstall");
    let ds = &b.daemon_sets[0];
    let c = hsdns_containers(ds);
    let Sub::Uninstall(u) = parsed(&b, c[0]) else {
        panic!("the clean-up runs hsdns uninstall")
    };
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.host_network,
        Some(true),
        "the dummy interface is in the host namespace"
    );
    // It removes exactly what the installed daemon left: the same pin
    // directory, interface and addresses, from the same settings.
    let run = run_args(&build("."));
    let UninstallArgs {
        pin_dir,
        local_interface,
        dns_addrs,
        no_local_interface,
    } = u;
    assert_eq!(pin_dir, run.pin_dir);
    assert_eq!(local_interface, run.local_interface);
    assert_eq!(dns_addrs, run.dns_addrs);
    assert_eq!(no_local_interface, run.no_local_interface);
    // ... on the host's bpffs, where the daemon pinned it.
    let m = c[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| pin_dir.starts_with(&m.mount_path))
        .expect("the pin directory is mounted in");
    let vol = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == m.name)
        .unwrap();
    assert_eq!(
        vol.host_path.as_ref().unwrap().path,
        m.mount_path,
        "the host's own path"
    );
    // Its ConfigMap is its own: deleting the clean-up never takes the
    // daemon's settings away.
    let installed = build(".");
    assert_ne!(
        b.config_maps[0].metadata.name,
        installed.config_maps[0].metadata.name
    );
    assert_eq!(
        b.config_maps[0].data, installed.config_maps[0].data,
        "the daemon's settings, whatever they are"
    );
    assert!(
        c[0].env_from
            .iter()
            .flatten()
            .any(|e| e
                .config_map_ref
                .as_ref()
                .is_some_and(|r| Some(&r.name) == b.config_maps[0].metadata.name.as_ref())),
        "read by the clean-up"
    );
}

#[test]
fn a_setting_no_flag_reads_is_caught() {
    // The check above is real: a misspelt key fails it.
    let mut b = build(".");
    b.config_maps[0]
        .data
        .get_or_insert_with(Default::default)
        .insert("HSDNS_NO_SUCH_FLAG".into(), "1".into());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_args_parse(&b, "x")));
    assert!(r.is_err());
    let mut b = build(".");
    b.config_maps[0]
        .data
        .get_or_insert_with(Default::default)
        .insert("HSDNS_TTL".into(), "five".into());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_args_parse(&b, "x")));
    assert!(r.is_err());
}
