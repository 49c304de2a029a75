//! Never dark: a pod queries every 5 ms (200 ms timeout) while the daemon
//! is stopped and restarted, upgraded to maps of another layout, killed,
//! restarted with its API server unreachable, and restarted while a record
//! changes. No query may go unanswered or be answered wrongly; a changed
//! record is answered with its old or new value, never NXDOMAIN. Nothing
//! but the kernel answers here (no upstream, so no userspace server): a
//! query the kernel passes up is a query unanswered.
//!
//! Also: the heartbeat bounds after a crash, bpffs mounted by the daemon on
//! a node without one (the demo too), a surge update handing the maps over,
//! `hsdns uninstall`, attach failures, readiness.
//!
//! Needs root: run through `cargo xtask test`.
//!
//! The tests run in parallel; those that measure time, count lost queries
//! or read figures of the whole process hold `serial::exclusive()` and run
//! alone, the others `serial::shared()`.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use hsdns_test_support::apiserver::{ApiServer, Kind};
use hsdns_test_support::netns::*;
use hsdns_test_support::serial;
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_hsdns"))
}

/// What a probed name must get: one of these address sets, or NXDOMAIN.
#[derive(Clone, Debug)]
enum Expect {
    OneOf(Vec<BTreeSet<Ipv4Addr>>),
    NxDomain,
}

fn addrs(a: &[[u8; 4]]) -> BTreeSet<Ipv4Addr> {
    a.iter().map(|o| Ipv4Addr::from(*o)).collect()
}

/// What the prober saw.
#[derive(Debug, Default)]
struct Report {
    sent: usize,
    unanswered: Vec<String>,
    wrong: Vec<String>,
    max_latency: Duration,
}

impl Report {
    fn assert_clean(&self, what: &str, logs: &str) {
        eprintln!(
            "{what}: {} queries every 5 ms, {} unanswered, {} wrong, slowest reply {:.1} ms",
            self.sent,
            self.unanswered.len(),
            self.wrong.len(),
            self.max_latency.as_secs_f64() * 1000.0
        );
        assert!(
            self.unanswered.is_empty() && self.wrong.is_empty(),
            "{what}: {} of {} unanswered {:?}, {} wrong {:?}\n{logs}",
            self.unanswered.len(),
            self.sent,
            &self.unanswered[..self.unanswered.len().min(5)],
            self.wrong.len(),
            &self.wrong[..self.wrong.len().min(5)],
        );
        assert!(self.sent > 100, "{what}: only {} queries", self.sent);
    }
}

/// A pod asking the node-local address, in turn, for each name every 5 ms,
/// each with a 200 ms timeout, until stopped (at most 90 s).
struct Prober {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Report>,
}

