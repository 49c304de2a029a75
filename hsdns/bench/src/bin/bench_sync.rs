//! Sync at cluster scale, measured on the daemon itself: `hsdns run
//! --kubeconfig` as a child process in a network namespace this benchmark
//! creates, attached to a veth there, against an in-process API server (in
//! the same namespace, on its loopback) holding 10,000 services and 150,000
//! pods: 2,000 headless services of 50 StatefulSet pods, 8,000 ClusterIP
//! services with 6-7 pods each.
//!
//! Measures:
//! - start to first full sync: from spawning the daemon to its ready file,
//!   which it writes once the maps hold the whole table and the kernel
//!   answers (program load and verification included; the daemon's log
//!   gives that part, which is reported apart);
//! - event-to-map latency of single pod changes under a steady churn of 100
//!   changes/s: from just before the API server stores the change to the new
//!   address being in the pinned maps, read back the way the kernel reads
//!   them (name map, then the answer it points to), polled every ~50 µs;
//! - the daemon's peak RSS (VmHWM of its process) and the kernel memory of
//!   its pinned maps as bpftool reports it (`bytes_memlock`).
//!
//! The API server runs in this process and shares the 2 cores. Everything
//! is bounded in time and cleaned up (namespace, daemon by PID, pins) even
//! on failure. Run as root: `cargo run --release -p hsdns-bench --bin
//! bench_sync [churn-seconds]`; prints one JSON object.

use std::{
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc as std_mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use hickory_proto::rr::Name;
use hsdns::maps::{bpf::BpfMaps, name_key};
use hsdns_common::{REF_CLASS_SHIFT, REF_SLOT_MASK};
use hsdns_test_support::apiserver::{ApiServer, Kind};
use hsdns_test_support::netns::{
    Daemon, Netns, enter, ip as ip_cmd, release_daemon_bin, require_root,
};
use serde_json::{Value, json};

const HEADLESS: usize = 2000;
const PER_HEADLESS: usize = 50;
const SERVICES: usize = 10_000;
const PODS: usize = 150_000;
/// Map capacities for this cluster (the defaults are sized for smaller
/// ones), with about 20% to spare: 160,504 names (the 50,000 endpoints of
/// ClusterIP services are named too, as CoreDNS names them), all up to
/// 48 bytes (the first tier); as many small answers; one large answer (50 addresses) per
/// headless service, plus the slots that changed answers keep in
/// quarantine for a while. The daemon logs what it uses ("first lists
/// synced"); the benchmark fails if any map was full.
const NAME_CAPACITY: &str = "196608,4096,256";
const ANSWER_CAPACITY: &str = "196608,1024,2560";

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(169, 254, ((i / 250) % 250) as u8, (1 + i % 250) as u8)
}

/// The address a churn change gives pod 0 of a service: outside the range
/// of the initial pods' addresses, so it is never already there.
fn churn_addr(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(169, 254, 250 + (k / 250 % 5) as u8, (1 + k % 250) as u8)
}

fn namespace(s: usize) -> String {
    format!("ns{}", s % 500)
}

