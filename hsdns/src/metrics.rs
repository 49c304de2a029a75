//! Prometheus metrics on `--metrics-addr` (`GET /metrics`): the kernel's
//! verdict counters, where the program is attached and in which mode, the
//! state of the maps, and the userspace server's counters.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::Ordering},
};

use anyhow::{Context as _, Result};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use crate::server::Server;

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
}

pub struct Metrics {
    pub state: Mutex<State>,
    pin_dir: PathBuf,
    server: Mutex<Option<Arc<Server>>>,
}

type Labels = Vec<(String, String)>;

impl Metrics {
    pub fn new(pin_dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            pin_dir,
            server: Mutex::new(None),
        })
    }

    pub fn set_server(&self, s: Arc<Server>) {
        *self.server.lock().expect("metrics lock") = Some(s);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut reg = Registry::with_prefix("hsdns");
        let verdicts = Family::<Labels, Counter>::default();
        if let Ok(c) = crate::daemon::read_pinned_counters(&self.pin_dir) {
            for (k, v) in c.fields() {
                verdicts
                    .get_or_create(&vec![("verdict".into(), k.into())])
                    .inc_by(v);
            }
        }
        reg.register(
            "kernel_verdicts",
            "Packets seen by the XDP program, by verdict",
            verdicts,
        );
        let st = self.state.lock().expect("metrics lock").clone();
        let attached = Family::<Labels, Gauge>::default();
        for (iface, mode) in &st.attached {
            attached
                .get_or_create(&vec![
                    ("interface".into(), iface.clone()),
                    ("mode".into(), mode.clone()),
                ])
                .set(1);
        }
        reg.register(
            "attached",
            "Interfaces with the XDP program, by attach mode",
            attached,
        );
        let gauge = |v: u64| {
            let g = Gauge::<i64>::default();
            g.set(v as i64);
            g
        };
        reg.register(
            "ready",
            "1 once the maps hold the whole record table",
            gauge(st.ready.into()),
        );
        reg.register(
            "names_installed",
            "Names in the kernel's maps",
            gauge(st.names_installed),
        );
        reg.register(
            "kernel_nxdomain_active",
            "1 while the kernel answers NXDOMAIN for provably missing names",
            gauge(st.nxdomain_active.into()),
        );
        reg.register(
            "names_full",
            "Names left to userspace for lack of map room",
            gauge(st.names_full),
        );
        reg.register(
            "answers_full",
            "Answers left to userspace for lack of map room",
            gauge(st.answers_full),
        );
        let syncs = Counter::<u64>::default();
        syncs.inc_by(st.syncs);
        reg.register("syncs", "Table syncs into the maps", syncs);
        if let Some(s) = self.server.lock().expect("metrics lock").as_ref() {
            let family = Family::<Labels, Counter>::default();
            let stats = &s.stats;
            for (k, v) in [
                ("local", &stats.local),
                ("forwarded", &stats.forwarded),
                ("cache_hit", &stats.cache_hits),
                ("truncated", &stats.truncated),
                ("servfail", &stats.servfail),
                ("formerr", &stats.formerr),
                ("dropped", &stats.dropped),
            ] {
                family
                    .get_or_create(&vec![("outcome".into(), k.into())])
                    .inc_by(v.load(Ordering::Relaxed));
            }
            reg.register(
                "userspace_queries",
                "Queries answered by the userspace server, by outcome",
                family,
            );
        }
        let mut out = String::new();
        let _ = encode(&mut out, &reg);
        out
    }

    /// Serves `GET /metrics` until the task is dropped.
    pub async fn serve(self: Arc<Self>, addr: SocketAddr) -> Result<()> {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics on {addr}"))?;
        log::info!("metrics on http://{}/metrics", l.local_addr()?);
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n = c.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if req.starts_with("GET /metrics") {
                    ("200 OK", me.render())
                } else {
                    ("404 Not Found", String::from("not found\n"))
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(resp.as_bytes()).await;
            });
        }
    }
}
