//! Prometheus metrics, and the health and readiness the probes read, all
//! served on `--metrics-addr` (see `http`): the kernel's verdict counters,
//! where the program is attached and in which mode, the state of the maps,
//! and the userspace server's counters.
//!
//! The metrics are one collector registered once: each scrape reads the
//! counters where they live (the pinned map, the server's atomics) instead
//! of building a registry.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{maps::bpf::read_pinned_counters, server::Server};

/// The paths the daemon's HTTP listener (`--metrics-addr`) serves (shared
/// contract 4): Prometheus metrics; 200 while this process's event loop
/// runs; 200 once its table is complete in the maps (or it serves from
/// adopted maps) and its DNS listener is bound. deploy/'s probes use them
/// (a test checks).
pub const PATH_METRICS: &str = "/metrics";
pub const PATH_HEALTHZ: &str = "/healthz";
pub const PATH_READYZ: &str = "/readyz";

/// What the daemon reports besides the kernel's counters, which are read
/// from the pinned map at each scrape.
#[derive(Default, Debug, Clone)]
pub struct State {
    /// Interface name → attach mode ("skb", "driver").
    pub attached: BTreeMap<String, String>,
    pub ready: bool,
    pub names_installed: u64,
    pub nxdomain_active: bool,
    /// Names and answers left to userspace because a map was full, at the
    /// last sync.
    pub names_full: u64,
    pub answers_full: u64,
    pub syncs: u64,
    /// Failed attach attempts by interface (at start and at run time).
    pub attach_failures: BTreeMap<String, u64>,
    /// Map writes the kernel refused (their names went to userspace).
    pub map_write_errors: u64,
    /// This process's table is complete in the maps (not just adopted).
    pub table_synced: bool,
}

/// Liveness and readiness of this process (never a file another process
/// may have left).
#[derive(Debug)]
pub struct Health {
    epoch: Instant,
    /// Milliseconds since `epoch` at the event loop's last beat.
    beat: AtomicU64,
    /// The DNS listener is bound (or there is none to bind).
    listening: AtomicBool,
    /// Shutting down: not ready any more, whatever the maps hold.
    stopping: AtomicBool,
}

/// The event loop beats every second; a loop silent for this long is dead.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(10);

impl Health {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            beat: AtomicU64::new(0),
            listening: AtomicBool::new(true),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn beat(&self) {
        self.beat
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn alive(&self) -> bool {
        let last = Duration::from_millis(self.beat.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last) < LIVENESS_BOUND
    }

    pub fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Relaxed);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

pub struct Metrics {
    pub state: Arc<Mutex<State>>,
    pub health: Arc<Health>,
    server: Arc<Mutex<Option<Arc<Server>>>>,
    registry: Registry,
}

/// The collector: reads everything at scrape time.
struct Collect {
    state: Arc<Mutex<State>>,
    server: Arc<Mutex<Option<Arc<Server>>>>,
    pin_dir: PathBuf,
}

impl std::fmt::Debug for Collect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collect")
            .field("pin_dir", &self.pin_dir)
            .finish()
    }
}

type Labels = Vec<(&'static str, String)>;

fn family<V: prometheus_client::encoding::EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: impl IntoIterator<Item = (Labels, V)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn single<V: prometheus_client::encoding::EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: V,
) -> std::fmt::Result {
    let ty = v.metric_type();
    v.encode(enc.encode_descriptor(name, help, None, ty)?)
}

