//! The HTTP endpoint on `--metrics-addr` (hyper, HTTP/1.1): `/metrics`,
//! `/healthz` (the daemon's event loop beat within `LIVENESS_BOUND`) and
//! `/readyz` (see [`Metrics::ready`]). Every connection has a header-read
//! timeout and a lifetime bound, and few are served at once: a client that
//! opens connections and sends nothing holds nothing for long.

use std::{convert::Infallible, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

use crate::metrics::{Metrics, PATH_HEALTHZ, PATH_METRICS, PATH_READYZ};

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 32;
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-connection bound (keep-alive included).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Names the process that answered: during a surge update two daemons
/// share the address, and an operator (or a test) can tell which one spoke.
pub const HEADER_PID: &str = "x-hsdns-pid";

fn reply(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .header(HEADER_PID, std::process::id())
        .body(Full::new(body.into()))
        .expect("static header values")
}

fn route(m: &Metrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    let ok_or = |ok: bool, what: &str| {
        if ok {
            reply(StatusCode::OK, "text/plain", "ok\n")
        } else {
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{what}\n"),
            )
        }
    };
    match req.uri().path() {
        PATH_METRICS => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            m.render(),
        ),
        PATH_HEALTHZ => ok_or(m.health.alive(), "event loop stalled"),
        PATH_READYZ => ok_or(m.ready(), "not ready"),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Serves until the task is dropped.
pub async fn serve(l: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut pause = Duration::from_millis(1);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match l.accept().await {
            Ok((s, _)) => {
                pause = Duration::from_millis(1);
                s
            }
            Err(e) => {
                // EMFILE and the like: pause, do not spin.
                log::warn!("metrics listener: {e}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = route(&m, &req);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}