impl Prober {
    fn start(pod: &Netns, probes: Vec<(&str, Expect)>) -> Self {
        let probes: Vec<(Name, Expect)> = probes
            .into_iter()
            .map(|(n, e)| (Name::from_ascii(n).unwrap(), e))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let path = pod.path();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = thread::spawn(move || {
            enter(&path);
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let server = SocketAddr::from((NODE_LOCAL4, 53));
            let mut r = Report::default();
            let mut buf = [0u8; 2048];
            let started = Instant::now();
            tx.send(()).unwrap();
            for i in 0usize.. {
                if stop2.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(90) {
                    break;
                }
                let tick = Instant::now();
                let (name, expect) = &probes[i % probes.len()];
                let id = i as u16;
                let mut q = Message::query();
                q.metadata.id = id;
                q.metadata.recursion_desired = true;
                q.add_query(Query::query(name.clone(), RecordType::A));
                sock.send_to(&q.to_vec().unwrap(), server).unwrap();
                r.sent += 1;
                let reply = loop {
                    match sock.recv(&mut buf) {
                        Ok(n) => match Message::from_vec(&buf[..n]) {
                            Ok(m) if m.metadata.id == id => break Some(m),
                            _ => continue,
                        },
                        Err(_) => break None,
                    }
                };
                let at = format!("{:.3} s", started.elapsed().as_secs_f64());
                match reply {
                    None => r.unanswered.push(format!("{name} at {at}")),
                    Some(m) => {
                        r.max_latency = r.max_latency.max(tick.elapsed());
                        let got: BTreeSet<Ipv4Addr> = m
                            .answers
                            .iter()
                            .filter_map(|a| match a.data {
                                RData::A(a) => Some(a.0),
                                _ => None,
                            })
                            .collect();
                        let rc = m.metadata.response_code;
                        let ok = match expect {
                            Expect::OneOf(sets) => {
                                rc == ResponseCode::NoError && sets.contains(&got)
                            }
                            Expect::NxDomain => rc == ResponseCode::NXDomain,
                        };
                        if !ok {
                            r.wrong.push(format!("{name} at {at}: {rc} with {got:?}"));
                        }
                    }
                }
                if let Some(rest) = Duration::from_millis(5).checked_sub(tick.elapsed()) {
                    thread::sleep(rest);
                }
            }
            r
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        Self { stop, handle }
    }

    fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("prober")
    }
}

const POD0: &str = "nginx-0.nginx-headless.test.svc.cluster.local.";
const SVC: &str = "nginx-headless.test.svc.cluster.local.";
/// What an ndots:5 search list asks first: answered NXDOMAIN by the kernel.
const MISS: &str = "nginx-0.nginx-headless.test.test.svc.cluster.local.";

/// The seed's names, as the kernel answers them.
fn seed_probes() -> Vec<(&'static str, Expect)> {
    vec![
        (POD0, Expect::OneOf(vec![addrs(&[[169, 254, 10, 10]])])),
        (
            SVC,
            Expect::OneOf(vec![addrs(&[
                [169, 254, 10, 10],
                [169, 254, 10, 11],
                [169, 254, 10, 12],
            ])]),
        ),
        (MISS, Expect::NxDomain),
    ]
}

/// The link pinned for `dev`: its hook (`xdp` or `tcx`, from the link
/// type bpftool reports) and its program's id.
fn pinned_link(pins: &Path, dev: &str) -> Option<(&'static str, u64)> {
    let out = Command::new("bpftool")
        .args(["-j", "link", "show", "pinned"])
        .arg(pins.join("links").join(dev))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    // This bpftool names XDP links and numbers tcx ones
    // (BPF_LINK_TYPE_XDP 6, BPF_LINK_TYPE_TCX 11).
    let hook = match &v["type"] {
        Value::String(t) if t == "xdp" => "xdp",
        Value::String(t) if t == "tcx" => "tcx",
        Value::Number(n) if n.as_u64() == Some(6) => "xdp",
        Value::Number(n) if n.as_u64() == Some(11) => "tcx",
        _ => "other",
    };
    Some((hook, v["prog_id"].as_u64()?))
}

/// The id of the program pinned as `name` (`prog_xdp`, `prog_tc`).
fn pinned_prog_id(pins: &Path, name: &str) -> u64 {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show", "pinned"])
        .arg(pins.join(name))
        .output()
        .unwrap();
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Whether `dev` in `ns` has an XDP program, as `ip link` shows it.
fn has_xdp(ns: &Netns, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", &ns.name, "-d", "link", "show", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Term,
    Kill,
}

/// Starts a daemon, probes, stops it (SIGTERM or SIGKILL), waits `pause`
/// (a container restart is not instant), starts the next one with
/// `second` args on the same pins, waits until it has synced, probes a
/// little longer. Returns the report, the second daemon, both logs.
fn restart(
    first: &[&str],
    second: &[&str],
    how: Stop,
    pause: Duration,
) -> (PinDir, Topology, Daemon, Report, String) {
    restart_with(first, second, how, pause, |_| {})
}

/// [`restart`] with `setup` run on the topology before the first daemon.
fn restart_with(
    first: &[&str],
    second: &[&str],
    how: Stop,
    pause: Duration,
    setup: impl FnOnce(&Topology),
) -> (PinDir, Topology, Daemon, Report, String) {
    let topo = Topology::new(1);
    setup(&topo);
    let pins = PinDir::new("restart");
    let a = Daemon::start_with_pins(bin(), &topo.node, first, pins.path.clone());
    let prober = Prober::start(&topo.pods[0].ns, seed_probes());
    thread::sleep(Duration::from_millis(300));
    let log_a = a.log();
    let t0 = Instant::now();
    match how {
        Stop::Term => assert!(a.stop().success()),
        Stop::Kill => a.kill(),
    }
    thread::sleep(pause);
    let mut b = Daemon::spawn(bin(), &topo.node, second, pins.path.clone());
    b.wait_ready(Duration::from_secs(60));
    wait_for("the second daemon's sync", Duration::from_secs(30), || {
        b.log().contains("ready (")
    });
    eprintln!(
        "stop to the next daemon ready: {} ms (of which {} ms with no daemon at all)",
        t0.elapsed().as_millis(),
        pause.as_millis()
    );
    thread::sleep(Duration::from_millis(300));
    let report = prober.finish();
    let logs = format!(
        "--- first daemon:\n{log_a}\n--- second daemon:\n{}",
        b.log()
    );
    (pins, topo, b, report, logs)
}

#[test]
fn a_sigterm_and_restart_of_the_same_build_leaves_no_query_unanswered() {
    let _serial = serial::exclusive();
    let args = ["--dns-addr", "169.254.20.10"];
    let (pins, _topo, b, report, logs) = restart(&args, &args, Stop::Term, Duration::from_secs(1));
    report.assert_clean("SIGTERM, 1 s without a daemon, restart", &logs);
    let log = b.log();
    assert!(log.contains("adopting the maps"), "{log}");
    assert!(
        log.contains("BPF_LINK_UPDATE"),
        "the link kept, its program replaced: {log}"
    );
    // Nothing changed: every name of the table taken over as it was,
    // nothing written.
    let names: usize = log
        .split("record table: ")
        .nth(1)
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .expect("the table's size in the log");
    assert!(names >= 11, "the seed's names: {log}");
    assert!(
        log.contains(&format!("0 answers written, {names} names taken over")),
        "{log}"
    );
    // The veth's tcx link, now with the new daemon's tc program.
    assert_eq!(
        pinned_link(&pins.path, "hsv0"),
        Some(("tcx", pinned_prog_id(&pins.path, "prog_tc")))
    );
}

#[test]
fn a_restart_in_xdp_mode_replaces_the_xdp_links_program_in_place() {
    let _serial = serial::exclusive();
    let args = ["--dns-addr", "169.254.20.10", "--attach-mode", "xdp"];
    let (pins, topo, b, report, logs) = restart(&args, &args, Stop::Term, Duration::from_secs(1));
    report.assert_clean("XDP mode: SIGTERM, 1 s without a daemon, restart", &logs);
    let log = b.log();
    assert!(log.contains("adopting the maps"), "{log}");
    assert!(log.contains("BPF_LINK_UPDATE"), "{log}");
    assert_eq!(
        pinned_link(&pins.path, "hsv0"),
        Some(("xdp", pinned_prog_id(&pins.path, "prog_xdp")))
    );
    assert!(has_xdp(&topo.node, "hsv0"));
}

/// An older build attached XDP to the veths and had no tc program; this
/// build puts tc there. The upgrade (blue/green: an older build's maps
/// have another layout) keeps the old XDP program answering while the new
/// maps fill, then attaches the tcx link first and lets the XDP link go.
/// `HSDNS_OLD_BIN` runs a real older build first (e.g. main before the tc
/// entry point); without it, this build in XDP mode with its tc program's
/// pin removed and other map capacities stands in for one.
#[test]
fn an_older_builds_xdp_link_moves_to_tc_without_a_gap() {
    let _serial = serial::exclusive();
    let topo = Topology::new(1);
    let pins = PinDir::new("migrate");
    let old_bin = std::env::var_os("HSDNS_OLD_BIN").map(PathBuf::from);
    let first: &[&str] = if old_bin.is_some() {
        &["--dns-addr", "169.254.20.10"]
    } else {
        &["--dns-addr", "169.254.20.10", "--attach-mode", "xdp"]
    };
    let a = Daemon::start_with_pins(
        old_bin.as_deref().unwrap_or(bin()),
        &topo.node,
        first,
        pins.path.clone(),
    );
    assert_eq!(pinned_link(&pins.path, "hsv0").map(|l| l.0), Some("xdp"));
    let prober = Prober::start(&topo.pods[0].ns, seed_probes());
    thread::sleep(Duration::from_millis(300));
    let log_a = a.log();
    assert!(a.stop().success());
    if old_bin.is_none() {
        std::fs::remove_file(pins.path.join("prog_tc")).unwrap();
    }
    let second = [
        "--dns-addr",
        "169.254.20.10",
        "--name-capacity",
        "32768,8192,512",
    ];
    let mut b = Daemon::spawn(bin(), &topo.node, &second, pins.path.clone());
    b.wait_ready(Duration::from_secs(60));
    wait_for("the upgrade", Duration::from_secs(30), || {
        b.log().contains("upgrade done")
    });
    thread::sleep(Duration::from_millis(300));
    let report = prober.finish();
    let logs = format!("--- older build:\n{log_a}\n--- this build:\n{}", b.log());
    report.assert_clean("an older build's XDP link moved to tc", &logs);
    assert!(b.log().contains("moved from XDP to tcx"), "{logs}");
    assert_eq!(
        pinned_link(&pins.path, "hsv0"),
        Some(("tcx", pinned_prog_id(&pins.path, "prog_tc"))),
        "{logs}"
    );
    wait_for("the XDP link to go", Duration::from_secs(5), || {
        !has_xdp(&topo.node, "hsv0")
    });
    assert!(!pins.path.join("next").exists());
}

/// Also both hooks: the veth's tcx link and a bridge's XDP link (a
/// bridge is not a veth: XDP, in skb mode) switch to the new programs.
#[test]
fn an_upgrade_to_another_map_layout_switches_without_a_gap() {
    let _serial = serial::exclusive();
    let first = [
        "--dns-addr",
        "169.254.20.10",
        "--include",
        "hsv*",
        "--include",
        "hsbr*",
    ];
    // New name capacities: maps the old ones cannot be.
    let second = [
        "--dns-addr",
        "169.254.20.10",
        "--include",
        "hsv*",
        "--include",
        "hsbr*",
        "--name-capacity",
        "32768,8192,512",
    ];
    let bridge = |t: &Topology| ip(&["-n", &t.node.name, "link", "add", "hsbr0", "type", "bridge"]);
    let (pins, topo, b, report, logs) = restart_with(
        &first,
        &second,
        Stop::Term,
        Duration::from_millis(200),
        bridge,
    );
    report.assert_clean(
        "SIGTERM, restart with new map capacities (blue/green)",
        &logs,
    );
    let log = b.log();
    assert!(log.contains("do not fit this daemon"), "{log}");
    assert!(log.contains("upgrade done"), "{log}");
    // The new maps are the pinned ones now; nothing of the upgrade is left.
    let spec = hsdns::loader::pinned_map_spec(&pins.path.join("names_64")).unwrap();
    assert_eq!(spec.max_entries, 32768);
    assert!(!pins.path.join("next").exists());
    // Each link now runs the new program of its hook.
    assert_eq!(
        pinned_link(&pins.path, "hsv0"),
        Some(("tcx", pinned_prog_id(&pins.path, "prog_tc"))),
        "{logs}"
    );
    assert_eq!(
        pinned_link(&pins.path, "hsbr0"),
        Some(("xdp", pinned_prog_id(&pins.path, "prog_xdp"))),
        "{logs}"
    );
    assert!(has_xdp(&topo.node, "hsbr0") && !has_xdp(&topo.node, "hsv0"));
}

#[test]
fn a_sigkill_and_restart_leaves_no_query_unanswered() {
    let _serial = serial::exclusive();
    let args = ["--dns-addr", "169.254.20.10"];
    let (_pins, _topo, b, report, logs) = restart(&args, &args, Stop::Kill, Duration::from_secs(1));
    report.assert_clean("SIGKILL, 1 s without a daemon, restart", &logs);
    assert!(b.log().contains("adopting the maps"), "{}", b.log());
}

/// A headless service `web` in `test`: web-0..2 at 169.254.40.1..3 (web-0
/// at `web0` instead).
fn web_slice(web0: Ipv4Addr) -> Value {
    let ips = [
        web0,
        Ipv4Addr::new(169, 254, 40, 2),
        Ipv4Addr::new(169, 254, 40, 3),
    ];
    let eps: Vec<Value> = ips
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"addresses": [a.to_string()], "hostname": format!("web-{i}"), "conditions": {"ready": true}}))
        .collect();
    json!({"kind": "EndpointSlice",
           "metadata": {"name": "web-abc", "namespace": "test", "labels": {"kubernetes.io/service-name": "web"}},
           "addressType": "IPv4", "endpoints": eps})
}