fn slice(s: usize, first_pod: usize, n: usize, bump: Option<Ipv4Addr>) -> Value {
    let headless = s < HEADLESS;
    let eps: Vec<Value> = (0..n)
        .map(|i| {
            let a = match bump {
                Some(b) if i == 0 => b,
                _ => addr(first_pod + i),
            };
            if headless {
                json!({"addresses": [a.to_string()], "hostname": format!("p-{i}"), "conditions": {"ready": true}})
            } else {
                json!({"addresses": [a.to_string()], "conditions": {"ready": true}})
            }
        })
        .collect();
    json!({"kind": "EndpointSlice",
           "metadata": {"name": format!("s{s}-x"), "namespace": namespace(s),
                        "labels": {"kubernetes.io/service-name": format!("s{s}")}},
           "addressType": "IPv4", "endpoints": eps})
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Whether the kernel's A answer for `key` (a lowercase wire-format
/// name) holds `want`, read from the pinned maps as the kernel reads them:
/// the name's value, then the answer slot it points to.
fn answers_with(maps: &BpfMaps, key: &[u8], want: Ipv4Addr) -> bool {
    let Ok(Some(rec)) = maps.name(key) else {
        return false;
    };
    let (class, slot) = (rec.a >> REF_CLASS_SHIFT, rec.a & REF_SLOT_MASK);
    let Ok(answer) = maps.answer(class as usize, slot) else {
        return false;
    };
    // The A record's RDATA is the address's 4 bytes; churn addresses are
    // unique (see `churn_addr`), so finding them is finding the change.
    answer.bytes[..answer.len as usize]
        .windows(4)
        .any(|w| w == want.octets())
}

/// Kernel memory of each map pinned in `pin_dir`, as bpftool reports it.
fn bpftool_map_bytes(pin_dir: &Path) -> Result<serde_json::Map<String, Value>> {
    let mut bytes = serde_json::Map::new();
    for name in hsdns::loader::PINNED_MAPS {
        let path = pin_dir.join(name);
        // An older daemon (HSDNS_BIN) pins fewer maps.
        if !path.exists() {
            continue;
        }
        let out = Command::new("bpftool")
            .args(["-j", "map", "show", "pinned"])
            .arg(&path)
            .output()
            .context("running bpftool")?;
        if !out.status.success() {
            bail!(
                "bpftool map show pinned {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: Value = serde_json::from_slice(&out.stdout)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        bytes.insert(name.into(), v["bytes_memlock"].clone());
    }
    Ok(bytes)
}

/// A number from the daemon's log line that starts with `prefix`, e.g. the
/// load time in "program loaded and verified in 123 ms".
fn log_ms(log: &str, prefix: &str) -> Option<u64> {
    let rest = &log[log.find(prefix)? + prefix.len()..];
    let line = rest.lines().next()?;
    let ms = line.split(" ms").next()?;
    ms.rsplit(' ').next()?.trim().parse().ok()
}

/// A pending change: the name whose answer must come to hold `want`.
struct Pending {
    key: Vec<u8>,
    want: Ipv4Addr,
    at: Instant,
}

/// Polls the maps for each pending change until it lands or `deadline`
/// passes; returns the latencies in ms of those that landed.
fn poll_landings(maps: BpfMaps, rx: std_mpsc::Receiver<Pending>, deadline: Instant) -> Vec<f64> {
    let mut pending: Vec<Pending> = Vec::new();
    let mut landed = Vec::new();
    loop {
        let incoming = if pending.is_empty() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(p) => Some(p),
                Err(std_mpsc::RecvTimeoutError::Timeout) => return landed,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return landed,
            }
        } else {
            rx.try_recv().ok()
        };
        pending.extend(incoming);
        pending.extend(rx.try_iter());
        pending.retain(|p| {
            if answers_with(&maps, &p.key, p.want) {
                landed.push(p.at.elapsed().as_secs_f64() * 1000.0);
                false
            } else {
                true
            }
        });
        if Instant::now() > deadline {
            return landed;
        }
        if !pending.is_empty() {
            thread::sleep(Duration::from_micros(50));
        }
    }
}

/// A file or directory removed on drop, failure included.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_file(&self.0);
    }
}

fn main() -> Result<()> {
    require_root();
    let churn_secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    // HSDNS_BIN: another build of the daemon (to compare with an older
    // one on the same cluster); it must exist. Otherwise the hsdns beside
    // this binary (target/release).
    let bin = match std::env::var_os("HSDNS_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.exists() {
                bail!("HSDNS_BIN={}: no such file", p.display());
            }
            p
        }
        None => release_daemon_bin(),
    };
    eprintln!("bench_sync: daemon {}", bin.display());
    let node = Netns::new("sync");
    ip_cmd(&[
        "-n", &node.name, "link", "add", "hsb0", "type", "veth", "peer", "name", "hsb1",
    ]);
    for dev in ["hsb0", "hsb1"] {
        ip_cmd(&["-n", &node.name, "link", "set", dev, "up"]);
    }
    // Before any other thread exists: the runtime's threads, and the API
    // server's loopback socket with them, are in the node namespace, where
    // the daemon looks for it.
    enter(&node.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let api = rt.block_on(ApiServer::start());
    let mut layout = Vec::new();
    let mut pod = 0;
    let per_cip = (PODS - HEADLESS * PER_HEADLESS) / (SERVICES - HEADLESS);
    for s in 0..SERVICES {
        let headless = s < HEADLESS;
        let n = if headless { PER_HEADLESS } else { per_cip };
        let cip = if headless {
            "None".to_string()
        } else {
            // ClusterIPs from the top of the link-local range, apart from
            // the pods'.
            Ipv4Addr::new(169, 254, 200 + (s / 250 % 40) as u8, (1 + s % 250) as u8).to_string()
        };
        api.apply(
            Kind::Service,
            json!({"kind": "Service", "metadata": {"name": format!("s{s}"), "namespace": namespace(s)},
                   "spec": {"clusterIP": cip, "clusterIPs": [cip]}}),
        );
        api.apply(Kind::EndpointSlice, slice(s, pod, n, None));
        layout.push((pod, n));
        pod += n;
    }
    let kc = std::env::temp_dir().join(format!("hsdns-bench-kc-{}", std::process::id()));
    api.kubeconfig(&kc);
    let pins = Removed(PathBuf::from(format!(
        "/sys/fs/bpf/hsdns-bench-{}",
        std::process::id()
    )));
    let kc = Removed(kc);
    let result = measure(&bin, &node, &api, &kc.0, &pins.0, &layout, churn_secs);
    drop((pins, kc, node, rt));
    let json = result?;
    println!("{json}");
    Ok(())
}