impl Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        if let Ok(c) = read_pinned_counters(&self.pin_dir) {
            family(
                &mut enc,
                "kernel_verdicts",
                "Packets seen by the XDP program, by verdict",
                MetricType::Counter,
                c.fields()
                    .into_iter()
                    .map(|(k, v)| (vec![("verdict", k.to_string())], ConstCounter::new(v))),
            )?;
        }
        let st = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        family(
            &mut enc,
            "attached",
            "Interfaces with the XDP program, by attach mode",
            MetricType::Gauge,
            st.attached.iter().map(|(i, m)| {
                (
                    vec![("interface", i.clone()), ("mode", m.clone())],
                    ConstGauge::new(1i64),
                )
            }),
        )?;
        let g = |v: u64| ConstGauge::new(v as i64);
        single(
            &mut enc,
            "ready",
            "1 once the maps hold the whole record table (or the kernel answers from adopted maps)",
            g(st.ready.into()),
        )?;
        single(
            &mut enc,
            "names_installed",
            "Names in the kernel's maps",
            g(st.names_installed),
        )?;
        single(
            &mut enc,
            "kernel_nxdomain_active",
            "1 while the kernel answers NXDOMAIN for provably missing names",
            g(st.nxdomain_active.into()),
        )?;
        single(
            &mut enc,
            "names_full",
            "Names left to userspace for lack of map room",
            g(st.names_full),
        )?;
        single(
            &mut enc,
            "answers_full",
            "Answers left to userspace for lack of map room",
            g(st.answers_full),
        )?;
        single(
            &mut enc,
            "syncs",
            "Table syncs into the maps",
            ConstCounter::new(st.syncs),
        )?;
        family(
            &mut enc,
            "attach_failures",
            "Failed attempts to attach the program, by interface",
            MetricType::Counter,
            st.attach_failures
                .iter()
                .map(|(i, n)| (vec![("interface", i.clone())], ConstCounter::new(*n))),
        )?;
        single(
            &mut enc,
            "map_write_errors",
            "Map writes the kernel refused (those names are answered by userspace)",
            ConstCounter::new(st.map_write_errors),
        )?;
        single(
            &mut enc,
            "table_synced",
            "1 once this process's table is complete in the maps (0 while serving adopted maps)",
            g(st.table_synced.into()),
        )?;
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(s) = server {
            let st = &s.stats;
            let load = |a: &AtomicU64| ConstCounter::new(a.load(Ordering::Relaxed));
            family(
                &mut enc,
                "userspace_queries",
                "Queries answered by the userspace server, by outcome",
                MetricType::Counter,
                [
                    ("local", &st.local),
                    ("forwarded", &st.forwarded),
                    ("cache_hit", &st.cache_hits),
                    ("truncated", &st.truncated),
                    ("servfail", &st.servfail),
                    ("formerr", &st.formerr),
                    ("dropped", &st.dropped),
                    ("rate_limited", &st.rate_limited),
                    ("overloaded", &st.overloaded),
                    ("chased", &st.chased),
                ]
                .into_iter()
                .map(|(k, v)| (vec![("outcome", k.to_string())], load(v))),
            )?;
            single(
                &mut enc,
                "upstream_replies_rejected",
                "Upstream replies ignored: wrong ID, question, source or shape",
                load(&st.upstream.rejected),
            )?;
            family(
                &mut enc,
                "tcp_connections_shed",
                "TCP connections closed for room (evicted) or refused",
                MetricType::Counter,
                [("evicted", &st.tcp_evicted), ("refused", &st.tcp_refused)]
                    .into_iter()
                    .map(|(k, v)| (vec![("reason", k.to_string())], load(v))),
            )?;
            single(
                &mut enc,
                "socket_errors",
                "Receive and accept errors (each followed by a pause)",
                load(&st.socket_errors),
            )?;
            single(
                &mut enc,
                "tcp_connections",
                "Open TCP connections",
                g(s.tcp_connections() as u64),
            )?;
            single(
                &mut enc,
                "cache_bytes",
                "Bytes held by the cache of upstream replies",
                g(s.cache_bytes()),
            )?;
        }
        Ok(())
    }
}

impl Metrics {
    pub fn new(pin_dir: PathBuf) -> Arc<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let server = Arc::new(Mutex::new(None));
        let mut registry = Registry::with_prefix("hsdns");
        registry.register_collector(Box::new(Collect {
            state: state.clone(),
            server: server.clone(),
            pin_dir,
        }));
        Arc::new(Self {
            state,
            health: Arc::new(Health::new()),
            server,
            registry,
        })
    }

    pub fn set_server(&self, s: Arc<Server>) {
        *self.server.lock().unwrap_or_else(PoisonError::into_inner) = Some(s);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// /readyz: a complete table in the maps (or adopted maps the kernel
    /// answers from), the listener bound, not stopping.
    pub fn ready(&self) -> bool {
        let h = &self.health;
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ready
            && h.listening.load(Ordering::Relaxed)
            && !h.stopping.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_reads_the_state_of_the_moment() {
        let m = Metrics::new(PathBuf::from("/nonexistent"));
        m.state
            .lock()
            .unwrap()
            .attached
            .insert("eth0".into(), "skb".into());
        let first = m.render();
        assert!(
            first.contains("hsdns_attached{interface=\"eth0\",mode=\"skb\"} 1"),
            "{first}"
        );
        assert!(first.contains("hsdns_ready 0"), "{first}");
        m.state.lock().unwrap().ready = true;
        m.state.lock().unwrap().syncs = 3;
        let second = m.render();
        assert!(second.contains("hsdns_ready 1"), "{second}");
        assert!(second.contains("hsdns_syncs_total 3"), "{second}");
    }

    #[test]
    fn ready_needs_the_table_the_listener_and_no_stop() {
        let m = Metrics::new(PathBuf::from("/nonexistent"));
        assert!(!m.ready());
        m.state.lock().unwrap().ready = true;
        assert!(m.ready());
        m.health.set_listening(false);
        assert!(!m.ready());
        m.health.set_listening(true);
        m.health.set_stopping();
        assert!(!m.ready());
        assert!(!m.health.alive() || m.health.epoch.elapsed() < LIVENESS_BOUND);
        m.health.beat();
        assert!(m.health.alive());
    }
}