const WEB0: &str = "web-0.web.test.svc.cluster.local.";
const WEB: &str = "web.test.svc.cluster.local.";
const WEB_MISS: &str = "web-0.web.test.test.svc.cluster.local.";
const OLD: Ipv4Addr = Ipv4Addr::new(169, 254, 40, 1);
const NEW: Ipv4Addr = Ipv4Addr::new(169, 254, 40, 9);

/// The API server on the node namespace's loopback, holding `web`.
fn api(topo: &Topology) -> (ApiServer, tokio::runtime::Runtime, PathBuf) {
    let path = topo.node.path();
    let (api, rt) = thread::spawn(move || {
        enter(&path);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let api = rt.block_on(ApiServer::start());
        (api, rt)
    })
    .join()
    .unwrap();
    api.apply(
        Kind::Service,
        json!({"kind": "Service", "metadata": {"name": "web", "namespace": "test"},
               "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}),
    );
    api.apply(Kind::EndpointSlice, web_slice(OLD));
    let kc = std::env::temp_dir().join(format!(
        "hsdns-lifecycle-kc-{}-{}",
        std::process::id(),
        topo.node.name
    ));
    api.kubeconfig(&kc);
    (api, rt, kc)
}

fn web_probes(web0: &[Ipv4Addr]) -> Vec<(&'static str, Expect)> {
    let set = |w: Ipv4Addr| -> BTreeSet<Ipv4Addr> {
        [
            w,
            Ipv4Addr::new(169, 254, 40, 2),
            Ipv4Addr::new(169, 254, 40, 3),
        ]
        .into_iter()
        .collect()
    };
    vec![
        (
            WEB0,
            Expect::OneOf(web0.iter().map(|w| [*w].into_iter().collect()).collect()),
        ),
        (WEB, Expect::OneOf(web0.iter().map(|w| set(*w)).collect())),
        (WEB_MISS, Expect::NxDomain),
    ]
}

#[test]
fn a_restart_while_the_api_server_is_unreachable_keeps_answering() {
    let _serial = serial::exclusive();
    let topo = Topology::new(1);
    let (api, rt, kc) = api(&topo);
    let pins = PinDir::new("apidown");
    let args = [
        "--dns-addr",
        "169.254.20.10",
        "--kubeconfig",
        kc.to_str().unwrap(),
    ];
    let a = Daemon::start_with_pins(bin(), &topo.node, &args, pins.path.clone());
    let prober = Prober::start(&topo.pods[0].ns, web_probes(&[OLD]));
    thread::sleep(Duration::from_millis(300));
    let log_a = a.log();
    api.set_down(true);
    assert!(a.stop().success());
    let mut b = Daemon::spawn(bin(), &topo.node, &args, pins.path.clone());
    // Ready while the API is unreachable: the kernel answers from the
    // adopted maps.
    b.wait_ready(Duration::from_secs(30));
    thread::sleep(Duration::from_secs(2));
    assert!(
        !b.log().contains("first lists synced"),
        "the API server was unreachable: {}",
        b.log()
    );
    api.set_down(false);
    wait_for(
        "the lists once the API is back",
        Duration::from_secs(60),
        || b.log().contains("first lists synced"),
    );
    thread::sleep(Duration::from_millis(300));
    let report = prober.finish();
    let logs = format!("--- first:\n{log_a}\n--- second:\n{}", b.log());
    drop(b);
    drop(rt);
    let _ = std::fs::remove_file(&kc);
    report.assert_clean("restart with the API server unreachable", &logs);
    assert!(
        logs.contains("the kernel answers from the adopted maps"),
        "{logs}"
    );
}

#[test]
fn a_record_changed_while_no_daemon_runs_is_answered_old_or_new_never_nxdomain() {
    let _serial = serial::exclusive();
    let topo = Topology::new(1);
    let (api, rt, kc) = api(&topo);
    let pins = PinDir::new("change");
    let args = [
        "--dns-addr",
        "169.254.20.10",
        "--kubeconfig",
        kc.to_str().unwrap(),
    ];
    let a = Daemon::start_with_pins(bin(), &topo.node, &args, pins.path.clone());
    let prober = Prober::start(&topo.pods[0].ns, web_probes(&[OLD, NEW]));
    thread::sleep(Duration::from_millis(300));
    let log_a = a.log();
    assert!(a.stop().success());
    // web-0 moves while no daemon runs.
    api.apply(Kind::EndpointSlice, web_slice(NEW));
    let mut b = Daemon::spawn(bin(), &topo.node, &args, pins.path.clone());
    b.wait_ready(Duration::from_secs(60));
    wait_for("the new lists", Duration::from_secs(60), || {
        b.log().contains("first lists synced")
    });
    // The kernel has the new address.
    let pod = &topo.pods[0].ns;
    wait_for(
        "the new address in the kernel",
        Duration::from_secs(10),
        || dig(pod, NODE_LOCAL4.into(), WEB0, "A", &[]).addresses() == vec![NEW],
    );
    let report = prober.finish();
    let logs = format!("--- first:\n{log_a}\n--- second:\n{}", b.log());
    drop(b);
    drop(rt);
    let _ = std::fs::remove_file(&kc);
    report.assert_clean("restart while a record changes", &logs);
}

#[test]
fn a_crashed_daemons_maps_stop_answering_nxdomain_then_everything_at_the_bounds() {
    let _serial = serial::exclusive();
    let topo = Topology::new(1);
    let pins = PinDir::new("stale");
    let a = Daemon::start_with_pins(
        bin(),
        &topo.node,
        &[
            "--dns-addr",
            "169.254.20.10",
            "--stale-nxdomain-after",
            "1s",
            "--stale-pass-after",
            "5s",
        ],
        pins.path.clone(),
    );
    let pod = &topo.pods[0].ns;
    let local = NODE_LOCAL4.into();
    a.kill();
    let killed = Instant::now();
    // Right after the crash: everything still answered.
    assert_eq!(
        dig(pod, local, POD0, "A", &[]).addresses(),
        vec![Ipv4Addr::new(169, 254, 10, 10)]
    );
    assert_eq!(dig(pod, local, MISS, "A", &[]).status, "NXDOMAIN");
    // Past 1 s: the name still answered, the miss passed up (no listener).
    thread::sleep(Duration::from_millis(1500).saturating_sub(killed.elapsed()));
    assert_eq!(
        dig(pod, local, POD0, "A", &["+time=1"]).addresses(),
        vec![Ipv4Addr::new(169, 254, 10, 10)]
    );
    assert_eq!(dig(pod, local, MISS, "A", &["+time=1"]).status, "NO REPLY");
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "too slow to see the first bound"
    );
    // Past 5 s: everything passed up, counted as pass_stale.
    thread::sleep(Duration::from_millis(5500).saturating_sub(killed.elapsed()));
    let before = bpftool_counters(&pins.path.join("counters"));
    assert_eq!(dig(pod, local, POD0, "A", &["+time=1"]).status, "NO REPLY");
    let after = bpftool_counters(&pins.path.join("counters"));
    assert!(after["pass_stale"] > before["pass_stale"], "{after:?}");
    // A new daemon brings it back.
    let _b = Daemon::start_with_pins(
        bin(),
        &topo.node,
        &["--dns-addr", "169.254.20.10"],
        pins.path.clone(),
    );
    assert_eq!(dig(pod, local, MISS, "A", &[]).status, "NXDOMAIN");
}

#[test]
fn a_surge_update_hands_the_maps_over_without_a_gap() {
    let _serial = serial::exclusive();
    let topo = Topology::new(1);
    // The userspace server forwards what the kernel does not answer: both
    // daemons serve it, and the old one hands its listener over on SIGTERM.
    let up = topo.add_upstream();
    let _stub = Stub::start(
        &up,
        &[SocketAddr::new(Ipv4Addr::new(169, 254, 30, 53).into(), 53)],
        &[("example.test", Ipv4Addr::new(169, 254, 99, 53))],
    );
    let pins = PinDir::new("surge");
    let args = ["--dns-addr", "169.254.20.10", "--upstream", "169.254.30.53"];
    let a = Daemon::start_with_pins(bin(), &topo.node, &args, pins.path.clone());
    let mut probes = seed_probes();
    probes.push((
        "example.test.",
        Expect::OneOf(vec![addrs(&[[169, 254, 99, 53]])]),
    ));
    let prober = Prober::start(&topo.pods[0].ns, probes);
    thread::sleep(Duration::from_millis(300));
    // The new one starts while the old one runs, as with maxSurge 1.
    let mut b = Daemon::spawn(bin(), &topo.node, &args, pins.path.clone());
    b.wait_ready(Duration::from_secs(60));
    wait_for("the handover", Duration::from_secs(10), || {
        a.log().contains("handing them over")
    });
    assert!(
        !a.is_ready(),
        "the old one is no longer ready once it handed over"
    );
    thread::sleep(Duration::from_millis(300));
    let log_a = a.log();
    assert!(a.stop().success());
    thread::sleep(Duration::from_millis(500));
    let report = prober.finish();
    let logs = format!("--- old:\n{log_a}\n--- new:\n{}", b.log());
    report.assert_clean(
        "surge update (new daemon before the old one stops, userspace server too)",
        &logs,
    );
    assert!(b.log().contains("handed"), "{}", b.log());
}

/// `c` in a mount namespace of its own with no bpffs at /sys/fs/bpf, as on
/// a fresh node (stdio is the caller's to set on the result).
fn without_bpffs(c: &Command) -> Command {
    let mut u = Command::new("unshare");
    u.args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg("umount -l /sys/fs/bpf 2>/dev/null; exec \"$@\"")
        .arg("sh")
        .arg(c.get_program())
        .args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => u.env(k, v),
            None => u.env_remove(k),
        };
    }
    if let Some(d) = c.get_current_dir() {
        u.current_dir(d);
    }
    u
}