/// A second daemon on the first one's pins (stopped with SIGTERM just
/// before): how soon it is ready (the kernel answering from the adopted
/// maps all along), how long adopting and the first complete sync take, and
/// how much of the table it had to write.
fn measure_restart(bin: &Path, node: &Netns, args: &[&str], pin_dir: &Path) -> Result<Value> {
    let t0 = Instant::now();
    let mut daemon = Daemon::spawn(bin, node, args, pin_dir.to_path_buf());
    let deadline = t0 + Duration::from_secs(60);
    let mut ready_ms = None;
    while !daemon.log().contains("first lists synced") {
        if ready_ms.is_none() && daemon.is_ready() {
            ready_ms = Some(t0.elapsed().as_millis());
        }
        if let Some(status) = daemon.proc.child.try_wait()? {
            bail!("the restarted hsdns exited ({status}):\n{}", daemon.log());
        }
        if Instant::now() > deadline {
            bail!(
                "the restarted hsdns did not sync within 60 s:\n{}",
                daemon.log()
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
    let synced_ms = t0.elapsed().as_millis();
    let log = daemon.log();
    let num_after = |pat: &str| -> Option<u64> {
        log.split(pat)
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let peak_rss_kib = hsdns_bench::proc_stats::status_kib_of(daemon.proc.pid(), "VmHWM:");
    let status = daemon.proc.terminate();
    if !status.success() {
        bail!("the restarted hsdns exited with {status}:\n{log}");
    }
    Ok(json!({
        "ready_ms": ready_ms,
        "first_sync_ms": synced_ms,
        "adopted_names": num_after("adopted "),
        "adopt_ms": log.split("suspect references), in ").nth(1).and_then(|r| r.split(' ').next()?.parse::<u64>().ok()),
        "first_sync_log": log.lines().find(|l| l.contains("first lists synced")).map(|l| l.split("] ").nth(1).unwrap_or(l).to_string()),
        "peak_rss_kib": peak_rss_kib,
    }))
}

fn measure(
    bin: &Path,
    node: &Netns,
    api: &ApiServer,
    kc: &Path,
    pin_dir: &Path,
    layout: &[(usize, usize)],
    churn_secs: u64,
) -> Result<Value> {
    let args = [
        "--kubeconfig",
        kc.to_str().expect("a UTF-8 temp path"),
        "--no-auto-attach",
        "--interface",
        "hsb0",
        "--xdp-mode",
        "skb",
        "--name-capacity",
        NAME_CAPACITY,
        "--answer-capacity",
        ANSWER_CAPACITY,
        // The userspace server runs as in a deployment (and counts in
        // the RSS); nothing is forwarded during the benchmark.
        "--upstream",
        "169.254.20.53",
    ];
    let t0 = Instant::now();
    let bench_cpu0 = hsdns_bench::proc_stats::cpu_ms(None);
    let mut daemon = Daemon::spawn(bin, node, &args, pin_dir.to_path_buf());
    let deadline = t0 + Duration::from_secs(60);
    while !daemon.is_ready() {
        if let Some(status) = daemon.proc.child.try_wait()? {
            bail!(
                "hsdns exited ({status}) before it was ready:\n{}",
                daemon.log()
            );
        }
        if Instant::now() > deadline {
            bail!("hsdns not ready within 60 s:\n{}", daemon.log());
        }
        thread::sleep(Duration::from_millis(1));
    }
    let start_to_ready = t0.elapsed();
    // CPU spent up to ready: the daemon's (user, system: the verifier and
    // the kernel's map inserts are system time) and this process's (the
    // API server serving the lists, polling for the ready file), to tell
    // work from waiting on a 2-core machine they share.
    let daemon_cpu = hsdns_bench::proc_stats::cpu_ms(Some(daemon.proc.pid()));
    let bench_cpu = hsdns_bench::proc_stats::cpu_ms(None);
    let bench_cpu = (bench_cpu.0 - bench_cpu0.0) + (bench_cpu.1 - bench_cpu0.1);
    // The ready file comes just after the "first lists synced" line.
    let wait = Instant::now() + Duration::from_secs(5);
    while !daemon.log().contains("first lists synced") && Instant::now() < wait {
        thread::sleep(Duration::from_millis(1));
    }
    let log = daemon.log();
    // Peak RSS up to the first full sync (the figure at the end includes
    // the churn and a relist of the whole cluster).
    let ready_peak_rss_kib = hsdns_bench::proc_stats::status_kib_of(daemon.proc.pid(), "VmHWM:");
    let load_ms = log_ms(&log, "program loaded and verified in");
    // Where the start went: when the maps were open (program loaded), the
    // time in table updates and in map writes (the rest is waiting for
    // the lists).
    let first_sync_log = log
        .lines()
        .find(|l| l.contains("first lists synced"))
        .map(|l| l.split("] ").nth(1).unwrap_or(l).to_string());
    let names: u64 = log
        .split("first lists synced: ")
        .nth(1)
        .and_then(|r| r.split(' ').next()?.parse().ok())
        .unwrap_or(0);

    // Churn: 100 single-pod changes a second, each a new address for pod 0
    // of one headless service (one name's answer changes).
    // An older daemon (HSDNS_BIN) may pin maps of another layout, which this
    // build cannot read back: then the churn runs all the same (the same
    // load on the daemon before the relist) and event-to-map is not measured.
    let (tx, rx) = std_mpsc::channel();
    let poll_deadline = Instant::now() + Duration::from_secs(churn_secs + 30);
    let poller = match BpfMaps::open_pinned(pin_dir) {
        Ok(maps) => Some(thread::spawn(move || {
            poll_landings(maps, rx, poll_deadline)
        })),
        Err(e) => {
            eprintln!(
                "bench_sync: the pinned maps are not this build's ({e:#}): event-to-map not measured"
            );
            None
        }
    };
    let start = Instant::now();
    let mut changes = 0usize;
    while start.elapsed() < Duration::from_secs(churn_secs) {
        let due = start + Duration::from_millis(10 * changes as u64);
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let s = changes % HEADLESS;
        let (first_pod, n) = layout[s];
        let want = churn_addr(changes);
        let name = format!("p-0.s{s}.{}.svc.cluster.local.", namespace(s));
        let at = Instant::now();
        api.apply(Kind::EndpointSlice, slice(s, first_pod, n, Some(want)));
        // Nobody receives without a poller.
        let _ = tx.send(Pending {
            key: name_key(&Name::from_ascii(&name)?)?,
            want,
            at,
        });
        changes += 1;
    }
    drop(tx);
    let mut lat = poller
        .map(|p| p.join().expect("the poller"))
        .unwrap_or_default();
    // Userspace answers while the daemon relists the whole cluster (a watch
    // expired: 410 Gone). A table name asked of the userspace server every
    // millisecond from the node, one at a time: 2 s before, 6 s after the
    // relist begins.
    let relist = relist_latencies(node, api, layout)?;
    let log = daemon.log();
    if log.contains("maps full") {
        bail!("a map was full, the figures would flatter: raise the capacities\n{log}");
    }
    let landed = lat.len();
    let pid = daemon.proc.pid();
    let peak_rss_kib = hsdns_bench::proc_stats::status_kib_of(pid, "VmHWM:");
    let rss_kib = hsdns_bench::proc_stats::status_kib_of(pid, "VmRSS:");
    let rss_anon_kib = hsdns_bench::proc_stats::status_kib_of(pid, "RssAnon:");
    let rss_file_kib = hsdns_bench::proc_stats::status_kib_of(pid, "RssFile:");
    let map_bytes_by_map = bpftool_map_bytes(pin_dir)?;
    let map_bytes: u64 = map_bytes_by_map.values().filter_map(Value::as_u64).sum();
    let log_path = daemon.log.clone();
    let status = daemon.proc.terminate();
    if !status.success() {
        bail!(
            "hsdns exited with {status}:\n{}",
            fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    let restart = measure_restart(bin, node, &args, pin_dir)?;
    let p50 = percentile(&mut lat, 0.5);
    let p99 = percentile(&mut lat, 0.99);
    let max = lat.last().copied().unwrap_or(f64::NAN);
    let first_sync_ms = start_to_ready.as_secs_f64() * 1000.0;
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let rss_plus_maps_mib = mib(peak_rss_kib as f64 * 1024.0 + map_bytes as f64);
    Ok(json!({
        "services": SERVICES,
        "pods": PODS,
        "names": names,
        "first_sync_ms": first_sync_ms.round(),
        "program_load_ms": load_ms,
        "first_sync_log": first_sync_log,
        "daemon_cpu_user_ms_at_ready": daemon_cpu.0,
        "daemon_cpu_sys_ms_at_ready": daemon_cpu.1,
        "apiserver_cpu_ms_to_ready": bench_cpu,
        "names_per_s": (names as f64 / start_to_ready.as_secs_f64()).round(),
        "changes": changes,
        "changes_landed": landed,
        "event_to_map_p50_ms": (p50 * 100.0).round() / 100.0,
        "event_to_map_p99_ms": (p99 * 100.0).round() / 100.0,
        "event_to_map_max_ms": (max * 100.0).round() / 100.0,
        "daemon_peak_rss_kib": peak_rss_kib,
        "daemon_peak_rss_at_ready_kib": ready_peak_rss_kib,
        "daemon_rss_kib": rss_kib,
        "daemon_rss_anon_kib": rss_anon_kib,
        "daemon_rss_file_kib": rss_file_kib,
        "map_bytes": map_bytes,
        "map_bytes_by_map": map_bytes_by_map,
        "rss_plus_maps_mib": (rss_plus_maps_mib * 10.0).round() / 10.0,
        "restart": restart,
        "userspace_baseline_p50_ms": relist.0[0],
        "userspace_baseline_p99_ms": relist.0[1],
        "userspace_baseline_max_ms": relist.0[2],
        "userspace_relist_p50_ms": relist.1[0],
        "userspace_relist_p99_ms": relist.1[1],
        "userspace_relist_max_ms": relist.1[2],
        "userspace_relist_unanswered": relist.2,
        "target_first_sync_ms": 500,
        "target_p99_ms": 10,
        "target_rss_plus_maps_mib": 64,
    }))
}

/// p50/p99/max of userspace answer latency (ms) before and during a relist,
/// and how many queries got no answer within 1 s.
fn relist_latencies(
    node: &Netns,
    api: &ApiServer,
    layout: &[(usize, usize)],
) -> Result<([f64; 3], [f64; 3], usize)> {
    let path = node.path();
    let names: Vec<String> = (0..layout.len().min(HEADLESS))
        .map(|s| format!("p-0.s{s}.{}.svc.cluster.local.", namespace(s)))
        .collect();
    let (tx, rx) = std_mpsc::channel::<Instant>();
    let asker = thread::spawn(move || -> Result<(Vec<(Instant, f64)>, usize)> {
        enter(&path);
        let sock = std::net::UdpSocket::bind("169.254.20.10:0")
            .or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        let server = std::net::SocketAddr::from((Ipv4Addr::new(169, 254, 20, 10), 53));
        let mut out = Vec::new();
        let mut lost = 0;
        let mut buf = [0u8; 1500];
        let end = rx.recv().ok();
        let end = end.unwrap_or_else(Instant::now);
        let mut i = 0usize;
        while Instant::now() < end {
            let mut q = hickory_proto::op::Message::query();
            q.metadata.id = i as u16;
            q.add_query(hickory_proto::op::Query::query(
                Name::from_ascii(&names[i % names.len()])?,
                hickory_proto::rr::RecordType::A,
            ));
            let wire = q.to_vec()?;
            let at = Instant::now();
            sock.send_to(&wire, server)?;
            let got = loop {
                match sock.recv(&mut buf) {
                    Ok(n) if n > 2 && buf[..2] == wire[..2] => break true,
                    Ok(_) => continue,
                    Err(_) => break false,
                }
            };
            if got {
                out.push((at, at.elapsed().as_secs_f64() * 1000.0));
            } else {
                lost += 1;
            }
            i += 1;
            thread::sleep(Duration::from_millis(1));
        }
        Ok((out, lost))
    });
    let t0 = Instant::now();
    tx.send(t0 + Duration::from_secs(8))?;
    thread::sleep(Duration::from_secs(2));
    let relist_at = Instant::now();
    api.compact();
    api.drop_watches();
    let (samples, lost) = asker.join().expect("the asker")?;
    let stats = |mut v: Vec<f64>| -> [f64; 3] {
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        let p50 = percentile(&mut v, 0.5);
        let p99 = percentile(&mut v, 0.99);
        [r(p50), r(p99), r(v.last().copied().unwrap_or(f64::NAN))]
    };
    let before: Vec<f64> = samples
        .iter()
        .filter(|(at, _)| *at < relist_at)
        .map(|s| s.1)
        .collect();
    let during: Vec<f64> = samples
        .iter()
        .filter(|(at, _)| *at >= relist_at)
        .map(|s| s.1)
        .collect();
    Ok((stats(before), stats(during), lost))
}
