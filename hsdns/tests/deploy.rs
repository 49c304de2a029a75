//! deploy/ read as a cluster would: every kustomization built with
//! `kubectl kustomize` (kustomize as `kubectl apply -k` runs it), every
//! object deserialized into its k8s-openapi type, and checked against the
//! daemon itself: RBAC grants exactly what its watchers ask for, probes ask
//! paths and the port its HTTP listener serves, every container argument
//! and every ConfigMap setting is accepted by the real command-line parser.

use std::{collections::BTreeSet, net::SocketAddr, path::Path, process::Command};

use clap::{CommandFactory as _, Parser as _};
use hsdns::{
    cli::Cli,
    metrics::{PATH_HEALTHZ, PATH_METRICS, PATH_READYZ},
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
/// arguments: each key must be some flag's `env` name.
fn settings_as_args(b: &Built, c: &Container) -> Vec<String> {
    let cmd = Cli::command();
    let run = cmd.find_subcommand("run").unwrap();
    let mut args = Vec::new();
    for from in c.env_from.iter().flatten() {
        let name = &from.config_map_ref.as_ref().unwrap().name;
        let cm = b
            .config_maps
            .iter()
            .find(|m| m.metadata.name.as_ref() == Some(name))
            .unwrap_or_else(|| panic!("envFrom names ConfigMap {name}, which is not deployed"));
        for (key, value) in cm.data.iter().flatten() {
            let arg = run
                .get_arguments()
                .find(|a| a.get_env().and_then(|e| e.to_str()) == Some(key))
                .unwrap_or_else(|| panic!("ConfigMap key {key}: no `hsdns run` flag reads it"));
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

fn check_args_parse(b: &Built, dir: &str) {
    for ds in &b.daemon_sets {
        for c in hsdns_containers(ds) {
            let mut argv = vec!["hsdns".to_string()];
            argv.extend(c.command.iter().flatten().skip(1).cloned());
            argv.extend(c.args.iter().flatten().cloned());
            if argv.get(1).map(String::as_str) == Some("run") {
                argv.extend(settings_as_args(b, c));
            }
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("{dir}: container {} args {argv:?}: {e}", c.name);
            }
        }
    }
}

/// The granted (group, resource, verb) triples.
fn granted(b: &Built) -> BTreeSet<(String, String, String)> {
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

fn wanted(opts: WatchOptions) -> BTreeSet<(String, String, String)> {
    watched_resources(opts)
        .into_iter()
        .flat_map(|(g, r, verbs)| verbs.map(|v| (g.to_string(), r.to_string(), v.to_string())))
        .collect()
}

fn check_rbac(b: &Built, dir: &str) {
    let verified = config_value(b, "HSDNS_PODS").as_deref() == Some("verified");
    let opts = WatchOptions {
        pods: verified,
        ..Default::default()
    };
    assert_eq!(
        granted(b),
        wanted(opts),
        "{dir}: RBAC is what the watchers use"
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
    assert_eq!(c[0].args.as_ref().unwrap()[0], "uninstall");
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.host_network,
        Some(true),
        "the dummy interface is in the host namespace"
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