#[test]
fn on_a_node_without_bpffs_the_daemon_mounts_one_and_answers() {
    let _serial = serial::shared();
    let topo = Topology::new(1);
    let pin_dir = PathBuf::from(format!(
        "/sys/fs/bpf/hsdns-test-{}-nobpffs",
        std::process::id()
    ));
    let ready = std::env::temp_dir().join(format!("hsdns-nobpffs-ready-{}", std::process::id()));
    let log = std::env::temp_dir().join(format!("hsdns-nobpffs-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let mut c = topo.node.cmd(bin());
    c.arg("run")
        .args(["--manifests", SEED])
        .args(["--dns-addr", "169.254.20.10", "--pin-dir"])
        .arg(&pin_dir)
        .arg("--ready-file")
        .arg(&ready);
    let mut c = without_bpffs(&c);
    c.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut d = Guarded::spawn(c);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the daemon to be ready", Duration::from_secs(60), || {
        if let Ok(Some(s)) = d.child.try_wait() {
            panic!("hsdns exited ({s}):\n{}", text());
        }
        ready.exists()
    });
    assert!(text().contains("mounted one there"), "{}", text());
    // Answered by the kernel: nothing else listens on the address.
    let got = dig(&topo.pods[0].ns, NODE_LOCAL4.into(), POD0, "A", &[]);
    assert_eq!(
        got.addresses(),
        vec![Ipv4Addr::new(169, 254, 10, 10)],
        "{}",
        got.raw
    );
    // Its bpffs is its own: this mount namespace never saw the pins.
    assert!(!pin_dir.exists());
    drop(d);
    let _ = std::fs::remove_file(&ready);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn the_demo_runs_on_a_node_without_bpffs() {
    let _serial = serial::shared();
    require_root();
    // cargo test builds the examples beside the test binaries.
    let demo = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("examples/demo")))
        .filter(|p| p.exists())
        .expect("the demo example is built by `cargo test` (run the whole suite)");
    let out = without_bpffs(&Command::new(&demo)).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("mounted one there"), "{stdout}");
    assert!(stdout.contains("answered_a: "), "{stdout}");
    assert!(
        stdout.contains("(answered by the kernel from the pinned maps)"),
        "{stdout}"
    );
}

#[test]
fn uninstall_leaves_no_link_pin_or_address_behind() {
    let _serial = serial::shared();
    let topo = Topology::new(1);
    // Both hooks: tcx on the veth, XDP on a bridge.
    ip(&[
        "-n",
        &topo.node.name,
        "link",
        "add",
        "hsbr0",
        "type",
        "bridge",
    ]);
    let pins = PinDir::new("uninstall");
    // An address the daemon puts on lo itself (the harness put .10 there).
    let d = Daemon::start_with_pins(
        bin(),
        &topo.node,
        &[
            "--dns-addr",
            "169.254.20.10",
            "--dns-addr",
            "169.254.20.11",
            "--include",
            "hsv*",
            "--include",
            "hsbr*",
        ],
        pins.path.clone(),
    );
    let links = || {
        (
            pinned_link(&pins.path, "hsv0").map(|l| l.0),
            pinned_link(&pins.path, "hsbr0").map(|l| l.0),
            has_xdp(&topo.node, "hsbr0"),
        )
    };
    let addrs = || {
        let out = Command::new("ip")
            .args(["-n", &topo.node.name, "addr", "show", "dev", "lo"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(links(), (Some("tcx"), Some("xdp"), true));
    // While it runs, uninstall refuses.
    let uninstall = || {
        topo.node
            .cmd(bin())
            .args([
                "uninstall",
                "--dns-addr",
                "169.254.20.10",
                "--dns-addr",
                "169.254.20.11",
                "--pin-dir",
            ])
            .arg(&pins.path)
            .output()
            .unwrap()
    };
    let out = uninstall();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
    let prog_ids: Vec<u64> = ["prog_xdp", "prog_tc"]
        .iter()
        .map(|p| pinned_prog_id(&pins.path, p))
        .collect();
    assert!(d.stop().success());
    // Stopped: everything still in place.
    assert_eq!(links(), (Some("tcx"), Some("xdp"), true));
    assert!(addrs().contains("169.254.20.11/32"));
    assert!(pins.path.join("links/hsv0").exists());
    let out = uninstall();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("removed link"), "{said}");
    assert!(!pins.path.exists(), "no pin left");
    assert!(!addrs().contains("169.254.20.11/32"), "{}", addrs());
    assert!(!addrs().contains("169.254.20.10/32"), "{}", addrs());
    wait_for("the program to leave hsbr0", Duration::from_secs(5), || {
        !has_xdp(&topo.node, "hsbr0")
    });
    assert_eq!(links(), (None, None, false));
    // No link of the program left in the kernel, and the program gone.
    wait_for("the programs to be freed", Duration::from_secs(5), || {
        prog_ids.iter().all(|id| {
            !Command::new("bpftool")
                .args(["prog", "show", "id", &id.to_string()])
                .output()
                .unwrap()
                .status
                .success()
        })
    });
    let out = Command::new("bpftool")
        .args(["-j", "link", "show"])
        .output()
        .unwrap();
    let links: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(
        !links
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| prog_ids.iter().any(|id| l["prog_id"] == *id)),
        "{links}"
    );
    // Once more: nothing to do, no error.
    let out = uninstall();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to remove"));
}

fn metrics(node: &Netns, addr: &'static str) -> String {
    node.run(move || {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    })
}

#[test]
fn an_interface_that_cannot_be_attached_is_a_warning_and_a_metric() {
    let _serial = serial::shared();
    let topo = Topology::new(1);
    let n = topo.node.name.clone();
    // A bridge has no native XDP: in driver mode it cannot be attached.
    ip(&["-n", &n, "link", "add", "hsbr0", "type", "bridge"]);
    let d = Daemon::start(
        bin(),
        &topo.node,
        &[
            "--dns-addr",
            "169.254.20.10",
            "--xdp-mode",
            "driver",
            "--include",
            "hsv*",
            "--include",
            "hsbr*",
            "--interface",
            "hsnone0",
            "--metrics-addr",
            "169.254.20.10:9253",
        ],
    );
    let log = d.log();
    assert!(log.contains("hsbr0: not attached"), "{log}");
    assert!(log.contains("attached to hsv0"), "{log}");
    assert!(
        log.contains("--interface hsnone0: no such interface yet"),
        "{log}"
    );
    // At run time too.
    ip(&["-n", &n, "link", "add", "hsbr1", "type", "bridge"]);
    wait_for("the warning for hsbr1", Duration::from_secs(10), || {
        d.log().contains("hsbr1: not attached")
    });
    let text = metrics(&topo.node, "169.254.20.10:9253");
    for want in [
        "hsdns_attach_failures_total{interface=\"hsbr0\"} 1",
        "hsdns_attach_failures_total{interface=\"hsbr1\"} 1",
        "hsdns_attach_failures_total{interface=\"hsnone0\"} 1",
        "hsdns_attached{interface=\"hsv0\",mode=\"driver\"} 1",
        "hsdns_ready 1",
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
    // An explicit interface that appears later is attached.
    ip(&[
        "-n", &n, "link", "add", "hsnone0", "type", "veth", "peer", "name", "hsnone1",
    ]);
    wait_for("hsnone0 attached", Duration::from_secs(10), || {
        d.log().contains("attached to hsnone0")
    });
    assert!(d.proc.pid() > 0);
}

#[test]
fn a_ready_file_left_by_an_earlier_process_is_not_readiness() {
    let _serial = serial::shared();
    let topo = Topology::new(1);
    let (api, rt, kc) = api(&topo);
    api.set_down(true);
    let pins = PinDir::new("ready");
    let ready = std::env::temp_dir().join(format!("hsdns-stale-ready-{}", std::process::id()));
    std::fs::write(&ready, "ready\n").unwrap();
    let log = std::env::temp_dir().join(format!("hsdns-stale-ready-log-{}", std::process::id()));
    let mut c = topo.node.cmd(bin());
    c.args(["run", "--dns-addr", "169.254.20.10", "--kubeconfig"])
        .arg(&kc)
        .arg("--pin-dir")
        .arg(&pins.path)
        .arg("--ready-file")
        .arg(&ready)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let d = Guarded::spawn(c);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the program attached", Duration::from_secs(60), || {
        text().contains("attached to hsv0")
    });
    // Fresh maps and no lists: not ready, whatever the file said before.
    assert!(!ready.exists(), "{}", text());
    api.set_down(false);
    wait_for("ready", Duration::from_secs(60), || ready.exists());
    drop(d);
    drop(rt);
    for f in [&ready, &log, &kc] {
        let _ = std::fs::remove_file(f);
    }
}

/// The heartbeat bounds in the program itself (BPF_PROG_TEST_RUN), as
/// contract 1 states them: past `stale_nxdomain_ns` no NXDOMAIN (the query
/// goes up as an unknown name), past `stale_pass_ns` everything goes up as
/// `pass_stale`; a bound of 0 never applies.
#[test]
fn the_program_applies_the_heartbeat_bounds() {
    let _serial = serial::exclusive();
    use aya::programs::{TestRun as _, TestRunOptions};
    use hsdns::{
        frame::{DNS4, Frame, XDP_PASS, XDP_TX, query},
        lifecycle::sys::boot_ns,
        loader::{self, Capacities},
        maps::{Syncer, bpf::BpfMaps},
        records::{RecordTable, ZoneConfig},
    };
    require_root();
    let caps = Capacities::default();
    let mut ebpf = loader::load(&caps).expect("load");
    let mut maps = BpfMaps::take(&mut ebpf).unwrap();
    maps.add_dns_addr(DNS4.into()).unwrap();
    let mut table = RecordTable::build(&ZoneConfig::default(), &hsdns::source::embedded_seed(), 1);
    let mut syncer = Syncer::new(maps, &caps);
    syncer.set_nxdomain(true);
    syncer.write_soa(&table).unwrap();
    syncer.sync_new(&mut table).unwrap();
    let ms = |n: u64| n * 1_000_000;
    syncer
        .backend_mut()
        .set_stale_bounds(ms(200), ms(400))
        .unwrap();
    let hit = Frame::v4(query(POD0, RecordType::A, None)).bytes();
    let miss = Frame::v4(query(MISS, RecordType::A, None)).bytes();
    let mut run = |syncer: &mut Syncer<BpfMaps>, age_ms: u64, pkt: &[u8]| {
        syncer
            .backend_mut()
            .set_heartbeat(boot_ns().saturating_sub(ms(age_ms)), true)
            .unwrap();
        let prog = loader::program(&mut ebpf).unwrap();
        let mut out = vec![0u8; 2048];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(pkt),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        r.return_value
    };
    let c = |s: &Syncer<BpfMaps>| s.backend().counters().unwrap();
    // Fresh: both answered.
    assert_eq!(run(&mut syncer, 0, &hit), XDP_TX);
    assert_eq!(run(&mut syncer, 0, &miss), XDP_TX);
    assert_eq!(c(&syncer).answered_nxdomain, 1);
    // Past the NXDOMAIN bound: the name answered, the miss goes up.
    assert_eq!(run(&mut syncer, 300, &hit), XDP_TX);
    let before = c(&syncer);
    assert_eq!(run(&mut syncer, 300, &miss), XDP_PASS);
    assert_eq!(c(&syncer).pass_unknown_name, before.pass_unknown_name + 1);
    // Past the pass bound: everything goes up, counted.
    let before = c(&syncer);
    assert_eq!(run(&mut syncer, 500, &hit), XDP_PASS);
    assert_eq!(run(&mut syncer, 500, &miss), XDP_PASS);
    assert_eq!(c(&syncer).pass_stale, before.pass_stale + 2);
    assert_eq!(c(&syncer).answered_a, before.answered_a);
    // Bounds of 0: never stale.
    syncer.backend_mut().set_stale_bounds(0, 0).unwrap();
    assert_eq!(run(&mut syncer, 10_000, &hit), XDP_TX);
    assert_eq!(run(&mut syncer, 10_000, &miss), XDP_TX);
}

/// A burst of new pod interfaces overruns the link event socket (made tiny
/// here): the daemon lists the interfaces again and attaches every one.
#[test]
fn a_netlink_overrun_relists_and_misses_no_interface() {
    let _serial = serial::shared();
    let topo = Topology::new(0);
    let d = Daemon::start(
        bin(),
        &topo.node,
        &[
            "--dns-addr",
            "169.254.20.10",
            "--link-events-rcvbuf",
            "1024",
        ],
    );
    const N: usize = 60;
    let batch: String = (0..N)
        .map(|i| format!("link add hsburst{i} type veth peer name hsburstp{i}\n"))
        .collect();
    let path = std::env::temp_dir().join(format!("hsdns-burst-{}", std::process::id()));
    std::fs::write(&path, batch).unwrap();
    ip(&["-n", &topo.node.name, "-batch", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    let attached = || {
        let log = d.log();
        (0..N)
            .flat_map(|i| {
                [
                    format!("attached to hsburst{i} "),
                    format!("attached to hsburstp{i} "),
                ]
            })
            .filter(|l| log.contains(l.as_str()))
            .count()
    };
    wait_for("every new veth attached", Duration::from_secs(30), || {
        attached() == 2 * N
    });
    assert!(
        d.log().contains("netlink overrun"),
        "the burst did not overrun the socket (the test needs it to):\n{}",
        d.log()
    );
}

/// deploy/'s init container: `hsdns mount-bpffs` mounts a bpffs where
/// there is none, so the unprivileged daemon after it finds one, and leaves
/// a mounted one alone.
#[test]
fn mount_bpffs_mounts_one_where_there_is_none_and_nothing_twice() {
    let _serial = serial::shared();
    require_root();
    let pin_dir = format!("/sys/fs/bpf/hsdns-test-{}-mount", std::process::id());
    let script = format!(
        "umount -l /sys/fs/bpf 2>/dev/null; \
         before=$(stat -f -c %T /sys/fs/bpf); \
         \"$0\" mount-bpffs --pin-dir {pin_dir} || exit 1; \
         after=$(stat -f -c %T /sys/fs/bpf); \
         \"$0\" mount-bpffs --pin-dir {pin_dir} || exit 1; \
         echo \"before=$before after=$after\"; \
         grep -c ' /sys/fs/bpf bpf ' /proc/self/mounts"
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--", "sh", "-c", &script])
        .arg(bin())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "mounted a BPF filesystem at /sys/fs/bpf",
        "{text}"
    );
    assert!(
        lines[1].ends_with("is on a BPF filesystem already"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("before=") && !lines[2].starts_with("before=bpf_fs"),
        "{text}"
    );
    assert!(lines[2].ends_with("after=bpf_fs"), "{text}");
    assert_eq!(lines[3], "1", "mounted once: {text}");
}

/// `GET path` on the node's HTTP listener: (status, pid of the daemon that
/// answered), or None when nothing accepts the connection.
fn probe(node: &Netns, path: &'static str) -> Option<(u16, u32)> {
    node.run(move || {
        use std::io::{Read as _, Write as _};
        let addr: SocketAddr = "169.254.20.10:9253".parse().unwrap();
        let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        c.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        let status = s.split_whitespace().nth(1)?.parse().ok()?;
        let pid = s.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(hsdns::http::HEADER_PID)
                .then(|| v.trim().parse().ok())?
        })?;
        Some((status, pid))
    })
}

/// Listening TCP sockets on 169.254.20.10:9253 in the node's namespace.
fn http_listeners(node: &Netns) -> usize {
    node.run(|| {
        // This thread's namespace: /proc/net is the main thread's.
        std::fs::read_to_string("/proc/thread-self/net/tcp")
            .unwrap()
            .lines()
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1] == "0A14FEA9:2425" && f[3] == "0A"
            })
            .count()
    })
}

/// A surge update with `--metrics-addr`: both pods listen on the same
/// address (hostNetwork), the new daemon starts without EADDRINUSE, and
/// from the moment it listens every probe (/healthz, /readyz) is answered
/// by it, not by the old one (whose readiness says nothing about the new
/// pod); the old one closes its listener when it hands the maps over.
#[test]
fn a_surge_update_sends_every_probe_to_the_newest_daemon() {
    let _serial = serial::exclusive();
    let topo = Topology::new(1);
    let pins = PinDir::new("surge-http");
    let args = [
        "--dns-addr",
        "169.254.20.10",
        "--metrics-addr",
        "169.254.20.10:9253",
    ];
    let a = Daemon::start_with_pins(bin(), &topo.node, &args, pins.path.clone());
    let pid_a = a.proc.pid();
    assert_eq!(probe(&topo.node, "/readyz"), Some((200, pid_a)));
    assert_eq!(http_listeners(&topo.node), 1);

    let mut b = Daemon::spawn(bin(), &topo.node, &args, pins.path.clone());
    let pid_b = b.proc.pid();
    wait_for(
        "the new daemon's HTTP listener",
        Duration::from_secs(30),
        || {
            if let Ok(Some(s)) = b.proc.child.try_wait() {
                panic!("the new daemon exited ({s}):\n{}", b.log());
            }
            b.log().contains("metrics, /healthz and /readyz on")
        },
    );
    // From here on, every probe is the new daemon's: not ready until it
    // has the maps, then ready; never the old one's answer.
    let (mut seen_503, mut seen_200, mut n) = (0, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && (seen_200 < 20 || !b.is_ready()) {
        for path in ["/healthz", "/readyz"] {
            let got = probe(&topo.node, path);
            let Some((status, pid)) = got else {
                panic!("{path}: no answer (probe {n})\n{}", b.log());
            };
            assert_eq!(
                pid, pid_b,
                "{path} answered by the old daemon (probe {n}, status {status})"
            );
            if path == "/healthz" {
                assert_eq!(status, 200, "the new daemon's event loop runs");
            } else if status == 200 {
                seen_200 += 1;
            } else {
                assert!(seen_200 == 0, "ready, then not ready");
                seen_503 += 1;
            }
            n += 1;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert!(b.is_ready(), "{}", b.log());
    assert!(
        seen_200 >= 20,
        "{seen_200} ready answers, {seen_503} not ready"
    );
    // The old one handed over and closed its listener.
    wait_for("the old listener closed", Duration::from_secs(10), || {
        a.log().contains("HTTP listener closed") && http_listeners(&topo.node) == 1
    });
    assert!(!b.log().contains("Address already in use"), "{}", b.log());
    assert!(!b.log().contains("without SO_REUSEPORT"), "{}", b.log());
    assert!(a.stop().success());
    assert_eq!(probe(&topo.node, "/readyz"), Some((200, pid_b)));
    assert_eq!(probe(&topo.node, "/healthz"), Some((200, pid_b)));
}
